/* transpose.c — parse and shape inference of Transpose, DepthToSpace and SpaceToDepth (the
 * last two are fixed 6-D transposes of a 4-D tensor). Kernels: src/backends/ref/transpose.c.
 * Tested by the node tests test_transpose*, test_depthtospace*, test_spacetodepth*. */
#include "shape_internal.h"

kiln_status kiln_parse_transpose(kiln_node *node, kiln_attrs *attrs) {
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    if (node->op == KILN_OP_Transpose) { /* https://onnx.ai/onnx/operators/onnx__Transpose.html */
        kiln_transpose_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        return kiln_attr_ints_fixed(attrs, "perm", p->perm, KILN_MAX_RANK, &p->n_perm);
    }
    /* https://onnx.ai/onnx/operators/onnx__DepthToSpace.html
     * https://onnx.ai/onnx/operators/onnx__SpaceToDepth.html */
    kiln_d2s_params *p;
    KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
    if (!kiln_attr_has(attrs, "blocksize"))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'blocksize' is missing");
    KILN_TRY(kiln_attr_int(attrs, "blocksize", 0, &p->blocksize));
    if (p->blocksize <= 0 || p->blocksize > (1 << 20))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute blocksize = %lld is not valid",
                               (long long)p->blocksize);
    char mode[8];
    KILN_TRY(kiln_attr_string(attrs, "mode", "DCR", mode, sizeof mode));
    if (strcmp(mode, "DCR") != 0 && strcmp(mode, "CRD") != 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute mode = '%s' is not DCR or CRD", mode);
    p->crd = mode[0] == 'C';
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Transpose.html */
static kiln_status infer_transpose(const kiln_node *node, const kiln_tensor *x, kiln_tensor *out) {
    const kiln_transpose_params *p = node->params;
    if (x->rank < 0) {
        if (p->n_perm > 0) kiln_shape_unknown_dims(out, x->dtype, p->n_perm);
        return KILN_STATUS_OK;
    }
    int r = x->rank;
    if (p->n_perm > 0 && p->n_perm != r)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "perm has %d values for an input of rank %d",
                               p->n_perm, r);
    bool seen[KILN_MAX_RANK] = {0};
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int64_t a = p->n_perm > 0 ? p->perm[i] : r - 1 - i;
        if (a < 0 || a >= r || seen[a])
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "perm is not a permutation of 0..%d", r - 1);
        seen[a] = true;
        out->dims[i] = x->dims[a];
    }
    return KILN_STATUS_OK;
}

/* b * d, or unknown. */
static int64_t times(int64_t d, int64_t b) {
    return d >= 0 && d <= INT64_MAX / b ? d * b : KILN_DIM_UNKNOWN;
}

/* https://onnx.ai/onnx/operators/onnx__DepthToSpace.html (and SpaceToDepth) */
static kiln_status infer_d2s(const kiln_node *node, const kiln_tensor *x, kiln_tensor *out) {
    const kiln_d2s_params *p = node->params;
    int64_t b = p->blocksize, bb = b * b;
    kiln_shape_unknown_dims(out, x->dtype, 4);
    if (x->rank < 0) return KILN_STATUS_OK;
    char s[160];
    if (x->rank != 4)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input should be 4-D (N, C, H, W), got %s",
                               kiln_dims_str(x->rank, x->dims, s, sizeof s));
    const int64_t *d = x->dims;
    out->dims[0] = d[0];
    if (node->op == KILN_OP_DepthToSpace) {
        if (d[1] >= 0 && d[1] % bb != 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "channels of %s are not a multiple of blocksize^2 = %lld",
                                   kiln_dims_str(4, d, s, sizeof s), (long long)bb);
        out->dims[1] = d[1] >= 0 ? d[1] / bb : KILN_DIM_UNKNOWN;
        out->dims[2] = times(d[2], b);
        out->dims[3] = times(d[3], b);
    } else {
        for (int i = 2; i < 4; i++)
            if (d[i] >= 0 && d[i] % b != 0)
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "spatial dims of %s are not multiples of blocksize %lld",
                                       kiln_dims_str(4, d, s, sizeof s), (long long)b);
        out->dims[1] = times(d[1], bb);
        out->dims[2] = d[2] >= 0 ? d[2] / b : KILN_DIM_UNKNOWN;
        out->dims[3] = d[3] >= 0 ? d[3] / b : KILN_DIM_UNKNOWN;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_transpose(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (!in[0]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, in[0]->dtype));
    out->dtype = in[0]->dtype;
    if (node->op == KILN_OP_Transpose) return infer_transpose(node, in[0], out);
    return infer_d2s(node, in[0], out);
}
