/* qdq.c — explicit quantization: reads the int8 parameters of a Conv, MatMul or Gemm from the
 * QuantizeLinear/DequantizeLinear nodes a quantization-aware-trained model carries around it
 * (TensorRT's "explicit quantization"), for the emitter in quantize.c. Recognised:
 *
 *   x  = DequantizeLinear(xq, s_x, z_x)               xq int8 or uint8, s_x and z_x per tensor
 *   W  = DequantizeLinear(Wq, s_w, 0, axis)           Wq a constant int8, or QuantizeLinear of an f32
 *                                                     constant (fake-quantized weights); zero point 0;
 *                                                     s_w per tensor or along the output-channel axis;
 *                                                     for MatMul/Gemm also through a 2-D Transpose
 *   b  = an f32 constant, or DequantizeLinear of a constant (int32 bias)
 *   y  = Conv(x, W, b) / MatMul(x, W) / Gemm(x, W, b) / kiln.FusedMatMul(x, W, b), fused act allowed
 *   every reader of y is QuantizeLinear(y, s_y, z_y) with the same s_y, z_y (optional: without it
 *   the layer ends in f32, as pytorch-quantization's exports have it)
 *
 * Anything else leaves the node in f32 with its Q/DQ nodes, which run as written (the reason is
 * returned). Scales and zero points must be constants. Tested by tests/models/test_int8_qdq.py. */
#include "quant_layer.h"

#include "../ops/shape_internal.h"
#include "../quant/quantize.h"

#include <math.h>
#include <string.h>

void qlayer_free(qlayer *L) {
    free(L->w);
    free(L->sw);
    free(L->bias);
    memset(L, 0, sizeof *L);
    L->x = L->bias_v = -1;
}

/* The constant parameters of a QuantizeLinear / DequantizeLinear node over data of rank `rank`:
 * one scale (per tensor) or one per index of `axis` (per axis); zero points likewise or absent. */
typedef struct qdq_params {
    const float *scale;
    const kiln_tensor *zp; /* NULL: zero */
    int64_t n;             /* 1, or the length of axis */
    int axis;              /* normalised; used when n > 1 */
} qdq_params;

static int32_t zp_at(const qdq_params *p, int64_t k) {
    if (!p->zp) return 0;
    return (int32_t)kiln_load_i64(p->zp->dtype, p->zp->data, kiln_shape_count(p->zp->rank, p->zp->dims) == 1 ? 0 : k);
}

static float scale_at(const qdq_params *p, int64_t k) { return p->scale[p->n == 1 ? 0 : k]; }

static const char *params_of(const pass_ctx *c, int ni, qdq_params *p) {
    const kiln_graph *g = c->g;
    kiln_node *n = &g->nodes[ni];
    int data = pass_in(n, 0), sv = pass_in(n, 1), zv = pass_in(n, 2);
    const kiln_tensor *dt = &g->values[data].type;
    if (dt->rank < 0) return "its Q/DQ input has an unknown rank";
    if (!pass_is_const(g, sv) || g->values[sv].type.dtype != KILN_DTYPE_F32) return "a Q/DQ scale is not an f32 constant";
    if (zv >= 0 && !pass_is_const(g, zv)) return "a Q/DQ zero point is not a constant";
    int64_t axis = 1, block = 0;
    if (kiln_attr_int(&n->attrs, "axis", 1, &axis) || kiln_attr_int(&n->attrs, "block_size", 0, &block)) {
        kiln_clear_error();
        return "a Q/DQ node has malformed attributes";
    }
    if (block != 0) return "blocked Q/DQ (block_size) is not an int8 layer";
    const kiln_tensor *st = &g->values[sv].type;
    p->scale = st->data;
    p->n = kiln_shape_count(st->rank, st->dims);
    p->zp = zv >= 0 ? &g->values[zv].type : NULL;
    p->axis = 0;
    if (p->n != 1) {
        int a;
        if (st->rank != 1 || kiln_norm_axis(axis, dt->rank, &a) || dt->dims[a] != p->n) return "a Q/DQ scale has an odd shape";
        p->axis = a;
    }
    if (p->zp && kiln_shape_count(p->zp->rank, p->zp->dims) != 1 && kiln_shape_count(p->zp->rank, p->zp->dims) != p->n)
        return "a Q/DQ zero point does not match its scale";
    for (int64_t k = 0; k < p->n; k++)
        if (!isfinite(p->scale[k]) || !(p->scale[k] > 0)) return "a Q/DQ scale is not positive and finite";
    return NULL;
}

bool qdq_reads_dequantized(const pass_ctx *c, int ni) {
    const kiln_node *n = &c->g->nodes[ni];
    return n->n_declared > 0 && pc_prod_op(c, n->inputs[0], KILN_OP_DequantizeLinear) >= 0;
}

/* The activation input x = DequantizeLinear(xq, s, z), per tensor. */
static const char *act_input(const pass_ctx *c, int x, qlayer *L) {
    int d = pc_prod_op(c, x, KILN_OP_DequantizeLinear);
    if (d < 0) return "its input is not dequantized";
    qdq_params p;
    const char *why = params_of(c, d, &p);
    if (why) return why;
    if (p.n != 1) return "its input is quantized per axis (int8 layers take a per-tensor input scale)";
    kiln_dtype dt = c->g->values[c->g->nodes[d].inputs[0]].type.dtype;
    if (dt != KILN_DTYPE_I8 && dt != KILN_DTYPE_U8) return "its input is dequantized from neither int8 nor uint8";
    if (c->g->values[x].type.dtype != KILN_DTYPE_F32) return "its input is not f32";
    L->x = x;
    L->sx = p.scale[0];
    L->zx = zp_at(&p, 0);
    L->xdt = dt;
    return NULL;
}

/* Symmetric int8 weights w = DequantizeLinear(q, s, 0, axis), q a constant or QuantizeLinear of an
 * f32 constant; s per tensor or along ch_axis of w. Copies q (w's layout) and the scales per channel
 * into L->w, L->sw (m = dims[ch_axis]) and w's shape into L->wrank, L->wdims. */
static const char *dq_weights(const pass_ctx *c, int w, int ch_axis, qlayer *L) {
    const kiln_graph *g = c->g;
    int d = pc_prod_op(c, w, KILN_OP_DequantizeLinear);
    if (d < 0) return "its weights are not dequantized int8";
    qdq_params dp;
    const char *why = params_of(c, d, &dp);
    if (why) return why;
    int qv = g->nodes[d].inputs[0];
    const kiln_tensor *qt = &g->values[qv].type;
    if (qt->dtype != KILN_DTYPE_I8) return "its weights are not int8 (uint8 weights are not taken)";
    if (qt->rank < 1 || !kiln_shape_known(qt)) return "its weights have an unknown shape";
    if (dp.n != 1 && dp.axis != ch_axis) return "its weights are quantized along an axis other than the output channels";
    int64_t m = qt->dims[ch_axis], total = kiln_shape_count(qt->rank, qt->dims);
    for (int64_t k = 0; k < dp.n; k++)
        if (zp_at(&dp, k) != 0) return "its weights have a non-zero zero point (int8 layers take symmetric weights)";
    /* q itself: a constant, or QuantizeLinear(f32 constant, s, z, axis) to quantize here */
    const kiln_tensor *src = NULL;
    qdq_params qp = {0};
    int qn = -1;
    if (pass_is_const(g, qv)) {
        src = qt;
    } else if ((qn = pc_prod_op(c, qv, KILN_OP_QuantizeLinear)) >= 0) {
        if ((why = params_of(c, qn, &qp))) return why;
        src = &g->values[g->nodes[qn].inputs[0]].type;
        if (!pass_is_const(g, g->nodes[qn].inputs[0]) || src->dtype != KILN_DTYPE_F32)
            return "its fake-quantized weights are not an f32 constant";
    } else {
        return "its int8 weights are not a constant";
    }
    if (total <= 0 || m <= 0 || total % m) return "its weights are empty";
    L->w = malloc((size_t)total);
    L->sw = malloc(sizeof(float) * (size_t)m);
    if (!L->w || !L->sw) return "out of memory";
    if (src == qt) {
        memcpy(L->w, qt->data, (size_t)total);
    } else {
        int64_t inner = qp.n == 1 ? 1 : kiln_shape_count(qt->rank - qp.axis - 1, qt->dims + qp.axis + 1);
        for (int64_t i = 0; i < total; i++) {
            int64_t k = qp.n == 1 ? 0 : (i / inner) % qp.n;
            L->w[i] = (int8_t)kiln_quantize_ref(((const float *)src->data)[i], scale_at(&qp, k), zp_at(&qp, k), -128, 127);
        }
    }
    for (int64_t k = 0; k < m; k++) L->sw[k] = scale_at(&dp, k);
    L->m = m;
    L->per = total / m;
    L->wrank = qt->rank;
    memcpy(L->wdims, qt->dims, sizeof(int64_t) * (size_t)qt->rank);
    return NULL;
}

/* dq_weights, or the same through a 2-D Transpose: w = Transpose(DequantizeLinear(...)), which is
 * how torch exports a quantized Linear applied to a 3-D input (F.linear becomes MatMul(x, W^T), and
 * pytorch-quantization's per-channel weight quantizer sits on W, axis 0, before the transpose). The
 * weights are then read along the other axis and transposed into w's layout. */
static const char *weights_of(const pass_ctx *c, int w, int ch_axis, qlayer *L) {
    const kiln_graph *g = c->g;
    int tr = pc_prod_op(c, w, KILN_OP_Transpose);
    if (tr < 0 || g->values[w].type.rank != 2) return dq_weights(c, w, ch_axis, L);
    const kiln_transpose_params *tp = g->nodes[tr].params; /* no perm: reversed axes */
    bool swap = !(tp && tp->n_perm == 2 && tp->perm[0] == 0);
    const char *why = dq_weights(c, g->nodes[tr].inputs[0], swap ? 1 - ch_axis : ch_axis, L);
    if (why || !swap) return why;
    int64_t r = L->wdims[0], k = L->wdims[1];
    int8_t *t = malloc((size_t)(r * k));
    if (!t) return "out of memory";
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < k; j++) t[j * r + i] = L->w[i * k + j];
    free(L->w);
    L->w = t;
    L->wdims[0] = k;
    L->wdims[1] = r;
    return NULL;
}

/* A float copy of constant v's n elements: an f32 constant, or DequantizeLinear of a constant. */
static float *const_floats(const pass_ctx *c, int v, int64_t n) {
    const kiln_graph *g = c->g;
    if (v < 0 || n <= 0) return NULL;
    const kiln_tensor *t = &g->values[v].type;
    float *out = NULL;
    if (pass_is_const(g, v)) {
        if (t->dtype != KILN_DTYPE_F32 || kiln_shape_count(t->rank, t->dims) != n) return NULL;
        if ((out = malloc(sizeof(float) * (size_t)n))) memcpy(out, t->data, sizeof(float) * (size_t)n);
        return out;
    }
    int d = pc_prod_op(c, v, KILN_OP_DequantizeLinear);
    qdq_params p;
    if (d < 0 || params_of(c, d, &p) || t->dtype != KILN_DTYPE_F32) return NULL;
    int qv = g->nodes[d].inputs[0];
    const kiln_tensor *qt = &g->values[qv].type;
    if (!pass_is_const(g, qv) || kiln_shape_count(qt->rank, qt->dims) != n) return NULL;
    if (!(out = malloc(sizeof(float) * (size_t)n))) return NULL;
    int64_t inner = p.n == 1 ? 1 : kiln_shape_count(qt->rank - p.axis - 1, qt->dims + p.axis + 1);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = p.n == 1 ? 0 : (i / inner) % p.n;
        out[i] = kiln_dequantize_ref((int32_t)kiln_load_i64(qt->dtype, qt->data, i), scale_at(&p, k), zp_at(&p, k));
    }
    return out;
}

/* has_y when y is read only by QuantizeLinear nodes with equal per-tensor scale and zero point. */
static void output_of(const pass_ctx *c, int y, int act, qlayer *L) {
    const kiln_graph *g = c->g;
    L->has_y = false;
    int uses = pc_uses(c, y), reads = 0;
    if (!pc_internal(c, y) || uses <= 0) return;
    for (int i = 0; i < g->n_nodes; i++) {
        const kiln_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            if (n->inputs[k] != y) continue;
            qdq_params p;
            if (n->op != KILN_OP_QuantizeLinear || k != 0 || !pc_open(c, i) || params_of(c, i, &p) || p.n != 1) return;
            kiln_dtype dt = g->values[n->outputs[0]].type.dtype;
            if (dt != KILN_DTYPE_I8 && dt != KILN_DTYPE_U8) return;
            if (reads && (p.scale[0] != L->sy || zp_at(&p, 0) != L->zy || dt != L->ydt)) return;
            L->sy = p.scale[0];
            L->zy = zp_at(&p, 0);
            L->ydt = dt;
            reads++;
        }
    }
    /* A fused Relu stays exact on the quantized output only where 0 quantizes to 0. */
    L->has_y = reads == uses && (act == KILN_ACT_NONE || (act == KILN_ACT_RELU && L->zy == 0));
}

const char *qdq_conv_layer(pass_ctx *c, int ni, qlayer *L) {
    kiln_graph *g = c->g;
    qlayer_free(L);
    const kiln_node *n = &g->nodes[ni];
    int x = pass_in(n, 0), w = pass_in(n, 1), b = pass_in(n, 2), y = n->outputs[0];
    int act = n->act.kind;
    if (n->n_outputs != 1) return "it has several outputs";
    const char *why = act_input(c, x, L);
    if (!why) why = weights_of(c, w, 0, L);
    if (!why && L->wrank != 3 && L->wrank != 4) why = "only 1-D and 2-D convolutions become int8";
    if (!why && b >= 0 && !(L->bias = const_floats(c, b, L->m))) why = "its bias is not a constant of one value per output channel";
    if (why) {
        qlayer_free(L);
        return why;
    }
    output_of(c, y, act, L);
    return NULL;
}

const char *qdq_matmul_layer(pass_ctx *c, int ni, qlayer *L) {
    kiln_graph *g = c->g;
    qlayer_free(L);
    kiln_node *n = &g->nodes[ni];
    int a = pass_in(n, 0), w = pass_in(n, 1), y = n->outputs[0], bias = -1, act = n->act.kind;
    int64_t trans_a = 0, trans_b = 0;
    float alpha = 1, beta = 1;
    if (n->n_outputs != 1) return "it has several outputs";
    if (n->op == KILN_OP_Gemm) {
        if (kiln_attr_int(&n->attrs, "transA", 0, &trans_a) || kiln_attr_int(&n->attrs, "transB", 0, &trans_b) ||
            kiln_attr_float(&n->attrs, "alpha", 1, &alpha) || kiln_attr_float(&n->attrs, "beta", 1, &beta)) {
            kiln_clear_error();
            return "malformed Gemm attributes";
        }
        if (!(alpha > 0) || !isfinite(alpha) || !isfinite(beta)) return "Gemm's alpha is not positive (or beta not finite)";
        bias = beta != 0 ? pass_in(n, 2) : -1;
    } else if (n->op == KILN_OP_FusedMatMul) {
        bias = pass_in(n, 2);
    }
    const char *why = act_input(c, a, L);
    if (!why && g->values[a].type.rank < (n->op == KILN_OP_Gemm ? 2 : 1)) why = "its input has an unknown rank";
    if (!why && g->values[w].type.rank != 2)
        why = "its second input is not a weight matrix (a product of two activations stays f32)";
    if (!why) why = weights_of(c, w, trans_b ? 0 : 1, L);
    if (why) {
        qlayer_free(L);
        return why;
    }
    /* weights as the emitter wants them: [N][K], times alpha (folded into the scales) */
    int64_t k_ = trans_b ? L->wdims[1] : L->wdims[0], n_ = trans_b ? L->wdims[0] : L->wdims[1];
    if (!trans_b) {
        int8_t *t = malloc((size_t)(k_ * n_));
        if (!t) {
            qlayer_free(L);
            return "out of memory";
        }
        for (int64_t i = 0; i < k_; i++)
            for (int64_t j = 0; j < n_; j++) t[j * k_ + i] = L->w[i * n_ + j];
        free(L->w);
        L->w = t;
        L->m = n_;
        L->per = k_;
    }
    for (int64_t j = 0; j < n_; j++) L->sw[j] *= alpha;
    L->trans_a = trans_a != 0;
    if (bias >= 0 && g->values[bias].type.dtype != KILN_DTYPE_F32) {
        qlayer_free(L);
        return "its bias is not f32";
    }
    if (bias >= 0 && beta != 1) {
        /* beta folded into a new constant */
        const kiln_tensor *bt = &g->values[bias].type;
        int64_t cnt = bt->rank >= 0 && kiln_shape_known(bt) ? kiln_shape_count(bt->rank, bt->dims) : -1;
        float *cb = cnt > 0 ? const_floats(c, bias, cnt) : NULL;
        if (!cb) {
            qlayer_free(L);
            return "Gemm's beta is not 1 and C is not a constant";
        }
        for (int64_t i = 0; i < cnt; i++) cb[i] *= beta;
        kiln_tensor t = {0};
        char base[300];
        snprintf(base, sizeof base, "%s_bias", g->values[y].name);
        kiln_status s = kiln_tensor_alloc(&t, KILN_DTYPE_F32, bt->rank, bt->dims);
        if (s == KILN_STATUS_OK) {
            memcpy(t.data, cb, sizeof(float) * (size_t)cnt);
            s = pc_add_const(c, base, &t, &bias);
        }
        kiln_tensor_release(&t);
        free(cb);
        if (s != KILN_STATUS_OK) {
            kiln_clear_error();
            qlayer_free(L);
            return "out of memory";
        }
    }
    L->bias_v = bias;
    output_of(c, y, act, L);
    return NULL;
}
