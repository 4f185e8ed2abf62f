/* grid_sample.c — reference kernels of GridSample
 * (https://onnx.ai/onnx/operators/onnx__GridSample.html) and AffineGrid
 * (https://onnx.ai/onnx/operators/onnx__AffineGrid.html), N-D, following the ONNX reference:
 * grid values are denormalized per axis (align_corners or not), moved inside by the padding
 * mode (border: clamp, reflection: reflect), then sampled with 1 (nearest, ties to even), 2
 * (linear) or 4 (cubic, a = -0.75) taps per axis, taps outside reading 0 / the clamped / the
 * reflected pixel. Tested by test_gridsample*, test_affine_grid*. */
#include "../../ops/nn_internal.h"

#include <math.h>

static double reflect(double x, double lo, double hi) {
    double rng = hi - lo;
    if (rng <= 0) return lo;
    if (x < lo) {
        double dx = lo - x;
        int64_t n = (int64_t)(dx / rng);
        double r = dx - (double)n * rng;
        return n % 2 == 0 ? lo + r : hi - r;
    }
    if (x > hi) {
        double dx = x - hi;
        int64_t n = (int64_t)(dx / rng);
        double r = dx - (double)n * rng;
        return n % 2 == 0 ? hi - r : lo + r;
    }
    return x;
}

static void cubic_coeffs(double t, double *w) {
    const double A = -0.75;
    double x = t + 1;
    w[0] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    w[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
    x = 1 - t;
    w[2] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 2 - t;
    w[3] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/* Taps of one axis: index (-1: reads zero) and weight. */
typedef struct axis_taps {
    int n;
    int64_t idx[4];
    double w[4];
} axis_taps;

static void make_axis_taps(const kiln_grid_params *p, float g, int64_t d, axis_taps *t) {
    /* denormalize in float, as the ONNX reference (and PyTorch) do */
    float xf = p->align_corners ? (g + 1.0f) / 2.0f * (float)(d - 1) : ((g + 1.0f) * (float)d - 1.0f) / 2.0f;
    double x = xf;
    double lo = p->align_corners ? 0.0 : -0.5, hi = p->align_corners ? (double)d - 1 : (double)d - 0.5;
    if (p->mode == KILN_GRID_NEAREST) x = nearbyint(x);
    if (x < lo || x > hi) {
        if (p->padding == KILN_GRID_BORDER) x = x < 0 ? 0 : x > (double)(d - 1) ? (double)(d - 1) : x;
        else if (p->padding == KILN_GRID_REFLECTION) x = reflect(x, lo, hi);
    }
    int64_t base;
    if (p->mode == KILN_GRID_NEAREST) {
        t->n = 1;
        base = (int64_t)x;
        t->w[0] = 1;
    } else {
        double fl = floor(x), f = x - fl;
        base = (int64_t)fl;
        if (p->mode == KILN_GRID_LINEAR) {
            t->n = 2;
            t->w[0] = 1 - f;
            t->w[1] = f;
        } else {
            t->n = 4;
            base -= 1;
            cubic_coeffs(f, t->w);
        }
    }
    for (int k = 0; k < t->n; k++) {
        int64_t i = base + k;
        if (p->padding == KILN_GRID_ZEROS) {
            if (i < 0 || i >= d) i = -1;
        } else if (p->padding == KILN_GRID_BORDER) {
            i = i < 0 ? 0 : i >= d ? d - 1 : i;
        } else {
            i = (int64_t)reflect((double)i, lo, hi);
            i = i < 0 ? 0 : i >= d ? d - 1 : i;
        }
        t->idx[k] = i;
    }
}

static kiln_status grid_sample(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_grid_params *p = node->params;
    const kiln_tensor *X = in[0], *G = in[1];
    int r = X->rank - 2;
    int64_t N = X->dims[0], C = X->dims[1];
    const int64_t *sd = X->dims + 2, *od = out[0].dims + 2;
    int64_t in_plane = kiln_nn_prod(X->dims, 2, X->rank), out_plane = kiln_nn_prod(out[0].dims, 2, out[0].rank);
    int64_t str[KILN_MAX_RANK];
    kiln_contiguous_strides(r, sd, str);
    for (int64_t n = 0; n < N; n++) {
        int64_t o[KILN_MAX_RANK] = {0};
        for (int64_t oi = 0; oi < out_plane; oi++, kiln_nn_next(r, od, o)) {
            axis_taps t[KILN_MAX_RANK];
            for (int a = 0; a < r; a++) {
                /* grid (N, O..., r), its last dim in reverse axis order */
                float g = (float)kiln_load_f64(G->dtype, G->data, (n * out_plane + oi) * r + (r - 1 - a));
                make_axis_taps(p, g, sd[a], &t[a]);
            }
            for (int64_t c = 0; c < C; c++) {
                int64_t base = (n * C + c) * in_plane;
                int k[KILN_MAX_RANK] = {0};
                double acc = 0;
                while (1) {
                    double w = 1;
                    int64_t off = 0;
                    bool zero = false;
                    for (int a = 0; a < r; a++) {
                        int64_t i = t[a].idx[k[a]];
                        if (i < 0) zero = true;
                        w *= t[a].w[k[a]];
                        off += i * str[a];
                    }
                    if (!zero && in_plane > 0) acc += w * kiln_load_f64(X->dtype, X->data, base + off);
                    int a = r - 1;
                    for (; a >= 0; a--) {
                        if (++k[a] < t[a].n) break;
                        k[a] = 0;
                    }
                    if (a < 0) break;
                }
                kiln_store_f64(out[0].dtype, out[0].data, (n * C + c) * out_plane + oi, acc);
            }
        }
    }
    return KILN_STATUS_OK;
}

static double base_coord(int64_t i, int64_t size, bool align) {
    if (align) return size == 1 ? -1.0 : -1.0 + 2.0 * (double)i / (double)(size - 1);
    return -1.0 + (2.0 * (double)i + 1.0) / (double)size;
}

static kiln_status affine_grid(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_grid_params *p = node->params;
    const kiln_tensor *T = in[0];
    int nd = out[0].rank - 2; /* 2 or 3 */
    int64_t N = out[0].dims[0];
    const int64_t *sp = out[0].dims + 1; /* (H, W) or (D, H, W) */
    int64_t pts = kiln_nn_prod(sp, 0, nd);
    if (T->dims[0] != N)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "theta has %lld matrices for N = %lld",
                               (long long)T->dims[0], (long long)N);
    for (int64_t n = 0; n < N; n++) {
        int64_t idx[3] = {0, 0, 0};
        for (int64_t q = 0; q < pts; q++, kiln_nn_next(nd, sp, idx)) {
            double b[4]; /* x (last axis), y, z, 1 */
            for (int j = 0; j < nd; j++) b[j] = base_coord(idx[nd - 1 - j], sp[nd - 1 - j], p->align_corners);
            b[nd] = 1.0;
            for (int i = 0; i < nd; i++) {
                double v = 0;
                for (int j = 0; j <= nd; j++) v += kiln_load_f64(T->dtype, T->data, (n * nd + i) * (nd + 1) + j) * b[j];
                kiln_store_f64(out[0].dtype, out[0].data, (n * pts + q) * nd + i, v);
            }
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_grid_sample(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    return node->op == KILN_OP_AffineGrid ? affine_grid(node, in, out) : grid_sample(node, in, out);
}
