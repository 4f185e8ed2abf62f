/* slice.c — reference kernel of Slice: a strided copy starting at the clamped starts with the
 * (possibly negative) steps, both resolved by kiln_slice_resolve (src/ops/slice.c).
 * Tested by test_slice*. */
#include "../../ops/shape_internal.h"

kiln_status kiln_ref_slice(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK], dims[KILN_MAX_RANK], strides[KILN_MAX_RANK];
    KILN_TRY(kiln_slice_resolve(node, in, start, step, dims));
    kiln_contiguous_strides(x->rank, x->dims, strides);
    int64_t offset = 0;
    for (int k = 0; k < x->rank; k++) {
        if (dims[k] == 0) return KILN_STATUS_OK;
        offset += start[k] * strides[k];
        strides[k] = dims[k] == 1 ? 0 : strides[k] * step[k]; /* |step| < dim here */
    }
    kiln_shape_strided_copy(out->data, x->data, kiln_dtype_size(x->dtype), x->rank, dims, offset, strides);
    return KILN_STATUS_OK;
}
