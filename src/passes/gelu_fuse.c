/* gelu_fuse.c — Gelu from its decomposed forms:
 *     erf:  x * 0.5 * (1 + Erf(x / sqrt 2))          (Div by 1.41421 or Mul by 0.70711)
 *     tanh: x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))   (x^3: Pow(x, 3) or Muls)
 * with the halving in any of the orders exporters write: ((x * t) * 0.5), ((x * 0.5) * t) and
 * (x * (t * 0.5)), t = 1 + Erf/Tanh(...), constants on either side. Becomes one Gelu node
 * (approximate = "tanh" for the second form) writing the pattern's last value, where the opset
 * has Gelu (20); otherwise, when x comes from a Conv / Gemm / MatMul / FusedMatMul that only the
 * pattern reads, the producer gets the fused activation GELU / GELU_TANH instead. Constants
 * must match to 1e-4 relative. Tested by tests/models/test_passes.py. */
#include "pass_util.h"

#include <math.h>

#define GELU_TOL 1e-4

/* Node producing v: op with a constant scalar ~ val on either side (only the right for Div);
 * the other input in *other. */
static int const_op(const pass_ctx *c, int v, int op, double val, int *other) {
    int n = pc_prod_op(c, v, op);
    if (n < 0 || c->g->nodes[n].n_declared != 2) return -1;
    for (int side = 1; side >= (op == KILN_OP_Div || op == KILN_OP_Sub ? 1 : 0); side--) {
        int k = c->g->nodes[n].inputs[side];
        double d;
        if (pass_const_scalar(c->g, k, &d) && fabs(d - val) <= GELU_TOL * fabs(val)) {
            *other = c->g->nodes[n].inputs[1 - side];
            return n;
        }
    }
    return -1;
}

/* The Mul node reading v (its only reader) with a constant ~ val as the other input. */
static int reader_const_mul(const pass_ctx *c, int v, double val) {
    int r = pc_sole_reader(c, v);
    if (r < 0 || !pc_open(c, r) || c->g->nodes[r].op != KILN_OP_Mul || c->g->nodes[r].act.kind != KILN_ACT_NONE) return -1;
    double d;
    if (!pass_const_scalar(c->g, pass_other(&c->g->nodes[r], v), &d) || fabs(d - val) > GELU_TOL * fabs(val)) return -1;
    return r;
}

/* From t = Erf/Tanh output: 1 + t, then the three orders of x * 0.5 * (.). Appends the nodes
 * to nodes[*nn] and returns the final value, or -1. */
static int tail(const pass_ctx *c, int t, int x, int *nodes, int *nn) {
    const kiln_graph *g = c->g;
    int ad = pc_sole_reader(c, t);
    if (ad < 0 || !pc_open(c, ad) || g->nodes[ad].op != KILN_OP_Add || g->nodes[ad].act.kind != KILN_ACT_NONE) return -1;
    double one;
    if (!pass_const_scalar(g, pass_other(&g->nodes[ad], t), &one) || fabs(one - 1.0) > GELU_TOL) return -1;
    nodes[(*nn)++] = ad;
    int a = g->nodes[ad].outputs[0];
    int r = pc_sole_reader(c, a);
    if (r < 0 || !pc_open(c, r) || g->nodes[r].op != KILN_OP_Mul || g->nodes[r].act.kind != KILN_ACT_NONE) return -1;
    int other = pass_other(&g->nodes[r], a), y = g->nodes[r].outputs[0];
    nodes[(*nn)++] = r;
    double half;
    int hx;
    if (other == x) { /* (x * t) * 0.5 */
        int r2 = reader_const_mul(c, y, 0.5);
        if (r2 < 0) return -1;
        nodes[(*nn)++] = r2;
        return g->nodes[r2].outputs[0];
    }
    int h = const_op(c, other, KILN_OP_Mul, 0.5, &hx);
    if (h >= 0 && hx == x) { /* (x * 0.5) * t */
        nodes[(*nn)++] = h;
        return y;
    }
    if (pass_const_scalar(g, other, &half) && fabs(half - 0.5) <= GELU_TOL) { /* x * (t * 0.5) */
        int r2 = pc_sole_reader(c, y);
        if (r2 < 0 || !pc_open(c, r2) || g->nodes[r2].op != KILN_OP_Mul || pass_other(&g->nodes[r2], y) != x ||
            g->nodes[r2].act.kind != KILN_ACT_NONE)
            return -1;
        nodes[(*nn)++] = r2;
        return g->nodes[r2].outputs[0];
    }
    return -1;
}

/* x^3 as Pow(x, 3), Mul(x, Mul(x, x)) or Mul(Mul(x, x), x). */
static bool cube(const pass_ctx *c, int v, int x, int *nodes, int *nn) {
    const kiln_graph *g = c->g;
    int p = pc_prod_op(c, v, KILN_OP_Pow);
    if (p >= 0) {
        if (g->nodes[p].inputs[0] != x || !pass_const_all(g, pass_in(&g->nodes[p], 1), 3.0, 0)) return false;
        nodes[(*nn)++] = p;
        return true;
    }
    int m = pc_prod_op(c, v, KILN_OP_Mul);
    if (m < 0) return false;
    int sq = pass_other(&g->nodes[m], x);
    int s = pc_prod_op(c, sq, KILN_OP_Mul);
    if (s < 0 || g->nodes[s].inputs[0] != x || g->nodes[s].inputs[1] != x) return false;
    nodes[(*nn)++] = m;
    nodes[(*nn)++] = s;
    return true;
}

/* Node ei is an Erf or a Tanh: the pattern around it, or -1. */
static int match(const pass_ctx *c, int ei, int *x_out, int *nodes, int *nn, bool *tanh_form) {
    const kiln_graph *g = c->g;
    const kiln_node *e = &g->nodes[ei];
    int u = pass_in(e, 0), x = -1;
    *nn = 0;
    nodes[(*nn)++] = ei;
    if (e->op == KILN_OP_Erf) {
        *tanh_form = false;
        int d = const_op(c, u, KILN_OP_Div, sqrt(2.0), &x);
        if (d < 0) d = const_op(c, u, KILN_OP_Mul, sqrt(0.5), &x);
        if (d < 0) return -1;
        nodes[(*nn)++] = d;
    } else {
        *tanh_form = true;
        int w, v3;
        int k = const_op(c, u, KILN_OP_Mul, sqrt(2.0 / M_PI), &w);
        int ad = pc_prod_op(c, w, KILN_OP_Add);
        if (k < 0 || ad < 0) return -1;
        nodes[(*nn)++] = k;
        nodes[(*nn)++] = ad;
        int base = *nn;
        for (int side = 0; side < 2 && x < 0; side++) {
            *nn = base;
            int cand = g->nodes[ad].inputs[side];
            int mv = const_op(c, g->nodes[ad].inputs[1 - side], KILN_OP_Mul, 0.044715, &v3);
            if (mv < 0) continue;
            nodes[(*nn)++] = mv;
            if (cube(c, v3, cand, nodes, nn)) x = cand;
        }
        if (x < 0) return -1;
    }
    int y = tail(c, g->nodes[ei].outputs[0], x, nodes, nn);
    if (y < 0 || !kiln_dtype_is_float(g->values[x].type.dtype)) return -1;
    *x_out = x;
    return y;
}

/* Erf / Tanh node i: the pattern around it replaced, by a Gelu node when make_node (*arg). */
static kiln_status visit(pass_ctx *c, int i, void *arg, bool *done) {
    kiln_graph *g = c->g;
    bool make_node = *(const bool *)arg;
    if (g->nodes[i].op != KILN_OP_Erf && g->nodes[i].op != KILN_OP_Tanh) return KILN_STATUS_OK;
    int nodes[16], nn, x;
    bool tanh_form;
    int y = match(c, i, &x, nodes, &nn, &tanh_form);
    if (y < 0 || !pc_closed(c, nodes, nn, y)) return KILN_STATUS_OK;
    if (make_node) {
        for (int k = 0; k < nn; k++) pc_kill(c, nodes[k]);
        kiln_attr at = {.name = "approximate", .type = KILN_ATTR_STRING, .s = "tanh"};
        KILN_TRY(pc_add_replacement(c, KILN_OP_Gelu, &x, 1, y, &at, tanh_form ? 1 : 0));
    } else {
        /* No Gelu op at this opset: an activation on x's producer, if x is the pattern's alone. */
        int p = pc_producer(c, x);
        if (p < 0 || !pc_internal(c, x) || pc_uses(c, x) != pass_reads(g, nodes, nn, x)) return KILN_STATUS_OK;
        kiln_node *pn = &g->nodes[p];
        if ((pn->op != KILN_OP_Conv && pn->op != KILN_OP_ConvTranspose && pn->op != KILN_OP_Gemm &&
             pn->op != KILN_OP_MatMul && pn->op != KILN_OP_FusedMatMul) ||
            pn->outputs[0] != x || pn->act.kind != KILN_ACT_NONE || pn->n_inputs != pn->n_declared)
            return KILN_STATUS_OK;
        for (int k = 0; k < nn; k++) pc_kill(c, nodes[k]);
        pn->act.kind = tanh_form ? KILN_ACT_GELU_TANH : KILN_ACT_GELU;
        pn->act.alpha = pn->act.beta = 0;
        pc_set_output(c, p, 0, y);
        pc_touch(c, p);
    }
    *done = true;
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_gelu_fuse(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "gelu_fuse");
    bool make_node = pass_op_available(g, KILN_OP_Gelu);
    return pass_fuse_rounds(g, st, visit, &make_node);
}
