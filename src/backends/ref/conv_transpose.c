/* conv_transpose.c — reference kernel of ConvTranspose
 * (https://onnx.ai/onnx/operators/onnx__ConvTranspose.html), 1-D to 3-D, any group, strides,
 * dilations, pads (negative end pads from output_shape included); accumulates in double.
 *
 * Scatter form: each input element, times each kernel tap, adds to output position
 * i*stride - pad_begin + k*dilation; the valid input range per tap is computed once (the
 * scatter walk of conv_common.c), so the inner loop has no branches. Tested by test_convtranspose*. */
#include "conv_common.h"

/* acc row (strided, shifted) += w[tap] * x row. */
static void scatter_row(void *ctx, const conv3_row *r) {
    const conv_f64_chan *c = ctx;
    double wv = c->w[r->k];
    const double *xr = c->x + r->x;
    double *ar = c->acc + r->y;
    for (int64_t iw = r->lo; iw < r->hi; iw++) ar[iw * r->s + r->off] += wv * xr[iw];
}

kiln_status kiln_ref_conv_transpose(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    const kiln_tensor *X = in[0], *W = in[1], *B = node->n_declared > 2 ? in[2] : NULL;
    kiln_window_dims wd;
    KILN_TRY(kiln_conv_transpose_resolve(node, X, W, &wd));
    conv3 g;
    KILN_TRY(conv3_lift(node, "the reference ConvTranspose", &wd, X->dims, out[0].dims, &g));
    int64_t N = X->dims[0], C = X->dims[1], G = p->group, Cg = C / G, Mg = W->dims[1], M = Mg * G;
    int64_t total = kiln_shape_count(out[0].rank, out[0].dims);
    if (total == 0) return KILN_STATUS_OK;

    conv_f64 f;
    KILN_TRY(conv_f64_load(&f, X, W, B, total));
    for (int64_t n = 0; n < N; n++) {
        if (f.b)
            for (int64_t m = 0; m < M; m++)
                for (int64_t i = 0; i < g.out_plane; i++) f.y[(n * M + m) * g.out_plane + i] = f.b[m];
        for (int64_t ci = 0; ci < C; ci++) {
            int64_t grp = ci / Cg;
            conv_f64_chan c = {.x = f.x + (n * C + ci) * g.in_plane};
            for (int64_t m = 0; m < Mg; m++) {
                c.w = f.w + (ci * Mg + m) * g.ksize;
                c.acc = f.y + (n * M + grp * Mg + m) * g.out_plane;
                conv3_walk(&g, true, scatter_row, &c);
            }
        }
    }
    kiln_nn_from_f64(&out[0], f.y, total);
    conv_f64_free(&f);
    return KILN_STATUS_OK;
}
