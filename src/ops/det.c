/* det.c — parse and shape inference of Det (https://onnx.ai/onnx/operators/onnx__Det.html).
 * Input [*, M, M] of a float type; output [*], the determinant of each square matrix.
 * No attributes. The kernel is src/backends/ref/det.c. Tested by the node tests test_det*. */
#include "reduce_internal.h"

kiln_status kiln_parse_det(kiln_node *node, kiln_attrs *attrs) { return KILN_STATUS_OK; }

kiln_status kiln_infer_det(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    KILN_TRY(red_need_input(node, in, 0, "X"));
    const kiln_tensor *x = in[0];
    if (!kiln_dtype_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = x->dtype;
    if (x->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char b[96];
    int64_t m0 = x->rank >= 2 ? x->dims[x->rank - 2] : 0, m1 = x->rank >= 2 ? x->dims[x->rank - 1] : 0;
    if (x->rank < 2 || (kiln_dim_known(m0) && kiln_dim_known(m1) && m0 != m1))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %s is not a batch of square matrices [*, M, M]",
                               kiln_dims_str(x->rank, x->dims, b, sizeof b));
    out[0].rank = x->rank - 2;
    for (int d = 0; d < x->rank - 2; d++) out[0].dims[d] = x->dims[d];
    return KILN_STATUS_OK;
}
