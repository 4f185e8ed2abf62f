/* conv.c — reference kernel of Conv (https://onnx.ai/onnx/operators/onnx__Conv.html), 1-D to
 * 3-D, any group, strides, dilations and pads; accumulates in double.
 *
 * Every dim is lifted to 3-D (leading spatial dims of size 1). For each output channel the
 * output plane is a double accumulator; each (input channel, kernel tap) adds a weighted,
 * shifted input row to it with index bounds computed once per tap (the walk of conv_common.c),
 * so the inner loop walks memory contiguously (stride 1) and has no branches.
 * Tested by test_conv*, test_basic_conv*. */
#include "conv_common.h"
#include "ref.h"

/* acc row += w[tap] * x row (shifted, strided). */
static void conv_row(void *ctx, const conv3_row *r) {
    const conv_f64_chan *c = ctx;
    double wv = c->w[r->k];
    const double *xr = c->x + r->x;
    double *ar = c->acc + r->y;
    if (r->s == 1) {
        for (int64_t ow = r->lo; ow < r->hi; ow++) ar[ow] += wv * xr[ow + r->off];
    } else {
        for (int64_t ow = r->lo; ow < r->hi; ow++) ar[ow] += wv * xr[ow * r->s + r->off];
    }
}

kiln_status kiln_ref_conv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    const kiln_tensor *X = in[0], *W = in[1], *B = node->n_declared > 2 ? in[2] : NULL;
    kiln_window_dims wd;
    KILN_TRY(kiln_conv_infer_common(node, p, X, W, B, W->dims[0], &wd));
    conv3 g;
    KILN_TRY(conv3_lift(node, "the reference Conv", &wd, X->dims, out[0].dims, &g));
    int64_t N = X->dims[0], C = X->dims[1], M = W->dims[0], G = p->group;
    int64_t Cg = C / G, Mg = M / G;
    int64_t total = kiln_shape_count(out[0].rank, out[0].dims);
    if (total == 0) return KILN_STATUS_OK;

    conv_f64 f;
    KILN_TRY(conv_f64_load(&f, X, W, B, total));
    /* output channels are independent (each sums in the same order on any thread count) */
#pragma omp parallel for collapse(2) schedule(static) if (total * Cg * g.ksize > KILN_REF_PARALLEL_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            int64_t grp = m / Mg;
            conv_f64_chan c = {.acc = f.y + (n * M + m) * g.out_plane};
            if (f.b)
                for (int64_t i = 0; i < g.out_plane; i++) c.acc[i] = f.b[m];
            for (int64_t ci = 0; ci < Cg; ci++) {
                c.x = f.x + (n * C + grp * Cg + ci) * g.in_plane;
                c.w = f.w + (m * Cg + ci) * g.ksize;
                conv3_walk(&g, false, conv_row, &c);
            }
        }
    kiln_nn_from_f64(&out[0], f.y, total);
    conv_f64_free(&f);
    return KILN_STATUS_OK;
}
