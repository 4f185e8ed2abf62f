/* argminmax.c — parse and shape inference of ArgMax and ArgMin
 * (https://onnx.ai/onnx/operators/onnx__ArgMax.html, onnx__ArgMin.html).
 * Attributes: axis (default 0), keepdims (default 1), select_last_index (opset 12, default 0).
 * The output is int64, the input's shape with axis reduced (kept as 1 with keepdims).
 * The kernel is src/backends/ref/argminmax.c. Tested by the node tests test_argmax*, test_argmin*. */
#include "reduce_internal.h"

kiln_status kiln_parse_argminmax(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_arg_params, p);
    int64_t keepdims, last;
    KILN_TRY(kiln_attr_int(attrs, "axis", 0, &p->axis));
    KILN_TRY(kiln_attr_int(attrs, "keepdims", 1, &keepdims));
    KILN_TRY(kiln_attr_int(attrs, "select_last_index", 0, &last));
    p->keepdims = keepdims != 0;
    p->select_last_index = last != 0;
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_argminmax(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_arg_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    KILN_TRY(red_need_input(node, in, 0, "data"));
    const kiln_tensor *x = in[0];
    if (!red_dtype_in(x->dtype, RED_T_NUM)) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = KILN_DTYPE_I64;
    if (x->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    int axis;
    if (kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                               (long long)p->axis, x->rank);
    if (x->dims[axis] == 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %d has size 0: no element to select", axis);
    int r = 0;
    for (int d = 0; d < x->rank; d++) {
        if (d != axis) out[0].dims[r++] = x->dims[d];
        else if (p->keepdims) out[0].dims[r++] = 1;
    }
    out[0].rank = r;
    return KILN_STATUS_OK;
}
