/* dead_code.c — three cleanups.
 * dead_code: removes nodes none of whose outputs reach a graph output (walking the sorted
 * nodes backwards from the outputs; subgraph captures count as reads).
 * unused_constants: frees the data of constants that nothing reads any more (weights left
 * behind by folding and fusions); the value stays, empty and no longer a constant. Graph
 * inputs with defaults and graph outputs are kept.
 * initializer_inputs: graph inputs that have an initializer (IR < 4 listed every initializer as
 * an input) become plain constants, leaving the input list. Tested by tests/models/test_passes.py. */
#include "pass_util.h"

kiln_status kiln_pass_dead_code(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "dead_code");
    bool *needed = kiln_calloc((size_t)(g->n_values ? g->n_values : 1), sizeof(bool));
    bool *dead = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(bool));
    if (!needed || !dead) {
        free(needed);
        free(dead);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    for (int j = 0; j < g->n_outputs; j++) needed[g->outputs[j]] = true;
    int removed = 0;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const kiln_node *n = &g->nodes[i];
        bool live = false;
        for (int j = 0; j < n->n_outputs && !live; j++) live = n->outputs[j] >= 0 && needed[n->outputs[j]];
        if (!live) {
            dead[i] = true;
            removed++;
            continue;
        }
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0) needed[n->inputs[k]] = true;
    }
    if (removed) kiln_graph_remove_nodes(g, dead);
    free(needed);
    free(dead);
    if (st) st->removed = removed;
    return pass_finish(g, removed > 0);
}

kiln_status kiln_pass_unused_constants(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "unused_constants");
    bool *read = kiln_calloc((size_t)(g->n_values ? g->n_values : 1), sizeof(bool));
    if (!read) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] >= 0) read[g->nodes[i].inputs[k]] = true;
    int dropped = 0;
    for (int v = 0; v < g->n_values; v++) {
        kiln_value *val = &g->values[v];
        if (read[v] || !(val->flags & KILN_VALUE_CONST)) continue;
        if (val->flags & (KILN_VALUE_INPUT | KILN_VALUE_OUTPUT | KILN_VALUE_CAPTURED)) continue;
        kiln_tensor_release(&val->type);
        val->flags &= ~(uint32_t)KILN_VALUE_CONST;
        dropped++;
    }
    free(read);
    if (st) st->removed = dropped;
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_initializer_inputs(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "initializer_inputs");
    int k = 0, dropped = 0;
    for (int i = 0; i < g->n_inputs; i++) {
        kiln_value *val = &g->values[g->inputs[i]];
        if ((val->flags & KILN_VALUE_CONST) && (val->type.data || kiln_shape_count(val->type.rank, val->type.dims) == 0)) {
            val->flags &= ~(uint32_t)KILN_VALUE_INPUT;
            dropped++;
            continue;
        }
        g->inputs[k++] = g->inputs[i];
    }
    g->n_inputs = k;
    if (st) st->removed = dropped;
    return KILN_STATUS_OK;
}
