/* where_clip.c — parse and shape inference of Where and Clip.
 *   Where (https://onnx.ai/onnx/operators/onnx__Where.html): condition (bool), X, Y of one
 *     dtype (any but string/complex), broadcast three ways; output X's dtype.
 *   Clip (https://onnx.ai/onnx/operators/onnx__Clip.html): X and optional scalar bounds; before
 *     opset 11 the bounds are the float attributes min and max, from 11 the optional inputs
 *     min and max (one element each, X's dtype). Output X's shape and dtype.
 * The kernels are in src/backends/ref/where_clip.c. Tested by the node tests test_where_*,
 * test_clip* (and the _expanded variants, which use Less/Where). */
#include "math_internal.h"

#include <float.h>

kiln_status kiln_parse_where_clip(kiln_node *node, kiln_attrs *attrs) {
    if (node->op != KILN_OP_Clip || node->opset >= 11) return KILN_STATUS_OK;
    math_clip_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    KILN_TRY(kiln_attr_float(attrs, "min", -FLT_MAX, &p->min));
    return kiln_attr_float(attrs, "max", FLT_MAX, &p->max);
}

static kiln_status infer_where(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 3, 3));
    if (!in[0] || !in[1] || !in[2]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "an input is missing");
    if (math_dtype_pending(node, in)) {
        out[0].dtype = in[1]->dtype != KILN_DTYPE_UNDEFINED ? in[1]->dtype : in[2]->dtype;
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    if (in[0]->dtype != KILN_DTYPE_BOOL) return kiln_node_bad_dtype(node, 0, in[0]->dtype);
    if (!math_dtype_in(in[1]->dtype, MATH_T_ALL)) return kiln_node_bad_dtype(node, 1, in[1]->dtype);
    if (in[2]->dtype != in[1]->dtype)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "X and Y have different dtypes %s and %s",
                               kiln_dtype_name(in[1]->dtype), kiln_dtype_name(in[2]->dtype));
    out[0].dtype = in[1]->dtype;
    return math_broadcast_n(node, in, 3, &out[0]);
}

static kiln_status infer_clip(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 1, node->opset >= 11 ? 3 : 1));
    const kiln_tensor *x = in[0];
    if (!x) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input X is missing");
    if (math_dtype_pending(node, in)) {
        out[0].dtype = x->dtype;
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    if (!math_dtype_in(x->dtype, node->opset >= 12 ? MATH_T_NUM : MATH_T_FLOAT))
        return kiln_node_bad_dtype(node, 0, x->dtype);
    for (int i = 1; i < node->n_declared; i++) {
        const kiln_tensor *b = in[i];
        if (!b) continue;
        if (b->dtype != x->dtype) return kiln_node_bad_dtype(node, i, b->dtype);
        int64_t count = b->rank >= 0 ? kiln_shape_count(b->rank, b->dims) : -1;
        bool unknown = b->rank < 0 || count < 0;
        if (!unknown && count != 1) {
            char s[160];
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s %s must have one element",
                                   i == 1 ? "min" : "max", kiln_dims_str(b->rank, b->dims, s, sizeof s));
        }
    }
    out[0].dtype = x->dtype;
    math_copy_shape(&out[0], x);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_where_clip(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    return node->op == KILN_OP_Where ? infer_where(node, in, out) : infer_clip(node, in, out);
}
