/* constant_fold.c — nodes whose declared inputs are all constants are run once, at build time,
 * with their op's infer and reference kernel (as the reference executor would, fused activation
 * included), and their outputs become constants in place (same value ids and names, so graph
 * outputs and subgraph captures keep working). Left alone: nodes with subgraphs, random
 * generators, quantize/dequantize (kept for INT8 engines), nodes whose inputs include a graph
 * input with a default (it can be overridden), and nodes whose outputs would pass 64 MiB
 * (ConstantOfShape / Expand / Tile of huge shapes, which would only swell the engine file).
 * A node that fails to run is left for run time. Tested by tests/models/test_passes.py. */
#include "pass_util.h"

#include <string.h>

#define FOLD_MAX_BYTES ((size_t)64 << 20)

static bool foldable_op(int op) {
    /* Q/DQ stay: the INT8 work moves them, it does not compute them away */
    return kiln_op_pure(op) && op != KILN_OP_QuantizeLinear && op != KILN_OP_DequantizeLinear &&
           op != KILN_OP_DynamicQuantizeLinear;
}

static bool too_big(size_t out_bytes) { return out_bytes > FOLD_MAX_BYTES; }

/* Runs node i; on success its outputs are constants. *folded tells whether it was folded;
 * only OUT_OF_MEMORY is an error (anything else leaves the node to run time). */
static kiln_status fold_node(kiln_graph *g, int i, bool *folded) {
    kiln_node *n = &g->nodes[i];
    *folded = false;
    if (!foldable_op(n->op) || n->n_inputs != n->n_declared || n->n_inputs > 64 || n->n_outputs > 32) return KILN_STATUS_OK;
    kiln_tensor *in[64];
    kiln_tensor out[32];
    for (int k = 0; k < n->n_inputs; k++) {
        int v = n->inputs[k];
        if (v < 0) {
            in[k] = NULL;
            continue;
        }
        if (!pass_is_const(g, v)) return KILN_STATUS_OK;
        in[k] = &g->values[v].type;
    }
    bool any_output = false;
    for (int j = 0; j < n->n_outputs; j++) any_output |= n->outputs[j] >= 0;
    if (!any_output) return KILN_STATUS_OK;
    memset(out, 0, sizeof(kiln_tensor) * (size_t)n->n_outputs);
    for (int j = 0; j < n->n_outputs; j++) out[j].rank = -1;
    const kiln_op_def *op = &kiln_op_table[n->op];
    kiln_status s = op->infer(n, in, out);
    size_t out_bytes = 0;
    for (int j = 0; s == KILN_STATUS_OK && j < n->n_outputs; j++) {
        if (out[j].rank < 0 || !kiln_shape_known(&out[j])) continue;
        size_t b;
        if (kiln_checked_bytes(kiln_shape_count(out[j].rank, out[j].dims), kiln_dtype_size(out[j].dtype), &b) != KILN_STATUS_OK) {
            s = KILN_STATUS_UNSUPPORTED;
            break;
        }
        out_bytes += b;
    }
    if (s == KILN_STATUS_OK && too_big(out_bytes)) s = KILN_STATUS_UNSUPPORTED;
    for (int j = 0; s == KILN_STATUS_OK && j < n->n_outputs; j++)
        if (out[j].rank >= 0 && kiln_shape_known(&out[j])) s = kiln_tensor_alloc(&out[j], out[j].dtype, out[j].rank, out[j].dims);
    if (s == KILN_STATUS_OK) s = op->ref(n, in, out);
    if (s == KILN_STATUS_OK && n->act.kind != KILN_ACT_NONE && out[0].data) kiln_act_apply(&n->act, &out[0]);
    out_bytes = 0;
    for (int j = 0; s == KILN_STATUS_OK && j < n->n_outputs; j++) {
        if (n->outputs[j] < 0) continue;
        if (out[j].rank < 0 || (!out[j].data && kiln_shape_count(out[j].rank, out[j].dims) != 0)) s = KILN_STATUS_INTERNAL;
        else out_bytes += kiln_tensor_bytes(&out[j]);
    }
    if (s == KILN_STATUS_OK && too_big(out_bytes)) s = KILN_STATUS_UNSUPPORTED; /* data-dependent sizes */
    if (s != KILN_STATUS_OK) {
        for (int j = 0; j < n->n_outputs; j++) kiln_tensor_release(&out[j]);
        if (s == KILN_STATUS_OUT_OF_MEMORY) return s;
        kiln_clear_error();
        return KILN_STATUS_OK;
    }
    for (int j = 0; j < n->n_outputs; j++) {
        int v = n->outputs[j];
        if (v < 0) {
            kiln_tensor_release(&out[j]);
            continue;
        }
        kiln_value *val = &g->values[v];
        kiln_tensor_release(&val->type);
        val->type = out[j];
        val->flags |= KILN_VALUE_CONST;
        val->producer = -1;
    }
    *folded = true;
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_constant_fold(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "constant_fold");
    bool *dead = kiln_calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof(bool));
    if (!dead) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    int folded = 0;
    /* In topological order, so that a chain of foldable nodes folds in one sweep. */
    for (int i = 0; i < g->n_nodes; i++) {
        bool f;
        kiln_status s = fold_node(g, i, &f);
        if (s != KILN_STATUS_OK) {
            free(dead);
            return s;
        }
        if (f) {
            dead[i] = true;
            folded++;
        }
    }
    if (folded) kiln_graph_remove_nodes(g, dead);
    free(dead);
    if (st) {
        st->folded = folded;
        st->removed = folded;
    }
    return pass_finish(g, folded > 0);
}
