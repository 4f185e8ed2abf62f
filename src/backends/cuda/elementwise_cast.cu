/* elementwise_cast.cu — dtype conversion between every pair of the 13 kernel element types
 * (one kernel each, 16-byte vectors where aligned), and filling with ones (Dropout's mask).
 * Rules of src/backends/ref/cast.c: floats round once to nearest even (f64 -> f16/bf16
 * directly, never through f32), float -> integer truncates with NaN and out-of-range values as
 * x86-64 gives them (f64_to_int), integer -> integer keeps the low bits, anything -> bool is
 * "nonzero" (NaN included), bool -> number is 0 or 1. */
#include "elementwise_common.cuh"

#include <type_traits>

namespace ew {

/* Source element as double (floats) or as 64-bit two's complement bits (integers, bool). */
template <class S> __device__ __forceinline__ double src_f64(S x) { return (double)FT<S>::load(x); }
template <class S> __device__ __forceinline__ uint64_t src_bits(S x) {
    if constexpr (std::is_same<S, boolean>::value) return x.v != 0;
    else if constexpr (std::is_signed<S>::value) return (uint64_t)(int64_t)x;
    else return (uint64_t)x;
}

template <class S, class D> struct Cast {
    __device__ __forceinline__ D operator()(S x) const {
        if constexpr (is_float<S>::value) {
            if constexpr (std::is_same<D, boolean>::value) return boolean{(uint8_t)(FT<S>::load(x) != 0)};
            else if constexpr (std::is_same<D, float>::value) return (float)FT<S>::load(x);
            else if constexpr (std::is_same<D, double>::value) return src_f64(x);
            else if constexpr (std::is_same<D, __half>::value) {
                if constexpr (std::is_same<S, double>::value) return __double2half(x);
                else return __float2half_rn(FT<S>::load(x)); /* f32 and bf16 are exact in f32 */
            } else if constexpr (std::is_same<D, __nv_bfloat16>::value) {
                if constexpr (std::is_same<S, double>::value) return __double2bfloat16(x);
                else return __float2bfloat16_rn(FT<S>::load(x));
            } else {
                return (D)f64_to_int(ct_of<D>::value, src_f64(x));
            }
        } else {
            uint64_t u = src_bits(x);
            constexpr bool from_unsigned = std::is_unsigned<S>::value || std::is_same<S, boolean>::value;
            if constexpr (std::is_same<D, boolean>::value) return boolean{(uint8_t)(u != 0)};
            else if constexpr (std::is_same<D, float>::value) return from_unsigned ? (float)u : (float)(int64_t)u;
            else if constexpr (std::is_same<D, double>::value) return from_unsigned ? (double)u : (double)(int64_t)u;
            else if constexpr (std::is_same<D, __half>::value)
                return __double2half(from_unsigned ? (double)u : (double)(int64_t)u);
            else if constexpr (std::is_same<D, __nv_bfloat16>::value)
                return __double2bfloat16(from_unsigned ? (double)u : (double)(int64_t)u);
            else return (D)u; /* the low bits */
        }
    }
};

template <class E> __global__ void __launch_bounds__(kThreads) k_fill(E *y, int64_t n, E v) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = v;
}

} // namespace ew

using namespace ew;

KILN_CUDA_EXTERN cudaError_t kiln_ew_cast(int ct_in, int ct_out, const void *x, void *y, int64_t n,
                                          cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (ct_in == ct_out) return cudaMemcpyAsync(y, x, (size_t)n * ct_size(ct_in), cudaMemcpyDeviceToDevice, stream);
    return with_any(ct_in, [&](auto s) {
        using S = typename decltype(s)::type;
        return with_any(ct_out, [&](auto d) {
            using D = typename decltype(d)::type;
            return launch_map<S, D>(x, y, n, Cast<S, D>{}, stream);
        });
    });
}

KILN_CUDA_EXTERN cudaError_t kiln_ew_fill_one(int ct, void *y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    unsigned blocks = blocks_for(n);
    switch (ct) {
    case KILN_CT_I8: case KILN_CT_U8: case KILN_CT_BOOL: return cudaMemsetAsync(y, 1, (size_t)n, stream);
    case KILN_CT_F16: k_fill<uint16_t><<<blocks, kThreads, 0, stream>>>((uint16_t *)y, n, 0x3c00); break;
    case KILN_CT_BF16: k_fill<uint16_t><<<blocks, kThreads, 0, stream>>>((uint16_t *)y, n, 0x3f80); break;
    case KILN_CT_I16: case KILN_CT_U16: k_fill<uint16_t><<<blocks, kThreads, 0, stream>>>((uint16_t *)y, n, 1); break;
    case KILN_CT_F32: k_fill<uint32_t><<<blocks, kThreads, 0, stream>>>((uint32_t *)y, n, 0x3f800000u); break;
    case KILN_CT_I32: case KILN_CT_U32: k_fill<uint32_t><<<blocks, kThreads, 0, stream>>>((uint32_t *)y, n, 1u); break;
    case KILN_CT_F64:
        k_fill<uint64_t><<<blocks, kThreads, 0, stream>>>((uint64_t *)y, n, 0x3ff0000000000000ull);
        break;
    case KILN_CT_I64: case KILN_CT_U64: k_fill<uint64_t><<<blocks, kThreads, 0, stream>>>((uint64_t *)y, n, 1ull); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
