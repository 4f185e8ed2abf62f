/* graph.c — building, ordering, validating and freeing the graph IR, and graph-wide shape
 * inference (each op's infer function over the topological order). */
#include "graph.h"

#include "../ops/op.h"

#include <string.h>

kiln_graph *kiln_graph_new(const char *name, int opset, kiln_graph *parent) {
    kiln_graph *g = kiln_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->name = kiln_strdup(name ? name : "");
    g->opset = opset;
    g->parent = parent;
    return g;
}

static void node_free(kiln_node *n) {
    free(n->name);
    free(n->inputs);
    free(n->outputs);
    if (n->params) {
        if (n->params_free) n->params_free(n->params);
        else free(n->params);
    }
    kiln_attrs_free(&n->attrs);
}

void kiln_graph_free(kiln_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_values; i++) {
        free(g->values[i].name);
        kiln_tensor_release(&g->values[i].type);
    }
    for (int i = 0; i < g->n_nodes; i++) node_free(&g->nodes[i]);
    for (int i = 0; i < g->n_symbols; i++) free(g->symbols[i]);
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->symbols);
    free(g->captures);
    free(g->capture_index);
    free(g->name);
    free(g);
}

static bool grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return false;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *arr = p;
    *cap = nc;
    return true;
}

int kiln_graph_add_value(kiln_graph *g, const char *name) {
    if (!grow((void **)&g->values, &g->cap_values, g->n_values + 1, sizeof(kiln_value))) return -1;
    kiln_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = kiln_strdup(name ? name : "");
    if (!v->name) return -1;
    v->producer = -1;
    v->type.rank = -1; /* not known until inferred or declared */
    return g->n_values++;
}

int kiln_graph_find(const kiln_graph *g, const char *name) {
    if (!name || !*name) return -1;
    /* Newest first: in a well-formed graph names are unique anyway. */
    for (int i = g->n_values - 1; i >= 0; i--)
        if (strcmp(g->values[i].name, name) == 0) return i;
    return -1;
}

int kiln_graph_add_node(kiln_graph *g, int op, const char *name, int opset, const int *inputs,
                        int n_inputs, const int *outputs, int n_outputs) {
    if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(kiln_node))) return -1;
    kiln_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->opset = opset;
    n->name = kiln_strdup(name);
    n->inputs = kiln_malloc(sizeof(int) * (size_t)(n_inputs ? n_inputs : 1));
    n->outputs = kiln_malloc(sizeof(int) * (size_t)(n_outputs ? n_outputs : 1));
    if (!n->name || !n->inputs || !n->outputs) {
        node_free(n);
        return -1;
    }
    if (n_inputs) memcpy(n->inputs, inputs, sizeof(int) * (size_t)n_inputs);
    if (n_outputs) memcpy(n->outputs, outputs, sizeof(int) * (size_t)n_outputs);
    n->n_inputs = n->n_declared = n_inputs;
    n->n_outputs = n_outputs;
    return g->n_nodes++;
}

/* Kahn's algorithm, taking ready nodes in their original order so valid ONNX order is kept. */
kiln_status kiln_graph_toposort(kiln_graph *g) {
    int nn = g->n_nodes, nv = g->n_values;
    int *producer = kiln_malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    int *pending = kiln_calloc((size_t)(nn ? nn : 1), sizeof(int));
    int *order = kiln_malloc(sizeof(int) * (size_t)(nn ? nn : 1));
    bool *done = kiln_calloc((size_t)(nn ? nn : 1), sizeof(bool));
    kiln_node *sorted = kiln_malloc(sizeof(kiln_node) * (size_t)(nn ? nn : 1));
    kiln_status st = KILN_STATUS_OK;
    if (!producer || !pending || !order || !done || !sorted) {
        st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory sorting graph '%s'", g->name);
        goto out;
    }
    for (int v = 0; v < nv; v++) producer[v] = -1;
    for (int i = 0; i < nn; i++)
        for (int j = 0; j < g->nodes[i].n_outputs; j++) {
            int v = g->nodes[i].outputs[j];
            if (v < 0) continue;
            if (producer[v] >= 0) {
                st = kiln_error(KILN_STATUS_INVALID_MODEL, "graph '%s': tensor '%s' is produced by both node '%s' and node '%s'",
                                g->name, g->values[v].name, g->nodes[producer[v]].name, g->nodes[i].name);
                goto out;
            }
            if (g->values[v].flags & (KILN_VALUE_INPUT | KILN_VALUE_CONST | KILN_VALUE_CAPTURED)) {
                st = kiln_error(KILN_STATUS_INVALID_MODEL, "graph '%s': node '%s' writes tensor '%s', which is a graph input or initializer",
                                g->name, g->nodes[i].name, g->values[v].name);
                goto out;
            }
            producer[v] = i;
        }
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) {
            int v = g->nodes[i].inputs[k];
            if (v < 0) continue;
            if (producer[v] >= 0) pending[i]++;
            else if (!(g->values[v].flags & (KILN_VALUE_INPUT | KILN_VALUE_CONST | KILN_VALUE_CAPTURED))) {
                st = kiln_error(KILN_STATUS_INVALID_MODEL, "graph '%s': node '%s' reads tensor '%s', which no node, input or initializer defines",
                                g->name, g->nodes[i].name, g->values[v].name);
                goto out;
            }
        }
    int count = 0;
    bool progress = true;
    while (count < nn && progress) {
        progress = false;
        for (int i = 0; i < nn; i++) {
            if (done[i] || pending[i]) continue;
            done[i] = true;
            progress = true;
            order[count++] = i;
            for (int j = 0; j < g->nodes[i].n_outputs; j++) {
                int v = g->nodes[i].outputs[j];
                if (v < 0) continue;
                for (int m = 0; m < nn; m++)
                    for (int k = 0; k < g->nodes[m].n_inputs; k++)
                        if (g->nodes[m].inputs[k] == v) pending[m]--;
            }
            break; /* restart from the first node: keeps the original order where possible */
        }
    }
    if (count < nn) {
        int culprit = 0;
        while (done[culprit]) culprit++;
        st = kiln_error(KILN_STATUS_INVALID_MODEL, "graph '%s' has a cycle: node '%s' depends on its own output",
                        g->name, g->nodes[culprit].name);
        goto out;
    }
    for (int i = 0; i < nn; i++) sorted[i] = g->nodes[order[i]];
    for (int i = 0; i < nn; i++) g->nodes[i] = sorted[i];
    for (int i = 0; i < nn; i++)
        for (int j = 0; j < g->nodes[i].n_outputs; j++)
            if (g->nodes[i].outputs[j] >= 0) g->values[g->nodes[i].outputs[j]].producer = i;
out:
    free(producer);
    free(pending);
    free(order);
    free(done);
    free(sorted);
    return st;
}

void kiln_graph_validate(const kiln_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        const kiln_node *n = &g->nodes[i];
        KILN_ASSERT(n->op >= 0 && n->op < KILN_OP_COUNT);
        KILN_ASSERT(n->n_declared <= n->n_inputs);
        for (int k = 0; k < n->n_inputs; k++) {
            int v = n->inputs[k];
            KILN_ASSERT(v >= -1 && v < g->n_values);
            if (v >= 0 && g->values[v].producer >= 0) KILN_ASSERT(g->values[v].producer < i);
        }
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            KILN_ASSERT(v >= -1 && v < g->n_values);
            if (v >= 0) KILN_ASSERT(g->values[v].producer == i);
        }
    }
    for (int i = 0; i < g->n_inputs; i++) KILN_ASSERT(g->inputs[i] >= 0 && g->inputs[i] < g->n_values);
    for (int i = 0; i < g->n_outputs; i++) KILN_ASSERT(g->outputs[i] >= 0 && g->outputs[i] < g->n_values);
}

/* Declared types (graph inputs, ONNX value_info) may be more precise than what inference
 * finds when inputs are dynamic; inferred ones win where they are known. */
static void merge_type(kiln_tensor *dst, const kiln_tensor *inferred) {
    if (inferred->dtype != KILN_DTYPE_UNDEFINED) dst->dtype = inferred->dtype;
    if (inferred->rank < 0) return;
    if (dst->rank != inferred->rank) {
        dst->rank = inferred->rank;
        memcpy(dst->dims, inferred->dims, sizeof(int64_t) * (size_t)inferred->rank);
        return;
    }
    for (int i = 0; i < dst->rank; i++)
        if (inferred->dims[i] >= 0 || dst->dims[i] == KILN_DIM_UNKNOWN) dst->dims[i] = inferred->dims[i];
}

kiln_status kiln_graph_infer(kiln_graph *g) {
    kiln_tensor *in[64];
    kiln_tensor out[32];
    for (int i = 0; i < g->n_nodes; i++) {
        kiln_node *n = &g->nodes[i];
        if (n->n_inputs > 64 || n->n_outputs > 32)
            return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "more than 64 inputs or 32 outputs");
        for (int k = 0; k < n->n_inputs; k++) in[k] = n->inputs[k] >= 0 ? &g->values[n->inputs[k]].type : NULL;
        memset(out, 0, sizeof(kiln_tensor) * (size_t)n->n_outputs);
        for (int j = 0; j < n->n_outputs; j++) out[j].rank = -1;
        kiln_status s = kiln_op_table[n->op].infer(n, in, out);
        if (s != KILN_STATUS_OK) {
            /* With every input fully known an inference error is the model's fault; with dynamic
             * inputs it may only be the op's inference not coping, which the run will settle. */
            bool all_known = true;
            for (int k = 0; k < n->n_inputs; k++)
                if (in[k] && !kiln_shape_known(in[k])) all_known = false;
            if (all_known) return kiln_error_prefix(s, "graph '%s', shape inference", g->name);
            kiln_clear_error();
            for (int j = 0; j < n->n_outputs; j++) out[j].rank = -1;
        }
        for (int j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0) merge_type(&g->values[n->outputs[j]].type, &out[j]);
    }
    return KILN_STATUS_OK;
}

/* ---- editing ---- */

int kiln_graph_uses(const kiln_graph *g, int v) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) n += g->nodes[i].inputs[k] == v;
    for (int j = 0; j < g->n_outputs; j++) n += g->outputs[j] == v;
    return n;
}

int kiln_graph_sole_reader(const kiln_graph *g, int v) {
    int reader = -1, count = 0;
    for (int j = 0; j < g->n_outputs; j++)
        if (g->outputs[j] == v) return -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == v) {
                count++;
                reader = i;
            }
    return count == 1 ? reader : -1;
}

void kiln_graph_replace_uses(kiln_graph *g, int old_v, int new_v) {
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == old_v) g->nodes[i].inputs[k] = new_v;
    for (int j = 0; j < g->n_outputs; j++)
        if (g->outputs[j] == old_v) g->outputs[j] = new_v;
}

int kiln_graph_add_const(kiln_graph *g, const char *name, const kiln_tensor *t) {
    kiln_tensor *copy;
    if (kiln_tensor_clone(t, &copy) != KILN_STATUS_OK) return -1;
    int v = kiln_graph_add_value(g, name);
    if (v < 0) {
        kiln_tensor_release(copy);
        free(copy);
        return -1;
    }
    g->values[v].type = *copy;
    g->values[v].flags |= KILN_VALUE_CONST;
    free(copy);
    return v;
}

void kiln_graph_remove_nodes(kiln_graph *g, const bool *dead) {
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (dead[i]) {
            node_free(&g->nodes[i]);
            continue;
        }
        g->nodes[k++] = g->nodes[i];
    }
    g->n_nodes = k;
    for (int v = 0; v < g->n_values; v++) g->values[v].producer = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_outputs; j++)
            if (g->nodes[i].outputs[j] >= 0) g->values[g->nodes[i].outputs[j]].producer = i;
}

const char *kiln_graph_unique_name(const kiln_graph *g, const char *base, char *buf, size_t n) {
    snprintf(buf, n, "%s", base);
    for (int i = 1; kiln_graph_find(g, buf) >= 0; i++) snprintf(buf, n, "%s_%d", base, i);
    return buf;
}
