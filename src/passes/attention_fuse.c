/* attention_fuse.c — scaled dot-product attention on 4-D (B, H, S, D) tensors:
 *     s = MatMul(Q, Kt)                     Kt = (B, H, D, Skv)
 *     [s = Mul(s, c) | Div(s, c)]           c a positive constant scalar
 *     [s = Add(s, mask)]                    float mask of Q's dtype, last dim = Skv, s's shape kept
 *     [s = Where(c, s, -inf) | Where(c, -inf, s)]   bool c, last dim = Skv, s's shape kept: the
 *                                           mask is c (or Not(c), a constant negated here)
 *     p = Softmax(s)                        over the last axis
 *     y = MatMul(p, V)                      V = (B, H, Skv, Dv)
 * Q and Kt may each be scaled the same way before the product (Mul(Q, a), Mul(Kt, b), read only
 * by it), as torch's TorchScript exporter writes scaled_dot_product_attention (a = b = sqrt of
 * the scale); the factors multiply into the scale.
 * becomes Attention(Q, K, V[, mask]; scale = c or 1/c or 1, times a and b) writing y (ONNX opset
 * 23's op, made in a graph of any opset: an engine's graph keeps it, see passes.h). K = (B, H,
 * Skv, D) is Kt's producer Transpose with its last two perm entries swapped (nothing at all when
 * that is the identity), or a new Transpose of Kt. Q, K and V must agree on B and H (equal known
 * dims or the same symbol). K and V whose kv heads were repeated for GQA (repeated_kv) are taken
 * before the repeat: Attention does GQA.
 * A row that the mask hides entirely gives zeros (the decomposed softmax of -inf everywhere gives
 * NaN). Not recognised: scaling of Q or K further up (before their Reshape / Transpose), a Where
 * fill other than -inf, and 3-D (B, S, H*D) layouts. Tested by tests/models/test_passes.py. */
#include "../ops/reduce_internal.h"
#include "../ops/shape_internal.h"
#include "pass_util.h"

#include <math.h>
#include <string.h>

static bool same_dim(int64_t a, int64_t b) { return a == b && a != KILN_DIM_UNKNOWN; }

typedef struct attn_match {
    int nodes[10], nn;
    int q, kt, v, mask, y;
    double scale;
    bool negate;     /* the mask is Not(mask): a Where that fills where its condition holds */
    int tr;          /* Kt's producer Transpose, or -1 */
    int64_t perm[4]; /* of K from the Transpose's input, when tr >= 0 */
} attn_match;

/* v is MatMul(...) or a constant Mul / Div of one. */
static bool leads_to_qk(const pass_ctx *c, int v) {
    if (pc_prod_op(c, v, KILN_OP_MatMul) >= 0) return true;
    int sc = pc_prod_op(c, v, KILN_OP_Mul);
    if (sc < 0) sc = pc_prod_op(c, v, KILN_OP_Div);
    if (sc < 0) return false;
    const kiln_node *n = &c->g->nodes[sc];
    for (int side = 0; side < 2; side++)
        if (pass_const_count(c->g, n->inputs[1 - side]) == 1 && pc_prod_op(c, n->inputs[side], KILN_OP_MatMul) >= 0) return true;
    return false;
}

/* v = Mul(x, k) | Mul(k, x) | Div(x, k), k a positive finite constant scalar of rank at most x's
 * (v keeps x's shape): that node, with x in *x and the factor (k or 1/k) in *f; else -1. */
static int const_scaling(const pass_ctx *c, int v, int *x, double *f) {
    int n = pc_prod_op(c, v, KILN_OP_Mul);
    if (n < 0) n = pc_prod_op(c, v, KILN_OP_Div);
    if (n < 0 || c->g->nodes[n].n_declared != 2) return -1;
    const kiln_node *sn = &c->g->nodes[n];
    bool div = sn->op == KILN_OP_Div;
    for (int side = 1; side >= (div ? 1 : 0); side--) {
        int kc = sn->inputs[side], other = sn->inputs[1 - side];
        double k;
        if (!pass_const_scalar(c->g, kc, &k) || !(k > 0) || !isfinite(k)) continue;
        if (c->g->values[kc].type.rank > c->g->values[other].type.rank) continue;
        *x = other;
        *f = div ? 1.0 / k : k;
        return n;
    }
    return -1;
}

static bool match(const pass_ctx *c, int mi, attn_match *m) {
    const kiln_graph *g = c->g;
    const kiln_node *mm = &g->nodes[mi];
    memset(m, 0, sizeof *m);
    m->mask = m->tr = -1;
    m->scale = 1.0;
    if (mm->n_declared != 2 || mm->act.kind != KILN_ACT_NONE) return false;
    int p = mm->inputs[0];
    m->v = mm->inputs[1];
    m->y = mm->outputs[0];
    m->nodes[m->nn++] = mi;
    int sm = pc_prod_op(c, p, KILN_OP_Softmax);
    if (sm < 0) return false;
    int s = pass_in(&g->nodes[sm], 0), axis;
    const kiln_tensor *st = &g->values[s].type;
    if (st->rank != 4) return false;
    if (red_softmax_axis(&g->nodes[sm], 4, &axis) != KILN_STATUS_OK) {
        kiln_clear_error();
        return false;
    }
    if (axis != 3) return false;
    m->nodes[m->nn++] = sm;
    int add = pc_prod_op(c, s, KILN_OP_Add);
    if (add >= 0) {
        /* The side that leads to MatMul(Q, Kt) is the scores; the other the mask. */
        for (int side = 0; side < 2; side++) {
            int cand = g->nodes[add].inputs[side];
            if (leads_to_qk(c, cand)) {
                m->mask = g->nodes[add].inputs[1 - side];
                s = cand;
                break;
            }
        }
        if (m->mask < 0 || !pass_same_shape(g, g->nodes[add].outputs[0], s)) return false;
        m->nodes[m->nn++] = add;
    } else if ((add = pc_prod_op(c, s, KILN_OP_Where)) >= 0) {
        /* Where(c, scores, -inf) attends where c holds; Where(c, -inf, scores) where it does not */
        const kiln_node *w = &g->nodes[add];
        for (int side = 1; side <= 2 && w->n_declared == 3; side++) {
            double fill;
            int cand = w->inputs[side];
            if (leads_to_qk(c, cand) && pass_const_scalar(g, w->inputs[3 - side], &fill) && isinf(fill) && fill < 0) {
                m->mask = w->inputs[0];
                m->negate = side == 2;
                s = cand;
                break;
            }
        }
        if (m->mask < 0 || g->values[m->mask].type.dtype != KILN_DTYPE_BOOL || !pass_same_shape(g, w->outputs[0], s))
            return false;
        m->nodes[m->nn++] = add;
    }
    int unscaled;
    int sc = const_scaling(c, s, &unscaled, &m->scale);
    if (sc >= 0) {
        s = unscaled;
        m->nodes[m->nn++] = sc;
    }
    int qk = pc_prod_op(c, s, KILN_OP_MatMul);
    if (qk < 0) return false;
    m->nodes[m->nn++] = qk;
    m->q = g->nodes[qk].inputs[0];
    m->kt = g->nodes[qk].inputs[1];
    /* Q and Kt scaled before the product (read by it alone): the factors join the scale. */
    for (int side = 0; side < 2; side++) {
        int *v = side ? &m->kt : &m->q;
        double f;
        int sn = pc_sole_reader(c, *v) == qk ? const_scaling(c, *v, &unscaled, &f) : -1;
        if (sn < 0) continue;
        m->scale *= f;
        *v = unscaled;
        m->nodes[m->nn++] = sn;
    }
    /* Shapes: Q (B,H,Sq,D), Kt (B,H,D,Skv), V (B,H,Skv,Dv). */
    const kiln_tensor *q = &g->values[m->q].type, *kt = &g->values[m->kt].type, *v = &g->values[m->v].type;
    if (q->rank != 4 || kt->rank != 4 || v->rank != 4) return false;
    for (int i = 0; i < 2; i++)
        if (!same_dim(q->dims[i], kt->dims[i]) || !same_dim(q->dims[i], v->dims[i])) return false;
    if (!same_dim(q->dims[3], kt->dims[2]) || !same_dim(kt->dims[3], v->dims[2])) return false;
    if (!kiln_dtype_is_float(q->dtype) || kt->dtype != q->dtype || v->dtype != q->dtype) return false;
    if (m->mask >= 0) {
        const kiln_tensor *mk = &g->values[m->mask].type;
        /* Attention pads a short last mask dim with -inf: it must be Skv, not broadcast. */
        if ((mk->dtype != q->dtype && mk->dtype != KILN_DTYPE_BOOL) || mk->rank < 1 || mk->rank > 4 ||
            !same_dim(mk->dims[mk->rank - 1], kt->dims[3]))
            return false;
    }
    /* K from Kt. */
    int tr = pc_prod_op(c, m->kt, KILN_OP_Transpose);
    if (tr >= 0) {
        const kiln_transpose_params *tp = g->nodes[tr].params;
        if (tp && tp->n_perm == 4) {
            m->tr = tr;
            for (int i = 0; i < 4; i++) m->perm[i] = tp->perm[i];
            int64_t t = m->perm[2];
            m->perm[2] = m->perm[3];
            m->perm[3] = t;
        }
    }
    return true;
}

/* v = Reshape(Tile(Unsqueeze(x), (1, 1, r, 1, 1)) | Expand(Unsqueeze(x), ...), (B, Hkv*r, T, D)),
 * x of (B, Hkv, T, D): each of x's heads repeated r times in place, as repeat_kv of a GQA export writes
 * it (head h reads kv head h / r, which is Attention's own GQA). Told by the shapes: x, then x with a
 * 1 at axis 2, then r there, then the heads merged. Returns x, else -1. */
static int repeated_kv(const pass_ctx *c, int v) {
    const kiln_graph *g = c->g;
    int rs = pc_prod_op(c, v, KILN_OP_Reshape);
    if (rs < 0) return -1;
    int t = pass_in(&g->nodes[rs], 0);
    int rep = pc_prod_op(c, t, KILN_OP_Tile);
    if (rep < 0) rep = pc_prod_op(c, t, KILN_OP_Expand);
    if (rep < 0) return -1;
    int u = pass_in(&g->nodes[rep], 0), un = pc_prod_op(c, u, KILN_OP_Unsqueeze);
    if (un < 0) return -1;
    int x = pass_in(&g->nodes[un], 0);
    if (x < 0) return -1;
    const int64_t *xd = g->values[x].type.dims, *ud = g->values[u].type.dims, *td = g->values[t].type.dims,
                  *vd = g->values[v].type.dims;
    if (g->values[x].type.rank != 4 || g->values[u].type.rank != 5 || g->values[t].type.rank != 5 ||
        g->values[v].type.rank != 4)
        return -1;
    int64_t r = td[2];
    if (ud[2] != 1 || r < 1 || !kiln_dim_known(xd[1]) || vd[1] != xd[1] * r) return -1;
    for (int k = 0; k < 4; k++) {
        int at = k < 2 ? k : k + 1; /* x's axis k in the 5-D values */
        if (!same_dim(ud[at], xd[k]) || !same_dim(td[at], xd[k])) return -1;
        if (k != 1 && !same_dim(vd[k], xd[k])) return -1;
    }
    return x;
}

/* m->mask becomes Not(m->mask): a new constant when it is one, else a Not node. */
static kiln_status negated_mask(pass_ctx *c, attn_match *m) {
    kiln_graph *g = c->g;
    const kiln_value *mv = &g->values[m->mask];
    char base[300];
    snprintf(base, sizeof base, "%s_not", mv->name);
    if (pass_is_const(g, m->mask) && mv->type.data) {
        kiln_tensor t = {0};
        KILN_TRY(kiln_tensor_alloc(&t, KILN_DTYPE_BOOL, mv->type.rank, mv->type.dims));
        const uint8_t *src = mv->type.data;
        uint8_t *dst = t.data;
        for (int64_t i = 0, n = kiln_shape_count(mv->type.rank, mv->type.dims); i < n; i++) dst[i] = !src[i];
        kiln_status s = pc_add_const(c, base, &t, &m->mask);
        kiln_tensor_release(&t);
        return s;
    }
    int src = m->mask, ni; /* its type comes with the pass's shape inference, as the new K's */
    KILN_TRY(pc_add_value(c, base, &m->mask));
    return pc_add_node(c, KILN_OP_Not, base, &src, 1, &m->mask, 1, NULL, 0, &ni);
}

static kiln_status fuse(pass_ctx *c, attn_match *m, bool *done) {
    kiln_graph *g = c->g;
    *done = false;
    /* The old Transpose goes with the pattern when the product was its only reader. */
    bool take_tr = m->tr >= 0 && pc_uses(c, m->kt) == 1 && pc_internal(c, m->kt);
    if (take_tr) m->nodes[m->nn++] = m->tr;
    if (!pc_closed(c, m->nodes, m->nn, m->y)) return KILN_STATUS_OK;
    char base[256];
    int k;
    for (int i = 0; i < m->nn; i++) pc_kill(c, m->nodes[i]);
    bool identity = m->tr >= 0 && m->perm[0] == 0 && m->perm[1] == 1 && m->perm[2] == 2 && m->perm[3] == 3;
    if (identity) {
        k = g->nodes[m->tr].inputs[0];
    } else {
        int src = m->tr >= 0 ? g->nodes[m->tr].inputs[0] : m->kt;
        int64_t perm[4] = {0, 1, 3, 2};
        if (m->tr >= 0) memcpy(perm, m->perm, sizeof perm);
        snprintf(base, sizeof base, "%s_K", g->values[m->y].name);
        KILN_TRY(pc_add_value(c, base, &k));
        kiln_attr at = {.name = "perm", .type = KILN_ATTR_INTS, .n = 4, .ints = perm};
        snprintf(base, sizeof base, "Transpose_%s_K", g->values[m->y].name);
        int ti;
        KILN_TRY(pc_add_node(c, KILN_OP_Transpose, base, &src, 1, &k, 1, &at, 1, &ti));
    }
    /* K and V whose heads were repeated for GQA: Attention reads the kv heads themselves */
    int kx = repeated_kv(c, k), vx = repeated_kv(c, m->v);
    if (kx >= 0 && vx >= 0 && g->values[kx].type.dims[1] == g->values[vx].type.dims[1]) {
        k = kx;
        m->v = vx;
    }
    if (m->negate) KILN_TRY(negated_mask(c, m));
    int ins[4] = {m->q, k, m->v, m->mask};
    kiln_attr at = {.name = "scale", .type = KILN_ATTR_FLOAT, .f = (float)m->scale};
    KILN_TRY(pc_add_replacement(c, KILN_OP_Attention, ins, m->mask >= 0 ? 4 : 3, m->y, &at, 1));
    *done = true;
    return KILN_STATUS_OK;
}

static kiln_status visit(pass_ctx *c, int i, void *arg, bool *done) {
    attn_match m;
    if (c->g->nodes[i].op != KILN_OP_MatMul || !match(c, i, &m)) return KILN_STATUS_OK;
    return fuse(c, &m, done);
}

kiln_status kiln_pass_attention_fuse(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "attention_fuse");
    return pass_fuse_rounds(g, st, visit, NULL);
}
