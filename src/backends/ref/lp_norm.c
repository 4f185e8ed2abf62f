/* lp_norm.c — reference kernels of LpNormalization
 * (https://onnx.ai/onnx/operators/onnx__LpNormalization.html; a zero norm gives 0) and LRN
 * (https://onnx.ai/onnx/operators/onnx__LRN.html: y = x / (bias + alpha / size * sum of x^2
 * over channels [c - floor((size-1)/2), c + ceil((size-1)/2)])^beta), in double.
 * Tested by test_lpnormalization*, test_lrn*. */
#include "../../ops/nn_internal.h"

#include <math.h>

static kiln_status lp_normalize(const kiln_norm_params *p, const kiln_tensor *X, kiln_tensor *Y) {
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, X->rank, &axis));
    int64_t outer = kiln_nn_prod(X->dims, 0, axis), n = X->dims[axis], inner = kiln_nn_prod(X->dims, axis + 1, X->rank);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * n * inner + i;
            double norm = 0;
            for (int64_t k = 0; k < n; k++) {
                double v = kiln_load_f64(X->dtype, X->data, base + k * inner);
                norm += p->p == 1 ? fabs(v) : v * v;
            }
            if (p->p == 2) norm = sqrt(norm);
            for (int64_t k = 0; k < n; k++) {
                double v = kiln_load_f64(X->dtype, X->data, base + k * inner);
                kiln_store_f64(Y->dtype, Y->data, base + k * inner, norm == 0 ? 0.0 : v / norm);
            }
        }
    return KILN_STATUS_OK;
}

static kiln_status lrn(const kiln_norm_params *p, const kiln_tensor *X, kiln_tensor *Y) {
    int64_t N = X->dims[0], C = X->dims[1], S = kiln_nn_prod(X->dims, 2, X->rank);
    int64_t before = (p->size - 1) / 2, after = p->size - 1 - before;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < S; i++) {
                double sq = 0;
                int64_t lo = c - before < 0 ? 0 : c - before, hi = c + after >= C ? C - 1 : c + after;
                for (int64_t k = lo; k <= hi; k++) {
                    double v = kiln_load_f64(X->dtype, X->data, (n * C + k) * S + i);
                    sq += v * v;
                }
                int64_t at = (n * C + c) * S + i;
                double v = kiln_load_f64(X->dtype, X->data, at);
                kiln_store_f64(Y->dtype, Y->data, at, v / pow(p->bias + p->alpha / (double)p->size * sq, p->beta));
            }
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_lp_norm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = node->params;
    if (node->op == KILN_OP_LpNormalization) return lp_normalize(p, in[0], &out[0]);
    return lrn(p, in[0], &out[0]);
}
