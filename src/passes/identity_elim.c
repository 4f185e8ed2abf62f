/* identity_elim.c — removes nodes that copy their input unchanged: Identity, Dropout in
 * inference (training_mode absent or a constant false, or ratio a constant 0; mask output
 * unread), Cast / CastLike to the input's own dtype, Reshape / Flatten / Squeeze / Unsqueeze /
 * Expand whose static output shape equals the input's, Transpose with the identity perm, and
 * Concat of one input.
 * The readers of the output then read the input. When the output is a graph output (or a
 * subgraph reads it by name), the node that produced the input writes the output value
 * instead, so the name survives; when that is impossible (the input is a graph input, a
 * constant or another graph output) the node stays. Tested by tests/models/test_passes.py. */
#include "../ops/math_internal.h"
#include "pass_util.h"
#include "../ops/shape_internal.h"

static bool shape_kept(const kiln_graph *g, int x, int y) {
    return pass_shape_static(g, x) && pass_shape_static(g, y) && pass_same_shape(g, x, y);
}

/* Node n copies input 0 to output 0 and its other outputs are unread. */
static bool is_identity(const pass_ctx *c, const kiln_node *n) {
    const kiln_graph *g = c->g;
    int x = pass_in(n, 0), y = n->outputs[0];
    if (x < 0 || y < 0 || n->n_inputs != n->n_declared || n->act.kind != KILN_ACT_NONE) return false;
    const kiln_tensor *tx = &g->values[x].type, *ty = &g->values[y].type;
    if (tx->dtype == KILN_DTYPE_UNDEFINED || tx->dtype != ty->dtype) return false;
    for (int j = 1; j < n->n_outputs; j++)
        if (n->outputs[j] >= 0 && pc_uses(c, n->outputs[j]) != 0) return false;
    switch (n->op) {
    case KILN_OP_Identity: return n->n_outputs == 1;
    case KILN_OP_Dropout: {
        if (n->opset < 12) return true;
        double v;
        int ratio = pass_in(n, 1), training = pass_in(n, 2);
        if (training < 0) return true;
        if (pass_const_scalar(g, training, &v) && v == 0) return true;
        return ratio >= 0 && pass_const_scalar(g, ratio, &v) && v == 0 && pass_is_const(g, training);
    }
    case KILN_OP_Cast: {
        const math_cast_params *p = n->params;
        return p && p->to == tx->dtype;
    }
    case KILN_OP_CastLike: return pass_in(n, 1) >= 0 && g->values[pass_in(n, 1)].type.dtype == tx->dtype;
    case KILN_OP_Reshape: case KILN_OP_Flatten: case KILN_OP_Squeeze: case KILN_OP_Unsqueeze: case KILN_OP_Expand:
        return n->n_outputs == 1 && shape_kept(g, x, y);
    case KILN_OP_Transpose: {
        const kiln_transpose_params *p = n->params;
        if (!p || tx->rank < 0 || n->n_outputs != 1) return false;
        if (p->n_perm == 0) return tx->rank <= 1;
        if (p->n_perm != tx->rank) return false;
        for (int i = 0; i < p->n_perm; i++)
            if (p->perm[i] != i) return false;
        return true;
    }
    case KILN_OP_Concat: return n->n_declared == 1 && n->n_outputs == 1;
    default: return false;
    }
}

static void eliminate(pass_ctx *c, int i) {
    kiln_graph *g = c->g;
    const kiln_node *n = &g->nodes[i];
    int x = n->inputs[0], y = n->outputs[0];
    if (pc_internal(c, y)) {
        pc_kill(c, i);
        pc_replace_uses(c, y, x);
        return;
    }
    /* y must keep its name: the producer of x writes y instead, when x may disappear. */
    int p = pc_producer(c, x);
    if (p < 0 || !pc_internal(c, x)) return;
    int j = 0;
    while (j < g->nodes[p].n_outputs && g->nodes[p].outputs[j] != x) j++;
    if (j == g->nodes[p].n_outputs) return;
    pc_kill(c, i);
    pc_set_output(c, p, j, y);
    pc_replace_uses(c, x, y);
    pc_touch(c, p);
}

kiln_status kiln_pass_identity_elim(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "identity_elim");
    int removed = 0;
    for (int round = 0; round < 64; round++) {
        pass_ctx c;
        KILN_TRY(pc_init(&c, g));
        int before = removed;
        for (int i = 0; i < g->n_nodes; i++) {
            if (!pc_open(&c, i) || !is_identity(&c, &g->nodes[i])) continue;
            eliminate(&c, i);
            if (c.dead[i]) removed++;
        }
        KILN_TRY(pc_commit(&c));
        if (removed == before) break;
    }
    if (st) st->removed = removed;
    return pass_finish(g, removed > 0);
}
