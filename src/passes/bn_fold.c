/* bn_fold.c — BatchNormalization (inference form) folded into the Conv, ConvTranspose or Gemm
 * that produces its input:
 *     s = scale / sqrt(var + eps)    per output channel
 *     W' = W * s (per output channel),  b' = (b - mean) * s + bias
 * Conditions: the BN is in inference mode with one used output, spatial; its four parameters
 * and the producer's weights (and bias, if any) are constants; the BN is the only reader of
 * the producer's output, which has no fused activation yet. New weights and bias are new
 * constants (the old ones may be shared, or live in a read-only mapping); a missing bias is
 * appended as input 2. Computed in double, stored in the weights' dtype.
 * Gemm: Y = alpha * A' B' + beta * C, the channel is Y's column: B' columns are scaled (rows of
 * B with transB, columns without) and C' = s * C + (bias - s * mean) / beta, broadcast to
 * (1, N) or kept at (M, N). A BN with no such producer stays.
 * scale_fold does the same for Mul / Div / Add by a constant that is per output channel (or a
 * scalar) and does not broadcast the product to a larger shape: s = c (1/c for x / c), t = 0,
 * or s = 1, t = c (seen as Conv, BN, Mul, Add in Caffe2 exports such as inception_v2). After
 * a BatchNormalization that stays (no conv before it) they fold into its scale and bias.
 * Tested by tests/models/test_passes.py. */
#include "../ops/nn_internal.h"
#include "pass_util.h"

#include <math.h>
#include <string.h>

typedef struct bn_coef {
    int64_t c;
    double *s, *t; /* y = x * s[c] + t[c] */
} bn_coef;

/* The BN's per-channel scale and shift, from its constant parameters. */
static bool bn_coefs(const kiln_graph *g, const kiln_node *bn, int64_t channels, bn_coef *out) {
    const kiln_norm_params *p = bn->params;
    if (!p || p->training || p->per_activation || bn->n_declared != 5) return false;
    for (int j = 1; j < bn->n_outputs; j++)
        if (bn->outputs[j] >= 0) return false; /* training outputs requested */
    for (int k = 1; k < 5; k++)
        if (pass_const_count(g, pass_in(bn, k)) != channels) return false;
    out->c = channels;
    out->s = kiln_malloc(sizeof(double) * (size_t)channels);
    out->t = kiln_malloc(sizeof(double) * (size_t)channels);
    if (!out->s || !out->t) {
        free(out->s);
        free(out->t);
        return false;
    }
    const kiln_tensor *sc = &g->values[bn->inputs[1]].type, *b = &g->values[bn->inputs[2]].type;
    const kiln_tensor *m = &g->values[bn->inputs[3]].type, *v = &g->values[bn->inputs[4]].type;
    for (int64_t i = 0; i < channels; i++) {
        double s = kiln_load_f64(sc->dtype, sc->data, i) / sqrt(kiln_load_f64(v->dtype, v->data, i) + p->epsilon);
        out->s[i] = s;
        out->t[i] = kiln_load_f64(b->dtype, b->data, i) - kiln_load_f64(m->dtype, m->data, i) * s;
    }
    return true;
}

/* A new tensor like src (same dtype and shape, owned data). */
static kiln_status like(const kiln_tensor *src, int rank, const int64_t *dims, kiln_tensor *t) {
    memset(t, 0, sizeof *t);
    return kiln_tensor_alloc(t, src->dtype, rank, dims);
}

/* Conv: W (M, C/g, k...), channel = dim 0. ConvTranspose: W (C, M/g, k...), output channel of
 * W[c, j] = (c / (C/g)) * (M/g) + j. Gemm: the channel is B' column n. */
static int64_t weight_channel(int op, const kiln_tensor *w, int64_t group, bool trans_b, int64_t i) {
    int64_t inner = kiln_shape_count(w->rank - 2, w->dims + 2);
    if (op == KILN_OP_Conv) return i / (w->dims[1] * inner);
    if (op == KILN_OP_ConvTranspose) {
        int64_t c = i / (w->dims[1] * inner), j = (i / inner) % w->dims[1];
        return (c / (w->dims[0] / group)) * w->dims[1] + j;
    }
    return trans_b ? i / w->dims[1] : i % w->dims[1]; /* Gemm */
}

static kiln_status fold(pass_ctx *c, int pi, int bi, const bn_coef *k, bool *done) {
    kiln_graph *g = c->g;
    const kiln_node *p = &g->nodes[pi];
    int op = p->op;
    int wv = p->inputs[1], bv = pass_in(p, 2);
    const kiln_tensor *w = &g->values[wv].type;
    *done = false;
    int64_t group = 1;
    bool trans_b = false;
    double gemm_beta = 1.0, alpha = 1.0;
    if (op == KILN_OP_Gemm) {
        const kiln_matmul_params *mp = p->params;
        if (!mp || w->rank != 2) return KILN_STATUS_OK;
        trans_b = mp->trans_b;
        gemm_beta = mp->beta;
        alpha = mp->alpha;
        if (gemm_beta == 0 || alpha == 0 || (trans_b ? w->dims[0] : w->dims[1]) != k->c) return KILN_STATUS_OK;
    } else {
        const kiln_conv_params *cp = p->params;
        if (!cp || w->rank < 3) return KILN_STATUS_OK;
        group = cp->group > 0 ? cp->group : 1;
        int64_t m = op == KILN_OP_Conv ? w->dims[0] : w->dims[1] * group;
        if (m != k->c || (op == KILN_OP_ConvTranspose && w->dims[0] % group)) return KILN_STATUS_OK;
    }
    /* New weights. */
    kiln_tensor nw;
    KILN_TRY(like(w, w->rank, w->dims, &nw));
    int64_t n = kiln_shape_count(w->rank, w->dims);
    for (int64_t i = 0; i < n; i++) {
        double s = k->s[weight_channel(op, w, group, trans_b, i)];
        kiln_store_f64(w->dtype, nw.data, i, kiln_load_f64(w->dtype, w->data, i) * s);
    }
    /* New bias: (b - mean) * s + bias, i.e. b * s + t. */
    kiln_tensor nb;
    kiln_status st;
    const kiln_tensor *b = bv >= 0 ? &g->values[bv].type : NULL;
    if (op != KILN_OP_Gemm || !b || b->rank <= 1 || (b->rank == 2 && b->dims[0] == 1)) {
        /* (C,) for convs; (N,) for Gemm, or the bias's own (1, N) shape */
        int64_t dims[2] = {1, k->c};
        bool keep2 = op == KILN_OP_Gemm && b && b->rank == 2;
        st = like(w, keep2 ? 2 : 1, keep2 ? dims : dims + 1, &nb);
        int64_t bn_count = b ? kiln_shape_count(b->rank, b->dims) : 0;
        for (int64_t i = 0; st == KILN_STATUS_OK && i < k->c; i++) {
            double old = b ? kiln_load_f64(b->dtype, b->data, bn_count == 1 ? 0 : i) : 0.0;
            double v = op == KILN_OP_Gemm ? k->s[i] * old + k->t[i] / gemm_beta : old * k->s[i] + k->t[i];
            kiln_store_f64(w->dtype, nb.data, i, v);
        }
    } else {
        /* Gemm with a (M, N) or (M, 1) C: the result is (M, N). */
        int64_t M = b->dims[0], N = k->c;
        if (b->dims[1] != N && b->dims[1] != 1) {
            kiln_tensor_release(&nw);
            return KILN_STATUS_OK;
        }
        int64_t dims[2] = {M, N};
        st = like(w, 2, dims, &nb);
        for (int64_t r = 0; st == KILN_STATUS_OK && r < M; r++)
            for (int64_t col = 0; col < N; col++) {
                double old = kiln_load_f64(b->dtype, b->data, r * b->dims[1] + (b->dims[1] == 1 ? 0 : col));
                kiln_store_f64(w->dtype, nb.data, r * N + col, k->s[col] * old + k->t[col] / gemm_beta);
            }
    }
    if (st != KILN_STATUS_OK) {
        kiln_tensor_release(&nw);
        return st;
    }
    char base[256];
    int nwv, nbv;
    snprintf(base, sizeof base, "%s_bnfold", g->values[wv].name);
    st = pc_add_const(c, base, &nw, &nwv);
    kiln_tensor_release(&nw);
    if (st == KILN_STATUS_OK) {
        snprintf(base, sizeof base, "%s_bnfold_bias", g->nodes[pi].name);
        st = pc_add_const(c, base, &nb, &nbv);
    }
    kiln_tensor_release(&nb);
    KILN_TRY(st);
    int y = g->nodes[bi].outputs[0];
    pc_kill(c, bi);
    KILN_TRY(pc_set_input(c, pi, 1, nwv));
    KILN_TRY(pc_set_input(c, pi, 2, nbv));
    pc_set_output(c, pi, 0, y);
    pc_touch(c, pi);
    *done = true;
    return KILN_STATUS_OK;
}

/* A constant (of x's dtype) that varies at most along x's channel axis 1 and does not grow x:
 * its per-channel values into out[channels]. */
static bool per_channel(const kiln_graph *g, int cv, const kiln_tensor *x, double *out) {
    if (!pass_is_const(g, cv)) return false;
    const kiln_tensor *c = &g->values[cv].type;
    if (c->dtype != x->dtype || c->rank > x->rank) return false;
    int64_t C = x->dims[1], stride = 0; /* element stride along the channel axis, 0 if broadcast */
    for (int i = 0; i < c->rank; i++) {
        int xd = x->rank - c->rank + i;
        if (c->dims[i] == 1) continue;
        if (xd != 1 || c->dims[i] != C) return false;
        stride = kiln_shape_count(c->rank - i - 1, c->dims + i + 1);
    }
    for (int64_t ch = 0; ch < C; ch++) out[ch] = kiln_load_f64(c->dtype, c->data, ch * stride);
    return true;
}

/* Node n (reading x, the producer's output with `channels` channels) as y = x * s + t. */
static bool node_coefs(const kiln_graph *g, const kiln_node *n, int x, bn_coef *k) {
    const kiln_tensor *xt = &g->values[x].type;
    int64_t C = xt->dims[1];
    if (n->op == KILN_OP_BatchNormalization) return pass_in(n, 0) == x && bn_coefs(g, n, C, k);
    if (n->n_declared != 2 || n->n_outputs != 1) return false;
    int other = pass_other(n, x);
    if (other < 0 || other == x || (n->op == KILN_OP_Div && n->inputs[0] != x)) return false;
    k->c = C;
    k->s = kiln_malloc(sizeof(double) * (size_t)C);
    k->t = kiln_malloc(sizeof(double) * (size_t)C);
    if (!k->s || !k->t || !per_channel(g, other, xt, n->op == KILN_OP_Add ? k->t : k->s)) {
        free(k->s);
        free(k->t);
        return false;
    }
    for (int64_t ch = 0; ch < C; ch++) {
        if (n->op == KILN_OP_Add) k->s[ch] = 1.0;
        else {
            if (n->op == KILN_OP_Div) k->s[ch] = 1.0 / k->s[ch];
            k->t[ch] = 0.0;
        }
    }
    return true;
}

/* Node ni (y = x * s + t per channel) after BatchNormalization bi (constant parameters, its
 * only reader): the BN's scale and bias become scale * s and bias * s + t. */
static kiln_status fold_into_bn(pass_ctx *c, int bi, int ni, const bn_coef *k, bool *done) {
    kiln_graph *g = c->g;
    const kiln_node *bn = &g->nodes[bi];
    const kiln_norm_params *p = bn->params;
    *done = false;
    if (!p || p->training || p->per_activation || bn->n_declared != 5) return KILN_STATUS_OK;
    for (int j = 1; j < bn->n_outputs; j++)
        if (bn->outputs[j] >= 0) return KILN_STATUS_OK;
    for (int i = 1; i <= 2; i++)
        if (pass_const_count(g, bn->inputs[i]) != k->c) return KILN_STATUS_OK;
    int nv[2];
    for (int i = 1; i <= 2; i++) {
        const kiln_tensor *old = &g->values[g->nodes[bi].inputs[i]].type;
        kiln_tensor t;
        KILN_TRY(like(old, old->rank, old->dims, &t));
        for (int64_t ch = 0; ch < k->c; ch++) {
            double v = kiln_load_f64(old->dtype, old->data, ch) * k->s[ch] + (i == 2 ? k->t[ch] : 0.0);
            kiln_store_f64(old->dtype, t.data, ch, v);
        }
        char base[256];
        snprintf(base, sizeof base, "%s_%s_folded", g->nodes[bi].name, i == 1 ? "scale" : "bias");
        kiln_status st = pc_add_const(c, base, &t, &nv[i - 1]);
        kiln_tensor_release(&t);
        KILN_TRY(st);
    }
    int y = g->nodes[ni].outputs[0];
    pc_kill(c, ni);
    KILN_TRY(pc_set_input(c, bi, 1, nv[0]));
    KILN_TRY(pc_set_input(c, bi, 2, nv[1]));
    pc_set_output(c, bi, 0, y);
    pc_touch(c, bi);
    *done = true;
    return KILN_STATUS_OK;
}

/* Folds nodes of the given ops that follow a Conv / ConvTranspose / Gemm (or, for scale_fold,
 * an inference BatchNormalization) into it. */
static kiln_status fold_all(kiln_graph *g, bool bn, int *fused) {
    for (int round = 0; round < 64; round++) {
        pass_ctx c;
        KILN_TRY(pc_init(&c, g));
        int before = *fused;
        kiln_status s = KILN_STATUS_OK;
        for (int i = 0; i < g->n_nodes && s == KILN_STATUS_OK; i++) {
            const kiln_node *n = &g->nodes[i];
            bool kind = bn ? n->op == KILN_OP_BatchNormalization
                           : n->op == KILN_OP_Mul || n->op == KILN_OP_Add || n->op == KILN_OP_Div;
            if (!kind || !pc_open(&c, i) || n->act.kind != KILN_ACT_NONE || n->outputs[0] < 0) continue;
            for (int side = 0; side < (bn ? 1 : 2); side++) {
                int x = pass_in(n, side);
                if (x < 0 || pc_sole_reader(&c, x) != i || !pc_internal(&c, x)) continue;
                int pi = pc_producer(&c, x);
                if (pi < 0) continue;
                const kiln_node *p = &g->nodes[pi];
                bool into_bn = !bn && p->op == KILN_OP_BatchNormalization;
                if (p->op != KILN_OP_Conv && p->op != KILN_OP_ConvTranspose && p->op != KILN_OP_Gemm && !into_bn) continue;
                if (p->outputs[0] != x || p->act.kind != KILN_ACT_NONE || p->n_inputs != p->n_declared) continue;
                if (!pass_is_const(g, pass_in(p, 1)) || (pass_in(p, 2) >= 0 && !pass_is_const(g, pass_in(p, 2)))) continue;
                const kiln_tensor *xt = &g->values[x].type;
                if (xt->rank < 2 || xt->dims[1] < 0 || !kiln_dtype_is_float(xt->dtype)) continue;
                if (!pass_same_shape(g, x, n->outputs[0])) continue; /* no broadcasting onto x */
                bn_coef k;
                if (!node_coefs(g, n, x, &k)) continue;
                bool done;
                s = into_bn ? fold_into_bn(&c, pi, i, &k, &done) : fold(&c, pi, i, &k, &done);
                free(k.s);
                free(k.t);
                if (done) (*fused)++;
                break;
            }
        }
        kiln_status cs = pc_commit(&c);
        if (s == KILN_STATUS_OK) s = cs;
        KILN_TRY(s);
        if (*fused == before) break;
    }
    return pass_finish(g, *fused > 0);
}

kiln_status kiln_pass_bn_fold(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "bn_fold");
    int fused = 0;
    KILN_TRY(fold_all(g, true, &fused));
    if (st) st->fused = st->removed = fused;
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_scale_fold(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "scale_fold");
    int fused = 0;
    KILN_TRY(fold_all(g, false, &fused));
    if (st) st->fused = st->removed = fused;
    return KILN_STATUS_OK;
}
