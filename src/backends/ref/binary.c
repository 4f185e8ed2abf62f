/* binary.c — reference kernels of the broadcasting two-input ops (parse and infer in
 * src/ops/binary.c). Floats are computed in double and rounded once on store (f32 Add, Sub,
 * Mul, Div directly in float); integers exactly on 64-bit two's complement bits, wrapping to
 * the dtype on store, with unsigned division, remainder and comparisons for unsigned dtypes.
 * Semantics beyond C, matching the ONNX node tests (numpy):
 *   - integer Div truncates toward zero; x / 0 gives 0 (no trap), INT_MIN / -1 wraps;
 *   - Mod with fmod=0 takes the divisor's sign (Python %, numpy.mod, also for floats),
 *     with fmod=1 the dividend's (C fmod); integer x % 0 gives 0;
 *   - BitShift by a negative amount or by the bit width or more gives 0, or -1 for a right
 *     shift of a negative value; right shifts of signed values are arithmetic;
 *   - Pow of integers is exact (wrapping); a negative integer exponent gives 0 unless the base
 *     is 1 or -1; an integer base with a float exponent is computed in double and truncated.
 * Tested by the node tests listed in src/ops/binary.c. */
#include "../../ops/math_internal.h"

/* numpy.mod for floats (npy_divmod): the result has the divisor's sign, zero as +-0. */
static double py_mod(double a, double b) {
    double m = fmod(a, b);
    if (b == 0) return m; /* NaN */
    if (m != 0) {
        if ((b < 0) != (m < 0)) m += b;
    } else {
        m = copysign(0.0, b);
    }
    return m;
}

static double arith_f64(int op, const math_binary_params *p, double a, double b) {
    switch (op) {
    case KILN_OP_Add: return a + b;
    case KILN_OP_Sub: return a - b;
    case KILN_OP_Mul: return a * b;
    case KILN_OP_Div: return a / b;
    case KILN_OP_Mod: return p->fmod ? fmod(a, b) : py_mod(a, b);
    default: KILN_ASSERT(!"arith_f64: unknown op"); return 0;
    }
}

static float arith_f32(int op, float a, float b) {
    switch (op) {
    case KILN_OP_Add: return a + b;
    case KILN_OP_Sub: return a - b;
    case KILN_OP_Mul: return a * b;
    default: return a / b;
    }
}

static uint64_t shift(bool left, uint64_t a, uint64_t b, bool is_unsigned, int bits) {
    bool negative = !is_unsigned && (int64_t)a < 0;
    bool out_of_range = is_unsigned ? b >= (uint64_t)bits : ((int64_t)b < 0 || (int64_t)b >= bits);
    if (left) return out_of_range ? 0 : a << b;
    if (out_of_range) return negative ? UINT64_MAX : 0;
    if (negative) return ~(~a >> b); /* arithmetic shift: a is sign-extended to 64 bits */
    return a >> b;
}

/* Integer ops on 64-bit two's complement bits (sign- or zero-extended from the dtype). */
static uint64_t arith_int(int op, const math_binary_params *p, uint64_t a, uint64_t b, bool is_unsigned,
                          int bits) {
    int64_t sa = (int64_t)a, sb = (int64_t)b;
    switch (op) {
    case KILN_OP_Add: return a + b;
    case KILN_OP_Sub: return a - b;
    case KILN_OP_Mul: return a * b;
    case KILN_OP_Div:
        if (b == 0) return 0;
        if (is_unsigned) return a / b;
        if (sa == INT64_MIN && sb == -1) return a;
        return (uint64_t)(sa / sb);
    case KILN_OP_Mod: {
        if (b == 0) return 0;
        if (is_unsigned) return a % b;
        if (sb == -1) return 0;
        int64_t r = sa % sb;
        if (!p->fmod && r != 0 && ((r < 0) != (sb < 0))) r += sb;
        return (uint64_t)r;
    }
    case KILN_OP_BitShift: return shift(p->shift_left, a, b, is_unsigned, bits);
    case KILN_OP_BitwiseAnd: case KILN_OP_And: return a & b;
    case KILN_OP_BitwiseOr: case KILN_OP_Or: return a | b;
    case KILN_OP_BitwiseXor: case KILN_OP_Xor: return a ^ b;
    default: KILN_ASSERT(!"arith_int: unknown op"); return 0;
    }
}

/* -1, 0, 1 as a <, ==, > b; 2 when unordered (a NaN). */
static int compare(kiln_dtype t, const void *pa, int64_t ia, const void *pb, int64_t ib) {
    if (kiln_dtype_is_float(t)) {
        double a = kiln_load_f64(t, pa, ia), b = kiln_load_f64(t, pb, ib);
        return a < b ? -1 : a > b ? 1 : a == b ? 0 : 2;
    }
    if (math_is_unsigned(t)) {
        uint64_t a = math_load_u64(t, pa, ia), b = math_load_u64(t, pb, ib);
        return a < b ? -1 : a > b;
    }
    int64_t a = kiln_load_i64(t, pa, ia), b = kiln_load_i64(t, pb, ib);
    return a < b ? -1 : a > b;
}

static bool compare_result(int op, int c) {
    switch (op) {
    case KILN_OP_Equal: return c == 0;
    case KILN_OP_Less: return c == -1;
    case KILN_OP_Greater: return c == 1;
    case KILN_OP_LessOrEqual: return c == -1 || c == 0;
    default: return c == 1 || c == 0; /* GreaterOrEqual */
    }
}

/* Integer power by squaring, wrapping; e < 0 gives 0 except for the bases 1 and -1. */
static uint64_t ipow(int64_t base, uint64_t e, bool e_negative) {
    if (e_negative) return base == 1 ? 1 : base == -1 ? ((e & 1) ? UINT64_MAX : 1) : 0;
    uint64_t r = 1, x = (uint64_t)base;
    for (; e; e >>= 1) {
        if (e & 1) r *= x;
        x *= x;
    }
    return r;
}

static void ref_pow(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y, math_bcast *it, int64_t n) {
    kiln_dtype ta = a->dtype, tb = b->dtype;
    for (int64_t i = 0; i < n; i++, math_bcast_next(it)) {
        int64_t ia = it->off[0], ib = it->off[1];
        if (kiln_dtype_is_float(ta) || kiln_dtype_is_float(tb)) {
            double v = pow(kiln_load_f64(ta, a->data, ia), kiln_load_f64(tb, b->data, ib));
            math_store_f64(ta, y->data, i, v);
        } else {
            uint64_t e = math_load_u64(tb, b->data, ib);
            bool e_negative = !math_is_unsigned(tb) && (int64_t)e < 0;
            kiln_store_i64(ta, y->data, i, (int64_t)ipow(kiln_load_i64(ta, a->data, ia), e, e_negative));
        }
    }
}

kiln_status kiln_ref_binary(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *a = in[0], *b = in[1];
    kiln_tensor *y = &out[0];
    const math_binary_params *p = node->params;
    int op = node->op;
    kiln_dtype dt = a->dtype;
    int64_t n = kiln_shape_count(y->rank, y->dims);
    const kiln_tensor *ins[2] = {a, b};
    math_bcast it;
    math_bcast_init(&it, y, 2, ins);

    if (op == KILN_OP_Pow) {
        ref_pow(a, b, y, &it, n);
        return KILN_STATUS_OK;
    }
    if (y->dtype == KILN_DTYPE_BOOL && dt != KILN_DTYPE_BOOL) { /* comparisons */
        uint8_t *o = y->data;
        for (int64_t i = 0; i < n; i++, math_bcast_next(&it))
            o[i] = compare_result(op, compare(dt, a->data, it.off[0], b->data, it.off[1]));
        return KILN_STATUS_OK;
    }
    if (op == KILN_OP_Equal) { /* bool == bool */
        const uint8_t *pa = a->data, *pb = b->data;
        uint8_t *o = y->data;
        for (int64_t i = 0; i < n; i++, math_bcast_next(&it)) o[i] = (pa[it.off[0]] != 0) == (pb[it.off[1]] != 0);
        return KILN_STATUS_OK;
    }
    if (dt == KILN_DTYPE_F32 && op != KILN_OP_Mod) {
        const float *pa = a->data, *pb = b->data;
        float *o = y->data;
        for (int64_t i = 0; i < n; i++, math_bcast_next(&it)) o[i] = arith_f32(op, pa[it.off[0]], pb[it.off[1]]);
        return KILN_STATUS_OK;
    }
    if (kiln_dtype_is_float(dt)) {
        for (int64_t i = 0; i < n; i++, math_bcast_next(&it)) {
            double va = kiln_load_f64(dt, a->data, it.off[0]), vb = kiln_load_f64(dt, b->data, it.off[1]);
            math_store_f64(dt, y->data, i, arith_f64(op, p, va, vb));
        }
        return KILN_STATUS_OK;
    }
    bool is_unsigned = math_is_unsigned(dt) || dt == KILN_DTYPE_BOOL;
    int bits = math_dtype_bits(dt);
    for (int64_t i = 0; i < n; i++, math_bcast_next(&it)) {
        uint64_t va = math_load_u64(dt, a->data, it.off[0]), vb = math_load_u64(dt, b->data, it.off[1]);
        kiln_store_i64(dt, y->data, i, (int64_t)arith_int(op, p, va, vb, is_unsigned, bits));
    }
    return KILN_STATUS_OK;
}
