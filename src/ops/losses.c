/* losses.c — parse and shape inference of NegativeLogLikelihoodLoss and
 * SoftmaxCrossEntropyLoss (https://onnx.ai/onnx/operators/onnx__NegativeLogLikelihoodLoss.html,
 * onnx__SoftmaxCrossEntropyLoss.html). Inputs: scores/log-probabilities [N, C, d1..dk], target
 * [N, d1..dk] (int32/int64), optional weight [C]. Attributes: reduction none/sum/mean (default
 * mean), ignore_index (optional). Output: [N, d1..dk] for none, a scalar otherwise;
 * SoftmaxCrossEntropyLoss also gives log_prob, the input's shape.
 * The kernel is src/backends/ref/losses.c. Tested by test_nllloss_*, test_sce_*. */
#include "reduce_internal.h"

kiln_status kiln_parse_losses(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_loss_params, p);
    char red[16];
    KILN_TRY(kiln_attr_string(attrs, "reduction", "mean", red, sizeof red));
    if (strcmp(red, "none") == 0) p->reduction = RED_REDUCTION_NONE;
    else if (strcmp(red, "sum") == 0) p->reduction = RED_REDUCTION_SUM;
    else if (strcmp(red, "mean") == 0) p->reduction = RED_REDUCTION_MEAN;
    else return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'reduction' is '%s', expected none, sum or mean", red);
    p->has_ignore_index = kiln_attr_has(attrs, "ignore_index");
    KILN_TRY(kiln_attr_int(attrs, "ignore_index", 0, &p->ignore_index));
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_losses(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_loss_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 2, 3));
    KILN_TRY(red_need_input(node, in, 0, "input"));
    KILN_TRY(red_need_input(node, in, 1, "target"));
    const kiln_tensor *x = in[0], *t = in[1];
    const kiln_tensor *w = red_has_input(node, in, 2) ? in[2] : NULL;
    if (!kiln_dtype_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (t->dtype != KILN_DTYPE_I32 && t->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 1, t->dtype);
    if (w && w->dtype != x->dtype) return kiln_node_bad_dtype(node, 2, w->dtype);
    for (int j = 0; j < node->n_outputs; j++) out[j].dtype = x->dtype;
    if (node->n_outputs > 1) red_copy_shape(&out[1], x);
    if (p->reduction != RED_REDUCTION_NONE) out[0].rank = 0;
    else red_copy_shape(&out[0], t);
    if (x->rank < 0 || t->rank < 0) return KILN_STATUS_OK;
    char b1[96], b2[96];
    bool bad = x->rank < 2 || t->rank != x->rank - 1;
    for (int d = 0; !bad && d < t->rank; d++) {
        int64_t a = x->dims[d == 0 ? 0 : d + 1], b = t->dims[d];
        if (kiln_dim_known(a) && kiln_dim_known(b) && a != b) bad = true;
    }
    if (bad)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %s and target %s do not match [N, C, d...] and [N, d...]",
                               kiln_dims_str(x->rank, x->dims, b1, sizeof b1), kiln_dims_str(t->rank, t->dims, b2, sizeof b2));
    if (w && w->rank >= 0 && (w->rank != 1 || (kiln_dim_known(w->dims[0]) && kiln_dim_known(x->dims[1]) && w->dims[0] != x->dims[1])))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "weight %s must be [C] for input %s",
                               kiln_dims_str(w->rank, w->dims, b1, sizeof b1), kiln_dims_str(x->rank, x->dims, b2, sizeof b2));
    if (p->reduction == RED_REDUCTION_NONE) {
        /* Prefer the input's dims where the target's are unknown. */
        out[0].dims[0] = x->dims[0];
        for (int d = 1; d < t->rank; d++) out[0].dims[d] = kiln_dim_known(t->dims[d]) ? t->dims[d] : x->dims[d + 1];
    }
    return KILN_STATUS_OK;
}
