/* concat_split.c — parse and shape inference of Concat and Split (joining inputs along an
 * axis, cutting one input along an axis). Kernels: src/backends/ref/concat_split.c.
 * Tested by the node tests test_concat*, test_split* (not test_split_to_sequence*, which is
 * the sequence group's). */
#include "shape_internal.h"

static void free_split_params(void *params) {
    kiln_split_params *p = params;
    if (p) free(p->split);
    free(p);
}

kiln_status kiln_parse_concat_split(kiln_node *node, kiln_attrs *attrs) {
    if (node->op == KILN_OP_Concat) { /* https://onnx.ai/onnx/operators/onnx__Concat.html */
        KILN_TRY(kiln_node_check_arity(node, 1, -1));
        kiln_axis_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        if (!kiln_attr_has(attrs, "axis"))
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'axis' is missing");
        p->has_axis = true;
        return kiln_attr_int(attrs, "axis", 0, &p->axis);
    }
    /* https://onnx.ai/onnx/operators/onnx__Split.html */
    kiln_split_params *p;
    KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
    node->params_free = free_split_params;
    p->n_split = -1;
    KILN_TRY(kiln_attr_int(attrs, "axis", 0, &p->axis));
    if (node->opset >= 18) KILN_TRY(kiln_attr_int(attrs, "num_outputs", 0, &p->num_outputs));
    if (node->opset < 13) {
        bool present;
        KILN_TRY(kiln_node_check_arity(node, 1, node->opset < 2 ? 2 : 1));
        KILN_TRY(kiln_attr_ints(attrs, "split", &p->split, &p->n_split, &present));
        if (!present) p->n_split = -1;
    } else {
        KILN_TRY(kiln_node_check_arity(node, 1, 2));
    }
    if (node->n_outputs < 1) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has no outputs");
    if (p->num_outputs < 0 || (p->num_outputs > 0 && p->num_outputs != node->n_outputs))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute num_outputs = %lld but the node has %d outputs",
                               (long long)p->num_outputs, node->n_outputs);
    if (p->n_split >= 0 && p->n_split != node->n_outputs)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute split has %d values but the node has %d outputs",
                               p->n_split, node->n_outputs);
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Concat.html */
static kiln_status infer_concat(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    int n = node->n_declared, r = -1;
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    for (int i = 0; i < n; i++) {
        if (!in[i]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input %d is missing", i);
        KILN_TRY(kiln_shape_check_dtype(node, i, in[i]->dtype));
        if (dt == KILN_DTYPE_UNDEFINED) dt = in[i]->dtype;
        else if (in[i]->dtype != KILN_DTYPE_UNDEFINED && in[i]->dtype != dt)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %d has dtype %s, input 0 has %s", i,
                                   kiln_dtype_name(in[i]->dtype), kiln_dtype_name(dt));
        if (r < 0) r = in[i]->rank;
    }
    out->dtype = dt;
    if (r < 0) return KILN_STATUS_OK;
    if (r == 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot concatenate scalars");
    int axis;
    if (kiln_norm_axis(p->axis, r, &axis) != KILN_STATUS_OK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                               (long long)p->axis, r);
    kiln_shape_unknown_dims(out, dt, r);
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        const kiln_tensor *x = in[i];
        if (x->rank < 0) { sum = KILN_DIM_UNKNOWN; continue; }
        char a[160], b[160];
        if (x->rank != r)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %d has shape %s, input 0 has %s", i,
                                   kiln_dims_str(x->rank, x->dims, a, sizeof a), kiln_dims_str(in[0]->rank, in[0]->dims, b, sizeof b));
        for (int k = 0; k < r; k++) {
            if (k == axis) continue;
            int64_t d = x->dims[k], o = out->dims[k];
            if (d >= 0 && o >= 0 && d != o)
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %d has shape %s, which differs from %s off axis %d",
                                       i, kiln_dims_str(x->rank, x->dims, a, sizeof a), kiln_dims_str(r, out->dims, b, sizeof b), axis);
            if (o == KILN_DIM_UNKNOWN || (o < 0 && d >= 0)) out->dims[k] = d;
        }
        if (sum >= 0 && x->dims[axis] >= 0) sum += x->dims[axis];
        else sum = KILN_DIM_UNKNOWN;
    }
    out->dims[axis] = n == 1 ? in[0]->dims[axis] : sum;
    return KILN_STATUS_OK;
}

/* The sizes of Split's outputs along its axis of size dim (known); false in *known when the
 * split input has no values yet. */
static kiln_status split_sizes(const kiln_node *node, kiln_tensor *const *in, int64_t dim, int64_t *sizes, bool *known) {
    const kiln_split_params *p = node->params;
    int m = node->n_outputs;
    const kiln_tensor *s = node->opset >= 13 && node->n_declared > 1 ? in[1] : NULL;
    *known = true;
    if (s) {
        KILN_TRY(kiln_shape_check_index(node, 1, s->dtype));
        if (!kiln_shape_has_data(s)) { *known = false; return KILN_STATUS_OK; }
        if (s->rank != 1 || s->dims[0] != m)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input 'split' should have %d values", m);
        for (int j = 0; j < m; j++) sizes[j] = kiln_load_i64(s->dtype, s->data, j);
    } else if (p->n_split >= 0) {
        for (int j = 0; j < m; j++) sizes[j] = p->split[j];
    } else {
        if (dim < 0) { *known = false; return KILN_STATUS_OK; }
        int64_t chunk = dim % m == 0 ? dim / m : dim / m + 1; /* uneven: the last chunk is smaller */
        for (int j = 0; j < m; j++) sizes[j] = chunk;
        sizes[m - 1] = dim - chunk * (m - 1);
        /* Only an error if it runs: an If branch not taken may hold such a Split (onnx's
         * expanded AffineGrid does), so without values it is left to the run. */
        if (sizes[m - 1] < 0 && !kiln_shape_has_data(in[0])) { *known = false; return KILN_STATUS_OK; }
        if (sizes[m - 1] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot split %lld elements into %d outputs",
                                   (long long)dim, m);
        return KILN_STATUS_OK;
    }
    int64_t sum = 0;
    for (int j = 0; j < m; j++) {
        if (sizes[j] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "split[%d] = %lld is negative", j, (long long)sizes[j]);
        if (__builtin_add_overflow(sum, sizes[j], &sum)) sum = INT64_MAX;
    }
    if (dim >= 0 && sum != dim)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "split sizes add up to %lld, the axis has %lld",
                               (long long)sum, (long long)dim);
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Split.html */
static kiln_status infer_split(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_split_params *p = node->params;
    const kiln_tensor *x = in[0];
    int m = node->n_outputs;
    if (!x) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, x->dtype));
    for (int j = 0; j < m; j++) out[j].dtype = x->dtype;
    if (x->rank < 0) return KILN_STATUS_OK;
    int axis;
    if (kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK || x->rank == 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                               (long long)p->axis, x->rank);
    int64_t sizes[64];
    bool known;
    if (m > 64) return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "more than 64 outputs");
    KILN_TRY(split_sizes(node, in, x->dims[axis], sizes, &known));
    for (int j = 0; j < m; j++) {
        kiln_shape_same_type(&out[j], x);
        out[j].dims[axis] = known ? sizes[j] : KILN_DIM_UNKNOWN;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_concat_split(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (node->op == KILN_OP_Concat) return infer_concat(node, in, out);
    return infer_split(node, in, out);
}
