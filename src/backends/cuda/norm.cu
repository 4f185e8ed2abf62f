/* norm.cu — normalization kernels: rows normalized with their own mean and variance
 * (LayerNormalization, RMSNormalization, InstanceNormalization, GroupNormalization and
 * MeanVarianceNormalization over trailing axes), MVN over any axes, BatchNormalization with
 * given statistics, LpNormalization and LRN. FP32 statistics, two passes (mean, then squared
 * deviations) like the reference. Rows of up to 1024 elements take one warp each, values held
 * in registers; longer rows take one block each, the row kept in shared memory when it fits.
 * Tested against the reference backend by the lead's CUDA op tests. */
#include "norm_common.cuh"

namespace knorm {

/* y = normalized * scale + bias, the parameters indexed as a.affine says. */
__device__ __forceinline__ float rows_affine(const kiln_norm_rows_args &a, const void *s, const void *b, int64_t row,
                                             int64_t j, float v) {
    if (a.affine == KILN_NORM_AFFINE_NONE) return v;
    int64_t si, bi;
    switch (a.affine) {
    case KILN_NORM_AFFINE_COL:
        si = a.s_direct ? j : view_offset(a.sview, j);
        bi = a.b_direct ? j : view_offset(a.bview, j);
        break;
    case KILN_NORM_AFFINE_ROW: si = bi = row % a.C; break;
    case KILN_NORM_AFFINE_GROUP: si = bi = row % a.G; break;
    default: si = bi = (row % a.G) * (a.cols / a.sp) + j / a.sp; break;
    }
    if (s) v *= ld_ct(a.ct_param, s, si);
    if (b) v += ld_ct(a.ct_param, b, bi);
    return v;
}

__device__ __forceinline__ float rows_inv(const kiln_norm_rows_args &a, float var) {
    return a.mvn ? 1.0f / (sqrtf(var) + 1e-9f) : rsqrtf(var + a.eps);
}

/* y for VEC normalized values at column c: the common LayerNorm case (PV: scale and bias of
 * X's type, one per column, 16-byte aligned) loads them as vectors too. */
template <typename T, int VEC, bool PV>
__device__ __forceinline__ void rows_out(const kiln_norm_rows_args &a, const void *scale, const void *bias, int64_t row,
                                         int64_t c, const float *v, float mean, float inv, float *o) {
    if constexpr (PV) {
        float sv[VEC], bv[VEC];
        load_vec<T, VEC>((const T *)scale + c, sv);
        if (bias) load_vec<T, VEC>((const T *)bias + c, bv);
#pragma unroll
        for (int i = 0; i < VEC; i++) o[i] = (v[i] - mean) * inv * sv[i] + (bias ? bv[i] : 0.0f);
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) o[i] = rows_affine(a, scale, bias, row, c + i, (v[i] - mean) * inv);
    }
}

/* One warp per row; each lane holds NK vectors of VEC elements (NK * VEC * 32 >= cols). */
template <typename T, int VEC, int NK, bool PV>
__global__ void __launch_bounds__(256) rows_warp(const T *__restrict__ x, T *__restrict__ y, const void *scale,
                                                 const void *bias, void *mean_out, void *inv_out,
                                                 const kiln_norm_rows_args a) {
    const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    const int64_t cols = a.cols;
    for (int64_t row = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); row < a.rows; row += (int64_t)gridDim.x * wpb) {
        const T *xr = x + row * cols;
        float v[NK][VEC];
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < NK; k++) {
            int64_t c = ((int64_t)k * 32 + lane) * VEC;
            if (c < cols) {
                load_vec<T, VEC>(xr + c, v[k]);
#pragma unroll
                for (int i = 0; i < VEC; i++) sum += v[k][i];
            } else {
#pragma unroll
                for (int i = 0; i < VEC; i++) v[k][i] = 0.0f;
            }
        }
        float mean = a.rms ? 0.0f : warp_sum(sum) / (float)cols;
        float sq = 0.0f;
#pragma unroll
        for (int k = 0; k < NK; k++) {
            int64_t c = ((int64_t)k * 32 + lane) * VEC;
            if (c < cols) {
#pragma unroll
                for (int i = 0; i < VEC; i++) {
                    float d = v[k][i] - mean;
                    sq += d * d;
                }
            }
        }
        float inv = rows_inv(a, warp_sum(sq) / (float)cols);
        T *yr = y + row * cols;
#pragma unroll
        for (int k = 0; k < NK; k++) {
            int64_t c = ((int64_t)k * 32 + lane) * VEC;
            if (c < cols) {
                float o[VEC];
                rows_out<T, VEC, PV>(a, scale, bias, row, c, v[k], mean, inv, o);
                store_vec<T, VEC>(yr + c, o);
            }
        }
        if (lane == 0) {
            if (mean_out) st_ct(a.ct_stat, mean_out, row, mean);
            if (inv_out) st_ct(a.ct_stat, inv_out, row, inv);
        }
    }
}

/* One block per row; the row is cached as floats in dynamic shared memory when `cache`. */
template <typename T, int VEC, bool PV>
__global__ void rows_block(const T *__restrict__ x, T *__restrict__ y, const void *scale, const void *bias,
                           void *mean_out, void *inv_out, const kiln_norm_rows_args a, int cache) {
    extern __shared__ float row_cache[];
    __shared__ float red[32];
    const int64_t cols = a.cols, step = (int64_t)blockDim.x * VEC;
    for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
        const T *xr = x + row * cols;
        float sum = 0.0f;
        for (int64_t c = (int64_t)threadIdx.x * VEC; c < cols; c += step) {
            float v[VEC];
            load_vec<T, VEC>(xr + c, v);
#pragma unroll
            for (int i = 0; i < VEC; i++) {
                sum += v[i];
                if (cache) row_cache[c + i] = v[i];
            }
        }
        float mean = a.rms ? 0.0f : block_sum(sum, red) / (float)cols;
        float sq = 0.0f;
        for (int64_t c = (int64_t)threadIdx.x * VEC; c < cols; c += step) {
            float v[VEC];
            if (cache) {
#pragma unroll
                for (int i = 0; i < VEC; i++) v[i] = row_cache[c + i];
            } else {
                load_vec<T, VEC>(xr + c, v);
            }
#pragma unroll
            for (int i = 0; i < VEC; i++) {
                float d = v[i] - mean;
                sq += d * d;
            }
        }
        float inv = rows_inv(a, block_sum(sq, red) / (float)cols);
        T *yr = y + row * cols;
        for (int64_t c = (int64_t)threadIdx.x * VEC; c < cols; c += step) {
            float v[VEC];
            if (cache) {
#pragma unroll
                for (int i = 0; i < VEC; i++) v[i] = row_cache[c + i];
            } else {
                load_vec<T, VEC>(xr + c, v);
            }
            float o[VEC];
            rows_out<T, VEC, PV>(a, scale, bias, row, c, v, mean, inv, o);
            store_vec<T, VEC>(yr + c, o);
        }
        if (threadIdx.x == 0) {
            if (mean_out) st_ct(a.ct_stat, mean_out, row, mean);
            if (inv_out) st_ct(a.ct_stat, inv_out, row, inv);
        }
        __syncthreads(); /* the next row reuses the cache */
    }
}

/* Most shared memory a row cache may take without raising the kernel's limit. */
static const int64_t kRowCacheBytes = 48 * 1024;

template <typename T, int VEC, int NK, bool PV>
static void launch_rows_warp(const T *x, T *y, const void *s, const void *b, void *m, void *iv,
                             const kiln_norm_rows_args &a, cudaStream_t st) {
    if constexpr (VEC * NK <= 32) {
        const int threads = 256, wpb = threads / 32;
        rows_warp<T, VEC, NK, PV><<<grid_for(a.rows, wpb), threads, 0, st>>>(x, y, s, b, m, iv, a);
    }
}

template <typename T, int VEC, bool PV>
static void launch_rows(const T *x, T *y, const void *s, const void *b, void *m, void *iv, const kiln_norm_rows_args &a,
                        cudaStream_t st) {
    int64_t nk = (a.cols + 32 * VEC - 1) / (32 * VEC);
    if (nk * VEC <= 32) {
        if (nk <= 1) launch_rows_warp<T, VEC, 1, PV>(x, y, s, b, m, iv, a, st);
        else if (nk <= 2) launch_rows_warp<T, VEC, 2, PV>(x, y, s, b, m, iv, a, st);
        else if (nk <= 4) launch_rows_warp<T, VEC, 4, PV>(x, y, s, b, m, iv, a, st);
        else if (nk <= 8) launch_rows_warp<T, VEC, 8, PV>(x, y, s, b, m, iv, a, st);
        else if (nk <= 16) launch_rows_warp<T, VEC, 16, PV>(x, y, s, b, m, iv, a, st);
        else launch_rows_warp<T, VEC, 32, PV>(x, y, s, b, m, iv, a, st);
        return;
    }
    int cache = a.cols * (int64_t)sizeof(float) <= kRowCacheBytes;
    size_t smem = cache ? (size_t)a.cols * sizeof(float) : 0;
    rows_block<T, VEC, PV><<<grid_for(a.rows, 1), row_threads(a.cols / VEC), smem, st>>>(x, y, s, b, m, iv, a, cache);
}

/* MVN over any axes: one block per group, elements through the reduced view. */
template <typename T>
__global__ void mvn_general(const T *__restrict__ x, T *__restrict__ y, const kiln_cuda_view kept,
                            const kiln_cuda_view red, int64_t groups, int64_t count) {
    __shared__ float sh[32];
    for (int64_t g = blockIdx.x; g < groups; g += gridDim.x) {
        int64_t base = view_offset(kept, g);
        float sum = 0.0f;
        for (int64_t k = threadIdx.x; k < count; k += blockDim.x) sum += to_f(x[base + view_offset(red, k)]);
        float mean = block_sum(sum, sh) / (float)count;
        float sq = 0.0f;
        for (int64_t k = threadIdx.x; k < count; k += blockDim.x) {
            float d = to_f(x[base + view_offset(red, k)]) - mean;
            sq += d * d;
        }
        float inv = 1.0f / (sqrtf(block_sum(sq, sh) / (float)count) + 1e-9f);
        for (int64_t k = threadIdx.x; k < count; k += blockDim.x) {
            int64_t at = base + view_offset(red, k);
            y[at] = from_f<T>((to_f(x[at]) - mean) * inv);
        }
    }
}

template <typename T>
__global__ void batch_norm(const T *__restrict__ x, T *__restrict__ y, int ct_p, const void *scale, const void *bias,
                           const void *mean, const void *var, int64_t n, int64_t P, int64_t inner, float eps) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = (i / inner) % P;
        float sc = ld_ct(ct_p, scale, c) / sqrtf(ld_ct(ct_p, var, c) + eps);
        y[i] = from_f<T>((to_f(x[i]) - ld_ct(ct_p, mean, c)) * sc + ld_ct(ct_p, bias, c));
    }
}

/* LpNormalization: one warp per (outer, inner) line of len elements, stride inner. */
template <typename T>
__global__ void lp_norm(const T *__restrict__ x, T *__restrict__ y, int64_t lines, int64_t len, int64_t inner, int p) {
    const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    for (int64_t l = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); l < lines; l += (int64_t)gridDim.x * wpb) {
        int64_t base = (l / inner) * len * inner + l % inner;
        float acc = 0.0f;
        for (int64_t k = lane; k < len; k += 32) {
            float v = to_f(x[base + k * inner]);
            acc += p == 1 ? fabsf(v) : v * v;
        }
        float norm = warp_sum(acc);
        if (p == 2) norm = sqrtf(norm);
        for (int64_t k = lane; k < len; k += 32) {
            int64_t at = base + k * inner;
            y[at] = from_f<T>(norm == 0.0f ? 0.0f : to_f(x[at]) / norm);
        }
    }
}

template <typename T>
__global__ void lrn(const T *__restrict__ x, T *__restrict__ y, int64_t N, int64_t C, int64_t S, int64_t size,
                    float alpha, float beta, float bias) {
    int64_t n_all = N * C * S, before = (size - 1) / 2, after = size - 1 - before;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_all; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t s = i % S, c = (i / S) % C, n = i / (S * C);
        int64_t lo = c - before < 0 ? 0 : c - before, hi = c + after >= C ? C - 1 : c + after;
        float sq = 0.0f;
        for (int64_t k = lo; k <= hi; k++) {
            float v = to_f(x[(n * C + k) * S + s]);
            sq += v * v;
        }
        y[i] = from_f<T>(to_f(x[i]) / powf(bias + alpha / (float)size * sq, beta));
    }
}

} /* namespace knorm */

using namespace knorm;

extern "C" cudaError_t kiln_norm_rows(int ct, const void *x, void *y, const void *scale, const void *bias, void *mean,
                                      void *inv_std, const kiln_norm_rows_args *a, cudaStream_t stream) {
    if (a->rows <= 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        const int V = vec16<T>();
        bool vec = a->cols % V == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)y % 16 == 0;
        /* per-column parameters of X's type in order: vector loads for them too */
        bool pv = vec && a->affine == KILN_NORM_AFFINE_COL && a->ct_param == ct && scale && a->s_direct &&
                  (uintptr_t)scale % 16 == 0 && (!bias || (a->b_direct && (uintptr_t)bias % 16 == 0));
        if (pv) launch_rows<T, V, true>((const T *)x, (T *)y, scale, bias, mean, inv_std, *a, stream);
        else if (vec) launch_rows<T, V, false>((const T *)x, (T *)y, scale, bias, mean, inv_std, *a, stream);
        else launch_rows<T, 1, false>((const T *)x, (T *)y, scale, bias, mean, inv_std, *a, stream);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_norm_mvn_general(int ct, const void *x, void *y, const kiln_cuda_view *kept,
                                             const kiln_cuda_view *red, cudaStream_t stream) {
    int64_t groups = 1, count = 1;
    for (int d = 0; d < kept->rank; d++) groups *= kept->dims[d];
    for (int d = 0; d < red->rank; d++) count *= red->dims[d];
    if (groups == 0 || count == 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        mvn_general<T><<<grid_for(groups, 1), row_threads(count), 0, stream>>>((const T *)x, (T *)y, *kept, *red, groups,
                                                                               count);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_norm_batch(int ct, const void *x, void *y, int ct_param, const void *scale,
                                       const void *bias, const void *mean, const void *var, int64_t N, int64_t P,
                                       int64_t inner, float eps, cudaStream_t stream) {
    int64_t n = N * P * inner;
    if (n == 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        batch_norm<T><<<grid_for(n, 256 * 4), 256, 0, stream>>>((const T *)x, (T *)y, ct_param, scale, bias, mean, var,
                                                                n, P, inner, eps);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_norm_lp(int ct, const void *x, void *y, int64_t outer, int64_t len, int64_t inner, int p,
                                    cudaStream_t stream) {
    int64_t lines = outer * inner;
    if (lines == 0 || len == 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        lp_norm<T><<<grid_for(lines, 8), 256, 0, stream>>>((const T *)x, (T *)y, lines, len, inner, p);
    });
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_norm_lrn(int ct, const void *x, void *y, int64_t N, int64_t C, int64_t S, int64_t size,
                                     float alpha, float beta, float bias, cudaStream_t stream) {
    int64_t n = N * C * S;
    if (n == 0) return cudaSuccess;
    KNORM_FLOAT_SWITCH(ct, T, {
        lrn<T><<<grid_for(n, 256), 256, 0, stream>>>((const T *)x, (T *)y, N, C, S, size, alpha, beta, bias);
    });
    return cudaGetLastError();
}
