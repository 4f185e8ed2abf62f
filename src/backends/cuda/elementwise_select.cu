/* elementwise_select.cu — many-input elementwise kernels: Sum/Mean/Max/Min over up to
 * KILN_EW_MAX_IN broadcast inputs a pass (more go through an accumulator, see
 * kernels_elementwise.h), and Where's three-way broadcast copy.
 * Contiguous inputs take 16-byte vectors, and so do broadcasts whose innermost dim allows it.
 * Semantics of src/backends/ref/variadic.c (fold in input order, Max/Min propagate NaN, Mean
 * divides the sum by the input count) and where_clip.c. Floats fold in f32 (f64 for f64),
 * integers (Max/Min) on 64-bit values, unsigned ones compared as unsigned. */
#include "elementwise_common.cuh"

namespace ew {

template <int OP, class C> __device__ __forceinline__ C fold(C acc, C v) {
    if constexpr (OP == KILN_EW_MAX) return (acc != acc) || acc > v ? acc : v;
    else if constexpr (OP == KILN_EW_MIN) return (acc != acc) || acc < v ? acc : v;
    else return acc + v;
}

template <class T, class I> struct VarArgs {
    using C = typename FT<T>::C;
    const T *x[KILN_EW_MAX_IN];
    int n_in, n_total;
    bool flat;
    Geo<I, KILN_EW_MAX_IN> g;
    const C *acc_in;
    C *acc_out;
    T *y;
    I n;
    kiln_cuda_act act;
};

template <class T, int OP, class I> __global__ void __launch_bounds__(kThreads) k_variadic(VarArgs<T, I> p) {
    using C = typename FT<T>::C;
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += stride) {
        I off[KILN_EW_MAX_IN];
        if (p.flat) {
#pragma unroll
            for (int k = 0; k < KILN_EW_MAX_IN; k++) off[k] = i;
        } else {
            geo_offsets(p.g, i, off);
        }
        C acc = p.acc_in ? p.acc_in[i] : FT<T>::load(p.x[0][off[0]]);
#pragma unroll
        for (int k = 0; k < KILN_EW_MAX_IN; k++) {
            if (k >= p.n_in) break;
            if (k == 0 && !p.acc_in) continue;
            acc = fold<OP>(acc, FT<T>::load(p.x[k][off[k]]));
        }
        if (p.acc_out) {
            p.acc_out[i] = acc;
        } else {
            if constexpr (OP == KILN_EW_MEAN) acc = acc / C(p.n_total);
            p.y[i] = FT<T>::store(act_apply(p.act, acc));
        }
    }
}

/* Contiguous same-shape inputs, no running value: N elements a thread with 16-byte vectors. */
template <class T, int OP>
__global__ void __launch_bounds__(kThreads) k_variadic_vec(VarArgs<T, uint64_t> p, int64_t nvec) {
    using C = typename FT<T>::C;
    constexpr int N = vec_width<T>::value;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t v = t; v < nvec; v += stride) {
        C acc[N];
        Vec<T, N> x = reinterpret_cast<const Vec<T, N> *>(p.x[0])[v];
#pragma unroll
        for (int j = 0; j < N; j++) acc[j] = FT<T>::load(x.v[j]);
#pragma unroll
        for (int k = 1; k < KILN_EW_MAX_IN; k++) {
            if (k >= p.n_in) break;
            x = reinterpret_cast<const Vec<T, N> *>(p.x[k])[v];
#pragma unroll
            for (int j = 0; j < N; j++) acc[j] = fold<OP>(acc[j], FT<T>::load(x.v[j]));
        }
        Vec<T, N> r;
#pragma unroll
        for (int j = 0; j < N; j++) {
            C a = acc[j];
            if constexpr (OP == KILN_EW_MEAN) a = a / C(p.n_total);
            r.v[j] = FT<T>::store(act_apply(p.act, a));
        }
        reinterpret_cast<Vec<T, N> *>(p.y)[v] = r;
    }
    for (int64_t i = nvec * N + t; i < (int64_t)p.n; i += stride) {
        C acc = FT<T>::load(p.x[0][i]);
#pragma unroll
        for (int k = 1; k < KILN_EW_MAX_IN; k++) {
            if (k >= p.n_in) break;
            acc = fold<OP>(acc, FT<T>::load(p.x[k][i]));
        }
        if constexpr (OP == KILN_EW_MEAN) acc = acc / C(p.n_total);
        p.y[i] = FT<T>::store(act_apply(p.act, acc));
    }
}

template <class T, int OP>
static bool try_variadic_vec(int n_in, const void *const *x, const kiln_cuda_view *v, const void *acc_in,
                             void *acc_out, void *y, int n_total, const kiln_cuda_act &act, int64_t n, cudaStream_t s) {
    constexpr int N = vec_width<T>::value;
    if (acc_in || acc_out || !views_flat(v, n_in) || !aligned_to(y, 16)) return false;
    for (int k = 0; k < n_in; k++)
        if (!aligned_to(x[k], 16)) return false;
    VarArgs<T, uint64_t> p;
    for (int k = 0; k < KILN_EW_MAX_IN; k++) p.x[k] = (const T *)x[k < n_in ? k : 0];
    p.n_in = n_in;
    p.n_total = n_total;
    p.flat = true;
    p.acc_in = NULL;
    p.acc_out = NULL;
    p.y = (T *)y;
    p.n = (uint64_t)n;
    p.act = act;
    int64_t nvec = n / N;
    k_variadic_vec<T, OP><<<blocks_for(nvec + (n - nvec * N)), kThreads, 0, s>>>(p, nvec);
    return true;
}

template <class T, int OP, class I>
static cudaError_t launch_variadic(int n_in, const void *const *x, const kiln_cuda_view *v, const void *acc_in,
                                   void *acc_out, void *y, int n_total, const kiln_cuda_act &act, I n,
                                   cudaStream_t s) {
    using C = typename FT<T>::C;
    if (try_variadic_vec<T, OP>(n_in, x, v, acc_in, acc_out, y, n_total, act, (int64_t)n, s)) return cudaGetLastError();
    VarArgs<T, I> p;
    for (int k = 0; k < KILN_EW_MAX_IN; k++) p.x[k] = (const T *)x[k < n_in ? k : 0];
    p.n_in = n_in;
    p.n_total = n_total;
    p.flat = views_flat(v, n_in);
    p.g = make_geo<I, KILN_EW_MAX_IN>(v, n_in);
    p.acc_in = (const C *)acc_in;
    p.acc_out = (C *)acc_out;
    p.y = (T *)y;
    p.n = n;
    p.act = act;
    k_variadic<T, OP, I><<<blocks_for((int64_t)n), kThreads, 0, s>>>(p);
    return cudaGetLastError();
}

template <class T, class I>
static cudaError_t float_variadic(int op, int n_in, const void *const *x, const kiln_cuda_view *v, const void *acc_in,
                                  void *acc_out, void *y, int n_total, const kiln_cuda_act &act, I n,
                                  cudaStream_t s) {
    switch (op) {
    case KILN_EW_SUM: return launch_variadic<T, KILN_EW_SUM, I>(n_in, x, v, acc_in, acc_out, y, n_total, act, n, s);
    case KILN_EW_MEAN: return launch_variadic<T, KILN_EW_MEAN, I>(n_in, x, v, acc_in, acc_out, y, n_total, act, n, s);
    case KILN_EW_MAX: return launch_variadic<T, KILN_EW_MAX, I>(n_in, x, v, acc_in, acc_out, y, n_total, act, n, s);
    case KILN_EW_MIN: return launch_variadic<T, KILN_EW_MIN, I>(n_in, x, v, acc_in, acc_out, y, n_total, act, n, s);
    default: return cudaErrorInvalidValue;
    }
}

/* ---- integer Max/Min: runtime-typed ---- */
template <class I> struct IntVarArgs {
    const void *x[KILN_EW_MAX_IN];
    int n_in, ct, op;
    bool flat, is_unsigned;
    Geo<I, KILN_EW_MAX_IN> g;
    const uint64_t *acc_in;
    uint64_t *acc_out;
    void *y;
    I n;
};

template <class I> __global__ void __launch_bounds__(kThreads) k_int_variadic(IntVarArgs<I> p) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += stride) {
        I off[KILN_EW_MAX_IN];
        if (p.flat) {
#pragma unroll
            for (int k = 0; k < KILN_EW_MAX_IN; k++) off[k] = i;
        } else {
            geo_offsets(p.g, i, off);
        }
        uint64_t acc = p.acc_in ? p.acc_in[i] : ld_bits(p.ct, p.x[0], off[0]);
#pragma unroll
        for (int k = 0; k < KILN_EW_MAX_IN; k++) {
            if (k >= p.n_in) break;
            if (k == 0 && !p.acc_in) continue;
            uint64_t v = ld_bits(p.ct, p.x[k], off[k]);
            bool greater = p.is_unsigned ? acc > v : (int64_t)acc > (int64_t)v;
            if (p.op == KILN_EW_MAX) acc = greater ? acc : v;
            else acc = greater ? v : acc;
        }
        if (p.acc_out) p.acc_out[i] = acc;
        else st_bits(p.ct, p.y, i, acc);
    }
}

template <class I>
static cudaError_t int_variadic(int op, int ct, int n_in, const void *const *x, const kiln_cuda_view *v,
                                const void *acc_in, void *acc_out, void *y, I n, cudaStream_t s) {
    IntVarArgs<I> p;
    for (int k = 0; k < KILN_EW_MAX_IN; k++) p.x[k] = x[k < n_in ? k : 0];
    p.n_in = n_in;
    p.ct = ct;
    p.op = op;
    p.flat = views_flat(v, n_in);
    p.is_unsigned = ct_is_unsigned(ct);
    p.g = make_geo<I, KILN_EW_MAX_IN>(v, n_in);
    p.acc_in = (const uint64_t *)acc_in;
    p.acc_out = (uint64_t *)acc_out;
    p.y = y;
    p.n = n;
    k_int_variadic<I><<<blocks_for((int64_t)n), kThreads, 0, s>>>(p);
    return cudaGetLastError();
}

template <class I>
static cudaError_t variadic(int op, int ct, int n_in, const void *const *x, const kiln_cuda_view *v,
                            const void *acc_in, void *acc_out, void *y, int n_total, const kiln_cuda_act &act, I n,
                            cudaStream_t s) {
    if (!ct_is_float(ct)) {
        if (op != KILN_EW_MAX && op != KILN_EW_MIN) return cudaErrorInvalidValue;
        return int_variadic<I>(op, ct, n_in, x, v, acc_in, acc_out, y, n, s);
    }
    return with_float(ct, [&](auto t) {
        using T = typename decltype(t)::type;
        return float_variadic<T, I>(op, n_in, x, v, acc_in, acc_out, y, n_total, act, n, s);
    });
}

/* ---- Where ---- */
template <class E, class I>
__global__ void __launch_bounds__(kThreads)
    k_where(const uint8_t *c, const E *x, const E *y, E *out, I n, bool flat, Geo<I, 3> g) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        if (flat) {
            out[i] = c[i] ? x[i] : y[i];
        } else {
            I off[3];
            geo_offsets(g, i, off);
            out[i] = c[off[0]] ? x[off[1]] : y[off[2]];
        }
    }
}

/* N elements a step along the innermost dim (see vec_operand): cond, x, y each a vector or one
 * repeated element. */
template <class E, class I>
__global__ void __launch_bounds__(kThreads) k_where_vec(const uint8_t *c, const E *x, const E *y, E *out, I nvec,
                                                        Geo<I, 3> g, bool c_vec, bool x_vec, bool y_vec) {
    constexpr int N = 16 / sizeof(E);
    I stride = (I)gridDim.x * blockDim.x;
    for (I v = (I)blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += stride) {
        I off[3];
        geo_offsets(g, v * (I)N, off);
        Vec<uint8_t, N> vc;
        Vec<E, N> vx, vy, r;
        if (c_vec) vc = *reinterpret_cast<const Vec<uint8_t, N> *>(c + off[0]);
        else
#pragma unroll
            for (int j = 0; j < N; j++) vc.v[j] = c[off[0]];
        if (x_vec) vx = *reinterpret_cast<const Vec<E, N> *>(x + off[1]);
        else
#pragma unroll
            for (int j = 0; j < N; j++) vx.v[j] = x[off[1]];
        if (y_vec) vy = *reinterpret_cast<const Vec<E, N> *>(y + off[2]);
        else
#pragma unroll
            for (int j = 0; j < N; j++) vy.v[j] = y[off[2]];
#pragma unroll
        for (int j = 0; j < N; j++) r.v[j] = vc.v[j] ? vx.v[j] : vy.v[j];
        reinterpret_cast<Vec<E, N> *>(out)[v] = r;
    }
}

template <class E>
static cudaError_t where(const void *c, const void *x, const void *y, void *out, const kiln_cuda_view *v,
                         cudaStream_t s) {
    int64_t n = view_count(&v[0]);
    constexpr int N = 16 / sizeof(E);
    bool c_vec, x_vec, y_vec;
    if (n <= INT32_MAX && v[0].dims[v[0].rank - 1] % N == 0 && aligned_to(out, 16) &&
        vec_operand(&v[0], c, 1, N, &c_vec) && vec_operand(&v[1], x, sizeof(E), N, &x_vec) &&
        vec_operand(&v[2], y, sizeof(E), N, &y_vec)) {
        k_where_vec<E, uint32_t><<<blocks_for(n / N), kThreads, 0, s>>>((const uint8_t *)c, (const E *)x,
                                                                         (const E *)y, (E *)out, (uint32_t)(n / N),
                                                                         make_geo<uint32_t, 3>(v, 3), c_vec, x_vec, y_vec);
        return cudaGetLastError();
    }
    bool flat = views_flat(v, 3);
    if (n <= INT32_MAX)
        k_where<E, uint32_t><<<blocks_for(n), kThreads, 0, s>>>((const uint8_t *)c, (const E *)x, (const E *)y,
                                                                 (E *)out, (uint32_t)n, flat, make_geo<uint32_t, 3>(v, 3));
    else
        k_where<E, uint64_t><<<blocks_for(n), kThreads, 0, s>>>((const uint8_t *)c, (const E *)x, (const E *)y,
                                                                 (E *)out, (uint64_t)n, flat, make_geo<uint64_t, 3>(v, 3));
    return cudaGetLastError();
}

} // namespace ew

using namespace ew;

KILN_CUDA_EXTERN cudaError_t kiln_ew_variadic(int op, int ct, int n_in, const void *const *x,
                                              const kiln_cuda_view *v, const void *acc_in, void *acc_out,
                                              void *y, int n_total, kiln_cuda_act act, cudaStream_t stream) {
    if (n_in < 1 || n_in > KILN_EW_MAX_IN) return cudaErrorInvalidValue;
    int64_t n = view_count(&v[0]);
    if (n <= 0) return cudaSuccess;
    if (n <= INT32_MAX) return variadic<uint32_t>(op, ct, n_in, x, v, acc_in, acc_out, y, n_total, act, (uint32_t)n, stream);
    return variadic<uint64_t>(op, ct, n_in, x, v, acc_in, acc_out, y, n_total, act, (uint64_t)n, stream);
}

KILN_CUDA_EXTERN cudaError_t kiln_ew_where(int elem_size, const void *cond, const void *x, const void *y, void *out,
                                           const kiln_cuda_view *v, cudaStream_t stream) {
    if (view_count(&v[0]) <= 0) return cudaSuccess;
    switch (elem_size) {
    case 1: return where<uint8_t>(cond, x, y, out, v, stream);
    case 2: return where<uint16_t>(cond, x, y, out, v, stream);
    case 4: return where<uint32_t>(cond, x, y, out, v, stream);
    case 8: return where<uint64_t>(cond, x, y, out, v, stream);
    default: return cudaErrorInvalidValue;
    }
}
