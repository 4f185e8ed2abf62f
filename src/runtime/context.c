/* context.c — kiln_context_*: running an engine. A context owns one arena (sized for the
 * engine's largest profile), the bindings and the shapes; the engine is only read, so
 * contexts on one engine run concurrently. Each node's output goes to its planned arena
 * offset (or to the caller's buffer for a bound graph output); shapes come from each op's
 * infer on the real inputs and must fit the plan. Values whose size depends on data are the
 * only allocations a run makes; they are freed at the next run. */
#include "context.h"
#ifdef KILN_HAVE_CUDA
#include "../backends/cuda/cuda_exec.h"
#endif

#include "../backends/cpu/cpu_backend.h"
#include "../ops/op.h"

#include <string.h>
#include <time.h>

static const kiln_mem_plan *plan_of(const kiln_context_t *c) { return &c->e->profiles[c->profile].plan; }

static void free_heap(kiln_context_t *c) {
    for (int i = 0; i < c->n_slots; i++) {
        if (c->heap[i]) kiln_tensor_release(&c->slots[i]);
        c->heap[i] = false;
        c->slots[i].data = NULL;
        c->slots[i].flags = 0;
    }
}

kiln_status kiln_context_create(const kiln_engine_t *e, kiln_context_t **out) {
    if (!e || !out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_context_create: NULL argument");
    *out = NULL;
    const kiln_graph *g = e->model.graph;
    kiln_context_t *c = kiln_calloc(1, sizeof *c);
    if (!c) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    c->e = e;
    c->transfers = true;
    c->n_slots = e->profiles[0].plan.n_slots;
    c->naive = getenv("KILN_NO_MEMORY_PLAN") && strcmp(getenv("KILN_NO_MEMORY_PLAN"), "0") != 0;
    for (int p = 0; p < e->n_profiles; p++) {
        const kiln_mem_plan *pl = &e->profiles[p].plan;
        uint64_t need = c->naive ? pl->naive_bytes : pl->arena_bytes;
        if (need > c->arena_bytes) c->arena_bytes = need;
    }
    c->inputs = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof(binding));
    c->outputs = kiln_calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof(binding));
    c->slots = kiln_calloc((size_t)(c->n_slots ? c->n_slots : 1), sizeof(kiln_tensor));
    c->heap = kiln_calloc((size_t)(c->n_slots ? c->n_slots : 1), sizeof(bool));
    c->naive_offsets = kiln_calloc((size_t)(c->n_slots ? c->n_slots : 1), sizeof(uint64_t));
    bool gpu = e->gpu != NULL; /* a cuda engine: the arena is on the device */
    if (!gpu) {
        c->cpu = kiln_cpu_forced_ref() ? NULL : kiln_cpu_ops();
        c->cpu_state = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(void *));
        c->cpu_state_free = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(*c->cpu_state_free));
    }
    if (!gpu) c->arena = aligned_alloc(KILN_ARENA_ALIGN, (c->arena_bytes + KILN_ARENA_ALIGN - 1) / KILN_ARENA_ALIGN * KILN_ARENA_ALIGN + KILN_ARENA_ALIGN);
    if (!c->inputs || !c->outputs || !c->slots || !c->heap || !c->naive_offsets || (!gpu && (!c->arena || !c->cpu_state || !c->cpu_state_free)) ||
        kiln_slot_map_build(g, &c->map) != KILN_STATUS_OK) {
        kiln_context_destroy(c);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "cannot allocate a context's %llu-byte arena", (unsigned long long)c->arena_bytes);
    }
#ifdef KILN_HAVE_CUDA
    if (gpu) {
        kiln_status s = kiln_cuda_context_create(c);
        if (s != KILN_STATUS_OK) {
            kiln_context_destroy(c);
            return s;
        }
    }
#endif
    *out = c;
    return kiln_context_set_profile(c, 0);
}

void kiln_context_destroy(kiln_context_t *c) {
    if (!c) return;
#ifdef KILN_HAVE_CUDA
    kiln_cuda_context_destroy(c->gpu, c->e->model.graph->n_nodes, c->e->model.graph->n_inputs);
#endif
    if (c->slots && c->heap) free_heap(c);
    for (int i = 0; c->cpu_state && c->cpu_state_free && i < c->e->model.graph->n_nodes; i++)
        if (c->cpu_state_free[i]) c->cpu_state_free[i](c->cpu_state[i]);
    free(c->cpu_state);
    free(c->cpu_state_free);
    free(c->inputs);
    free(c->outputs);
    free(c->slots);
    free(c->heap);
    free(c->naive_offsets);
    free(c->arena);
    kiln_slot_map_free(&c->map);
    free(c);
}

kiln_status kiln_context_set_profile(kiln_context_t *c, int profile) {
    if (profile < 0 || profile >= c->e->n_profiles)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d does not exist: the engine has %d", profile, c->e->n_profiles);
    c->profile = profile;
    if (c->naive) {
        const kiln_mem_plan *pl = plan_of(c);
        uint64_t top = 0;
        for (int i = 0; i < pl->n_slots; i++)
            if (pl->slots[i].offset >= 0) {
                c->naive_offsets[i] = top;
                top += (pl->slots[i].bytes + KILN_ARENA_ALIGN - 1) / KILN_ARENA_ALIGN * KILN_ARENA_ALIGN;
            }
    }
    /* Static inputs need no shape from the caller. */
    const kiln_graph *g = c->e->model.graph;
    for (int i = 0; i < g->n_inputs; i++) {
        const kiln_profile_dims *d = &c->e->profiles[profile].inputs[i];
        binding *b = &c->inputs[i];
        b->has_shape = false;
        if (d->rank >= 0 && memcmp(d->min, d->max, sizeof(int64_t) * (size_t)d->rank) == 0) {
            b->has_shape = true;
            b->rank = d->rank;
            memcpy(b->dims, d->min, sizeof(int64_t) * (size_t)d->rank);
        }
    }
    return KILN_STATUS_OK;
}

static int find_name(const kiln_graph *g, const int *ids, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(g->values[ids[i]].name, name) == 0) return i;
    return -1;
}

kiln_status kiln_context_set_input_shape(kiln_context_t *c, const char *name, int rank, const int64_t *dims) {
    const kiln_graph *g = c->e->model.graph;
    int i = name ? find_name(g, g->inputs, g->n_inputs, name) : -1;
    if (i < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the engine has no input named '%s'", name ? name : "(null)");
    const kiln_profile_dims *d = &c->e->profiles[c->profile].inputs[i];
    char got[160];
    if (d->rank >= 0) {
        if (rank != d->rank)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s': rank %d given, profile %d has rank %d", name, rank, c->profile, d->rank);
        for (int k = 0; k < rank; k++)
            if (dims[k] < d->min[k] || dims[k] > d->max[k])
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                                  "input '%s': shape %s is outside profile %d (dim %d must be in %lld..%lld)", name,
                                  kiln_dims_str(rank, dims, got, sizeof got), c->profile, k, (long long)d->min[k], (long long)d->max[k]);
    } else {
        /* an input with a default initializer: only its default shape was planned */
        const kiln_tensor *t = &g->values[g->inputs[i]].type;
        if (rank != t->rank || memcmp(dims, t->dims, sizeof(int64_t) * (size_t)rank) != 0)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has a default value and must keep its shape", name);
    }
    binding *b = &c->inputs[i];
    if (!b->has_shape || b->rank != rank || memcmp(b->dims, dims, sizeof(int64_t) * (size_t)rank) != 0) c->shapes_changed = true;
    b->has_shape = true;
    b->rank = rank;
    if (rank) memcpy(b->dims, dims, sizeof(int64_t) * (size_t)rank);
    return KILN_STATUS_OK;
}

kiln_status kiln_context_set_tensor_address(kiln_context_t *c, const char *name, void *data, size_t bytes) {
    const kiln_graph *g = c->e->model.graph;
    int i = name ? find_name(g, g->inputs, g->n_inputs, name) : -1;
    if (i >= 0) {
        c->inputs[i].data = data;
        c->inputs[i].bytes = bytes;
        return KILN_STATUS_OK;
    }
    int j = name ? find_name(g, g->outputs, g->n_outputs, name) : -1;
    if (j < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the engine has no input or output named '%s'", name ? name : "(null)");
    c->outputs[j].data = data;
    c->outputs[j].bytes = bytes;
    return KILN_STATUS_OK;
}

kiln_status kiln_context_tensor_shape(const kiln_context_t *c, const char *name, int *rank, int64_t dims[KILN_MAX_RANK]) {
    const kiln_graph *g = c->e->model.graph;
    int i = name ? find_name(g, g->inputs, g->n_inputs, name) : -1;
    if (i >= 0) {
        if (!c->inputs[i].has_shape) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has no shape set", name);
        *rank = c->inputs[i].rank;
        memcpy(dims, c->inputs[i].dims, sizeof(int64_t) * (size_t)*rank);
        return KILN_STATUS_OK;
    }
    int j = name ? find_name(g, g->outputs, g->n_outputs, name) : -1;
    if (j < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the engine has no input or output named '%s'", name ? name : "(null)");
    if (c->ran && !c->shapes_changed) { /* the last run's: exact, data-dependent sizes too */
        const kiln_tensor *t = &c->slots[g->outputs[j]];
        *rank = t->rank;
        memcpy(dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
        return KILN_STATUS_OK;
    }
    /* before a run at these input shapes: shape inference from them (TensorRT's getTensorShape),
     * so that output buffers can be bound before the first run */
    kiln_tensor *ins = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof *ins);
    kiln_tensor *outs = kiln_calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *outs);
    kiln_status s = ins && outs ? KILN_STATUS_OK : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; s == KILN_STATUS_OK && k < g->n_inputs; k++) {
        const binding *b = &c->inputs[k];
        ins[k] = g->values[g->inputs[k]].type;
        ins[k].data = NULL;
        if (b->has_shape) {
            ins[k].rank = b->rank;
            memcpy(ins[k].dims, b->dims, sizeof(int64_t) * (size_t)b->rank);
        } else if (!(g->values[g->inputs[k]].flags & KILN_VALUE_CONST) && !kiln_shape_known(&ins[k])) {
            s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "output '%s': set the shape of input '%s' first", name,
                           g->values[g->inputs[k]].name);
        } else {
            ins[k].rank = -1; /* the declared type */
        }
    }
    if (s == KILN_STATUS_OK) s = kiln_infer_output_shapes(g, ins, outs);
    if (s == KILN_STATUS_OK) {
        *rank = outs[j].rank;
        if (*rank < 0) s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "output '%s': its rank depends on data; run first", name);
        else memcpy(dims, outs[j].dims, sizeof(int64_t) * (size_t)*rank);
        for (int k = 0; k < *rank; k++)
            if (dims[k] < 0) dims[k] = -1; /* depends on data */
    }
    free(ins);
    free(outs);
    return s;
}

kiln_status kiln_context_tensor_address(const kiln_context_t *c, const char *name, const void **data) {
    const kiln_graph *g = c->e->model.graph;
    int j = name ? find_name(g, g->outputs, g->n_outputs, name) : -1;
    if (j < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the engine has no output named '%s'", name ? name : "(null)");
    if (!c->ran) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "output '%s' has no data before the first run", name);
    *data = c->slots[g->outputs[j]].data;
    return KILN_STATUS_OK;
}

/* Where slot sl's data goes for this run: the caller's buffer for a bound graph output, the
 * arena for planned slots, NULL for dynamic ones (the kernel or the executor allocates). */
static kiln_status place(kiln_context_t *c, int sl, kiln_tensor *t, const kiln_node *n) {
    const kiln_graph *g = c->e->model.graph;
    const kiln_slot_plan *sp = &plan_of(c)->slots[sl];
    size_t bytes = kiln_tensor_bytes(t);
    if (sl < g->n_values && (g->values[sl].flags & KILN_VALUE_OUTPUT)) {
        for (int j = 0; j < g->n_outputs; j++)
            if (g->outputs[j] == sl && c->outputs[j].data) {
                if (bytes > c->outputs[j].bytes)
                    return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "output '%s' needs %zu bytes, its bound buffer has %zu",
                                      g->values[sl].name, bytes, c->outputs[j].bytes);
                t->data = c->outputs[j].data;
                return KILN_STATUS_OK;
            }
    }
    if (sp->offset == KILN_PLAN_DYNAMIC) return KILN_STATUS_OK;
    if (sp->offset < 0) return kiln_node_error(n, KILN_STATUS_INTERNAL, "output slot %d has no planned place", sl);
    if (bytes > sp->bytes) {
        char d[160];
        return kiln_node_error(n, KILN_STATUS_RUNTIME_ERROR,
                               "output %s needs %zu bytes but profile %d planned %llu: the input shapes lead outside the profile",
                               kiln_tensor_describe(t, d, sizeof d), bytes, c->profile, (unsigned long long)sp->bytes);
    }
    t->data = c->arena + (c->naive ? (int64_t)c->naive_offsets[sl] : sp->offset);
    return KILN_STATUS_OK;
}

/* Node i on its fast CPU kernel when there is one and it takes these inputs (it applies the
 * fused activation itself); UNSUPPORTED sends the node to its reference kernel. */
static kiln_status run_fast(kiln_context_t *c, int i, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_node *n = &c->e->model.graph->nodes[i];
    const kiln_cpu_op *k = c->cpu ? &c->cpu[n->op] : NULL;
    if (!k || !k->run || !out[0].data || !k->supports(n, in, &out[0])) return KILN_STATUS_UNSUPPORTED;
    return k->run(n, &c->cpu_state[i], &c->cpu_state_free[i], in, out);
}

static kiln_status run_node(kiln_context_t *c, int i) {
    const kiln_graph *g = c->e->model.graph;
    const kiln_node *n = &g->nodes[i];
    kiln_tensor *in[256];
    kiln_tensor out[64];
    int slot[64];
    if (n->n_inputs > 256 || n->n_outputs > 64) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "too many inputs or outputs");
    for (int k = 0; k < n->n_inputs; k++) in[k] = n->inputs[k] >= 0 ? &c->slots[n->inputs[k]] : NULL;
    memset(out, 0, sizeof(kiln_tensor) * (size_t)n->n_outputs);
    for (int j = 0; j < n->n_outputs; j++) {
        out[j].rank = -1;
        slot[j] = kiln_slot_of(&c->map, i, j);
    }
    const kiln_op_def *op = &kiln_op_table[n->op];
    KILN_TRY(op->infer(n, in, out));
    for (int j = 0; j < n->n_outputs; j++)
        if (out[j].rank >= 0 && kiln_shape_known(&out[j])) {
            KILN_TRY(place(c, slot[j], &out[j], n));
            /* a dynamic value whose shape the real inputs settle: allocated now, freed next run */
            if (!out[j].data) KILN_TRY(kiln_tensor_alloc(&out[j], out[j].dtype, out[j].rank, out[j].dims));
        }
    bool aliased = kiln_op_alias(n->op) && in[0] && out[0].data == in[0]->data && out[0].data;
    kiln_status s = KILN_STATUS_OK;
    bool fast = false; /* a fast kernel ran, fused activation included */
    if (!aliased) {
        if (kiln_op_inplace(n->op) && in[0] && out[0].data == in[0]->data && out[0].data &&
            (in[0]->rank != out[0].rank || memcmp(in[0]->dims, out[0].dims, sizeof(int64_t) * (size_t)out[0].rank) != 0))
            return kiln_node_error(n, KILN_STATUS_INTERNAL, "in-place output does not have its input's shape");
        /* Kernels may (re)allocate outputs whose size depends on data; planned pointers carry no
         * ownership flag, so kiln_tensor_alloc leaves the arena alone. */
        s = run_fast(c, i, in, out);
        fast = s != KILN_STATUS_UNSUPPORTED;
        if (!fast) s = op->ref(n, in, out);
    }
    if (s == KILN_STATUS_OK && !fast && n->act.kind != KILN_ACT_NONE && out[0].data) kiln_act_apply(&n->act, &out[0]);
    for (int j = 0; j < n->n_outputs; j++) {
        kiln_tensor *dst = &c->slots[slot[j]];
        if (s == KILN_STATUS_OK && out[j].rank < 0)
            s = kiln_node_error(n, KILN_STATUS_INTERNAL, "output %d was not produced", j);
        if (s == KILN_STATUS_OK && !out[j].data) s = kiln_tensor_alloc(&out[j], out[j].dtype, out[j].rank, out[j].dims);
        if (s != KILN_STATUS_OK) {
            kiln_tensor_release(&out[j]);
            continue;
        }
        *dst = out[j];
        c->heap[slot[j]] = (out[j].flags & KILN_TENSOR_OWNS_DATA) != 0;
    }
    return s;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

kiln_status kiln_context_set_cuda_graph(kiln_context_t *c, int enable) {
#ifdef KILN_HAVE_CUDA
    if (c->gpu) {
        c->cuda_graph = enable != 0;
        KILN_TRY(kiln_cuda_context_finish(c)); /* not while a captured run may be in flight */
        return kiln_cuda_context_set_modes(c->gpu, c->cuda_graph, !c->transfers);
    }
#endif
    if (!enable) return KILN_STATUS_OK;
    return kiln_error(KILN_STATUS_UNSUPPORTED, "CUDA graphs need an engine built for the GPU (kiln build --device cuda); this one runs on the %s", c->e->device);
}

kiln_status kiln_context_set_data_transfers(kiln_context_t *c, int enable) {
    c->transfers = enable != 0;
#ifdef KILN_HAVE_CUDA
    if (c->gpu) {
        KILN_TRY(kiln_cuda_context_finish(c));
        return kiln_cuda_context_set_modes(c->gpu, c->cuda_graph, !c->transfers);
    }
#endif
    return KILN_STATUS_OK;
}

kiln_status kiln_context_set_layer_timer(kiln_context_t *c, kiln_layer_timer cb, void *user) {
    if (!c) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_context_set_layer_timer: NULL context");
    c->layer_timer = cb;
    c->layer_timer_user = user;
    return KILN_STATUS_OK;
}

kiln_status kiln_context_last_timing(const kiln_context_t *c, kiln_run_timing *t) {
    if (!c || !t) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_context_last_timing: NULL argument");
    if (!c->ran) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the context has no successful run to time yet");
#ifdef KILN_HAVE_CUDA
    /* an enqueued run's times are known once it is over: waiting for it changes no result the
     * caller can see, so the context stays const to the caller */
    if (c->gpu) KILN_TRY(kiln_cuda_context_finish((kiln_context_t *)c));
#endif
    *t = c->timing;
    return KILN_STATUS_OK;
}

/* Runs node i, timing it for the layer timer when one is set (only then: two clock reads). */
static kiln_status run_node_timed(kiln_context_t *c, int i) {
    if (!c->layer_timer) return run_node(c, i);
    const kiln_node *n = &c->e->model.graph->nodes[i];
    double t0 = now_ms();
    KILN_TRY(run_node(c, i));
    c->layer_timer(c->layer_timer_user, i, n->name ? n->name : "", kiln_op_name(n->op), now_ms() - t0);
    return KILN_STATUS_OK;
}

kiln_status kiln_context_set_cuda_stream(kiln_context_t *c, void *cuda_stream) {
    if (!c) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_context_set_cuda_stream: NULL context");
#ifdef KILN_HAVE_CUDA
    if (c->gpu) return kiln_cuda_context_set_stream(c, cuda_stream);
#endif
    return kiln_error(KILN_STATUS_UNSUPPORTED, "a CUDA stream needs an engine built for the GPU (kiln build --device cuda); this one runs on the %s",
                      c->e->device);
}

static kiln_status context_run(kiln_context_t *c, bool wait);

static kiln_status run_and_mark(kiln_context_t *c, bool wait) {
    kiln_status s = context_run(c, wait);
    if (s == KILN_STATUS_OK) c->shapes_changed = false;
    return s;
}

kiln_status kiln_context_run(kiln_context_t *c) { return run_and_mark(c, true); }

kiln_status kiln_context_enqueue(kiln_context_t *c) {
    if (!c) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_context_enqueue: NULL context");
    return run_and_mark(c, false);
}

kiln_status kiln_context_synchronize(kiln_context_t *c) {
    if (!c) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_context_synchronize: NULL context");
#ifdef KILN_HAVE_CUDA
    if (c->gpu) return kiln_cuda_context_finish(c);
#endif
    return KILN_STATUS_OK; /* CPU runs are over when they return */
}

static kiln_status context_run(kiln_context_t *c, bool wait) {
    const kiln_graph *g = c->e->model.graph;
#ifdef KILN_HAVE_CUDA
    if (c->gpu) return kiln_cuda_context_run(c, wait || c->layer_timer);
#else
    (void)wait;
#endif
    double t_start = now_ms();
    c->ran = false;
    free_heap(c);
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].flags & KILN_VALUE_CONST) {
            c->slots[v] = g->values[v].type;
            c->slots[v].flags = KILN_TENSOR_CONSTANT; /* a view */
        }
    for (int i = 0; i < g->n_inputs; i++) {
        const kiln_value *v = &g->values[g->inputs[i]];
        binding *b = &c->inputs[i];
        kiln_tensor *t = &c->slots[g->inputs[i]];
        if (!b->data) {
            if (v->flags & KILN_VALUE_CONST) continue; /* keeps its default */
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' is not bound", v->name);
        }
        if (!b->has_shape) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has a dynamic shape: set it with kiln_context_set_input_shape", v->name);
        t->dtype = v->type.dtype;
        t->rank = b->rank;
        memcpy(t->dims, b->dims, sizeof(int64_t) * (size_t)b->rank);
        t->data = b->data;
        t->flags = 0;
        if (kiln_tensor_bytes(t) > b->bytes)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' needs %zu bytes, its buffer has %zu", v->name, kiln_tensor_bytes(t), b->bytes);
    }
    for (int i = 0; i < g->n_nodes; i++) KILN_TRY(run_node_timed(c, i));
    /* A graph output that is an input or a constant is copied into its bound buffer. */
    for (int j = 0; j < g->n_outputs; j++) {
        kiln_tensor *t = &c->slots[g->outputs[j]];
        binding *b = &c->outputs[j];
        if (!b->data || t->data == b->data) continue;
        size_t bytes = kiln_tensor_bytes(t);
        if (bytes > b->bytes)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "output '%s' needs %zu bytes, its bound buffer has %zu",
                              g->values[g->outputs[j]].name, bytes, b->bytes);
        if (bytes) memmove(b->data, t->data, bytes);
    }
    /* The CPU run is synchronous and copies nothing between devices: it is all compute. */
    double ms = now_ms() - t_start;
    c->timing = (kiln_run_timing){.device = KILN_DEVICE_CPU, .enqueue_ms = ms, .compute_ms = ms};
    c->ran = true;
    return KILN_STATUS_OK;
}

kiln_status kiln_context_run_tensors(kiln_context_t *c, int n_inputs, const char *const *names, kiln_tensor_t *const *inputs,
                                     int n_outputs, kiln_tensor_t **outputs) {
    const kiln_graph *g = c->e->model.graph;
    if (n_outputs != g->n_outputs)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the engine has %d outputs, %d were asked for", g->n_outputs, n_outputs);
    for (int i = 0; i < g->n_inputs; i++) c->inputs[i].data = NULL;
    for (int j = 0; j < g->n_outputs; j++) c->outputs[j].data = NULL;
    for (int k = 0; k < n_inputs; k++) {
        int i = find_name(g, g->inputs, g->n_inputs, names[k]);
        if (i < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the engine has no input named '%s'", names[k]);
        const kiln_value *v = &g->values[g->inputs[i]];
        if (v->type.dtype != KILN_DTYPE_UNDEFINED && inputs[k]->dtype != v->type.dtype)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s': expected dtype %s, got %s", names[k],
                              kiln_dtype_name(v->type.dtype), kiln_dtype_name(inputs[k]->dtype));
        KILN_TRY(kiln_context_set_input_shape(c, names[k], inputs[k]->rank, inputs[k]->dims));
        KILN_TRY(kiln_context_set_tensor_address(c, names[k], inputs[k]->data, kiln_tensor_bytes(inputs[k])));
        if (!inputs[k]->data) c->inputs[i].data = (void *)""; /* a 0-sized input is still bound */
    }
    KILN_TRY(kiln_context_run(c));
    for (int j = 0; j < g->n_outputs; j++) {
        kiln_status s = kiln_tensor_clone(&c->slots[g->outputs[j]], &outputs[j]);
        if (s != KILN_STATUS_OK) {
            for (int k = 0; k < j; k++) { kiln_tensor_destroy(outputs[k]); outputs[k] = NULL; }
            return s;
        }
    }
    return KILN_STATUS_OK;
}
