/* norm_softmax.cu — Softmax, LogSoftmax and Hardmax along one axis of (outer, len, inner).
 * The last axis (inner == 1) is the fast path: one warp per row with the row in registers for
 * rows of up to 1024 elements, one block per row (cached in shared memory when it fits)
 * beyond. Other axes: one thread per (outer, inner) line, coalesced across inner. FP32 math:
 * max, sum of exp(x - max), then exp(x - max) / sum or x - max - log(sum). Hardmax puts 1 at
 * the first largest element (a NaN counts as largest). */
#include "norm_common.cuh"

namespace knorm {

__device__ __forceinline__ float sm_out(int mode, float v, float mx, float sum, float lsum) {
    return mode == 1 ? v - mx - lsum : expf(v - mx) / sum;
}

template <typename T, int VEC, int NK>
__global__ void __launch_bounds__(256) softmax_warp(const T *__restrict__ x, T *__restrict__ y, int64_t rows,
                                                    int64_t cols, int mode) {
    const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    for (int64_t row = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); row < rows; row += (int64_t)gridDim.x * wpb) {
        const T *xr = x + row * cols;
        float v[NK][VEC];
        float mx = -INFINITY;
#pragma unroll
        for (int k = 0; k < NK; k++) {
            int64_t c = ((int64_t)k * 32 + lane) * VEC;
            if (c < cols) {
                load_vec<T, VEC>(xr + c, v[k]);
#pragma unroll
                for (int i = 0; i < VEC; i++) mx = fmaxf(mx, v[k][i]);
            }
        }
        mx = warp_max(mx);
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < NK; k++) {
            int64_t c = ((int64_t)k * 32 + lane) * VEC;
            if (c < cols) {
#pragma unroll
                for (int i = 0; i < VEC; i++) sum += expf(v[k][i] - mx);
            }
        }
        sum = warp_sum(sum);
        float lsum = logf(sum);
        T *yr = y + row * cols;
#pragma unroll
        for (int k = 0; k < NK; k++) {
            int64_t c = ((int64_t)k * 32 + lane) * VEC;
            if (c < cols) {
                float o[VEC];
#pragma unroll
                for (int i = 0; i < VEC; i++) o[i] = sm_out(mode, v[k][i], mx, sum, lsum);
                store_vec<T, VEC>(yr + c, o);
            }
        }
    }
}

template <typename T, int VEC>
__global__ void softmax_block(const T *__restrict__ x, T *__restrict__ y, int64_t rows, int64_t cols, int mode,
                              int cache) {
    extern __shared__ float row_cache[];
    __shared__ float red[32];
    const int64_t step = (int64_t)blockDim.x * VEC;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T *xr = x + row * cols;
        float mx = -INFINITY;
        for (int64_t c = (int64_t)threadIdx.x * VEC; c < cols; c += step) {
            float v[VEC];
            load_vec<T, VEC>(xr + c, v);
#pragma unroll
            for (int i = 0; i < VEC; i++) {
                mx = fmaxf(mx, v[i]);
                if (cache) row_cache[c + i] = v[i];
            }
        }
        mx = block_max(mx, red);
        float sum = 0.0f;
        for (int64_t c = (int64_t)threadIdx.x * VEC; c < cols; c += step) {
            float v[VEC];
            if (cache) {
#pragma unroll
                for (int i = 0; i < VEC; i++) v[i] = row_cache[c + i];
            } else {
                load_vec<T, VEC>(xr + c, v);
            }
#pragma unroll
            for (int i = 0; i < VEC; i++) sum += expf(v[i] - mx);
        }
        sum = block_sum(sum, red);
        float lsum = logf(sum);
        T *yr = y + row * cols;
        for (int64_t c = (int64_t)threadIdx.x * VEC; c < cols; c += step) {
            float v[VEC];
            if (cache) {
#pragma unroll
                for (int i = 0; i < VEC; i++) v[i] = row_cache[c + i];
            } else {
                load_vec<T, VEC>(xr + c, v);
            }
#pragma unroll
            for (int i = 0; i < VEC; i++) v[i] = sm_out(mode, v[i], mx, sum, lsum);
            store_vec<T, VEC>(yr + c, v);
        }
        __syncthreads(); /* the next row reuses the cache */
    }
}

/* inner > 1: one thread per (outer, inner) line, three passes over the len elements. */
template <typename T>
__global__ void softmax_lines(const T *__restrict__ x, T *__restrict__ y, int64_t outer, int64_t len, int64_t inner,
                              int mode) {
    int64_t lines = outer * inner;
    for (int64_t l = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; l < lines; l += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = (l / inner) * len * inner + l % inner;
        float mx = -INFINITY;
        for (int64_t j = 0; j < len; j++) mx = fmaxf(mx, to_f(x[base + j * inner]));
        float sum = 0.0f;
        for (int64_t j = 0; j < len; j++) sum += expf(to_f(x[base + j * inner]) - mx);
        float lsum = logf(sum);
        for (int64_t j = 0; j < len; j++) {
            int64_t at = base + j * inner;
            y[at] = from_f<T>(sm_out(mode, to_f(x[at]), mx, sum, lsum));
        }
    }
}

/* Whether (va, ia) comes before (vb, ib) for Hardmax: larger, a NaN first, ties to the lower index. */
__device__ __forceinline__ bool hm_better(float va, int64_t ia, float vb, int64_t ib) {
    bool na = isnan(va), nb = isnan(vb);
    if (na != nb) return na;
    if (!na && va != vb) return va > vb;
    return ia < ib;
}

/* Hardmax: one block per (outer, inner) line. */
template <typename T>
__global__ void hardmax(const T *__restrict__ x, T *__restrict__ y, int64_t outer, int64_t len, int64_t inner) {
    __shared__ float sv[32];
    __shared__ int64_t si[32];
    int64_t lines = outer * inner;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int64_t l = blockIdx.x; l < lines; l += gridDim.x) {
        int64_t base = (l / inner) * len * inner + l % inner;
        float bv = -INFINITY;
        int64_t bi = INT64_MAX;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            float v = to_f(x[base + j * inner]);
            if (hm_better(v, j, bv, bi)) {
                bv = v;
                bi = j;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (hm_better(ov, oi, bv, bi)) {
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
                if (hm_better(sv[w], si[w], sv[0], si[0])) {
                    sv[0] = sv[w];
                    si[0] = si[w];
                }
        }
        __syncthreads();
        int64_t arg = si[0];
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) y[base + j * inner] = from_f<T>(j == arg ? 1.0f : 0.0f);
        __syncthreads();
    }
}

static const int64_t kRowCacheBytes = 48 * 1024;

template <typename T, int VEC, int NK>
static void launch_sm_warp(const T *x, T *y, int64_t rows, int64_t cols, int mode, cudaStream_t st) {
    if constexpr (VEC * NK <= 32) {
        const int threads = 256, wpb = threads / 32;
        softmax_warp<T, VEC, NK><<<grid_for(rows, wpb), threads, 0, st>>>(x, y, rows, cols, mode);
    }
}

template <typename T, int VEC>
static void launch_sm_rows(const T *x, T *y, int64_t rows, int64_t cols, int mode, cudaStream_t st) {
    int64_t nk = (cols + 32 * VEC - 1) / (32 * VEC);
    if (nk * VEC <= 32) {
        if (nk <= 1) launch_sm_warp<T, VEC, 1>(x, y, rows, cols, mode, st);
        else if (nk <= 2) launch_sm_warp<T, VEC, 2>(x, y, rows, cols, mode, st);
        else if (nk <= 4) launch_sm_warp<T, VEC, 4>(x, y, rows, cols, mode, st);
        else if (nk <= 8) launch_sm_warp<T, VEC, 8>(x, y, rows, cols, mode, st);
        else if (nk <= 16) launch_sm_warp<T, VEC, 16>(x, y, rows, cols, mode, st);
        else launch_sm_warp<T, VEC, 32>(x, y, rows, cols, mode, st);
        return;
    }
    int cache = cols * (int64_t)sizeof(float) <= kRowCacheBytes;
    size_t smem = cache ? (size_t)cols * sizeof(float) : 0;
    softmax_block<T, VEC><<<grid_for(rows, 1), row_threads(cols / VEC), smem, st>>>(x, y, rows, cols, mode, cache);
}

} /* namespace knorm */

using namespace knorm;

extern "C" cudaError_t kiln_norm_softmax(int ct, const void *x, void *y, int64_t outer, int64_t len, int64_t inner,
                                         int mode, cudaStream_t stream) {
    if (outer * len * inner == 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        if (mode == 2) {
            hardmax<T><<<grid_for(outer * inner, 1), row_threads(len) > 256 ? 256 : row_threads(len), 0, stream>>>(
                (const T *)x, (T *)y, outer, len, inner);
        } else if (inner == 1) {
            const int V = vec16<T>();
            if (len % V == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)y % 16 == 0)
                launch_sm_rows<T, V>((const T *)x, (T *)y, outer, len, mode, stream);
            else
                launch_sm_rows<T, 1>((const T *)x, (T *)y, outer, len, mode, stream);
        } else {
            softmax_lines<T><<<grid_for(outer * inner, 256), 256, 0, stream>>>((const T *)x, (T *)y, outer, len, inner,
                                                                                mode);
        }
    });
    return cudaGetLastError();
}
