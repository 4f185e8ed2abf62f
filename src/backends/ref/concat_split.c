/* concat_split.c — reference kernels of Concat and Split: for each index before the axis,
 * contiguous chunks are copied in or out. Shapes come from src/ops/concat_split.c.
 * Tested by test_concat*, test_split*. */
#include "../../ops/shape_internal.h"

/* Normalised axis of a tensor of rank r (checked by infer). */
static int axis_of(int64_t axis, int r) { return (int)(axis < 0 ? axis + r : axis); }

kiln_status kiln_ref_concat_split(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    size_t es = kiln_dtype_size(in[0]->dtype);
    if (node->op == KILN_OP_Concat) {
        const kiln_axis_params *p = node->params;
        int axis = axis_of(p->axis, out->rank);
        int64_t outer = kiln_shape_prod(out->dims, 0, axis), inner = kiln_shape_prod(out->dims, axis + 1, out->rank);
        char *dst = out->data;
        for (int64_t o = 0; o < outer; o++)
            for (int i = 0; i < node->n_declared; i++) {
                size_t chunk = (size_t)(in[i]->dims[axis] * inner) * es;
                if (chunk) memcpy(dst, (const char *)in[i]->data + (size_t)o * chunk, chunk);
                dst += chunk;
            }
        return KILN_STATUS_OK;
    }
    const kiln_split_params *p = node->params;
    const kiln_tensor *x = in[0];
    int axis = axis_of(p->axis, x->rank);
    int64_t outer = kiln_shape_prod(x->dims, 0, axis), inner = kiln_shape_prod(x->dims, axis + 1, x->rank);
    size_t row = (size_t)(x->dims[axis] * inner) * es; /* one outer index of the input */
    size_t off = 0;
    for (int j = 0; j < node->n_outputs; j++) {
        size_t chunk = (size_t)(out[j].dims[axis] * inner) * es;
        for (int64_t o = 0; o < outer && chunk; o++)
            memcpy((char *)out[j].data + (size_t)o * chunk, (const char *)x->data + (size_t)o * row + off, chunk);
        off += chunk;
    }
    return KILN_STATUS_OK;
}
