/* math_internal.h — helpers shared by the math group's files (unary, activation, binary,
 * variadic, where_clip, cast) and their src/backends/ref/ twins: dtype classes for the checks
 * in infer, shape helpers (same shape, broadcast over n inputs), a broadcasting index walker
 * for the kernels, and float stores that round once.
 * Private to the math group; everything here is static inline. Tested through the node tests
 * of the math ops (see src/ops/ops_math.def). */
#ifndef KILN_OPS_MATH_INTERNAL_H
#define KILN_OPS_MATH_INTERNAL_H

#include "op.h"

#include <math.h>
#include <string.h>

/* ---- typed attribute structs (node->params) ---- */

/* IsInf */
typedef struct math_isinf_params {
    bool detect_negative, detect_positive;
} math_isinf_params;

/* The activations with attributes; each op reads only the fields named beside them. */
typedef struct math_act_params {
    float alpha; /* Elu, Selu, Celu, LeakyRelu, ThresholdedRelu, HardSigmoid, Swish */
    float beta;  /* HardSigmoid */
    float gamma; /* Selu */
    float bias;  /* Shrink */
    float lambd; /* Shrink */
    bool gelu_tanh; /* Gelu: approximate = "tanh" */
} math_act_params;

/* Mod and BitShift */
typedef struct math_binary_params {
    bool fmod;       /* Mod: C fmod (sign of the dividend) instead of Python's % */
    bool shift_left; /* BitShift: direction = "LEFT" */
} math_binary_params;

/* Clip before opset 11: bounds as attributes */
typedef struct math_clip_params {
    float min, max;
} math_clip_params;

/* Cast, CastLike, BitCast */
typedef struct math_cast_params {
    kiln_dtype to; /* Cast and BitCast: the target dtype (CastLike takes input 1's) */
} math_cast_params;

/* ---- dtype classes: bit sets tested by math_dtype_in ---- */
enum {
    MATH_T_FLOAT = 1u, /* f16, bf16, f32, f64 */
    MATH_T_SINT = 2u,  /* int8 .. int64 */
    MATH_T_UINT = 4u,  /* uint8 .. uint64 */
    MATH_T_BOOL = 8u,
    MATH_T_INT = MATH_T_SINT | MATH_T_UINT,
    MATH_T_NUM = MATH_T_FLOAT | MATH_T_INT,
    MATH_T_ALL = MATH_T_NUM | MATH_T_BOOL,
};

static inline unsigned math_dtype_class(kiln_dtype t) {
    if (kiln_dtype_is_float(t)) return MATH_T_FLOAT;
    if (t == KILN_DTYPE_BOOL) return MATH_T_BOOL;
    if (kiln_dtype_is_int(t)) return kiln_dtype_is_signed(t) ? MATH_T_SINT : MATH_T_UINT;
    return 0;
}

static inline bool math_dtype_in(kiln_dtype t, unsigned classes) {
    return (math_dtype_class(t) & classes) != 0;
}

static inline bool math_is_unsigned(kiln_dtype t) { return math_dtype_class(t) == MATH_T_UINT; }

/* Bits of an integer dtype (8 for bool). */
static inline int math_dtype_bits(kiln_dtype t) { return (int)kiln_dtype_size(t) * 8; }

/* True when a present input's dtype is not known yet (KILN_DTYPE_UNDEFINED: e.g. a value of a
 * subgraph typed only at run time). infer then sets what it can of out[0].dtype, leaves the
 * shapes unknown and returns OK; at run time every dtype is known. */
static inline bool math_dtype_pending(const kiln_node *node, kiln_tensor *const *in) {
    for (int i = 0; i < node->n_declared; i++)
        if (in[i] && in[i]->dtype == KILN_DTYPE_UNDEFINED) return true;
    return false;
}

/* ---- shapes ---- */

/* out gets in's shape (rank -1 stays unknown). */
static inline void math_copy_shape(kiln_tensor *out, const kiln_tensor *in) {
    out->rank = in->rank;
    if (in->rank > 0) memcpy(out->dims, in->dims, sizeof(int64_t) * (size_t)in->rank);
}

/* Multidirectional broadcast of the present tensors in[0..n) into out's rank/dims; rank -1
 * when one of them has an unknown rank. Errors name the node and the clashing shapes. */
static inline kiln_status math_broadcast_n(const kiln_node *node, kiln_tensor *const *in, int n,
                                           kiln_tensor *out) {
    int rank = 0;
    int64_t dims[KILN_MAX_RANK];
    for (int i = 0; i < n; i++) {
        if (!in[i]) continue;
        if (in[i]->rank < 0) {
            out->rank = -1;
            return KILN_STATUS_OK;
        }
        if (in[i]->rank > KILN_MAX_RANK)
            return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "input %d has rank %d", i, in[i]->rank);
    }
    for (int i = 0; i < n; i++) {
        if (!in[i]) continue;
        kiln_status s = kiln_broadcast_shape(rank, dims, in[i]->rank, in[i]->dims, &rank, dims);
        if (s != KILN_STATUS_OK) return kiln_error_prefix(s, "node '%s' (%s)", node->name, kiln_op_name(node->op));
    }
    out->rank = rank;
    memcpy(out->dims, dims, sizeof(int64_t) * (size_t)rank);
    return KILN_STATUS_OK;
}

/* ---- broadcasting walk for the kernels ----
 * Visits the elements of an output of known shape in row-major order while keeping, for each of
 * up to MATH_BCAST_MAX inputs, the offset of the element that broadcasts onto it:
 *     math_bcast it; math_bcast_init(&it, out, n, ins);
 *     for (int64_t i = 0; i < count; i++, math_bcast_next(&it)) use it.off[k] ... */
#define MATH_BCAST_MAX 3

typedef struct math_bcast {
    int rank, n;
    int64_t dims[KILN_MAX_RANK];
    int64_t idx[KILN_MAX_RANK];
    int64_t strides[MATH_BCAST_MAX][KILN_MAX_RANK];
    int64_t off[MATH_BCAST_MAX];
} math_bcast;

static inline void math_bcast_init(math_bcast *it, const kiln_tensor *out, int n, const kiln_tensor *const *ins) {
    memset(it, 0, sizeof *it);
    it->rank = out->rank;
    it->n = n;
    memcpy(it->dims, out->dims, sizeof(int64_t) * (size_t)out->rank);
    for (int k = 0; k < n; k++)
        kiln_broadcast_strides(ins[k]->rank, ins[k]->dims, out->rank, out->dims, it->strides[k]);
}

static inline void math_bcast_next(math_bcast *it) {
    for (int d = it->rank - 1; d >= 0; d--) {
        it->idx[d]++;
        for (int k = 0; k < it->n; k++) it->off[k] += it->strides[k][d];
        if (it->idx[d] < it->dims[d]) return;
        for (int k = 0; k < it->n; k++) it->off[k] -= it->strides[k][d] * it->dims[d];
        it->idx[d] = 0;
    }
}

/* ---- float stores that round once ----
 * kiln_store_f64 rounds a double to f16/bf16 through f32, which can round twice. Rounding to
 * f32 "to odd" first (truncate, then set the last bit when inexact) keeps the final
 * round-to-nearest-even exact, since f32 has more than two extra bits over f16 and bf16. */
static inline float math_f64_to_f32_odd(double v) {
    float f = (float)v;
    if (isnan(v) || (double)f == v) return f;
    if (fabs((double)f) > fabs(v)) f = nextafterf(f, 0.0f); /* truncate toward zero */
    uint32_t u;
    memcpy(&u, &f, 4);
    u |= 1u;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- float to integer ----
 * Truncation toward zero. NaN and out-of-range values are undefined in the ONNX spec (and in C);
 * kiln fixes them to what x86-64 code compiled from C gives, which is what numpy's astype gives
 * for most arrays (its short-array paths differ): int8/16/32 and uint8/16 go through int32
 * (invalid gives INT32_MIN, then the low bits are kept), int64 through int64 (invalid gives
 * INT64_MIN), uint32 and uint64 through the "subtract 2^31 / 2^63 when large" sequences.
 * Returns the two's complement bits for kiln_store_i64. */
static inline int64_t math_cvtt32(double v) {
    if (!(v > -2147483649.0 && v < 2147483648.0)) return INT32_MIN;
    return (int64_t)v;
}

static inline int64_t math_cvtt64(double v) {
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)v;
}

static inline int64_t math_f64_to_int(kiln_dtype to, double v) {
    switch (to) {
    case KILN_DTYPE_I64: return math_cvtt64(v);
    case KILN_DTYPE_U32: return v >= 2147483648.0 ? math_cvtt32(v - 2147483648.0) + 2147483648LL : math_cvtt32(v);
    case KILN_DTYPE_U64:
        if (v >= 9223372036854775808.0)
            return (int64_t)((uint64_t)math_cvtt64(v - 9223372036854775808.0) ^ (1ull << 63));
        return math_cvtt64(v);
    default: return math_cvtt32(v);
    }
}

/* Stores v rounded once to a float dtype, as math_f64_to_int to an integer one, as v != 0 to bool. */
static inline void math_store_f64(kiln_dtype t, void *p, int64_t i, double v) {
    if (t == KILN_DTYPE_F16) ((uint16_t *)p)[i] = kiln_f32_to_f16(math_f64_to_f32_odd(v));
    else if (t == KILN_DTYPE_BF16) ((uint16_t *)p)[i] = kiln_f32_to_bf16(math_f64_to_f32_odd(v));
    else if (kiln_dtype_is_int(t)) kiln_store_i64(t, p, i, math_f64_to_int(t, v));
    else kiln_store_f64(t, p, i, v);
}

/* Element i of an integer (or bool) buffer as uint64: zero-extended for unsigned types, the
 * two's complement bits of the sign-extended value for signed ones. */
static inline uint64_t math_load_u64(kiln_dtype t, const void *p, int64_t i) {
    return (uint64_t)kiln_load_i64(t, p, i);
}

#endif /* KILN_OPS_MATH_INTERNAL_H */
