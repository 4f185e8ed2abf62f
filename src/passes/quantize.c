/* quantize.c — INT8 layers with ONNX's quantized ops (quantize.h says what becomes what): the
 * parameters of each layer come from calibrated scales and f32 weights (post-training, here) or
 * from the model's own Q/DQ nodes (explicit, qdq.c); one emitter rewrites both. Runs after the
 * fusions, on the graph the engine plans. */
#include "quantize.h"

#include "../quant/quantize.h"
#include "quant_layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct qctx {
    const kiln_quant_scales *scales; /* NULL: explicit quantization only */
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

/* A scalar zero point of dtype dt (I8 or U8). */
static kiln_status add_zero(pass_ctx *c, const char *base, kiln_dtype dt, int32_t z, int *out) {
    int8_t i = (int8_t)z;
    uint8_t u = (uint8_t)z;
    return add_const(c, base, dt, 0, NULL, dt == KILN_DTYPE_U8 ? (const void *)&u : (const void *)&i, out);
}

static kiln_status add_zero_i8(pass_ctx *c, const char *base, int *out) { return add_zero(c, base, KILN_DTYPE_I8, 0, out); }

/* The int8 (or uint8) value quantizing the layer's f32 input (one QuantizeLinear per value). */
static kiln_status quantize_input(pass_ctx *c, qctx *q, const qlayer *L, int *out) {
    int x = L->x;
    if (x < q->n_orig && q->qof[x] >= 0) {
        *out = q->qof[x];
        return KILN_STATUS_OK;
    }
    kiln_graph *g = c->g;
    char base[300];
    const char *xn = g->values[x].name;
    int sv, zv, xq, ni;
    snprintf(base, sizeof base, "%s_scale", xn);
    KILN_TRY(add_scalar_f32(c, base, L->sx, &sv));
    snprintf(base, sizeof base, "%s_zero_point", xn);
    KILN_TRY(add_zero(c, base, L->xdt, L->zx, &zv));
    snprintf(base, sizeof base, "%s_quantized", xn);
    KILN_TRY(pc_add_value(c, base, &xq));
    int ins[3] = {x, sv, zv};
    snprintf(base, sizeof base, "QuantizeLinear_%s", xn);
    KILN_TRY(pc_add_node(c, KILN_OP_QuantizeLinear, base, ins, 3, &xq, 1, NULL, 0, &ni));
    if (x < q->n_orig) q->qof[x] = xq;
    *out = xq;
    return KILN_STATUS_OK;
}

/* yq (the layer's output quantization) [-> Relu] -> DequantizeLinear -> y. A Relu on uint8 with
 * zero point 0 changes nothing and is left out. */
static kiln_status dequantize_output(pass_ctx *c, const qlayer *L, int yq, bool relu, int y) {
    kiln_graph *g = c->g;
    char base[300];
    const char *yn = g->values[y].name;
    int ni;
    if (relu && L->ydt == KILN_DTYPE_I8) {
        int yr;
        snprintf(base, sizeof base, "%s_quantized_relu", yn);
        KILN_TRY(pc_add_value(c, base, &yr));
        snprintf(base, sizeof base, "Relu_%s_quantized", yn);
        KILN_TRY(pc_add_node(c, KILN_OP_Relu, base, &yq, 1, &yr, 1, NULL, 0, &ni));
        yq = yr;
    }
    int sv, zv;
    snprintf(base, sizeof base, "%s_scale", yn);
    KILN_TRY(add_scalar_f32(c, base, L->sy, &sv));
    snprintf(base, sizeof base, "%s_zero_point", yn);
    KILN_TRY(add_zero(c, base, L->ydt, L->zy, &zv));
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

/* ---- post-training: parameters from calibrated scales and f32 weights ---------------------- */

static const char *ptq_conv_layer(pass_ctx *c, qctx *q, int ni, qlayer *L) {
    kiln_graph *g = c->g;
    qlayer_free(L);
    const kiln_node *n = &g->nodes[ni];
    int x = pass_in(n, 0), w = pass_in(n, 1), b = pass_in(n, 2), y = n->outputs[0];
    if (n->n_outputs != 1 || !f32_value(g, x) || !f32_const(g, w) || (b >= 0 && !f32_const(g, b)))
        return "its weights (or bias) are not f32 constants";
    const kiln_tensor *wt = &g->values[w].type;
    if (wt->rank != 3 && wt->rank != 4) return "only 1-D and 2-D convolutions become int8";
    int64_t m = wt->dims[0], per = kiln_shape_count(wt->rank - 1, wt->dims + 1);
    if (m <= 0 || per <= 0 || (b >= 0 && pass_const_count(g, b) != m)) return "its weights are empty or its bias odd";
    if (!find_scale(q, g->values[x].name, &L->sx)) return "its input has no calibrated scale";
    L->has_y = find_scale(q, g->values[y].name, &L->sy) && (n->act.kind == KILN_ACT_NONE || n->act.kind == KILN_ACT_RELU);
    L->x = x;
    L->xdt = L->ydt = KILN_DTYPE_I8;
    L->m = m;
    L->per = per;
    L->wrank = wt->rank;
    memcpy(L->wdims, wt->dims, sizeof(int64_t) * (size_t)wt->rank);
    L->w = malloc((size_t)(m * per));
    L->sw = malloc(sizeof(float) * (size_t)m);
    L->bias = b >= 0 ? malloc(sizeof(float) * (size_t)m) : NULL;
    if (!L->w || !L->sw || (b >= 0 && !L->bias)) return "out of memory";
    if (b >= 0) memcpy(L->bias, g->values[b].type.data, sizeof(float) * (size_t)m);
    if (kiln_quant_weights_per_channel(wt->data, m, per, L->w, L->sw)) {
        kiln_clear_error();
        return "its weights are not finite";
    }
    return NULL;
}

static const char *ptq_matmul_layer(pass_ctx *c, qctx *q, int ni, qlayer *L) {
    kiln_graph *g = c->g;
    qlayer_free(L);
    kiln_node *n = &g->nodes[ni];
    int a = pass_in(n, 0), w = pass_in(n, 1), y = n->outputs[0], bias = -1;
    bool gemm = n->op == KILN_OP_Gemm;
    if (n->n_outputs != 1 || !f32_value(g, a) || g->values[a].type.rank < 2 || !f32_const(g, w) || g->values[w].type.rank != 2)
        return "its weights are not a constant f32 matrix";
    int64_t trans_a = 0, trans_b = 0;
    float alpha = 1, beta = 1;
    if (gemm) {
        if (kiln_attr_int(&n->attrs, "transA", 0, &trans_a) || kiln_attr_int(&n->attrs, "transB", 0, &trans_b) ||
            kiln_attr_float(&n->attrs, "alpha", 1, &alpha) || kiln_attr_float(&n->attrs, "beta", 1, &beta)) {
            kiln_clear_error();
            return "malformed Gemm attributes";
        }
        if (g->values[a].type.rank != 2 || !isfinite(alpha) || !isfinite(beta)) return "Gemm's alpha or beta is not finite";
        bias = pass_in(n, 2);
        if (bias >= 0 && beta == 0) bias = -1;
        if (bias >= 0 && beta != 1 && !f32_const(g, bias)) return "Gemm's beta is not 1 and C is not a constant";
    } else if (n->op == KILN_OP_FusedMatMul) {
        bias = pass_in(n, 2);
    }
    if (bias >= 0 && !f32_value(g, bias)) return "its bias is not f32";
    if (!find_scale(q, g->values[a].name, &L->sx)) return "its input has no calibrated scale";
    L->has_y = find_scale(q, g->values[y].name, &L->sy) && (n->act.kind == KILN_ACT_NONE || n->act.kind == KILN_ACT_RELU);
    const kiln_tensor *wt = &g->values[w].type;
    int64_t k_ = trans_b ? wt->dims[1] : wt->dims[0], n_ = trans_b ? wt->dims[0] : wt->dims[1];
    if (k_ <= 0 || n_ <= 0) return "its weights are empty";
    L->x = a;
    L->xdt = L->ydt = KILN_DTYPE_I8;
    L->trans_a = trans_a != 0;
    L->m = n_;
    L->per = k_;
    /* output-feature-major [N][K] with alpha folded in, then quantized per output feature */
    float *wn = malloc(sizeof(float) * (size_t)(k_ * n_));
    L->w = malloc((size_t)(k_ * n_));
    L->sw = malloc(sizeof(float) * (size_t)n_);
    if (!wn || !L->w || !L->sw) {
        free(wn);
        return "out of memory";
    }
    const float *wd = wt->data;
    for (int64_t j = 0; j < n_; j++)
        for (int64_t i = 0; i < k_; i++) wn[j * k_ + i] = alpha * (trans_b ? wd[j * k_ + i] : wd[i * n_ + j]);
    kiln_status s = kiln_quant_weights_per_channel(wn, n_, k_, L->w, L->sw);
    free(wn);
    if (s) {
        kiln_clear_error();
        return "its weights are not finite";
    }
    if (bias >= 0 && beta != 1) {
        const kiln_tensor *ct = &g->values[bias].type;
        int64_t cnt = kiln_shape_count(ct->rank, ct->dims);
        kiln_tensor t = {0};
        char base[300];
        snprintf(base, sizeof base, "%s_bias", g->values[y].name);
        s = kiln_tensor_alloc(&t, KILN_DTYPE_F32, ct->rank, ct->dims);
        for (int64_t i = 0; s == KILN_STATUS_OK && i < cnt; i++) ((float *)t.data)[i] = beta * ((const float *)ct->data)[i];
        if (s == KILN_STATUS_OK) s = pc_add_const(c, base, &t, &bias);
        kiln_tensor_release(&t);
        if (s) {
            kiln_clear_error();
            return "out of memory";
        }
    }
    L->bias_v = bias;
    return NULL;
}

/* ---- the emitter: one qlayer into integer ops ----------------------------------------------- */

/* acc (int32, scale sx * sw[c] along axis) -> DequantizeLinear -> [Add bias] -> y, with act on the
 * last f32 node. bias_v: an f32 value (or -1). */
static kiln_status dequantize_accumulator(pass_ctx *c, const qlayer *L, int acc, int axis, int bias_v, kiln_act act, int y) {
    kiln_graph *g = c->g;
    char base[300];
    const char *yn = g->values[y].name;
    float *sxw = malloc(sizeof(float) * (size_t)L->m);
    if (!sxw) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t j = 0; j < L->m; j++) sxw[j] = L->sx * L->sw[j];
    int sv, nn, yd = y;
    snprintf(base, sizeof base, "%s_accumulator_scale", yn);
    kiln_status s = add_const(c, base, KILN_DTYPE_F32, 1, &L->m, sxw, &sv);
    free(sxw);
    KILN_TRY(s);
    if (bias_v >= 0) {
        snprintf(base, sizeof base, "%s_dequantized", yn);
        KILN_TRY(pc_add_value(c, base, &yd));
    }
    kiln_attr ax = {.name = "axis", .type = KILN_ATTR_INT, .i = axis};
    int dins[2] = {acc, sv};
    snprintf(base, sizeof base, "DequantizeLinear_%s", yn);
    KILN_TRY(pc_add_node(c, KILN_OP_DequantizeLinear, base, dins, 2, &yd, 1, &ax, 1, &nn));
    if (bias_v >= 0) {
        int ains[2] = {yd, bias_v};
        snprintf(base, sizeof base, "Add_%s_bias", yn);
        KILN_TRY(pc_add_node(c, KILN_OP_Add, base, ains, 2, &y, 1, NULL, 0, &nn));
    }
    c->g->nodes[nn].act = act;
    return KILN_STATUS_OK;
}

/* Conv -> Q(x) -> QLinearConv (int32 bias) [-> Relu] -> DQ, or without an output scale
 * Q(x) -> ConvInteger -> DQ(int32, sx * sw[c], axis 1) [-> Add(bias [m, 1, ...])]. */
static kiln_status emit_conv(pass_ctx *c, qctx *q, int ni, const qlayer *L) {
    kiln_graph *g = c->g;
    int y = g->nodes[ni].outputs[0], w = g->nodes[ni].inputs[1];
    bool qlinear = L->has_y;
    char base[300], wn[260], yn[260];
    snprintf(wn, sizeof wn, "%s", g->values[w].name);
    snprintf(yn, sizeof yn, "%s", g->values[y].name);
    int xq, sxv, zxv, wv, swv = -1, zwv, syv = -1, zyv = -1, bv = -1, yq;
    KILN_TRY(quantize_input(c, q, L, &xq));
    KILN_TRY(add_scalar_f32(c, "conv_x_scale", L->sx, &sxv));
    KILN_TRY(add_zero(c, "conv_x_zero_point", L->xdt, L->zx, &zxv));
    snprintf(base, sizeof base, "%s_quantized", wn);
    KILN_TRY(add_const(c, base, KILN_DTYPE_I8, L->wrank, L->wdims, L->w, &wv));
    snprintf(base, sizeof base, "%s_zero_point", wn);
    KILN_TRY(add_zero_i8(c, base, &zwv));
    snprintf(base, sizeof base, "%s_quantized", yn);
    KILN_TRY(pc_add_value(c, base, &yq));
    if (qlinear) {
        snprintf(base, sizeof base, "%s_scale", wn);
        KILN_TRY(add_const(c, base, KILN_DTYPE_F32, 1, &L->m, L->sw, &swv));
        snprintf(base, sizeof base, "%s_out_scale", yn);
        KILN_TRY(add_scalar_f32(c, base, L->sy, &syv));
        snprintf(base, sizeof base, "%s_out_zero_point", yn);
        KILN_TRY(add_zero(c, base, L->ydt, L->zy, &zyv));
        if (L->bias) {
            int32_t *bq = malloc(sizeof(int32_t) * (size_t)L->m);
            if (!bq) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            for (int64_t k = 0; k < L->m; k++) {
                double v = rint((double)L->bias[k] / ((double)L->sx * (double)L->sw[k]));
                bq[k] = v > 2147483647.0 ? INT32_MAX : v < -2147483648.0 ? INT32_MIN : (int32_t)v;
            }
            snprintf(base, sizeof base, "%s_bias_quantized", yn);
            kiln_status s = add_const(c, base, KILN_DTYPE_I32, 1, &L->m, bq, &bv);
            free(bq);
            KILN_TRY(s);
        }
    } else if (L->bias) {
        int64_t bdims[KILN_MAX_RANK] = {L->m, 1, 1};
        snprintf(base, sizeof base, "%s_bias", yn);
        KILN_TRY(add_const(c, base, KILN_DTYPE_F32, L->wrank - 1, bdims, L->bias, &bv));
    }
    kiln_node *n = &g->nodes[ni]; /* nodes may have moved */
    kiln_act act = n->act;
    kiln_attrs attrs = n->attrs;
    char name[300];
    KILN_TRY(kill_keep_name(c, ni, name, sizeof name));
    int qn;
    if (qlinear) {
        int ins[9] = {xq, sxv, zxv, wv, swv, zwv, syv, zyv, bv};
        KILN_TRY(pc_add_node(c, KILN_OP_QLinearConv, name, ins, L->bias ? 9 : 8, &yq, 1, attrs.items, attrs.n, &qn));
        return dequantize_output(c, L, yq, act.kind == KILN_ACT_RELU, y);
    }
    int ins[4] = {xq, wv, zxv, zwv};
    KILN_TRY(pc_add_node(c, KILN_OP_ConvInteger, name, ins, 4, &yq, 1, attrs.items, attrs.n, &qn));
    return dequantize_accumulator(c, L, yq, 1, bv, act, y);
}

/* MatMul / Gemm / FusedMatMul -> Q(x) [-> Transpose] -> QLinearMatMul(B int8 [K, N]) [-> Relu] -> DQ,
 * or with a bias or without an output scale: MatMulInteger -> DQ(int32, axis -1) [-> Add(bias)]. */
static kiln_status emit_matmul(pass_ctx *c, qctx *q, int ni, const qlayer *L) {
    kiln_graph *g = c->g;
    int y = g->nodes[ni].outputs[0], w = g->nodes[ni].inputs[1];
    kiln_act act = g->nodes[ni].act;
    bool qlinear = L->bias_v < 0 && L->has_y;
    int64_t k_ = L->per, n_ = L->m, kn[2] = {k_, n_};
    char base[300], wn[260], yn[260];
    snprintf(wn, sizeof wn, "%s", g->values[w].name);
    snprintf(yn, sizeof yn, "%s", g->values[y].name);
    int8_t *qk = malloc((size_t)(k_ * n_));
    if (!qk) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t j = 0; j < n_; j++)
        for (int64_t i = 0; i < k_; i++) qk[i * n_ + j] = L->w[j * k_ + i];
    int xq, wv, zwv, zxv, yq, nn;
    kiln_status s = quantize_input(c, q, L, &xq);
    snprintf(base, sizeof base, "%s_quantized", wn);
    if (s == KILN_STATUS_OK) s = add_const(c, base, KILN_DTYPE_I8, 2, kn, qk, &wv);
    free(qk);
    KILN_TRY(s);
    snprintf(base, sizeof base, "%s_zero_point", wn);
    KILN_TRY(add_zero_i8(c, base, &zwv));
    KILN_TRY(add_zero(c, "matmul_a_zero_point", L->xdt, L->zx, &zxv));
    snprintf(base, sizeof base, "%s_quantized", yn);
    KILN_TRY(pc_add_value(c, base, &yq));
    if (L->trans_a) {
        /* Gemm's transA: the int8 input is transposed, the product is then a plain MatMul */
        int xt;
        int64_t perm[2] = {1, 0};
        kiln_attr pa = {.name = "perm", .type = KILN_ATTR_INTS, .n = 2, .ints = perm};
        snprintf(base, sizeof base, "%s_transposed", g->values[xq].name);
        KILN_TRY(pc_add_value(c, base, &xt));
        snprintf(base, sizeof base, "Transpose_%s", g->values[xq].name);
        KILN_TRY(pc_add_node(c, KILN_OP_Transpose, base, &xq, 1, &xt, 1, &pa, 1, &nn));
        xq = xt;
    }
    int swv = -1, sxv = -1, syv = -1, zyv = -1;
    if (qlinear) {
        snprintf(base, sizeof base, "%s_scale", wn);
        KILN_TRY(add_const(c, base, KILN_DTYPE_F32, 1, &n_, L->sw, &swv));
        KILN_TRY(add_scalar_f32(c, "matmul_a_scale", L->sx, &sxv));
        snprintf(base, sizeof base, "%s_out_scale", yn);
        KILN_TRY(add_scalar_f32(c, base, L->sy, &syv));
        snprintf(base, sizeof base, "%s_out_zero_point", yn);
        KILN_TRY(add_zero(c, base, L->ydt, L->zy, &zyv));
    }
    char name[300];
    KILN_TRY(kill_keep_name(c, ni, name, sizeof name));
    if (qlinear) {
        int ins[8] = {xq, sxv, zxv, wv, swv, zwv, syv, zyv};
        KILN_TRY(pc_add_node(c, KILN_OP_QLinearMatMul, name, ins, 8, &yq, 1, NULL, 0, &nn));
        return dequantize_output(c, L, yq, act.kind == KILN_ACT_RELU, y);
    }
    /* yq is the int32 accumulator here */
    int ins[4] = {xq, wv, zxv, zwv};
    KILN_TRY(pc_add_node(c, KILN_OP_MatMulInteger, name, ins, 4, &yq, 1, NULL, 0, &nn));
    return dequantize_accumulator(c, L, yq, -1, L->bias_v, act, y);
}

/* Quantizes node ni when it is an int8 layer: explicit when its input is dequantized, else
 * post-training when scales were given. *why says why a Conv/MatMul/Gemm stays f32. */
static kiln_status visit_layer(pass_ctx *c, qctx *q, int ni, bool *done, const char **why) {
    int op = c->g->nodes[ni].op;
    bool conv = op == KILN_OP_Conv;
    *why = NULL;
    if (!conv && op != KILN_OP_MatMul && op != KILN_OP_Gemm && op != KILN_OP_FusedMatMul) return KILN_STATUS_OK;
    bool explicit_ = qdq_reads_dequantized(c, ni);
    if (!explicit_ && !q->scales) return KILN_STATUS_OK;
    qlayer L;
    memset(&L, 0, sizeof L);
    qlayer_free(&L);
    if (explicit_) *why = conv ? qdq_conv_layer(c, ni, &L) : qdq_matmul_layer(c, ni, &L);
    else *why = conv ? ptq_conv_layer(c, q, ni, &L) : ptq_matmul_layer(c, q, ni, &L);
    kiln_status s = KILN_STATUS_OK;
    if (!*why) {
        s = conv ? emit_conv(c, q, ni, &L) : emit_matmul(c, q, ni, &L);
        *done = s == KILN_STATUS_OK;
    }
    qlayer_free(&L);
    return s;
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

/* Records on node ni why it stays f32 (the attribute kiln_int8_note, kept in the engine file and
 * shown by kiln inspect), replacing an earlier note. */
static kiln_status note_fp32(kiln_graph *g, int ni, const char *why) {
    kiln_attrs *a = &g->nodes[ni].attrs;
    char *s = kiln_strdup(why);
    if (!s) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; k < a->n; k++)
        if (strcmp(a->items[k].name, KILN_INT8_NOTE_ATTR) == 0 && a->items[k].type == KILN_ATTR_STRING) {
            free(a->items[k].s);
            a->items[k].s = s;
            return KILN_STATUS_OK;
        }
    kiln_attr *items = realloc(a->items, sizeof *items * (size_t)(a->n + 1));
    char *name = kiln_strdup(KILN_INT8_NOTE_ATTR);
    if (!items || !name) {
        if (items) a->items = items;
        free(s);
        free(name);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    a->items = items;
    a->items[a->n++] = (kiln_attr){.name = name, .type = KILN_ATTR_STRING, .s = s, .used = true};
    return KILN_STATUS_OK;
}

static kiln_status run_quantize(kiln_graph *g, const kiln_quant_scales *scales, const kiln_quant_options *opt,
                                kiln_pass_stats *st) {
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
        if (!pc_open(&c, i)) continue;
        bool done = false;
        const char *why = NULL;
        if (forced_fp32(&q, g->nodes[i].name)) why = "kept in fp32 by --layer-precision";
        else s = visit_layer(&c, &q, i, &done, &why);
        if (s == KILN_STATUS_OK && why && !done) s = note_fp32(g, i, why);
        q.quantized += done;
    }
    free(q.qof);
    kiln_status cs = pc_commit(&c);
    KILN_TRY(s ? s : cs);
    KILN_TRY(pass_finish(g, q.quantized > 0));
    kiln_pass_stats cst;
    pass_stats_init(&cst, "quantize_collapse");
    if (q.quantized) {
        KILN_TRY(pass_fuse_rounds(g, &cst, visit_collapse, NULL));
        KILN_TRY(kiln_pass_dead_code(g, NULL));
    }
    if (st) {
        st->fused = q.quantized;
        st->removed = cst.fused;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_pass_quantize(kiln_graph *g, const kiln_quant_scales *scales, const kiln_quant_options *opt,
                               kiln_pass_stats *st) {
    pass_stats_init(st, "quantize_int8");
    if (g->opset < KILN_QUANT_MIN_OPSET)
        return kiln_error(KILN_STATUS_UNSUPPORTED,
                          "int8 engines need a model of opset >= %d (per-axis DequantizeLinear); this one is opset %d",
                          KILN_QUANT_MIN_OPSET, g->opset);
    return run_quantize(g, scales, opt, st);
}

kiln_status kiln_pass_qdq(kiln_graph *g, kiln_pass_stats *st) {
    pass_stats_init(st, "qdq_int8");
    if (g->opset < KILN_QUANT_MIN_OPSET) return KILN_STATUS_OK; /* the Q/DQ nodes run as written */
    return run_quantize(g, NULL, NULL, st);
}

bool kiln_graph_has_qdq(const kiln_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == KILN_OP_QuantizeLinear || g->nodes[i].op == KILN_OP_DequantizeLinear) return true;
    return false;
}
