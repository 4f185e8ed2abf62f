/* norm_topk.cu — TopK along the middle axis of (outer, len, inner). The order is the
 * reference's: by value (descending for largest, ascending otherwise; a NaN is larger than any
 * number, -0 equals +0), ties to the lower index; the output is always sorted. Each element
 * becomes a 64-bit key whose unsigned order is that value order, so one comparison of
 * (key, index) decides. Lines of up to KILN_NORM_TOPK_SORT_MAX elements: one block bitonic-
 * sorts the line in shared memory. Longer lines (k at most KILN_NORM_TOPK_LONG_MAX_K, half a
 * chunk): rounds of chunks of KILN_NORM_TOPK_SORT_MAX, sorted a block each in parallel, each
 * passing its k first to the next round, until one chunk is left (a line of 120,000 with k =
 * 1,000, as in a detector's region proposals: four launches). */
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

/* One round over (line, chunk) pairs, a block each: the chunk's (key, index) pairs, read from x
 * in the first round (ckey NULL) or from the previous round's candidates, are bitonic-sorted in
 * shared memory (n2 >= the chunk's length, a power of two) and the first k go on: to the next
 * round's candidates at [line][chunk * k + r], or, in the last round (one chunk a line), to the
 * outputs. Whatever is among a line's k first is among its chunk's k first, so every round keeps
 * it; indices are unique within a line, so (key, index) is a total order and the result equals
 * the reference's whatever the chunking. */
template <typename T>
__global__ void topk_round(const T *__restrict__ x, const unsigned long long *__restrict__ ckey, const int *__restrict__ cidx,
                           int64_t n, int64_t chunks, unsigned long long *__restrict__ okey, int *__restrict__ oidx,
                           int64_t nout, T *__restrict__ vals, int64_t *__restrict__ idx, int64_t lines, int64_t len,
                           int64_t inner, int64_t k, int n2, int largest) {
    extern __shared__ unsigned long long skey[];
    int *sidx = (int *)(skey + n2);
    for (int64_t b = blockIdx.x; b < lines * chunks; b += gridDim.x) {
        int64_t l = b / chunks, c = b % chunks, start = c * KILN_NORM_TOPK_SORT_MAX;
        int64_t o = l / inner, i = l % inner, base = o * len * inner + i;
        int64_t m = n - start < KILN_NORM_TOPK_SORT_MAX ? n - start : KILN_NORM_TOPK_SORT_MAX;
        for (int t = threadIdx.x; t < n2; t += blockDim.x) {
            if (t < m && !ckey) {
                skey[t] = topk_key(x, base + (start + t) * inner, largest);
                sidx[t] = (int)(start + t);
            } else if (t < m) {
                skey[t] = ckey[l * n + start + t];
                sidx[t] = cidx[l * n + start + t];
            } else {
                skey[t] = 0ull;
                sidx[t] = 0x7fffffff;
            }
        }
        __syncthreads();
        for (int size = 2; size <= n2; size <<= 1) {
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int t = threadIdx.x; t < n2; t += blockDim.x) {
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
        int64_t keep = m < k ? m : k;
        for (int64_t r = threadIdx.x; r < keep; r += blockDim.x) {
            if (okey) {
                okey[l * nout + c * k + r] = skey[r];
                oidx[l * nout + c * k + r] = sidx[r];
            } else {
                int64_t at = (o * k + r) * inner + i;
                int j = sidx[r];
                if (vals) vals[at] = x[base + (int64_t)j * inner];
                if (idx) idx[at] = j;
            }
        }
        __syncthreads();
    }
}

/* Candidates a line keeps after a round over n: k from each full chunk, up to k from the last. */
static int64_t round_out(int64_t n, int64_t k) {
    int64_t chunks = (n + KILN_NORM_TOPK_SORT_MAX - 1) / KILN_NORM_TOPK_SORT_MAX;
    int64_t last = n - (chunks - 1) * KILN_NORM_TOPK_SORT_MAX;
    return (chunks - 1) * k + (last < k ? last : k);
}

template <typename T>
static cudaError_t launch_topk(const T *x, T *vals, int64_t *idx, int64_t outer, int64_t len, int64_t inner, int64_t k,
                               int largest, void *scratch, cudaStream_t st) {
    int64_t lines = outer * inner, n = len, cap = len > KILN_NORM_TOPK_SORT_MAX ? round_out(len, k) : 0;
    unsigned long long *key[2] = {NULL, NULL};
    int *ix[2] = {NULL, NULL};
    if (cap) {
        if (!scratch || 2 * k > KILN_NORM_TOPK_SORT_MAX || len > 0x7fffffff) return cudaErrorInvalidValue;
        key[0] = (unsigned long long *)scratch;
        key[1] = key[0] + lines * cap;
        ix[0] = (int *)(key[1] + lines * cap);
        ix[1] = ix[0] + lines * cap;
    }
    int cur = -1; /* candidates in key[cur] / ix[cur]; -1: in x */
    for (;;) {
        bool last = n <= KILN_NORM_TOPK_SORT_MAX;
        int64_t chunks = last ? 1 : (n + KILN_NORM_TOPK_SORT_MAX - 1) / KILN_NORM_TOPK_SORT_MAX;
        int64_t nout = last ? 0 : round_out(n, k);
        int n2 = 2;
        while (n2 < (last ? n : KILN_NORM_TOPK_SORT_MAX)) n2 <<= 1;
        int nxt = cur == 0 ? 1 : 0;
        size_t smem = (size_t)n2 * (sizeof(unsigned long long) + sizeof(int));
        topk_round<T><<<grid_for(lines * chunks, 1), n2 >= 2048 ? 512 : n2 >= 512 ? 256 : 64, smem, st>>>(
            x, cur < 0 ? NULL : key[cur], cur < 0 ? NULL : ix[cur], n, chunks, last ? NULL : key[nxt],
            last ? NULL : ix[nxt], nout, vals, idx, lines, len, inner, k, n2, largest);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess || last) return e;
        cur = nxt;
        n = nout;
    }
}

} /* namespace knorm */

using namespace knorm;

extern "C" size_t kiln_norm_topk_scratch(int64_t outer, int64_t len, int64_t inner, int64_t k) {
    if (len <= KILN_NORM_TOPK_SORT_MAX) return 0;
    return (size_t)(2 * outer * inner * round_out(len, k)) * (sizeof(unsigned long long) + sizeof(int));
}

extern "C" cudaError_t kiln_norm_topk(int ct, const void *x, void *values, int64_t *indices, int64_t outer, int64_t len,
                                      int64_t inner, int64_t k, int largest, void *scratch, cudaStream_t stream) {
    if (outer * inner == 0 || k == 0) return cudaSuccess;
    switch (ct) {
    case KILN_CT_F32: return launch_topk((const float *)x, (float *)values, indices, outer, len, inner, k, largest, scratch, stream);
    case KILN_CT_F16: return launch_topk((const __half *)x, (__half *)values, indices, outer, len, inner, k, largest, scratch, stream);
    case KILN_CT_BF16:
        return launch_topk((const __nv_bfloat16 *)x, (__nv_bfloat16 *)values, indices, outer, len, inner, k, largest, scratch, stream);
    case KILN_CT_I8: return launch_topk((const int8_t *)x, (int8_t *)values, indices, outer, len, inner, k, largest, scratch, stream);
    case KILN_CT_U8: return launch_topk((const uint8_t *)x, (uint8_t *)values, indices, outer, len, inner, k, largest, scratch, stream);
    case KILN_CT_I32: return launch_topk((const int32_t *)x, (int32_t *)values, indices, outer, len, inner, k, largest, scratch, stream);
    case KILN_CT_I64: return launch_topk((const int64_t *)x, (int64_t *)values, indices, outer, len, inner, k, largest, scratch, stream);
    default: return cudaErrorInvalidValue;
    }
}
