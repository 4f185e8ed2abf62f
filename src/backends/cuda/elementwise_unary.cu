/* elementwise_unary.cu — one-input elementwise kernels: unary math, activations, IsNaN/IsInf,
 * Clip and the fused-activation pass (KILN_EW_IDENT). Float dtypes compute in f32 (f64 for f64)
 * with 16-byte vector loads: the ops common in models one kernel per (dtype, op), the others one
 * kernel per dtype with the op chosen at run time; integer and bool dtypes run
 * one runtime-typed kernel on 64-bit bits, as src/backends/ref/unary.c and activation.c do.
 * The formulas are those of the reference kernels (the stable forms of Sigmoid and Softplus,
 * NaN-propagating max/min in HardSigmoid, HardSwish and Celu). Tested against the reference
 * backend by the lead's CUDA op tests. */
#include "elementwise_common.cuh"

namespace ew {

template <class C> __device__ __forceinline__ C sigmoid(C x) {
    if (x >= C(0)) return C(1) / (C(1) + m_exp(-x));
    C e = m_exp(x);
    return e / (C(1) + e);
}

template <class C> __device__ __forceinline__ C softplus(C x) {
    return (x > C(0) ? x : C(0)) + m_log1p(m_exp(-m_fabs(x)));
}

template <int OP, class C> __device__ __forceinline__ C unary_float(C x, const kiln_ew_params &p) {
    if constexpr (OP == KILN_EW_IDENT) return x;
    else if constexpr (OP == KILN_EW_ABS) return m_fabs(x);
    else if constexpr (OP == KILN_EW_NEG) return -x;
    else if constexpr (OP == KILN_EW_FLOOR) return m_floor(x);
    else if constexpr (OP == KILN_EW_CEIL) return m_ceil(x);
    else if constexpr (OP == KILN_EW_ROUND) return m_rint(x); /* half to even */
    else if constexpr (OP == KILN_EW_SQRT) return m_sqrt(x);
    else if constexpr (OP == KILN_EW_RECIPROCAL) return C(1) / x;
    else if constexpr (OP == KILN_EW_EXP) return m_exp(x);
    else if constexpr (OP == KILN_EW_LOG) return m_log(x);
    else if constexpr (OP == KILN_EW_SIN) return m_sin(x);
    else if constexpr (OP == KILN_EW_COS) return m_cos(x);
    else if constexpr (OP == KILN_EW_TAN) return m_tan(x);
    else if constexpr (OP == KILN_EW_ASIN) return m_asin(x);
    else if constexpr (OP == KILN_EW_ACOS) return m_acos(x);
    else if constexpr (OP == KILN_EW_ATAN) return m_atan(x);
    else if constexpr (OP == KILN_EW_SINH) return m_sinh(x);
    else if constexpr (OP == KILN_EW_COSH) return m_cosh(x);
    else if constexpr (OP == KILN_EW_TANH) return m_tanh(x);
    else if constexpr (OP == KILN_EW_ASINH) return m_asinh(x);
    else if constexpr (OP == KILN_EW_ACOSH) return m_acosh(x);
    else if constexpr (OP == KILN_EW_ATANH) return m_atanh(x);
    else if constexpr (OP == KILN_EW_ERF) return m_erf(x);
    else if constexpr (OP == KILN_EW_SIGN) return x != x ? x : C((x > C(0)) - (x < C(0)));
    else if constexpr (OP == KILN_EW_RELU) return x < C(0) ? C(0) : x;
    else if constexpr (OP == KILN_EW_SIGMOID) return sigmoid(x);
    else if constexpr (OP == KILN_EW_SOFTPLUS) return softplus(x);
    else if constexpr (OP == KILN_EW_SOFTSIGN) return x / (C(1) + m_fabs(x));
    else if constexpr (OP == KILN_EW_HARDSIGMOID) return max_nan(C(0), min_nan(C(1), C(p.alpha) * x + C(p.beta)));
    else if constexpr (OP == KILN_EW_HARDSWISH) return x * max_nan(C(0), min_nan(C(1), x / C(6) + C(0.5)));
    else if constexpr (OP == KILN_EW_ELU) return x > C(0) ? x : C(p.alpha) * m_expm1(x);
    else if constexpr (OP == KILN_EW_SELU) return C(p.gamma) * (x > C(0) ? x : C(p.alpha) * m_expm1(x));
    else if constexpr (OP == KILN_EW_CELU)
        return max_nan(C(0), x) + min_nan(C(0), C(p.alpha) * m_expm1(x / C(p.alpha)));
    else if constexpr (OP == KILN_EW_LEAKYRELU) return x < C(0) ? C(p.alpha) * x : x;
    else if constexpr (OP == KILN_EW_THRESHOLDEDRELU) return x > C(p.alpha) ? x : C(0);
    else if constexpr (OP == KILN_EW_MISH) return x * m_tanh(softplus(x));
    else if constexpr (OP == KILN_EW_GELU) return C(0.5) * x * (C(1) + m_erf(x * C(0.70710678118654752440)));
    else if constexpr (OP == KILN_EW_GELU_TANH)
        return C(0.5) * x * (C(1) + m_tanh(C(0.79788456080286535588) * (x + C(0.044715) * x * x * x)));
    else if constexpr (OP == KILN_EW_SHRINK)
        return x < C(-p.lambd) ? x + C(p.bias) : x > C(p.lambd) ? x - C(p.bias) : C(0);
    else if constexpr (OP == KILN_EW_SWISH) return x * sigmoid(C(p.alpha) * x);
    else if constexpr (OP == KILN_EW_CLIP) {
        if (x < C(p.lo)) x = C(p.lo);
        if (x > C(p.hi)) x = C(p.hi);
        return x;
    } else {
        static_assert(OP < 0, "not a float unary op");
        return x;
    }
}

/* y = act(op(x)) on a float dtype */
template <class T, int OP> struct FloatUnary {
    kiln_ew_params p;
    kiln_cuda_act act;
    __device__ __forceinline__ T operator()(T x) const {
        return FT<T>::store(act_apply(act, unary_float<OP>(FT<T>::load(x), p)));
    }
};

/* IsNaN / IsInf: float -> bool */
template <class T, int OP> struct FloatPredicate {
    kiln_ew_params p;
    __device__ __forceinline__ boolean operator()(T x) const {
        auto v = FT<T>::load(x);
        bool r;
        if constexpr (OP == KILN_EW_ISNAN) r = v != v;
        else r = (isinf(v) && v > 0 && p.detect_pos) || (isinf(v) && v < 0 && p.detect_neg);
        return boolean{(uint8_t)r};
    }
};

/* The ops that seldom run on large tensors share one kernel per dtype, the op a (uniform)
 * switch at run time; this keeps the number of kernels, and the build time, down. */
template <class C> __device__ __forceinline__ C unary_float_rt(int op, C x, const kiln_ew_params &p) {
    switch (op) {
#define EW_CASE(o) case o: return unary_float<o>(x, p);
    EW_CASE(KILN_EW_FLOOR) EW_CASE(KILN_EW_CEIL) EW_CASE(KILN_EW_ROUND) EW_CASE(KILN_EW_SIN) EW_CASE(KILN_EW_COS)
    EW_CASE(KILN_EW_TAN) EW_CASE(KILN_EW_ASIN) EW_CASE(KILN_EW_ACOS) EW_CASE(KILN_EW_ATAN) EW_CASE(KILN_EW_SINH)
    EW_CASE(KILN_EW_COSH) EW_CASE(KILN_EW_ASINH) EW_CASE(KILN_EW_ACOSH) EW_CASE(KILN_EW_ATANH) EW_CASE(KILN_EW_SIGN)
    EW_CASE(KILN_EW_SOFTPLUS) EW_CASE(KILN_EW_SOFTSIGN) EW_CASE(KILN_EW_HARDSIGMOID) EW_CASE(KILN_EW_ELU)
    EW_CASE(KILN_EW_SELU) EW_CASE(KILN_EW_CELU) EW_CASE(KILN_EW_THRESHOLDEDRELU) EW_CASE(KILN_EW_MISH)
    EW_CASE(KILN_EW_SHRINK)
#undef EW_CASE
    default: return x;
    }
}

template <class T> struct FloatUnaryRt {
    int op;
    kiln_ew_params p;
    kiln_cuda_act act;
    __device__ __forceinline__ T operator()(T x) const {
        return FT<T>::store(act_apply(act, unary_float_rt(op, FT<T>::load(x), p)));
    }
};

template <class T, int OP>
static cudaError_t float_op(const void *x, void *y, int64_t n, const kiln_ew_params &p, const kiln_cuda_act &act,
                            cudaStream_t s) {
    if constexpr (OP == KILN_EW_ISNAN || OP == KILN_EW_ISINF)
        return launch_map<T, boolean>(x, y, n, FloatPredicate<T, OP>{p}, s);
    else return launch_map<T, T>(x, y, n, FloatUnary<T, OP>{p, act}, s);
}

/* The ops common in models get a kernel each (the op known at compile time). */
template <class T>
static cudaError_t float_unary(int op, const void *x, void *y, int64_t n, const kiln_ew_params &p,
                               const kiln_cuda_act &act, cudaStream_t s) {
    switch (op) {
#define EW_CASE(o) case o: return float_op<T, o>(x, y, n, p, act, s);
    EW_CASE(KILN_EW_IDENT) EW_CASE(KILN_EW_ABS) EW_CASE(KILN_EW_NEG) EW_CASE(KILN_EW_SQRT)
    EW_CASE(KILN_EW_RECIPROCAL) EW_CASE(KILN_EW_EXP) EW_CASE(KILN_EW_LOG) EW_CASE(KILN_EW_TANH) EW_CASE(KILN_EW_ERF)
    EW_CASE(KILN_EW_ISNAN) EW_CASE(KILN_EW_ISINF) EW_CASE(KILN_EW_RELU) EW_CASE(KILN_EW_SIGMOID)
    EW_CASE(KILN_EW_HARDSWISH) EW_CASE(KILN_EW_LEAKYRELU) EW_CASE(KILN_EW_GELU) EW_CASE(KILN_EW_GELU_TANH)
    EW_CASE(KILN_EW_SWISH) EW_CASE(KILN_EW_CLIP)
#undef EW_CASE
    default:
        if (op < 0 || op >= KILN_EW_UNARY_COUNT || op == KILN_EW_NOT || op == KILN_EW_BITNOT) return cudaErrorInvalidValue;
        return launch_map<T, T>(x, y, n, FloatUnaryRt<T>{op, p, act}, s);
    }
}

/* ---- integer and bool dtypes: one kernel, dtype and op known at run time ---- */
struct IntUnary {
    int op, ct;
    bool is_unsigned;
    kiln_ew_params p;
};

__device__ __forceinline__ uint64_t int_unary(const IntUnary &u, uint64_t x) {
    int64_t s = (int64_t)x;
    switch (u.op) {
    case KILN_EW_ABS: return u.is_unsigned || s >= 0 ? x : 0 - x;
    case KILN_EW_NEG: return 0 - x;
    case KILN_EW_SIGN: return u.is_unsigned ? (x != 0) : (uint64_t)(int64_t)((s > 0) - (s < 0));
    case KILN_EW_BITNOT: return ~x;
    case KILN_EW_NOT: return x == 0;
    case KILN_EW_RELU: return !u.is_unsigned && s < 0 ? 0 : x;
    case KILN_EW_SHRINK: { /* in double, truncated like the reference */
        double v = u.is_unsigned ? (double)x : (double)s;
        double lambd = u.p.lambd, bias = u.p.bias;
        double r = v < -lambd ? v + bias : v > lambd ? v - bias : 0.0;
        return f64_to_int(u.ct, r);
    }
    case KILN_EW_CLIP:
        if (u.is_unsigned) {
            uint64_t lo = (uint64_t)u.p.ilo, hi = (uint64_t)u.p.ihi;
            if (x < lo) x = lo;
            if (x > hi) x = hi;
            return x;
        }
        if (s < u.p.ilo) s = u.p.ilo;
        if (s > u.p.ihi) s = u.p.ihi;
        return (uint64_t)s;
    default: return x; /* IDENT */
    }
}

__global__ void __launch_bounds__(kThreads) k_int_unary(const void *x, void *y, int64_t n, IntUnary u) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        st_bits(u.ct, y, i, int_unary(u, ld_bits(u.ct, x, i)));
}

} // namespace ew

using namespace ew;

KILN_CUDA_EXTERN cudaError_t kiln_ew_unary(int op, int ct_in, int ct_out, const void *x, void *y, int64_t n,
                                           kiln_ew_params p, kiln_cuda_act act, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (ct_is_float(ct_in))
        return with_float(ct_in, [&](auto t) {
            using T = typename decltype(t)::type;
            return float_unary<T>(op, x, y, n, p, act, stream);
        });
    if (ct_out != ct_in) return cudaErrorInvalidValue;
    IntUnary u = {op, ct_in, ct_is_unsigned(ct_in), p};
    k_int_unary<<<blocks_for(n), kThreads, 0, stream>>>(x, y, n, u);
    return cudaGetLastError();
}
