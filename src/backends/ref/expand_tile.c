/* expand_tile.c — reference kernels of Expand (a strided copy with stride 0 on broadcast
 * axes) and Tile (output index modulo the input dims). Shapes come from src/ops/expand_tile.c.
 * Tested by test_expand*, test_tile*. */
#include "../../ops/shape_internal.h"

kiln_status kiln_ref_expand_tile(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    size_t es = kiln_dtype_size(x->dtype);
    if (node->op == KILN_OP_Expand) {
        int64_t strides[KILN_MAX_RANK];
        kiln_broadcast_strides(x->rank, x->dims, out->rank, out->dims, strides);
        kiln_shape_strided_copy(out->data, x->data, es, out->rank, out->dims, 0, strides);
        return KILN_STATUS_OK;
    }
    /* https://onnx.ai/onnx/operators/onnx__Tile.html */
    int r = x->rank;
    int64_t strides[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    kiln_contiguous_strides(r, x->dims, strides);
    int64_t n = kiln_shape_count(out->rank, out->dims);
    for (int64_t i = 0; i < n; i++, kiln_shape_next_index(r, out->dims, idx)) {
        int64_t off = 0;
        for (int k = 0; k < r; k++) off += (idx[k] % x->dims[k]) * strides[k];
        kiln_shape_copy_elem(out->data, i, x->data, off, es);
    }
    return KILN_STATUS_OK;
}
