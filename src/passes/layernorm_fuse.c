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
 * passes.h).
 * RMSNormalization likewise, from an exported RMSNorm (Llama, Qwen, ...):
 *     p = Pow(x, 2)  or  Mul(x, x)
 *     v = ReduceMean(p)          over the trailing axes [a, r), keepdims
 *     s = Sqrt(Add(v, eps))
 *     n = Div(x, s)  or  Mul(x, Div(1, s))  or  Mul(x, Reciprocal(s))   (Mul either side)
 *     [n = Mul(n, gamma)]        a constant (either side)
 * becomes RMSNormalization(x, scale; axis = a - r, epsilon): one kernel instead of six, and in
 * FP16/BF16 engines no float32 statistics between casts (the kernels accumulate in float32 or
 * double). RMSNormalization is opset 23; kiln uses it in a graph of any opset (engines keep it).
 * Tested by tests/models/test_passes.py. */
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

/* Constant c is a vector over x's last axis (dims all 1 but the last; x's last dim unknown or
 * equal), same dtype: a scale as it is. */
static bool vector_ok(const kiln_graph *g, int cv, const kiln_tensor *x) {
    if (!pass_is_const(g, cv)) return false;
    const kiln_tensor *c = &g->values[cv].type;
    if (c->dtype != x->dtype || c->rank < 1 || c->rank > x->rank) return false;
    for (int i = 0; i + 1 < c->rank; i++)
        if (c->dims[i] != 1) return false;
    int64_t d = c->dims[c->rank - 1], xd = x->dims[x->rank - 1];
    return d >= 1 && (xd < 0 || xd == d);
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

/* The statistics under Sqrt node sq: sqrt(ReduceMean(v^2) + eps), v squared by Pow(v, 2) or
 * Mul(v, v), eps a constant scalar >= 0 on either side of the Add. Fills the three nodes (Add,
 * ReduceMean, the square) and eps; false when sq is not that. */
typedef struct mean_square {
    int add, mean, square;
    double eps;
} mean_square;

static bool mean_square_under(pass_ctx *c, int sq, int v, mean_square *m) {
    const kiln_graph *g = c->g;
    m->add = pc_prod_op(c, g->nodes[sq].inputs[0], KILN_OP_Add);
    if (m->add < 0) return false;
    int epsv = -1;
    m->mean = -1;
    for (int side = 0; side < 2 && m->mean < 0; side++) {
        m->mean = pc_prod_op(c, g->nodes[m->add].inputs[side], KILN_OP_ReduceMean);
        epsv = g->nodes[m->add].inputs[1 - side];
    }
    if (m->mean < 0 || !pass_const_scalar(g, epsv, &m->eps) || !(m->eps >= 0)) return false;
    int p = pass_in(&g->nodes[m->mean], 0);
    m->square = pc_prod_op(c, p, KILN_OP_Pow);
    if (m->square >= 0)
        return g->nodes[m->square].inputs[0] == v && pass_const_all(g, pass_in(&g->nodes[m->square], 1), 2.0, 0);
    m->square = pc_prod_op(c, p, KILN_OP_Mul);
    return m->square >= 0 && g->nodes[m->square].inputs[0] == v && g->nodes[m->square].inputs[1] == v;
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
    mean_square ms;
    if (sq < 0 || !mean_square_under(c, sq, d, &ms)) return KILN_STATUS_OK;
    int ad = ms.add, rm2 = ms.mean, sqr = ms.square, p = pass_in(&g->nodes[rm2], 0);
    double eps = ms.eps;
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

/* The Sqrt node that s comes from through 1 / s (Div by a constant 1, or Reciprocal), else -1;
 * *inv the Div or Reciprocal node. */
static int reciprocal_of_sqrt(pass_ctx *c, int r, int *inv) {
    const kiln_graph *g = c->g;
    *inv = pc_prod_op(c, r, KILN_OP_Reciprocal);
    if (*inv >= 0) return pc_prod_op(c, g->nodes[*inv].inputs[0], KILN_OP_Sqrt);
    *inv = pc_prod_op(c, r, KILN_OP_Div);
    if (*inv < 0 || g->nodes[*inv].n_declared != 2 || g->nodes[*inv].act.kind != KILN_ACT_NONE ||
        !pass_const_all(g, g->nodes[*inv].inputs[0], 1.0, 0))
        return -1;
    return pc_prod_op(c, g->nodes[*inv].inputs[1], KILN_OP_Sqrt);
}

/* Tries the RMSNorm pattern ending in node ni (the Div or Mul that applies 1 / s to x). */
static kiln_status match_rms(pass_ctx *c, int ni, bool *done) {
    kiln_graph *g = c->g;
    *done = false;
    int nodes[8], nn = 0;
    const kiln_node *end = &g->nodes[ni];
    if (end->n_declared != 2 || end->act.kind != KILN_ACT_NONE) return KILN_STATUS_OK;
    int x = -1, sq = -1, inv = -1;
    if (end->op == KILN_OP_Div) {
        x = end->inputs[0];
        sq = pc_prod_op(c, end->inputs[1], KILN_OP_Sqrt);
    } else {
        for (int side = 0; side < 2 && sq < 0; side++) {
            sq = reciprocal_of_sqrt(c, end->inputs[side], &inv);
            x = end->inputs[1 - side];
        }
    }
    mean_square ms;
    if (sq < 0 || x < 0 || !mean_square_under(c, sq, x, &ms)) return KILN_STATUS_OK;
    int ad = ms.add, rm = ms.mean, sqr = ms.square, p = pass_in(&g->nodes[rm], 0);
    double eps = ms.eps;
    const kiln_tensor *xt = &g->values[x].type;
    if (!kiln_dtype_is_float(xt->dtype) || xt->rank < 1) return KILN_STATUS_OK;
    int a = trailing_axes(g, &g->nodes[rm]);
    if (a < 0 || g->values[p].type.rank != xt->rank) return KILN_STATUS_OK;
    /* the normalised shape known, or only the last axis normalised (q/k norms over heads of a shape computed at
     * run time) and gamma's 1-D shape taken for it */
    bool known = kiln_shape_count(xt->rank - a, xt->dims + a) > 0;
    if (!known && a != xt->rank - 1) return KILN_STATUS_OK;
    nodes[nn++] = sqr;
    nodes[nn++] = rm;
    nodes[nn++] = ad;
    nodes[nn++] = sq;
    if (inv >= 0) nodes[nn++] = inv;
    nodes[nn++] = ni;
    int y = end->outputs[0], gamma = -1;
    int r = pc_sole_reader(c, y);
    if (r >= 0 && pc_open(c, r) && g->nodes[r].op == KILN_OP_Mul && g->nodes[r].act.kind == KILN_ACT_NONE &&
        (known ? affine_ok(g, pass_other(&g->nodes[r], y), xt, a) : vector_ok(g, pass_other(&g->nodes[r], y), xt))) {
        gamma = pass_other(&g->nodes[r], y);
        nodes[nn++] = r;
        y = g->nodes[r].outputs[0];
    }
    if ((!known && gamma < 0) || !pc_closed(c, nodes, nn, y)) return KILN_STATUS_OK;
    int sv = gamma;
    if (known) {
        kiln_tensor ts = {0};
        KILN_TRY(gamma >= 0 ? affine_param(g, gamma, xt, a, &ts) : filled(xt, a, 1.0, &ts));
        char base[256];
        snprintf(base, sizeof base, "%s_rms_scale", g->nodes[ni].name);
        kiln_status st = pc_add_const(c, base, &ts, &sv);
        kiln_tensor_release(&ts);
        KILN_TRY(st);
    }
    int rank = xt->rank;
    for (int i = 0; i < nn; i++) pc_kill(c, nodes[i]);
    kiln_attr attrs[2] = {{.name = "axis", .type = KILN_ATTR_INT, .i = a - rank},
                          {.name = "epsilon", .type = KILN_ATTR_FLOAT, .f = (float)eps}};
    int ins[2] = {x, sv};
    KILN_TRY(pc_add_replacement(c, KILN_OP_RMSNormalization, ins, 2, y, attrs, 2));
    *done = true;
    return KILN_STATUS_OK;
}

static kiln_status visit(pass_ctx *c, int i, void *arg, bool *done) {
    (void)arg;
    int op = c->g->nodes[i].op;
    *done = false;
    if (op == KILN_OP_Div && pass_op_available(c->g, KILN_OP_LayerNormalization)) KILN_TRY(match(c, i, done));
    if (!*done && (op == KILN_OP_Div || op == KILN_OP_Mul)) KILN_TRY(match_rms(c, i, done));
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_layernorm_fuse(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "layernorm_fuse");
    return pass_fuse_rounds(g, st, visit, NULL);
}
