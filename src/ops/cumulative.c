/* cumulative.c — parse and shape inference of CumSum and CumProd
 * (https://onnx.ai/onnx/operators/onnx__CumSum.html, onnx__CumProd.html).
 * Input 1 is the axis (int32/int64 scalar); attributes exclusive and reverse (default 0).
 * The output has the input's shape and dtype. The kernel is src/backends/ref/cumulative.c.
 * Tested by the node tests test_cumsum*, test_cumprod*. */
#include "reduce_internal.h"

kiln_status kiln_parse_cumulative(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_cum_params, p);
    int64_t exclusive, reverse;
    KILN_TRY(kiln_attr_int(attrs, "exclusive", 0, &exclusive));
    KILN_TRY(kiln_attr_int(attrs, "reverse", 0, &reverse));
    p->exclusive = exclusive != 0;
    p->reverse = reverse != 0;
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_cumulative(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 2, 2));
    KILN_TRY(red_need_input(node, in, 0, "x"));
    KILN_TRY(red_need_input(node, in, 1, "axis"));
    const kiln_tensor *x = in[0];
    if (!red_dtype_in(x->dtype, RED_T_NUM)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (in[1]->dtype != KILN_DTYPE_I32 && in[1]->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 1, in[1]->dtype);
    out[0].dtype = x->dtype;
    red_copy_shape(&out[0], x);
    if (x->rank < 0 || !in[1]->data) return KILN_STATUS_OK;
    int64_t a = 0;
    int axis;
    KILN_TRY(red_read_scalar_int(node, in[1], "axis", &a));
    if (kiln_norm_axis(a, x->rank, &axis) != KILN_STATUS_OK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                               (long long)a, x->rank);
    return KILN_STATUS_OK;
}
