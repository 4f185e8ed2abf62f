/* select.c — parse and shape inference of the ops whose output size depends on the values:
 * NonZero, Compress and Unique. Inference gives the ranks and every size it can tell (Compress
 * knows its size when the condition is known); the kernels in src/backends/ref/select.c
 * allocate the outputs. Tested by the node tests test_nonzero*, test_compress*, test_unique*. */
#include "shape_internal.h"

kiln_status kiln_parse_select(kiln_node *node, kiln_attrs *attrs) {
    switch (node->op) {
    case KILN_OP_NonZero: /* https://onnx.ai/onnx/operators/onnx__NonZero.html */
        return kiln_node_check_arity(node, 1, 1);
    case KILN_OP_Compress: { /* https://onnx.ai/onnx/operators/onnx__Compress.html */
        KILN_TRY(kiln_node_check_arity(node, 2, 2));
        kiln_axis_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        p->has_axis = kiln_attr_has(attrs, "axis");
        return kiln_attr_int(attrs, "axis", 0, &p->axis);
    }
    default: { /* Unique, https://onnx.ai/onnx/operators/onnx__Unique.html */
        KILN_TRY(kiln_node_check_arity(node, 1, 1));
        if (node->n_outputs < 1 || node->n_outputs > 4)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d outputs, expected 1 to 4", node->n_outputs);
        kiln_unique_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        int64_t sorted;
        p->has_axis = kiln_attr_has(attrs, "axis");
        KILN_TRY(kiln_attr_int(attrs, "axis", 0, &p->axis));
        KILN_TRY(kiln_attr_int(attrs, "sorted", 1, &sorted));
        p->sorted = sorted != 0;
        return KILN_STATUS_OK;
    }
    }
}

kiln_status kiln_compress_count(const kiln_node *node, const kiln_tensor *cond, int64_t dim, int64_t *count) {
    int64_t n = cond->dims[0], c = 0;
    const uint8_t *b = cond->data;
    for (int64_t i = 0; i < n; i++) {
        if (!b[i]) continue;
        if (i >= dim)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "condition is true at %lld, beyond the %lld selectable slices",
                                   (long long)i, (long long)dim);
        c++;
    }
    *count = c;
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Compress.html */
static kiln_status infer_compress(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    const kiln_tensor *x = in[0], *cond = in[1];
    if (!cond) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 'condition' is missing");
    if (cond->dtype != KILN_DTYPE_BOOL && cond->dtype != KILN_DTYPE_UNDEFINED) return kiln_node_bad_dtype(node, 1, cond->dtype);
    if (cond->rank >= 0 && cond->rank != 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "condition should be 1-D, it has rank %d", cond->rank);
    int64_t dim;
    int axis = 0;
    if (!p->has_axis) {
        kiln_shape_unknown_dims(out, x->dtype, 1);
        dim = x->rank < 0 ? KILN_DIM_UNKNOWN : kiln_shape_count(x->rank, x->dims);
    } else {
        if (x->rank < 0) return KILN_STATUS_OK;
        if (x->rank == 0 || kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                                   (long long)p->axis, x->rank);
        kiln_shape_same_type(out, x);
        out->dims[axis] = KILN_DIM_UNKNOWN;
        dim = x->dims[axis];
    }
    if (dim >= 0 && kiln_shape_has_data(cond)) KILN_TRY(kiln_compress_count(node, cond, dim, &out->dims[axis]));
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_select(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    if (!x) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, x->dtype));
    if (node->op == KILN_OP_NonZero) {
        kiln_shape_unknown_dims(out, KILN_DTYPE_I64, 2);
        if (x->rank >= 0) out->dims[0] = x->rank;
        return KILN_STATUS_OK;
    }
    if (node->op == KILN_OP_Compress) return infer_compress(node, in, out);
    /* Unique: Y, indices, inverse_indices, counts */
    const kiln_unique_params *p = node->params;
    for (int j = 1; j < node->n_outputs; j++) kiln_shape_unknown_dims(&out[j], KILN_DTYPE_I64, 1);
    out[0].dtype = x->dtype;
    if (x->rank < 0) return KILN_STATUS_OK;
    int64_t n;
    if (p->has_axis) {
        int axis;
        if (x->rank == 0 || kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                                   (long long)p->axis, x->rank);
        kiln_shape_same_type(&out[0], x);
        out[0].dims[axis] = KILN_DIM_UNKNOWN;
        n = x->dims[axis];
    } else {
        kiln_shape_unknown_dims(&out[0], x->dtype, 1);
        n = kiln_shape_count(x->rank, x->dims);
    }
    if (node->n_outputs > 2) out[2].dims[0] = n;
    return KILN_STATUS_OK;
}
