/* layernorm_fuse.c — LayerNormalization from its decomposed form, as exporters write it:
 *     m = ReduceMean(x)          over the trailing axes [a, r), keepdims
 *     d = Sub(x, m)
 *     p = Pow(d, 2)  or  Mul(d, d)
 *     v = ReduceMean(p)          same axes, keepdims
 *     s = Sqrt(Add(v, eps))      eps a constant scalar (either side of the Add)
 *     n = Div(d, s)
 *     [n = Mul(n, gamma)] [n = Add(n, beta)]   constants (either side)
 * becomes LayerNormalization(x, scale, bias; axis = a - r, epsilon) writing the last value,
 * with scale / bias materialised at x's trailing shape (ones / zeros when absent). Axes come
 * from the attribute (ReduceMean < 18) or a constant input (18+). Every intermediate value
 * must be read only by the pattern; x may have other readers. Needs opset >= 17 (see
 * passes.h). Tested by tests/models/test_passes.py. */
#include "../ops/nn_internal.h"
#include "../ops/reduce_internal.h"
#include "pass_util.h"

#include <math.h>
#include <string.h>

/* The first reduced axis when ReduceMean node ri (keepdims) reduces exactly the trailing axes
 * [a, rank) of its input, else -1. */
static int trailing_axes(const kiln_graph *g, const kiln_node *rn) {
    const red_reduce_params *p = rn->params;
    int x = pass_in(rn, 0);
    if (!p || !p->keepdims || x < 0 || g->values[x].type.rank < 1) return -1;
    kiln_tensor *in[2] = {&g->values[x].type, NULL};
    int ax = pass_in(rn, 1);
    if (ax >= 0) {
        if (!pass_is_const(g, ax)) return -1;
        in[1] = &g->values[ax].type;
    }
    bool mask[KILN_MAX_RANK], known;
    if (red_reduce_mask(rn, in, mask, &known) != KILN_STATUS_OK || !known) {
        kiln_clear_error();
        return -1;
    }
    int rank = in[0]->rank, a = rank;
    while (a > 0 && mask[a - 1]) a--;
    for (int d = 0; d < a; d++)
        if (mask[d]) return -1;
    return a < rank ? a : -1;
}

/* Constant c (multiplied or added onto normalised x) fits LayerNormalization: same dtype, and
 * right-aligned onto x its dims are 1 or x's, with non-1 dims only in the trailing axes [a, r). */
static bool affine_ok(const kiln_graph *g, int cv, const kiln_tensor *x, int a) {
    if (!pass_is_const(g, cv)) return false;
    const kiln_tensor *c = &g->values[cv].type;
    int r = x->rank;
    if (c->dtype != x->dtype || c->rank > r) return false;
    for (int i = 0; i < c->rank; i++) {
        int xd = r - c->rank + i;
        if (c->dims[i] != 1 && (xd < a || c->dims[i] != x->dims[xd])) return false;
    }
    return true;
}

/* c materialised at x's trailing shape x.dims[a:] into t. */
static kiln_status affine_param(const kiln_graph *g, int cv, const kiln_tensor *x, int a, kiln_tensor *t) {
    const kiln_tensor *c = &g->values[cv].type;
    int nr = x->rank - a;
    memset(t, 0, sizeof *t);
    KILN_TRY(kiln_tensor_alloc(t, x->dtype, nr, x->dims + a));
    int64_t strides[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    int cr = c->rank > nr ? nr : c->rank; /* its dims before a are all 1 */
    kiln_broadcast_strides(cr, c->dims + (c->rank - cr), nr, x->dims + a, strides);
    int64_t n = kiln_shape_count(nr, x->dims + a);
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;
        for (int d = 0; d < nr; d++) off += idx[d] * strides[d];
        kiln_store_f64(x->dtype, t->data, i, kiln_load_f64(c->dtype, c->data, off));
        kiln_nn_next(nr, x->dims + a, idx);
    }
    return KILN_STATUS_OK;
}

static kiln_status filled(const kiln_tensor *x, int a, double v, kiln_tensor *t) {
    memset(t, 0, sizeof *t);
    KILN_TRY(kiln_tensor_alloc(t, x->dtype, x->rank - a, x->dims + a));
    int64_t n = kiln_shape_count(t->rank, t->dims);
    for (int64_t i = 0; i < n; i++) kiln_store_f64(t->dtype, t->data, i, v);
    return KILN_STATUS_OK;
}

/* Tries the pattern ending in Div node di. */
static kiln_status match(pass_ctx *c, int di, bool *done) {
    kiln_graph *g = c->g;
    *done = false;
    int nodes[9], nn = 0;
    const kiln_node *div = &g->nodes[di];
    if (div->n_declared != 2 || div->act.kind != KILN_ACT_NONE) return KILN_STATUS_OK;
    int d = div->inputs[0], s = div->inputs[1];
    int sq = pc_prod_op(c, s, KILN_OP_Sqrt);
    if (sq < 0) return KILN_STATUS_OK;
    int ad = pc_prod_op(c, g->nodes[sq].inputs[0], KILN_OP_Add);
    if (ad < 0) return KILN_STATUS_OK;
    int rm2 = -1, epsv = -1;
    for (int side = 0; side < 2 && rm2 < 0; side++) {
        rm2 = pc_prod_op(c, g->nodes[ad].inputs[side], KILN_OP_ReduceMean);
        epsv = g->nodes[ad].inputs[1 - side];
    }
    double eps;
    if (rm2 < 0 || !pass_const_scalar(g, epsv, &eps) || !(eps >= 0)) return KILN_STATUS_OK;
    int p = pass_in(&g->nodes[rm2], 0);
    int sqr = pc_prod_op(c, p, KILN_OP_Pow);
    if (sqr >= 0) {
        if (g->nodes[sqr].inputs[0] != d || !pass_const_all(g, pass_in(&g->nodes[sqr], 1), 2.0, 0)) return KILN_STATUS_OK;
    } else {
        sqr = pc_prod_op(c, p, KILN_OP_Mul);
        if (sqr < 0 || g->nodes[sqr].inputs[0] != d || g->nodes[sqr].inputs[1] != d) return KILN_STATUS_OK;
    }
    int sub = pc_prod_op(c, d, KILN_OP_Sub);
    if (sub < 0) return KILN_STATUS_OK;
    int x = g->nodes[sub].inputs[0];
    int rm1 = pc_prod_op(c, g->nodes[sub].inputs[1], KILN_OP_ReduceMean);
    if (rm1 < 0 || pass_in(&g->nodes[rm1], 0) != x) return KILN_STATUS_OK;
    const kiln_tensor *xt = &g->values[x].type;
    if (!kiln_dtype_is_float(xt->dtype) || xt->rank < 1) return KILN_STATUS_OK;
    int a = trailing_axes(g, &g->nodes[rm1]);
    if (a < 0 || trailing_axes(g, &g->nodes[rm2]) != a || g->values[p].type.rank != xt->rank) return KILN_STATUS_OK;
    if (kiln_shape_count(xt->rank - a, xt->dims + a) <= 0) return KILN_STATUS_OK; /* the normalised shape must be known */
    nodes[nn++] = rm1;
    nodes[nn++] = sub;
    nodes[nn++] = sqr;
    nodes[nn++] = rm2;
    nodes[nn++] = ad;
    nodes[nn++] = sq;
    nodes[nn++] = di;
    /* Optional affine tail. */
    int y = div->outputs[0], gamma = -1, beta = -1;
    int r = pc_sole_reader(c, y);
    if (r >= 0 && pc_open(c, r) && g->nodes[r].op == KILN_OP_Mul && g->nodes[r].act.kind == KILN_ACT_NONE &&
        affine_ok(g, pass_other(&g->nodes[r], y), xt, a)) {
        gamma = pass_other(&g->nodes[r], y);
        nodes[nn++] = r;
        y = g->nodes[r].outputs[0];
        r = pc_sole_reader(c, y);
    }
    if (r >= 0 && pc_open(c, r) && g->nodes[r].op == KILN_OP_Add && g->nodes[r].act.kind == KILN_ACT_NONE &&
        affine_ok(g, pass_other(&g->nodes[r], y), xt, a)) {
        beta = pass_other(&g->nodes[r], y);
        nodes[nn++] = r;
        y = g->nodes[r].outputs[0];
    }
    if (!pc_closed(c, nodes, nn, y)) return KILN_STATUS_OK;
    kiln_tensor ts = {0}, tb = {0};
    kiln_status st = gamma >= 0 ? affine_param(g, gamma, xt, a, &ts) : filled(xt, a, 1.0, &ts);
    if (st == KILN_STATUS_OK) st = beta >= 0 ? affine_param(g, beta, xt, a, &tb) : filled(xt, a, 0.0, &tb);
    int sv = -1, bv = -1;
    char base[256];
    snprintf(base, sizeof base, "%s_ln_scale", g->nodes[di].name);
    if (st == KILN_STATUS_OK) st = pc_add_const(c, base, &ts, &sv);
    snprintf(base, sizeof base, "%s_ln_bias", g->nodes[di].name);
    if (st == KILN_STATUS_OK) st = pc_add_const(c, base, &tb, &bv);
    kiln_tensor_release(&ts);
    kiln_tensor_release(&tb);
    KILN_TRY(st);
    int rank = g->values[x].type.rank;
    for (int i = 0; i < nn; i++) pc_kill(c, nodes[i]);
    kiln_attr attrs[2] = {{.name = "axis", .type = KILN_ATTR_INT, .i = a - rank},
                          {.name = "epsilon", .type = KILN_ATTR_FLOAT, .f = (float)eps}};
    int ins[3] = {x, sv, bv};
    KILN_TRY(pc_add_replacement(c, KILN_OP_LayerNormalization, ins, 3, y, attrs, 2));
    *done = true;
    return KILN_STATUS_OK;
}

static kiln_status visit(pass_ctx *c, int i, void *arg, bool *done) {
    if (c->g->nodes[i].op != KILN_OP_Div) return KILN_STATUS_OK;
    return match(c, i, done);
}

kiln_status kiln_pass_layernorm_fuse(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "layernorm_fuse");
    if (!pass_op_available(g, KILN_OP_LayerNormalization)) return KILN_STATUS_OK;
    return pass_fuse_rounds(g, st, visit, NULL);
}
