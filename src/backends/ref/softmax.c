/* softmax.c — reference kernels of Softmax, LogSoftmax and Hardmax (parse and infer in
 * src/ops/softmax.c). Each row (the elements along the axis, or the flattened trailing dims in
 * the pre-13 2-D mode) is computed in double: softmax = exp(x - max) / sum, log-softmax =
 * x - max - log(sum), hardmax = 1 at the first largest element, 0 elsewhere. Softmax rounds
 * its steps (x - max, exp, the sum) to the dtype, as when computing in the dtype (numpy's way,
 * which the node tests' f16 expected values follow); log-softmax rounds once (rounding log(sum)
 * to f16 would cost up to an f16 ulp of log(sum) in absolute error).
 * Tested by test_softmax*, test_logsoftmax*, test_hardmax*. */
#include "../../ops/reduce_internal.h"

kiln_status kiln_ref_softmax(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_softmax_params *p = node->params;
    const kiln_tensor *x = in[0];
    kiln_tensor *y = &out[0];
    kiln_dtype t = x->dtype;
    int axis;
    KILN_TRY(red_softmax_axis(node, x->rank, &axis));
    int64_t outer = 1, len = 1, inner = 1;
    if (p->legacy_2d) {
        for (int d = 0; d < axis; d++) outer *= x->dims[d];
        for (int d = axis; d < x->rank; d++) len *= x->dims[d];
    } else {
        red_split_axis(x, axis, &outer, &len, &inner);
    }
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * len * inner + i;
            double mx = -INFINITY;
            int64_t arg = 0;
            for (int64_t j = 0; j < len; j++) {
                double v = kiln_load_f64(t, x->data, base + j * inner);
                if (v > mx || (isnan(v) && !isnan(mx))) {
                    mx = v;
                    arg = j;
                }
            }
            if (node->op == KILN_OP_Hardmax) {
                for (int64_t j = 0; j < len; j++) red_store_f64(t, y->data, base + j * inner, j == arg ? 1.0 : 0.0);
                continue;
            }
            if (node->op == KILN_OP_LogSoftmax) {
                double sum = 0.0;
                for (int64_t j = 0; j < len; j++) sum += exp(kiln_load_f64(t, x->data, base + j * inner) - mx);
                double lsum = log(sum);
                for (int64_t j = 0; j < len; j++)
                    red_store_f64(t, y->data, base + j * inner, kiln_load_f64(t, x->data, base + j * inner) - mx - lsum);
                continue;
            }
            double sum = 0.0;
            for (int64_t j = 0; j < len; j++)
                sum += red_round_to(t, exp(red_round_to(t, kiln_load_f64(t, x->data, base + j * inner) - mx)));
            sum = red_round_to(t, sum);
            for (int64_t j = 0; j < len; j++) {
                double v = red_round_to(t, kiln_load_f64(t, x->data, base + j * inner) - mx);
                red_store_f64(t, y->data, base + j * inner, red_round_to(t, exp(v)) / sum);
            }
        }
    }
    return KILN_STATUS_OK;
}
