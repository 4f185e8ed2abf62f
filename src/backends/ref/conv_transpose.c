/* conv_transpose.c — reference kernel of ConvTranspose
 * (https://onnx.ai/onnx/operators/onnx__ConvTranspose.html), 1-D to 3-D, any group, strides,
 * dilations, pads (negative end pads from output_shape included); accumulates in double.
 *
 * Scatter form: each input element, times each kernel tap, adds to output position
 * i*stride - pad_begin + k*dilation; the valid input range per tap is computed once, so the
 * inner loop has no branches. Tested by test_convtranspose*. */
#include "../../ops/nn_internal.h"

typedef struct geom3 {
    int64_t in[3], out[3], k[3], s[3], d[3], p[3];
} geom3;

/* acc (one output channel) += x (one input channel) scattered through the kernel w. */
static void scatter_channel(const geom3 *g, const double *x, const double *w, double *acc) {
    int64_t IH = g->in[1], IW = g->in[2], OH = g->out[1], OW = g->out[2];
    for (int64_t kd = 0; kd < g->k[0]; kd++) {
        int64_t offd = kd * g->d[0] - g->p[0], d0, d1;
        kiln_nn_tap_range(offd, g->s[0], g->out[0], g->in[0], &d0, &d1);
        for (int64_t kh = 0; kh < g->k[1]; kh++) {
            int64_t offh = kh * g->d[1] - g->p[1], h0, h1;
            kiln_nn_tap_range(offh, g->s[1], OH, IH, &h0, &h1);
            for (int64_t kw = 0; kw < g->k[2]; kw++) {
                int64_t offw = kw * g->d[2] - g->p[2], w0, w1;
                kiln_nn_tap_range(offw, g->s[2], OW, IW, &w0, &w1);
                if (w0 >= w1) continue;
                double wv = w[(kd * g->k[1] + kh) * g->k[2] + kw];
                int64_t sw = g->s[2];
                for (int64_t id = d0; id < d1; id++) {
                    int64_t od = id * g->s[0] + offd;
                    for (int64_t ih = h0; ih < h1; ih++) {
                        int64_t oh = ih * g->s[1] + offh;
                        const double *xr = x + (id * IH + ih) * IW;
                        double *ar = acc + (od * OH + oh) * OW;
                        for (int64_t iw = w0; iw < w1; iw++) ar[iw * sw + offw] += wv * xr[iw];
                    }
                }
            }
        }
    }
}

kiln_status kiln_ref_conv_transpose(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    const kiln_tensor *X = in[0], *W = in[1], *B = node->n_declared > 2 ? in[2] : NULL;
    kiln_window_dims wd;
    KILN_TRY(kiln_conv_transpose_resolve(node, X, W, &wd));
    int nsp = wd.nsp;
    if (nsp > 3)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED,
                               "%d spatial dims (the reference ConvTranspose does 1 to 3)", nsp);
    geom3 g;
    for (int i = 0; i < 3; i++) {
        int j = i - (3 - nsp);
        g.in[i] = j < 0 ? 1 : X->dims[2 + j];
        g.out[i] = j < 0 ? 1 : out[0].dims[2 + j];
        g.k[i] = j < 0 ? 1 : wd.kernel[j];
        g.s[i] = j < 0 ? 1 : wd.strides[j];
        g.d[i] = j < 0 ? 1 : wd.dilations[j];
        g.p[i] = j < 0 ? 0 : wd.pad_begin[j];
    }
    int64_t N = X->dims[0], C = X->dims[1], G = p->group, Cg = C / G, Mg = W->dims[1], M = Mg * G;
    int64_t in_plane = g.in[0] * g.in[1] * g.in[2], out_plane = g.out[0] * g.out[1] * g.out[2];
    int64_t ksize = g.k[0] * g.k[1] * g.k[2];
    int64_t total = kiln_shape_count(out[0].rank, out[0].dims);
    if (total == 0) return KILN_STATUS_OK;

    double *x = kiln_nn_to_f64(X), *w = kiln_nn_to_f64(W), *y = kiln_nn_alloc_f64(total);
    double *b = B ? kiln_nn_to_f64(B) : NULL;
    kiln_status s = KILN_STATUS_OK;
    if (!x || !w || !y || (B && !b)) {
        s = KILN_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    for (int64_t n = 0; n < N; n++) {
        if (b)
            for (int64_t m = 0; m < M; m++)
                for (int64_t i = 0; i < out_plane; i++) y[(n * M + m) * out_plane + i] = b[m];
        for (int64_t c = 0; c < C; c++) {
            int64_t grp = c / Cg;
            const double *xc = x + (n * C + c) * in_plane;
            for (int64_t m = 0; m < Mg; m++)
                scatter_channel(&g, xc, w + (c * Mg + m) * ksize, y + (n * M + grp * Mg + m) * out_plane);
        }
    }
    kiln_nn_from_f64(&out[0], y, total);
done:
    free(x);
    free(w);
    free(y);
    free(b);
    return s;
}
