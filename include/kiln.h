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

/* ---- Building engines (the shape of TensorRT's builder / engine / context split) ----
 *
 *     kiln_builder_t *b;   kiln_builder_create(&b);
 *     kiln_builder_add_profile(b, &p);                     one per range of input shapes
 *     kiln_builder_set_profile_shape(b, p, "x", 4, min, opt, max);
 *     kiln_engine_t *e;    kiln_builder_build(b, model, &e);    kiln_engine_save(e, "m.kiln");
 *     kiln_context_t *c;   kiln_context_create(e, &c);          one per thread
 *     kiln_context_set_input_shape(c, "x", 4, dims);  kiln_context_set_tensor_address(c, "x", ptr, bytes);
 *     kiln_context_set_tensor_address(c, "y", out, out_bytes);  kiln_context_run(c);
 */
typedef enum kiln_device { KILN_DEVICE_CPU = 0, KILN_DEVICE_CUDA = 1 } kiln_device;

typedef enum kiln_precision {
    KILN_PRECISION_FP32 = 1,
    KILN_PRECISION_FP16 = 2,
    KILN_PRECISION_BF16 = 4,
    KILN_PRECISION_INT8 = 8,
    /* GPU engines: float32 products and convolutions may use TF32 tensor cores (inputs rounded to
     * a 10-bit mantissa, float32 accumulation: TensorRT's default for FP32). Without it kiln's
     * float32 is exact float32. CPU engines compute in float32 either way. */
    KILN_PRECISION_TF32 = 16
} kiln_precision;

typedef struct kiln_builder kiln_builder_t;
typedef struct kiln_engine kiln_engine_t;
typedef struct kiln_context kiln_context_t;

kiln_status kiln_builder_create(kiln_builder_t **out);
void kiln_builder_destroy(kiln_builder_t *b);
/* CPU (default) or CUDA. UNSUPPORTED when kiln was built without that backend. */
kiln_status kiln_builder_set_device(kiln_builder_t *b, kiln_device d);
/* A set of KILN_PRECISION_* flags the builder may use (FP32 is always allowed). Precisions
 * no backend of this build implements are refused at kiln_builder_build with UNSUPPORTED. */
kiln_status kiln_builder_set_precisions(kiln_builder_t *b, unsigned flags);
/* 0: no graph passes; 1: constant folding and cleanup; 2 (default): also fusions. */
kiln_status kiln_builder_set_optimization_level(kiln_builder_t *b, int level);
/* Scratch memory kernels may use beyond the activation arena (bytes; 0 = no limit). */
kiln_status kiln_builder_set_workspace(kiln_builder_t *b, uint64_t bytes);
/* CUDA engines: a node with no GPU kernel (an op, dtype or attribute the GPU kernels do not
 * take) runs on the host with its reference kernel, its inputs copied from the GPU and its
 * outputs back as needed (each such copy waits for the GPU; CUDA graphs are then not used),
 * instead of the build being refused. allow: 1 on, 0 off (the default); kiln inspect lists such nodes. */
kiln_status kiln_builder_set_host_fallback(kiln_builder_t *b, int allow);
/* The CUDA backend times several implementations of some kernels (cuBLASLt and cuDNN
 * algorithms) while building and keeps the fastest. This file (created when missing, written
 * after the build) remembers those choices so rebuilds are fast and make the same ones. */
kiln_status kiln_builder_set_timing_cache(kiln_builder_t *b, const char *path);
/* Keeps the named node at precision p whatever the builder would choose. */
kiln_status kiln_builder_set_layer_precision(kiln_builder_t *b, const char *node, kiln_precision p);
/* INT8 post-training calibration (with KILN_PRECISION_INT8; docs/engines.md). data: an .npz (one
 * array per input, samples on a leading axis) or a folder of .npy/.npz files (a directory path),
 * may be NULL when cache names an existing file or a calibrator gives the batches
 * (kiln_builder_set_calibrator); method: "entropy" (default, NULL), "minmax",
 * "percentile" or "mse"; batch / max_samples: 0 for 1 / all. cache: a calibration cache (TensorRT's
 * text format) read when the file exists (calibration is then skipped: the same cache gives the same
 * engine bytes) and written after calibrating otherwise; NULL for none. progress (may be NULL) is
 * called with (batches done, total) while calibrating. Checked at kiln_builder_build. A model with
 * QuantizeLinear/DequantizeLinear nodes is explicitly quantized (quantization-aware training): its
 * scales come from the graph, and calibration settings are refused for it. */
kiln_status kiln_builder_set_calibration(kiln_builder_t *b, const char *data, const char *method, int64_t batch,
                                         int64_t max_samples, const char *cache,
                                         void (*progress)(int64_t done, int64_t total, void *user), void *user);
/* INT8 calibration through callbacks, the shape of TensorRT's IInt8Calibrator: the application
 * hands kiln its batches (from its own data loader) instead of a file. The builder copies the
 * struct; user, method and the callbacks must stay valid until kiln_builder_build returns.
 *
 *     static int next(void *user, int n, const char *const *names, kiln_tensor_t **tensors) {
 *         loader *l = user;
 *         if (l->done >= l->total) return 0;                  no more batches
 *         tensors[0] = l->batch[l->done++];                   for names[0], e.g. [8,3,224,224] f32
 *         return 1;
 *     }
 *     kiln_calibrator cal = {.batch_size = 8, .get_batch = next, .user = &my_loader};
 *     kiln_builder_set_calibrator(b, &cal);  kiln_builder_set_precisions(b, KILN_PRECISION_INT8);
 *
 * get_batch is called until it returns 0. names lists the model's n_inputs graph inputs in order;
 * set tensors[i] (all NULL on entry) to a tensor of that input's dtype, with its rank and fixed dims
 * (the batch on axis 0), or leave it NULL for an input that has an initializer. The tensors stay
 * the application's (kiln_tensor_create or kiln_tensor_wrap): kiln only reads them, before calling
 * get_batch again. Return > 0 after giving a batch, 0 when there are no more (at least one batch is
 * needed), < 0 to fail the build (RUNTIME_ERROR). The same data in the same batches as a
 * kiln_builder_set_calibration file gives the same scales and the same engine bytes.
 * read_cache (may be NULL) is asked first: it returns a calibration cache (TensorRT's text format,
 * as kiln_builder_set_calibration's cache file holds it) of *size bytes, or NULL for none; with one,
 * get_batch is never called. write_cache (may be NULL) receives the cache after calibrating. Both
 * buffers stay their owner's (kiln copies what it reads). */
typedef struct kiln_calibrator {
    int64_t batch_size;   /* samples per batch, for the application's own bookkeeping (0: unknown) */
    int64_t num_batches;  /* batches get_batch will give, for the progress callback (0: unknown) */
    const char *method;   /* "entropy" (NULL, the default), "minmax", "percentile" or "mse" */
    void *user;           /* passed to every callback */
    int (*get_batch)(void *user, int n_inputs, const char *const *names, kiln_tensor_t **tensors);
    const void *(*read_cache)(void *user, size_t *size);
    void (*write_cache)(void *user, const void *data, size_t size);
} kiln_calibrator;

/* Calibrates INT8 through cal (NULL removes it). INVALID_ARGUMENT when get_batch is NULL or the
 * method is unknown. A calibrator and calibration data (kiln_builder_set_calibration's data) exclude
 * each other, which kiln_builder_build refuses; that function's cache file, method and progress
 * apply to a calibrator too: an existing cache file is read first, then read_cache is asked, and
 * fresh scales go to both the cache file and write_cache. cal->method wins over the other method. */
kiln_status kiln_builder_set_calibrator(kiln_builder_t *b, const kiln_calibrator *cal);
/* Adds an optimization profile; *index receives its number (0, 1, ...). */
kiln_status kiln_builder_add_profile(kiln_builder_t *b, int *index);
/* min <= opt <= max element-wise; dims are those of the named graph input. Inputs whose
 * declared shape is static need no entry; a dynamic input without one is refused at build. */
kiln_status kiln_builder_set_profile_shape(kiln_builder_t *b, int profile, const char *input, int rank,
                                           const int64_t *min, const int64_t *opt, const int64_t *max);
/* Optimizes m's graph, checks the profiles, plans memory and makes an engine. The model is
 * only read; the engine owns copies of what it needs. With no profile added, one is made
 * from the inputs' static shapes. */
kiln_status kiln_builder_build(const kiln_builder_t *b, const kiln_model_t *m, kiln_engine_t **out);

/* ---- Engines ---- */
/* Writes the engine as a .kiln file (docs/kiln-format.md): same engine, same bytes. The file is
 * written beside path and renamed, so a failure never leaves a partial file. */
kiln_status kiln_engine_save(const kiln_engine_t *e, const char *path);
/* Loads a .kiln file, memory-mapping its weights. INVALID_MODEL when it is truncated or
 * corrupted (naming the section and what check failed), UNSUPPORTED when it was written by
 * another kiln format version or for a backend or device this build or machine lacks. */
kiln_status kiln_engine_load(const char *path, kiln_engine_t **out);
void kiln_engine_destroy(kiln_engine_t *e);
int kiln_engine_num_inputs(const kiln_engine_t *e);
int kiln_engine_num_outputs(const kiln_engine_t *e);
const char *kiln_engine_input_name(const kiln_engine_t *e, int i);
const char *kiln_engine_output_name(const kiln_engine_t *e, int i);
kiln_status kiln_engine_input_info(const kiln_engine_t *e, int i, kiln_dtype *dtype, int *rank, int64_t dims[KILN_MAX_RANK]);
kiln_status kiln_engine_output_info(const kiln_engine_t *e, int i, kiln_dtype *dtype, int *rank, int64_t dims[KILN_MAX_RANK]);
int kiln_engine_num_profiles(const kiln_engine_t *e);
/* The min/opt/max dims of input i in a profile. */
kiln_status kiln_engine_profile_shape(const kiln_engine_t *e, int profile, int input, int *rank, int64_t min[KILN_MAX_RANK],
                                      int64_t opt[KILN_MAX_RANK], int64_t max[KILN_MAX_RANK]);
/* A JSON description (layers, fusions, kernels, precisions, profiles, memory plan, weights),
 * malloc'ed; free it with free(). */
kiln_status kiln_engine_describe(const kiln_engine_t *e, char **json);

/* ---- Contexts: the mutable state of running an engine; one per thread ---- */
/* Allocates the activation arena once (the largest profile's plan). */
kiln_status kiln_context_create(const kiln_engine_t *e, kiln_context_t **out);
void kiln_context_destroy(kiln_context_t *c);
kiln_status kiln_context_set_profile(kiln_context_t *c, int profile);
/* INVALID_ARGUMENT when the shape lies outside the current profile's min..max. */
kiln_status kiln_context_set_input_shape(kiln_context_t *c, const char *name, int rank, const int64_t *dims);
/* Binds an input or output to caller host memory of `bytes` bytes (outputs are written there;
 * too small a buffer is an error at run). Unbound outputs stay in the context's memory. */
kiln_status kiln_context_set_tensor_address(kiln_context_t *c, const char *name, void *data, size_t bytes);
/* The shape of an input as set; of an output, the last successful run's when no input shape
 * changed since, else inferred from the inputs' shapes as set (so output buffers can be sized
 * and bound before the first run): a dim that depends on the data is -1 then, and an output
 * whose rank depends on the data is INVALID_ARGUMENT until a run. */
kiln_status kiln_context_tensor_shape(const kiln_context_t *c, const char *name, int *rank, int64_t dims[KILN_MAX_RANK]);
/* Where an output's data is after a run (its bound address, or the context's memory, valid
 * until the next run). */
kiln_status kiln_context_tensor_address(const kiln_context_t *c, const char *name, const void **data);
/* Runs the engine once on the bound inputs. Planned values live in the arena: the executor
 * allocates nothing for them; values whose size depends on data are allocated here. */
kiln_status kiln_context_run(kiln_context_t *c);
/* Convenience: sets shapes and addresses from tensors, runs, and returns new output tensors
 * (as kiln_model_run does). */
kiln_status kiln_context_run_tensors(kiln_context_t *c, int n_inputs, const char *const *names,
                                     kiln_tensor_t *const *inputs, int n_outputs, kiln_tensor_t **outputs);

/* ---- Measuring runs (what `kiln bench` reports; docs/bench.md) ---- */
/* Called once per layer (a node of the engine's optimized graph, in execution order) after it
 * ran, on the thread that called kiln_context_run: node is its index (0 .. number of layers in
 * kiln_engine_describe's "layers" - 1), name and op_type its node name and ONNX op (a fused
 * activation is not named here: see "fused_activation" in the description), ms its wall time
 * (CLOCK_MONOTONIC). The strings are owned by the engine and live as long as it does. */
typedef void (*kiln_layer_timer)(void *user, int node, const char *name, const char *op_type, double ms);
/* Sets (or, with cb NULL, clears) the context's layer timer. Without one, layers are not timed
 * at all; with one, each layer costs two clock reads more. */
kiln_status kiln_context_set_layer_timer(kiln_context_t *c, kiln_layer_timer cb, void *user);

/* GPU engines only (UNSUPPORTED on the CPU): from the next run on, the context captures its
 * sequence of kernels as a CUDA graph and replays it while the profile and input shapes stay
 * the same (an engine with host-side layers or data-dependent sizes runs uncaptured). */
kiln_status kiln_context_set_cuda_graph(kiln_context_t *c, int enable);
/* GPU engines: with enable false, runs copy nothing between host and device (trtexec's
 * --noDataTransfers): inputs stay on the device as the first run after this call left them,
 * and outputs are not copied back. On the CPU there are no transfers and this changes nothing. */
kiln_status kiln_context_set_data_transfers(kiln_context_t *c, int enable);

/* GPU engines: the CUDA stream (a cudaStream_t, passed as void * so that this header needs no
 * CUDA headers) the context's work is enqueued on, from the next run on; NULL goes back to the
 * context's own stream. A run enqueued on the previous stream is waited for first. The stream
 * must outlive its use by the context. CPU engines: UNSUPPORTED. */
kiln_status kiln_context_set_cuda_stream(kiln_context_t *c, void *cuda_stream);
/* Like kiln_context_run, but on a GPU engine it returns once the work is enqueued on the
 * context's stream (TensorRT's enqueueV3): the outputs are in their bound buffers after the
 * caller has synchronized that stream or called kiln_context_synchronize, and the bound input
 * and output buffers must stay valid until then. The next run on the same context waits for
 * this one before it reuses the context's memory. Engines with layers that run on the host in
 * the middle (shape arithmetic on device values) wait for the GPU there; with a layer timer set
 * the call waits as kiln_context_run does. On CPU engines the run is synchronous. */
kiln_status kiln_context_enqueue(kiln_context_t *c);
/* Waits for the context's enqueued run (and completes its timing); nothing when there is none. */
kiln_status kiln_context_synchronize(kiln_context_t *c);

/* Where the time of one kiln_context_run went, in milliseconds. */
typedef struct kiln_run_timing {
    kiln_device device; /* where the layers ran */
    double enqueue_ms;  /* host time spent inside kiln_context_run issuing the work; on the CPU the
                           run is synchronous, so this is the whole run */
    double h2d_ms;      /* copying bound host inputs to the device; 0 on the CPU (no copies) */
    double compute_ms;  /* the layers; on the CPU the whole run (binding checks included) */
    double d2h_ms;      /* copying outputs back to bound host buffers; 0 on the CPU */
} kiln_run_timing;
/* The timing of the context's last successful run (an enqueued run is waited for first).
 * INVALID_ARGUMENT before the first one. */
kiln_status kiln_context_last_timing(const kiln_context_t *c, kiln_run_timing *t);

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */
