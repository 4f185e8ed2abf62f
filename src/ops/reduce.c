/* reduce.c — parse and shape inference of the Reduce* ops: ReduceSum ReduceMean ReduceMax
 * ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceSumSquare
 * (https://onnx.ai/onnx/operators/onnx__ReduceSum.html and the pages beside it).
 * The axes are an attribute before opset 13 (ReduceSum) or 18 (the others) and input 1 after;
 * no axes means all axes, unless noop_with_empty_axes, which reduces none (each output element
 * then "reduces" one input element: ReduceSumSquare squares, as in onnx's reference).
 * keepdims (default 1) keeps reduced axes as size 1. The kernel is src/backends/ref/reduce.c.
 * Tested by the node tests test_reduce_*. */
#include "reduce_internal.h"

kiln_status kiln_parse_reduce(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_reduce_params, p);
    int64_t keepdims, noop;
    KILN_TRY(kiln_attr_int(attrs, "keepdims", 1, &keepdims));
    KILN_TRY(kiln_attr_int(attrs, "noop_with_empty_axes", 0, &noop));
    p->keepdims = keepdims != 0;
    p->noop_with_empty_axes = noop != 0;
    p->axes_from_input = node->op == KILN_OP_ReduceSum ? node->opset >= 13 : node->opset >= 18;
    if (!p->axes_from_input) KILN_TRY(kiln_attr_ints_fixed(attrs, "axes", p->axes, KILN_MAX_RANK, &p->n_axes));
    return KILN_STATUS_OK;
}

/* The set of reduced axes of the node for input x of known rank. *known is false when the axes
 * come from an input whose values are not known yet. */
kiln_status red_reduce_mask(const kiln_node *node, kiln_tensor *const *in, bool mask[KILN_MAX_RANK], bool *known) {
    const red_reduce_params *p = node->params;
    const kiln_tensor *x = in[0];
    int64_t axes[KILN_MAX_RANK];
    int n = 0;
    *known = true;
    if (p->axes_from_input && red_has_input(node, in, 1)) {
        const kiln_tensor *a = in[1];
        if (a->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 1, a->dtype);
        if (a->rank > 1) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axes must be 1-D, it has rank %d", a->rank);
        if (!a->data) {
            *known = false;
            return KILN_STATUS_OK;
        }
        int64_t cnt = kiln_shape_count(a->rank, a->dims);
        if (cnt > x->rank)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%lld axes given for an input of rank %d",
                                   (long long)cnt, x->rank);
        n = (int)cnt;
        for (int i = 0; i < n; i++) axes[i] = ((const int64_t *)a->data)[i];
    } else if (!p->axes_from_input) {
        n = p->n_axes;
        memcpy(axes, p->axes, sizeof(int64_t) * (size_t)n);
    }
    for (int d = 0; d < KILN_MAX_RANK; d++) mask[d] = n == 0 && !p->noop_with_empty_axes && d < x->rank;
    for (int i = 0; i < n; i++) {
        int ax;
        if (kiln_norm_axis(axes[i], x->rank, &ax) != KILN_STATUS_OK)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                                   (long long)axes[i], x->rank);
        if (mask[ax])
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is repeated", (long long)axes[i]);
        mask[ax] = true;
    }
    return KILN_STATUS_OK;
}

static bool reduce_dtype_ok(const kiln_node *node, kiln_dtype t) {
    if (kiln_dtype_is_float(t)) return true;
    if (t == KILN_DTYPE_BOOL) return node->op == KILN_OP_ReduceMax || node->op == KILN_OP_ReduceMin;
    if (!kiln_dtype_is_int(t)) return false;
    /* Opset 28 removed the integer types of ReduceLogSum and ReduceLogSumExp. */
    if ((node->op == KILN_OP_ReduceLogSum || node->op == KILN_OP_ReduceLogSumExp) && node->opset >= 28) return false;
    return true;
}

kiln_status kiln_infer_reduce(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_reduce_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 1, p->axes_from_input ? 2 : 1));
    KILN_TRY(red_need_input(node, in, 0, "data"));
    const kiln_tensor *x = in[0];
    if (!reduce_dtype_ok(node, x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = x->dtype;
    if (x->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    bool mask[KILN_MAX_RANK], known;
    KILN_TRY(red_reduce_mask(node, in, mask, &known));
    if (!known) {
        /* Axes not known yet: the rank is known with keepdims, or from the count of axes. */
        const kiln_tensor *a = in[1];
        int rank = -1;
        if (p->keepdims) rank = x->rank;
        else if (a->rank == 1 && a->dims[0] == 0) rank = p->noop_with_empty_axes ? x->rank : 0;
        else if (a->rank == 1 && a->dims[0] > 0 && a->dims[0] <= x->rank) rank = x->rank - (int)a->dims[0];
        out[0].rank = rank;
        for (int d = 0; d < rank; d++) out[0].dims[d] = KILN_DIM_UNKNOWN;
        if (rank == x->rank && !p->keepdims) red_copy_shape(&out[0], x); /* noop */
        return KILN_STATUS_OK;
    }
    int r = 0;
    for (int d = 0; d < x->rank; d++) {
        if (!mask[d]) out[0].dims[r++] = x->dims[d];
        else if (p->keepdims) out[0].dims[r++] = 1;
    }
    out[0].rank = r;
    return KILN_STATUS_OK;
}
