/* quantize.c — post-training INT8 quantization with ONNX quantized ops (quantize.h says what
 * becomes what). Runs after the fusions, on the graph the engine plans. */
#include "quantize.h"

#include "../quant/quantize.h"
#include "pass_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct qctx {
    const kiln_quant_scales *scales;
    const kiln_quant_options *opt;
    int n_orig;   /* values when the pass started */
    int *qof;     /* per original value: the int8 value quantizing it, -1 if none yet */
    int quantized;
} qctx;

static bool find_scale(const qctx *q, const char *name, float *s) {
    if (!q->scales) return false;
    for (int64_t i = 0; i < q->scales->n; i++)
        if (strcmp(q->scales->names[i], name) == 0) {
            *s = q->scales->scales[i];
            return isfinite(*s) && *s > 0;
        }
    return false;
}

static bool forced_fp32(const qctx *q, const char *node) {
    for (int i = 0; q->opt && i < q->opt->n_fp32_nodes; i++)
        if (strcmp(q->opt->fp32_nodes[i], node) == 0) return true;
    return false;
}

/* A constant of dtype dt and dims, filled from data (n elements of dt's size). */
static kiln_status add_const(pass_ctx *c, const char *base, kiln_dtype dt, int rank, const int64_t *dims, const void *data,
                             int *out) {
    kiln_tensor t = {0};
    KILN_TRY(kiln_tensor_alloc(&t, dt, rank, dims));
    int64_t n = kiln_shape_count(rank, dims);
    if (n > 0) memcpy(t.data, data, (size_t)n * kiln_dtype_size(dt));
    kiln_status s = pc_add_const(c, base, &t, out);
    kiln_tensor_release(&t);
    return s;
}

static kiln_status add_scalar_f32(pass_ctx *c, const char *base, float v, int *out) {
    return add_const(c, base, KILN_DTYPE_F32, 0, NULL, &v, out);
}

static kiln_status add_zero_i8(pass_ctx *c, const char *base, int *out) {
    int8_t z = 0;
    return add_const(c, base, KILN_DTYPE_I8, 0, NULL, &z, out);
}

/* The int8 value quantizing f32 value x with scale s (one QuantizeLinear per value). */
static kiln_status quantize_input(pass_ctx *c, qctx *q, int x, float s, int *out) {
    if (x < q->n_orig && q->qof[x] >= 0) {
        *out = q->qof[x];
        return KILN_STATUS_OK;
    }
    kiln_graph *g = c->g;
    char base[300];
    const char *xn = g->values[x].name;
    int sv, zv, xq, ni;
    snprintf(base, sizeof base, "%s_scale", xn);
    KILN_TRY(add_scalar_f32(c, base, s, &sv));
    snprintf(base, sizeof base, "%s_zero_point", xn);
    KILN_TRY(add_zero_i8(c, base, &zv));
    snprintf(base, sizeof base, "%s_quantized", xn);
    KILN_TRY(pc_add_value(c, base, &xq));
    int ins[3] = {x, sv, zv};
    snprintf(base, sizeof base, "QuantizeLinear_%s", xn);
    KILN_TRY(pc_add_node(c, KILN_OP_QuantizeLinear, base, ins, 3, &xq, 1, NULL, 0, &ni));
    if (x < q->n_orig) q->qof[x] = xq;
    *out = xq;
    return KILN_STATUS_OK;
}

/* yq (int8, scale sy) [-> Relu] -> DequantizeLinear -> y. */
static kiln_status dequantize_output(pass_ctx *c, int yq, float sy, bool relu, int y) {
    kiln_graph *g = c->g;
    char base[300];
    const char *yn = g->values[y].name;
    int ni;
    if (relu) {
        int yr;
        snprintf(base, sizeof base, "%s_quantized_relu", yn);
        KILN_TRY(pc_add_value(c, base, &yr));
        snprintf(base, sizeof base, "Relu_%s_quantized", yn);
        KILN_TRY(pc_add_node(c, KILN_OP_Relu, base, &yq, 1, &yr, 1, NULL, 0, &ni));
        yq = yr;
    }
    int sv, zv;
    snprintf(base, sizeof base, "%s_scale", yn);
    KILN_TRY(add_scalar_f32(c, base, sy, &sv));
    snprintf(base, sizeof base, "%s_zero_point", yn);
    KILN_TRY(add_zero_i8(c, base, &zv));
    int ins[3] = {yq, sv, zv};
    snprintf(base, sizeof base, "DequantizeLinear_%s", yn);
    return pc_add_node(c, KILN_OP_DequantizeLinear, base, ins, 3, &y, 1, NULL, 0, &ni);
}

/* Kills node ni and frees its name for the node replacing it (the dead node is renamed). */
static kiln_status kill_keep_name(pass_ctx *c, int ni, char *name, size_t cap) {
    kiln_node *n = &c->g->nodes[ni];
    snprintf(name, cap, "%s", n->name);
    size_t len = strlen(n->name) + 16;
    char *dead = malloc(len);
    if (!dead) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    snprintf(dead, len, "%s__replaced", n->name);
    free(n->name);
    n->name = dead;
    n->attrs.node_name = dead;
    pc_kill(c, ni);
    return KILN_STATUS_OK;
}

static bool f32_const(const kiln_graph *g, int v) {
    return pass_is_const(g, v) && g->values[v].type.dtype == KILN_DTYPE_F32;
}

static bool f32_value(const kiln_graph *g, int v) {
    return v >= 0 && g->values[v].type.dtype == KILN_DTYPE_F32 && g->values[v].type.rank >= 0;
}

static kiln_status try_conv(pass_ctx *c, qctx *q, int ni, bool *done) {
    kiln_graph *g = c->g;
    const kiln_node *n = &g->nodes[ni];
    int x = pass_in(n, 0), w = pass_in(n, 1), b = pass_in(n, 2), y = n->outputs[0];
    if (n->n_outputs != 1 || !f32_value(g, x) || !f32_const(g, w) || (b >= 0 && !f32_const(g, b))) return KILN_STATUS_OK;
    if (n->act.kind != KILN_ACT_NONE && n->act.kind != KILN_ACT_RELU) return KILN_STATUS_OK;
    const kiln_tensor *wt = &g->values[w].type; /* only until values are added */
    if (wt->rank != 3 && wt->rank != 4) return KILN_STATUS_OK;
    int wrank = wt->rank;
    int64_t wdims[KILN_MAX_RANK];
    memcpy(wdims, wt->dims, sizeof(int64_t) * (size_t)wrank);
    int64_t m = wt->dims[0], per = kiln_shape_count(wt->rank - 1, wt->dims + 1);
    if (m <= 0 || per <= 0 || (b >= 0 && pass_const_count(g, b) != m)) return KILN_STATUS_OK;
    float sx, sy;
    if (!find_scale(q, g->values[x].name, &sx) || !find_scale(q, g->values[y].name, &sy)) return KILN_STATUS_OK;
    int8_t *wq = malloc((size_t)(m * per));
    float *sw = malloc(sizeof(float) * (size_t)m);
    int32_t *bq = malloc(sizeof(int32_t) * (size_t)m);
    kiln_status s = (!wq || !sw || !bq) ? kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory") : KILN_STATUS_OK;
    if (s == KILN_STATUS_OK) s = kiln_quant_weights_per_channel(wt->data, m, per, wq, sw);
    if (s == KILN_STATUS_OK) {
        for (int64_t k = 0; k < m; k++) {
            double bs = (double)sx * (double)sw[k];
            double v = b >= 0 ? rint((double)((const float *)g->values[b].type.data)[k] / bs) : 0.0;
            bq[k] = v > 2147483647.0 ? INT32_MAX : v < -2147483648.0 ? INT32_MIN : (int32_t)v;
        }
    }
    char base[300];
    const char *yn = g->values[y].name;
    int xq = -1, sxv = -1, zxv = -1, wv = -1, swv = -1, zwv = -1, syv = -1, zyv = -1, bv = -1, yq = -1;
    if (s == KILN_STATUS_OK) s = quantize_input(c, q, x, sx, &xq);
    if (s == KILN_STATUS_OK) s = add_scalar_f32(c, "conv_x_scale", sx, &sxv);
    if (s == KILN_STATUS_OK) s = add_zero_i8(c, "conv_x_zero_point", &zxv);
    snprintf(base, sizeof base, "%s_quantized", g->values[w].name);
    if (s == KILN_STATUS_OK) s = add_const(c, base, KILN_DTYPE_I8, wrank, wdims, wq, &wv);
    snprintf(base, sizeof base, "%s_scale", g->values[w].name);
    if (s == KILN_STATUS_OK) s = add_const(c, base, KILN_DTYPE_F32, 1, &m, sw, &swv);
    snprintf(base, sizeof base, "%s_zero_point", g->values[w].name);
    if (s == KILN_STATUS_OK) s = add_zero_i8(c, base, &zwv);
    snprintf(base, sizeof base, "%s_out_scale", yn);
    if (s == KILN_STATUS_OK) s = add_scalar_f32(c, base, sy, &syv);
    snprintf(base, sizeof base, "%s_out_zero_point", yn);
    if (s == KILN_STATUS_OK) s = add_zero_i8(c, base, &zyv);
    snprintf(base, sizeof base, "%s_bias_quantized", yn);
    if (s == KILN_STATUS_OK && b >= 0) s = add_const(c, base, KILN_DTYPE_I32, 1, &m, bq, &bv);
    snprintf(base, sizeof base, "%s_quantized", yn);
    if (s == KILN_STATUS_OK) s = pc_add_value(c, base, &yq);
    free(wq);
    free(sw);
    free(bq);
    KILN_TRY(s);
    n = &g->nodes[ni]; /* nodes may have moved */
    bool relu = n->act.kind == KILN_ACT_RELU;
    char name[300];
    kiln_attrs attrs = n->attrs;
    KILN_TRY(kill_keep_name(c, ni, name, sizeof name));
    int ins[9] = {xq, sxv, zxv, wv, swv, zwv, syv, zyv, bv};
    int qn;
    KILN_TRY(pc_add_node(c, KILN_OP_QLinearConv, name, ins, b >= 0 ? 9 : 8, &yq, 1, attrs.items, attrs.n, &qn));
    KILN_TRY(dequantize_output(c, yq, sy, relu, y));
    *done = true;
    return KILN_STATUS_OK;
}

static kiln_status try_matmul(pass_ctx *c, qctx *q, int ni, bool *done) {
    kiln_graph *g = c->g;
    kiln_node *n = &g->nodes[ni];
    int a = pass_in(n, 0), w = pass_in(n, 1), y = n->outputs[0], bias = -1;
    bool gemm = n->op == KILN_OP_Gemm;
    if (n->n_outputs != 1 || !f32_value(g, a) || g->values[a].type.rank < 2 || !f32_const(g, w) || g->values[w].type.rank != 2)
        return KILN_STATUS_OK;
    int64_t trans_a = 0, trans_b = 0;
    float alpha = 1, beta = 1;
    if (gemm) {
        if (kiln_attr_int(&n->attrs, "transA", 0, &trans_a) || kiln_attr_int(&n->attrs, "transB", 0, &trans_b) ||
            kiln_attr_float(&n->attrs, "alpha", 1, &alpha) || kiln_attr_float(&n->attrs, "beta", 1, &beta)) {
            kiln_clear_error();
            return KILN_STATUS_OK;
        }
        if (trans_a || g->values[a].type.rank != 2 || !isfinite(alpha) || !isfinite(beta)) return KILN_STATUS_OK;
        bias = pass_in(n, 2);
        if (bias >= 0 && beta == 0) bias = -1;
        if (bias >= 0 && beta != 1 && !f32_const(g, bias)) return KILN_STATUS_OK;
    } else if (n->op == KILN_OP_FusedMatMul) {
        bias = pass_in(n, 2);
    }
    if (bias >= 0 && !f32_value(g, bias)) return KILN_STATUS_OK;
    float sx, sy = 0;
    if (!find_scale(q, g->values[a].name, &sx)) return KILN_STATUS_OK;
    bool has_sy = find_scale(q, g->values[y].name, &sy);
    bool qlinear = bias < 0 && has_sy && (n->act.kind == KILN_ACT_NONE || n->act.kind == KILN_ACT_RELU);
    const kiln_tensor *wt = &g->values[w].type;
    int64_t k_ = trans_b ? wt->dims[1] : wt->dims[0], n_ = trans_b ? wt->dims[0] : wt->dims[1];
    if (k_ <= 0 || n_ <= 0) return KILN_STATUS_OK;
    /* Output-feature-major [N, K] with alpha folded in, quantized, then laid out [K, N]. */
    float *wn = malloc(sizeof(float) * (size_t)(k_ * n_));
    int8_t *qn = malloc((size_t)(k_ * n_)), *qk = malloc((size_t)(k_ * n_));
    float *sw = malloc(sizeof(float) * (size_t)n_), *sxw = malloc(sizeof(float) * (size_t)n_);
    kiln_status s = (!wn || !qn || !qk || !sw || !sxw) ? kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory") : KILN_STATUS_OK;
    if (s == KILN_STATUS_OK) {
        const float *wd = wt->data;
        for (int64_t j = 0; j < n_; j++)
            for (int64_t i = 0; i < k_; i++) wn[j * k_ + i] = alpha * (trans_b ? wd[j * k_ + i] : wd[i * n_ + j]);
        s = kiln_quant_weights_per_channel(wn, n_, k_, qn, sw);
    }
    if (s == KILN_STATUS_OK) {
        for (int64_t j = 0; j < n_; j++) {
            sxw[j] = sx * sw[j];
            for (int64_t i = 0; i < k_; i++) qk[i * n_ + j] = qn[j * k_ + i];
        }
    }
    char base[300];
    const char *yn = g->values[y].name;
    int64_t kn[2] = {k_, n_};
    int xq = -1, wv = -1, zwv = -1, yq = -1;
    if (s == KILN_STATUS_OK) s = quantize_input(c, q, a, sx, &xq);
    snprintf(base, sizeof base, "%s_quantized", g->values[w].name);
    if (s == KILN_STATUS_OK) s = add_const(c, base, KILN_DTYPE_I8, 2, kn, qk, &wv);
    snprintf(base, sizeof base, "%s_zero_point", g->values[w].name);
    if (s == KILN_STATUS_OK) s = add_zero_i8(c, base, &zwv);
    snprintf(base, sizeof base, "%s_quantized", yn);
    if (s == KILN_STATUS_OK) s = pc_add_value(c, base, &yq);
    int swv = -1, sxv = -1, zxv = -1, syv = -1, zyv = -1, sxwv = -1, cv = bias;
    if (qlinear) {
        snprintf(base, sizeof base, "%s_scale", g->values[w].name);
        if (s == KILN_STATUS_OK) s = add_const(c, base, KILN_DTYPE_F32, 1, &n_, sw, &swv);
        if (s == KILN_STATUS_OK) s = add_scalar_f32(c, "matmul_a_scale", sx, &sxv);
        if (s == KILN_STATUS_OK) s = add_zero_i8(c, "matmul_a_zero_point", &zxv);
        snprintf(base, sizeof base, "%s_out_scale", yn);
        if (s == KILN_STATUS_OK) s = add_scalar_f32(c, base, sy, &syv);
        snprintf(base, sizeof base, "%s_out_zero_point", yn);
        if (s == KILN_STATUS_OK) s = add_zero_i8(c, base, &zyv);
    } else {
        snprintf(base, sizeof base, "%s_accumulator_scale", yn);
        if (s == KILN_STATUS_OK) s = add_const(c, base, KILN_DTYPE_F32, 1, &n_, sxw, &sxwv);
        if (s == KILN_STATUS_OK && bias >= 0 && beta != 1) {
            const kiln_tensor *ct = &g->values[bias].type;
            int64_t cnt = kiln_shape_count(ct->rank, ct->dims);
            float *cb = malloc(sizeof(float) * (size_t)(cnt > 0 ? cnt : 1));
            if (!cb) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            for (int64_t i = 0; cb && i < cnt; i++) cb[i] = beta * ((const float *)ct->data)[i];
            snprintf(base, sizeof base, "%s_bias", yn);
            if (s == KILN_STATUS_OK) s = add_const(c, base, KILN_DTYPE_F32, ct->rank, ct->dims, cb, &cv);
            free(cb);
        }
    }
    free(wn);
    free(qn);
    free(qk);
    free(sw);
    free(sxw);
    KILN_TRY(s);
    n = &g->nodes[ni];
    kiln_act act = n->act;
    char name[300];
    KILN_TRY(kill_keep_name(c, ni, name, sizeof name));
    int nn;
    if (qlinear) {
        int ins[8] = {xq, sxv, zxv, wv, swv, zwv, syv, zyv};
        KILN_TRY(pc_add_node(c, KILN_OP_QLinearMatMul, name, ins, 8, &yq, 1, NULL, 0, &nn));
        KILN_TRY(dequantize_output(c, yq, sy, act.kind == KILN_ACT_RELU, y));
    } else {
        /* yq is the int32 accumulator here. */
        int zav;
        KILN_TRY(add_zero_i8(c, "matmul_a_zero_point", &zav));
        int ins[4] = {xq, wv, zav, zwv};
        KILN_TRY(pc_add_node(c, KILN_OP_MatMulInteger, name, ins, 4, &yq, 1, NULL, 0, &nn));
        int yd = y;
        if (bias >= 0) {
            snprintf(base, sizeof base, "%s_dequantized", yn);
            KILN_TRY(pc_add_value(c, base, &yd));
        }
        kiln_attr ax = {.name = "axis", .type = KILN_ATTR_INT, .i = -1};
        int dins[2] = {yq, sxwv};
        snprintf(base, sizeof base, "DequantizeLinear_%s", yn);
        KILN_TRY(pc_add_node(c, KILN_OP_DequantizeLinear, base, dins, 2, &yd, 1, &ax, 1, &nn));
        if (bias >= 0) {
            int ains[2] = {yd, cv};
            snprintf(base, sizeof base, "Add_%s_bias", yn);
            KILN_TRY(pc_add_node(c, KILN_OP_Add, base, ains, 2, &y, 1, NULL, 0, &nn));
        }
        g->nodes[nn].act = act;
    }
    *done = true;
    return KILN_STATUS_OK;
}

/* DequantizeLinear(q, s, z) -> QuantizeLinear(., s, z) with equal scalar parameters: q. */
static bool same_scalar(const kiln_graph *g, int a, int b) {
    if (a < 0 || b < 0) return a < 0 && b < 0;
    double x, y;
    return pass_const_scalar(g, a, &x) && pass_const_scalar(g, b, &y) && x == y &&
           g->values[a].type.dtype == g->values[b].type.dtype;
}

static kiln_status visit_collapse(pass_ctx *c, int ni, void *arg, bool *done) {
    (void)arg;
    kiln_graph *g = c->g;
    const kiln_node *qn = &g->nodes[ni];
    if (qn->op != KILN_OP_QuantizeLinear || qn->act.kind != KILN_ACT_NONE) return KILN_STATUS_OK;
    int d = pc_prod_op(c, qn->inputs[0], KILN_OP_DequantizeLinear);
    if (d < 0) return KILN_STATUS_OK;
    const kiln_node *dn = &g->nodes[d];
    int qv = dn->inputs[0], y = qn->outputs[0];
    if (qn->n_outputs != 1 || !pc_internal(c, y)) return KILN_STATUS_OK;
    if (g->values[qv].type.dtype != g->values[y].type.dtype) return KILN_STATUS_OK;
    if (!same_scalar(g, pass_in(dn, 1), pass_in(qn, 1))) return KILN_STATUS_OK;
    int zd = pass_in(dn, 2), zq = pass_in(qn, 2);
    double z1 = 0, z2 = 0;
    if ((zd >= 0 && !pass_const_scalar(g, zd, &z1)) || (zq >= 0 && !pass_const_scalar(g, zq, &z2)) || z1 != z2)
        return KILN_STATUS_OK;
    int x = qn->inputs[0];
    bool dq_dead = pc_uses(c, x) == 1 && pc_internal(c, x);
    pc_replace_uses(c, y, qv);
    pc_kill(c, ni);
    if (dq_dead) pc_kill(c, d);
    *done = true;
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_quantize(kiln_graph *g, const kiln_quant_scales *scales, const kiln_quant_options *opt,
                               kiln_pass_stats *st) {
    pass_stats_init(st, "quantize_int8");
    if (g->opset < KILN_QUANT_MIN_OPSET)
        return kiln_error(KILN_STATUS_UNSUPPORTED,
                          "int8 engines need a model of opset >= %d (per-axis DequantizeLinear); this one is opset %d",
                          KILN_QUANT_MIN_OPSET, g->opset);
    qctx q = {.scales = scales, .opt = opt, .n_orig = g->n_values};
    q.qof = malloc(sizeof(int) * (size_t)(g->n_values ? g->n_values : 1));
    if (!q.qof) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < g->n_values; i++) q.qof[i] = -1;
    pass_ctx c;
    kiln_status s = pc_init(&c, g);
    if (s != KILN_STATUS_OK) {
        free(q.qof);
        return s;
    }
    int n0 = g->n_nodes;
    for (int i = 0; i < n0 && s == KILN_STATUS_OK; i++) {
        if (!pc_open(&c, i) || forced_fp32(&q, g->nodes[i].name)) continue;
        bool done = false;
        int op = g->nodes[i].op;
        if (op == KILN_OP_Conv) s = try_conv(&c, &q, i, &done);
        else if (op == KILN_OP_MatMul || op == KILN_OP_Gemm || op == KILN_OP_FusedMatMul) s = try_matmul(&c, &q, i, &done);
        q.quantized += done;
    }
    free(q.qof);
    kiln_status cs = pc_commit(&c);
    KILN_TRY(s ? s : cs);
    KILN_TRY(pass_finish(g, q.quantized > 0));
    kiln_pass_stats cst;
    pass_stats_init(&cst, "quantize_collapse");
    if (q.quantized) KILN_TRY(pass_fuse_rounds(g, &cst, visit_collapse, NULL));
    KILN_TRY(kiln_pass_dead_code(g, NULL));
    if (st) {
        st->fused = q.quantized;
        st->removed = cst.fused;
    }
    return KILN_STATUS_OK;
}
