/* resize.c — reference kernel of Resize (https://onnx.ai/onnx/operators/onnx__Resize.html) and
 * Upsample, in double, following the ONNX reference's separable formulation: the tensor is
 * resized one axis at a time; along an axis, output index y maps to a source coordinate x by the
 * coordinate_transformation_mode, and takes a weighted sum of n neighbours (nearest: 2 taps with
 * 0/1 weights; linear: 2; cubic: 4; antialias widens linear/cubic by 1/scale), edge-clamped,
 * optionally renormalised without outside taps (exclude_outside); tf_crop_and_resize puts
 * extrapolation_value where x falls outside the input. Tested by test_resize*, test_upsample*. */
#include "../../ops/nn_internal.h"

#include <math.h>

typedef struct taps {
    int n;
    int64_t *idx; /* (out, n), clamped into the input */
    double *w;    /* (out, n) */
    bool *extrap; /* (out) */
} taps;

static double source_coord(const kiln_resize_params *p, double y, double scale, int64_t in_w, int64_t out_w,
                           double roi0, double roi1, bool *extrap) {
    double ow = scale * (double)in_w; /* the real-valued output width */
    *extrap = false;
    switch (p->coord) {
    case KILN_COORD_ALIGN_CORNERS: return ow == 1 ? 0.0 : y * (double)(in_w - 1) / (ow - 1);
    case KILN_COORD_ASYMMETRIC: return y / scale;
    case KILN_COORD_TF_HALF_PIXEL_FOR_NN: return (y + 0.5) / scale;
    case KILN_COORD_PYTORCH_HALF_PIXEL: return ow == 1 ? -0.5 : (y + 0.5) / scale - 0.5;
    case KILN_COORD_HALF_PIXEL: return (y + 0.5) / scale - 0.5;
    case KILN_COORD_HALF_PIXEL_SYMMETRIC: {
        double adjustment = (double)out_w / ow, center = (double)in_w / 2;
        return center * (1 - adjustment) + (y + 0.5) / scale - 0.5;
    }
    case KILN_COORD_TF_CROP_AND_RESIZE: {
        double x = ow == 1 ? (roi1 - roi0) * (double)(in_w - 1) / 2 : y * (roi1 - roi0) * (double)(in_w - 1) / (ow - 1);
        x += roi0 * (double)(in_w - 1);
        *extrap = x < 0 || x > (double)(in_w - 1);
        return x;
    }
    }
    return 0;
}

static double cubic_kernel(double x, double A) {
    x = fabs(x);
    if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0;
}

/* Weights for `ratio` in (0, 1] (the distance past the left neighbour). */
static void coeffs(const kiln_resize_params *p, double ratio, double scale, int n, double *w) {
    if (p->mode == KILN_RESIZE_NEAREST) {
        bool second;
        if (ratio == 1.0) second = true;
        else if (p->nearest == KILN_NEAREST_ROUND_PREFER_FLOOR) second = ratio > 0.5;
        else if (p->nearest == KILN_NEAREST_ROUND_PREFER_CEIL) second = ratio >= 0.5;
        else second = p->nearest == KILN_NEAREST_CEIL;
        w[0] = second ? 0 : 1;
        w[1] = second ? 1 : 0;
        return;
    }
    if (!p->antialias) {
        if (p->mode == KILN_RESIZE_LINEAR) {
            w[0] = 1 - ratio;
            w[1] = ratio;
        } else {
            double A = p->cubic_a;
            w[0] = cubic_kernel(ratio + 1, A);
            w[1] = cubic_kernel(ratio, A);
            w[2] = cubic_kernel(1 - ratio, A);
            w[3] = cubic_kernel(2 - ratio, A);
        }
        return;
    }
    double s = scale < 1 ? scale : 1, sum = 0;
    int start = -(n / 2) + 1;
    for (int j = 0; j < n; j++) {
        double arg = s * ((double)(start + j) - ratio);
        w[j] = p->mode == KILN_RESIZE_LINEAR ? fmax(0.0, fmin(1.0, 1 - fabs(arg))) : cubic_kernel(arg, p->cubic_a);
        sum += w[j];
    }
    for (int j = 0; j < n; j++) w[j] /= sum;
}

static int tap_count(const kiln_resize_params *p, double scale) {
    if (p->mode == KILN_RESIZE_NEAREST) return 2;
    if (!p->antialias || scale >= 1) return p->mode == KILN_RESIZE_LINEAR ? 2 : 4;
    double reach = p->mode == KILN_RESIZE_LINEAR ? 1.0 : 2.0;
    int start = (int)floor(-reach / scale) + 1;
    return 2 - 2 * start;
}

static kiln_status make_taps(const kiln_resize_params *p, int64_t in_w, int64_t out_w, double scale, double roi0,
                             double roi1, taps *t) {
    int n = p->nearest == KILN_NEAREST_SIMPLE && p->mode == KILN_RESIZE_NEAREST ? 1 : tap_count(p, scale);
    if (n > 4096) return kiln_error(KILN_STATUS_UNSUPPORTED, "Resize: antialias kernel of %d taps is too wide", n);
    t->n = n;
    t->idx = kiln_calloc((size_t)(out_w * n + 1), sizeof(int64_t));
    t->w = kiln_calloc((size_t)(out_w * n + 1), sizeof(double));
    t->extrap = kiln_calloc((size_t)out_w + 1, sizeof(bool));
    if (!t->idx || !t->w || !t->extrap) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t y = 0; y < out_w; y++) {
        int64_t *idx = t->idx + y * n;
        double *w = t->w + y * n;
        double x = source_coord(p, (double)y, scale, in_w, out_w, roi0, roi1, &t->extrap[y]);
        if (n == 1) { /* Upsample / Resize-10 nearest: floor when upsampling, ceil when downsampling */
            int64_t i = (int64_t)(scale < 1 ? ceil(x) : floor(x));
            idx[0] = i < 0 ? 0 : i >= in_w ? in_w - 1 : i;
            w[0] = 1;
            continue;
        }
        double fl = floor(x), ratio = x == fl ? 1.0 : x - fl;
        coeffs(p, ratio, scale, n, w);
        int pad = (n + 1) / 2;
        double xp = x + pad, pp = floor(xp), frac = xp - pp;
        int64_t off = n % 2 == 0 ? (frac == 0 ? -(n / 2) : -(n / 2) + 1) : (frac <= 0.5 ? -((n - 1) / 2) : -((n - 1) / 2) + 1);
        int64_t start = (int64_t)pp + off - pad;
        double sum = 0;
        for (int j = 0; j < n; j++) {
            int64_t i = start + j;
            if (p->exclude_outside && (i < 0 || i >= in_w)) w[j] = 0;
            sum += w[j];
            idx[j] = i < 0 ? 0 : i >= in_w ? in_w - 1 : i;
        }
        if (p->exclude_outside && sum != 0)
            for (int j = 0; j < n; j++) w[j] /= sum;
    }
    return KILN_STATUS_OK;
}

static double saturate(kiln_dtype t, double v) { return kiln_round_saturate(t, v); }

kiln_status kiln_ref_resize(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_resize_params *p = node->params;
    const kiln_tensor *X = in[0];
    kiln_resize_geom g;
    KILN_TRY(kiln_resize_resolve(node, in, &g));
    int r = X->rank;
    int64_t total_out = kiln_shape_count(out[0].rank, out[0].dims);
    if (total_out == 0) return KILN_STATUS_OK;
    for (int a = 0; a < r; a++)
        if (X->dims[a] == 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot resize an empty axis %d to %lld", a,
                                   (long long)out[0].dims[a]);
    int64_t dims[KILN_MAX_RANK];
    for (int a = 0; a < r; a++) dims[a] = X->dims[a];
    double *cur = kiln_nn_to_f64(X);
    if (!cur) return KILN_STATUS_OUT_OF_MEMORY;
    kiln_status s = KILN_STATUS_OK;
    for (int a = 0; a < r && s == KILN_STATUS_OK; a++) {
        int64_t in_w = dims[a], out_w = g.out[a];
        bool crop = p->coord == KILN_COORD_TF_CROP_AND_RESIZE && (g.roi_start[a] != 0 || g.roi_end[a] != 1);
        if (fabs(g.scale[a] - 1.0) < 1e-9 && out_w == in_w && !crop) continue;
        taps t = {0};
        s = make_taps(p, in_w, out_w, g.scale[a], g.roi_start[a], g.roi_end[a], &t);
        int64_t outer = kiln_nn_prod(dims, 0, a), inner = kiln_nn_prod(dims, a + 1, r);
        double *next = s ? NULL : kiln_nn_alloc_f64(outer * out_w * inner);
        if (!s && !next) s = KILN_STATUS_OUT_OF_MEMORY;
        if (!s) {
            for (int64_t o = 0; o < outer; o++)
                for (int64_t y = 0; y < out_w; y++) {
                    double *dst = next + (o * out_w + y) * inner;
                    if (t.extrap[y]) {
                        for (int64_t i = 0; i < inner; i++) dst[i] = p->extrapolation;
                        continue;
                    }
                    for (int j = 0; j < t.n; j++) {
                        double wj = t.w[y * t.n + j];
                        if (wj == 0) continue;
                        const double *src = cur + (o * in_w + t.idx[y * t.n + j]) * inner;
                        for (int64_t i = 0; i < inner; i++) dst[i] += wj * src[i];
                    }
                }
            free(cur);
            cur = next;
            dims[a] = out_w;
        }
        free(t.idx);
        free(t.w);
        free(t.extrap);
    }
    if (s == KILN_STATUS_OK) {
        if (kiln_nn_is_float(out[0].dtype)) kiln_nn_from_f64(&out[0], cur, total_out);
        else /* integers: round half to even, saturate (as the ONNX reference) */
            for (int64_t i = 0; i < total_out; i++) kiln_store_f64(out[0].dtype, out[0].data, i, saturate(out[0].dtype, cur[i]));
    }
    free(cur);
    return s;
}
