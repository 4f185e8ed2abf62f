/* spectral.c — reference kernels of HannWindow, HammingWindow, BlackmanWindow and
 * MelWeightMatrix (https://onnx.ai/onnx/operators/onnx__HannWindow.html and siblings).
 *
 * Windows, with N = size (periodic) or size - 1 (symmetric), in double:
 *   Hann      0.5 - 0.5 cos(2 pi n / N)
 *   Hamming   25/46 - 21/46 cos(2 pi n / N)       (the spec's alpha = 25/46, not 0.54)
 *   Blackman  0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)
 * A symmetric window of size 1 is [1]. MelWeightMatrix follows onnx/reference's algorithm
 * step by step (triangles between mel-spaced FFT bins, peak 1), the edge frequencies' log1p
 * taken in their own float type and the bin numbers floored as numpy's // does.
 * Tested by test_hannwindow*, test_hammingwindow*, test_blackmanwindow*, test_melweightmatrix. */
#include "../../ops/seq_internal.h"

static const double PI = 3.14159265358979323846;

static kiln_status window(const kiln_node *node, kiln_tensor *y) {
    int64_t size = y->dims[0];
    const seq_spectral_params *p = node->params;
    double N = (double)(p->periodic ? size : size - 1);
    for (int64_t n = 0; n < size; n++) {
        double c1 = N > 0 ? cos(2.0 * PI * (double)n / N) : 1.0, c2 = N > 0 ? cos(4.0 * PI * (double)n / N) : 1.0, v;
        switch (node->op) {
        case KILN_OP_HannWindow: v = 0.5 - 0.5 * c1; break;
        case KILN_OP_HammingWindow: v = 25.0 / 46.0 - (21.0 / 46.0) * c1; break;
        default: v = 0.42 - 0.5 * c1 + 0.08 * c2; break;
        }
        if (N <= 0) v = 1.0;
        kiln_store_f64(y->dtype, y->data, n, v);
    }
    return KILN_STATUS_OK;
}

/* numpy's floor division of doubles (npy_divmod), so bin edges land where numpy puts them. */
static double floor_div(double a, double b) {
    double mod = fmod(a, b), div = (a - mod) / b;
    if (mod != 0.0 && ((b < 0) != (mod < 0))) div -= 1.0;
    if (div == 0.0) return copysign(0.0, a / b);
    double f = floor(div);
    return div - f > 0.5 ? f + 1.0 : f;
}

/* 2595 * log1p(hz / 700) / ln(10): the log1p in the input's float type (numpy keeps float32
 * there), the division by ln(10) in double. */
static double hz_to_mel(kiln_dtype t, double hz) {
    if (t == KILN_DTYPE_F64) return 2595.0 * log1p(hz / 700.0) / log(10.0);
    float v = 2595.0f * (float)seq_round_to(t, log1pf((float)seq_round_to(t, (float)hz / 700.0f)));
    return (double)v / log(10.0);
}

static kiln_status mel(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *y) {
    int64_t bins = kiln_load_i64(in[0]->dtype, in[0]->data, 0), dft = kiln_load_i64(in[1]->dtype, in[1]->data, 0);
    int64_t rate = kiln_load_i64(in[2]->dtype, in[2]->data, 0);
    int64_t spec = dft / 2 + 1;
    if (bins == 0) return KILN_STATUS_OK;
    double low = hz_to_mel(in[3]->dtype, kiln_load_f64(in[3]->dtype, in[3]->data, 0));
    double high = hz_to_mel(in[4]->dtype, kiln_load_f64(in[4]->dtype, in[4]->data, 0));
    double step = (high - low) / (double)(bins + 2);
    int64_t *f = kiln_malloc(sizeof(int64_t) * (size_t)(bins + 2));
    if (!f) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "node '%s': out of memory", node->name);
    for (int64_t i = 0; i < bins + 2; i++) {
        double hz = 700.0 * expm1(((double)i * step + low) / 2595.0 * log(10.0));
        f[i] = (int64_t)floor_div((double)(dft + 1) * hz, (double)rate);
    }
    double *w = kiln_calloc((size_t)(spec * bins), sizeof(double));
    if (!w) {
        free(f);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "node '%s': out of memory", node->name);
    }
    for (int64_t i = 0; i < bins; i++) {
        int64_t lo = f[i], center = f[i + 1], hi = f[i + 2];
        if (center == lo) {
            if (center >= 0 && center < spec) w[center * bins + i] = 1.0;
        } else {
            for (int64_t j = lo; j <= center; j++)
                if (j >= 0 && j < spec) w[j * bins + i] = (double)(j - lo) / (double)(center - lo);
        }
        if (hi > center)
            for (int64_t j = center; j < hi; j++)
                if (j >= 0 && j < spec) w[j * bins + i] = (double)(hi - j) / (double)(hi - center);
    }
    for (int64_t k = 0; k < spec * bins; k++) kiln_store_f64(y->dtype, y->data, k, w[k]);
    free(w);
    free(f);
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_spectral(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (node->op == KILN_OP_MelWeightMatrix) return mel(node, in, &out[0]);
    return window(node, &out[0]);
}
