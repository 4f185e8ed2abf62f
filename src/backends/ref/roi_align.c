/* roi_align.c — reference kernel of RoiAlign (https://onnx.ai/onnx/operators/onnx__RoiAlign.html),
 * in double, as the ONNX reference (and ONNX Runtime) compute it: each output bin averages
 * (or, for "max", takes the max of the weighted corner values of) a grid of bilinear samples;
 * samples beyond one pixel outside the map count as zero. Tested by test_roialign*. */
#include "../../ops/nn_internal.h"

#include <math.h>

/* The four corner offsets and weights of a bilinear sample at (y, x) on an (H, W) map. */
static void corners(double y, double x, int64_t H, int64_t W, int64_t *pos, double *w) {
    if (y < -1.0 || y > (double)H || x < -1.0 || x > (double)W) {
        for (int i = 0; i < 4; i++) pos[i] = 0, w[i] = 0;
        return;
    }
    if (y < 0) y = 0;
    if (x < 0) x = 0;
    int64_t yl = (int64_t)y, xl = (int64_t)x, yh, xh;
    if (yl >= H - 1) yh = yl = H - 1, y = (double)yl;
    else yh = yl + 1;
    if (xl >= W - 1) xh = xl = W - 1, x = (double)xl;
    else xh = xl + 1;
    double ly = y - (double)yl, lx = x - (double)xl, hy = 1 - ly, hx = 1 - lx;
    pos[0] = yl * W + xl, pos[1] = yl * W + xh, pos[2] = yh * W + xl, pos[3] = yh * W + xh;
    w[0] = hy * hx, w[1] = hy * lx, w[2] = ly * hx, w[3] = ly * lx;
}

kiln_status kiln_ref_roi_align(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_roi_align_params *p = node->params;
    const kiln_tensor *X = in[0], *R = in[1], *BI = in[2];
    int64_t N = X->dims[0], C = X->dims[1], H = X->dims[2], W = X->dims[3];
    int64_t n_rois = out[0].dims[0], PH = p->out_h, PW = p->out_w;
    double off = p->half_pixel ? 0.5 : 0.0;
    if (H == 0 || W == 0) return KILN_STATUS_OK; /* every sample is outside: zeros */
    for (int64_t r = 0; r < n_rois; r++) {
        int64_t b = kiln_load_i64(BI->dtype, BI->data, r);
        if (b < 0 || b >= N)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "batch_indices[%lld] = %lld is outside [0, %lld)",
                                   (long long)r, (long long)b, (long long)N);
        double x1 = kiln_load_f64(R->dtype, R->data, r * 4 + 0) * p->spatial_scale - off;
        double y1 = kiln_load_f64(R->dtype, R->data, r * 4 + 1) * p->spatial_scale - off;
        double x2 = kiln_load_f64(R->dtype, R->data, r * 4 + 2) * p->spatial_scale - off;
        double y2 = kiln_load_f64(R->dtype, R->data, r * 4 + 3) * p->spatial_scale - off;
        double rw = x2 - x1, rh = y2 - y1;
        if (!p->half_pixel) {
            rw = fmax(rw, 1.0);
            rh = fmax(rh, 1.0);
        }
        double bh = rh / (double)PH, bw = rw / (double)PW;
        int64_t gh = p->sampling_ratio > 0 ? p->sampling_ratio : (int64_t)ceil(rh / (double)PH);
        int64_t gw = p->sampling_ratio > 0 ? p->sampling_ratio : (int64_t)ceil(rw / (double)PW);
        if (gh < 0) gh = 0;
        if (gw < 0) gw = 0;
        double count = (double)(gh * gw > 1 ? gh * gw : 1);
        for (int64_t c = 0; c < C; c++) {
            const int64_t base = (b * C + c) * H * W;
            for (int64_t ph = 0; ph < PH; ph++)
                for (int64_t pw = 0; pw < PW; pw++) {
                    double acc = 0;
                    bool first = true;
                    for (int64_t iy = 0; iy < gh; iy++) {
                        double yy = y1 + (double)ph * bh + ((double)iy + 0.5) * bh / (double)gh;
                        for (int64_t ix = 0; ix < gw; ix++) {
                            double xx = x1 + (double)pw * bw + ((double)ix + 0.5) * bw / (double)gw;
                            int64_t pos[4];
                            double w[4];
                            corners(yy, xx, H, W, pos, w);
                            double v[4];
                            for (int k = 0; k < 4; k++) v[k] = w[k] * kiln_load_f64(X->dtype, X->data, base + pos[k]);
                            if (!p->max_mode) {
                                acc += v[0] + v[1] + v[2] + v[3];
                            } else {
                                double m = fmax(fmax(v[0], v[1]), fmax(v[2], v[3]));
                                acc = first ? m : fmax(acc, m);
                                first = false;
                            }
                        }
                    }
                    if (!p->max_mode) acc /= count;
                    kiln_store_f64(out[0].dtype, out[0].data, ((r * C + c) * PH + ph) * PW + pw, acc);
                }
        }
    }
    return KILN_STATUS_OK;
}
