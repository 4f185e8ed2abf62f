/* data_device.cuh — device helpers shared by the data family's .cu files: element units for
 * byte-moving kernels, float conversion of every element type, launch sizes. nvcc only. */
#ifndef KILN_CUDA_DATA_DEVICE_CUH
#define KILN_CUDA_DATA_DEVICE_CUH

#include "kernels_data.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

/* Unit types for moving bytes: 1, 2, 4, 8, 16 bytes. */
typedef uint8_t kd_u1;
typedef uint16_t kd_u2;
typedef uint32_t kd_u4;
typedef unsigned long long kd_u8;
typedef uint4 kd_u16;

#define KD_THREADS 256

/* Blocks for a grid-stride loop over n items (at least 1; the kernels loop past the cap). */
static inline unsigned kd_blocks(int64_t n, int threads = KD_THREADS) {
    int64_t b = (n + threads - 1) / threads;
    if (b > 65536) b = 65536;
    return (unsigned)(b < 1 ? 1 : b);
}

#define KD_LOOP(i, n)                                                                              \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                     \
         i += (int64_t)gridDim.x * blockDim.x)

/* Float value of each element type, and the store back (integers: as C casts; the callers
 * round and saturate first where the reference does). */
template <typename T> struct kd_num {
    static __device__ __forceinline__ float to_f(T v) { return (float)v; }
    static __device__ __forceinline__ double to_d(T v) { return (double)v; }
    static __device__ __forceinline__ T from_f(float v) { return (T)v; }
    static __device__ __forceinline__ T from_d(double v) { return (T)v; }
};
template <> struct kd_num<__half> {
    static __device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
    static __device__ __forceinline__ double to_d(__half v) { return (double)__half2float(v); }
    static __device__ __forceinline__ __half from_f(float v) { return __float2half_rn(v); }
    static __device__ __forceinline__ __half from_d(double v) { return __float2half_rn((float)v); }
};
template <> struct kd_num<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ double to_d(__nv_bfloat16 v) { return (double)__bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }
    static __device__ __forceinline__ __nv_bfloat16 from_d(double v) { return __float2bfloat16_rn((float)v); }
};

/* Loads element i of an index tensor (int32 or int64). */
static __device__ __forceinline__ int64_t kd_index(const void *p, int idx64, int64_t i) {
    return idx64 ? ((const int64_t *)p)[i] : (int64_t)((const int32_t *)p)[i];
}

/* Wraps a negative index by bound; -1 when it stays outside [0, bound). */
static __device__ __forceinline__ int64_t kd_wrap(int64_t v, int64_t bound) {
    if (v < 0) v += bound;
    return v >= 0 && v < bound ? v : -1;
}

/* Calls F.template operator()<T>() with T the unit type of `unit` bytes. */
#define KD_DISPATCH_UNIT(unit, ...)                                                                \
    switch (unit) {                                                                                \
    case 1: { typedef kd_u1 U; __VA_ARGS__; } break;                                               \
    case 2: { typedef kd_u2 U; __VA_ARGS__; } break;                                               \
    case 4: { typedef kd_u4 U; __VA_ARGS__; } break;                                               \
    case 8: { typedef kd_u8 U; __VA_ARGS__; } break;                                               \
    case 16: { typedef kd_u16 U; __VA_ARGS__; } break;                                             \
    default: return cudaErrorInvalidValue;                                                         \
    }

#endif /* KILN_CUDA_DATA_DEVICE_CUH */
