/* cuda_exec.h — what the runtime (builder, engine, context) calls of the CUDA backend. Plain C
 * with no CUDA headers; only compiled in when KILN_HAVE_CUDA is defined. */
#ifndef KILN_CUDA_EXEC_H
#define KILN_CUDA_EXEC_H

#include "../../runtime/engine.h"

typedef struct kiln_cuda_engine kiln_cuda_engine;
typedef struct kiln_cuda_context kiln_cuda_context;
struct kiln_timing_cache;

/* The first GPU's compute capability (major*10+minor), name and multiprocessor count;
 * UNSUPPORTED when there is none. */
kiln_status kiln_cuda_device_info(int *cc, char *name, size_t name_size, int *sm_count);
/* Uploads the weights and places the nodes; sets e->gpu (and e->cuda_cc when 0). Refuses an
 * engine tuned for another GPU architecture, and (naming the nodes and why) a graph with nodes
 * that have no GPU kernel unless e->host_fallback lets them run on the host. */
kiln_status kiln_cuda_engine_create(kiln_engine *e);
void kiln_cuda_engine_free(kiln_cuda_engine *ge);
bool kiln_cuda_engine_host_node(const kiln_cuda_engine *ge, int node);
/* Why node runs on the host although it is not shape arithmetic (no GPU kernel, with host
 * fallback), or NULL. */
const char *kiln_cuda_engine_fallback(const kiln_cuda_engine *ge, int node);
/* The GPU kernel family's name for an op (kiln inspect), NULL when it has none. */
const char *kiln_cuda_op_kernel(int op);

kiln_status kiln_cuda_context_create(kiln_context_t *c);
void kiln_cuda_context_destroy(kiln_cuda_context *gc, int n_nodes, int n_inputs);
/* One run; with wait false it returns once the work is enqueued (kiln_context_enqueue). */
kiln_status kiln_cuda_context_run(kiln_context_t *c, bool wait);
/* Waits for an enqueued run and completes its timing; nothing when none is pending. */
kiln_status kiln_cuda_context_finish(kiln_context_t *c);
/* The stream the context's work goes to (a cudaStream_t); NULL: the context's own. */
kiln_status kiln_cuda_context_set_stream(kiln_context_t *c, void *stream);
/* CUDA graph replay of the node sequence, and runs without copies of inputs and outputs
 * (inputs stay on the device from the first run; outputs are left there). */
kiln_status kiln_cuda_context_set_modes(kiln_cuda_context *gc, bool cuda_graph, bool no_transfers);
/* The last run's split, in milliseconds, and how many times it waited for the GPU mid-run. */
void kiln_cuda_context_timing(const kiln_cuda_context *gc, double *h2d, double *compute, double *d2h, int *syncs);
/* Build time: the next run times the kernels that have a tune hook and writes their tactics. */
void kiln_cuda_context_set_tuning(kiln_cuda_context *gc, int *tactics_out, struct kiln_timing_cache *tc);

/* The timing cache file (--timing-cache): load (a missing file is an empty cache) and save. */
kiln_status kiln_timing_cache_open(const char *path, const char *device, struct kiln_timing_cache **out);
kiln_status kiln_timing_cache_save(struct kiln_timing_cache *tc);
void kiln_timing_cache_free(struct kiln_timing_cache *tc);
int kiln_timing_cache_hits(const struct kiln_timing_cache *tc);
int kiln_timing_cache_misses(const struct kiln_timing_cache *tc);

#endif /* KILN_CUDA_EXEC_H */
