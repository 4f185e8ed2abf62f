/* elementwise_binary.cu — two-input broadcasting kernels: arithmetic, Pow, Mod, PRelu,
 * comparisons, logic, bitwise and shifts (semantics of src/backends/ref/binary.c and PRelu in
 * activation.c).
 *
 * Float dtypes with one dtype for both inputs run one kernel per (dtype, shape class) and per op
 * for Add/Sub/Mul/Div (the rest: per kind, the op chosen at run time):
 *   both operands contiguous, or one of them a single element: 16-byte vectors on aligned data;
 *   anything else: merged broadcast dims with 32-bit fast division (64-bit past 2^31 elements),
 *   N elements a step along the innermost dim when it allows 16-byte vectors (a bias add).
 * Integer and bool dtypes, and Pow with an exponent of another dtype, run one runtime-typed
 * kernel on 64-bit two's complement bits (Pow of floats in f64), exactly as the reference. */
#include "elementwise_common.cuh"

namespace ew {

/* numpy.mod: the result has the divisor's sign, zero as +-0 */
template <class C> __device__ __forceinline__ C py_mod(C a, C b) {
    C m = m_fmod(a, b);
    if (b == C(0)) return m; /* NaN */
    if (m != C(0)) {
        if ((b < C(0)) != (m < C(0))) m += b;
    } else {
        m = m_copysign(C(0), b);
    }
    return m;
}

template <int OP, class C> __device__ __forceinline__ C arith(C a, C b) {
    if constexpr (OP == KILN_EW_ADD) return a + b;
    else if constexpr (OP == KILN_EW_SUB) return a - b;
    else if constexpr (OP == KILN_EW_MUL) return a * b;
    else if constexpr (OP == KILN_EW_DIV) return a / b;
    else if constexpr (OP == KILN_EW_MOD) return py_mod(a, b);
    else if constexpr (OP == KILN_EW_FMOD) return m_fmod(a, b);
    else if constexpr (OP == KILN_EW_POW) return b == C(2) ? a * a : m_pow(a, b); /* x^2: exact either way */
    else if constexpr (OP == KILN_EW_PRELU) return a < C(0) ? b * a : a;
    else {
        static_assert(OP < 0, "not a float arithmetic op");
        return a;
    }
}

template <int OP, class C> __device__ __forceinline__ bool compare(C a, C b) {
    if constexpr (OP == KILN_EW_EQUAL) return a == b;
    else if constexpr (OP == KILN_EW_LESS) return a < b;
    else if constexpr (OP == KILN_EW_GREATER) return a > b;
    else if constexpr (OP == KILN_EW_LESS_EQUAL) return a <= b;
    else return a >= b;
}

/* Mod, Pow, PRelu and the comparisons: one functor per dtype, the op a (uniform) switch at run
 * time, to keep the kernel count and the build time down. */
template <class C> __device__ __forceinline__ C arith_rt(int op, C a, C b) {
    switch (op) {
    case KILN_EW_MOD: return arith<KILN_EW_MOD>(a, b);
    case KILN_EW_FMOD: return arith<KILN_EW_FMOD>(a, b);
    case KILN_EW_POW: return arith<KILN_EW_POW>(a, b);
    default: return arith<KILN_EW_PRELU>(a, b);
    }
}

template <class C> __device__ __forceinline__ bool compare_rt(int op, C a, C b) {
    switch (op) {
    case KILN_EW_EQUAL: return compare<KILN_EW_EQUAL>(a, b);
    case KILN_EW_LESS: return compare<KILN_EW_LESS>(a, b);
    case KILN_EW_GREATER: return compare<KILN_EW_GREATER>(a, b);
    case KILN_EW_LESS_EQUAL: return compare<KILN_EW_LESS_EQUAL>(a, b);
    default: return compare<KILN_EW_GREATER_EQUAL>(a, b);
    }
}

template <class T> struct FloatArithRt {
    int op;
    kiln_cuda_act act;
    __device__ __forceinline__ T operator()(T a, T b) const {
        return FT<T>::store(act_apply(act, arith_rt(op, FT<T>::load(a), FT<T>::load(b))));
    }
};

template <class T> struct FloatCompareRt {
    int op;
    __device__ __forceinline__ boolean operator()(T a, T b) const {
        return boolean{(uint8_t)compare_rt(op, FT<T>::load(a), FT<T>::load(b))};
    }
};

/* Add, Sub, Mul, Div: a kernel each (the op known at compile time) */
template <class T, int OP> struct FloatBinary {
    kiln_cuda_act act;
    __device__ __forceinline__ T operator()(T a, T b) const {
        return FT<T>::store(act_apply(act, arith<OP>(FT<T>::load(a), FT<T>::load(b))));
    }
};

/* mode 0: both contiguous; 1: a is one element; 2: b is one element (uniform branches). */
template <class Ta, class Tb, class To, class F>
__global__ void __launch_bounds__(kThreads)
    k_zip_flat(const Ta *a, const Tb *b, To *y, int64_t n, int64_t nvec, int mode, F f) {
    constexpr int N = vec_width<Ta, Tb, To>::value;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    Ta a0 = a[0];
    Tb b0 = b[0];
    for (int64_t v = t; v < nvec; v += stride) {
        Vec<Ta, N> va;
        Vec<Tb, N> vb;
        if (mode != 1) va = reinterpret_cast<const Vec<Ta, N> *>(a)[v];
        else
#pragma unroll
            for (int j = 0; j < N; j++) va.v[j] = a0;
        if (mode != 2) vb = reinterpret_cast<const Vec<Tb, N> *>(b)[v];
        else
#pragma unroll
            for (int j = 0; j < N; j++) vb.v[j] = b0;
        Vec<To, N> r;
#pragma unroll
        for (int j = 0; j < N; j++) r.v[j] = f(va.v[j], vb.v[j]);
        reinterpret_cast<Vec<To, N> *>(y)[v] = r;
    }
    for (int64_t i = nvec * N + t; i < n; i += stride) y[i] = f(mode == 1 ? a0 : a[i], mode == 2 ? b0 : b[i]);
}

template <class Ta, class Tb, class To, class F, class I>
__global__ void __launch_bounds__(kThreads) k_zip_geo(const Ta *a, const Tb *b, To *y, I n, Geo<I, 2> g, F f) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        I off[2];
        geo_offsets(g, i, off);
        y[i] = f(a[off[0]], b[off[1]]);
    }
}

/* The broadcast walk N elements at a time along the innermost dim (a multiple of N), where
 * each operand either runs contiguously there (loaded as one 16-byte vector: its other strides
 * are multiples of N and its pointer aligned) or is broadcast (one element, repeated). */
template <class Ta, class Tb, class To, class F, class I>
__global__ void __launch_bounds__(kThreads)
    k_zip_geo_vec(const Ta *a, const Tb *b, To *y, I nvec, Geo<I, 2> g, bool a_vec, bool b_vec, F f) {
    constexpr int N = vec_width<Ta, Tb, To>::value;
    I stride = (I)gridDim.x * blockDim.x;
    for (I v = (I)blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += stride) {
        I off[2];
        geo_offsets(g, v * (I)N, off);
        Vec<Ta, N> va;
        Vec<Tb, N> vb;
        if (a_vec) {
            va = *reinterpret_cast<const Vec<Ta, N> *>(a + off[0]);
        } else {
#pragma unroll
            for (int j = 0; j < N; j++) va.v[j] = a[off[0]];
        }
        if (b_vec) {
            vb = *reinterpret_cast<const Vec<Tb, N> *>(b + off[1]);
        } else {
#pragma unroll
            for (int j = 0; j < N; j++) vb.v[j] = b[off[1]];
        }
        Vec<To, N> r;
#pragma unroll
        for (int j = 0; j < N; j++) r.v[j] = f(va.v[j], vb.v[j]);
        reinterpret_cast<Vec<To, N> *>(y)[v] = r;
    }
}

template <class Ta, class Tb, class To, class F>
static cudaError_t launch_zip(const void *pa, const void *pb, void *py, const kiln_cuda_view *va,
                              const kiln_cuda_view *vb, F f, cudaStream_t s) {
    int64_t n = view_count(va);
    if (n <= 0) return cudaSuccess;
    const Ta *a = (const Ta *)pa;
    const Tb *b = (const Tb *)pb;
    To *y = (To *)py;
    bool fa = views_flat(va, 1), fb = views_flat(vb, 1);
    int mode = fa && fb ? 0 : view_scalar(va) && fb ? 1 : fa && view_scalar(vb) ? 2 : -1;
    if (mode >= 0) {
        constexpr int N = vec_width<Ta, Tb, To>::value;
        bool vec = aligned_to(y, sizeof(To) * N) && (mode == 1 || aligned_to(a, sizeof(Ta) * N)) &&
                   (mode == 2 || aligned_to(b, sizeof(Tb) * N));
        int64_t nvec = vec ? n / N : 0;
        unsigned blocks = blocks_for(nvec + (n - nvec * N));
        k_zip_flat<Ta, Tb, To, F><<<blocks, kThreads, 0, s>>>(a, b, y, n, nvec, mode, f);
        return cudaGetLastError();
    }
    kiln_cuda_view v[2] = {*va, *vb};
    constexpr int N = vec_width<Ta, Tb, To>::value;
    bool a_vec, b_vec;
    if (N > 1 && n <= INT32_MAX && va->dims[va->rank - 1] % N == 0 && aligned_to(y, sizeof(To) * N) &&
        vec_operand(va, a, sizeof(Ta), N, &a_vec) && vec_operand(vb, b, sizeof(Tb), N, &b_vec)) {
        int64_t nvec = n / N;
        k_zip_geo_vec<Ta, Tb, To, F, uint32_t><<<blocks_for(nvec), kThreads, 0, s>>>(
            a, b, y, (uint32_t)nvec, make_geo<uint32_t, 2>(v, 2), a_vec, b_vec, f);
        return cudaGetLastError();
    }
    if (n <= INT32_MAX)
        k_zip_geo<Ta, Tb, To, F, uint32_t><<<blocks_for(n), kThreads, 0, s>>>(a, b, y, (uint32_t)n,
                                                                             make_geo<uint32_t, 2>(v, 2), f);
    else
        k_zip_geo<Ta, Tb, To, F, uint64_t><<<blocks_for(n), kThreads, 0, s>>>(a, b, y, (uint64_t)n,
                                                                             make_geo<uint64_t, 2>(v, 2), f);
    return cudaGetLastError();
}

template <class T>
static cudaError_t float_binary(int op, const void *a, const void *b, void *y, const kiln_cuda_view *va,
                                const kiln_cuda_view *vb, const kiln_cuda_act &act, cudaStream_t s) {
    switch (op) {
    case KILN_EW_ADD: return launch_zip<T, T, T>(a, b, y, va, vb, FloatBinary<T, KILN_EW_ADD>{act}, s);
    case KILN_EW_SUB: return launch_zip<T, T, T>(a, b, y, va, vb, FloatBinary<T, KILN_EW_SUB>{act}, s);
    case KILN_EW_MUL: return launch_zip<T, T, T>(a, b, y, va, vb, FloatBinary<T, KILN_EW_MUL>{act}, s);
    case KILN_EW_DIV: return launch_zip<T, T, T>(a, b, y, va, vb, FloatBinary<T, KILN_EW_DIV>{act}, s);
    case KILN_EW_MOD: case KILN_EW_FMOD: case KILN_EW_POW: case KILN_EW_PRELU:
        return launch_zip<T, T, T>(a, b, y, va, vb, FloatArithRt<T>{op, act}, s);
    case KILN_EW_EQUAL: case KILN_EW_LESS: case KILN_EW_GREATER: case KILN_EW_LESS_EQUAL: case KILN_EW_GREATER_EQUAL:
        return launch_zip<T, T, boolean>(a, b, y, va, vb, FloatCompareRt<T>{op}, s);
    default: return cudaErrorInvalidValue;
    }
}

/* ---- runtime-typed: integers, bool, and Pow with mixed dtypes ---- */
struct GenBinary {
    int op, cta, ctb, cto;
    bool a_float, b_float, a_unsigned, b_unsigned;
    int bits; /* of a's dtype, for shifts */
    kiln_cuda_act act;
};

__device__ __forceinline__ uint64_t shift(bool left, uint64_t a, uint64_t b, bool is_unsigned, int bits) {
    bool negative = !is_unsigned && (int64_t)a < 0;
    bool out_of_range = is_unsigned ? b >= (uint64_t)bits : ((int64_t)b < 0 || (int64_t)b >= bits);
    if (left) return out_of_range ? 0 : a << b;
    if (out_of_range) return negative ? UINT64_MAX : 0;
    if (negative) return ~(~a >> b); /* arithmetic: a is sign-extended */
    return a >> b;
}

/* Integer power by squaring, wrapping; a negative exponent gives 0 except for bases 1 and -1. */
__device__ __forceinline__ uint64_t ipow(int64_t base, uint64_t e, bool e_negative) {
    if (e_negative) return base == 1 ? 1 : base == -1 ? ((e & 1) ? UINT64_MAX : 1) : 0;
    uint64_t r = 1, x = (uint64_t)base;
    for (; e; e >>= 1) {
        if (e & 1) r *= x;
        x *= x;
    }
    return r;
}

__device__ __forceinline__ uint64_t int_arith(const GenBinary &g, uint64_t a, uint64_t b) {
    int64_t sa = (int64_t)a, sb = (int64_t)b;
    bool u = g.a_unsigned;
    switch (g.op) {
    case KILN_EW_ADD: return a + b;
    case KILN_EW_SUB: return a - b;
    case KILN_EW_MUL: return a * b;
    case KILN_EW_DIV:
        if (b == 0) return 0;
        if (u) return a / b;
        if (sa == INT64_MIN && sb == -1) return a;
        return (uint64_t)(sa / sb);
    case KILN_EW_MOD: case KILN_EW_FMOD: {
        if (b == 0) return 0;
        if (u) return a % b;
        if (sb == -1) return 0;
        int64_t r = sa % sb;
        if (g.op == KILN_EW_MOD && r != 0 && ((r < 0) != (sb < 0))) r += sb;
        return (uint64_t)r;
    }
    case KILN_EW_POW: return ipow(sa, b, !g.b_unsigned && sb < 0);
    case KILN_EW_PRELU: return !u && sa < 0 ? b * a : a;
    case KILN_EW_AND: return a & b;
    case KILN_EW_OR: return a | b;
    case KILN_EW_XOR: return a ^ b;
    case KILN_EW_SHL: return shift(true, a, b, u, g.bits);
    case KILN_EW_SHR: return shift(false, a, b, u, g.bits);
    default: { /* comparisons */
        int c = u ? (a < b ? -1 : a > b) : (sa < sb ? -1 : sa > sb);
        switch (g.op) {
        case KILN_EW_EQUAL: return c == 0;
        case KILN_EW_LESS: return c == -1;
        case KILN_EW_GREATER: return c == 1;
        case KILN_EW_LESS_EQUAL: return c <= 0;
        default: return c >= 0;
        }
    }
    }
}

template <class I>
__global__ void __launch_bounds__(kThreads)
    k_gen_zip(const void *a, const void *b, void *y, I n, Geo<I, 2> geo, GenBinary g) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        I off[2];
        geo_offsets(geo, i, off);
        if (g.a_float || g.b_float) { /* Pow: in double, rounded once (or truncated for an integer base) */
            double v = pow(ld_f64(g.cta, a, off[0]), ld_f64(g.ctb, b, off[1]));
            if (g.a_float) st_float(g.cto, y, i, act_apply(g.act, v));
            else st_bits(g.cto, y, i, f64_to_int(g.cta, v));
        } else {
            st_bits(g.cto, y, i, int_arith(g, ld_bits(g.cta, a, off[0]), ld_bits(g.ctb, b, off[1])));
        }
    }
}

} // namespace ew

using namespace ew;

KILN_CUDA_EXTERN cudaError_t kiln_ew_binary(int op, int ct_a, int ct_b, int ct_out, const void *a, const void *b,
                                            void *y, const kiln_cuda_view *va, const kiln_cuda_view *vb,
                                            kiln_cuda_act act, cudaStream_t stream) {
    int64_t n = view_count(va);
    if (n <= 0) return cudaSuccess;
    if (ct_is_float(ct_a) && ct_b == ct_a)
        return with_float(ct_a, [&](auto t) {
            using T = typename decltype(t)::type;
            return float_binary<T>(op, a, b, y, va, vb, act, stream);
        });
    if (ct_b != ct_a && op != KILN_EW_POW) return cudaErrorInvalidValue;
    GenBinary g = {op, ct_a, ct_b, ct_out, ct_is_float(ct_a), ct_is_float(ct_b),
                   ct_is_unsigned(ct_a) || ct_a == KILN_CT_BOOL, ct_is_unsigned(ct_b), ct_bits(ct_a), act};
    kiln_cuda_view v[2] = {*va, *vb};
    if (n <= INT32_MAX)
        k_gen_zip<uint32_t><<<blocks_for(n), kThreads, 0, stream>>>(a, b, y, (uint32_t)n, make_geo<uint32_t, 2>(v, 2), g);
    else
        k_gen_zip<uint64_t><<<blocks_for(n), kThreads, 0, stream>>>(a, b, y, (uint64_t)n, make_geo<uint64_t, 2>(v, 2), g);
    return cudaGetLastError();
}
