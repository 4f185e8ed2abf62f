/* dnnl_conv.c — Conv and ConvTranspose (f32, 1-D to 3-D, groups, strides, dilations, pads,
 * auto_pad, bias, fused activation as a post-op) through oneDNN's convolution and
 * deconvolution primitives. The window comes from the ops' own resolvers (src/ops/conv.c,
 * conv_transpose.c), as for the reference kernels (src/backends/ref/conv.c).
 *
 * QLinearConv (8-bit X, W, Y; per-tensor or per-channel W scale and zero point; int32 bias)
 * runs as the same f32 convolution on X - x_zero_point and W - w_zero_point, whose integer
 * products and sums floats hold exactly while |sums| < 2^24; the accumulator plus bias is then
 * requantized as the reference does (round half to even, y_zero_point, saturation). Beyond
 * 2^24 the float sum can be off by a few units of the accumulator, so Y by at most one step.
 * ConvInteger (8-bit X and W, zero points, int32 Y: that sum itself) runs the same way only when
 * K * max|X'| * max|W'| < 2^24 guarantees the exact sum; else the reference kernel runs.
 * oneDNN's own int8 kernels are not used: without VNNI they add pairs of products in 16 bits
 * with saturation (measured on AVX2: wrong once |w| > 64), which the reference never does.
 *
 * Layouts: the weights take whatever layout oneDNN picks for speed ("any"), reordered once per
 * context for constant weights. X and Y are kiln's plain (N, C, spatial...) tensors; oneDNN
 * chooses the primitive's own layouts too (channel-blocked, its direct JIT kernels) and X is
 * reordered in and Y out through this thread's scratch. Measured on AVX2 (one thread), that is
 * about twice as fast for 3x3 kernels, reorders included. 1x1 kernels would be 5-10% faster as
 * a GEMM on the plain layout, but the GEMM's edge tiles sum some output channels in another
 * order than the rest: every channel computed alike keeps equal channels equal (the onnx
 * "light" models, whose 1e31-sized equal logits a softmax turns into 1/1000 each, rely on it).
 * Tested by tests/models/test_cpu_kernels.py and the conformance suite (test_conv*). */
#include "dnnl_common.h"

#include "../../ops/nn_internal.h"
#include "../../ops/seq_internal.h"

#include <string.h>

/* What the primitive is built from: descriptors and the window in oneDNN's terms. */
typedef struct conv_geom {
    dnnl_memory_desc_t src, w_have, bias, dst;
    dnnl_dims_t strides, dilates, pad_l, pad_r; /* dilates: oneDNN counts the gaps (d - 1) */
} conv_geom;

typedef struct conv_state {
    kiln_cpu_cache cache;
    kiln_dnnl_prim prim;
    dnnl_memory_desc_t w_have;
    kiln_dnnl_weights w;
    kiln_dnnl_io io;
    /* QLinearConv: W - w_zero_point as floats (W's layout), the per-channel requantization
     * multipliers x_scale * w_scale[m] / y_scale, and Y's zero point and range */
    float *wq, *mult;
    float wmax; /* ConvInteger: max |W - w_zero_point| */
    int64_t zy, lo, hi;
} conv_state;

static void conv_clear(void *v) {
    conv_state *st = v;
    kiln_dnnl_prim_destroy(&st->prim);
    kiln_dnnl_weights_free(&st->w);
    kiln_dnnl_io_destroy(&st->io);
    free(st->wq);
    free(st->mult);
    st->wq = st->mult = NULL;
}


static bool conv_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->n_declared < 2 || n->n_declared > 3) return false;
    if (!kiln_cpu_is(in, n->n_inputs, 0, KILN_DTYPE_F32) || !kiln_cpu_is(in, n->n_inputs, 1, KILN_DTYPE_F32)) return false;
    if (n->n_declared > 2 && in[2] && !kiln_cpu_is(in, n->n_inputs, 2, KILN_DTYPE_F32)) return false;
    int r = in[0]->rank;
    return r >= 3 && r <= 5 && in[1]->rank == r && out->dtype == KILN_DTYPE_F32 && kiln_dnnl_act_ok(&n->act);
}

/* W as the primitive sees it, in the model's memory order. Conv: (M, C/G, k...) is
 * (G, M/G, C/G, k...). ConvTranspose: W (C, M/G, k...) is (G, C/G, M/G, k...) in memory while
 * oneDNN's logical order is (G, M/G, C/G, k...): strides say so. */
static dnnl_status_t weights_md(dnnl_memory_desc_t *md, const kiln_tensor *W, int64_t G, bool deconv) {
    int nsp = W->rank - 2;
    int64_t K = kiln_nn_prod(W->dims, 2, W->rank);
    int64_t a = W->dims[0] / G, b = W->dims[1]; /* the stored dims of one group */
    dnnl_dims_t d, s;
    int o = G > 1 ? 1 : 0; /* position of the out-channel dim */
    if (G > 1) {
        d[0] = G;
        s[0] = a * b * K;
    }
    if (!deconv) { /* stored (M/G, C/G): logical order is the stored order */
        d[o] = a, s[o] = b * K;
        d[o + 1] = b, s[o + 1] = K;
    } else { /* stored (C/G, M/G): logical (M/G, C/G) */
        d[o] = b, s[o] = K;
        d[o + 1] = a, s[o + 1] = b * K;
    }
    int64_t acc = 1;
    for (int i = nsp - 1; i >= 0; i--) {
        d[o + 2 + i] = W->dims[2 + i];
        s[o + 2 + i] = acc;
        acc *= W->dims[2 + i];
    }
    return dnnl_memory_desc_init_by_strides(md, o + 2 + nsp, d, dnnl_f32, s);
}

static kiln_status conv_geometry(const kiln_node *n, const kiln_tensor *X, const kiln_tensor *W, const kiln_tensor *B,
                                 const kiln_tensor *out, conv_geom *g) {
    const kiln_conv_params *p = n->params;
    bool deconv = n->op == KILN_OP_ConvTranspose;
    kiln_window_dims wd;
    if (deconv) KILN_TRY(kiln_conv_transpose_resolve(n, X, W, &wd));
    else KILN_TRY(kiln_conv_infer_common(n, p, X, W, B, W->dims[0], &wd));
    int nsp = X->rank - 2;
    for (int i = 0; i < nsp; i++) {
        int64_t in_sz = X->dims[2 + i], o = out->dims[2 + i], ek = (wd.kernel[i] - 1) * wd.dilations[i] + 1;
        g->strides[i] = wd.strides[i];
        g->dilates[i] = wd.dilations[i] - 1;
        g->pad_l[i] = wd.pad_begin[i];
        /* the right pad that gives exactly Y's size (ConvTranspose: output_padding included) */
        g->pad_r[i] = deconv ? (in_sz - 1) * wd.strides[i] + ek - wd.pad_begin[i] - o : wd.pad_end[i];
    }
    dnnl_status_t s = kiln_dnnl_md(&g->src, X->rank, X->dims, KILN_DTYPE_F32);
    if (s == dnnl_success) s = kiln_dnnl_md(&g->dst, out->rank, out->dims, KILN_DTYPE_F32);
    if (s == dnnl_success) s = weights_md(&g->w_have, W, p->group, deconv);
    memset(&g->bias, 0, sizeof g->bias);
    if (s == dnnl_success && B) s = kiln_dnnl_md(&g->bias, 1, &out->dims[1], KILN_DTYPE_F32);
    return kiln_dnnl_check(s, n, "convolution descriptors");
}

/* The f32 primitive for X, W, optional B (f32 views: the int8 kernel passes its float copies). */
static kiln_status conv_make(conv_state *st, const kiln_node *n, const kiln_tensor *X, const kiln_tensor *W,
                             const kiln_tensor *B, const kiln_tensor *out) {
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng) return KILN_STATUS_RUNTIME_ERROR;
    conv_geom g;
    KILN_TRY(conv_geometry(n, X, W, B, out, &g));
    dnnl_memory_desc_t w_any, src = g.src, dst = g.dst;
    dnnl_status_t ds = kiln_dnnl_any(&w_any, &g.w_have);
    if (ds == dnnl_success) ds = kiln_dnnl_any(&src, &g.src);
    if (ds == dnnl_success) ds = kiln_dnnl_any(&dst, &g.dst);
    KILN_TRY(kiln_dnnl_check(ds, n, "convolution descriptors"));
    const dnnl_memory_desc_t *bias = B ? &g.bias : NULL;
    union {
        dnnl_convolution_desc_t conv;
        dnnl_deconvolution_desc_t deconv;
    } d;
    if (n->op == KILN_OP_ConvTranspose)
        ds = dnnl_dilated_deconvolution_forward_desc_init(&d.deconv, dnnl_forward_inference, dnnl_deconvolution_direct, &src,
                                                          &w_any, bias, &dst, g.strides, g.dilates, g.pad_l, g.pad_r);
    else
        ds = dnnl_dilated_convolution_forward_desc_init(&d.conv, dnnl_forward_inference, dnnl_convolution_direct, &src,
                                                        &w_any, bias, &dst, g.strides, g.dilates, g.pad_l, g.pad_r);
    KILN_TRY(kiln_dnnl_check(ds, n, "convolution"));
    dnnl_primitive_desc_t pd;
    kiln_status s = kiln_dnnl_pd(n, &d, "convolution", &pd);
    if (s != KILN_STATUS_OK) return s;
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
    s = kiln_dnnl_prim_create(&st->prim, pd, ids, 4, n);
    if (s == KILN_STATUS_OK) s = kiln_dnnl_weights_init(&st->w, &g.w_have, kiln_dnnl_pd_md(pd, DNNL_ARG_WEIGHTS), n);
    st->w_have = g.w_have;
    if (s == KILN_STATUS_OK) s = kiln_dnnl_io_init(&st->io, pd, &g.src, &g.dst, n);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

static kiln_status conv_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return conv_make(state, n, in[0], in[1], n->n_declared > 2 ? in[2] : NULL, out);
}

static kiln_status conv_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                            kiln_tensor *out) {
    conv_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, conv_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    KILN_TRY(kiln_cpu_prepare(st, conv_build, n, in, &out[0]));
    const void *w;
    KILN_TRY(kiln_dnnl_weights_get(&st->w, &st->w_have, in[1], n, &w));
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_WEIGHTS, w);
    if (n->n_declared > 2 && in[2]) kiln_dnnl_prim_set(&st->prim, DNNL_ARG_BIAS, in[2]->data);
    return kiln_dnnl_io_run(&st->io, &st->prim, in[0]->data, out[0].data, n);
}

/* ---- QLinearConv, ConvInteger ---- */

/* ConvInteger: X, W, x_zero_point (per tensor), w_zero_point (per tensor or output channel). */
static bool cint_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->n_declared < 2 || n->n_declared > 4 || n->act.kind != KILN_ACT_NONE || out->dtype != KILN_DTYPE_I32) return false;
    if (!kiln_cpu_is_q8(in[0]) || !kiln_cpu_is_q8(in[1]) || in[0]->rank < 3 || in[0]->rank > 5 || in[1]->rank != in[0]->rank)
        return false;
    for (int k = 2; k < n->n_declared; k++)
        if (in[k] && in[k]->dtype != in[k - 2]->dtype) return false;
    return true;
}

static kiln_status cint_build(conv_state *st, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const kiln_tensor *X = in[0], *W = in[1], *zx = n->n_declared > 2 ? in[2] : NULL, *zw = n->n_declared > 3 ? in[3] : NULL;
    int64_t M = W->dims[0], per = kiln_shape_count(W->rank - 1, W->dims + 1);
    if ((zx && (!zx->data || kiln_shape_count(zx->rank, zx->dims) != 1)) ||
        (zw && (!zw->data || (kiln_shape_count(zw->rank, zw->dims) != 1 && kiln_shape_count(zw->rank, zw->dims) != M))))
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "zero points neither per tensor nor per output channel");
    st->wq = malloc(sizeof(float) * (size_t)(M * per));
    if (!st->wq) return kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "int8 convolution state");
    st->wmax = kiln_cpu_q8_to_float(W, zw, false, st->wq);
    kiln_tensor xv = kiln_cpu_float_view(X, NULL), wv = kiln_cpu_float_view(W, st->wq), yv = kiln_cpu_float_view(out, NULL);
    return conv_make(st, n, &xv, &wv, NULL, &yv);
}

static bool qconv_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->op == KILN_OP_ConvInteger) return cint_supports(n, in, out);
    if (n->n_declared < 8 || n->n_declared > 9 || n->act.kind != KILN_ACT_NONE) return false;
    for (int k = 0; k < 8; k++)
        if (!in[k] || in[k]->rank < 0) return false;
    if (!kiln_cpu_is_q8(in[0]) || !kiln_cpu_is_q8(in[3]) || (out->dtype != KILN_DTYPE_U8 && out->dtype != KILN_DTYPE_I8)) return false;
    if (in[1]->dtype != KILN_DTYPE_F32 || in[4]->dtype != KILN_DTYPE_F32 || in[6]->dtype != KILN_DTYPE_F32) return false;
    if (in[2]->dtype != in[0]->dtype || in[5]->dtype != in[3]->dtype || in[7]->dtype != out->dtype) return false;
    if (n->n_declared > 8 && in[8] && in[8]->dtype != KILN_DTYPE_I32) return false;
    return in[0]->rank >= 3 && in[0]->rank <= 5 && in[3]->rank == in[0]->rank;
}

static kiln_status qconv_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    conv_state *st = state;
    if (n->op == KILN_OP_ConvInteger) return cint_build(st, n, in, out);
    const kiln_tensor *X = in[0], *W = in[3];
    int64_t M = W->dims[0], per = kiln_shape_count(W->rank - 1, W->dims + 1);
    int64_t n_ws = kiln_shape_count(in[4]->rank, in[4]->dims), n_wz = kiln_shape_count(in[5]->rank, in[5]->dims);
    for (int k = 1; k < 8; k++)
        if (k != 3 && !in[k]->data) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "input %d has no data", k);
    if (kiln_shape_count(in[1]->rank, in[1]->dims) != 1 || kiln_shape_count(in[2]->rank, in[2]->dims) != 1 ||
        kiln_shape_count(in[6]->rank, in[6]->dims) != 1 || kiln_shape_count(in[7]->rank, in[7]->dims) != 1 ||
        (n_ws != 1 && n_ws != M) || (n_wz != 1 && n_wz != M))
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "scales or zero points neither per tensor nor per output channel");
    st->wq = malloc(sizeof(float) * (size_t)(M * per));
    st->mult = malloc(sizeof(float) * (size_t)M);
    if (!st->wq || !st->mult) return kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "int8 convolution state");
    float xs = *(const float *)in[1]->data, ys = *(const float *)in[6]->data;
    for (int64_t m = 0; m < M; m++) /* in f32, as the reference computes it */
        st->mult[m] = (xs * ((const float *)in[4]->data)[n_ws > 1 ? m : 0]) / ys;
    st->zy = kiln_cpu_q8_at(in[7], 0);
    st->lo = out->dtype == KILN_DTYPE_U8 ? 0 : -128;
    st->hi = out->dtype == KILN_DTYPE_U8 ? 255 : 127;
    kiln_cpu_q8_to_float(W, in[5], false, st->wq);
    kiln_tensor xv = kiln_cpu_float_view(X, NULL), wv = kiln_cpu_float_view(W, st->wq), yv = kiln_cpu_float_view(out, NULL);
    return conv_make(st, n, &xv, &wv, NULL, &yv);
}

static kiln_status qconv_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                             kiln_tensor *out) {
    conv_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, conv_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    bool cint = n->op == KILN_OP_ConvInteger;
    /* scales and zero points are part of the prepared state */
    st->cache.value_inputs = cint ? 1u << 2 | 1u << 3 : 1u << 1 | 1u << 2 | 1u << 4 | 1u << 5 | 1u << 6 | 1u << 7;
    KILN_TRY(kiln_cpu_prepare(st, qconv_build, n, in, &out[0]));
    const kiln_tensor *X = in[0], *W = in[cint ? 1 : 3], *B = !cint && n->n_declared > 8 ? in[8] : NULL;
    const kiln_tensor *zx = n->n_declared > 2 ? in[2] : NULL, *zw = n->n_declared > (cint ? 3 : 5) ? in[cint ? 3 : 5] : NULL;
    if (!(W->flags & KILN_TENSOR_CONSTANT)) st->wmax = kiln_cpu_q8_to_float(W, zw, false, st->wq); /* weights that may change */
    kiln_tensor wv = kiln_cpu_float_view(W, st->wq);
    const void *w;
    KILN_TRY(kiln_dnnl_weights_get(&st->w, &st->w_have, &wv, n, &w));
    int64_t nx = kiln_shape_count(X->rank, X->dims), ny = kiln_shape_count(out[0].rank, out[0].dims);
    float *xf = kiln_cpu_scratch(KILN_CPU_SCRATCH_QIN, sizeof(float) * (size_t)nx, n);
    float *acc = kiln_cpu_scratch(KILN_CPU_SCRATCH_QOUT, sizeof(float) * (size_t)ny, n);
    if (!xf || !acc) return KILN_STATUS_OUT_OF_MEMORY;
    float xmax = kiln_cpu_q8_to_float(X, zx, false, xf);
    int64_t K = kiln_shape_count(W->rank - 1, W->dims + 1);
    /* ConvInteger's int32 output must be the exact sum: every partial sum below 2^24 */
    if (cint && (double)K * xmax * st->wmax >= 16777216.0)
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "sums may pass 2^24 (K %lld, max |X| %g, max |W| %g)", (long long)K,
                               (double)xmax, (double)st->wmax);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_WEIGHTS, w);
    KILN_TRY(kiln_dnnl_io_run(&st->io, &st->prim, xf, acc, n));
    if (cint) {
        int32_t *y = out[0].data;
        for (int64_t i = 0; i < ny; i++) y[i] = (int32_t)acc[i];
        return KILN_STATUS_OK;
    }
    /* requantize: y = saturate(round_half_even((acc + B[m]) * mult[m]) + y_zero_point) */
    int64_t N = out[0].dims[0], M = out[0].dims[1], plane = ny / (N * M);
    for (int64_t b = 0; b < N; b++)
        for (int64_t m = 0; m < M; m++) {
            int64_t base = (b * M + m) * plane;
            double bias = B ? (double)((const int32_t *)B->data)[m] : 0.0, mult = st->mult[m];
            for (int64_t i = 0; i < plane; i++) {
                int64_t q = seq_requantize(((double)acc[base + i] + bias) * mult, st->zy, st->lo, st->hi);
                if (out[0].dtype == KILN_DTYPE_U8) ((uint8_t *)out[0].data)[base + i] = (uint8_t)q;
                else ((int8_t *)out[0].data)[base + i] = (int8_t)q;
            }
        }
    return KILN_STATUS_OK;
}

void kiln_cpu_register_dnnl_conv(kiln_cpu_op *t) {
    t[KILN_OP_QLinearConv] = (kiln_cpu_op){.supports = qconv_supports, .run = qconv_run, .kernel = "onednn"};
    t[KILN_OP_ConvInteger] = (kiln_cpu_op){.supports = qconv_supports, .run = qconv_run, .kernel = "onednn"};
    t[KILN_OP_Conv] = (kiln_cpu_op){.supports = conv_supports, .run = conv_run, .kernel = "onednn"};
    t[KILN_OP_ConvTranspose] = (kiln_cpu_op){.supports = conv_supports, .run = conv_run, .kernel = "onednn"};
}
