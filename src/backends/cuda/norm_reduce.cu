/* norm_reduce.cu — the Reduce* ops, ArgMax/ArgMin and CumSum/CumProd.
 * Reduce: floats accumulate in FP32, integers in 64 bits (wrapping like the reference). Three
 * layouts after the host merged the axes: ROWS (reduce the contiguous last axis: one warp per
 * row, or one block per long row, 16-byte loads), MIDDLE ((outer, len, inner): 32 inner
 * columns by 8 slices of len per block, coalesced), GENERAL (any axes: one warp per output
 * element, elements found through a strided view). Empty reductions give the identity, as in
 * the reference (0, 1, -inf / +inf or the integer extremes, NaN for a float Mean).
 * Max/Min propagate NaN; LogSumExp shifts by the largest finite value. */
#include "norm_common.cuh"

namespace knorm {

/* ---- accumulator traits ---- */

struct red_f {
    typedef float acc_t;
    static __device__ __forceinline__ float init(int op, const kiln_norm_reduce_args &) {
        switch (op) {
        case KILN_NRED_PROD: return 1.0f;
        case KILN_NRED_MAX: return -INFINITY;
        case KILN_NRED_MIN: return INFINITY;
        default: return 0.0f;
        }
    }
    template <typename T> static __device__ __forceinline__ float load(const T *p, int64_t i) { return to_f(p[i]); }
    static __device__ __forceinline__ float pre(int op, float v, float mx) {
        switch (op) {
        case KILN_NRED_L1: return fabsf(v);
        case KILN_NRED_L2:
        case KILN_NRED_SUMSQUARE: return v * v;
        case KILN_NRED_LOGSUMEXP: return expf(v - mx);
        default: return v;
        }
    }
    static __device__ __forceinline__ float comb(int op, float a, float b) {
        switch (op) {
        case KILN_NRED_PROD: return a * b;
        case KILN_NRED_MAX: return isnan(a) ? a : isnan(b) ? b : fmaxf(a, b);
        case KILN_NRED_MIN: return isnan(a) ? a : isnan(b) ? b : fminf(a, b);
        default: return a + b;
        }
    }
    static __device__ __forceinline__ float fin(int op, float a, int64_t count, float mx) {
        switch (op) {
        case KILN_NRED_MEAN: return a / (float)count;
        case KILN_NRED_L2: return sqrtf(a);
        case KILN_NRED_LOGSUM: return logf(a);
        case KILN_NRED_LOGSUMEXP: return logf(a) + mx;
        default: return a;
        }
    }
    template <typename T> static __device__ __forceinline__ void store(T *p, int64_t i, float v) { p[i] = from_f<T>(v); }
    static __device__ __forceinline__ float shfl(float v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
};

/* Integers: two's complement arithmetic in unsigned 64 bits (wraps like the reference),
 * comparisons as signed. */
struct red_i {
    typedef unsigned long long acc_t;
    static __device__ __forceinline__ acc_t init(int op, const kiln_norm_reduce_args &a) {
        switch (op) {
        case KILN_NRED_PROD: return 1ull;
        case KILN_NRED_MAX: return (acc_t)a.int_lo;
        case KILN_NRED_MIN: return (acc_t)a.int_hi;
        default: return 0ull;
        }
    }
    template <typename T> static __device__ __forceinline__ acc_t load(const T *p, int64_t i) {
        return (acc_t)(long long)p[i];
    }
    static __device__ __forceinline__ acc_t pre(int op, acc_t v, acc_t) {
        switch (op) {
        case KILN_NRED_L1: return (long long)v < 0 ? 0ull - v : v;
        case KILN_NRED_SUMSQUARE: return v * v;
        default: return v;
        }
    }
    static __device__ __forceinline__ acc_t comb(int op, acc_t a, acc_t b) {
        switch (op) {
        case KILN_NRED_PROD: return a * b;
        case KILN_NRED_MAX: return (long long)b > (long long)a ? b : a;
        case KILN_NRED_MIN: return (long long)b < (long long)a ? b : a;
        default: return a + b;
        }
    }
    static __device__ __forceinline__ acc_t fin(int op, acc_t a, int64_t count, acc_t) {
        if (op == KILN_NRED_MEAN) return count == 0 ? 0ull : (acc_t)((long long)a / (long long)count);
        return a;
    }
    template <typename T> static __device__ __forceinline__ void store(T *p, int64_t i, acc_t v) {
        p[i] = (T)(long long)v;
    }
    static __device__ __forceinline__ acc_t shfl(acc_t v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
};

template <typename R> __device__ __forceinline__ typename R::acc_t warp_comb(int op, typename R::acc_t v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = R::comb(op, v, R::shfl(v, o));
    return v;
}

/* Block-wide combine (blockDim.x a multiple of 32); every thread gets the result. */
template <typename R>
__device__ __forceinline__ typename R::acc_t block_comb(int op, typename R::acc_t v, typename R::acc_t *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_comb<R>(op, v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        typename R::acc_t r = sh[0];
        for (int w = 1; w < nw; w++) r = R::comb(op, r, sh[w]);
        sh[0] = r;
    }
    __syncthreads();
    typename R::acc_t r = sh[0];
    __syncthreads();
    return r;
}

/* The LogSumExp shift of a set of values: their largest finite value, 0 if none. */
__device__ __forceinline__ float lse_shift(float m) { return m == -INFINITY ? 0.0f : m; }
__device__ __forceinline__ float finite_or(float v, float other) { return isfinite(v) ? v : other; }

/* ---- ROWS: warp per row ---- */
template <typename T, typename R, int VEC>
__global__ void __launch_bounds__(256) reduce_rows_warp(const T *__restrict__ x, T *__restrict__ y,
                                                        const kiln_norm_reduce_args a) {
    typedef typename R::acc_t A;
    const int op = a.op, lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    const int64_t cols = a.len;
    for (int64_t row = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); row < a.outer; row += (int64_t)gridDim.x * wpb) {
        const T *xr = x + row * cols;
        A mx = A(0);
        if constexpr (sizeof(A) == sizeof(float)) {
            if (op == KILN_NRED_LOGSUMEXP) {
                float m = -INFINITY;
                for (int64_t c = lane; c < cols; c += 32) m = fmaxf(m, finite_or(to_f(xr[c]), -INFINITY));
                mx = lse_shift(warp_max(m));
            }
        }
        A acc = R::init(op, a);
        if constexpr (VEC > 1) {
            for (int64_t c = (int64_t)lane * VEC; c < cols; c += 32 * VEC) {
                float v[VEC];
                load_vec<T, VEC>(xr + c, v);
#pragma unroll
                for (int i = 0; i < VEC; i++) acc = R::comb(op, acc, R::pre(op, (A)v[i], mx));
            }
        } else {
            for (int64_t c = lane; c < cols; c += 32) acc = R::comb(op, acc, R::pre(op, R::load(xr, c), mx));
        }
        acc = warp_comb<R>(op, acc);
        if (lane == 0) R::store(y, row, R::fin(op, acc, cols, mx));
    }
}

/* ---- ROWS: block per row ---- */
template <typename T, typename R, int VEC>
__global__ void reduce_rows_block(const T *__restrict__ x, T *__restrict__ y, const kiln_norm_reduce_args a) {
    typedef typename R::acc_t A;
    __shared__ A sh[32];
    __shared__ float shf[32];
    const int op = a.op;
    const int64_t cols = a.len;
    for (int64_t row = blockIdx.x; row < a.outer; row += gridDim.x) {
        const T *xr = x + row * cols;
        A mx = A(0);
        if constexpr (sizeof(A) == sizeof(float)) {
            if (op == KILN_NRED_LOGSUMEXP) {
                float m = -INFINITY;
                for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, finite_or(to_f(xr[c]), -INFINITY));
                mx = lse_shift(block_max(m, shf));
            }
        }
        A acc = R::init(op, a);
        if constexpr (VEC > 1) {
            for (int64_t c = (int64_t)threadIdx.x * VEC; c < cols; c += (int64_t)blockDim.x * VEC) {
                float v[VEC];
                load_vec<T, VEC>(xr + c, v);
#pragma unroll
                for (int i = 0; i < VEC; i++) acc = R::comb(op, acc, R::pre(op, (A)v[i], mx));
            }
        } else {
            for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc = R::comb(op, acc, R::pre(op, R::load(xr, c), mx));
        }
        acc = block_comb<R>(op, acc, sh);
        if (threadIdx.x == 0) R::store(y, row, R::fin(op, acc, cols, mx));
    }
}

/* ---- MIDDLE: (outer, len, inner), blocks of 32 inner columns x blockDim.y (8 or 32) slices of len ---- */
template <typename T, typename R>
__global__ void __launch_bounds__(1024) reduce_middle(const T *__restrict__ x, T *__restrict__ y,
                                                      const kiln_norm_reduce_args a) {
    typedef typename R::acc_t A;
    __shared__ A sh[32][33];
    __shared__ float shf[32][33];
    const int op = a.op, tx = threadIdx.x, ty = threadIdx.y, ny = blockDim.y;
    const int64_t len = a.len, inner = a.inner, nib = (inner + 31) / 32;
    for (int64_t blk = blockIdx.x; blk < a.outer * nib; blk += gridDim.x) {
        int64_t o = blk / nib, i = (blk % nib) * 32 + tx;
        bool live = i < inner;
        const T *xp = x + o * len * inner + i;
        A mx = A(0);
        if constexpr (sizeof(A) == sizeof(float)) {
            if (op == KILN_NRED_LOGSUMEXP) {
                float m = -INFINITY;
                if (live)
                    for (int64_t j = ty; j < len; j += ny) m = fmaxf(m, finite_or(to_f(xp[j * inner]), -INFINITY));
                shf[ty][tx] = m;
                __syncthreads();
                m = shf[0][tx];
                for (int r = 1; r < ny; r++) m = fmaxf(m, shf[r][tx]);
                mx = lse_shift(m);
                __syncthreads();
            }
        }
        A acc = R::init(op, a);
        if (live)
            for (int64_t j = ty; j < len; j += ny) acc = R::comb(op, acc, R::pre(op, R::load(xp, j * inner), mx));
        sh[ty][tx] = acc;
        __syncthreads();
        if (ty == 0 && live) {
            for (int r = 1; r < ny; r++) acc = R::comb(op, acc, sh[r][tx]);
            R::store(y, o * inner + i, R::fin(op, acc, len, mx));
        }
        __syncthreads();
    }
}

/* ---- GENERAL: one warp per output element ---- */
template <typename T, typename R>
__global__ void __launch_bounds__(256) reduce_general(const T *__restrict__ x, T *__restrict__ y,
                                                      const kiln_norm_reduce_args a) {
    typedef typename R::acc_t A;
    const int op = a.op, lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    const int64_t count = a.len;
    for (int64_t o = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); o < a.n_out; o += (int64_t)gridDim.x * wpb) {
        const T *xp = x + view_offset(a.kept, o);
        A mx = A(0);
        if constexpr (sizeof(A) == sizeof(float)) {
            if (op == KILN_NRED_LOGSUMEXP) {
                float m = -INFINITY;
                for (int64_t k = lane; k < count; k += 32) m = fmaxf(m, finite_or(to_f(xp[view_offset(a.red, k)]), -INFINITY));
                mx = lse_shift(warp_max(m));
            }
        }
        A acc = R::init(op, a);
        for (int64_t k = lane; k < count; k += 32) acc = R::comb(op, acc, R::pre(op, R::load(xp, view_offset(a.red, k)), mx));
        acc = warp_comb<R>(op, acc);
        if (lane == 0) R::store(y, o, R::fin(op, acc, count, mx));
    }
}

template <typename T, typename R, int VEC>
static void launch_reduce_rows(const T *x, T *y, const kiln_norm_reduce_args &a, cudaStream_t st) {
    if (a.len <= 32 * 32) {
        reduce_rows_warp<T, R, VEC><<<grid_for(a.outer, 8), 256, 0, st>>>(x, y, a);
    } else {
        int threads = row_threads(a.len / VEC);
        reduce_rows_block<T, R, VEC><<<grid_for(a.outer, 1), threads, 0, st>>>(x, y, a);
    }
}

template <typename T, typename R>
static void launch_reduce(const T *x, T *y, const kiln_norm_reduce_args &a, cudaStream_t st) {
    switch (a.layout) {
    case KILN_NRED_ROWS: {
        /* 16-byte loads for float types; integers go one by one */
        const int V = sizeof(typename R::acc_t) == sizeof(float) ? vec16<T>() : 1;
        if (V > 1 && a.len % V == 0 && (uintptr_t)x % 16 == 0)
            launch_reduce_rows<T, R, (sizeof(typename R::acc_t) == sizeof(float) ? vec16<T>() : 1)>(x, y, a, st);
        else
            launch_reduce_rows<T, R, 1>(x, y, a, st);
        break;
    }
    case KILN_NRED_MIDDLE:
        /* long reductions with few columns: more slices of len per block */
        reduce_middle<T, R><<<grid_for(a.outer * ((a.inner + 31) / 32), 1), dim3(32, a.len >= 256 ? 32 : 8), 0, st>>>(x, y, a);
        break;
    default: reduce_general<T, R><<<grid_for(a.n_out, 8), 256, 0, st>>>(x, y, a); break;
    }
}

/* ---- ArgMax / ArgMin ---- */

/* Whether (va, ia) beats (vb, ib): a NaN first (the first NaN), then the larger (smaller)
 * value, ties to the lower (with select_last, the higher) index. Floats and integers compare
 * through double, exact for every supported type but int64 beyond 2^53, which compares as
 * int64 (is_int). */
struct arg_val {
    double f;
    long long i;
};

template <typename T> __device__ __forceinline__ arg_val arg_load(const T *p, int64_t at) {
    arg_val v;
    v.f = (double)to_f(p[at]);
    v.i = 0;
    return v;
}
template <> __device__ __forceinline__ arg_val arg_load<int8_t>(const int8_t *p, int64_t at) { return {0.0, (long long)p[at]}; }
template <> __device__ __forceinline__ arg_val arg_load<uint8_t>(const uint8_t *p, int64_t at) { return {0.0, (long long)p[at]}; }
template <> __device__ __forceinline__ arg_val arg_load<int32_t>(const int32_t *p, int64_t at) { return {0.0, (long long)p[at]}; }
template <> __device__ __forceinline__ arg_val arg_load<int64_t>(const int64_t *p, int64_t at) { return {0.0, (long long)p[at]}; }

template <bool IS_INT>
__device__ __forceinline__ bool arg_better(arg_val a, int64_t ia, arg_val b, int64_t ib, int is_max, int last) {
    if (ia < 0) return false; /* no candidate */
    if (ib < 0) return true;
    int c;
    if constexpr (IS_INT) {
        c = (a.i > b.i) - (a.i < b.i);
    } else {
        bool na = isnan(a.f), nb = isnan(b.f);
        if (na || nb) return na && (!nb || ia < ib);
        c = (a.f > b.f) - (a.f < b.f);
    }
    if (!is_max) c = -c;
    if (c != 0) return c > 0;
    return last ? ia > ib : ia < ib;
}

template <typename T, bool IS_INT>
__global__ void argminmax_rows(const T *__restrict__ x, int64_t *__restrict__ y, int64_t lines, int64_t len,
                               int64_t inner, int is_max, int last) {
    __shared__ arg_val sv[32];
    __shared__ int64_t si[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int64_t l = blockIdx.x; l < lines; l += gridDim.x) {
        int64_t base = (l / inner) * len * inner + l % inner;
        arg_val bv = {0.0, 0};
        int64_t bi = -1;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            arg_val v = arg_load(x, base + j * inner);
            if (arg_better<IS_INT>(v, j, bv, bi, is_max, last)) {
                bv = v;
                bi = j;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            arg_val ov;
            ov.f = __shfl_xor_sync(0xffffffffu, bv.f, o);
            ov.i = __shfl_xor_sync(0xffffffffu, bv.i, o);
            int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (arg_better<IS_INT>(ov, oi, bv, bi, is_max, last)) {
                bv = ov;
                bi = oi;
            }
        }
        if (lane == 0) {
            sv[warp] = bv;
            si[warp] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < nw; w++)
                if (arg_better<IS_INT>(sv[w], si[w], sv[0], si[0], is_max, last)) {
                    sv[0] = sv[w];
                    si[0] = si[w];
                }
            y[l] = si[0];
        }
        __syncthreads();
    }
}

/* inner > 1: one thread per (outer, inner) line. */
template <typename T, bool IS_INT>
__global__ void argminmax_lines(const T *__restrict__ x, int64_t *__restrict__ y, int64_t lines, int64_t len,
                                int64_t inner, int is_max, int last) {
    for (int64_t l = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; l < lines; l += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = (l / inner) * len * inner + l % inner;
        arg_val bv = {0.0, 0};
        int64_t bi = -1;
        for (int64_t j = 0; j < len; j++) {
            arg_val v = arg_load(x, base + j * inner);
            if (arg_better<IS_INT>(v, j, bv, bi, is_max, last)) {
                bv = v;
                bi = j;
            }
        }
        y[l] = bi;
    }
}

template <typename T, bool IS_INT>
static void launch_arg(const T *x, int64_t *y, int64_t outer, int64_t len, int64_t inner, int is_max, int last,
                       cudaStream_t st) {
    int64_t lines = outer * inner;
    if (inner == 1 || lines < 1024)
        argminmax_rows<T, IS_INT><<<grid_for(lines, 1), len >= 4096 ? 512 : len >= 512 ? 128 : 32, 0, st>>>(
            x, y, lines, len, inner, is_max, last);
    else
        argminmax_lines<T, IS_INT><<<grid_for(lines, 256), 256, 0, st>>>(x, y, lines, len, inner, is_max, last);
}

/* ---- CumSum / CumProd ---- */

/* inner == 1: one block per row, chunks of blockDim scanned with warp shuffles. */
template <typename T, typename R>
__global__ void cum_rows(const T *__restrict__ x, T *__restrict__ y, int64_t rows, int64_t len, int exclusive,
                         int reverse, int op) {
    typedef typename R::acc_t A;
    __shared__ A wsum[32];
    __shared__ A carry_sh;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const kiln_norm_reduce_args none = {};
    const A id = R::init(op, none);
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *xr = x + row * len;
        T *yr = y + row * len;
        A carry = id;
        for (int64_t c0 = 0; c0 < len; c0 += blockDim.x) {
            int64_t s = c0 + threadIdx.x;
            int64_t j = reverse ? len - 1 - s : s;
            A v = s < len ? R::load(xr, j) : id;
            /* inclusive scan within the warp */
            A inc = v;
            for (int o = 1; o < 32; o <<= 1) {
                A n = __shfl_up_sync(0xffffffffu, inc, o);
                if (lane >= o) inc = R::comb(op, n, inc);
            }
            if (lane == 31) wsum[warp] = inc;
            __syncthreads();
            if (threadIdx.x == 0) {
                A run = carry;
                for (int w = 0; w < nw; w++) {
                    A t = wsum[w];
                    wsum[w] = run;
                    run = R::comb(op, run, t);
                }
                carry_sh = run;
            }
            __syncthreads();
            A before = R::comb(op, wsum[warp], R::comb(op, inc, id)); /* prefix up to and including s */
            if (exclusive) {
                A ex = __shfl_up_sync(0xffffffffu, inc, 1);
                before = lane == 0 ? wsum[warp] : R::comb(op, wsum[warp], ex);
            }
            if (s < len) R::store(yr, j, before);
            carry = carry_sh;
            __syncthreads();
        }
    }
}

/* inner > 1: one thread per (outer, inner) line, sequential along len. */
template <typename T, typename R>
__global__ void cum_lines(const T *__restrict__ x, T *__restrict__ y, int64_t outer, int64_t len, int64_t inner,
                          int exclusive, int reverse, int op) {
    typedef typename R::acc_t A;
    const kiln_norm_reduce_args none = {};
    int64_t lines = outer * inner;
    for (int64_t l = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; l < lines; l += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = (l / inner) * len * inner + l % inner;
        A acc = R::init(op, none);
        for (int64_t s = 0; s < len; s++) {
            int64_t at = base + (reverse ? len - 1 - s : s) * inner;
            A v = R::load(x, at);
            if (!exclusive) acc = R::comb(op, acc, v);
            R::store(y, at, acc);
            if (exclusive) acc = R::comb(op, acc, v);
        }
    }
}

template <typename T, typename R>
static void launch_cum(const T *x, T *y, int64_t outer, int64_t len, int64_t inner, int exclusive, int reverse,
                       int op, cudaStream_t st) {
    if (inner == 1)
        cum_rows<T, R><<<grid_for(outer, 1), len >= 1024 ? 512 : len > 64 ? 128 : 32, 0, st>>>(x, y, outer, len,
                                                                                            exclusive, reverse, op);
    else
        cum_lines<T, R><<<grid_for(outer * inner, 256), 256, 0, st>>>(x, y, outer, len, inner, exclusive, reverse, op);
}

} /* namespace knorm */

using namespace knorm;

/* Integer element types, with bool as uint8 (values 0 and 1). */
#define KNORM_INT_SWITCH(ct, T, ...)                                                               \
    switch (ct) {                                                                              \
    case KILN_CT_I8: {                                                                         \
        typedef int8_t T;                                                                      \
        __VA_ARGS__;                                                                           \
    } break;                                                                                   \
    case KILN_CT_U8:                                                                           \
    case KILN_CT_BOOL: {                                                                       \
        typedef uint8_t T;                                                                     \
        __VA_ARGS__;                                                                           \
    } break;                                                                                   \
    case KILN_CT_I32: {                                                                        \
        typedef int32_t T;                                                                     \
        __VA_ARGS__;                                                                           \
    } break;                                                                                   \
    case KILN_CT_I64: {                                                                        \
        typedef int64_t T;                                                                     \
        __VA_ARGS__;                                                                           \
    } break;                                                                                   \
    default: return cudaErrorInvalidValue;                                                     \
    }

static bool is_float_ct(int ct) { return ct == KILN_CT_F32 || ct == KILN_CT_F16 || ct == KILN_CT_BF16; }

extern "C" cudaError_t kiln_norm_reduce(int ct, const void *x, void *y, const kiln_norm_reduce_args *a,
                                        cudaStream_t stream) {
    int64_t n_out = a->layout == KILN_NRED_GENERAL ? a->n_out : a->outer * (a->layout == KILN_NRED_MIDDLE ? a->inner : 1);
    if (n_out == 0) return cudaSuccess;
    if (is_float_ct(ct)) {
        KNORM_FLOAT_SWITCH(ct, T, launch_reduce<T, red_f>((const T *)x, (T *)y, *a, stream));
    } else {
        if (a->op == KILN_NRED_L2 || a->op == KILN_NRED_LOGSUM || a->op == KILN_NRED_LOGSUMEXP) return cudaErrorInvalidValue;
        KNORM_INT_SWITCH(ct, T, launch_reduce<T, red_i>((const T *)x, (T *)y, *a, stream));
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_norm_argminmax(int ct, const void *x, int64_t *y, int64_t outer, int64_t len,
                                           int64_t inner, int is_max, int select_last, cudaStream_t stream) {
    if (outer * inner == 0 || len == 0) return cudaSuccess;
    if (is_float_ct(ct)) {
        KNORM_FLOAT_SWITCH(ct, T, launch_arg<T, false>((const T *)x, y, outer, len, inner, is_max, select_last, stream));
    } else {
        KNORM_INT_SWITCH(ct, T, launch_arg<T, true>((const T *)x, y, outer, len, inner, is_max, select_last, stream));
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_norm_cumulative(int ct, const void *x, void *y, int64_t outer, int64_t len, int64_t inner,
                                            int exclusive, int reverse, int prod, cudaStream_t stream) {
    if (outer * len * inner == 0) return cudaSuccess;
    int op = prod ? KILN_NRED_PROD : KILN_NRED_SUM;
    if (is_float_ct(ct)) {
        KNORM_FLOAT_SWITCH(ct, T, launch_cum<T, red_f>((const T *)x, (T *)y, outer, len, inner, exclusive, reverse, op, stream));
    } else {
        KNORM_INT_SWITCH(ct, T, launch_cum<T, red_i>((const T *)x, (T *)y, outer, len, inner, exclusive, reverse, op, stream));
    }
    return cudaGetLastError();
}
