/* conv.c — reference kernel of Conv (https://onnx.ai/onnx/operators/onnx__Conv.html), 1-D to
 * 3-D, any group, strides, dilations and pads; accumulates in double.
 *
 * Every dim is lifted to 3-D (leading spatial dims of size 1). For each output channel the
 * output plane is a double accumulator; each (input channel, kernel tap) adds a weighted,
 * shifted input row to it with index bounds computed once per tap, so the inner loop walks
 * memory contiguously (stride 1) and has no branches. Tested by test_conv*, test_basic_conv*. */
#include "../../ops/nn_internal.h"

#include <string.h>

/* One output channel: acc (od, oh, ow) += sum over taps of w * x (shifted). */
typedef struct geom3 {
    int64_t in[3], out[3], k[3], s[3], d[3], p[3];
} geom3;

static void conv_channel(const geom3 *g, const double *x, const double *w, double *acc) {
    int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
    for (int64_t kd = 0; kd < g->k[0]; kd++) {
        int64_t offd = kd * g->d[0] - g->p[0], d0, d1;
        kiln_nn_tap_range(offd, g->s[0], ID, OD, &d0, &d1);
        for (int64_t kh = 0; kh < g->k[1]; kh++) {
            int64_t offh = kh * g->d[1] - g->p[1], h0, h1;
            kiln_nn_tap_range(offh, g->s[1], IH, OH, &h0, &h1);
            for (int64_t kw = 0; kw < g->k[2]; kw++) {
                int64_t offw = kw * g->d[2] - g->p[2], w0, w1;
                kiln_nn_tap_range(offw, g->s[2], IW, OW, &w0, &w1);
                double wv = w[(kd * g->k[1] + kh) * g->k[2] + kw];
                if (w0 >= w1) continue;
                int64_t sw = g->s[2];
                for (int64_t od = d0; od < d1; od++) {
                    int64_t id = od * g->s[0] + offd;
                    for (int64_t oh = h0; oh < h1; oh++) {
                        int64_t ih = oh * g->s[1] + offh;
                        const double *xr = x + (id * IH + ih) * IW;
                        double *ar = acc + (od * OH + oh) * OW;
                        if (sw == 1) {
                            for (int64_t ow = w0; ow < w1; ow++) ar[ow] += wv * xr[ow + offw];
                        } else {
                            for (int64_t ow = w0; ow < w1; ow++) ar[ow] += wv * xr[ow * sw + offw];
                        }
                    }
                }
            }
        }
    }
}

kiln_status kiln_ref_conv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    const kiln_tensor *X = in[0], *W = in[1], *B = node->n_declared > 2 ? in[2] : NULL;
    kiln_window_dims wd;
    KILN_TRY(kiln_conv_infer_common(node, p, X, W, B, W->dims[0], &wd));
    int nsp = wd.nsp;
    if (nsp > 3)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "%d spatial dims (the reference Conv does 1 to 3)", nsp);
    geom3 g;
    for (int i = 0; i < 3; i++) {
        int j = i - (3 - nsp); /* spatial dim, or < 0 for a lifted dim */
        g.in[i] = j < 0 ? 1 : X->dims[2 + j];
        g.out[i] = j < 0 ? 1 : out[0].dims[2 + j];
        g.k[i] = j < 0 ? 1 : wd.kernel[j];
        g.s[i] = j < 0 ? 1 : wd.strides[j];
        g.d[i] = j < 0 ? 1 : wd.dilations[j];
        g.p[i] = j < 0 ? 0 : wd.pad_begin[j];
    }
    int64_t N = X->dims[0], C = X->dims[1], M = W->dims[0], G = p->group;
    int64_t Cg = C / G, Mg = M / G;
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
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            int64_t grp = m / Mg;
            double *acc = y + (n * M + m) * out_plane;
            if (b)
                for (int64_t i = 0; i < out_plane; i++) acc[i] = b[m];
            for (int64_t c = 0; c < Cg; c++) {
                const double *xc = x + (n * C + grp * Cg + c) * in_plane;
                conv_channel(&g, xc, w + (m * Cg + c) * ksize, acc);
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
