/* norm_common.cuh — device helpers shared by the norm family's .cu files: float conversion of
 * the element types, 16-byte vector loads/stores, warp and block reductions, and the dtype
 * switch that instantiates a kernel for F32/F16/BF16. Header-only (inline and templates). */
#ifndef KILN_CUDA_NORM_COMMON_CUH
#define KILN_CUDA_NORM_COMMON_CUH

#include "kernels_norm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

namespace knorm {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/* Element i of a float tensor whose type is known only at run time (parameters, masks). */
__device__ __forceinline__ float ld_ct(int ct, const void *p, int64_t i) {
    switch (ct) {
    case KILN_CT_F16: return __half2float(((const __half *)p)[i]);
    case KILN_CT_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

__device__ __forceinline__ void st_ct(int ct, void *p, int64_t i, float v) {
    switch (ct) {
    case KILN_CT_F16: ((__half *)p)[i] = __float2half_rn(v); break;
    case KILN_CT_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

/* V consecutive elements as one aligned access (16 bytes when V * sizeof(T) == 16). */
template <typename T, int V> struct alignas(sizeof(T) * V) vec_t {
    T v[V];
};

template <typename T, int V> __device__ __forceinline__ void load_vec(const T *p, float *out) {
    vec_t<T, V> r = *reinterpret_cast<const vec_t<T, V> *>(p);
#pragma unroll
    for (int i = 0; i < V; i++) out[i] = to_f(r.v[i]);
}

template <typename T, int V> __device__ __forceinline__ void store_vec(T *p, const float *in) {
    vec_t<T, V> r;
#pragma unroll
    for (int i = 0; i < V; i++) r.v[i] = from_f<T>(in[i]);
    *reinterpret_cast<vec_t<T, V> *>(p) = r;
}

/* The widest vector (elements) for 16-byte accesses of T. */
template <typename T> constexpr int vec16() { return (int)(16 / sizeof(T)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum / max; every thread gets the result. sh holds 32 floats; blockDim.x is a
 * multiple of 32. Ends with a barrier, so sh can be reused at once. */
__device__ __forceinline__ float block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float r = lane < nw ? sh[lane] : 0.0f;
        r = warp_sum(r);
        if (lane == 0) sh[0] = r;
    }
    __syncthreads();
    float r = sh[0];
    __syncthreads();
    return r;
}

__device__ __forceinline__ float block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float r = lane < nw ? sh[lane] : -INFINITY;
        r = warp_max(r);
        if (lane == 0) sh[0] = r;
    }
    __syncthreads();
    float r = sh[0];
    __syncthreads();
    return r;
}

/* Offset of the k-th element (row-major over v.dims) of a strided view. */
__device__ __forceinline__ int64_t view_offset(const kiln_cuda_view &v, int64_t k) {
    int64_t off = 0;
    for (int d = v.rank - 1; d >= 0; d--) {
        int64_t n = v.dims[d];
        off += (k % n) * v.strides[d];
        k /= n;
    }
    return off;
}

/* Threads for a block that walks a row of n vectors: enough to give each thread a few. */
static inline int row_threads(int64_t n) {
    if (n >= 8192) return 1024;
    if (n >= 2048) return 512;
    if (n >= 512) return 256;
    if (n >= 128) return 128;
    return 64;
}

/* Blocks for a grid-stride loop over n items of `per_block` each. */
static inline unsigned grid_for(int64_t n, int64_t per_block) {
    int64_t b = (n + per_block - 1) / per_block;
    if (b < 1) b = 1;
    if (b > 0x7fffffff) b = 0x7fffffff;
    return (unsigned)b;
}

} /* namespace knorm */

/* Runs `body` with T the element type of float ctype ct (returns cudaErrorInvalidValue for
 * any other type). */
#define KNORM_FLOAT_SWITCH(ct, T, ...)                                                             \
    switch (ct) {                                                                              \
    case KILN_CT_F32: {                                                                        \
        typedef float T;                                                                       \
        __VA_ARGS__;                                                                           \
    } break;                                                                                   \
    case KILN_CT_F16: {                                                                        \
        typedef __half T;                                                                      \
        __VA_ARGS__;                                                                           \
    } break;                                                                                   \
    case KILN_CT_BF16: {                                                                       \
        typedef __nv_bfloat16 T;                                                               \
        __VA_ARGS__;                                                                           \
    } break;                                                                                   \
    default: return cudaErrorInvalidValue;                                                     \
    }

#endif /* KILN_CUDA_NORM_COMMON_CUH */
