/* norm_topk.cu — TopK along the middle axis of (outer, len, inner). The order is the
 * reference's: by value (descending for largest, ascending otherwise; a NaN is larger than any
 * number, -0 equals +0), ties to the lower index; the output is always sorted. Each element
 * becomes a 64-bit key whose unsigned order is that value order, so one comparison of
 * (key, index) decides. Lines of up to KILN_NORM_TOPK_SORT_MAX elements: one block bitonic-
 * sorts the line in shared memory. Longer lines: k rounds of a block-wide arg-max over the
 * elements that come after the last one taken (k at most KILN_NORM_TOPK_SELECT_MAX_K). */
#include "norm_common.cuh"

namespace knorm {

__device__ __forceinline__ unsigned long long float_key(float v) {
    if (isnan(v)) return 0xffffffffull;
    if (v == 0.0f) v = 0.0f; /* -0 sorts with +0 */
    unsigned int u = __float_as_uint(v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (unsigned long long)u;
}

template <typename T> __device__ __forceinline__ unsigned long long order_key(T v) { return float_key(to_f(v)); }
template <> __device__ __forceinline__ unsigned long long order_key<int8_t>(int8_t v) {
    return (unsigned long long)(long long)v ^ 0x8000000000000000ull;
}
template <> __device__ __forceinline__ unsigned long long order_key<uint8_t>(uint8_t v) {
    return (unsigned long long)(long long)v ^ 0x8000000000000000ull;
}
template <> __device__ __forceinline__ unsigned long long order_key<int32_t>(int32_t v) {
    return (unsigned long long)(long long)v ^ 0x8000000000000000ull;
}
template <> __device__ __forceinline__ unsigned long long order_key<int64_t>(int64_t v) {
    return (unsigned long long)v ^ 0x8000000000000000ull;
}

/* The key of element j: larger keys come first. */
template <typename T> __device__ __forceinline__ unsigned long long topk_key(const T *x, int64_t at, int largest) {
    unsigned long long k = order_key<T>(x[at]);
    return largest ? k : ~k;
}

__device__ __forceinline__ bool key_before(unsigned long long ka, int ia, unsigned long long kb, int ib) {
    return ka > kb || (ka == kb && ia < ib);
}

/* One block per line: bitonic sort of n (a power of two >= len) keys in shared memory. */
template <typename T>
__global__ void topk_sort(const T *__restrict__ x, T *__restrict__ vals, int64_t *__restrict__ idx, int64_t outer,
                          int64_t len, int64_t inner, int64_t k, int n, int largest) {
    extern __shared__ unsigned long long skey[];
    int *sidx = (int *)(skey + n);
    int64_t lines = outer * inner;
    for (int64_t l = blockIdx.x; l < lines; l += gridDim.x) {
        int64_t o = l / inner, i = l % inner, base = o * len * inner + i;
        for (int t = threadIdx.x; t < n; t += blockDim.x) {
            if (t < len) {
                skey[t] = topk_key(x, base + (int64_t)t * inner, largest);
                sidx[t] = t;
            } else {
                skey[t] = 0ull;
                sidx[t] = 0x7fffffff;
            }
        }
        __syncthreads();
        for (int size = 2; size <= n; size <<= 1) {
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int t = threadIdx.x; t < n; t += blockDim.x) {
                    int u = t ^ stride;
                    if (u > t) {
                        bool first_half = (t & size) == 0;
                        unsigned long long kt = skey[t], ku = skey[u];
                        int it = sidx[t], iu = sidx[u];
                        bool swap = first_half ? key_before(ku, iu, kt, it) : key_before(kt, it, ku, iu);
                        if (swap) {
                            skey[t] = ku;
                            skey[u] = kt;
                            sidx[t] = iu;
                            sidx[u] = it;
                        }
                    }
                }
                __syncthreads();
            }
        }
        for (int64_t r = threadIdx.x; r < k; r += blockDim.x) {
            int64_t at = (o * k + r) * inner + i;
            int j = sidx[r];
            if (vals) vals[at] = x[base + (int64_t)j * inner];
            if (idx) idx[at] = j;
        }
        __syncthreads();
    }
}

/* Long lines: k rounds, each taking the first element (in key order) after the last taken. */
template <typename T>
__global__ void topk_select(const T *__restrict__ x, T *__restrict__ vals, int64_t *__restrict__ idx, int64_t outer,
                            int64_t len, int64_t inner, int64_t k, int largest) {
    __shared__ unsigned long long wk[32];
    __shared__ int64_t wi[32];
    __shared__ unsigned long long last_k;
    __shared__ int64_t last_i;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int64_t lines = outer * inner;
    for (int64_t l = blockIdx.x; l < lines; l += gridDim.x) {
        int64_t o = l / inner, i = l % inner, base = o * len * inner + i;
        for (int64_t r = 0; r < k; r++) {
            unsigned long long bk = 0;
            int64_t bi = -1;
            for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
                unsigned long long kj = topk_key(x, base + j * inner, largest);
                /* only elements after the last taken: key smaller, or equal with a higher index */
                if (r > 0 && !(kj < last_k || (kj == last_k && j > last_i))) continue;
                if (bi < 0 || kj > bk || (kj == bk && j < bi)) {
                    bk = kj;
                    bi = j;
                }
            }
            for (int off = 16; off > 0; off >>= 1) {
                unsigned long long ok = __shfl_xor_sync(0xffffffffu, bk, off);
                int64_t oi = __shfl_xor_sync(0xffffffffu, bi, off);
                if (oi >= 0 && (bi < 0 || ok > bk || (ok == bk && oi < bi))) {
                    bk = ok;
                    bi = oi;
                }
            }
            if (lane == 0) {
                wk[warp] = bk;
                wi[warp] = bi;
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                for (int w = 1; w < nw; w++)
                    if (wi[w] >= 0 && (wi[0] < 0 || wk[w] > wk[0] || (wk[w] == wk[0] && wi[w] < wi[0]))) {
                        wk[0] = wk[w];
                        wi[0] = wi[w];
                    }
                int64_t at = (o * k + r) * inner + i;
                if (vals) vals[at] = x[base + wi[0] * inner];
                if (idx) idx[at] = wi[0];
                last_k = wk[0];
                last_i = wi[0];
            }
            __syncthreads();
        }
    }
}

template <typename T>
static cudaError_t launch_topk(const T *x, T *vals, int64_t *idx, int64_t outer, int64_t len, int64_t inner, int64_t k,
                               int largest, cudaStream_t st) {
    int64_t lines = outer * inner;
    if (len <= KILN_NORM_TOPK_SORT_MAX) {
        int n = 2;
        while (n < len) n <<= 1;
        size_t smem = (size_t)n * (sizeof(unsigned long long) + sizeof(int));
        topk_sort<T><<<grid_for(lines, 1), n >= 512 ? 256 : 64, smem, st>>>(x, vals, idx, outer, len, inner, k, n,
                                                                            largest);
    } else {
        if (k > KILN_NORM_TOPK_SELECT_MAX_K) return cudaErrorInvalidValue;
        topk_select<T><<<grid_for(lines, 1), 512, 0, st>>>(x, vals, idx, outer, len, inner, k, largest);
    }
    return cudaGetLastError();
}

} /* namespace knorm */

using namespace knorm;

extern "C" cudaError_t kiln_norm_topk(int ct, const void *x, void *values, int64_t *indices, int64_t outer, int64_t len,
                                      int64_t inner, int64_t k, int largest, cudaStream_t stream) {
    if (outer * inner == 0 || k == 0) return cudaSuccess;
    switch (ct) {
    case KILN_CT_F32: return launch_topk((const float *)x, (float *)values, indices, outer, len, inner, k, largest, stream);
    case KILN_CT_F16: return launch_topk((const __half *)x, (__half *)values, indices, outer, len, inner, k, largest, stream);
    case KILN_CT_BF16:
        return launch_topk((const __nv_bfloat16 *)x, (__nv_bfloat16 *)values, indices, outer, len, inner, k, largest, stream);
    case KILN_CT_I8: return launch_topk((const int8_t *)x, (int8_t *)values, indices, outer, len, inner, k, largest, stream);
    case KILN_CT_U8: return launch_topk((const uint8_t *)x, (uint8_t *)values, indices, outer, len, inner, k, largest, stream);
    case KILN_CT_I32: return launch_topk((const int32_t *)x, (int32_t *)values, indices, outer, len, inner, k, largest, stream);
    case KILN_CT_I64: return launch_topk((const int64_t *)x, (int64_t *)values, indices, outer, len, inner, k, largest, stream);
    default: return cudaErrorInvalidValue;
    }
}
