/* deform_conv.c — reference kernel of DeformConv
 * (https://onnx.ai/onnx/operators/onnx__DeformConv.html), 2-D: each kernel tap samples X
 * bilinearly at its regular position plus a learned offset (outside corners read 0), times an
 * optional mask, then the usual grouped convolution sum. Accumulates in double.
 * Tested by test_deform_conv*. */
#include "../../ops/nn_internal.h"

#include <math.h>

/* Bilinear sample of a (H, W) plane at (y, x) in pixel coordinates, zero outside. */
static double bilinear_zero(const double *plane, int64_t H, int64_t W, double y, double x) {
    double fy = floor(y), fx = floor(x);
    int64_t y0 = (int64_t)fy, x0 = (int64_t)fx;
    double ly = y - fy, lx = x - fx, v = 0;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            int64_t yy = y0 + dy, xx = x0 + dx;
            if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
            double wgt = (dy ? ly : 1 - ly) * (dx ? lx : 1 - lx);
            v += wgt * plane[yy * W + xx];
        }
    return v;
}

kiln_status kiln_ref_deform_conv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    const kiln_tensor *X = in[0], *W = in[1], *OFF = in[2];
    const kiln_tensor *B = node->n_declared > 3 ? in[3] : NULL, *MASK = node->n_declared > 4 ? in[4] : NULL;
    kiln_window_dims d;
    KILN_TRY(kiln_conv_infer_common(node, p, X, W, B, W->dims[0], &d));
    int64_t N = X->dims[0], C = X->dims[1], H = X->dims[2], Wd = X->dims[3];
    int64_t M = W->dims[0], Cg = W->dims[1], G = p->group, Mg = M / G, OG = p->offset_group, Cog = C / OG;
    int64_t KH = d.kernel[0], KW = d.kernel[1], OH = out[0].dims[2], OW = out[0].dims[3];
    int64_t total = kiln_shape_count(out[0].rank, out[0].dims);
    if (total == 0) return KILN_STATUS_OK;
    double *x = kiln_nn_to_f64(X), *w = kiln_nn_to_f64(W), *off = kiln_nn_to_f64(OFF);
    double *b = B ? kiln_nn_to_f64(B) : NULL, *mask = MASK ? kiln_nn_to_f64(MASK) : NULL;
    double *y = kiln_nn_alloc_f64(total);
    /* samples of one input channel at every (tap, output position): (KH*KW, OH, OW) */
    double *col = kiln_nn_alloc_f64(KH * KW * OH * OW);
    kiln_status s = KILN_STATUS_OK;
    if (!x || !w || !off || !y || !col || (B && !b) || (MASK && !mask)) {
        s = KILN_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    int64_t plane = OH * OW, taps = KH * KW;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t i = 0; i < plane; i++) y[(n * M + m) * plane + i] = b ? b[m] : 0.0;
        for (int64_t c = 0; c < C; c++) {
            int64_t og = c / Cog, grp = c / Cg;
            const double *xc = x + (n * C + c) * H * Wd;
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++) {
                    int64_t t = kh * KW + kw;
                    /* offset layout: (N, OG, KH, KW, 2, OH, OW) */
                    const double *offy = off + ((((n * OG + og) * taps + t) * 2) + 0) * plane;
                    const double *offx = offy + plane;
                    const double *mk = mask ? mask + ((n * OG + og) * taps + t) * plane : NULL;
                    for (int64_t oh = 0; oh < OH; oh++)
                        for (int64_t ow = 0; ow < OW; ow++) {
                            int64_t i = oh * OW + ow;
                            double py = (double)(oh * d.strides[0] - d.pad_begin[0] + kh * d.dilations[0]) + offy[i];
                            double px = (double)(ow * d.strides[1] - d.pad_begin[1] + kw * d.dilations[1]) + offx[i];
                            double v = bilinear_zero(xc, H, Wd, py, px);
                            col[t * plane + i] = mk ? v * mk[i] : v;
                        }
                }
            for (int64_t mm = 0; mm < Mg; mm++) {
                int64_t m = grp * Mg + mm;
                double *acc = y + (n * M + m) * plane;
                const double *wk = w + (m * Cg + (c - grp * Cg)) * taps;
                for (int64_t t = 0; t < taps; t++)
                    for (int64_t i = 0; i < plane; i++) acc[i] += wk[t] * col[t * plane + i];
            }
        }
    }
    kiln_nn_from_f64(&out[0], y, total);
done:
    free(x);
    free(w);
    free(off);
    free(b);
    free(mask);
    free(y);
    free(col);
    return s;
}
