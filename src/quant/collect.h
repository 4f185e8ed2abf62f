/* collect.h — the calibration driver: runs a model's FP32 graph over every batch of a calibration
 * source and observes the tensors INT8 would quantize, then computes each one's amax by the four
 * methods (calibrate.h) and the model fingerprint a cache carries (cache.h).
 *
 * What is observed: every graph input the batch binds whose dtype is float (f32, f16, bf16, f64),
 * and every float value a node of the top graph produces, in the model's original graph (as
 * imported: before any fusion, so that the names are the ONNX tensor names and a cache fits any
 * build of the model). One kiln_observer per tensor, keyed by value name. The reference
 * interpreter runs the batches one after another on one thread: the same model and data give the
 * same bits. Subgraph (If/Loop/Scan body) values are not observed.
 *
 * Order of the result: graph inputs in graph order, then node outputs in node order.
 * A tensor that saw no finite value (only NaN/Inf, or only empty tensors) gets valid = false and
 * NaN amax; it cannot be quantized and is left out of caches.
 * Tested by tests/models/test_calibrate_cli.py (through `kiln calibrate`). */
#ifndef KILN_QUANT_COLLECT_H
#define KILN_QUANT_COLLECT_H

#include "onnx/import.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"

typedef struct kiln_calib_tensor {
    char *name;          /* the ONNX value name */
    kiln_dtype dtype;    /* as observed */
    bool is_input;       /* a graph input (else a node output) */
    const char *op;      /* the producing node's op ("" for inputs); owned by the op table */
    kiln_observer *obs;  /* min, max, max|x|, count, nan/inf counts, batches, histogram */
    bool valid;          /* amax is defined (at least one finite value was seen) */
    double amax[KILN_CALIB_METHOD_COUNT]; /* indexed by kiln_calib_method; NaN when !valid */
} kiln_calib_tensor;

typedef struct kiln_calib_result {
    kiln_calib_tensor *tensors;
    int64_t n;
    int64_t batches, samples;  /* what was run */
    uint64_t fingerprint;      /* kiln_calib_fingerprint of the model's graph */
    kiln_calib_options options; /* as used (defaults filled in) */
} kiln_calib_result;

/* Called before the first batch with (0, total) and after each batch with (done, total). */
typedef void (*kiln_calib_progress_fn)(int64_t done, int64_t total, void *user);

/* Runs m over every batch of src and fills *out (free with kiln_calib_result_free). opt may be
 * NULL (defaults); bad options are refused before anything runs. A failing batch stops the run:
 * its error names the batch and the file, node or tensor. */
kiln_status kiln_calib_collect(const kiln_model *m, kiln_calib_source *src, const kiln_calib_options *opt,
                               kiln_calib_progress_fn progress, void *user, kiln_calib_result **out);
/* Batch b (0, 1, ...) from somewhere: *inputs (one per graph input, in order; NULL for an unfed
 * input with an initializer), valid until the next call, or *done = true when there are no more. */
typedef kiln_status (*kiln_calib_next_fn)(void *user, int64_t b, kiln_tensor *const **inputs, bool *done);
/* kiln_calib_collect over batches from next; total is the number expected, for progress (0:
 * unknown). At least one batch is needed. r->samples adds up axis 0 of each batch's first fed input. */
kiln_status kiln_calib_collect_from(const kiln_model *m, kiln_calib_next_fn next, void *next_user, int64_t total,
                                    const kiln_calib_options *opt, kiln_calib_progress_fn progress, void *user,
                                    kiln_calib_result **out);
/* kiln_calib_collect over the batches of a kiln_calibrator's get_batch (kiln.h), each checked
 * against the graph's inputs (kiln_calib_check_batch); progress gets cal->num_batches as the total. */
kiln_status kiln_calib_collect_calibrator(const kiln_model *m, const kiln_calibrator *cal, const kiln_calib_options *opt,
                                          kiln_calib_progress_fn progress, void *user, kiln_calib_result **out);
void kiln_calib_result_free(kiln_calib_result *r);

/* The tensor named name, or NULL. */
const kiln_calib_tensor *kiln_calib_result_find(const kiln_calib_result *r, const char *name);

/* The model fingerprint of calibration caches: 64-bit FNV-1a over a canonical description of the
 * graph's structure, not its weights: a version tag; the graph input and output names; every node's
 * op name and its input and output value names; every initializer's name, dtype and dims. Each
 * string is hashed with its terminating NUL and each integer as 8 little-endian bytes, so no two
 * descriptions run together. Retrained weights keep the fingerprint; any renamed tensor, changed
 * op or reshaped initializer changes it. */
uint64_t kiln_calib_fingerprint(const kiln_graph *g);

#endif /* KILN_QUANT_COLLECT_H */
