/* losses.c — reference kernels of NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss
 * (parse and infer in src/ops/losses.c), in double. SoftmaxCrossEntropyLoss first takes the
 * log-softmax along axis 1 (its log_prob output), then both compute, per (n, d1..dk) with
 * target c: loss = -w[c] * x[n, c, d...], w = weight or 1, and 0 with w = 0 where c equals
 * ignore_index. sum adds the losses, mean divides that sum by the sum of the w (the count of
 * non-ignored elements without weights). A target outside [0, C) that is not ignored is a
 * RUNTIME_ERROR naming the value. Tested by test_nllloss_*, test_sce_*. */
#include "../../ops/reduce_internal.h"

kiln_status kiln_ref_losses(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_loss_params *p = node->params;
    const kiln_tensor *x = in[0], *tg = in[1];
    const kiln_tensor *w = red_has_input(node, in, 2) ? in[2] : NULL;
    kiln_dtype t = x->dtype;
    int64_t N = x->dims[0], C = x->dims[1], D = 1;
    for (int d = 2; d < x->rank; d++) D *= x->dims[d];
    int64_t n_x;
    double *lp = red_load_all_f64(x, &n_x);
    if (!lp) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");

    if (node->op == KILN_OP_SoftmaxCrossEntropyLoss) {
        /* log_softmax along C, in place */
        for (int64_t n = 0; n < N; n++) {
            for (int64_t d = 0; d < D; d++) {
                double mx = -INFINITY, sum = 0.0;
                for (int64_t c = 0; c < C; c++) mx = fmax(mx, lp[(n * C + c) * D + d]);
                for (int64_t c = 0; c < C; c++) sum += exp(lp[(n * C + c) * D + d] - mx);
                double lse = mx + log(sum);
                for (int64_t c = 0; c < C; c++) lp[(n * C + c) * D + d] -= lse;
            }
        }
        if (node->n_outputs > 1 && out[1].data)
            for (int64_t i = 0; i < n_x; i++) red_store_f64(t, out[1].data, i, lp[i]);
    }

    double total = 0.0, wsum = 0.0;
    kiln_status s = KILN_STATUS_OK;
    for (int64_t n = 0; n < N && s == KILN_STATUS_OK; n++) {
        for (int64_t d = 0; d < D; d++) {
            int64_t i = n * D + d;
            int64_t c = kiln_load_i64(tg->dtype, tg->data, i);
            double loss = 0.0, wt = 0.0;
            if (!(p->has_ignore_index && c == p->ignore_index)) {
                if (c < 0 || c >= C) {
                    s = kiln_node_error(node, KILN_STATUS_RUNTIME_ERROR, "target value %lld at element %lld is outside [0, %lld)",
                                        (long long)c, (long long)i, (long long)C);
                    break;
                }
                wt = w ? kiln_load_f64(w->dtype, w->data, c) : 1.0;
                loss = -lp[(n * C + c) * D + d] * wt;
            }
            if (p->reduction == RED_REDUCTION_NONE) red_store_f64(t, out[0].data, i, loss);
            total += loss;
            wsum += wt;
        }
    }
    if (s == KILN_STATUS_OK && p->reduction == RED_REDUCTION_SUM) red_store_f64(t, out[0].data, 0, total);
    if (s == KILN_STATUS_OK && p->reduction == RED_REDUCTION_MEAN) red_store_f64(t, out[0].data, 0, total / wsum);
    free(lp);
    return s;
}
