/* binary.c — parse and shape inference of the two-input element-wise ops with numpy
 * (multidirectional) broadcasting: Add Sub Mul Div Pow Mod BitShift, the logical And Or Xor,
 * the comparisons Equal Less Greater LessOrEqual GreaterOrEqual (bool output), and BitwiseAnd
 * BitwiseOr BitwiseXor. Specs: https://onnx.ai/onnx/operators/onnx__<Op>.html.
 * Both inputs share one dtype, except Pow whose exponent may have any numeric dtype (the output
 * takes the base's). Attributes: Mod's fmod, BitShift's direction.
 * The kernel is src/backends/ref/binary.c. Tested by the node tests test_add*, test_sub*,
 * test_mul*, test_div*, test_pow*, test_mod_*, test_bitshift_*, test_and*, test_or*, test_xor*,
 * test_equal*, test_less*, test_greater*, test_bitwise_{and,or,xor}_*. */
#include "math_internal.h"

kiln_status kiln_parse_binary(kiln_node *node, kiln_attrs *attrs) {
    if (node->op != KILN_OP_Mod && node->op != KILN_OP_BitShift) return KILN_STATUS_OK;
    math_binary_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    if (node->op == KILN_OP_Mod) {
        int64_t fmod;
        KILN_TRY(kiln_attr_int(attrs, "fmod", 0, &fmod));
        if (fmod != 0 && fmod != 1)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute fmod = %lld (expected 0 or 1)",
                                   (long long)fmod);
        p->fmod = fmod == 1;
        return KILN_STATUS_OK;
    }
    char dir[16];
    if (!kiln_attr_has(attrs, "direction"))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute direction is required");
    KILN_TRY(kiln_attr_string(attrs, "direction", NULL, dir, sizeof dir));
    if (strcmp(dir, "LEFT") == 0) p->shift_left = true;
    else if (strcmp(dir, "RIGHT") != 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                               "attribute direction = '%s' (expected 'LEFT' or 'RIGHT')", dir);
    return KILN_STATUS_OK;
}

/* The dtypes each op accepts for input A, from the ONNX spec. */
static unsigned binary_classes(int op) {
    switch (op) {
    case KILN_OP_And: case KILN_OP_Or: case KILN_OP_Xor: return MATH_T_BOOL;
    case KILN_OP_Equal: return MATH_T_ALL;
    case KILN_OP_BitShift: case KILN_OP_BitwiseAnd: case KILN_OP_BitwiseOr: case KILN_OP_BitwiseXor:
        return MATH_T_INT;
    default: return MATH_T_NUM;
    }
}

static bool binary_is_compare(int op) {
    return op == KILN_OP_And || op == KILN_OP_Or || op == KILN_OP_Xor || op == KILN_OP_Equal ||
           op == KILN_OP_Less || op == KILN_OP_Greater || op == KILN_OP_LessOrEqual ||
           op == KILN_OP_GreaterOrEqual;
}

kiln_status kiln_infer_binary(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 2, 2));
    const kiln_tensor *a = in[0], *b = in[1];
    if (!a || !b) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "an input is missing");
    if (math_dtype_pending(node, in)) {
        kiln_dtype t = a->dtype == KILN_DTYPE_UNDEFINED && node->op != KILN_OP_Pow ? b->dtype : a->dtype;
        out[0].dtype = binary_is_compare(node->op) ? KILN_DTYPE_BOOL : t;
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    if (!math_dtype_in(a->dtype, binary_classes(node->op))) return kiln_node_bad_dtype(node, 0, a->dtype);
    if (node->op == KILN_OP_Pow) {
        /* base: float, int32 or int64; exponent: any numeric dtype */
        if (!kiln_dtype_is_float(a->dtype) && a->dtype != KILN_DTYPE_I32 && a->dtype != KILN_DTYPE_I64)
            return kiln_node_bad_dtype(node, 0, a->dtype);
        if (!math_dtype_in(b->dtype, MATH_T_NUM)) return kiln_node_bad_dtype(node, 1, b->dtype);
    } else if (b->dtype != a->dtype) {
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "inputs have different dtypes %s and %s",
                               kiln_dtype_name(a->dtype), kiln_dtype_name(b->dtype));
    }
    out[0].dtype = binary_is_compare(node->op) ? KILN_DTYPE_BOOL : a->dtype;
    return math_broadcast_n(node, in, 2, &out[0]);
}
