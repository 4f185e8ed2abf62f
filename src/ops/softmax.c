/* softmax.c — parse and shape inference of Softmax, LogSoftmax and Hardmax
 * (https://onnx.ai/onnx/operators/onnx__Softmax.html and the LogSoftmax/Hardmax pages).
 * From opset 13 they work along one axis (default -1). Before, the input is coerced to 2-D
 * [prod(dims[:axis]), prod(dims[axis:])] (default axis 1) and they work along its rows.
 * The output has the input's shape and dtype (float types only).
 * The kernel is src/backends/ref/softmax.c. Tested by test_softmax*, test_logsoftmax*,
 * test_hardmax*. */
#include "reduce_internal.h"

kiln_status kiln_parse_softmax(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_softmax_params, p);
    p->legacy_2d = node->opset < 13;
    KILN_TRY(kiln_attr_int(attrs, "axis", p->legacy_2d ? 1 : -1, &p->axis));
    return KILN_STATUS_OK;
}

/* The normalised axis; legacy mode also accepts axis == rank (rows of one element). */
kiln_status red_softmax_axis(const kiln_node *node, int rank, int *axis) {
    const red_softmax_params *p = node->params;
    int64_t a = p->axis;
    if (p->legacy_2d && a == rank) {
        *axis = rank;
        return KILN_STATUS_OK;
    }
    if (kiln_norm_axis(a, rank, axis) != KILN_STATUS_OK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                               (long long)a, rank);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_softmax(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    KILN_TRY(red_need_input(node, in, 0, "input"));
    const kiln_tensor *x = in[0];
    if (!kiln_dtype_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = x->dtype;
    red_copy_shape(&out[0], x);
    if (x->rank < 0) return KILN_STATUS_OK;
    int axis;
    return red_softmax_axis(node, x->rank, &axis);
}
