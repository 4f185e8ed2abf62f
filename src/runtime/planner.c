/* planner.c — the memory planner. For one optimization profile it finds every value's size
 * (shape inference at the profile's min, opt and max input shapes, the largest wins, with
 * small shape-arithmetic values evaluated so Reshape targets are known), each value's first
 * and last use over the topological order, lets in-place ops write over their dead input, and
 * packs the buffers into one arena (greedy by size, first gap that fits, 64-byte aligned).
 * Values whose size depends on data are marked dynamic. KILN_NO_MEMORY_PLAN=1 gives every
 * value its own region (for bisecting memory bugs). Tested by tests/models/test_engine.py. */
#include "engine.h"

#include "../ops/op.h"

#include <string.h>

#define EVAL_MAX_ELEMS 4096 /* values up to this size are computed at plan time when their inputs are */

int kiln_plan_num_slots(const kiln_graph *g) {
    int n = g->n_values;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_outputs; j++) n += g->nodes[i].outputs[j] < 0;
    return n;
}

kiln_status kiln_slot_map_build(const kiln_graph *g, kiln_slot_map *m) {
    int total = 0;
    for (int i = 0; i < g->n_nodes; i++) total += g->nodes[i].n_outputs;
    m->first = kiln_malloc(sizeof(int) * (size_t)(g->n_nodes ? g->n_nodes : 1));
    m->slot = kiln_malloc(sizeof(int) * (size_t)(total ? total : 1));
    if (!m->first || !m->slot) {
        kiln_slot_map_free(m);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    int k = 0, omitted = g->n_values;
    for (int i = 0; i < g->n_nodes; i++) {
        m->first[i] = k;
        for (int j = 0; j < g->nodes[i].n_outputs; j++) {
            int v = g->nodes[i].outputs[j];
            m->slot[k++] = v >= 0 ? v : omitted++;
        }
    }
    return KILN_STATUS_OK;
}

void kiln_slot_map_free(kiln_slot_map *m) {
    free(m->first);
    free(m->slot);
    m->first = m->slot = NULL;
}

bool kiln_op_alias(int op) {
    switch (op) {
    case KILN_OP_Reshape: case KILN_OP_Flatten: case KILN_OP_Squeeze: case KILN_OP_Unsqueeze: case KILN_OP_Identity:
        return true;
    default: return false;
    }
}

bool kiln_op_inplace(int op) {
    switch (op) {
    case KILN_OP_Relu: case KILN_OP_Sigmoid: case KILN_OP_Tanh: case KILN_OP_Exp: case KILN_OP_Log: case KILN_OP_Neg:
    case KILN_OP_Abs: case KILN_OP_Sqrt: case KILN_OP_Erf: case KILN_OP_LeakyRelu: case KILN_OP_Elu: case KILN_OP_Selu:
    case KILN_OP_HardSigmoid: case KILN_OP_HardSwish: case KILN_OP_Softplus: case KILN_OP_Gelu: case KILN_OP_Mish:
    case KILN_OP_Add: case KILN_OP_Sub: case KILN_OP_Mul: case KILN_OP_Div: case KILN_OP_Clip: case KILN_OP_Reciprocal:
        return true;
    default: return kiln_op_alias(op);
    }
}

/* Shapes (and small data) of every slot for one set of input dims. types has n_slots entries;
 * constants are borrowed views (flags 0), computed data is owned. */
static kiln_status eval_shapes(const kiln_graph *g, const kiln_slot_map *map, const kiln_tensor *input_types,
                               kiln_tensor *types) {
    for (int v = 0; v < g->n_values; v++) {
        types[v] = g->values[v].type;
        types[v].flags = 0;
        if (!(g->values[v].flags & KILN_VALUE_CONST)) types[v].data = NULL;
    }
    for (int i = 0; i < g->n_inputs; i++)
        if (input_types[i].rank >= 0) {
            kiln_tensor *t = &types[g->inputs[i]];
            t->rank = input_types[i].rank;
            memcpy(t->dims, input_types[i].dims, sizeof t->dims);
            t->data = NULL; /* an input with a default initializer is still an input */
        }
    kiln_tensor *in[256];
    kiln_tensor out[64];
    for (int i = 0; i < g->n_nodes; i++) {
        const kiln_node *n = &g->nodes[i];
        if (n->n_inputs > 256 || n->n_outputs > 64) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "too many inputs or outputs");
        bool all_data = true;
        for (int k = 0; k < n->n_inputs; k++) {
            in[k] = n->inputs[k] >= 0 ? &types[n->inputs[k]] : NULL;
            if (in[k] && !in[k]->data && k < n->n_declared) all_data = false;
        }
        memset(out, 0, sizeof(kiln_tensor) * (size_t)n->n_outputs);
        for (int j = 0; j < n->n_outputs; j++) out[j].rank = -1;
        kiln_status s = kiln_op_table[n->op].infer(n, in, out);
        if (s != KILN_STATUS_OK) return s;
        bool small = true;
        for (int j = 0; j < n->n_outputs; j++) {
            int64_t c = out[j].rank >= 0 ? kiln_shape_count(out[j].rank, out[j].dims) : -1;
            if (c < 0 || c > EVAL_MAX_ELEMS) small = false;
        }
        bool shape_only = (n->op == KILN_OP_Shape || n->op == KILN_OP_Size) && in[0] && in[0]->rank >= 0 && kiln_shape_known(in[0]);
        if (small && kiln_op_pure(n->op) && (all_data || shape_only)) {
            uint8_t dummy[1] = {0};
            kiln_tensor shape_view;
            if (shape_only && !in[0]->data) { /* Shape/Size read dims only */
                shape_view = *in[0];
                shape_view.data = dummy;
                in[0] = &shape_view;
            }
            for (int j = 0; j < n->n_outputs && s == KILN_STATUS_OK; j++) s = kiln_tensor_alloc(&out[j], out[j].dtype, out[j].rank, out[j].dims);
            if (s == KILN_STATUS_OK) s = kiln_op_table[n->op].ref(n, in, out);
            if (s != KILN_STATUS_OK) {
                for (int j = 0; j < n->n_outputs; j++) kiln_tensor_release(&out[j]);
                return s;
            }
        }
        for (int j = 0; j < n->n_outputs; j++) types[kiln_slot_of(map, i, j)] = out[j];
    }
    return KILN_STATUS_OK;
}

static void release_types(kiln_tensor *types, int n) {
    for (int i = 0; i < n; i++) kiln_tensor_release(&types[i]);
}

kiln_status kiln_infer_output_shapes(const kiln_graph *g, const kiln_tensor *input_types, kiln_tensor *outs) {
    kiln_slot_map map = {0};
    KILN_TRY(kiln_slot_map_build(g, &map));
    int n = kiln_plan_num_slots(g);
    kiln_tensor *types = kiln_calloc((size_t)n, sizeof *types);
    kiln_status s = types ? eval_shapes(g, &map, input_types, types) : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int j = 0; s == KILN_STATUS_OK && j < g->n_outputs; j++) {
        outs[j] = types[g->outputs[j]];
        outs[j].data = NULL;
        outs[j].flags = 0;
    }
    if (types) release_types(types, n);
    free(types);
    kiln_slot_map_free(&map);
    return s;
}

typedef struct buffer {
    uint64_t bytes;
    int start, end; /* node indices: first write, last read */
    int64_t offset;
} buffer;

static uint64_t align_up(uint64_t x) { return (x + KILN_ARENA_ALIGN - 1) & ~(uint64_t)(KILN_ARENA_ALIGN - 1); }

static int cmp_by_size(const void *a, const void *b, void *ctx) {
    const buffer *bufs = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    if (bufs[x].bytes != bufs[y].bytes) return bufs[x].bytes > bufs[y].bytes ? -1 : 1;
    if (bufs[x].start != bufs[y].start) return bufs[x].start - bufs[y].start;
    return x - y;
}

/* Insertion sort with a context: the lists are small and the order must be deterministic. */
static void sort_ints(int *a, int n, int (*cmp)(const void *, const void *, void *), void *ctx) {
    for (int i = 1; i < n; i++) {
        int x = a[i], j = i - 1;
        while (j >= 0 && cmp(&a[j], &x, ctx) > 0) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = x;
    }
}

/* Lowest offset where b fits beside the already placed buffers that live at the same time. */
static int64_t first_fit(const buffer *bufs, const int *placed, int n_placed, const buffer *b) {
    int64_t offset = 0;
    bool moved = true;
    while (moved) {
        moved = false;
        for (int k = 0; k < n_placed; k++) {
            const buffer *o = &bufs[placed[k]];
            if (o->end < b->start || b->end < o->start) continue;
            if (offset < o->offset + (int64_t)align_up(o->bytes) && o->offset < offset + (int64_t)align_up(b->bytes)) {
                offset = o->offset + (int64_t)align_up(o->bytes);
                moved = true;
            }
        }
    }
    return offset;
}

kiln_status kiln_plan_memory(const kiln_graph *g, const kiln_profile_dims *inputs, kiln_mem_plan *plan) {
    memset(plan, 0, sizeof *plan);
    int ns = kiln_plan_num_slots(g);
    plan->n_slots = ns;
    plan->slots = kiln_calloc((size_t)ns, sizeof(kiln_slot_plan));
    kiln_tensor *types = kiln_calloc((size_t)ns, sizeof(kiln_tensor));
    kiln_tensor *in_types = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof(kiln_tensor));
    int *def = kiln_malloc(sizeof(int) * (size_t)ns), *last = kiln_malloc(sizeof(int) * (size_t)ns);
    int *buf_of = kiln_malloc(sizeof(int) * (size_t)ns), *order = kiln_malloc(sizeof(int) * (size_t)ns);
    buffer *bufs = kiln_calloc((size_t)ns, sizeof(buffer));
    kiln_slot_map map = {0};
    kiln_status s = kiln_slot_map_build(g, &map);
    if (s != KILN_STATUS_OK) goto out;
    if (!plan->slots || !types || !in_types || !def || !last || !buf_of || !order || !bufs) {
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory planning memory");
        goto out;
    }
    /* Sizes: the largest over the profile's min, opt and max shapes. */
    for (int which = 0; which < 3 && s == KILN_STATUS_OK; which++) {
        for (int i = 0; i < g->n_inputs; i++) {
            in_types[i].rank = inputs[i].rank;
            const int64_t *d = which == 0 ? inputs[i].min : which == 1 ? inputs[i].opt : inputs[i].max;
            if (inputs[i].rank >= 0) memcpy(in_types[i].dims, d, sizeof(int64_t) * (size_t)inputs[i].rank);
        }
        memset(types, 0, sizeof(kiln_tensor) * (size_t)ns);
        s = eval_shapes(g, &map, in_types, types);
        for (int v = 0; s == KILN_STATUS_OK && v < ns; v++) {
            kiln_slot_plan *sp = &plan->slots[v];
            if (which > 0 && sp->offset == KILN_PLAN_DYNAMIC) continue;
            if (v < g->n_values && (g->values[v].flags & (KILN_VALUE_CONST | KILN_VALUE_INPUT))) {
                sp->offset = KILN_PLAN_EXTERNAL;
                continue;
            }
            int64_t count = types[v].rank >= 0 ? kiln_shape_count(types[v].rank, types[v].dims) : -1;
            size_t bytes;
            if (count < 0 || kiln_dtype_size(types[v].dtype) == 0 ||
                kiln_checked_bytes(count, kiln_dtype_size(types[v].dtype), &bytes) != KILN_STATUS_OK) {
                kiln_clear_error();
                sp->offset = KILN_PLAN_DYNAMIC;
                sp->bytes = 0;
                continue;
            }
            sp->offset = 0;
            if (bytes > sp->bytes) sp->bytes = bytes;
        }
        release_types(types, ns);
    }
    if (s != KILN_STATUS_OK) goto out;
    /* Lifetimes over the node order. */
    for (int v = 0; v < ns; v++) def[v] = last[v] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        for (int j = 0; j < g->nodes[i].n_outputs; j++) {
            int sl = kiln_slot_of(&map, i, j);
            def[sl] = last[sl] = i;
        }
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] >= 0) last[g->nodes[i].inputs[k]] = i;
    }
    for (int j = 0; j < g->n_outputs; j++) last[g->outputs[j]] = g->n_nodes;
    /* Buffers, with in-place outputs joining their input's buffer. */
    bool no_plan = getenv("KILN_NO_MEMORY_PLAN") && strcmp(getenv("KILN_NO_MEMORY_PLAN"), "0") != 0;
    int nb = 0;
    for (int v = 0; v < ns; v++) buf_of[v] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const kiln_node *n = &g->nodes[i];
        for (int j = 0; j < n->n_outputs; j++) {
            int sl = kiln_slot_of(&map, i, j);
            if (plan->slots[sl].offset != 0 || def[sl] < 0) continue;
            int src = n->n_declared > 0 ? n->inputs[0] : -1;
            if (!no_plan && j == 0 && kiln_op_inplace(n->op) && n->act.kind == KILN_ACT_NONE && src >= 0 &&
                buf_of[src] >= 0 && plan->slots[src].offset == 0 && last[src] == i && bufs[buf_of[src]].end == i &&
                plan->slots[sl].bytes <= plan->slots[src].bytes && !(g->values[src].flags & KILN_VALUE_OUTPUT)) {
                buffer *b = &bufs[buf_of[src]];
                buf_of[sl] = buf_of[src];
                if (last[sl] > b->end) b->end = last[sl];
                plan->n_inplace++;
                continue;
            }
            buffer *b = &bufs[nb];
            b->bytes = plan->slots[sl].bytes;
            b->start = def[sl];
            b->end = last[sl];
            buf_of[sl] = nb++;
        }
    }
    for (int v = 0; v < ns; v++) {
        if (plan->slots[v].offset == KILN_PLAN_DYNAMIC) plan->n_dynamic++;
        if (plan->slots[v].offset == 0) plan->naive_bytes += align_up(plan->slots[v].bytes);
    }
    for (int b = 0; b < nb; b++) order[b] = b;
    sort_ints(order, nb, cmp_by_size, bufs);
    uint64_t top = 0;
    for (int k = 0; k < nb; k++) {
        buffer *b = &bufs[order[k]];
        if (no_plan) b->offset = (int64_t)top;
        else b->offset = first_fit(bufs, order, k, b);
        if ((uint64_t)b->offset + align_up(b->bytes) > top) top = (uint64_t)b->offset + align_up(b->bytes);
    }
    plan->arena_bytes = top;
    for (int v = 0; v < ns; v++)
        if (plan->slots[v].offset == 0 && buf_of[v] >= 0) plan->slots[v].offset = bufs[buf_of[v]].offset;
out:
    free(types);
    free(in_types);
    free(def);
    free(last);
    free(buf_of);
    free(order);
    free(bufs);
    kiln_slot_map_free(&map);
    if (s != KILN_STATUS_OK) kiln_mem_plan_free(plan);
    return s;
}

void kiln_mem_plan_free(kiln_mem_plan *plan) {
    free(plan->slots);
    memset(plan, 0, sizeof *plan);
}
