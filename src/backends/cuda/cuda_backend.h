/* cuda_backend.h — the CUDA backend's table of ops and what a kernel gets to run.
 *
 * The backend is a table indexed by kiln_op (see src/ops/op.h). Each family of GPU kernels
 * (elementwise.c, norm.c, data.c, gemm.c ...) fills its entries in kiln_cuda_register_<family>;
 * registry.c calls them all once. An op with no entry, or whose `supports` says no, is refused
 * at build time with that reason (unless its inputs all live on the host: see exec.c).
 *
 * Host side code is C17 (these .c files); device code lives in .cu files behind the extern "C"
 * launchers of kernels.h, which hold no kiln types, so nvcc never sees kiln's C headers.
 *
 * Tensors a kernel receives: dtype and dims are on the host and fully known; data is a device
 * pointer, except for the inputs named in `host_inputs`, whose data is a host pointer (shapes,
 * axes, scales: what the op's infer also reads). Constants (weights) are on the device once per
 * engine; their host copy is in[k] too for host_inputs. Outputs are already placed (arena or
 * bound buffer): a kernel only writes out[j]->data. All work goes on r->stream, asynchronously:
 * a kernel never synchronizes (that would break CUDA graph capture). */
#ifndef KILN_CUDA_BACKEND_H
#define KILN_CUDA_BACKEND_H

#include "../../ops/op.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

typedef struct kiln_cuda_run {
    cudaStream_t stream;
    cublasLtHandle_t lt;
    cudnnHandle_t dnn;
    int sm_count, cc_major, cc_minor;
    bool tf32; /* float32 products and convolutions may use TF32 (KILN_PRECISION_TF32) */
    /* Per node, per context: a kernel's prepared state (descriptors, a chosen algorithm, packed
     * weights), kept across runs; *state_free (if set) frees it when the context goes. */
    void **state;
    void (**state_free)(void *state);
    /* The node's tactic as chosen at build time (kiln_cuda_op.tune), -1 if none. */
    int tactic;
    /* Scratch memory for this node (valid until the next kernel's call); see kiln_cuda_scratch. */
    struct kiln_cuda_scratch_pool *scratch;
} kiln_cuda_run;

/* Device scratch of at least `bytes` for the running kernel, aligned to 256 bytes. Grows (with
 * a synchronizing cudaMalloc) only when a larger size is first asked for: the first run of a
 * shape sizes it, later runs and CUDA graph replays reuse it. */
kiln_status kiln_cuda_scratch(kiln_cuda_run *r, size_t bytes, void **ptr);

/* At build time, for tactic selection: time candidate implementations on the device. */
typedef struct kiln_cuda_tune {
    cudaStream_t stream;
    bool tf32; /* as kiln_cuda_run's */
    cublasLtHandle_t lt;
    cudnnHandle_t dnn;
    struct kiln_cuda_scratch_pool *scratch;
    struct kiln_timing_cache *cache; /* key (op + shapes + dtypes + attrs, a string) -> tactic */
} kiln_cuda_tune;

/* Looks a key up in the timing cache (returns the tactic or -1) / records one. */
int kiln_timing_cache_get(struct kiln_timing_cache *tc, const char *key);
void kiln_timing_cache_put(struct kiln_timing_cache *tc, const char *key, int tactic, double ms);

typedef struct kiln_cuda_op {
    /* Build time: can this node run on the GPU with these input/output dtypes (shapes may hold
     * unknown or symbolic dims)? NULL means yes; else a short reason ("dtype int16", "mode
     * 'cubic'") that the builder puts in its error, naming the node. */
    const char *(*supports)(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out);
    /* Enqueues the node on r->stream. */
    kiln_status (*run)(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out);
    /* Optional, build time: times the node's candidate implementations at the given (profile
     * optimum) shapes, with inputs in[] filled with device data, and returns the fastest's
     * tactic number in *tactic (kept in the engine, passed back as r->tactic). */
    kiln_status (*tune)(kiln_cuda_tune *t, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out, int *tactic);
    /* Bit k set: input k is read on the host (its data is a host pointer). */
    uint32_t host_inputs;
    /* A short kernel name for kiln inspect ("cublasLt", "cudnn", "elementwise"...). */
    const char *kernel;
} kiln_cuda_op;

/* The table, filled once (thread-safe). Entries with run == NULL: no GPU kernel. */
const kiln_cuda_op *kiln_cuda_ops(void);

/* Each family fills its ops' entries. */
void kiln_cuda_register_elementwise(kiln_cuda_op *table);
void kiln_cuda_register_norm(kiln_cuda_op *table);
void kiln_cuda_register_data(kiln_cuda_op *table);
void kiln_cuda_register_gemm(kiln_cuda_op *table);

/* Applies a fused activation in place on a float tensor on the device (elementwise family);
 * kernels that cannot fuse an activation into their own epilogue call this after their work. */
kiln_status kiln_cuda_apply_act(kiln_cuda_run *r, const kiln_node *n, const kiln_act *a, kiln_tensor *t);

/* CUDA / cuBLASLt / cuDNN errors as kiln errors naming the node (n may be NULL). */
kiln_status kiln_cuda_check(cudaError_t e, const kiln_node *n, const char *what);
kiln_status kiln_cublas_check(cublasStatus_t s, const kiln_node *n, const char *what);
kiln_status kiln_cudnn_check(cudnnStatus_t s, const kiln_node *n, const char *what);

/* The kernels' element type for a kiln dtype (KILN_CT_* of kernels.h), -1 if none. */
int kiln_cuda_ctype(kiln_dtype t);

#endif /* KILN_CUDA_BACKEND_H */
