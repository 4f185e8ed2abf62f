/* swiglu.c — parse and shape inference of SwiGLU (opset 28,
 * https://onnx.ai/onnx/operators/onnx__SwiGLU.html): Y = A * sigmoid(alpha * A) * B, A the gate
 * and B the value, of identical shapes (no broadcasting) and float dtype; attribute alpha
 * (default 1). The kernel is src/backends/ref/swiglu.c. Tested by the node tests test_swiglu*. */
#include "reduce_internal.h"

kiln_status kiln_parse_swiglu(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_swiglu_params, p);
    KILN_TRY(kiln_attr_float(attrs, "alpha", 1.0f, &p->alpha));
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_swiglu(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 2, 2));
    KILN_TRY(red_need_input(node, in, 0, "A"));
    KILN_TRY(red_need_input(node, in, 1, "B"));
    const kiln_tensor *a = in[0], *b = in[1];
    if (!kiln_dtype_is_float(a->dtype)) return kiln_node_bad_dtype(node, 0, a->dtype);
    if (b->dtype != a->dtype) return kiln_node_bad_dtype(node, 1, b->dtype);
    out[0].dtype = a->dtype;
    red_copy_shape(&out[0], a->rank >= 0 ? a : b);
    if (a->rank < 0 || b->rank < 0) return KILN_STATUS_OK;
    bool clash = a->rank != b->rank;
    for (int d = 0; !clash && d < a->rank; d++) {
        if (kiln_dim_known(a->dims[d]) && kiln_dim_known(b->dims[d]) && a->dims[d] != b->dims[d]) clash = true;
        if (!kiln_dim_known(a->dims[d])) out[0].dims[d] = b->dims[d];
    }
    char b1[96], b2[96];
    if (clash)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "A %s and B %s must have the same shape",
                               kiln_dims_str(a->rank, a->dims, b1, sizeof b1), kiln_dims_str(b->rank, b->dims, b2, sizeof b2));
    return KILN_STATUS_OK;
}
