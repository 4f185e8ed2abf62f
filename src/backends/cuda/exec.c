/* exec.c — the CUDA executor: a "cuda" engine's weights on the device, and runs of a context.
 *
 * Placement. Every node runs either on the GPU (its kiln_cuda_op) or on the host (its reference
 * kernel). A node runs on the host when it only does shape arithmetic: Shape and Size, and any
 * node whose inputs all live on the host (constants and host outputs) and whose outputs are
 * small (HOST_MAX_BYTES in every profile, or sized by data and not floats: index and shape
 * math). A node with host inputs and a large output (a positional table sliced by the input's
 * length, a product of two constants, an Expand to a shape known only at run time) runs on the
 * GPU, or on the host when it has no GPU kernel. Everything else must
 * have a GPU kernel that accepts it, or the build is refused naming the node and the reason;
 * with host fallback (kiln build --host-fallback, like ONNX Runtime's CPU fallback) such a node
 * runs on the host instead, its reason kept for kiln inspect.
 * A value lives where its producer ran; constants live in both places (uploaded once per
 * engine). Graph inputs are copied to the device at the start of a run; graph outputs back at
 * the end. A value needed on the other side is copied when first needed in a run (a device
 * value read on the host costs a synchronization: kiln inspect shows where that happens).
 *
 * Memory. Device values take the engine's memory plan (the same offsets as the CPU arena) in one
 * cudaMalloc per context; values whose size depends on data get their own allocation per run.
 * Graph inputs have their own buffers sized for the largest profile. Nothing else is allocated
 * while running, except scratch that grows the first time a larger size is asked for. */
#include "../../runtime/context.h"
#include "cuda_exec.h"
#include "internal.h"
#include "kernels.h"

#include <math.h>
#include <string.h>
#include <time.h>

struct kiln_cuda_engine {
    int device;
    void *weights;        /* one allocation for every constant */
    void **dev;           /* per value: a constant's device copy */
    bool *host_node;      /* per node: runs its reference kernel on the host */
    char **fallback;      /* per node: why it has no GPU kernel, when it runs on the host for that */
    char name[96];        /* the GPU's name */
    int cc;               /* compute capability, major * 10 + minor */
    int sm_count;
    int n_nodes;
};

typedef struct gslot {
    kiln_tensor t;  /* dtype and shape as of this run; t.data unused */
    void *dev, *host;
    bool dev_ok, host_ok;
    bool dev_heap, host_heap; /* allocated for this run: freed at the next */
    bool dev_made;            /* computed on the device this run (its device copy is the value) */
} gslot;

struct kiln_cuda_context {
    kiln_cuda_engine *ge;
    cudaStream_t stream;  /* where the work goes: own_stream, or the caller's (kiln_context_set_cuda_stream) */
    cudaStream_t own_stream;
    bool pending;         /* an enqueued run not waited for yet (kiln_context_enqueue) */
    cublasLtHandle_t lt;
    cudnnHandle_t dnn;
    uint8_t *arena;
    uint64_t arena_bytes;
    void **in_dev;        /* per graph input: its device buffer */
    size_t *in_dev_bytes;
    gslot *gs;            /* per plan slot */
    void **node_state;    /* per node: the kernel's prepared state */
    void (**node_state_free)(void *);
    kiln_cuda_scratch_pool scratch;
    cudaEvent_t ev[4];    /* run start, inputs copied, compute done, outputs copied */
    float ms_h2d, ms_compute, ms_d2h;
    int n_syncs;          /* device-to-host copies in the middle of the last run */
    cudaEvent_t *layer_ev; /* per node + 1, when a layer timer is set */
    bool layer_events_recorded; /* the last run recorded them (a graph replay does not) */
    /* CUDA graph replay (kiln_context_set_cuda_graph): the captured node sequence, valid while
     * the profile and input shapes stay those it was captured with */
    bool use_graph, no_transfers, inputs_on_device;
    cudaGraphExec_t graph;
    int graph_profile;
    int64_t *graph_dims;  /* per input: rank then dims, as captured */
    /* build-time tuning: time kernels and write tactics into the engine */
    bool tuning;
    int *tactics_out;
    struct kiln_timing_cache *timing;
};

/* ---- engine ---- */

static kiln_status cuda_ok(cudaError_t e, const char *what) { return kiln_cuda_check(e, NULL, what); }

static bool is_shape_op(int op) { return op == KILN_OP_Shape || op == KILN_OP_Size; }

kiln_status kiln_cuda_device_info(int *cc, char *name, size_t name_size, int *sm_count) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "no CUDA GPU is usable here (%s)",
                          err != cudaSuccess ? cudaGetErrorString(err) : "the driver reports 0 devices");
    struct cudaDeviceProp p;
    KILN_TRY(cuda_ok(cudaGetDeviceProperties(&p, 0), "reading the GPU's properties"));
    *cc = p.major * 10 + p.minor;
    if (name) snprintf(name, name_size, "%s", p.name);
    if (sm_count) *sm_count = p.multiProcessorCount;
    return KILN_STATUS_OK;
}

/* Why node n cannot run on the GPU, or NULL when a GPU kernel takes it. */
static const char *gpu_refusal(const kiln_graph *g, const kiln_node *n) {
    const kiln_cuda_op *op = &kiln_cuda_ops()[n->op];
    if (!op->run) return "no GPU kernel";
    if (n->n_inputs > 256 || n->n_outputs > 64) return "too many inputs or outputs";
    if (!op->supports) return NULL;
    kiln_tensor *in[256];
    kiln_tensor out[64];
    for (int k = 0; k < n->n_inputs; k++) in[k] = n->inputs[k] >= 0 ? &g->values[n->inputs[k]].type : NULL;
    for (int j = 0; j < n->n_outputs; j++) {
        if (n->outputs[j] >= 0) out[j] = g->values[n->outputs[j]].type;
        else memset(&out[j], 0, sizeof out[j]), out[j].rank = -1;
    }
    return op->supports(n, in, out);
}

/* Outputs of host-input nodes up to this size are computed on the host (see Placement). */
#define HOST_MAX_BYTES 65536

/* Whether node n's outputs are small enough for the host in every profile: planned at most
 * HOST_MAX_BYTES, or sized by data (NonZero, Range of a computed length), not floats, and not
 * made by an op that multiplies its input's size by a shape (Expand, Tile, ConstantOfShape:
 * Faster R-CNN's RoI pooling expands a few hundred box indices to [boxes, 256, 7, 7], 100 MB of
 * int64 that took 150 ms on the host and as long again to copy to the GPU). */
static bool small_outputs(const kiln_engine *e, const kiln_node *n) {
    if (n->op == KILN_OP_Expand || n->op == KILN_OP_Tile || n->op == KILN_OP_ConstantOfShape) {
        for (int j = 0; j < n->n_outputs; j++)
            for (int p = 0; n->outputs[j] >= 0 && p < e->n_profiles; p++)
                if (e->profiles[p].plan.slots[n->outputs[j]].offset == KILN_PLAN_DYNAMIC) return false;
    }
    for (int j = 0; j < n->n_outputs; j++) {
        int v = n->outputs[j];
        if (v < 0) continue;
        for (int p = 0; p < e->n_profiles; p++) {
            const kiln_slot_plan *sp = &e->profiles[p].plan.slots[v];
            if (sp->offset == KILN_PLAN_DYNAMIC ? kiln_dtype_is_float(e->model.graph->values[v].type.dtype)
                                                : sp->bytes > HOST_MAX_BYTES)
                return false;
        }
    }
    return true;
}

/* Which nodes run on the host, and whether every other node has a GPU kernel. With fallback
 * (non-NULL: per node, the reason it has no GPU kernel, copied) a node without one runs on the
 * host; without, the graph is refused naming the first few such nodes. */
static kiln_status place_nodes(const kiln_engine *e, bool *host_node, char **fallback) {
    const kiln_graph *g = e->model.graph;
    bool *host_val = kiln_calloc((size_t)(g->n_values ? g->n_values : 1), sizeof(bool));
    if (!host_val) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int v = 0; v < g->n_values; v++) host_val[v] = (g->values[v].flags & KILN_VALUE_CONST) && !(g->values[v].flags & KILN_VALUE_INPUT);
    char first[512] = "";
    int refused = 0;
    kiln_status s = KILN_STATUS_OK;
    for (int i = 0; i < g->n_nodes && s == KILN_STATUS_OK; i++) {
        const kiln_node *n = &g->nodes[i];
        bool all_host = n->n_inputs > 0;
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0 && !host_val[n->inputs[k]]) all_host = false;
        host_node[i] = is_shape_op(n->op) || (all_host && small_outputs(e, n));
        const char *why = host_node[i] ? NULL : gpu_refusal(g, n);
        if (why && all_host) {
            host_node[i] = true; /* no GPU kernel, but nothing to copy over either */
        } else if (why && fallback) {
            host_node[i] = true;
            if (!(fallback[i] = kiln_strdup(why))) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        } else if (why && refused++ == 0) {
            snprintf(first, sizeof first, "node '%s' (%s): %s", n->name, kiln_op_name(n->op), why);
        } else if (why && refused <= 4) {
            size_t l = strlen(first);
            snprintf(first + l, sizeof first - l, "; node '%s' (%s): %s", n->name, kiln_op_name(n->op), why);
        }
        if (host_node[i])
            for (int j = 0; j < n->n_outputs; j++)
                if (n->outputs[j] >= 0) host_val[n->outputs[j]] = true;
    }
    free(host_val);
    if (s == KILN_STATUS_OK && refused)
        s = kiln_error(KILN_STATUS_UNSUPPORTED, "%d node%s cannot run on the GPU: %s%s (--host-fallback runs such nodes on the CPU)",
                       refused, refused > 1 ? "s" : "", first, refused > 4 ? "; ..." : "");
    return s;
}

void kiln_cuda_engine_free(kiln_cuda_engine *ge) {
    if (!ge) return;
    if (ge->weights) cudaFree(ge->weights);
    free(ge->dev);
    for (int i = 0; ge->fallback && i < ge->n_nodes; i++) free(ge->fallback[i]);
    free(ge->fallback);
    free(ge->host_node);
    free(ge);
}

kiln_status kiln_cuda_engine_create(kiln_engine *e) {
    const kiln_graph *g = e->model.graph;
    kiln_cuda_engine *ge = kiln_calloc(1, sizeof *ge);
    if (!ge) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status s = kiln_cuda_device_info(&ge->cc, ge->name, sizeof ge->name, &ge->sm_count);
    if (s == KILN_STATUS_OK && e->cuda_cc && e->cuda_cc != ge->cc)
        s = kiln_error(KILN_STATUS_UNSUPPORTED, "the engine was built and tuned for sm_%d (%s); this GPU is sm_%d (%s): rebuild it here",
                       e->cuda_cc, e->device, ge->cc, ge->name);
    ge->dev = kiln_calloc((size_t)(g->n_values ? g->n_values : 1), sizeof(void *));
    ge->n_nodes = g->n_nodes;
    ge->host_node = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(bool));
    if (e->host_fallback) ge->fallback = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(char *));
    if (s == KILN_STATUS_OK && (!ge->dev || !ge->host_node || (e->host_fallback && !ge->fallback)))
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (s == KILN_STATUS_OK) s = place_nodes(e, ge->host_node, ge->fallback);
    /* every constant in one allocation, 256-byte aligned */
    size_t total = 0;
    for (int v = 0; s == KILN_STATUS_OK && v < g->n_values; v++)
        if ((g->values[v].flags & KILN_VALUE_CONST) && g->values[v].type.data) total += (kiln_tensor_bytes(&g->values[v].type) + 255) / 256 * 256;
    if (s == KILN_STATUS_OK && total) {
        cudaError_t err = cudaMalloc(&ge->weights, total);
        if (err != cudaSuccess) {
            ge->weights = NULL;
            s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes of GPU memory for the weights: %s", total, cudaGetErrorString(err));
        }
    }
    size_t off = 0;
    for (int v = 0; s == KILN_STATUS_OK && v < g->n_values; v++) {
        const kiln_tensor *t = &g->values[v].type;
        if (!(g->values[v].flags & KILN_VALUE_CONST) || !t->data) continue;
        size_t bytes = kiln_tensor_bytes(t);
        ge->dev[v] = (uint8_t *)ge->weights + off;
        if (bytes) s = cuda_ok(cudaMemcpy(ge->dev[v], t->data, bytes, cudaMemcpyHostToDevice), "uploading the weights");
        off += (bytes + 255) / 256 * 256;
    }
    if (s != KILN_STATUS_OK) {
        kiln_cuda_engine_free(ge);
        return s;
    }
    e->gpu = ge;
    if (!e->cuda_cc) e->cuda_cc = ge->cc;
    return KILN_STATUS_OK;
}

bool kiln_cuda_engine_host_node(const kiln_cuda_engine *ge, int node) { return ge && ge->host_node[node]; }

const char *kiln_cuda_engine_fallback(const kiln_cuda_engine *ge, int node) {
    return ge && ge->fallback ? ge->fallback[node] : NULL;
}

/* ---- context ---- */

void kiln_cuda_context_destroy(kiln_cuda_context *gc, int n_nodes, int n_inputs) {
    if (!gc) return;
    if (gc->stream) cudaStreamSynchronize(gc->stream); /* an enqueued run included */
    for (int i = 0; gc->node_state && i < n_nodes; i++)
        if (gc->node_state[i] && gc->node_state_free[i]) gc->node_state_free[i](gc->node_state[i]);
    for (int i = 0; gc->in_dev && i < n_inputs; i++)
        if (gc->in_dev[i]) cudaFree(gc->in_dev[i]);
    kiln_cuda_scratch_free(&gc->scratch);
    if (gc->arena) cudaFree(gc->arena);
    for (int k = 0; k < 4; k++)
        if (gc->ev[k]) cudaEventDestroy(gc->ev[k]);
    for (int i = 0; gc->layer_ev && i <= n_nodes; i++)
        if (gc->layer_ev[i]) cudaEventDestroy(gc->layer_ev[i]);
    free(gc->layer_ev);
    if (gc->graph) cudaGraphExecDestroy(gc->graph);
    free(gc->graph_dims);
    if (gc->lt) cublasLtDestroy(gc->lt);
    if (gc->dnn) cudnnDestroy(gc->dnn);
    if (gc->own_stream) cudaStreamDestroy(gc->own_stream); /* never the caller's */
    free(gc->in_dev);
    free(gc->in_dev_bytes);
    free(gc->gs);
    free(gc->node_state);
    free(gc->node_state_free);
    free(gc);
}

/* The most bytes graph input i takes in any profile. */
static size_t input_max_bytes(const kiln_engine *e, int i) {
    const kiln_value *v = &e->model.graph->values[e->model.graph->inputs[i]];
    size_t best = 0;
    for (int p = 0; p < e->n_profiles; p++) {
        const kiln_profile_dims *d = &e->profiles[p].inputs[i];
        kiln_tensor t = v->type;
        if (d->rank >= 0) {
            t.rank = d->rank;
            memcpy(t.dims, d->max, sizeof(int64_t) * (size_t)d->rank);
        }
        if (!kiln_shape_known(&t)) continue;
        size_t b = kiln_tensor_bytes(&t);
        if (b > best) best = b;
    }
    return best;
}

kiln_status kiln_cuda_context_create(kiln_context_t *c) {
    const kiln_engine *e = c->e;
    const kiln_graph *g = e->model.graph;
    kiln_cuda_context *gc = kiln_calloc(1, sizeof *gc);
    if (!gc) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    c->gpu = gc;
    gc->ge = e->gpu;
    if (!gc->ge) return kiln_error(KILN_STATUS_INTERNAL, "a cuda engine without its device state");
    KILN_TRY(cuda_ok(cudaSetDevice(gc->ge->device), "selecting the GPU"));
    KILN_TRY(cuda_ok(cudaStreamCreateWithFlags(&gc->own_stream, cudaStreamNonBlocking), "creating a stream"));
    gc->stream = gc->own_stream;
    /* the library handles cost time to create: only when the graph has ops that use them */
    bool need_lt = false, need_dnn = false;
    for (int i = 0; i < g->n_nodes; i++) {
        if (gc->ge->host_node[i]) continue;
        switch (g->nodes[i].op) {
        case KILN_OP_Conv: case KILN_OP_ConvTranspose: case KILN_OP_QLinearConv: case KILN_OP_ConvInteger:
            need_dnn = need_lt = true; /* an int8 conv may run as a GEMM */
            break;
        case KILN_OP_MatMul: case KILN_OP_Gemm: case KILN_OP_FusedMatMul: case KILN_OP_QLinearMatMul: case KILN_OP_MatMulInteger:
        case KILN_OP_Attention: case KILN_OP_Einsum:
            need_lt = true;
            break;
        default: break;
        }
    }
    if (need_lt) KILN_TRY(kiln_cublas_check(cublasLtCreate(&gc->lt), NULL, "creating the cuBLASLt handle"));
    if (need_dnn) {
        KILN_TRY(kiln_cudnn_check(cudnnCreate(&gc->dnn), NULL, "creating the cuDNN handle"));
        KILN_TRY(kiln_cudnn_check(cudnnSetStream(gc->dnn, gc->stream), NULL, "binding cuDNN to the stream"));
    }
    for (int k = 0; k < 4; k++) KILN_TRY(cuda_ok(cudaEventCreate(&gc->ev[k]), "creating events"));
    gc->gs = kiln_calloc((size_t)(c->n_slots ? c->n_slots : 1), sizeof(gslot));
    gc->node_state = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(void *));
    gc->node_state_free = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(void *));
    gc->in_dev = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof(void *));
    gc->in_dev_bytes = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof(size_t));
    if (!gc->gs || !gc->node_state || !gc->node_state_free || !gc->in_dev || !gc->in_dev_bytes)
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    gc->arena_bytes = c->arena_bytes;
    if (gc->arena_bytes) {
        cudaError_t err = cudaMalloc((void **)&gc->arena, gc->arena_bytes);
        if (err != cudaSuccess) {
            gc->arena = NULL;
            return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "cannot allocate the context's %llu-byte GPU arena: %s",
                              (unsigned long long)gc->arena_bytes, cudaGetErrorString(err));
        }
    }
    for (int i = 0; i < g->n_inputs; i++) {
        size_t b = input_max_bytes(e, i);
        if (!b) continue;
        cudaError_t err = cudaMalloc(&gc->in_dev[i], b);
        if (err != cudaSuccess) {
            gc->in_dev[i] = NULL;
            return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes of GPU memory for input '%s'", b,
                              g->values[g->inputs[i]].name);
        }
        gc->in_dev_bytes[i] = b;
    }
    return KILN_STATUS_OK;
}

static void free_run_memory(kiln_context_t *c) {
    kiln_cuda_context *gc = c->gpu;
    for (int i = 0; i < c->n_slots; i++) {
        gslot *s = &gc->gs[i];
        if (s->dev_heap && s->dev) cudaFree(s->dev);
        if (s->host_heap && s->host) free(s->host);
        memset(s, 0, sizeof *s);
    }
}

/* Host memory for a slot's copy (freed at the next run). */
static kiln_status host_buffer(gslot *s, size_t bytes) {
    s->host = malloc(bytes ? bytes : 1);
    if (!s->host) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory (%zu bytes)", bytes);
    s->host_heap = true;
    return KILN_STATUS_OK;
}

/* Device memory for slot sl: its planned arena place, or an allocation for this run. */
static kiln_status device_place(kiln_context_t *c, int sl, size_t bytes, const kiln_node *n) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_slot_plan *sp = &c->e->profiles[c->profile].plan.slots[sl];
    gslot *s = &gc->gs[sl];
    if (sp->offset >= 0) {
        if (bytes > sp->bytes) {
            char d[160];
            return kiln_node_error(n, KILN_STATUS_RUNTIME_ERROR,
                                   "output %s needs %zu bytes but profile %d planned %llu: the input shapes lead outside the profile",
                                   kiln_tensor_describe(&s->t, d, sizeof d), bytes, c->profile, (unsigned long long)sp->bytes);
        }
        s->dev = gc->arena + sp->offset;
        return KILN_STATUS_OK;
    }
    cudaError_t err = cudaMalloc(&s->dev, bytes ? bytes : 256);
    if (err != cudaSuccess) {
        s->dev = NULL;
        return kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes of GPU memory: %s", bytes, cudaGetErrorString(err));
    }
    s->dev_heap = true;
    return KILN_STATUS_OK;
}

static kiln_status ensure_host(kiln_context_t *c, int sl, const kiln_node *n) {
    kiln_cuda_context *gc = c->gpu;
    gslot *s = &gc->gs[sl];
    if (s->host_ok) return KILN_STATUS_OK;
    if (!s->dev_ok) return kiln_node_error(n, KILN_STATUS_INTERNAL, "an input (slot %d) was never computed", sl);
    size_t bytes = kiln_tensor_bytes(&s->t);
    KILN_TRY(host_buffer(s, bytes));
    if (bytes) {
        KILN_TRY(kiln_cuda_check(cudaMemcpyAsync(s->host, s->dev, bytes, cudaMemcpyDeviceToHost, gc->stream), n, "copying to the host"));
        KILN_TRY(kiln_cuda_check(cudaStreamSynchronize(gc->stream), n, "running the kernels before this node"));
    }
    gc->n_syncs++;
    s->host_ok = true;
    return KILN_STATUS_OK;
}

static kiln_status ensure_device(kiln_context_t *c, int sl, const kiln_node *n) {
    kiln_cuda_context *gc = c->gpu;
    gslot *s = &gc->gs[sl];
    if (s->dev_ok) return KILN_STATUS_OK;
    if (!s->host_ok) return kiln_node_error(n, KILN_STATUS_INTERNAL, "an input (slot %d) was never computed", sl);
    size_t bytes = kiln_tensor_bytes(&s->t);
    KILN_TRY(device_place(c, sl, bytes, n));
    if (bytes) KILN_TRY(kiln_cuda_check(cudaMemcpyAsync(s->dev, s->host, bytes, cudaMemcpyHostToDevice, gc->stream), n, "copying to the GPU"));
    s->dev_ok = true;
    return KILN_STATUS_OK;
}

/* Shapes of the node's outputs: infer sees host data where it is free (constants, host values)
 * and none for device-only values; when that leaves a shape unknown, small device inputs are
 * brought over and it tries again. */
static kiln_status infer_outputs(kiln_context_t *c, int i, kiln_tensor *out) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_node *n = &c->e->model.graph->nodes[i];
    const kiln_op_def *op = &kiln_op_table[n->op];
    kiln_tensor view[256], *in[256];
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < n->n_inputs; k++) {
            in[k] = NULL;
            if (n->inputs[k] < 0) continue;
            gslot *s = &gc->gs[n->inputs[k]];
            view[k] = s->t;
            view[k].data = s->host_ok ? s->host : NULL;
            view[k].flags = 0;
            in[k] = &view[k];
        }
        for (int j = 0; j < n->n_outputs; j++) {
            memset(&out[j], 0, sizeof out[j]);
            out[j].rank = -1;
        }
        KILN_TRY(op->infer(n, in, out));
        bool known = true;
        for (int j = 0; j < n->n_outputs; j++) known &= out[j].rank >= 0 && kiln_shape_known(&out[j]);
        if (known) return KILN_STATUS_OK;
        if (pass == 1) break;
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0 && !gc->gs[n->inputs[k]].host_ok && kiln_tensor_bytes(&gc->gs[n->inputs[k]].t) <= 65536)
                KILN_TRY(ensure_host(c, n->inputs[k], n));
    }
    return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "the output shape depends on data this executor cannot read on the host");
}

static kiln_status run_host_node(kiln_context_t *c, int i) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    const kiln_node *n = &g->nodes[i];
    kiln_tensor view[256], *in[256], out[64];
    for (int k = 0; k < n->n_inputs; k++) {
        in[k] = NULL;
        if (n->inputs[k] < 0) continue;
        gslot *s = &gc->gs[n->inputs[k]];
        /* Shape and Size read only the shape */
        if (!is_shape_op(n->op)) KILN_TRY(ensure_host(c, n->inputs[k], n));
        view[k] = s->t;
        view[k].data = s->host_ok ? s->host : NULL;
        view[k].flags = 0;
        in[k] = &view[k];
    }
    const kiln_op_def *op = &kiln_op_table[n->op];
    for (int j = 0; j < n->n_outputs; j++) {
        memset(&out[j], 0, sizeof out[j]);
        out[j].rank = -1;
    }
    KILN_TRY(op->infer(n, in, out));
    for (int j = 0; j < n->n_outputs; j++)
        if (out[j].rank >= 0 && kiln_shape_known(&out[j])) KILN_TRY(kiln_tensor_alloc(&out[j], out[j].dtype, out[j].rank, out[j].dims));
    kiln_status s = op->ref(n, in, out);
    if (s == KILN_STATUS_OK && n->act.kind != KILN_ACT_NONE && out[0].data) kiln_act_apply(&n->act, &out[0]);
    for (int j = 0; j < n->n_outputs; j++) {
        if (s == KILN_STATUS_OK && (out[j].rank < 0 || (!out[j].data && !kiln_shape_known(&out[j]))))
            s = kiln_node_error(n, KILN_STATUS_INTERNAL, "output %d was not produced", j);
        if (s == KILN_STATUS_OK && !out[j].data) s = kiln_tensor_alloc(&out[j], out[j].dtype, out[j].rank, out[j].dims);
        if (s != KILN_STATUS_OK) {
            kiln_tensor_release(&out[j]);
            continue;
        }
        gslot *d = &gc->gs[kiln_slot_of(&c->map, i, j)];
        d->t = out[j];
        d->t.data = NULL;
        d->t.flags = 0;
        /* the tensor's owned buffer becomes the slot's host copy */
        d->host = out[j].data;
        d->host_heap = (out[j].flags & KILN_TENSOR_OWNS_DATA) != 0;
        d->host_ok = true;
    }
    return s;
}

static kiln_status run_device_node(kiln_context_t *c, int i) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    const kiln_node *n = &g->nodes[i];
    const kiln_cuda_op *kop = &kiln_cuda_ops()[n->op];
    kiln_tensor out[64];
    KILN_TRY(infer_outputs(c, i, out));
    bool alias = kiln_op_alias(n->op);
    uint32_t host_mask = alias ? ~1u : kop->host_inputs;
    kiln_tensor view[256], *in[256];
    for (int k = 0; k < n->n_inputs; k++) {
        in[k] = NULL;
        if (n->inputs[k] < 0) continue;
        bool on_host = k < 32 && (host_mask >> k & 1u);
        KILN_TRY(on_host ? ensure_host(c, n->inputs[k], n) : ensure_device(c, n->inputs[k], n));
        gslot *s = &gc->gs[n->inputs[k]];
        view[k] = s->t;
        view[k].data = on_host ? s->host : s->dev;
        view[k].flags = 0;
        in[k] = &view[k];
    }
    for (int j = 0; j < n->n_outputs; j++) {
        int sl = kiln_slot_of(&c->map, i, j);
        gslot *s = &gc->gs[sl];
        s->t = out[j];
        s->t.data = NULL;
        s->t.flags = 0;
        size_t bytes = kiln_tensor_bytes(&out[j]);
        /* an alias op planned in place shares its input's memory: nothing to do */
        if (alias && j == 0 && in[0] && n->inputs[0] >= 0) {
            const kiln_slot_plan *pi = &c->e->profiles[c->profile].plan.slots[n->inputs[0]];
            const kiln_slot_plan *po = &c->e->profiles[c->profile].plan.slots[sl];
            if (pi->offset >= 0 && pi->offset == po->offset && gc->gs[n->inputs[0]].dev == gc->arena + pi->offset) {
                s->dev = in[0]->data;
                s->dev_ok = s->dev_made = true;
                continue;
            }
        }
        KILN_TRY(device_place(c, sl, bytes, n));
        out[j].data = s->dev;
        s->dev_ok = s->dev_made = true;
    }
    if (alias) {
        gslot *s = &gc->gs[kiln_slot_of(&c->map, i, 0)];
        size_t bytes = kiln_tensor_bytes(&s->t);
        if (s->dev != in[0]->data && bytes)
            KILN_TRY(kiln_cuda_check(cudaMemcpyAsync(s->dev, in[0]->data, bytes, cudaMemcpyDeviceToDevice, gc->stream), n, "copying"));
        return KILN_STATUS_OK;
    }
    kiln_cuda_run r = {
        .stream = gc->stream, .lt = gc->lt, .dnn = gc->dnn, .sm_count = gc->ge->sm_count,
        .cc_major = gc->ge->cc / 10, .cc_minor = gc->ge->cc % 10,
        .state = &gc->node_state[i], .state_free = &gc->node_state_free[i],
        .tactic = c->e->tactics ? c->e->tactics[i] : -1, .scratch = &gc->scratch,
        .tf32 = (c->e->precisions & KILN_PRECISION_TF32) != 0,
    };
    if (gc->tuning && kop->tune) {
        kiln_cuda_tune t = {.stream = gc->stream, .lt = gc->lt, .dnn = gc->dnn, .scratch = &gc->scratch, .cache = gc->timing,
                            .tf32 = r.tf32};
        int tactic = -1;
        KILN_TRY(kop->tune(&t, n, in, out, &tactic));
        gc->tactics_out[i] = tactic;
        r.tactic = tactic;
    }
    return kop->run(&r, n, in, out);
}

static kiln_status run_nodes(kiln_context_t *c) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    for (int i = 0; i < g->n_nodes; i++) {
        kiln_status s = gc->ge->host_node[i] ? run_host_node(c, i) : run_device_node(c, i);
        if (s != KILN_STATUS_OK) return s;
        if (gc->layer_ev) KILN_TRY(kiln_cuda_check(cudaEventRecord(gc->layer_ev[i + 1], gc->stream), &g->nodes[i], "recording an event"));
    }
    return KILN_STATUS_OK;
}

/* A graph may be captured when the whole run stays on the device: no host nodes, no values
 * allocated per run, no copies in the middle. */
static bool graph_capturable(const kiln_context_t *c) {
    const kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    for (int i = 0; i < g->n_nodes; i++)
        if (gc->ge->host_node[i]) return false;
    for (int i = 0; i < c->n_slots; i++)
        if (gc->gs[i].dev_heap) return false;
    return gc->n_syncs == 0 && !gc->layer_ev && !gc->tuning;
}

static bool graph_matches(const kiln_context_t *c) {
    const kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    if (!gc->graph || gc->graph_profile != c->profile) return false;
    const int64_t *d = gc->graph_dims;
    for (int i = 0; i < g->n_inputs; i++, d += KILN_MAX_RANK + 1) {
        const binding *b = &c->inputs[i];
        if (!b->data) continue;
        if (d[0] != b->rank || memcmp(d + 1, b->dims, sizeof(int64_t) * (size_t)b->rank) != 0) return false;
    }
    return true;
}

static kiln_status capture_graph(kiln_context_t *c) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    if (gc->graph) {
        cudaGraphExecDestroy(gc->graph);
        gc->graph = NULL;
    }
    cudaGraph_t graph = NULL;
    KILN_TRY(cuda_ok(cudaStreamBeginCapture(gc->stream, cudaStreamCaptureModeThreadLocal), "starting a CUDA graph capture"));
    kiln_status s = run_nodes(c);
    cudaError_t err = cudaStreamEndCapture(gc->stream, &graph);
    if (s == KILN_STATUS_OK) s = cuda_ok(err, "capturing the run as a CUDA graph");
    if (s == KILN_STATUS_OK) s = cuda_ok(cudaGraphInstantiate(&gc->graph, graph, 0), "instantiating the CUDA graph");
    if (graph) cudaGraphDestroy(graph);
    if (s != KILN_STATUS_OK) return s;
    if (!gc->graph_dims) gc->graph_dims = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1) * (KILN_MAX_RANK + 1), sizeof(int64_t));
    if (!gc->graph_dims) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    int64_t *d = gc->graph_dims;
    for (int i = 0; i < g->n_inputs; i++, d += KILN_MAX_RANK + 1) {
        d[0] = c->inputs[i].rank;
        memcpy(d + 1, c->inputs[i].dims, sizeof(int64_t) * KILN_MAX_RANK);
    }
    gc->graph_profile = c->profile;
    return KILN_STATUS_OK;
}

static double host_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Binds the graph inputs for this run: shapes from the bindings, data copied to the device
 * (skipped after the first run with no_transfers: the data stays on the device). */
static kiln_status upload_inputs(kiln_context_t *c) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    for (int i = 0; i < g->n_inputs; i++) {
        const kiln_value *v = &g->values[g->inputs[i]];
        binding *b = &c->inputs[i];
        gslot *s = &gc->gs[g->inputs[i]];
        if (!b->data) {
            if (v->flags & KILN_VALUE_CONST) continue; /* keeps its default */
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' is not bound", v->name);
        }
        if (!b->has_shape) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has a dynamic shape: set it with kiln_context_set_input_shape", v->name);
        memset(s, 0, sizeof *s);
        s->t.dtype = v->type.dtype;
        s->t.rank = b->rank;
        memcpy(s->t.dims, b->dims, sizeof(int64_t) * (size_t)b->rank);
        size_t bytes = kiln_tensor_bytes(&s->t);
        if (bytes > b->bytes)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' needs %zu bytes, its buffer has %zu", v->name, bytes, b->bytes);
        if (bytes > gc->in_dev_bytes[i])
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' needs %zu bytes, more than its profiles allow", v->name, bytes);
        s->host = b->data;
        s->host_ok = true;
        s->dev = gc->in_dev[i];
        if (bytes && !(gc->no_transfers && gc->inputs_on_device))
            KILN_TRY(cuda_ok(cudaMemcpyAsync(s->dev, s->host, bytes, cudaMemcpyHostToDevice, gc->stream), "copying the inputs to the GPU"));
        s->dev_ok = true;
    }
    gc->inputs_on_device = true;
    return KILN_STATUS_OK;
}

/* Graph outputs to their bound host buffers (or to buffers of the context when unbound). */
static kiln_status download_outputs(kiln_context_t *c) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    for (int j = 0; j < g->n_outputs; j++) {
        int v = g->outputs[j];
        gslot *s = &gc->gs[v];
        binding *b = &c->outputs[j];
        size_t bytes = kiln_tensor_bytes(&s->t);
        if (b->data && bytes > b->bytes)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "output '%s' needs %zu bytes, its bound buffer has %zu", g->values[v].name, bytes, b->bytes);
        void *dst = b->data;
        if (!dst) {
            if (!s->host || (!s->host_heap && s->dev_made)) KILN_TRY(host_buffer(s, bytes));
            dst = s->host;
        }
        if (s->dev_made) {
            if (bytes && !gc->no_transfers)
                KILN_TRY(cuda_ok(cudaMemcpyAsync(dst, s->dev, bytes, cudaMemcpyDeviceToHost, gc->stream), "copying the outputs to the host"));
        } else if (dst != s->host && bytes) {
            memcpy(dst, s->host, bytes);
        }
        c->slots[v] = s->t;
        c->slots[v].data = dst;
        c->slots[v].flags = 0;
    }
    return KILN_STATUS_OK;
}

/* Waits for an enqueued run and fills in its timing (and the layer timer's calls). */
kiln_status kiln_cuda_context_finish(kiln_context_t *c) {
    kiln_cuda_context *gc = c->gpu;
    if (!gc->pending) return KILN_STATUS_OK;
    gc->pending = false;
    KILN_TRY(cuda_ok(cudaStreamSynchronize(gc->stream), "running the engine"));
    cudaEventElapsedTime(&gc->ms_h2d, gc->ev[0], gc->ev[1]);
    cudaEventElapsedTime(&gc->ms_compute, gc->ev[1], gc->ev[2]);
    cudaEventElapsedTime(&gc->ms_d2h, gc->ev[2], gc->ev[3]);
    c->timing.h2d_ms = gc->ms_h2d;
    c->timing.compute_ms = gc->ms_compute;
    c->timing.d2h_ms = gc->ms_d2h;
    const kiln_graph *g = c->e->model.graph;
    if (c->layer_timer && gc->layer_ev && gc->layer_events_recorded)
        for (int i = 0; i < g->n_nodes; i++) {
            float ms = 0;
            cudaEventElapsedTime(&ms, gc->layer_ev[i], gc->layer_ev[i + 1]);
            c->layer_timer(c->layer_timer_user, i, g->nodes[i].name, kiln_op_name(g->nodes[i].op), ms);
        }
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_context_set_stream(kiln_context_t *c, void *stream) {
    kiln_cuda_context *gc = c->gpu;
    KILN_TRY(kiln_cuda_context_finish(c)); /* a run enqueued on the old stream ends there */
    gc->stream = stream ? (cudaStream_t)stream : gc->own_stream;
    if (gc->dnn) KILN_TRY(kiln_cudnn_check(cudnnSetStream(gc->dnn, gc->stream), NULL, "binding cuDNN to the stream"));
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_context_run(kiln_context_t *c, bool wait) {
    kiln_cuda_context *gc = c->gpu;
    const kiln_graph *g = c->e->model.graph;
    /* the previous run (an enqueued one too) must be over before its memory is reused */
    KILN_TRY(kiln_cuda_context_finish(c));
    double t0 = host_ms();
    c->ran = false;
    bool replay = gc->use_graph && graph_matches(c);
    if (c->layer_timer && !gc->layer_ev) {
        gc->layer_ev = kiln_calloc((size_t)g->n_nodes + 1, sizeof(cudaEvent_t));
        if (!gc->layer_ev) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        for (int i = 0; i <= g->n_nodes; i++) KILN_TRY(cuda_ok(cudaEventCreate(&gc->layer_ev[i]), "creating events"));
    }
    if (!replay) {
        gc->n_syncs = 0;
        /* the previous run ended with a synchronization: its memory can go */
        free_run_memory(c);
        for (int v = 0; v < g->n_values; v++)
            if (g->values[v].flags & KILN_VALUE_CONST) {
                gslot *s = &gc->gs[v];
                s->t = g->values[v].type;
                s->t.data = NULL;
                s->t.flags = 0;
                s->host = g->values[v].type.data;
                s->dev = gc->ge->dev[v];
                s->host_ok = s->host != NULL || kiln_tensor_bytes(&s->t) == 0;
                s->dev_ok = s->dev != NULL || kiln_tensor_bytes(&s->t) == 0;
            }
    }
    KILN_TRY(cuda_ok(cudaEventRecord(gc->ev[0], gc->stream), "recording an event"));
    KILN_TRY(upload_inputs(c));
    KILN_TRY(cuda_ok(cudaEventRecord(gc->ev[1], gc->stream), "recording an event"));
    kiln_status s;
    if (replay) {
        s = cuda_ok(cudaGraphLaunch(gc->graph, gc->stream), "launching the CUDA graph");
    } else {
        if (gc->layer_ev) KILN_TRY(cuda_ok(cudaEventRecord(gc->layer_ev[0], gc->stream), "recording an event"));
        s = run_nodes(c);
        /* the run that just went through sized everything: later runs replay a capture of it */
        if (s == KILN_STATUS_OK && gc->use_graph && graph_capturable(c)) s = capture_graph(c);
    }
    if (s != KILN_STATUS_OK) {
        cudaStreamSynchronize(gc->stream);
        return s;
    }
    KILN_TRY(cuda_ok(cudaEventRecord(gc->ev[2], gc->stream), "recording an event"));
    KILN_TRY(download_outputs(c));
    KILN_TRY(cuda_ok(cudaEventRecord(gc->ev[3], gc->stream), "recording an event"));
    c->timing = (kiln_run_timing){.device = KILN_DEVICE_CUDA, .enqueue_ms = host_ms() - t0};
    gc->layer_events_recorded = !replay;
    gc->pending = true;
    c->ran = true;
    return wait ? kiln_cuda_context_finish(c) : KILN_STATUS_OK;
}

kiln_status kiln_cuda_context_set_modes(kiln_cuda_context *gc, bool cuda_graph, bool no_transfers) {
    gc->use_graph = cuda_graph;
    gc->no_transfers = no_transfers;
    gc->inputs_on_device = false;
    if (!cuda_graph && gc->graph) {
        cudaGraphExecDestroy(gc->graph);
        gc->graph = NULL;
    }
    return KILN_STATUS_OK;
}

void kiln_cuda_context_timing(const kiln_cuda_context *gc, double *h2d, double *compute, double *d2h, int *syncs) {
    *h2d = gc->ms_h2d;
    *compute = gc->ms_compute;
    *d2h = gc->ms_d2h;
    *syncs = gc->n_syncs;
}

void kiln_cuda_context_set_tuning(kiln_cuda_context *gc, int *tactics_out, struct kiln_timing_cache *tc) {
    gc->tuning = tactics_out != NULL;
    gc->tactics_out = tactics_out;
    gc->timing = tc;
}
