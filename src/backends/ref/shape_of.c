/* shape_of.c — reference kernels of Shape and Size: they read only the input's shape.
 * Tested by test_shape*, test_size*. */
#include "../../ops/shape_internal.h"

kiln_status kiln_ref_shape_of(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t *o = out->data;
    if (node->op == KILN_OP_Size) {
        o[0] = kiln_shape_count(x->rank, x->dims);
        return KILN_STATUS_OK;
    }
    int64_t s, e;
    kiln_shape_of_range(node, x->rank, &s, &e);
    for (int64_t i = s; i < e; i++) o[i - s] = x->dims[i];
    return KILN_STATUS_OK;
}
