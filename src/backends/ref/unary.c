/* unary.c — reference kernels of the element-wise unary math ops (parse and infer in
 * src/ops/unary.c). Floats are computed in double and rounded once on store; integers (Abs,
 * Neg, Sign, BitwiseNot) exactly in 64 bits, wrapping to the dtype like numpy (Abs and Neg of
 * the most negative value give itself). Round is half-to-even (rint in the default rounding
 * mode). Tested by the node tests of the ops listed in src/ops/ops_math.def under "unary". */
#include "../../ops/math_internal.h"

static double unary_f64(int op, double x) {
    switch (op) {
    case KILN_OP_Abs: return fabs(x);
    case KILN_OP_Neg: return -x;
    case KILN_OP_Floor: return floor(x);
    case KILN_OP_Ceil: return ceil(x);
    case KILN_OP_Round: return nearbyint(x);
    case KILN_OP_Sqrt: return sqrt(x);
    case KILN_OP_Reciprocal: return 1.0 / x;
    case KILN_OP_Exp: return exp(x);
    case KILN_OP_Log: return log(x);
    case KILN_OP_Sin: return sin(x);
    case KILN_OP_Cos: return cos(x);
    case KILN_OP_Tan: return tan(x);
    case KILN_OP_Asin: return asin(x);
    case KILN_OP_Acos: return acos(x);
    case KILN_OP_Atan: return atan(x);
    case KILN_OP_Sinh: return sinh(x);
    case KILN_OP_Cosh: return cosh(x);
    case KILN_OP_Tanh: return tanh(x);
    case KILN_OP_Asinh: return asinh(x);
    case KILN_OP_Acosh: return acosh(x);
    case KILN_OP_Atanh: return atanh(x);
    case KILN_OP_Erf: return erf(x);
    case KILN_OP_Sign: return isnan(x) ? x : (double)((x > 0) - (x < 0));
    default: KILN_ASSERT(!"unary_f64: not a float op"); return 0;
    }
}

/* Integer ops on the two's complement bits; the store wraps to the dtype. */
static uint64_t unary_int(int op, uint64_t x, bool is_unsigned) {
    int64_t s = (int64_t)x;
    switch (op) {
    case KILN_OP_Abs: return is_unsigned || s >= 0 ? x : 0 - x;
    case KILN_OP_Neg: return 0 - x;
    case KILN_OP_Sign: return is_unsigned ? (x != 0) : (uint64_t)(int64_t)((s > 0) - (s < 0));
    case KILN_OP_BitwiseNot: return ~x;
    case KILN_OP_Not: return x == 0;
    default: KILN_ASSERT(!"unary_int: not an integer op"); return 0;
    }
}

kiln_status kiln_ref_unary(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    kiln_tensor *y = &out[0];
    int64_t n = kiln_shape_count(x->rank, x->dims);
    kiln_dtype dt = x->dtype;

    if (node->op == KILN_OP_IsNaN || node->op == KILN_OP_IsInf) {
        const math_isinf_params *p = node->params;
        uint8_t *o = y->data;
        for (int64_t i = 0; i < n; i++) {
            double v = kiln_load_f64(dt, x->data, i);
            if (node->op == KILN_OP_IsNaN) o[i] = isnan(v) != 0;
            else o[i] = (v == INFINITY && p->detect_positive) || (v == -INFINITY && p->detect_negative);
        }
        return KILN_STATUS_OK;
    }
    if (dt == KILN_DTYPE_F32) { /* the common case, without the per-element dtype switch */
        const float *px = x->data;
        float *py = y->data;
        for (int64_t i = 0; i < n; i++) py[i] = (float)unary_f64(node->op, px[i]);
        return KILN_STATUS_OK;
    }
    if (kiln_dtype_is_float(dt)) {
        for (int64_t i = 0; i < n; i++)
            math_store_f64(dt, y->data, i, unary_f64(node->op, kiln_load_f64(dt, x->data, i)));
        return KILN_STATUS_OK;
    }
    bool is_unsigned = math_is_unsigned(dt);
    for (int64_t i = 0; i < n; i++)
        kiln_store_i64(dt, y->data, i, (int64_t)unary_int(node->op, math_load_u64(dt, x->data, i), is_unsigned));
    return KILN_STATUS_OK;
}
