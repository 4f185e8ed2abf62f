/* conv_common.c — the reference convolution kernels' shared geometry, tap walk and buffers
 * (see conv_common.h). No op lives here. Tested by test_conv*, test_convtranspose*,
 * test_convinteger*, test_qlinearconv. */
#include "conv_common.h"

#include <stdlib.h>

kiln_status conv3_lift(const kiln_node *node, const char *what, const kiln_window_dims *wd,
                       const int64_t *x_dims, const int64_t *y_dims, conv3 *g) {
    int nsp = wd->nsp;
    if (nsp > 3) return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "%d spatial dims (%s does 1 to 3)", nsp, what);
    for (int i = 0; i < 3; i++) {
        int j = i - (3 - nsp); /* spatial dim, or < 0 for a lifted dim */
        g->in[i] = j < 0 ? 1 : x_dims[2 + j];
        g->out[i] = j < 0 ? 1 : y_dims[2 + j];
        g->k[i] = j < 0 ? 1 : wd->kernel[j];
        g->s[i] = j < 0 ? 1 : wd->strides[j];
        g->d[i] = j < 0 ? 1 : wd->dilations[j];
        g->p[i] = j < 0 ? 0 : wd->pad_begin[j];
    }
    g->in_plane = g->in[0] * g->in[1] * g->in[2];
    g->out_plane = g->out[0] * g->out[1] * g->out[2];
    g->ksize = g->k[0] * g->k[1] * g->k[2];
    return KILN_STATUS_OK;
}

void conv3_walk(const conv3 *g, bool scatter, void (*row)(void *ctx, const conv3_row *r), void *ctx) {
    /* The walked side (output for gather, input for scatter) and the other one. */
    const int64_t *wk = scatter ? g->in : g->out, *ot = scatter ? g->out : g->in;
    int64_t IH = g->in[1], IW = g->in[2], OH = g->out[1], OW = g->out[2];
    conv3_row r = {.s = g->s[2]};
    for (int64_t kd = 0; kd < g->k[0]; kd++) {
        int64_t offd = kd * g->d[0] - g->p[0], d0, d1;
        kiln_nn_tap_range(offd, g->s[0], ot[0], wk[0], &d0, &d1);
        for (int64_t kh = 0; kh < g->k[1]; kh++) {
            int64_t offh = kh * g->d[1] - g->p[1], h0, h1;
            kiln_nn_tap_range(offh, g->s[1], ot[1], wk[1], &h0, &h1);
            for (int64_t kw = 0; kw < g->k[2]; kw++) {
                r.off = kw * g->d[2] - g->p[2];
                kiln_nn_tap_range(r.off, g->s[2], ot[2], wk[2], &r.lo, &r.hi);
                if (r.lo >= r.hi) continue;
                r.k = (kd * g->k[1] + kh) * g->k[2] + kw;
                for (int64_t a = d0; a < d1; a++) {
                    int64_t b = a * g->s[0] + offd; /* the other side's d */
                    for (int64_t c = h0; c < h1; c++) {
                        int64_t e = c * g->s[1] + offh; /* the other side's h */
                        r.x = scatter ? (a * IH + c) * IW : (b * IH + e) * IW;
                        r.y = scatter ? (b * OH + e) * OW : (a * OH + c) * OW;
                        row(ctx, &r);
                    }
                }
            }
        }
    }
}

kiln_status conv_f64_load(conv_f64 *f, const kiln_tensor *X, const kiln_tensor *W, const kiln_tensor *B,
                          int64_t y_count) {
    f->x = kiln_nn_to_f64(X);
    f->w = kiln_nn_to_f64(W);
    f->y = kiln_nn_alloc_f64(y_count);
    f->b = B ? kiln_nn_to_f64(B) : NULL;
    if (f->x && f->w && f->y && (!B || f->b)) return KILN_STATUS_OK;
    conv_f64_free(f);
    return KILN_STATUS_OUT_OF_MEMORY;
}

void conv_f64_free(conv_f64 *f) {
    free(f->x);
    free(f->w);
    free(f->y);
    free(f->b);
}
