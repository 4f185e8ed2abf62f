/* elementwise_common.cuh — device-side pieces shared by the elementwise family's .cu files:
 * element types and their compute types, dispatch from KILN_CT_* to C++ types, 16-byte
 * vectors, the broadcast geometry (merged dims with fast 32-bit division), runtime-typed
 * loads and stores for the integer kernels, float-to-integer conversion as the reference does
 * it, and the fused-activation epilogue. Included by elementwise_*.cu only. */
#ifndef KILN_CUDA_ELEMENTWISE_COMMON_CUH
#define KILN_CUDA_ELEMENTWISE_COMMON_CUH

#include "kernels_elementwise.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

namespace ew {

/* kiln's bool: one byte, nonzero is true. A type of its own so templates tell it from uint8. */
struct boolean {
    uint8_t v;
};

/* ---- float types: storage T, compute type C (f32, or f64 for f64) ---- */
template <class T> struct FT;
template <> struct FT<float> {
    using C = float;
    static __device__ __forceinline__ float load(float x) { return x; }
    static __device__ __forceinline__ float store(float c) { return c; }
};
template <> struct FT<double> {
    using C = double;
    static __device__ __forceinline__ double load(double x) { return x; }
    static __device__ __forceinline__ double store(double c) { return c; }
};
template <> struct FT<__half> {
    using C = float;
    static __device__ __forceinline__ float load(__half x) { return __half2float(x); }
    static __device__ __forceinline__ __half store(float c) { return __float2half_rn(c); }
};
template <> struct FT<__nv_bfloat16> {
    using C = float;
    static __device__ __forceinline__ float load(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __device__ __forceinline__ __nv_bfloat16 store(float c) { return __float2bfloat16_rn(c); }
};

template <class T> struct is_float { static constexpr bool value = false; };
template <> struct is_float<float> { static constexpr bool value = true; };
template <> struct is_float<double> { static constexpr bool value = true; };
template <> struct is_float<__half> { static constexpr bool value = true; };
template <> struct is_float<__nv_bfloat16> { static constexpr bool value = true; };

/* ---- dispatch: KILN_CT_* to a C++ type, as a tag passed to a generic lambda ---- */
template <class T> struct tag {
    using type = T;
};

template <class F> static cudaError_t with_float(int ct, F &&f) {
    switch (ct) {
    case KILN_CT_F32: return f(tag<float>{});
    case KILN_CT_F16: return f(tag<__half>{});
    case KILN_CT_BF16: return f(tag<__nv_bfloat16>{});
    case KILN_CT_F64: return f(tag<double>{});
    default: return cudaErrorInvalidValue;
    }
}

template <class F> static cudaError_t with_any(int ct, F &&f) {
    switch (ct) {
    case KILN_CT_F32: return f(tag<float>{});
    case KILN_CT_F16: return f(tag<__half>{});
    case KILN_CT_BF16: return f(tag<__nv_bfloat16>{});
    case KILN_CT_F64: return f(tag<double>{});
    case KILN_CT_I8: return f(tag<int8_t>{});
    case KILN_CT_U8: return f(tag<uint8_t>{});
    case KILN_CT_I16: return f(tag<int16_t>{});
    case KILN_CT_U16: return f(tag<uint16_t>{});
    case KILN_CT_I32: return f(tag<int32_t>{});
    case KILN_CT_U32: return f(tag<uint32_t>{});
    case KILN_CT_I64: return f(tag<int64_t>{});
    case KILN_CT_U64: return f(tag<uint64_t>{});
    case KILN_CT_BOOL: return f(tag<boolean>{});
    default: return cudaErrorInvalidValue;
    }
}

static inline bool ct_is_float(int ct) {
    return ct == KILN_CT_F32 || ct == KILN_CT_F16 || ct == KILN_CT_BF16 || ct == KILN_CT_F64;
}

static inline int ct_size(int ct) {
    switch (ct) {
    case KILN_CT_I8: case KILN_CT_U8: case KILN_CT_BOOL: return 1;
    case KILN_CT_F16: case KILN_CT_BF16: case KILN_CT_I16: case KILN_CT_U16: return 2;
    case KILN_CT_F32: case KILN_CT_I32: case KILN_CT_U32: return 4;
    default: return 8;
    }
}

/* ---- 16-byte vectors: N elements per thread when every pointer is aligned ---- */
template <class T, int N> struct alignas(sizeof(T) * N) Vec {
    T v[N];
};

template <class A, class B = A, class C = A> struct vec_width {
    static constexpr int m1 = sizeof(A) > sizeof(B) ? (int)sizeof(A) : (int)sizeof(B);
    static constexpr int m = m1 > (int)sizeof(C) ? m1 : (int)sizeof(C);
    static constexpr int value = 16 / m > 0 ? 16 / m : 1;
};

static inline bool aligned_to(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

/* ---- launch shape: 256 threads, grid-stride loops over at most 4096 blocks ---- */
constexpr int kThreads = 256;

static inline unsigned blocks_for(int64_t work) {
    int64_t b = (work + kThreads - 1) / kThreads;
    if (b < 1) b = 1;
    if (b > 4096) b = 4096;
    return (unsigned)b;
}

/* ---- division by a fixed divisor: multiply-shift for 32-bit indices (n < 2^31) ---- */
template <class I> struct Div;
template <> struct Div<uint32_t> {
    uint32_t m, s;
    void init(uint32_t d) { /* d >= 1 */
        s = 0;
        while ((1ull << s) < d) s++;
        m = (uint32_t)(((1ull << 32) * ((1ull << s) - d)) / d + 1);
    }
    __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};
template <> struct Div<uint64_t> {
    uint64_t d;
    void init(uint64_t v) { d = v; }
    __device__ __forceinline__ uint64_t div(uint64_t n) const { return n / d; }
};

/* The broadcast geometry of K operands over an output: merged dims innermost first, each
 * operand's element stride on each. Built on the host from kiln_cuda_view (outermost first). */
template <class I, int K> struct Geo {
    int rank;
    I dims[KILN_CUDA_MAX_RANK];
    Div<I> div[KILN_CUDA_MAX_RANK];
    I strides[K][KILN_CUDA_MAX_RANK];
};

template <class I, int K> static Geo<I, K> make_geo(const kiln_cuda_view *v, int n_views) {
    Geo<I, K> g;
    g.rank = v[0].rank > 0 ? v[0].rank : 1;
    for (int d = 0; d < KILN_CUDA_MAX_RANK; d++) {
        int src = v[0].rank - 1 - d; /* innermost first */
        bool live = v[0].rank > 0 && d < v[0].rank;
        g.dims[d] = live ? (I)v[0].dims[src] : (I)1;
        g.div[d].init(g.dims[d] > 0 ? g.dims[d] : 1);
        for (int k = 0; k < K; k++) g.strides[k][d] = live && k < n_views ? (I)v[k].strides[src] : (I)0;
    }
    return g;
}

/* Offsets of output element i in each operand. */
template <class I, int K> __device__ __forceinline__ void geo_offsets(const Geo<I, K> &g, I i, I (&off)[K]) {
#pragma unroll
    for (int k = 0; k < K; k++) off[k] = 0;
#pragma unroll
    for (int d = 0; d < KILN_CUDA_MAX_RANK - 1; d++) {
        if (d >= g.rank - 1) break;
        I q = g.div[d].div(i);
        I r = i - q * g.dims[d];
#pragma unroll
        for (int k = 0; k < K; k++) off[k] += r * g.strides[k][d];
        i = q;
    }
    int last = g.rank - 1;
#pragma unroll
    for (int k = 0; k < K; k++) off[k] += i * g.strides[k][last];
}

/* True when every view walks its operand contiguously (or the output has one element). */
static inline bool views_flat(const kiln_cuda_view *v, int n) {
    for (int k = 0; k < n; k++)
        if (v[k].rank > 1 || (v[k].rank == 1 && v[k].dims[0] > 1 && v[k].strides[0] != 1)) return false;
    return true;
}

/* True when operand k is one element broadcast everywhere. */
static inline bool view_scalar(const kiln_cuda_view *v) {
    for (int d = 0; d < v->rank; d++)
        if (v->strides[d] != 0 && v->dims[d] > 1) return false;
    return true;
}

static inline int64_t view_count(const kiln_cuda_view *v) {
    int64_t n = 1;
    for (int d = 0; d < v->rank; d++) n *= v->dims[d];
    return n;
}

/* Can an operand take a vector walk of n elements along the innermost dim: contiguous there
 * (*vec: loaded as vectors; its other strides multiples of n, its pointer aligned) or broadcast
 * there (*vec false: one element repeated)? The caller checks that the dim is a multiple of n. */
static bool vec_operand(const kiln_cuda_view *v, const void *p, size_t elem, int n, bool *vec) {
    int inner = v->rank - 1;
    int64_t s = v->strides[inner];
    if (s == 0) {
        *vec = false;
        return true;
    }
    if (s != 1 || !aligned_to(p, elem * n)) return false;
    for (int d = 0; d < inner; d++)
        if (v->strides[d] % n != 0) return false;
    *vec = true;
    return true;
}

/* ---- math wrappers over float and double ---- */
#define EW_MATH1(name, f32, f64)                                                                   \
    __device__ __forceinline__ float name(float x) { return f32(x); }                              \
    __device__ __forceinline__ double name(double x) { return f64(x); }
EW_MATH1(m_fabs, fabsf, fabs)
EW_MATH1(m_floor, floorf, floor)
EW_MATH1(m_ceil, ceilf, ceil)
EW_MATH1(m_rint, rintf, rint)
EW_MATH1(m_sqrt, sqrtf, sqrt)
EW_MATH1(m_exp, expf, exp)
EW_MATH1(m_expm1, expm1f, expm1)
EW_MATH1(m_log, logf, log)
EW_MATH1(m_log1p, log1pf, log1p)
EW_MATH1(m_sin, sinf, sin)
EW_MATH1(m_cos, cosf, cos)
EW_MATH1(m_tan, tanf, tan)
EW_MATH1(m_asin, asinf, asin)
EW_MATH1(m_acos, acosf, acos)
EW_MATH1(m_atan, atanf, atan)
EW_MATH1(m_sinh, sinhf, sinh)
EW_MATH1(m_cosh, coshf, cosh)
EW_MATH1(m_tanh, tanhf, tanh)
EW_MATH1(m_asinh, asinhf, asinh)
EW_MATH1(m_acosh, acoshf, acosh)
EW_MATH1(m_atanh, atanhf, atanh)
EW_MATH1(m_erf, erff, erf)
#undef EW_MATH1
__device__ __forceinline__ float m_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double m_pow(double a, double b) { return pow(a, b); }
__device__ __forceinline__ float m_fmod(float a, float b) { return fmodf(a, b); }
__device__ __forceinline__ double m_fmod(double a, double b) { return fmod(a, b); }
__device__ __forceinline__ float m_copysign(float a, float b) { return copysignf(a, b); }
__device__ __forceinline__ double m_copysign(double a, double b) { return copysign(a, b); }
__device__ __forceinline__ float m_fmax(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double m_fmax(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float m_fmin(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ double m_fmin(double a, double b) { return fmin(a, b); }

/* max and min that keep a NaN first operand or a NaN second one, as numpy.maximum/minimum */
template <class C> __device__ __forceinline__ C max_nan(C a, C b) { return (a != a) || a > b ? a : b; }
template <class C> __device__ __forceinline__ C min_nan(C a, C b) { return (a != a) || a < b ? a : b; }

/* ---- fused activation epilogue (kiln_act_eval in src/ir/act.c; numbering of kiln_act_kind) ---- */
enum {
    EW_ACT_NONE = 0, EW_ACT_RELU, EW_ACT_CLIP, EW_ACT_SIGMOID, EW_ACT_SILU, EW_ACT_HARDSWISH, EW_ACT_GELU,
    EW_ACT_GELU_TANH, EW_ACT_LEAKY_RELU, EW_ACT_TANH
};

template <class C> __device__ __forceinline__ C act_apply(const kiln_cuda_act &a, C x) {
    switch (a.kind) {
    case EW_ACT_RELU: return x > C(0) ? x : C(0);
    case EW_ACT_CLIP: return x < C(a.alpha) ? C(a.alpha) : x > C(a.beta) ? C(a.beta) : x;
    case EW_ACT_SIGMOID: return C(1) / (C(1) + m_exp(-x));
    case EW_ACT_SILU: return x / (C(1) + m_exp(-x));
    case EW_ACT_HARDSWISH: return x * m_fmax(C(0), m_fmin(C(1), x / C(6) + C(0.5)));
    case EW_ACT_GELU: return C(0.5) * x * (C(1) + m_erf(x / m_sqrt(C(2))));
    case EW_ACT_GELU_TANH:
        return C(0.5) * x * (C(1) + m_tanh(C(0.79788456080286535588) * (x + C(0.044715) * x * x * x)));
    case EW_ACT_LEAKY_RELU: return x >= C(0) ? x : C(a.alpha) * x;
    case EW_ACT_TANH: return m_tanh(x);
    default: return x;
    }
}

/* ---- runtime-typed access for the integer (and mixed-dtype) kernels ---- */
static inline bool ct_is_unsigned(int ct) {
    return ct == KILN_CT_U8 || ct == KILN_CT_U16 || ct == KILN_CT_U32 || ct == KILN_CT_U64;
}

static inline int ct_bits(int ct) { return ct_size(ct) * 8; }

/* Element i as 64-bit two's complement bits: sign-extended for signed dtypes, zero-extended
 * for unsigned ones, 0 or 1 for bool. */
__device__ __forceinline__ uint64_t ld_bits(int ct, const void *p, int64_t i) {
    switch (ct) {
    case KILN_CT_I8: return (uint64_t)(int64_t)((const int8_t *)p)[i];
    case KILN_CT_U8: return ((const uint8_t *)p)[i];
    case KILN_CT_BOOL: return ((const uint8_t *)p)[i] != 0;
    case KILN_CT_I16: return (uint64_t)(int64_t)((const int16_t *)p)[i];
    case KILN_CT_U16: return ((const uint16_t *)p)[i];
    case KILN_CT_I32: return (uint64_t)(int64_t)((const int32_t *)p)[i];
    case KILN_CT_U32: return ((const uint32_t *)p)[i];
    default: return ((const uint64_t *)p)[i]; /* I64, U64 */
    }
}

/* Element i's value as double (floats exactly, integers rounded to nearest). */
__device__ __forceinline__ double ld_f64(int ct, const void *p, int64_t i) {
    switch (ct) {
    case KILN_CT_F32: return ((const float *)p)[i];
    case KILN_CT_F64: return ((const double *)p)[i];
    case KILN_CT_F16: return __half2float(((const __half *)p)[i]);
    case KILN_CT_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case KILN_CT_U8: case KILN_CT_U16: case KILN_CT_U32: case KILN_CT_U64: return (double)ld_bits(ct, p, i);
    default: return (double)(int64_t)ld_bits(ct, p, i);
    }
}

/* Stores the low bits of v; bool stores v != 0. */
__device__ __forceinline__ void st_bits(int ct, void *p, int64_t i, uint64_t v) {
    switch (ct) {
    case KILN_CT_I8: case KILN_CT_U8: ((uint8_t *)p)[i] = (uint8_t)v; return;
    case KILN_CT_BOOL: ((uint8_t *)p)[i] = v != 0; return;
    case KILN_CT_I16: case KILN_CT_U16: ((uint16_t *)p)[i] = (uint16_t)v; return;
    case KILN_CT_I32: case KILN_CT_U32: ((uint32_t *)p)[i] = (uint32_t)v; return;
    default: ((uint64_t *)p)[i] = v; return;
    }
}

/* Stores a double rounded once to a float dtype. */
__device__ __forceinline__ void st_float(int ct, void *p, int64_t i, double v) {
    switch (ct) {
    case KILN_CT_F32: ((float *)p)[i] = (float)v; return;
    case KILN_CT_F16: ((__half *)p)[i] = __double2half(v); return;
    case KILN_CT_BF16: ((__nv_bfloat16 *)p)[i] = __double2bfloat16(v); return;
    default: ((double *)p)[i] = v; return;
    }
}

/* Float to integer bits as the reference does it (math_f64_to_int in src/ops/math_internal.h):
 * truncation; NaN and out-of-range values as x86-64 code gives them. */
__device__ __forceinline__ int64_t cvtt32(double v) {
    if (!(v > -2147483649.0 && v < 2147483648.0)) return INT32_MIN;
    return (int64_t)v;
}

__device__ __forceinline__ int64_t cvtt64(double v) {
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)v;
}

__device__ __forceinline__ uint64_t f64_to_int(int ct, double v) {
    switch (ct) {
    case KILN_CT_I64: return (uint64_t)cvtt64(v);
    case KILN_CT_U32:
        return (uint64_t)(v >= 2147483648.0 ? cvtt32(v - 2147483648.0) + 2147483648LL : cvtt32(v));
    case KILN_CT_U64:
        if (v >= 9223372036854775808.0) return (uint64_t)cvtt64(v - 9223372036854775808.0) ^ (1ull << 63);
        return (uint64_t)cvtt64(v);
    default: return (uint64_t)cvtt32(v);
    }
}

/* The KILN_CT_* of an integer storage type (for f64_to_int in templates). */
template <class T> struct ct_of;
template <> struct ct_of<int8_t> { static constexpr int value = KILN_CT_I8; };
template <> struct ct_of<uint8_t> { static constexpr int value = KILN_CT_U8; };
template <> struct ct_of<int16_t> { static constexpr int value = KILN_CT_I16; };
template <> struct ct_of<uint16_t> { static constexpr int value = KILN_CT_U16; };
template <> struct ct_of<int32_t> { static constexpr int value = KILN_CT_I32; };
template <> struct ct_of<uint32_t> { static constexpr int value = KILN_CT_U32; };
template <> struct ct_of<int64_t> { static constexpr int value = KILN_CT_I64; };
template <> struct ct_of<uint64_t> { static constexpr int value = KILN_CT_U64; };
template <> struct ct_of<boolean> { static constexpr int value = KILN_CT_BOOL; };

/* ---- one-input map: y[i] = f(x[i]), 16-byte vectors on the aligned prefix ---- */
template <class Tin, class Tout, class F>
__global__ void __launch_bounds__(kThreads) k_map(const Tin *x, Tout *y, int64_t n, int64_t nvec, F f) {
    constexpr int N = vec_width<Tin, Tout>::value;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t v = t; v < nvec; v += stride) {
        Vec<Tin, N> a = reinterpret_cast<const Vec<Tin, N> *>(x)[v];
        Vec<Tout, N> b;
#pragma unroll
        for (int j = 0; j < N; j++) b.v[j] = f(a.v[j]);
        reinterpret_cast<Vec<Tout, N> *>(y)[v] = b;
    }
    for (int64_t i = nvec * N + t; i < n; i += stride) y[i] = f(x[i]);
}

template <class Tin, class Tout, class F>
static cudaError_t launch_map(const void *x, void *y, int64_t n, F f, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    constexpr int N = vec_width<Tin, Tout>::value;
    bool vec = aligned_to(x, sizeof(Tin) * N) && aligned_to(y, sizeof(Tout) * N);
    int64_t nvec = vec ? n / N : 0;
    int64_t work = nvec + (n - nvec * N);
    k_map<Tin, Tout, F><<<blocks_for(work), kThreads, 0, stream>>>((const Tin *)x, (Tout *)y, n, nvec, f);
    return cudaGetLastError();
}

} // namespace ew

#endif /* KILN_CUDA_ELEMENTWISE_COMMON_CUH */
