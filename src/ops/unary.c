/* unary.c — parse and shape inference of the element-wise unary math ops: Abs Neg Floor Ceil
 * Round Sqrt Reciprocal Exp Log Sin Cos Tan Asin Acos Atan Sinh Cosh Tanh Asinh Acosh Atanh Erf
 * Sign IsNaN IsInf Not BitwiseNot (https://onnx.ai/onnx/operators/, one page per op).
 * The output has the input's shape; its dtype is the input's, or bool for IsNaN and IsInf.
 * Only IsInf has attributes. The kernel is src/backends/ref/unary.c.
 * Tested by the node tests test_abs, test_neg*, test_floor*, ..., test_isinf*, test_not_*,
 * test_bitwise_not_*. */
#include "math_internal.h"

kiln_status kiln_parse_unary(kiln_node *node, kiln_attrs *attrs) {
    if (node->op != KILN_OP_IsInf) return KILN_STATUS_OK;
    /* IsInf: https://onnx.ai/onnx/operators/onnx__IsInf.html */
    math_isinf_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    int64_t neg, pos;
    KILN_TRY(kiln_attr_int(attrs, "detect_negative", 1, &neg));
    KILN_TRY(kiln_attr_int(attrs, "detect_positive", 1, &pos));
    p->detect_negative = neg != 0;
    p->detect_positive = pos != 0;
    return KILN_STATUS_OK;
}

/* The dtypes each op accepts, from the ONNX spec. */
static unsigned unary_classes(int op) {
    switch (op) {
    case KILN_OP_Abs: case KILN_OP_Sign: return MATH_T_NUM;
    case KILN_OP_Neg: return MATH_T_FLOAT | MATH_T_SINT;
    case KILN_OP_Not: return MATH_T_BOOL;
    case KILN_OP_BitwiseNot: return MATH_T_INT;
    default: return MATH_T_FLOAT;
    }
}

kiln_status kiln_infer_unary(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    const kiln_tensor *x = in[0];
    if (!x) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input X is missing");
    bool to_bool = node->op == KILN_OP_IsNaN || node->op == KILN_OP_IsInf;
    if (math_dtype_pending(node, in)) {
        out[0].dtype = to_bool ? KILN_DTYPE_BOOL : KILN_DTYPE_UNDEFINED;
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    if (!math_dtype_in(x->dtype, unary_classes(node->op))) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = to_bool ? KILN_DTYPE_BOOL : x->dtype;
    math_copy_shape(&out[0], x);
    return KILN_STATUS_OK;
}
