/* elementwise_quant.cu — QuantizeLinear, DequantizeLinear (per tensor, per axis, blocked) and
 * DynamicQuantizeLinear, bit for bit as src/backends/ref/quant.c:
 *   quantize:   q = x / scale in the precision type (f32 division for f32; f16/bf16/f64 through
 *               double with the reference's roundings), then saturate(rint(q) + zp), NaN -> zp;
 *   dequantize: (float)((double)(x - zp) * scale), then rounded to the output dtype;
 *   dynamic:    a two-pass min/max (per-block partials in scratch, then one block) giving
 *               scale = (max(0, max) - min(0, min)) / 255 (1 for an all-zero input) and
 *               zp = rint(clamp(-min / scale, 0, 255)), then the u8 quantization, all in f32.
 * Per-tensor parameters take the 16-byte-vector map; the others a grid-stride loop with fast
 * division to find each element's scale. */
#include "elementwise_common.cuh"

namespace ew {

/* The reference's seq_round_to: v through f32, then to f16/bf16 (or kept as double). */
__device__ __forceinline__ double round_to(int ct, double v) {
    switch (ct) {
    case KILN_CT_F32: return (float)v;
    case KILN_CT_F16: return __half2float(__float2half_rn((float)v));
    case KILN_CT_BF16: return __bfloat162float(__float2bfloat16_rn((float)v));
    default: return v;
    }
}

template <class I> struct QuantGeo {
    int kind;
    I inner, d, s;
    Div<I> div_inner, div_d, div_block;
};

template <class I> static QuantGeo<I> make_quant_geo(const kiln_ew_quant &l) {
    QuantGeo<I> g;
    g.kind = l.kind;
    g.inner = (I)l.inner;
    g.d = (I)l.d;
    g.s = (I)l.s;
    g.div_inner.init((I)(l.inner > 0 ? l.inner : 1));
    g.div_d.init((I)(l.d > 0 ? l.d : 1));
    g.div_block.init((I)(l.block > 0 ? l.block : 1));
    return g;
}

/* Index of element k's scale and zero point. */
template <class I> __device__ __forceinline__ I quant_index(const QuantGeo<I> &g, I k) {
    if (g.kind == 0) return 0;
    I t = g.div_inner.div(k), i = k - t * g.inner;
    I o = g.div_d.div(t), a = t - o * g.d;
    if (g.kind == 1) return a;
    return (o * g.s + g.div_block.div(a)) * g.inner + i;
}

struct QuantArgs {
    const void *scale;
    int ct_scale, ct_prec;
    int64_t lo, hi;
};

template <class Tx, class Ty> __device__ __forceinline__ Ty quantize_one(const QuantArgs &q, Tx x, const Ty *zp, int64_t j) {
    double xv;
    if constexpr (is_float<Tx>::value) xv = (double)FT<Tx>::load(x);
    else xv = (double)x;
    double s = ld_f64(q.ct_scale, q.scale, j);
    if (q.ct_prec == KILN_CT_F32) {
        /* All in f32: one f32 division as the reference's; rint(v) + zp is exact below 2^24 and
         * saturates the same above. */
        float v = (float)xv / (float)s, z = zp ? (float)zp[j] : 0.0f;
        float r = v != v ? z : rintf(v) + z;
        if (r <= (float)q.lo) return (Ty)q.lo;
        if (r >= (float)q.hi) return (Ty)q.hi;
        return (Ty)(int32_t)r;
    }
    double v;
    if (q.ct_prec == KILN_CT_F64) v = xv / s;
    else v = round_to(q.ct_prec, round_to(q.ct_prec, xv) / round_to(q.ct_prec, s));
    double z = zp ? (double)zp[j] : 0.0;
    double r = v != v ? z : rint(v) + z;
    if (r <= (double)q.lo) return (Ty)q.lo;
    if (r >= (double)q.hi) return (Ty)q.hi;
    return (Ty)(int64_t)r;
}

template <class Tx, class Ty> struct QuantizeTensor {
    QuantArgs q;
    const Ty *zp;
    __device__ __forceinline__ Ty operator()(Tx x) const { return quantize_one<Tx, Ty>(q, x, zp, 0); }
};

template <class Tx, class Ty, class I>
__global__ void __launch_bounds__(kThreads)
    k_quantize(const Tx *x, const Ty *zp, Ty *y, I n, QuantGeo<I> g, QuantArgs q) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I k = (I)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride)
        y[k] = quantize_one<Tx, Ty>(q, x[k], zp, (int64_t)quant_index(g, k));
}

template <class Tx, class Ty>
static cudaError_t quantize(const void *x, const void *zp, void *y, const kiln_ew_quant &l, const QuantArgs &q,
                            cudaStream_t s) {
    int64_t n = l.outer * l.d * l.inner;
    if (l.kind == 0) return launch_map<Tx, Ty>(x, y, n, QuantizeTensor<Tx, Ty>{q, (const Ty *)zp}, s);
    if (n <= INT32_MAX)
        k_quantize<Tx, Ty, uint32_t><<<blocks_for(n), kThreads, 0, s>>>((const Tx *)x, (const Ty *)zp, (Ty *)y,
                                                                        (uint32_t)n, make_quant_geo<uint32_t>(l), q);
    else
        k_quantize<Tx, Ty, uint64_t><<<blocks_for(n), kThreads, 0, s>>>((const Tx *)x, (const Ty *)zp, (Ty *)y,
                                                                        (uint64_t)n, make_quant_geo<uint64_t>(l), q);
    return cudaGetLastError();
}

/* ---- dequantize ---- */
template <class Tx, class Ty>
__device__ __forceinline__ Ty dequantize_one(const void *scale, int ct_scale, Tx x, const Tx *zp, int64_t j) {
    int64_t d = (int64_t)x - (zp ? (int64_t)zp[j] : 0);
    float v;
    if constexpr (sizeof(Tx) < 4) /* |d| < 2^17: the f32 product is the double one, rounded once */
        v = (float)d * (float)ld_f64(ct_scale, scale, j);
    else
        v = (float)((double)d * ld_f64(ct_scale, scale, j));
    return FT<Ty>::store(v);
}

template <class Tx, class Ty> struct DequantizeTensor {
    const void *scale;
    int ct_scale;
    const Tx *zp;
    __device__ __forceinline__ Ty operator()(Tx x) const { return dequantize_one<Tx, Ty>(scale, ct_scale, x, zp, 0); }
};

template <class Tx, class Ty, class I>
__global__ void __launch_bounds__(kThreads)
    k_dequantize(const Tx *x, const void *scale, int ct_scale, const Tx *zp, Ty *y, I n, QuantGeo<I> g) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I k = (I)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride)
        y[k] = dequantize_one<Tx, Ty>(scale, ct_scale, x[k], zp, (int64_t)quant_index(g, k));
}

template <class Tx, class Ty>
static cudaError_t dequantize(const void *x, const void *scale, int ct_scale, const void *zp, void *y,
                              const kiln_ew_quant &l, cudaStream_t s) {
    int64_t n = l.outer * l.d * l.inner;
    if (l.kind == 0)
        return launch_map<Tx, Ty>(x, y, n, DequantizeTensor<Tx, Ty>{scale, ct_scale, (const Tx *)zp}, s);
    if (n <= INT32_MAX)
        k_dequantize<Tx, Ty, uint32_t><<<blocks_for(n), kThreads, 0, s>>>(
            (const Tx *)x, scale, ct_scale, (const Tx *)zp, (Ty *)y, (uint32_t)n, make_quant_geo<uint32_t>(l));
    else
        k_dequantize<Tx, Ty, uint64_t><<<blocks_for(n), kThreads, 0, s>>>(
            (const Tx *)x, scale, ct_scale, (const Tx *)zp, (Ty *)y, (uint64_t)n, make_quant_geo<uint64_t>(l));
    return cudaGetLastError();
}

template <class F> static cudaError_t with_qint(int ct, F &&f) {
    switch (ct) {
    case KILN_CT_U8: return f(tag<uint8_t>{});
    case KILN_CT_I8: return f(tag<int8_t>{});
    case KILN_CT_U16: return f(tag<uint16_t>{});
    case KILN_CT_I16: return f(tag<int16_t>{});
    default: return cudaErrorInvalidValue;
    }
}

/* ---- DynamicQuantizeLinear ---- */
constexpr int kMinMaxBlocks = 1024;

/* min and max over the block, NaN ignored (fminf/fmaxf drop it), starting from 0 */
__device__ __forceinline__ void block_minmax(float &mn, float &mx) {
    __shared__ float smn[kThreads / 32], smx[kThreads / 32];
    for (int o = 16; o > 0; o >>= 1) {
        mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, o));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    }
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        smn[w] = mn;
        smx[w] = mx;
    }
    __syncthreads();
    mn = 0.0f;
    mx = 0.0f;
    for (int k = 0; k < kThreads / 32; k++) {
        mn = fminf(mn, smn[k]);
        mx = fmaxf(mx, smx[k]);
    }
}

__global__ void __launch_bounds__(kThreads) k_minmax_partial(const float *x, int64_t n, float *part) {
    float mn = 0.0f, mx = 0.0f;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = x[i];
        mn = fminf(mn, v);
        mx = fmaxf(mx, v);
    }
    block_minmax(mn, mx);
    if (threadIdx.x == 0) {
        part[2 * blockIdx.x] = mn;
        part[2 * blockIdx.x + 1] = mx;
    }
}

/* One block: the final min/max, then scale and zero point into params[0..1] and the outputs. */
__global__ void __launch_bounds__(kThreads)
    k_minmax_final(const float *part, int n_part, float *params, float *scale_out, uint8_t *zp_out) {
    float mn = 0.0f, mx = 0.0f;
    for (int k = threadIdx.x; k < n_part; k += blockDim.x) {
        mn = fminf(mn, part[2 * k]);
        mx = fmaxf(mx, part[2 * k + 1]);
    }
    block_minmax(mn, mx);
    if (threadIdx.x == 0) {
        float scale = mx == mn ? 1.0f : (mx - mn) / 255.0f; /* all zeros: 1, as ONNX Runtime */
        float zp = rintf(fminf(fmaxf(0.0f - mn / scale, 0.0f), 255.0f));
        params[0] = scale;
        params[1] = zp;
        if (scale_out) *scale_out = scale;
        if (zp_out) *zp_out = (uint8_t)zp;
    }
}

__global__ void __launch_bounds__(kThreads) k_dynamic_quantize(const float *x, int64_t n, const float *params, uint8_t *y) {
    float scale = params[0], zp = params[1];
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float q = rintf(x[i] / scale) + zp;
        y[i] = q != q ? (uint8_t)zp : (uint8_t)fminf(fmaxf(q, 0.0f), 255.0f);
    }
}

} // namespace ew

using namespace ew;

KILN_CUDA_EXTERN cudaError_t kiln_ew_quantize(int ct_x, int ct_scale, int ct_y, int ct_prec, const void *x,
                                              const void *scale, const void *zp, void *y, kiln_ew_quant l,
                                              cudaStream_t stream) {
    if (l.outer * l.d * l.inner <= 0) return cudaSuccess;
    QuantArgs q = {scale, ct_scale, ct_prec, 0, 0};
    switch (ct_y) {
    case KILN_CT_U8: q.lo = 0; q.hi = 255; break;
    case KILN_CT_I8: q.lo = -128; q.hi = 127; break;
    case KILN_CT_U16: q.lo = 0; q.hi = 65535; break;
    case KILN_CT_I16: q.lo = -32768; q.hi = 32767; break;
    default: return cudaErrorInvalidValue;
    }
    auto with_x = [&](auto fy) {
        using Ty = typename decltype(fy)::type;
        switch (ct_x) {
        case KILN_CT_F32: return quantize<float, Ty>(x, zp, y, l, q, stream);
        case KILN_CT_F16: return quantize<__half, Ty>(x, zp, y, l, q, stream);
        case KILN_CT_BF16: return quantize<__nv_bfloat16, Ty>(x, zp, y, l, q, stream);
        case KILN_CT_I32: return quantize<int32_t, Ty>(x, zp, y, l, q, stream);
        default: return cudaErrorInvalidValue;
        }
    };
    return with_qint(ct_y, with_x);
}

KILN_CUDA_EXTERN cudaError_t kiln_ew_dequantize(int ct_x, int ct_scale, int ct_y, const void *x, const void *scale,
                                                const void *zp, void *y, kiln_ew_quant l, cudaStream_t stream) {
    if (l.outer * l.d * l.inner <= 0) return cudaSuccess;
    auto with_y = [&](auto fx) {
        using Tx = typename decltype(fx)::type;
        switch (ct_y) {
        case KILN_CT_F32: return dequantize<Tx, float>(x, scale, ct_scale, zp, y, l, stream);
        case KILN_CT_F16: return dequantize<Tx, __half>(x, scale, ct_scale, zp, y, l, stream);
        case KILN_CT_BF16: return dequantize<Tx, __nv_bfloat16>(x, scale, ct_scale, zp, y, l, stream);
        default: return cudaErrorInvalidValue;
        }
    };
    if (ct_x == KILN_CT_I32) return with_y(tag<int32_t>{});
    return with_qint(ct_x, with_y);
}

KILN_CUDA_EXTERN size_t kiln_ew_dynamic_quantize_scratch(void) { return (2 * kMinMaxBlocks + 2) * sizeof(float); }

KILN_CUDA_EXTERN cudaError_t kiln_ew_dynamic_quantize(const float *x, int64_t n, uint8_t *y, float *scale,
                                                      uint8_t *zp, void *scratch, cudaStream_t stream) {
    float *part = (float *)scratch, *params = part + 2 * kMinMaxBlocks;
    int64_t want = (n + kThreads * 4 - 1) / (kThreads * 4); /* about 4 elements a thread */
    int n_part = (int)(want < 1 ? 1 : want > kMinMaxBlocks ? kMinMaxBlocks : want);
    k_minmax_partial<<<n_part, kThreads, 0, stream>>>(x, n, part);
    k_minmax_final<<<1, kThreads, 0, stream>>>(part, n_part, params, scale, zp);
    if (n > 0) k_dynamic_quantize<<<blocks_for(n), kThreads, 0, stream>>>(x, n, params, y);
    return cudaGetLastError();
}
