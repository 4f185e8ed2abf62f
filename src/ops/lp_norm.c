/* lp_norm.c — parse and shape inference of LpNormalization
 * (https://onnx.ai/onnx/operators/onnx__LpNormalization.html: X divided by its L1 or L2 norm
 * along `axis`) and LRN (https://onnx.ai/onnx/operators/onnx__LRN.html: local response
 * normalization across channels of X (N, C, ...)). Y has X's type and shape.
 * Kernels in src/backends/ref/lp_norm.c. Tested by test_lpnormalization*, test_lrn*. */
#include "nn_internal.h"

kiln_status kiln_parse_lp_norm(kiln_node *node, kiln_attrs *attrs) {
    kiln_norm_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    if (node->op == KILN_OP_LpNormalization) {
        KILN_TRY(kiln_attr_int(attrs, "axis", -1, &p->axis));
        KILN_TRY(kiln_attr_int(attrs, "p", 2, &p->p));
        if (p->p != 1 && p->p != 2)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute p = %lld is not 1 or 2", (long long)p->p);
        return KILN_STATUS_OK;
    }
    float alpha, beta, bias;
    KILN_TRY(kiln_attr_int(attrs, "size", 0, &p->size));
    if (p->size <= 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute size = %lld is not positive (it is required)",
                               (long long)p->size);
    KILN_TRY(kiln_attr_float(attrs, "alpha", 1e-4f, &alpha));
    KILN_TRY(kiln_attr_float(attrs, "beta", 0.75f, &beta));
    KILN_TRY(kiln_attr_float(attrs, "bias", 1.0f, &bias));
    p->alpha = alpha;
    p->beta = beta;
    p->bias = bias;
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_lp_norm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    const kiln_tensor *x = in[0];
    if (!kiln_nn_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = x->dtype;
    if (x->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char s1[160];
    int axis;
    if (node->op == KILN_OP_LpNormalization && (x->rank == 0 || kiln_norm_axis(p->axis, x->rank, &axis)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for X %s",
                               (long long)p->axis, kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
    if (node->op == KILN_OP_LRN && x->rank < 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s needs rank >= 2",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
    kiln_nn_same_type(&out[0], x);
    return KILN_STATUS_OK;
}
