/* gather.c — parse and shape inference of Gather, GatherElements and GatherND (reads of data
 * at int32/int64 indices; negative indices count from the end). Kernels, with the range
 * checks of the index values: src/backends/ref/gather.c.
 * Tested by the node tests test_gather_*, test_gather_elements_*, test_gathernd_*. */
#include "shape_internal.h"

kiln_status kiln_parse_gather(kiln_node *node, kiln_attrs *attrs) {
    KILN_TRY(kiln_node_check_arity(node, 2, 2));
    if (node->op == KILN_OP_GatherND) { /* https://onnx.ai/onnx/operators/onnx__GatherND.html */
        kiln_gathernd_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        KILN_TRY(kiln_attr_int(attrs, "batch_dims", 0, &p->batch_dims));
        if (p->batch_dims < 0 || p->batch_dims >= KILN_MAX_RANK)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute batch_dims = %lld is not valid",
                                   (long long)p->batch_dims);
        return KILN_STATUS_OK;
    }
    /* https://onnx.ai/onnx/operators/onnx__Gather.html
     * https://onnx.ai/onnx/operators/onnx__GatherElements.html */
    kiln_axis_params *p;
    KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
    p->has_axis = true;
    return kiln_attr_int(attrs, "axis", 0, &p->axis);
}

static kiln_status bad_axis(const kiln_node *node, int64_t axis, int rank) {
    return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for data of rank %d",
                           (long long)axis, rank);
}

/* https://onnx.ai/onnx/operators/onnx__Gather.html */
static kiln_status infer_gather(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *ind, kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    if (x->rank < 0 || ind->rank < 0) return KILN_STATUS_OK;
    int axis;
    if (x->rank == 0 || kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK) return bad_axis(node, p->axis, x->rank);
    int r = x->rank - 1 + ind->rank;
    if (r > KILN_MAX_RANK)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "output rank %d is above kiln's limit of %d", r, KILN_MAX_RANK);
    out->rank = 0;
    for (int k = 0; k < axis; k++) out->dims[out->rank++] = x->dims[k];
    for (int k = 0; k < ind->rank; k++) out->dims[out->rank++] = ind->dims[k];
    for (int k = axis + 1; k < x->rank; k++) out->dims[out->rank++] = x->dims[k];
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__GatherElements.html */
static kiln_status infer_gather_elements(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *ind,
                                         kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    if (ind->rank >= 0) kiln_shape_same_type(out, ind);
    out->dtype = x->dtype;
    if (x->rank < 0 || ind->rank < 0) return KILN_STATUS_OK;
    int axis;
    if (x->rank == 0 || kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK) return bad_axis(node, p->axis, x->rank);
    char a[160], b[160];
    if (ind->rank != x->rank)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "indices %s and data %s have different ranks",
                               kiln_dims_str(ind->rank, ind->dims, a, sizeof a), kiln_dims_str(x->rank, x->dims, b, sizeof b));
    for (int k = 0; k < x->rank; k++)
        if (k != axis && ind->dims[k] >= 0 && x->dims[k] >= 0 && ind->dims[k] > x->dims[k])
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "indices %s are larger than data %s off axis %d",
                                   kiln_dims_str(ind->rank, ind->dims, a, sizeof a), kiln_dims_str(x->rank, x->dims, b, sizeof b),
                                   axis);
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__GatherND.html */
static kiln_status infer_gather_nd(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *ind, kiln_tensor *out) {
    const kiln_gathernd_params *p = node->params;
    if (x->rank < 0 || ind->rank < 0) return KILN_STATUS_OK;
    int b = (int)p->batch_dims, r = x->rank, q = ind->rank;
    char s1[160], s2[160];
    kiln_dims_str(r, x->dims, s1, sizeof s1);
    kiln_dims_str(q, ind->dims, s2, sizeof s2);
    if (r < 1 || q < 1 || b >= r || b >= q)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "batch_dims %d does not fit data %s and indices %s", b, s1, s2);
    int64_t m = ind->dims[q - 1];
    if (m < 0) return KILN_STATUS_OK; /* the output rank depends on it */
    if (b + m > r)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "indices %s index more dims than data %s has (batch_dims %d)",
                               s2, s1, b);
    for (int k = 0; k < b; k++)
        if (x->dims[k] >= 0 && ind->dims[k] >= 0 && x->dims[k] != ind->dims[k])
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "batch dims of data %s and indices %s differ", s1, s2);
    int rank = q - 1 + r - b - (int)m;
    if (rank > KILN_MAX_RANK)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "output rank %d is above kiln's limit of %d", rank, KILN_MAX_RANK);
    out->rank = 0;
    for (int k = 0; k < q - 1; k++) out->dims[out->rank++] = ind->dims[k];
    for (int k = b + (int)m; k < r; k++) out->dims[out->rank++] = x->dims[k];
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_gather(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0], *ind = in[1];
    if (!x || !ind) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "a required input is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, x->dtype));
    KILN_TRY(kiln_shape_check_index(node, 1, ind->dtype));
    out->dtype = x->dtype;
    switch (node->op) {
    case KILN_OP_Gather: return infer_gather(node, x, ind, out);
    case KILN_OP_GatherElements: return infer_gather_elements(node, x, ind, out);
    default: return infer_gather_nd(node, x, ind, out);
    }
}
