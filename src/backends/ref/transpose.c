/* transpose.c — reference kernels of Transpose, DepthToSpace and SpaceToDepth: each is a
 * strided copy; DepthToSpace/SpaceToDepth view the 4-D input as 6-D and permute it.
 * Shapes come from src/ops/transpose.c. Tested by test_transpose*, test_depthtospace*,
 * test_spacetodepth*. */
#include "../../ops/shape_internal.h"

/* out = transpose(x viewed with dims[rank]) by perm: out dim k is dims[perm[k]]. */
static void permute(const kiln_tensor *x, kiln_tensor *out, int rank, const int64_t *dims, const int *perm) {
    int64_t in_strides[KILN_MAX_RANK], out_dims[KILN_MAX_RANK], strides[KILN_MAX_RANK];
    kiln_contiguous_strides(rank, dims, in_strides);
    for (int k = 0; k < rank; k++) {
        out_dims[k] = dims[perm[k]];
        strides[k] = in_strides[perm[k]];
    }
    kiln_shape_strided_copy(out->data, x->data, kiln_dtype_size(x->dtype), rank, out_dims, 0, strides);
}

kiln_status kiln_ref_transpose(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    if (node->op == KILN_OP_Transpose) {
        const kiln_transpose_params *p = node->params;
        int perm[KILN_MAX_RANK];
        for (int i = 0; i < x->rank; i++) perm[i] = (int)(p->n_perm > 0 ? p->perm[i] : x->rank - 1 - i);
        permute(x, out, x->rank, x->dims, perm);
        return KILN_STATUS_OK;
    }
    const kiln_d2s_params *p = node->params;
    int64_t b = p->blocksize, n = x->dims[0], c = x->dims[1], h = x->dims[2], w = x->dims[3];
    if (node->op == KILN_OP_DepthToSpace) {
        /* DCR: (N, b, b, C', H, W) -> (N, C', H, b, W, b); CRD: (N, C', b, b, H, W) -> same. */
        int64_t cc = c / (b * b);
        if (p->crd) {
            int64_t dims[6] = {n, cc, b, b, h, w};
            permute(x, out, 6, dims, (const int[]){0, 1, 4, 2, 5, 3});
        } else {
            int64_t dims[6] = {n, b, b, cc, h, w};
            permute(x, out, 6, dims, (const int[]){0, 3, 4, 1, 5, 2});
        }
    } else {
        /* (N, C, H', b, W', b) -> DCR: (N, b, b, C, H', W'); CRD: (N, C, b, b, H', W'). */
        int64_t dims[6] = {n, c, h / b, b, w / b, b};
        if (p->crd) permute(x, out, 6, dims, (const int[]){0, 1, 3, 5, 2, 4});
        else permute(x, out, 6, dims, (const int[]){0, 3, 5, 1, 2, 4});
    }
    return KILN_STATUS_OK;
}
