/* kiln.h — the whole public API of kiln, and its manual.
 *
 * kiln imports ONNX models and runs them. This header is the only one a user includes.
 *
 * Conventions
 *   - Every function that can fail returns a kiln_status. On failure a one-line, human message
 *     naming the file, node or tensor and what was expected is left for kiln_last_error() in a
 *     thread-local buffer; it stays until the next failing call on the same thread.
 *   - Handles are opaque. Objects come back through out-parameters. Whoever creates a thing
 *     destroys it; every kiln_*_destroy(NULL) is a no-op.
 *   - The library never exits the process and never prints unless asked to.
 *
 * Life of a model today (the reference backend; engines come with the builder):
 *
 *     kiln_model_t *m;
 *     if (kiln_model_load("net.onnx", &m) != KILN_STATUS_OK) puts(kiln_last_error());
 *     kiln_tensor_t *x;  int64_t dims[] = {1, 3, 224, 224};
 *     kiln_tensor_create(KILN_DTYPE_F32, 4, dims, &x);   fill kiln_tensor_data(x) ...
 *     const char *in_names[] = {"input"};  kiln_tensor_t *outs[1] = {0};
 *     kiln_model_run(m, 1, in_names, &x, 1, outs);        outputs in graph output order
 *     ... kiln_tensor_destroy(outs[0]); kiln_tensor_destroy(x); kiln_model_destroy(m);
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0
#define KILN_VERSION_STRING "0.1.0"

/* The most dimensions a tensor may have. */
#define KILN_MAX_RANK 8

typedef enum kiln_status {
    KILN_STATUS_OK = 0,
    KILN_STATUS_INVALID_ARGUMENT = 1, /* a caller passed something wrong (NULL, bad name, bad shape) */
    KILN_STATUS_INVALID_MODEL = 2,    /* the model file is malformed, truncated or inconsistent */
    KILN_STATUS_UNSUPPORTED = 3,      /* a valid model uses an op, dtype or feature kiln lacks */
    KILN_STATUS_IO_ERROR = 4,         /* a file could not be opened, read, mapped or written */
    KILN_STATUS_OUT_OF_MEMORY = 5,    /* an allocation failed or a size would overflow */
    KILN_STATUS_RUNTIME_ERROR = 6,    /* running failed: bad input data, a failing kernel */
    KILN_STATUS_INTERNAL = 7          /* a bug in kiln; please report it with the message */
} kiln_status;

/* Element types. The values are ONNX's TensorProto.DataType codes, so they cross the boundary
 * unchanged. Not every code is supported by every op: unsupported ones are refused by name. */
typedef enum kiln_dtype {
    KILN_DTYPE_UNDEFINED = 0,
    KILN_DTYPE_F32 = 1,
    KILN_DTYPE_U8 = 2,
    KILN_DTYPE_I8 = 3,
    KILN_DTYPE_U16 = 4,
    KILN_DTYPE_I16 = 5,
    KILN_DTYPE_I32 = 6,
    KILN_DTYPE_I64 = 7,
    KILN_DTYPE_STRING = 8,
    KILN_DTYPE_BOOL = 9,
    KILN_DTYPE_F16 = 10,
    KILN_DTYPE_F64 = 11,
    KILN_DTYPE_U32 = 12,
    KILN_DTYPE_U64 = 13,
    KILN_DTYPE_BF16 = 16
} kiln_dtype;

/* The message of the last failing call on this thread ("" if none). Never NULL. */
const char *kiln_last_error(void);
/* A fixed English name for a status: "ok", "unsupported", ... */
const char *kiln_status_name(kiln_status s);
/* "f32", "bf16", "int64", ...; "undefined" for unknown codes. */
const char *kiln_dtype_name(kiln_dtype t);
/* Bytes per element; 0 for STRING, UNDEFINED and unknown codes. */
size_t kiln_dtype_size(kiln_dtype t);

/* ---- Tensors: a dense, row-major, host-memory array with a dtype and a shape ---- */
typedef struct kiln_tensor kiln_tensor_t;

/* Creates a tensor owning zeroed memory for prod(dims) elements. rank may be 0 (a scalar).
 * INVALID_ARGUMENT for a negative dim or rank > KILN_MAX_RANK; OUT_OF_MEMORY on overflow. */
kiln_status kiln_tensor_create(kiln_dtype dtype, int rank, const int64_t *dims, kiln_tensor_t **out);
/* Creates a tensor over caller memory that the caller keeps alive and frees. */
kiln_status kiln_tensor_wrap(kiln_dtype dtype, int rank, const int64_t *dims, void *data,
                             kiln_tensor_t **out);
void kiln_tensor_destroy(kiln_tensor_t *t);
kiln_dtype kiln_tensor_dtype(const kiln_tensor_t *t);
int kiln_tensor_rank(const kiln_tensor_t *t);
/* Pointer to rank dims, owned by the tensor. */
const int64_t *kiln_tensor_dims(const kiln_tensor_t *t);
int64_t kiln_tensor_count(const kiln_tensor_t *t);
size_t kiln_tensor_nbytes(const kiln_tensor_t *t);
void *kiln_tensor_data(kiln_tensor_t *t);

/* ---- Models: an imported, validated ONNX graph ---- */
typedef struct kiln_model kiln_model_t;

/* Loads an ONNX file (external data resolved beside it and memory-mapped), checks it and infers
 * shapes. INVALID_MODEL names the file and the node or field at fault; UNSUPPORTED names the op,
 * domain or dtype that kiln does not handle; IO_ERROR names the file. */
kiln_status kiln_model_load(const char *path, kiln_model_t **out);
/* Same, from bytes in memory; external data is resolved against base_dir (may be NULL). */
kiln_status kiln_model_load_buffer(const void *data, size_t size, const char *base_dir,
                                   kiln_model_t **out);
void kiln_model_destroy(kiln_model_t *m);

int kiln_model_num_inputs(const kiln_model_t *m);
int kiln_model_num_outputs(const kiln_model_t *m);
/* Names are owned by the model. NULL for an index out of range. */
const char *kiln_model_input_name(const kiln_model_t *m, int i);
const char *kiln_model_output_name(const kiln_model_t *m, int i);
/* The declared dtype and shape of an input or output; dims[j] < 0 marks a dynamic dimension. */
kiln_status kiln_model_input_info(const kiln_model_t *m, int i, kiln_dtype *dtype, int *rank,
                                  int64_t dims[KILN_MAX_RANK]);
kiln_status kiln_model_output_info(const kiln_model_t *m, int i, kiln_dtype *dtype, int *rank,
                                   int64_t dims[KILN_MAX_RANK]);

/* Runs the model with the reference backend (plain C kernels that define each op's meaning).
 * inputs[i] is bound to the graph input named names[i]; every graph input without an initializer
 * must be given. outputs[j] receives a new tensor for graph output j (caller destroys them);
 * n_outputs must equal kiln_model_num_outputs. Thread-safe on one model. */
kiln_status kiln_model_run(const kiln_model_t *m, int n_inputs, const char *const *names,
                           kiln_tensor_t *const *inputs, int n_outputs, kiln_tensor_t **outputs);

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */
