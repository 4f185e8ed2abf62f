/* shape_of.c — parse and shape inference of Shape (the input's dims as int64, the slice
 * [start, end) of them from opset 15) and Size (the element count as an int64 scalar). With
 * an input of known rank, Shape's output shape [n] is known even when the dims are not.
 * Kernels: src/backends/ref/shape_of.c. Tested by the node tests test_shape*, test_size*. */
#include "shape_internal.h"

kiln_status kiln_parse_shape_of(kiln_node *node, kiln_attrs *attrs) {
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    if (node->op == KILN_OP_Size) return KILN_STATUS_OK; /* https://onnx.ai/onnx/operators/onnx__Size.html */
    /* https://onnx.ai/onnx/operators/onnx__Shape.html */
    kiln_shape_params *p;
    KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
    KILN_TRY(kiln_attr_int(attrs, "start", 0, &p->start));
    return kiln_attr_int(attrs, "end", INT64_MAX, &p->end);
}

/* The clamped [start, end) of Shape for an input of rank r. */
static void shape_range(const kiln_shape_params *p, int r, int64_t *start, int64_t *end) {
    int64_t s = p->start < 0 ? p->start + r : p->start, e = p->end < 0 ? p->end + r : p->end;
    *start = s < 0 ? 0 : s > r ? r : s;
    *end = e < 0 ? 0 : e > r ? r : e;
    if (*end < *start) *end = *start;
}

kiln_status kiln_infer_shape_of(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    if (!x) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, x->dtype));
    out->dtype = KILN_DTYPE_I64;
    if (node->op == KILN_OP_Size) {
        out->rank = 0;
        return KILN_STATUS_OK;
    }
    out->rank = 1;
    out->dims[0] = KILN_DIM_UNKNOWN;
    if (x->rank >= 0) {
        int64_t s, e;
        shape_range(node->params, x->rank, &s, &e);
        out->dims[0] = e - s;
    }
    return KILN_STATUS_OK;
}

void kiln_shape_of_range(const kiln_node *node, int rank, int64_t *start, int64_t *end) {
    shape_range(node->params, rank, start, end);
}
