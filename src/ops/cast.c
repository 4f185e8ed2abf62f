/* cast.c — parse and shape inference of the dtype conversions:
 *   Cast (https://onnx.ai/onnx/operators/onnx__Cast.html): attribute to;
 *   CastLike (https://onnx.ai/onnx/operators/onnx__CastLike.html): the dtype of input 1;
 *   BitCast (https://onnx.ai/onnx/operators/onnx__BitCast.html, opset 26): reinterprets the
 *     bytes as attribute to, which must have the input's element size.
 * kiln converts between f32 f16 bf16 f64, the integers and bool. Strings, complex, and the
 * float8 / float4 / float6 / int4 / int2 types are UNSUPPORTED (the saturate and round_mode
 * attributes only matter for float8 targets, so they are read and otherwise ignored).
 * The output has the input's shape. The kernel is src/backends/ref/cast.c.
 * Tested by the node tests test_cast_*, test_castlike_*, test_bitcast_*. */
#include "math_internal.h"

/* ONNX TensorProto.DataType names of the codes kiln has no kiln_dtype for. */
static const char *onnx_type_name(int64_t code) {
    static const char *names[] = {
        [8] = "STRING", [14] = "COMPLEX64", [15] = "COMPLEX128", [17] = "FLOAT8E4M3FN",
        [18] = "FLOAT8E4M3FNUZ", [19] = "FLOAT8E5M2", [20] = "FLOAT8E5M2FNUZ", [21] = "UINT4",
        [22] = "INT4", [23] = "FLOAT4E2M1", [24] = "FLOAT8E8M0", [25] = "UINT2", [26] = "INT2",
        [27] = "FLOAT6E2M3", [28] = "FLOAT6E3M2",
    };
    if (code >= 0 && code < (int64_t)(sizeof names / sizeof names[0]) && names[code]) return names[code];
    return NULL;
}

kiln_status kiln_parse_cast(kiln_node *node, kiln_attrs *attrs) {
    math_cast_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    if (node->op != KILN_OP_BitCast) {
        int64_t saturate;
        char round_mode[16];
        KILN_TRY(kiln_attr_int(attrs, "saturate", 1, &saturate));
        KILN_TRY(kiln_attr_string(attrs, "round_mode", "up", round_mode, sizeof round_mode));
    }
    if (node->op == KILN_OP_CastLike) return KILN_STATUS_OK;

    if (!kiln_attr_has(attrs, "to"))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute to is required");
    int64_t to;
    KILN_TRY(kiln_attr_int(attrs, "to", 0, &to));
    if (to > 0 && to <= KILN_DTYPE_BF16 && math_dtype_in((kiln_dtype)to, MATH_T_ALL)) {
        p->to = (kiln_dtype)to;
        return KILN_STATUS_OK;
    }
    const char *name = onnx_type_name(to);
    if (name) return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "attribute to = %s is not supported", name);
    return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute to = %lld is not a data type",
                           (long long)to);
}

kiln_status kiln_infer_cast(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const math_cast_params *p = node->params;
    bool like = node->op == KILN_OP_CastLike;
    KILN_TRY(kiln_node_check_arity(node, like ? 2 : 1, like ? 2 : 1));
    const kiln_tensor *x = in[0];
    if (!x || (like && !in[1])) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "an input is missing");
    if (math_dtype_pending(node, in)) {
        out[0].dtype = like ? in[1]->dtype : p->to;
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    if (!math_dtype_in(x->dtype, MATH_T_ALL)) return kiln_node_bad_dtype(node, 0, x->dtype);
    kiln_dtype to = like ? in[1]->dtype : p->to;
    if (like && !math_dtype_in(to, MATH_T_ALL)) return kiln_node_bad_dtype(node, 1, to);
    if (node->op == KILN_OP_BitCast && kiln_dtype_size(to) != kiln_dtype_size(x->dtype))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                               "cannot reinterpret %s (%zu bytes) as %s (%zu bytes)", kiln_dtype_name(x->dtype),
                               kiln_dtype_size(x->dtype), kiln_dtype_name(to), kiln_dtype_size(to));
    out[0].dtype = to;
    math_copy_shape(&out[0], x);
    return KILN_STATUS_OK;
}
