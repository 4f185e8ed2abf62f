/* cast.c — reference kernels of Cast, CastLike and BitCast (parse and infer in src/ops/cast.c).
 * Rules (the ONNX Cast spec; a fixed choice where it says "undefined"):
 *   - float -> float: rounded once to nearest even; out-of-range gives +-inf;
 *   - float -> bool: nonzero (NaN included) is true;
 *   - float -> integer: truncation toward zero; NaN and out-of-range values (undefined in the
 *     spec) as x86-64 code gives them (see math_f64_to_int in src/ops/math_internal.h);
 *   - integer -> integer: the low bits, two's complement; integer -> bool: nonzero;
 *   - integer -> float: rounded to nearest; bool -> number: 0 or 1.
 * BitCast copies the bytes. Tested by the node tests test_cast_*, test_castlike_*, test_bitcast_*. */
#include "../../ops/math_internal.h"

static void cast_one(kiln_dtype from, const void *src, kiln_dtype to, void *dst, int64_t i) {
    if (kiln_dtype_is_float(from)) {
        double v = kiln_load_f64(from, src, i);
        math_store_f64(to, dst, i, v);
        return;
    }
    if (!kiln_dtype_is_float(to)) {
        kiln_store_i64(to, dst, i, kiln_load_i64(from, src, i));
        return;
    }
    /* integer or bool to float, rounding once for f32 and f64 */
    bool is_unsigned = math_is_unsigned(from);
    uint64_t u = math_load_u64(from, src, i);
    int64_t s = (int64_t)u;
    if (to == KILN_DTYPE_F32) ((float *)dst)[i] = is_unsigned ? (float)u : (float)s;
    else math_store_f64(to, dst, i, is_unsigned ? (double)u : (double)s);
}

kiln_status kiln_ref_cast(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    kiln_tensor *y = &out[0];
    int64_t n = kiln_shape_count(x->rank, x->dims);
    if (x->dtype == y->dtype || node->op == KILN_OP_BitCast) {
        if (n > 0) memcpy(y->data, x->data, (size_t)n * kiln_dtype_size(x->dtype));
        return KILN_STATUS_OK;
    }
    for (int64_t i = 0; i < n; i++) cast_one(x->dtype, x->data, y->dtype, y->data, i);
    return KILN_STATUS_OK;
}
