/* core.h — what every part of kiln shares: the tensor struct, errors, asserts, f16/bf16,
 * element load/store by dtype, broadcasting and checked size arithmetic.
 * It holds no graph or op knowledge. Tested by tests/unit/test_core.c. */
#ifndef KILN_CORE_H
#define KILN_CORE_H

#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- errors and asserts ---- */

/* Formats the thread's error message and returns s, so call sites read
 *     return kiln_error(KILN_STATUS_INVALID_MODEL, "node '%s': ...", name); */
kiln_status kiln_error(kiln_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current message (context on the way up), returns s. */
kiln_status kiln_error_prefix(kiln_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kiln_clear_error(void);

#define KILN_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "kiln: assertion failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Propagates a non-OK status. */
#define KILN_TRY(expr)                                                                             \
    do {                                                                                           \
        kiln_status kiln_try_s_ = (expr);                                                          \
        if (kiln_try_s_ != KILN_STATUS_OK) return kiln_try_s_;                                     \
    } while (0)

/* ---- dimensions ----
 * A dim >= 0 is known. KILN_DIM_UNKNOWN is unknown; a dim <= -2 is the symbolic dim
 * number (-2 - dim) of its graph (ONNX dim_param), equal symbols meaning equal sizes. */
#define KILN_DIM_UNKNOWN ((int64_t)-1)
static inline bool kiln_dim_known(int64_t d) { return d >= 0; }

/* ---- tensors ----
 * A tensor is dtype + shape + pointer. When data is NULL only its type is known (shape
 * inference at build time); dims may then hold unknown or symbolic values. */
enum {
    KILN_TENSOR_OWNS_DATA = 1u, /* data was malloc'ed by kiln_tensor_alloc and is freed with it */
    KILN_TENSOR_CONSTANT = 2u,  /* a view of an engine constant: the same data at every run (the CPU
                                 * executor sets it; fast kernels keep what they derive from it) */
};

struct kiln_tensor {
    kiln_dtype dtype;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    void *data;
    uint32_t flags;
};
typedef struct kiln_tensor kiln_tensor;

/* Element count; -1 if any dim is not known. */
int64_t kiln_shape_count(int rank, const int64_t *dims);
/* Sets *bytes = count * elem_size with overflow and a 2^40-byte sanity limit. */
kiln_status kiln_checked_bytes(int64_t count, size_t elem_size, size_t *bytes);
bool kiln_shape_known(const kiln_tensor *t);
size_t kiln_tensor_bytes(const kiln_tensor *t); /* of a tensor with a known shape */
/* (Re)shapes t and allocates zeroed, owned data for it; frees previous owned data. */
kiln_status kiln_tensor_alloc(kiln_tensor *t, kiln_dtype dtype, int rank, const int64_t *dims);
/* Frees owned data and resets data/flags; the struct itself stays. */
void kiln_tensor_release(kiln_tensor *t);
/* A new heap tensor with a deep copy of src's data. */
kiln_status kiln_tensor_clone(const kiln_tensor *src, kiln_tensor **out);
/* "f32[1,3,224,224]" into buf. */
const char *kiln_tensor_describe(const kiln_tensor *t, char *buf, size_t n);
const char *kiln_dims_str(int rank, const int64_t *dims, char *buf, size_t n);

/* ---- dtypes ---- */
bool kiln_dtype_is_float(kiln_dtype t);   /* f16, bf16, f32, f64 */
bool kiln_dtype_is_int(kiln_dtype t);     /* signed and unsigned integers (not bool) */
bool kiln_dtype_is_signed(kiln_dtype t);  /* signed integers and floats */

/* IEEE half and bfloat16 conversions, round-to-nearest-even, NaN and Inf kept. */
float kiln_f16_to_f32(uint16_t h);
uint16_t kiln_f32_to_f16(float f);
float kiln_bf16_to_f32(uint16_t h);
uint16_t kiln_f32_to_bf16(float f);

/* Element i of a buffer of dtype t as double / int64 (floats truncated toward zero), and
 * the reverse (stores round floats to the dtype, wrap integers, map nonzero to true for bool).
 * The reference kernels use these to be written once for every dtype. */
double kiln_load_f64(kiln_dtype t, const void *p, int64_t i);
int64_t kiln_load_i64(kiln_dtype t, const void *p, int64_t i);
void kiln_store_f64(kiln_dtype t, void *p, int64_t i, double v);
void kiln_store_i64(kiln_dtype t, void *p, int64_t i, int64_t v);

/* ---- broadcasting (numpy rules) ---- */
/* Output shape of broadcasting a and b; INVALID_ARGUMENT naming both shapes when they clash.
 * Unknown and symbolic dims are propagated when they cannot be decided. */
kiln_status kiln_broadcast_shape(int ra, const int64_t *a, int rb, const int64_t *b, int *rout,
                                 int64_t *out);
/* Strides (in elements) for reading an input of shape (rin, din) broadcast to (rout, dout):
 * stride 0 on broadcast axes. strides has rout entries. */
void kiln_broadcast_strides(int rin, const int64_t *din, int rout, const int64_t *dout,
                            int64_t *strides);
/* Row-major contiguous strides. */
void kiln_contiguous_strides(int rank, const int64_t *dims, int64_t *strides);

/* Normalises axis into [0, rank); INVALID_ARGUMENT if out of [-rank, rank). */
kiln_status kiln_norm_axis(int64_t axis, int rank, int *out);

/* ---- files ---- */
/* Maps a whole regular file read-only (data NULL for an empty file). IO_ERROR messages start
 * with `what` and name the path. Unmap with kiln_file_unmap. */
kiln_status kiln_file_map(const char *path, const char *what, const void **data, size_t *size);
void kiln_file_unmap(const void *data, size_t size);

/* ---- small helpers ---- */
void *kiln_malloc(size_t n);          /* NULL on failure (caller reports OUT_OF_MEMORY) */
void *kiln_calloc(size_t n, size_t s);
char *kiln_strdup(const char *s);

#endif /* KILN_CORE_H */
