/* scatter.c — parse and shape inference of ScatterElements, Scatter (its deprecated alias),
 * ScatterND (with reductions none/add/mul/max/min) and TensorScatter (a KV-cache update).
 * Kernels, with the range checks of the index values: src/backends/ref/scatter.c.
 * Tested by the node tests test_scatter_*, test_scatter_elements_*, test_scatternd*,
 * test_tensorscatter*. */
#include "shape_internal.h"

static kiln_status parse_reduction(kiln_node *node, kiln_attrs *attrs, kiln_scatter_reduction *out) {
    char r[16];
    KILN_TRY(kiln_attr_string(attrs, "reduction", "none", r, sizeof r));
    if (strcmp(r, "none") == 0) *out = KILN_SCATTER_NONE;
    else if (strcmp(r, "add") == 0) *out = KILN_SCATTER_ADD;
    else if (strcmp(r, "mul") == 0) *out = KILN_SCATTER_MUL;
    else if (strcmp(r, "max") == 0) *out = KILN_SCATTER_MAX;
    else if (strcmp(r, "min") == 0) *out = KILN_SCATTER_MIN;
    else return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute reduction = '%s' is not valid", r);
    return KILN_STATUS_OK;
}

kiln_status kiln_parse_scatter(kiln_node *node, kiln_attrs *attrs) {
    kiln_scatter_params *p;
    KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
    switch (node->op) {
    case KILN_OP_ScatterElements: /* https://onnx.ai/onnx/operators/onnx__ScatterElements.html */
    case KILN_OP_Scatter:         /* https://onnx.ai/onnx/operators/onnx__Scatter.html */
        KILN_TRY(kiln_node_check_arity(node, 3, 3));
        KILN_TRY(kiln_attr_int(attrs, "axis", 0, &p->axis));
        if (node->op == KILN_OP_ScatterElements) KILN_TRY(parse_reduction(node, attrs, &p->reduction));
        return KILN_STATUS_OK;
    case KILN_OP_ScatterND: /* https://onnx.ai/onnx/operators/onnx__ScatterND.html */
        KILN_TRY(kiln_node_check_arity(node, 3, 3));
        return parse_reduction(node, attrs, &p->reduction);
    default: { /* https://onnx.ai/onnx/operators/onnx__TensorScatter.html */
        KILN_TRY(kiln_node_check_arity(node, 2, 3));
        KILN_TRY(kiln_attr_int(attrs, "axis", -2, &p->axis));
        char mode[16];
        KILN_TRY(kiln_attr_string(attrs, "mode", "linear", mode, sizeof mode));
        if (strcmp(mode, "linear") != 0 && strcmp(mode, "circular") != 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute mode = '%s' is not linear or circular", mode);
        p->circular = mode[0] == 'c';
        return KILN_STATUS_OK;
    }
    }
}

static bool same_dims(const kiln_tensor *a, const kiln_tensor *b) {
    if (a->rank != b->rank) return false;
    for (int k = 0; k < a->rank; k++)
        if (a->dims[k] >= 0 && b->dims[k] >= 0 && a->dims[k] != b->dims[k]) return false;
    return true;
}

static kiln_status bad_shapes(const kiln_node *node, const char *what, kiln_tensor *const *in) {
    char a[160], b[160], c[160];
    return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s: data %s, indices %s, updates %s", what,
                           kiln_dims_str(in[0]->rank, in[0]->dims, a, sizeof a),
                           kiln_dims_str(in[1]->rank, in[1]->dims, b, sizeof b),
                           kiln_dims_str(in[2]->rank, in[2]->dims, c, sizeof c));
}

/* https://onnx.ai/onnx/operators/onnx__ScatterElements.html */
static kiln_status check_elements(const kiln_node *node, kiln_tensor *const *in) {
    const kiln_scatter_params *p = node->params;
    const kiln_tensor *x = in[0], *ind = in[1], *upd = in[2];
    int axis;
    if (x->rank == 0 || kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                               (long long)p->axis, x->rank);
    if (ind->rank != x->rank || !same_dims(ind, upd)) return bad_shapes(node, "indices and updates should match, with data's rank", in);
    for (int k = 0; k < x->rank; k++)
        if (k != axis && ind->dims[k] >= 0 && x->dims[k] >= 0 && ind->dims[k] > x->dims[k])
            return bad_shapes(node, "indices are larger than data off the axis", in);
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__ScatterND.html */
static kiln_status check_nd(const kiln_node *node, kiln_tensor *const *in) {
    const kiln_tensor *x = in[0], *ind = in[1], *upd = in[2];
    int r = x->rank, q = ind->rank;
    if (r < 1 || q < 1) return bad_shapes(node, "data and indices need a rank of 1 or more", in);
    int64_t m = ind->dims[q - 1];
    if (m < 0) return KILN_STATUS_OK;
    if (m > r) return bad_shapes(node, "indices' last dim is larger than data's rank", in);
    kiln_tensor want = {.rank = q - 1 + r - (int)m};
    if (want.rank > KILN_MAX_RANK) return bad_shapes(node, "updates would have too high a rank", in);
    for (int k = 0; k < q - 1; k++) want.dims[k] = ind->dims[k];
    for (int k = (int)m; k < r; k++) want.dims[q - 1 + k - (int)m] = x->dims[k];
    if (!same_dims(&want, upd)) return bad_shapes(node, "updates should have shape indices[:-1] + data[indices[-1]:]", in);
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__TensorScatter.html */
static kiln_status check_tensor_scatter(const kiln_node *node, kiln_tensor *const *in) {
    const kiln_scatter_params *p = node->params;
    const kiln_tensor *past = in[0], *upd = in[1], *wi = node->n_declared > 2 ? in[2] : NULL;
    int axis;
    char a[160], b[160];
    kiln_dims_str(past->rank, past->dims, a, sizeof a);
    kiln_dims_str(upd->rank, upd->dims, b, sizeof b);
    if (past->rank < 2 || kiln_norm_axis(p->axis, past->rank, &axis) != KILN_STATUS_OK || axis == 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is not valid for past_cache %s",
                               (long long)p->axis, a);
    if (upd->rank != past->rank)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "update %s and past_cache %s differ in rank", b, a);
    for (int k = 0; k < past->rank; k++) {
        int64_t u = upd->dims[k], c = past->dims[k];
        if (u >= 0 && c >= 0 && (k == axis ? u > c : u != c))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "update %s does not fit past_cache %s (axis %d)", b, a, axis);
    }
    if (wi) {
        if (wi->dtype != KILN_DTYPE_I64 && wi->dtype != KILN_DTYPE_UNDEFINED) return kiln_node_bad_dtype(node, 2, wi->dtype);
        if (wi->rank >= 0 && (wi->rank != 1 || (wi->dims[0] >= 0 && past->dims[0] >= 0 && wi->dims[0] != past->dims[0])))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "write_indices should have shape [batch] for past_cache %s", a);
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_scatter(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    bool ts = node->op == KILN_OP_TensorScatter;
    const kiln_tensor *x = in[0], *upd = in[ts ? 1 : 2];
    if (!x || !upd || (!ts && !in[1])) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "a required input is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, x->dtype));
    if (upd->dtype != x->dtype && upd->dtype != KILN_DTYPE_UNDEFINED && x->dtype != KILN_DTYPE_UNDEFINED)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "updates have dtype %s, data has %s",
                               kiln_dtype_name(upd->dtype), kiln_dtype_name(x->dtype));
    if (!ts) KILN_TRY(kiln_shape_check_index(node, 1, in[1]->dtype));
    kiln_shape_same_type(out, x);
    if (!kiln_infer_ranks_known(node, in)) return KILN_STATUS_OK;
    switch (node->op) {
    case KILN_OP_ScatterND: return check_nd(node, in);
    case KILN_OP_TensorScatter: return check_tensor_scatter(node, in);
    default: return check_elements(node, in);
    }
}
