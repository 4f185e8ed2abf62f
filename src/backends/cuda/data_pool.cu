/* data_pool.cu — MaxPool (with Indices), AveragePool, LpPool over 1 to 3 spatial dims, and the
 * global pools, following src/backends/ref/pool.c: each window is cut per dim to the taps
 * inside the input; AveragePool divides by their count, or with count_include_pad by the taps
 * inside the explicitly padded input; MaxPool keeps the first maximum in row-major window order
 * (a NaN wins only as the first tap), GlobalMaxPool lets any NaN win. Arithmetic in float
 * (double for f64). One thread per output of a window pool; one warp (small planes) or one
 * block (large planes) per plane of a global pool.
 * Tested against the reference backend through the CUDA engine tests. */
#include "data_device.cuh"

#include <math.h>
#include <type_traits>

/* The accumulator type: float, or double for f64 data; load() converts an element to it. */
template <typename T> struct kd_acc {
    typedef float type;
    static __device__ __forceinline__ float load(T v) { return kd_num<T>::to_f(v); }
};
template <> struct kd_acc<double> {
    typedef double type;
    static __device__ __forceinline__ double load(double v) { return v; }
};

/* Number of taps j in [0, k) with lo <= st + j * dl < hi, and the first one. */
template <typename I>
static __device__ __forceinline__ I tap_span(I st, I dl, I k, I lo, I hi, I *first) {
    I a = st >= lo ? 0 : (lo - st + dl - 1) / dl;
    I b = st > hi - 1 ? 0 : (hi - 1 - st) / dl + 1;
    if (b > k) b = k;
    if (a > b) a = b;
    *first = a;
    return b - a;
}

/* One thread per output. The spatial dims sit in the last NSP of 3 slots (the others have
 * size 1), so the window walk is three plain nested loops. I: 32-bit indexing when the
 * tensor allows. */
template <typename T, typename I, int NSP, int KIND>
__global__ void pool_kernel(T *__restrict__ dst, int64_t *__restrict__ indices, const T *__restrict__ src, kiln_data_pool p,
                            int64_t total) {
    typedef typename kd_acc<T>::type A;
    const int F = 3 - NSP;
    I in[3], out[3], ker[3], str[3], dil[3], pb[3], pe[3];
    for (int d = 0; d < 3; d++) {
        bool pad = d < F;
        in[d] = pad ? 1 : (I)p.in[d - F];
        out[d] = pad ? 1 : (I)p.out[d - F];
        ker[d] = pad ? 1 : (I)p.kernel[d - F];
        str[d] = pad ? 1 : (I)p.strides[d - F];
        dil[d] = pad ? 1 : (I)p.dilations[d - F];
        pb[d] = pad ? 0 : (I)p.pad_begin[d - F];
        pe[d] = pad ? 0 : (I)p.pad_end[d - F];
    }
    I in_size = in[0] * in[1] * in[2], out_size = out[0] * out[1] * out[2];
    KD_LOOP(i, total) {
        I ii = (I)i, pl = ii / out_size, rem = ii - pl * out_size;
        I o[3];
        o[2] = rem % out[2];
        rem /= out[2];
        o[1] = rem % out[1];
        o[0] = rem / out[1];
        I st[3], k0[3], kn[3], padded = 1;
        for (int d = 0; d < 3; d++) {
            st[d] = o[d] * str[d] - pb[d];
            kn[d] = tap_span<I>(st[d], dil[d], ker[d], 0, in[d], &k0[d]);
            if (KIND == KILN_DATA_POOL_AVG && p.count_include_pad) {
                I unused;
                padded *= tap_span<I>(st[d], dil[d], ker[d], -pb[d], in[d] + pe[d], &unused);
            }
        }
        const T *x = src + (int64_t)pl * in_size;
        A best = -INFINITY, sum = 0;
        I best_idx = -1, n_valid = kn[0] * kn[1] * kn[2];
        for (I a = 0; a < kn[0]; a++) {
            I p0 = st[0] + (k0[0] + a) * dil[0];
            for (I b = 0; b < kn[1]; b++) {
                I p1 = st[1] + (k0[1] + b) * dil[1];
                for (I c = 0; c < kn[2]; c++) {
                    I p2 = st[2] + (k0[2] + c) * dil[2];
                    I off = (p0 * in[1] + p1) * in[2] + p2;
                    A v = kd_acc<T>::load(x[off]);
                    if (KIND == KILN_DATA_POOL_MAX) {
                        if (best_idx < 0 || v > best) {
                            best = v;
                            best_idx = p.column_major ? p2 * in[1] * in[0] + p1 * in[0] + p0 : off;
                        }
                    } else if (KIND == KILN_DATA_POOL_AVG) {
                        sum += v;
                    } else {
                        sum += pow(fabs(v), (A)p.p);
                    }
                }
            }
        }
        A r;
        if (KIND == KILN_DATA_POOL_MAX) r = best;
        else if (KIND == KILN_DATA_POOL_AVG) r = sum / (A)(p.count_include_pad ? padded : n_valid);
        else r = pow(sum, (A)1 / (A)p.p);
        if (std::is_integral<T>::value && best_idx < 0) r = 0; /* the reference stores -inf into an integer as 0 */
        dst[i] = kd_num<T>::from_d((double)r);
        if (indices) indices[i] = best_idx < 0 ? -1 : (int64_t)pl * in_size + best_idx;
    }
}

template <typename T, typename I, int NSP>
static void launch_pool(T *dst, int64_t *indices, const T *src, const kiln_data_pool &p, int64_t total, cudaStream_t s) {
    unsigned g = kd_blocks(total);
    switch (p.kind) {
    case KILN_DATA_POOL_MAX: pool_kernel<T, I, NSP, KILN_DATA_POOL_MAX><<<g, KD_THREADS, 0, s>>>(dst, indices, src, p, total); break;
    case KILN_DATA_POOL_AVG: pool_kernel<T, I, NSP, KILN_DATA_POOL_AVG><<<g, KD_THREADS, 0, s>>>(dst, indices, src, p, total); break;
    default: pool_kernel<T, I, NSP, KILN_DATA_POOL_LP><<<g, KD_THREADS, 0, s>>>(dst, indices, src, p, total); break;
    }
}

template <typename T>
static cudaError_t pool_typed(void *dst, int64_t *indices, const void *src, const kiln_data_pool *p, cudaStream_t s) {
    int64_t total = p->planes;
    for (int d = 0; d < p->nsp; d++) total *= p->out[d];
    if (total <= 0) return cudaSuccess;
    /* 32-bit indexing when every input and output offset, padded window positions included, fits */
    int64_t in_total = p->planes, reach = 0;
    for (int d = 0; d < p->nsp; d++) {
        in_total *= p->in[d];
        reach += p->in[d] + p->pad_begin[d] + p->pad_end[d] + p->kernel[d] * p->dilations[d] + p->out[d] * p->strides[d];
    }
    bool small = total < INT32_MAX / 2 && in_total < INT32_MAX / 2 && reach < INT32_MAX / 4;
    switch (p->nsp * 2 + (small ? 1 : 0)) {
    case 3: launch_pool<T, int32_t, 1>((T *)dst, indices, (const T *)src, *p, total, s); break;
    case 5: launch_pool<T, int32_t, 2>((T *)dst, indices, (const T *)src, *p, total, s); break;
    case 7: launch_pool<T, int32_t, 3>((T *)dst, indices, (const T *)src, *p, total, s); break;
    case 2: launch_pool<T, int64_t, 1>((T *)dst, indices, (const T *)src, *p, total, s); break;
    case 4: launch_pool<T, int64_t, 2>((T *)dst, indices, (const T *)src, *p, total, s); break;
    case 6: launch_pool<T, int64_t, 3>((T *)dst, indices, (const T *)src, *p, total, s); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_data_pool_window(void *dst, int64_t *indices, const void *src, int ct, const kiln_data_pool *p,
                                      cudaStream_t stream) {
    switch (ct) {
    case KILN_CT_F32: return pool_typed<float>(dst, indices, src, p, stream);
    case KILN_CT_F16: return pool_typed<__half>(dst, indices, src, p, stream);
    case KILN_CT_BF16: return pool_typed<__nv_bfloat16>(dst, indices, src, p, stream);
    case KILN_CT_F64: return pool_typed<double>(dst, indices, src, p, stream);
    case KILN_CT_I8:
        if (p->kind != KILN_DATA_POOL_MAX) return cudaErrorInvalidValue;
        return pool_typed<int8_t>(dst, indices, src, p, stream);
    case KILN_CT_U8:
        if (p->kind != KILN_DATA_POOL_MAX) return cudaErrorInvalidValue;
        return pool_typed<uint8_t>(dst, indices, src, p, stream);
    default: return cudaErrorInvalidValue;
    }
}

/* ---- global pools ---- */

template <typename A, int KIND> static __device__ __forceinline__ A global_combine(A a, A b) {
    if (KIND == KILN_DATA_POOL_MAX) return a != a || b != b ? (A)NAN : a > b ? a : b;
    return a + b;
}

/* blockDim.x threads share one plane (blockDim.y planes per block); lanes reduce by warp
 * shuffles, then warps through shared memory when a plane has several. */
template <typename T, int KIND>
__global__ void global_pool_kernel(T *__restrict__ dst, const T *__restrict__ src, int64_t planes, int64_t size, float pw) {
    typedef typename kd_acc<T>::type A;
    __shared__ A part[32];
    int64_t pl = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;
    A acc = KIND == KILN_DATA_POOL_MAX ? (A)-INFINITY : (A)0;
    if (pl < planes) {
        const T *x = src + pl * size;
        for (int64_t i = threadIdx.x; i < size; i += blockDim.x) {
            A v = kd_acc<T>::load(x[i]);
            if (KIND == KILN_DATA_POOL_LP) v = pow(fabs(v), (A)pw);
            acc = global_combine<A, KIND>(acc, v);
        }
    }
    for (int o = 16; o > 0; o >>= 1) acc = global_combine<A, KIND>(acc, __shfl_xor_sync(0xffffffffu, acc, o));
    if (blockDim.x > 32) {
        int warp = threadIdx.x / 32, warps = blockDim.x / 32;
        if (threadIdx.x % 32 == 0) part[warp] = acc;
        __syncthreads();
        acc = part[0];
        for (int w = 1; w < warps; w++) acc = global_combine<A, KIND>(acc, part[w]);
    }
    if (pl < planes && threadIdx.x == 0) {
        A r = acc;
        if (KIND == KILN_DATA_POOL_AVG) r = acc / (A)size;
        else if (KIND == KILN_DATA_POOL_LP) r = pow(acc, (A)1 / (A)pw);
        dst[pl] = kd_num<T>::from_d((double)r);
    }
}

template <typename T>
static cudaError_t global_typed(void *dst, const void *src, int kind, float pw, int64_t planes, int64_t size, cudaStream_t s) {
    /* a warp per plane for small planes or many planes; a block of 256 for large ones */
    dim3 block = size >= 2048 ? dim3(256, 1) : dim3(32, 8);
    int64_t blocks = (planes + block.y - 1) / block.y;
    if (blocks > INT32_MAX) return cudaErrorInvalidValue;
    dim3 grid((unsigned)blocks);
    switch (kind) {
    case KILN_DATA_POOL_MAX: global_pool_kernel<T, KILN_DATA_POOL_MAX><<<grid, block, 0, s>>>((T *)dst, (const T *)src, planes, size, pw); break;
    case KILN_DATA_POOL_AVG: global_pool_kernel<T, KILN_DATA_POOL_AVG><<<grid, block, 0, s>>>((T *)dst, (const T *)src, planes, size, pw); break;
    default: global_pool_kernel<T, KILN_DATA_POOL_LP><<<grid, block, 0, s>>>((T *)dst, (const T *)src, planes, size, pw); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_data_global_pool(void *dst, const void *src, int ct, int kind, float p, int64_t planes, int64_t size,
                                             cudaStream_t stream) {
    if (planes <= 0) return cudaSuccess;
    switch (ct) {
    case KILN_CT_F32: return global_typed<float>(dst, src, kind, p, planes, size, stream);
    case KILN_CT_F16: return global_typed<__half>(dst, src, kind, p, planes, size, stream);
    case KILN_CT_BF16: return global_typed<__nv_bfloat16>(dst, src, kind, p, planes, size, stream);
    case KILN_CT_F64: return global_typed<double>(dst, src, kind, p, planes, size, stream);
    default: return cudaErrorInvalidValue;
    }
}
