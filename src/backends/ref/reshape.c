/* reshape.c — reference kernel of Identity, Reshape, Flatten, Squeeze and Unsqueeze: the
 * elements are copied unchanged (row-major order is the same before and after); the shape
 * was set by kiln_infer_reshape (src/ops/reshape.c). Tested by the node tests of those ops. */
#include "../../ops/shape_internal.h"

kiln_status kiln_ref_reshape(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t n = kiln_shape_count(x->rank, x->dims);
    if (n != kiln_shape_count(out->rank, out->dims))
        return kiln_node_error(node, KILN_STATUS_INTERNAL, "output and input sizes differ");
    if (n > 0) memcpy(out->data, x->data, (size_t)n * kiln_dtype_size(x->dtype));
    return KILN_STATUS_OK;
}
