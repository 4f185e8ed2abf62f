/* expand_tile.c — parse and shape inference of Expand (numpy broadcast to a shape given as a
 * value) and Tile (repeat along each axis). Kernels: src/backends/ref/expand_tile.c.
 * Tested by the node tests test_expand*, test_tile*. */
#include "shape_internal.h"

kiln_status kiln_parse_expand_tile(kiln_node *node, kiln_attrs *attrs) {
    /* https://onnx.ai/onnx/operators/onnx__Expand.html, https://onnx.ai/onnx/operators/onnx__Tile.html */
    return kiln_node_check_arity(node, 2, 2);
}

/* https://onnx.ai/onnx/operators/onnx__Expand.html */
static kiln_status infer_expand(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *shape, kiln_tensor *out) {
    if (!kiln_shape_has_data(shape)) {
        int n = shape->rank == 1 && shape->dims[0] >= 0 && shape->dims[0] <= KILN_MAX_RANK ? (int)shape->dims[0] : -1;
        if (n < 0 || x->rank < 0) return KILN_STATUS_OK;
        int r = n > x->rank ? n : x->rank;
        kiln_shape_unknown_dims(out, x->dtype, r);
        for (int i = 0; i < x->rank; i++) { /* a known dim other than 1 survives any broadcast */
            int64_t d = x->dims[i];
            if (d >= 0 && d != 1) out->dims[r - x->rank + i] = d;
        }
        return KILN_STATUS_OK;
    }
    int64_t want[KILN_MAX_RANK];
    int n;
    KILN_TRY(kiln_shape_read_ints(node, shape, "shape", want, KILN_MAX_RANK, &n));
    for (int i = 0; i < n; i++)
        if (want[i] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "shape[%d] = %lld is negative", i, (long long)want[i]);
    if (x->rank < 0) return KILN_STATUS_OK; /* the rank is at least n, but not known */
    if (kiln_broadcast_shape(x->rank, x->dims, n, want, &out->rank, out->dims) != KILN_STATUS_OK) {
        char a[160], b[160];
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot expand %s to %s",
                               kiln_dims_str(x->rank, x->dims, a, sizeof a), kiln_dims_str(n, want, b, sizeof b));
    }
    return kiln_shape_check_size(node, out);
}

/* https://onnx.ai/onnx/operators/onnx__Tile.html */
static kiln_status infer_tile(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *rep, kiln_tensor *out) {
    if (x->rank < 0) return KILN_STATUS_OK;
    kiln_shape_unknown_dims(out, x->dtype, x->rank);
    if (!kiln_shape_has_data(rep)) return KILN_STATUS_OK;
    int64_t r[KILN_MAX_RANK];
    int n;
    KILN_TRY(kiln_shape_read_ints(node, rep, "repeats", r, KILN_MAX_RANK, &n));
    if (n != x->rank)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "repeats has %d values for an input of rank %d", n, x->rank);
    for (int i = 0; i < n; i++) {
        if (r[i] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "repeats[%d] = %lld is negative", i, (long long)r[i]);
        int64_t d = x->dims[i];
        if (r[i] == 1) out->dims[i] = d;
        else if (d >= 0 && __builtin_mul_overflow(d, r[i], &out->dims[i]))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "dim %d (%lld) times %lld repeats overflows", i,
                                   (long long)d, (long long)r[i]);
        else if (d < 0) out->dims[i] = r[i] == 0 ? 0 : KILN_DIM_UNKNOWN;
    }
    return kiln_shape_check_size(node, out);
}

kiln_status kiln_infer_expand_tile(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0], *v = in[1];
    if (!x || !v) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "a required input is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, x->dtype));
    KILN_TRY(kiln_shape_check_index(node, 1, v->dtype));
    out->dtype = x->dtype;
    if (node->op == KILN_OP_Expand) return infer_expand(node, x, v, out);
    return infer_tile(node, x, v, out);
}
