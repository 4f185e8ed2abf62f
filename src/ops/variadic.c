/* variadic.c — parse and shape inference of Sum, Mean, Max and Min
 * (https://onnx.ai/onnx/operators/onnx__Sum.html and Mean, Max, Min): one or more inputs of one
 * dtype, multidirectional broadcasting to one output. No attributes. Sum and Mean take floats,
 * Max and Min any numeric dtype. The kernel is src/backends/ref/variadic.c.
 * Tested by the node tests test_sum_*, test_mean_*, test_max_*, test_min_*. */
#include "math_internal.h"

kiln_status kiln_parse_variadic(kiln_node *node, kiln_attrs *attrs) { return KILN_STATUS_OK; }

kiln_status kiln_infer_variadic(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 1, -1));
    int n = node->n_declared;
    unsigned classes = node->op == KILN_OP_Sum || node->op == KILN_OP_Mean ? MATH_T_FLOAT : MATH_T_NUM;
    for (int i = 0; i < n; i++)
        if (!in[i]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input %d is missing", i);
    out[0].dtype = in[0]->dtype;
    if (math_dtype_pending(node, in)) { /* the first known dtype, if any */
        for (int i = 0; i < n && out[0].dtype == KILN_DTYPE_UNDEFINED; i++) out[0].dtype = in[i]->dtype;
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    for (int i = 0; i < n; i++) {
        if (!math_dtype_in(in[i]->dtype, classes) || in[i]->dtype != in[0]->dtype)
            return kiln_node_bad_dtype(node, i, in[i]->dtype);
    }
    return math_broadcast_n(node, in, n, &out[0]);
}
