/* gemm_kernels.cu — the gemm family's own kernels (launchers declared in kernels_gemm.h): the
 * small passes around cuBLASLt and cuDNN (bias, Gemm's C, zero-padded windows), integer
 * MatMul, and the INT8 pipeline (pack, row sums, im2col, fallback GEMM, zero-point correction
 * and requantization). All are memory-bound elementwise-style kernels with grid-stride loops and
 * 64-bit indexing; the matrix work itself is cuBLASLt's. Tested through the gemm family's
 * checks against the reference backend (tests/cuda/gemm_check.c). */
#include "kernels_gemm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) {
    int64_t b = (n + kThreads - 1) / kThreads;
    if (b < 1) b = 1;
    return b > (int64_t(1) << 20) ? (int64_t(1) << 20) : b;
}

/* ---- float element conversions: accumulate in float (double for f64) ---- */
template <typename T> struct acc_of { typedef float type; };
template <> struct acc_of<double> { typedef double type; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ double to_acc(double v) { return v; }

template <typename T> __device__ __forceinline__ T from_acc(typename acc_of<T>::type v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }

template <typename T>
__global__ void bias_last_kernel(T *y, const T *bias, int64_t total, int64_t cols) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = from_acc<T>(to_acc(y[i]) + to_acc(bias[i % cols]));
}

template <typename T, typename I>
__global__ void bias_channel_kernel(T *y, const T *bias, I total, I channels, I plane, int relu) {
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        typename acc_of<T>::type v = to_acc(y[i]) + to_acc(bias[(i / plane) % channels]);
        if (relu) v = v > 0 ? v : 0;
        y[i] = from_acc<T>(v);
    }
}

template <typename T>
__global__ void fill_c_kernel(T *dst, const T *c, int64_t rows, int64_t cols, int64_t c_row, int64_t c_col,
                              typename acc_of<T>::type scale) {
    int64_t total = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, k = i - r * cols;
        typename acc_of<T>::type v = 0;
        if (c) v = scale * to_acc(c[r * c_row + k * c_col]);
        dst[i] = from_acc<T>(v);
    }
}

template <typename T>
__global__ void window_kernel(T *dst, const T *src, kiln_gemm_window w) {
    int64_t dplane = w.dst[0] * w.dst[1] * w.dst[2], splane = w.src[0] * w.src[1] * w.src[2];
    int64_t total = w.outer * dplane;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = i / dplane, r = i - o * dplane;
        int64_t x2 = r % w.dst[2], t = r / w.dst[2];
        int64_t x1 = t % w.dst[1], x0 = t / w.dst[1];
        int64_t s0 = x0 - w.off[0], s1 = x1 - w.off[1], s2 = x2 - w.off[2];
        bool in = s0 >= 0 && s0 < w.src[0] && s1 >= 0 && s1 < w.src[1] && s2 >= 0 && s2 < w.src[2];
        dst[i] = in ? src[o * splane + (s0 * w.src[1] + s1) * w.src[2] + s2] : T(0);
    }
}

/* 32x32 tiles through shared memory (block 32 x 8): reads along src rows and writes along dst
 * rows are both coalesced. */
template <typename T>
__global__ void transpose_kernel(T *dst, const T *src, int64_t batch, int64_t rows, int64_t cols) {
    __shared__ T tile[32][33];
    int64_t c0 = (int64_t)blockIdx.x * 32, r0 = (int64_t)blockIdx.y * 32;
    for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
        const T *s = src + b * rows * cols;
        T *d = dst + b * rows * cols;
        for (int j = threadIdx.y; j < 32; j += 8) {
            int64_t r = r0 + j, c = c0 + threadIdx.x;
            if (r < rows && c < cols) tile[j][threadIdx.x] = s[r * cols + c];
        }
        __syncthreads();
        for (int j = threadIdx.y; j < 32; j += 8) {
            int64_t c = c0 + j, r = r0 + threadIdx.x;
            if (r < rows && c < cols) d[c * rows + r] = tile[threadIdx.x][j];
        }
        __syncthreads();
    }
}

/* ---- integer MatMul / Gemm ---- */
template <typename T> __device__ __forceinline__ uint64_t widen(T v);
template <> __device__ __forceinline__ uint64_t widen<int32_t>(int32_t v) { return (uint64_t)(int64_t)v; }
template <> __device__ __forceinline__ uint64_t widen<int64_t>(int64_t v) { return (uint64_t)v; }
template <> __device__ __forceinline__ uint64_t widen<uint32_t>(uint32_t v) { return (uint64_t)v; }
template <> __device__ __forceinline__ uint64_t widen<uint64_t>(uint64_t v) { return v; }

template <typename T>
__global__ void int_gemm_kernel(T *y, const T *a, const T *b, const T *c, kiln_gemm_int_geom g) {
    int64_t batch = 1;
#pragma unroll
    for (int i = 0; i < KILN_CUDA_MAX_RANK; i++)
        if (i < g.nb) batch *= g.batch[i];
    int64_t total = batch * g.m * g.n;
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t n = o % g.n, t = o / g.n;
        int64_t m = t % g.m, bi = t / g.m;
        int64_t ao = 0, bo = 0;
#pragma unroll
        for (int i = KILN_CUDA_MAX_RANK - 1; i >= 0; i--) {
            if (i < g.nb) {
                int64_t idx = bi % g.batch[i];
                bi /= g.batch[i];
                ao += idx * g.a_b[i];
                bo += idx * g.b_b[i];
            }
        }
        uint64_t s = 0;
        const T *ar = a + ao + m * g.a_m, *bc = b + bo + n * g.b_n;
        for (int64_t k = 0; k < g.k; k++) s += widen<T>(ar[k * g.a_k]) * widen<T>(bc[k * g.b_k]);
        if (c) s += widen<T>(c[m * g.c_m + n * g.c_n]);
        y[o] = (T)s;
    }
}

/* ---- INT8 ---- */
__device__ __forceinline__ int8_t shift8(const void *src, int is_u8, int64_t i) {
    return is_u8 ? (int8_t)(((const uint8_t *)src)[i] ^ 0x80u) : ((const int8_t *)src)[i];
}

/* A zero point as the shifted int8 operands see it (uint8: zp - 128); 0 when absent (which
 * for uint8 data means -128). */
__device__ __forceinline__ int32_t shifted_zp(const void *zp, int is_u8, int64_t i) {
    if (!zp) return is_u8 ? -128 : 0;
    return is_u8 ? (int32_t)((const uint8_t *)zp)[i] - 128 : (int32_t)((const int8_t *)zp)[i];
}

template <typename I>
__global__ void pack_kernel(int8_t *dst, const void *src, int is_u8, I count, I rows, I cols, I rows_pad, I cols_pad) {
    I total = count * rows_pad * cols_pad;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
        I k = i % cols_pad, t = i / cols_pad;
        I r = t % rows_pad, c = t / rows_pad;
        dst[i] = (r < rows && k < cols) ? shift8(src, is_u8, ((int64_t)c * rows + r) * cols + k) : (int8_t)0;
    }
}

/* 32x32 tiles through shared memory so both the reads (along src rows) and the writes (along
 * dst rows) are coalesced. Block (32, 8). */
__global__ void pack_t_kernel(int8_t *dst, const void *src, int is_u8, int64_t count, int64_t rows, int64_t cols,
                              int64_t rows_pad, int64_t cols_pad) {
    __shared__ int8_t tile[32][33];
    int64_t r0 = (int64_t)blockIdx.x * 32, c0 = (int64_t)blockIdx.y * 32;
    for (int64_t b = blockIdx.z; b < count; b += gridDim.z) {
        for (int j = threadIdx.y; j < 32; j += 8) {
            int64_t r = r0 + j, c = c0 + threadIdx.x;
            tile[j][threadIdx.x] = (r < rows && c < cols) ? shift8(src, is_u8, (b * rows + r) * cols + c) : (int8_t)0;
        }
        __syncthreads();
        for (int j = threadIdx.y; j < 32; j += 8) {
            int64_t c = c0 + j, r = r0 + threadIdx.x; /* dst row c, column r */
            if (c < cols_pad && r < rows_pad) dst[(b * cols_pad + c) * rows_pad + r] = tile[threadIdx.x][j];
        }
        __syncthreads();
    }
}

/* One warp per row; cols is a multiple of 4 and rows start 4-byte aligned. */
__global__ void row_sums_kernel(int32_t *sums, const int8_t *x, int64_t rows, int64_t cols) {
    int lane = threadIdx.x & 31;
    int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    int64_t words = cols / 4;
    for (int64_t r = warp; r < rows; r += warps) {
        const int *row = (const int *)(x + r * cols);
        int s = 0;
        for (int64_t w = lane; w < words; w += 32) s = __dp4a(row[w], 0x01010101, s);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) sums[r] = s;
    }
}

__global__ void i8_gemm_xyt_kernel(int32_t *d, const int8_t *x, const int8_t *y, int64_t batch, int64_t rows,
                                   int64_t cols, int64_t k, int64_t ldd, int64_t x_bs, int64_t y_bs, int64_t d_bs) {
    int64_t total = batch * rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = i % cols, t = i / cols;
        int64_t r = t % rows, b = t / rows;
        const int *xr = (const int *)(x + b * x_bs + r * k), *yr = (const int *)(y + b * y_bs + c * k);
        int s = 0;
        for (int64_t w = 0; w < k / 4; w++) s = __dp4a(xr[w], yr[w], s);
        d[b * d_bs + r * ldd + c] = s;
    }
}

__device__ __forceinline__ double load_scale(const void *p, int ct, int64_t i) {
    switch (ct) {
    case KILN_CT_F16: return (double)__half2float(((const __half *)p)[i]);
    case KILN_CT_BF16: return (double)__bfloat162float(((const __nv_bfloat16 *)p)[i]);
    default: return (double)((const float *)p)[i];
    }
}

/* Rounds a double to the scales' type and back, as the reference's seq_round_to does. */
__device__ __forceinline__ double round_to(int ct, double v) {
    float f = __double2float_rn(v);
    switch (ct) {
    case KILN_CT_F16: return (double)__half2float(__float2half_rn(f));
    case KILN_CT_BF16: return (double)__bfloat162float(__float2bfloat16_rn(f));
    default: return (double)f;
    }
}

__device__ __forceinline__ int32_t load_q(const void *p, int ct, int64_t i) {
    return ct == KILN_CT_U8 ? (int32_t)((const uint8_t *)p)[i] : (int32_t)((const int8_t *)p)[i];
}

/* saturate(round_half_even(q) + zp) into the 8-bit type's range; NaN gives zp. */
__device__ __forceinline__ void store_requant(void *y, int ct, int64_t i, double q, int32_t zp) {
    double lo = ct == KILN_CT_U8 ? 0.0 : -128.0, hi = ct == KILN_CT_U8 ? 255.0 : 127.0;
    double r = isnan(q) ? (double)zp : rint(q) + (double)zp;
    r = r <= lo ? lo : r >= hi ? hi : r;
    if (ct == KILN_CT_U8)
        ((uint8_t *)y)[i] = (uint8_t)(int)r;
    else
        ((int8_t *)y)[i] = (int8_t)(int)r;
}

/* One block per output row (batch index, m): the row's batch offsets, A-side parameters and row
 * sum once, then the threads walk the columns, so no per-element index division. The batch
 * dims are walked with every array index a compile-time constant (the loop fully unrolled,
 * dims past nb skipped): a run-time index into the by-value parameter struct would make each
 * thread copy the whole struct to local memory. */
__global__ void mm_epilogue_kernel(void *y, const int32_t *d, const int32_t *rowsum, const int32_t *colsum,
                                   kiln_i8_mm_epi e, int64_t rows) {
    const int64_t M = e.m, N = e.n;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        int64_t m = row % M, rest = row / M, bi = rest;
        int64_t am = 0, bm = 0, oza = 0, ozb = 0, osa = 0, osb = 0, osy = 0, ozy = 0;
#pragma unroll
        for (int i = KILN_CUDA_MAX_RANK - 1; i >= 0; i--) {
            if (i < e.nb) {
                int64_t idx = rest % e.batch[i];
                rest /= e.batch[i];
                am += idx * e.a_b[i];
                bm += idx * e.b_b[i];
                oza += idx * e.za.b[i];
                ozb += idx * e.zb.b[i];
                osa += idx * e.sa.b[i];
                osb += idx * e.sb.b[i];
                osy += idx * e.sy.b[i];
                ozy += idx * e.zy.b[i];
            }
        }
        oza += m * e.za.m;
        ozb += m * e.zb.m;
        osa += m * e.sa.m;
        osb += m * e.sb.m;
        osy += m * e.sy.m;
        ozy += m * e.zy.m;
        const uint32_t rs = (uint32_t)rowsum[am * e.rs_mat + m];
        const int32_t *drow = d + bi * e.d_b + m * e.d_m;
        const int32_t *cs = colsum + bm * e.cs_mat;
        for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
            uint32_t za = (uint32_t)shifted_zp(e.za.p, e.a_u8, oza + n * e.za.n);
            uint32_t zb = (uint32_t)shifted_zp(e.zb.p, e.b_u8, ozb + n * e.zb.n);
            uint32_t acc = (uint32_t)drow[n] - zb * rs - za * (uint32_t)cs[n] + (uint32_t)e.k * za * zb;
            int64_t o = row * N + n;
            if (!e.qlinear) {
                ((int32_t *)y)[o] = (int32_t)acc;
                continue;
            }
            double mult = round_to(e.scale_ct, load_scale(e.sa.p, e.scale_ct, osa + n * e.sa.n) *
                                                   load_scale(e.sb.p, e.scale_ct, osb + n * e.sb.n));
            mult = round_to(e.scale_ct, mult / load_scale(e.sy.p, e.scale_ct, osy + n * e.sy.n));
            int32_t zy = e.zy.p ? load_q(e.zy.p, e.y_ct, ozy + n * e.zy.n) : 0;
            store_requant(y, e.y_ct, o, (double)(int32_t)acc * mult, zy);
        }
    }
}

/* One warp per im2col row (group, image, output position): the position's coordinates once,
 * then each lane packs 4 consecutive taps into a word, so the writes are whole, coalesced
 * words. I: the index type (int32 whenever the sizes allow: 64-bit division is slow). */
template <typename I>
__global__ void im2col_kernel(int8_t *col, const void *x, int x_u8, const void *xzp, kiln_i8_conv_geom g, int64_t n0,
                              I nn) {
    const I rows = (I)g.groups * nn * (I)g.p_pad, words = (I)(g.kc_pad / 4), kc = (I)g.kc;
    const I k1 = (I)g.k[1], k2 = (I)g.k[2], k12 = k1 * k2, taps = (I)g.k[0] * k12;
    const I o1 = (I)g.out[1], o2 = (I)g.out[2], in0 = (I)g.in[0], in1 = (I)g.in[1], in2 = (I)g.in[2];
    const I p_pad = (I)g.p_pad, p_real = (I)g.p;
    const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
    const uint8_t pad = (uint8_t)(int8_t)shifted_zp(xzp, x_u8, 0);
    const int lane = threadIdx.x & 31;
    const I warps = (I)(((int64_t)gridDim.x * blockDim.x) >> 5);
    for (I row = (I)((blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5); row < rows; row += warps) {
        uint32_t *dst = (uint32_t *)(col + (int64_t)row * g.kc_pad);
        I p = row % p_pad, t = row / p_pad;
        I n = t % nn, grp = t / nn;
        if (p >= p_real) {
            for (I w = lane; w < words; w += 32) dst[w] = 0;
            continue;
        }
        I ow = p % o2, oh = (p / o2) % o1, od = p / (o2 * o1);
        I d0 = od * (I)g.st[0] - (I)g.pad[0], h0 = oh * (I)g.st[1] - (I)g.pad[1], w0 = ow * (I)g.st[2] - (I)g.pad[2];
        const int64_t xbase = ((n0 + (int64_t)n) * g.c + (int64_t)grp * g.cg) * in_plane;
        for (I w = lane; w < words; w += 32) {
            uint32_t packed = 0;
#pragma unroll
            for (int b = 0; b < 4; b++) {
                I e = w * 4 + b;
                uint8_t v = 0;
                if (e < kc) {
                    I c = e / taps, tap = e - c * taps;
                    I kd = tap / k12, r = tap - kd * k12;
                    I kh = r / k2, kw = r - kh * k2;
                    I id = d0 + kd * (I)g.dl[0], ih = h0 + kh * (I)g.dl[1], iw = w0 + kw * (I)g.dl[2];
                    bool in = id >= 0 && id < in0 && ih >= 0 && ih < in1 && iw >= 0 && iw < in2;
                    v = in ? (uint8_t)shift8(x, x_u8, xbase + c * in_plane + ((int64_t)id * in1 + ih) * in2 + iw) : pad;
                }
                packed |= (uint32_t)v << (8 * b);
            }
            dst[w] = packed;
        }
    }
}

/* One block per (image, output channel): the channel's zero point, weight sum, bias and
 * requantization multiplier once, then the threads walk the output positions. */
__global__ void conv_epilogue_kernel(void *y, const int32_t *d, const int32_t *rowsum, const int32_t *colsum,
                                     kiln_i8_conv_geom g, kiln_i8_conv_epi e) {
    const int64_t M = g.groups * g.mg, P = g.p, rows = e.nn * M;
    const uint32_t xz = (uint32_t)shifted_zp(e.xzp, e.x_u8, 0);
    const int32_t zy = e.qlinear && e.yzp ? load_q(e.yzp, e.y_ct, 0) : 0;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        int64_t m = row % M, n = row / M;
        int64_t grp = m / g.mg, mm = m - grp * g.mg;
        const uint32_t wz = (uint32_t)shifted_zp(e.wzp, e.w_u8, e.wz_count > 1 ? m : 0);
        /* the position-independent part of the correction */
        uint32_t base = (e.bias ? (uint32_t)e.bias[m] : 0u) - xz * (uint32_t)colsum[grp * e.mg_pad + mm] +
                        (uint32_t)g.kc * xz * wz;
        const int32_t *drow = d + ((n * g.groups + grp) * e.mg_pad + mm) * g.p_pad;
        const int32_t *rs = rowsum + (grp * e.nn + n) * g.p_pad;
        int64_t yrow = ((e.n0 + n) * M + m) * P;
        float mult = e.qlinear ? __fdiv_rn(__fmul_rn(e.xs[0], e.ws[e.ws_count > 1 ? m : 0]), e.ys[0]) : 0.0f;
        for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
            uint32_t acc = (uint32_t)drow[p] + base - wz * (uint32_t)rs[p];
            if (!e.qlinear)
                ((int32_t *)y)[yrow + p] = (int32_t)acc;
            else
                store_requant(y, e.y_ct, yrow + p, (double)(int32_t)acc * (double)mult, zy);
        }
    }
}

} // namespace

#define GRID(n) dim3((unsigned)blocks_for(n)), dim3(kThreads), 0, s

extern "C" cudaError_t kiln_gemm_bias_last(void *y, const void *bias, int ct, int64_t rows, int64_t cols,
                                           cudaStream_t s) {
    int64_t total = rows * cols;
    if (total <= 0) return cudaSuccess;
    switch (ct) {
    case KILN_CT_F32: bias_last_kernel<<<GRID(total)>>>((float *)y, (const float *)bias, total, cols); break;
    case KILN_CT_F16: bias_last_kernel<<<GRID(total)>>>((__half *)y, (const __half *)bias, total, cols); break;
    case KILN_CT_BF16:
        bias_last_kernel<<<GRID(total)>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)bias, total, cols);
        break;
    case KILN_CT_F64: bias_last_kernel<<<GRID(total)>>>((double *)y, (const double *)bias, total, cols); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

template <typename T>
static void bias_channel_launch(T *y, const T *bias, int64_t total, int64_t channels, int64_t plane, int relu,
                                cudaStream_t s) {
    if (total < INT32_MAX)
        bias_channel_kernel<T, int32_t><<<GRID(total)>>>(y, bias, (int32_t)total, (int32_t)channels, (int32_t)plane, relu);
    else
        bias_channel_kernel<T, int64_t><<<GRID(total)>>>(y, bias, total, channels, plane, relu);
}

extern "C" cudaError_t kiln_gemm_bias_channel(void *y, const void *bias, int ct, int64_t outer, int64_t channels,
                                              int64_t plane, int relu, cudaStream_t s) {
    int64_t total = outer * channels * plane;
    if (total <= 0) return cudaSuccess;
    switch (ct) {
    case KILN_CT_F32: bias_channel_launch((float *)y, (const float *)bias, total, channels, plane, relu, s); break;
    case KILN_CT_F16: bias_channel_launch((__half *)y, (const __half *)bias, total, channels, plane, relu, s); break;
    case KILN_CT_BF16:
        bias_channel_launch((__nv_bfloat16 *)y, (const __nv_bfloat16 *)bias, total, channels, plane, relu, s);
        break;
    case KILN_CT_F64: bias_channel_launch((double *)y, (const double *)bias, total, channels, plane, relu, s); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_gemm_fill_c(void *dst, const void *c, int ct, int64_t rows, int64_t cols, int64_t c_row,
                                        int64_t c_col, double scale, cudaStream_t s) {
    int64_t total = rows * cols;
    if (total <= 0) return cudaSuccess;
    switch (ct) {
    case KILN_CT_F32:
        fill_c_kernel<<<GRID(total)>>>((float *)dst, (const float *)c, rows, cols, c_row, c_col, (float)scale);
        break;
    case KILN_CT_F16:
        fill_c_kernel<<<GRID(total)>>>((__half *)dst, (const __half *)c, rows, cols, c_row, c_col, (float)scale);
        break;
    case KILN_CT_BF16:
        fill_c_kernel<<<GRID(total)>>>((__nv_bfloat16 *)dst, (const __nv_bfloat16 *)c, rows, cols, c_row, c_col,
                                       (float)scale);
        break;
    case KILN_CT_F64:
        fill_c_kernel<<<GRID(total)>>>((double *)dst, (const double *)c, rows, cols, c_row, c_col, scale);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_gemm_window_copy(void *dst, const void *src, int elem_bytes, kiln_gemm_window w,
                                             cudaStream_t s) {
    int64_t total = w.outer * w.dst[0] * w.dst[1] * w.dst[2];
    if (total <= 0) return cudaSuccess;
    switch (elem_bytes) {
    case 1: window_kernel<<<GRID(total)>>>((uint8_t *)dst, (const uint8_t *)src, w); break;
    case 2: window_kernel<<<GRID(total)>>>((uint16_t *)dst, (const uint16_t *)src, w); break;
    case 4: window_kernel<<<GRID(total)>>>((uint32_t *)dst, (const uint32_t *)src, w); break;
    case 8: window_kernel<<<GRID(total)>>>((uint64_t *)dst, (const uint64_t *)src, w); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_gemm_transpose(void *dst, const void *src, int elem_bytes, int64_t batch, int64_t rows,
                                           int64_t cols, cudaStream_t s) {
    if (batch <= 0 || rows <= 0 || cols <= 0) return cudaSuccess;
    int64_t gy = (rows + 31) / 32, gz = batch < 65535 ? batch : 65535;
    if (gy > 65535) return cudaErrorInvalidValue;
    dim3 grid((unsigned)((cols + 31) / 32), (unsigned)gy, (unsigned)gz), block(32, 8);
    switch (elem_bytes) {
    case 2: transpose_kernel<<<grid, block, 0, s>>>((uint16_t *)dst, (const uint16_t *)src, batch, rows, cols); break;
    case 4: transpose_kernel<<<grid, block, 0, s>>>((uint32_t *)dst, (const uint32_t *)src, batch, rows, cols); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_gemm_int(void *y, const void *a, const void *b, const void *c, int ct,
                                     kiln_gemm_int_geom g, cudaStream_t s) {
    int64_t total = g.m * g.n;
    for (int i = 0; i < g.nb; i++) total *= g.batch[i];
    if (total <= 0) return cudaSuccess;
    switch (ct) {
    case KILN_CT_I32:
        int_gemm_kernel<<<GRID(total)>>>((int32_t *)y, (const int32_t *)a, (const int32_t *)b, (const int32_t *)c, g);
        break;
    case KILN_CT_I64:
        int_gemm_kernel<<<GRID(total)>>>((int64_t *)y, (const int64_t *)a, (const int64_t *)b, (const int64_t *)c, g);
        break;
    case KILN_CT_U32:
        int_gemm_kernel<<<GRID(total)>>>((uint32_t *)y, (const uint32_t *)a, (const uint32_t *)b, (const uint32_t *)c,
                                         g);
        break;
    case KILN_CT_U64:
        int_gemm_kernel<<<GRID(total)>>>((uint64_t *)y, (const uint64_t *)a, (const uint64_t *)b, (const uint64_t *)c,
                                         g);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_i8_pack(int8_t *dst, const void *src, int is_u8, int64_t count, int64_t rows,
                                    int64_t cols, int64_t rows_pad, int64_t cols_pad, cudaStream_t s) {
    int64_t total = count * rows_pad * cols_pad;
    if (total <= 0) return cudaSuccess;
    if (total < INT32_MAX && count * rows * cols < INT32_MAX)
        pack_kernel<int32_t><<<GRID(total)>>>(dst, src, is_u8, (int32_t)count, (int32_t)rows, (int32_t)cols,
                                              (int32_t)rows_pad, (int32_t)cols_pad);
    else
        pack_kernel<int64_t><<<GRID(total)>>>(dst, src, is_u8, count, rows, cols, rows_pad, cols_pad);
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_i8_pack_t(int8_t *dst, const void *src, int is_u8, int64_t count, int64_t rows,
                                      int64_t cols, int64_t rows_pad, int64_t cols_pad, cudaStream_t s) {
    if (count <= 0 || rows_pad <= 0 || cols_pad <= 0) return cudaSuccess;
    int64_t gz = count < 65535 ? count : 65535;
    dim3 grid((unsigned)((rows_pad + 31) / 32), (unsigned)((cols_pad + 31) / 32), (unsigned)gz);
    if (grid.y > 65535) return cudaErrorInvalidValue;
    pack_t_kernel<<<grid, dim3(32, 8), 0, s>>>(dst, src, is_u8, count, rows, cols, rows_pad, cols_pad);
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_i8_row_sums(int32_t *sums, const int8_t *x, int64_t rows, int64_t cols, cudaStream_t s) {
    if (rows <= 0) return cudaSuccess;
    if (cols % 4) return cudaErrorInvalidValue;
    row_sums_kernel<<<GRID(rows * 32)>>>(sums, x, rows, cols);
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_i8_gemm_xyt(int32_t *d, const int8_t *x, const int8_t *y, int64_t batch, int64_t rows,
                                        int64_t cols, int64_t k, int64_t ldd, int64_t x_bs, int64_t y_bs, int64_t d_bs,
                                        cudaStream_t s) {
    int64_t total = batch * rows * cols;
    if (total <= 0) return cudaSuccess;
    if (k % 4) return cudaErrorInvalidValue;
    i8_gemm_xyt_kernel<<<GRID(total)>>>(d, x, y, batch, rows, cols, k, ldd, x_bs, y_bs, d_bs);
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_i8_mm_epilogue(void *y, const int32_t *d, const int32_t *rowsum, const int32_t *colsum,
                                           kiln_i8_mm_epi e, cudaStream_t s) {
    int64_t total = e.m * e.n;
    for (int i = 0; i < e.nb; i++) total *= e.batch[i];
    if (total <= 0) return cudaSuccess;
    int64_t rows = total / e.n;
    mm_epilogue_kernel<<<dim3((unsigned)(rows < (1 << 20) ? rows : (1 << 20))), dim3(kThreads), 0, s>>>(y, d, rowsum,
                                                                                                       colsum, e, rows);
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_i8_im2col(int8_t *col, const void *x, int x_u8, const void *xzp, kiln_i8_conv_geom g,
                                      int64_t n0, int64_t nn, cudaStream_t s) {
    int64_t rows = g.groups * nn * g.p_pad;
    if (rows <= 0 || g.kc_pad <= 0) return cudaSuccess;
    if (g.kc_pad % 4) return cudaErrorInvalidValue;
    /* int32 indices when every coordinate and row count fits */
    bool small = rows < INT32_MAX && g.kc_pad < INT32_MAX && g.in[0] * g.in[1] * g.in[2] < INT32_MAX / 2;
    if (small)
        im2col_kernel<int32_t><<<GRID(rows * 32)>>>(col, x, x_u8, xzp, g, n0, (int32_t)nn);
    else
        im2col_kernel<int64_t><<<GRID(rows * 32)>>>(col, x, x_u8, xzp, g, n0, nn);
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_i8_conv_epilogue(void *y, const int32_t *d, const int32_t *rowsum, const int32_t *colsum,
                                             kiln_i8_conv_geom g, kiln_i8_conv_epi e, cudaStream_t s) {
    int64_t total = e.nn * g.groups * g.mg * g.p;
    if (total <= 0) return cudaSuccess;
    int64_t rows = e.nn * g.groups * g.mg;
    conv_epilogue_kernel<<<dim3((unsigned)(rows < (1 << 20) ? rows : (1 << 20))), dim3(kThreads), 0, s>>>(y, d, rowsum,
                                                                                                         colsum, g, e);
    return cudaGetLastError();
}
