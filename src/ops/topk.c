/* topk.c — parse and shape inference of TopK (https://onnx.ai/onnx/operators/onnx__TopK.html).
 * k is an attribute before opset 10 and input 1 (int64, one value) after; axis (default -1);
 * from opset 11 largest (default 1) and sorted (default 1). Outputs: Values (input dtype) and
 * Indices (int64), the input's shape with dims[axis] = k (unknown until K is known).
 * The kernel is src/backends/ref/topk.c. Tested by the node tests test_top_k*. */
#include "reduce_internal.h"

kiln_status kiln_parse_topk(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_topk_params, p);
    int64_t largest, sorted;
    KILN_TRY(kiln_attr_int(attrs, "axis", -1, &p->axis));
    KILN_TRY(kiln_attr_int(attrs, "largest", 1, &largest));
    KILN_TRY(kiln_attr_int(attrs, "sorted", 1, &sorted));
    p->largest = largest != 0;
    p->sorted = sorted != 0;
    p->k_attr = -1;
    if (node->opset < 10) {
        if (!kiln_attr_has(attrs, "k"))
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'k' is required before opset 10");
        KILN_TRY(kiln_attr_int(attrs, "k", -1, &p->k_attr));
        if (p->k_attr < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'k' is %lld, expected >= 0",
                                   (long long)p->k_attr);
    }
    return KILN_STATUS_OK;
}

/* k of the node: the attribute, or input 1's value (*known false while its data is unknown). */
kiln_status red_topk_k(const kiln_node *node, kiln_tensor *const *in, int64_t *k, bool *known) {
    const red_topk_params *p = node->params;
    *known = true;
    if (node->opset < 10) {
        *k = p->k_attr;
        return KILN_STATUS_OK;
    }
    const kiln_tensor *kt = in[1];
    if (kt->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 1, kt->dtype);
    if (!kt->data) {
        *known = false;
        return KILN_STATUS_OK;
    }
    KILN_TRY(red_read_scalar_int(node, kt, "K", k));
    if (*k < 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "K is %lld, expected >= 0", (long long)*k);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_topk(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_topk_params *p = node->params;
    bool with_k_input = node->opset >= 10;
    KILN_TRY(kiln_node_check_arity(node, with_k_input ? 2 : 1, with_k_input ? 2 : 1));
    KILN_TRY(red_need_input(node, in, 0, "X"));
    if (with_k_input) KILN_TRY(red_need_input(node, in, 1, "K"));
    const kiln_tensor *x = in[0];
    if (!red_dtype_in(x->dtype, RED_T_NUM)) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = x->dtype;
    if (node->n_outputs > 1) out[1].dtype = KILN_DTYPE_I64;
    if (x->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    int axis;
    if (kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                               (long long)p->axis, x->rank);
    int64_t k = KILN_DIM_UNKNOWN;
    bool known;
    KILN_TRY(red_topk_k(node, in, &k, &known));
    if (!known) k = KILN_DIM_UNKNOWN;
    if (known && kiln_dim_known(x->dims[axis]) && k > x->dims[axis])
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "K = %lld exceeds the size %lld of axis %d",
                               (long long)k, (long long)x->dims[axis], axis);
    for (int j = 0; j < node->n_outputs && j < 2; j++) {
        red_copy_shape(&out[j], x);
        out[j].dims[axis] = k;
    }
    return KILN_STATUS_OK;
}
