/* act_fuse.c — two fusions into the nodes the fast kernels compute in one go.
 *
 * matmul_bias: MatMul(A, B) followed by Add of a constant bias on the last axis (shape (N,) or
 * (1, ..., 1, N), no higher rank than the product) becomes kiln.FusedMatMul(A, B, bias[N]),
 * the MatMul node changed in place. Float products with B of rank >= 2 only.
 *
 * act_fuse: Conv / ConvTranspose / Gemm / MatMul / FusedMatMul followed by an activation —
 * Relu, Clip (constant bounds: attributes before opset 11, inputs since), Sigmoid, Tanh,
 * HardSwish, Gelu (approximate "tanh" too), LeakyRelu, Swish with alpha 1, and the patterns
 * x * Sigmoid(x) (SiLU) and x * HardSigmoid(x; 1/6, 1/2) (HardSwish) — sets the producer's act.
 * Conditions: the producer's output 0 is read only by the activation (both nodes of a
 * pattern), is a float tensor, and the producer has no act yet. The producer then writes the
 * activation's output value, so names of graph outputs survive.
 * Tested by tests/models/test_passes.py. */
#include "../ops/math_internal.h"
#include "pass_util.h"

#include <math.h>

/* ---- matmul_bias ---- */

/* The bias length when v is a constant (N,) or (1, ..., 1, N) of dtype dt and rank <= rank. */
static bool bias_like(const kiln_graph *g, int v, kiln_dtype dt, int rank, int64_t n) {
    if (!pass_is_const(g, v)) return false;
    const kiln_tensor *t = &g->values[v].type;
    if (t->dtype != dt || t->rank < 1 || t->rank > rank || t->dims[t->rank - 1] != n) return false;
    for (int i = 0; i < t->rank - 1; i++)
        if (t->dims[i] != 1) return false;
    return true;
}

static kiln_status fuse_bias(pass_ctx *c, int ai, bool *done) {
    kiln_graph *g = c->g;
    const kiln_node *add = &g->nodes[ai];
    *done = false;
    if (add->n_declared != 2 || add->act.kind != KILN_ACT_NONE) return KILN_STATUS_OK;
    for (int side = 0; side < 2; side++) {
        int m = add->inputs[side], bias = add->inputs[1 - side];
        int pi = pc_producer(c, m);
        if (pi < 0 || g->nodes[pi].op != KILN_OP_MatMul || pc_sole_reader(c, m) != ai || !pc_internal(c, m)) continue;
        const kiln_node *p = &g->nodes[pi];
        if (p->act.kind != KILN_ACT_NONE || p->n_inputs != 2 || p->n_declared != 2) continue;
        const kiln_tensor *mt = &g->values[m].type, *bt = &g->values[p->inputs[1]].type;
        if (mt->rank < 1 || bt->rank < 2 || !kiln_dtype_is_float(mt->dtype)) continue;
        int64_t n = mt->dims[mt->rank - 1];
        if (n < 0 || !bias_like(g, bias, mt->dtype, mt->rank, n)) continue;
        int bv = bias;
        if (g->values[bias].type.rank != 1) {
            kiln_tensor t = g->values[bias].type;
            t.rank = 1;
            t.dims[0] = n;
            t.flags = 0;
            char base[256];
            snprintf(base, sizeof base, "%s_1d", g->values[bias].name);
            KILN_TRY(pc_add_const(c, base, &t, &bv));
        }
        int y = add->outputs[0];
        /* MatMul becomes FusedMatMul in place: same name, a new parse (no attributes). */
        kiln_node *pn = &g->nodes[pi];
        if (pn->params) {
            if (pn->params_free) pn->params_free(pn->params);
            else free(pn->params);
        }
        pn->params = NULL;
        pn->params_free = NULL;
        pn->op = KILN_OP_FusedMatMul;
        pn->attrs.op_name = kiln_op_name(pn->op);
        KILN_TRY(kiln_op_table[KILN_OP_FusedMatMul].parse(pn, &pn->attrs));
        pc_kill(c, ai);
        KILN_TRY(pc_set_input(c, pi, 2, bv));
        pc_set_output(c, pi, 0, y);
        pc_touch(c, pi);
        *done = true;
        return KILN_STATUS_OK;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_matmul_bias(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "matmul_bias");
    int fused = 0;
    for (int round = 0; round < 64; round++) {
        pass_ctx c;
        KILN_TRY(pc_init(&c, g));
        int before = fused;
        kiln_status s = KILN_STATUS_OK;
        for (int i = 0; i < g->n_nodes && s == KILN_STATUS_OK; i++) {
            if (!pc_open(&c, i) || g->nodes[i].op != KILN_OP_Add) continue;
            bool done;
            s = fuse_bias(&c, i, &done);
            fused += done;
        }
        kiln_status cs = pc_commit(&c);
        KILN_TRY(s ? s : cs);
        if (fused == before) break;
    }
    if (st) {
        st->fused = fused;
        st->removed = fused;
    }
    return pass_finish(g, fused > 0);
}

/* ---- act_fuse ---- */

static bool act_producer(int op) {
    return op == KILN_OP_Conv || op == KILN_OP_ConvTranspose || op == KILN_OP_Gemm || op == KILN_OP_MatMul ||
           op == KILN_OP_FusedMatMul;
}

/* A constant bound of Clip (input k), or inf when absent; false when not a constant scalar or
 * not exactly a float. */
static bool clip_bound(const kiln_graph *g, const kiln_node *n, int k, double inf, float *out) {
    int v = pass_in(n, k);
    if (v < 0) {
        *out = (float)inf;
        return true;
    }
    double d;
    if (!pass_const_scalar(g, v, &d) || (double)(float)d != d) return false;
    *out = (float)d;
    return true;
}

/* The act that single-input activation node n computes, or false. */
static bool act_of(const kiln_graph *g, const kiln_node *n, kiln_act *a) {
    const math_act_params *p = n->params;
    a->alpha = a->beta = 0;
    switch (n->op) {
    case KILN_OP_Relu: a->kind = KILN_ACT_RELU; return true;
    case KILN_OP_Sigmoid: a->kind = KILN_ACT_SIGMOID; return true;
    case KILN_OP_Tanh: a->kind = KILN_ACT_TANH; return true;
    case KILN_OP_HardSwish: a->kind = KILN_ACT_HARDSWISH; return true;
    case KILN_OP_Gelu: a->kind = p && p->gelu_tanh ? KILN_ACT_GELU_TANH : KILN_ACT_GELU; return p != NULL;
    case KILN_OP_LeakyRelu: a->kind = KILN_ACT_LEAKY_RELU; a->alpha = p ? p->alpha : 0.01f; return p != NULL;
    case KILN_OP_Swish: a->kind = KILN_ACT_SILU; return p && p->alpha == 1.0f;
    case KILN_OP_Clip:
        a->kind = KILN_ACT_CLIP;
        if (n->opset < 11) {
            const math_clip_params *cp = n->params;
            if (!cp) return false;
            a->alpha = cp->min;
            a->beta = cp->max;
        } else if (!clip_bound(g, n, 1, -INFINITY, &a->alpha) || !clip_bound(g, n, 2, INFINITY, &a->beta)) {
            return false;
        }
        return a->alpha <= a->beta; /* min > max gives max everywhere in ONNX, not what the act computes */
    default: return false;
    }
}

/* Mul node mi = x * Gate(x) with Gate Sigmoid (SiLU) or HardSigmoid(1/6, 1/2) (HardSwish): the
 * gate's node in *gi and x in *xv. */
static bool gated(const pass_ctx *c, int mi, int *gi, int *xv, kiln_act *a) {
    const kiln_graph *g = c->g;
    const kiln_node *m = &g->nodes[mi];
    if (m->op != KILN_OP_Mul || m->n_declared != 2) return false;
    for (int side = 0; side < 2; side++) {
        int x = m->inputs[side], s = m->inputs[1 - side];
        int si = pc_producer(c, s);
        if (si < 0 || pass_in(&g->nodes[si], 0) != x || pc_sole_reader(c, s) != mi || !pc_internal(c, s)) continue;
        const kiln_node *sn = &g->nodes[si];
        const math_act_params *p = sn->params;
        a->alpha = a->beta = 0;
        if (sn->op == KILN_OP_Sigmoid) a->kind = KILN_ACT_SILU;
        else if (sn->op == KILN_OP_HardSigmoid && p && fabs(p->alpha - 1.0 / 6.0) < 1e-6 && p->beta == 0.5f) a->kind = KILN_ACT_HARDSWISH;
        else continue;
        if (pc_uses(c, x) != 2) return false; /* x is read by the gate and the Mul only */
        *gi = si;
        *xv = x;
        return true;
    }
    return false;
}

kiln_status kiln_pass_act_fuse(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "act_fuse");
    int fused = 0, removed = 0;
    for (int round = 0; round < 64; round++) {
        pass_ctx c;
        KILN_TRY(pc_init(&c, g));
        int before = fused;
        for (int i = 0; i < g->n_nodes; i++) {
            if (!pc_open(&c, i)) continue;
            const kiln_node *n = &g->nodes[i];
            if (n->n_inputs != n->n_declared || n->outputs[0] < 0 || n->act.kind != KILN_ACT_NONE) continue;
            kiln_act a;
            int gate = -1, x;
            if (gated(&c, i, &gate, &x, &a)) {
                /* both readers of x are the pattern's */
            } else if (n->n_outputs == 1 && act_of(g, n, &a)) {
                x = pass_in(n, 0);
                if (pc_sole_reader(&c, x) != i) continue;
            } else {
                continue;
            }
            int pi = pc_producer(&c, x);
            if (pi < 0 || !pc_internal(&c, x)) continue;
            const kiln_node *p = &g->nodes[pi];
            if (!act_producer(p->op) || p->outputs[0] != x || p->act.kind != KILN_ACT_NONE) continue;
            if (!kiln_dtype_is_float(g->values[x].type.dtype)) continue;
            int y = n->outputs[0];
            pc_kill(&c, i);
            if (gate >= 0) pc_kill(&c, gate);
            g->nodes[pi].act = a;
            pc_set_output(&c, pi, 0, y);
            pc_touch(&c, pi);
            fused++;
            removed += gate >= 0 ? 2 : 1;
        }
        KILN_TRY(pc_commit(&c));
        if (fused == before) break;
    }
    if (st) {
        st->fused = fused;
        st->removed = removed;
    }
    return pass_finish(g, fused > 0);
}
