/* qconv.c — reference kernels of ConvInteger and QLinearConv
 * (https://onnx.ai/onnx/operators/onnx__ConvInteger.html, onnx__QLinearConv.html), 1-D to 3-D.
 *
 * Both subtract the zero points first (x per tensor, w per tensor or per output channel), so
 * padding contributes zero, then accumulate sum (x - x_zp) * (w - w_zp) (+ B) exactly in int64
 * and wrap it to int32 as the spec allows. ConvInteger outputs that int32. QLinearConv
 * requantizes: y = saturate(round_half_even(acc * (x_scale * w_scale[m] / y_scale)) + y_zp),
 * the multiplier in f32 arithmetic and the product in double, as
 * onnx/reference/ops/op_qlinear_conv.py does. Loops as in the float Conv (src/backends/ref/conv.c,
 * through conv_common.c): dims lifted to 3-D, one accumulator plane per output channel, tap
 * ranges computed once.
 * Tested by test_convinteger*, test_qlinearconv. */
#include "../../ops/seq_internal.h"
#include "conv_common.h"

typedef struct qconv_ctx {
    const int32_t *x, *w; /* one input channel, one kernel, both minus their zero points */
    int64_t *acc;         /* one output channel */
} qconv_ctx;

/* acc row += w[tap] * x row (shifted, strided). */
static void qconv_row(void *ctx, const conv3_row *r) {
    const qconv_ctx *c = ctx;
    int64_t wv = c->w[r->k];
    if (wv == 0) return;
    const int32_t *xr = c->x + r->x;
    int64_t *ar = c->acc + r->y;
    for (int64_t ow = r->lo; ow < r->hi; ow++) ar[ow] += wv * xr[ow * r->s + r->off];
}

/* A malloc'ed int32 copy of t minus its zero point zp (NULL: 0), per tensor or, when per_row
 * is set, per leading index (rows of row_len elements). */
static int32_t *shifted(const kiln_tensor *t, const kiln_tensor *zp, int64_t row_len) {
    int64_t n = kiln_shape_count(t->rank, t->dims);
    size_t bytes;
    if (kiln_checked_bytes(n ? n : 1, sizeof(int32_t), &bytes) != KILN_STATUS_OK) return NULL;
    int32_t *v = kiln_malloc(bytes);
    if (!v) return NULL;
    bool per_row = zp && kiln_shape_count(zp->rank, zp->dims) > 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t z = zp ? kiln_load_i64(zp->dtype, zp->data, per_row ? i / row_len : 0) : 0;
        v[i] = (int32_t)(kiln_load_i64(t->dtype, t->data, i) - z);
    }
    return v;
}

kiln_status kiln_ref_qconv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    bool qlinear = node->op == KILN_OP_QLinearConv;
    const kiln_tensor *X = in[0], *W = in[qlinear ? 3 : 1];
    const kiln_tensor *XZ = seq_in(node, in, 2), *WZ = seq_in(node, in, qlinear ? 5 : 3);
    const kiln_tensor *B = qlinear ? seq_in(node, in, 8) : NULL;
    kiln_window_dims wd;
    KILN_TRY(kiln_conv_infer_common(node, p, X, W, B, W->dims[0], &wd));
    conv3 g;
    KILN_TRY(conv3_lift(node, "the reference kernel", &wd, X->dims, out[0].dims, &g));
    int64_t N = X->dims[0], C = X->dims[1], M = W->dims[0], G = p->group;
    int64_t Cg = C / G, Mg = M / G, out_plane = g.out_plane;
    if (kiln_shape_count(out[0].rank, out[0].dims) == 0) return KILN_STATUS_OK;
    int64_t lo = 0, hi = 0;
    if (qlinear) KILN_ASSERT(seq_quant_range(out[0].dtype, &lo, &hi));

    int32_t *x = shifted(X, XZ, 1), *w = shifted(W, WZ, Cg * g.ksize);
    int64_t *acc = kiln_calloc((size_t)out_plane, sizeof(int64_t));
    kiln_status s = KILN_STATUS_OK;
    if (!x || !w || !acc) {
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "node '%s': out of memory for scratch", node->name);
        goto done;
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            int64_t grp = m / Mg, bias = B ? kiln_load_i64(B->dtype, B->data, m) : 0;
            for (int64_t i = 0; i < out_plane; i++) acc[i] = bias;
            qconv_ctx qc = {.acc = acc};
            for (int64_t c = 0; c < Cg; c++) {
                qc.x = x + (n * C + grp * Cg + c) * g.in_plane;
                qc.w = w + (m * Cg + c) * g.ksize;
                conv3_walk(&g, false, qconv_row, &qc);
            }
            int64_t base = (n * M + m) * out_plane;
            if (!qlinear) {
                for (int64_t i = 0; i < out_plane; i++) ((int32_t *)out[0].data)[base + i] = (int32_t)(uint32_t)(uint64_t)acc[i];
                continue;
            }
            const kiln_tensor *ws = in[4];
            float sw = (float)kiln_load_f64(ws->dtype, ws->data, kiln_shape_count(ws->rank, ws->dims) > 1 ? m : 0);
            float mult = (*(const float *)in[1]->data * sw) / *(const float *)in[6]->data;
            int64_t zy = kiln_load_i64(in[7]->dtype, in[7]->data, 0);
            for (int64_t i = 0; i < out_plane; i++) {
                int32_t a32 = (int32_t)(uint32_t)(uint64_t)acc[i];
                kiln_store_i64(out[0].dtype, out[0].data, base + i, seq_requantize((double)a32 * mult, zy, lo, hi));
            }
        }
done:
    free(x);
    free(w);
    free(acc);
    return s;
}
