/* data_move.cu — byte-moving kernels of the data family: the strided copy (Transpose, Slice,
 * Expand, Tile, DepthToSpace), the tiled transpose, row copies (Concat, Split), Pad, and the
 * generators (fill, EyeLike, Trilu, Range, OneHot). Element types are units of 1..16 bytes;
 * data.c plans each call (dims collapsed, widest unit that the sizes and pointers allow).
 * Tested against the reference backend through the CUDA engine tests. */
#include "data_device.cuh"

/* ---- strided copy ---- */

/* Long rows (RUN > 1): a warp copies 32 * RUN consecutive elements of one innermost row,
 * lane l taking elements l, l + 32, ..., so every access of the warp is contiguous and the
 * index arithmetic (integer division: the cost of this kernel) is paid once per RUN
 * elements. Short rows (RUN == 1): one element per thread. I: unsigned type for indices, S:
 * signed type for source offsets (32-bit when the sizes allow). */
template <typename U, typename I, typename S, int RUN>
__global__ void strided_kernel(U *__restrict__ dst, const U *__restrict__ src, kiln_data_strided v, int64_t items,
                               I per_row) {
    const int W = RUN == 1 ? 1 : 32;
    int last = v.rank - 1;
    I row_len = (I)v.dims[last];
    S step = (S)v.strides[last];
    KD_LOOP(t, items) {
        I lane = RUN == 1 ? 0 : (I)t % 32, w = RUN == 1 ? (I)t : (I)t / 32;
        I row = w / per_row, c0 = (w - row * per_row) * (W * RUN) + lane;
        S off = (S)v.offset + (S)c0 * step;
        I rem = row;
        for (int k = last - 1; k > 0; k--) {
            I d = (I)v.dims[k];
            I q = rem / d;
            off += (S)(rem - q * d) * (S)v.strides[k];
            rem = q;
        }
        if (last > 0) off += (S)rem * (S)v.strides[0];
        U *out = dst + (int64_t)row * row_len + c0;
#pragma unroll
        for (int e = 0; e < RUN; e++)
            if (c0 + e * W < row_len) out[e * W] = src[off + (S)(e * W) * step];
    }
}

/* True when every offset the view can reach, and the count, fit in 31 bits. */
static bool fits32(const kiln_data_strided *v, int64_t n) {
    int64_t lo = v->offset, hi = v->offset;
    for (int k = 0; k < v->rank; k++) {
        int64_t span = v->strides[k] * (v->dims[k] - 1);
        if (span < 0) lo += span;
        else hi += span;
    }
    return n < INT32_MAX && lo > INT32_MIN && hi < INT32_MAX;
}

extern "C" cudaError_t kiln_data_strided_copy(void *dst, const void *src, int unit, const kiln_data_strided *v,
                                              cudaStream_t stream) {
    int64_t n = 1;
    for (int k = 0; k < v->rank; k++) n *= v->dims[k];
    if (n <= 0 || v->rank < 1) return n <= 0 ? cudaSuccess : cudaErrorInvalidValue;
    int64_t row_len = v->dims[v->rank - 1], rows = n / row_len;
    bool small = fits32(v, n + 128), wide = row_len >= 64;
    /* long rows: warps of 128-element chunks; short rows: an element per thread */
    int64_t per_row = wide ? (row_len + 127) / 128 : row_len, items = wide ? rows * per_row * 32 : n;
    if (items >= INT32_MAX) small = false;
    KD_DISPATCH_UNIT(unit, {
        U *d = (U *)dst;
        const U *s = (const U *)src;
        if (small && wide) strided_kernel<U, uint32_t, int32_t, 4><<<kd_blocks(items), KD_THREADS, 0, stream>>>(d, s, *v, items, (uint32_t)per_row);
        else if (small) strided_kernel<U, uint32_t, int32_t, 1><<<kd_blocks(items), KD_THREADS, 0, stream>>>(d, s, *v, items, (uint32_t)per_row);
        else if (wide) strided_kernel<U, uint64_t, int64_t, 4><<<kd_blocks(items), KD_THREADS, 0, stream>>>(d, s, *v, items, (uint64_t)per_row);
        else strided_kernel<U, uint64_t, int64_t, 1><<<kd_blocks(items), KD_THREADS, 0, stream>>>(d, s, *v, items, (uint64_t)per_row);
    });
    return cudaGetLastError();
}

/* ---- tiled transpose ---- */

#define KD_TILE 32
#define KD_TILE_ROWS 8

/* One block moves 32x32 tiles of one batch entry: it reads rows along x (contiguous in src)
 * and writes rows along y (contiguous in dst), through shared memory padded against bank
 * conflicts. */
template <typename U>
__global__ void tiled_kernel(U *__restrict__ dst, const U *__restrict__ src, kiln_data_tiled t, int64_t batches,
                             int64_t tiles_y) {
    __shared__ U tile[KD_TILE][KD_TILE + 1];
    int64_t x0 = (int64_t)blockIdx.x * KD_TILE;
    for (int64_t b = blockIdx.z; b < batches; b += gridDim.z) {
        int64_t bin = 0, bout = 0, rem = b;
        for (int k = t.nb - 1; k >= 0; k--) {
            int64_t q = rem / t.bdims[k], r = rem - q * t.bdims[k];
            bin += r * t.bin[k];
            bout += r * t.bout[k];
            rem = q;
        }
        for (int64_t ty = blockIdx.y; ty < tiles_y; ty += gridDim.y) {
            int64_t y0 = ty * KD_TILE;
            for (int j = threadIdx.y; j < KD_TILE; j += KD_TILE_ROWS) {
                int64_t y = y0 + j, x = x0 + threadIdx.x;
                if (x < t.nx && y < t.ny) tile[j][threadIdx.x] = src[bin + y * t.in_stride_y + x];
            }
            __syncthreads();
            for (int j = threadIdx.y; j < KD_TILE; j += KD_TILE_ROWS) {
                int64_t x = x0 + j, y = y0 + threadIdx.x;
                if (x < t.nx && y < t.ny) dst[bout + x * t.out_stride_x + y] = tile[threadIdx.x][j];
            }
            __syncthreads();
        }
    }
}

extern "C" cudaError_t kiln_data_tiled_transpose(void *dst, const void *src, int unit, const kiln_data_tiled *t,
                                                 cudaStream_t stream) {
    int64_t batches = 1;
    for (int k = 0; k < t->nb; k++) batches *= t->bdims[k];
    if (batches <= 0 || t->nx <= 0 || t->ny <= 0) return cudaSuccess;
    int64_t tiles_x = (t->nx + KD_TILE - 1) / KD_TILE, tiles_y = (t->ny + KD_TILE - 1) / KD_TILE;
    if (tiles_x > INT32_MAX) return cudaErrorInvalidValue;
    dim3 grid((unsigned)tiles_x, (unsigned)(tiles_y < 65535 ? tiles_y : 65535), (unsigned)(batches < 65535 ? batches : 65535));
    dim3 block(KD_TILE, KD_TILE_ROWS);
    switch (unit) {
    case 1: tiled_kernel<kd_u1><<<grid, block, 0, stream>>>((kd_u1 *)dst, (const kd_u1 *)src, *t, batches, tiles_y); break;
    case 2: tiled_kernel<kd_u2><<<grid, block, 0, stream>>>((kd_u2 *)dst, (const kd_u2 *)src, *t, batches, tiles_y); break;
    case 4: tiled_kernel<kd_u4><<<grid, block, 0, stream>>>((kd_u4 *)dst, (const kd_u4 *)src, *t, batches, tiles_y); break;
    case 8: tiled_kernel<kd_u8><<<grid, block, 0, stream>>>((kd_u8 *)dst, (const kd_u8 *)src, *t, batches, tiles_y); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

/* ---- row copies ---- */

/* blockIdx.y picks the item; the flat index over its rows x len is split with I. */
template <typename U, typename I>
__global__ void rows_kernel(kiln_data_rows r) {
    int j = blockIdx.y;
    const U *src = (const U *)r.src[j];
    U *dst = (U *)r.dst[j];
    I len = (I)r.len[j];
    int64_t sp = r.src_pitch[j], dp = r.dst_pitch[j], n = r.rows * r.len[j];
    KD_LOOP(i, n) {
        I row = (I)i / len, col = (I)i - row * len;
        dst[(int64_t)row * dp + col] = src[(int64_t)row * sp + col];
    }
}

extern "C" cudaError_t kiln_data_copy_rows(int unit, const kiln_data_rows *r, cudaStream_t stream) {
    int64_t most = 0;
    for (int j = 0; j < r->n; j++)
        if (r->rows * r->len[j] > most) most = r->rows * r->len[j];
    if (most == 0 || r->n == 0) return cudaSuccess;
    dim3 grid(kd_blocks(most), (unsigned)r->n);
    bool small = most < INT32_MAX;
    KD_DISPATCH_UNIT(unit, {
        if (small) rows_kernel<U, uint32_t><<<grid, KD_THREADS, 0, stream>>>(*r);
        else rows_kernel<U, uint64_t><<<grid, KD_THREADS, 0, stream>>>(*r);
    });
    return cudaGetLastError();
}

/* ---- Pad ---- */

/* The input coordinate for c (relative to the kept part), or -1 for the constant; the same
 * rules as map_coord in src/backends/ref/pad.c. */
static __device__ __forceinline__ int64_t pad_map(int mode, int64_t c, int64_t lo, int64_t n) {
    if (c >= 0 && c < n) return lo + c;
    switch (mode) {
    case KILN_DATA_PAD_EDGE: return lo + (c < 0 ? 0 : n - 1);
    case KILN_DATA_PAD_WRAP: return lo + ((c % n) + n) % n;
    case KILN_DATA_PAD_REFLECT: {
        if (n == 1) return lo;
        int64_t period = 2 * (n - 1), k = ((c % period) + period) % period;
        return lo + (k < n ? k : period - k);
    }
    default: return -1;
    }
}

template <typename U>
__global__ void pad_kernel(U *__restrict__ dst, const U *__restrict__ src, kiln_data_pad p, int64_t n) {
    U value = (U)p.value;
    KD_LOOP(i, n) {
        int64_t rem = i, off = 0;
        bool constant = false;
        for (int k = p.rank - 1; k >= 0; k--) {
            int64_t q = rem / p.out_dims[k], o = rem - q * p.out_dims[k];
            rem = q;
            int64_t s = pad_map(p.mode, o - p.before[k], p.lo[k], p.kept[k]);
            if (s < 0) constant = true;
            off += s * p.in_strides[k];
        }
        dst[i] = constant ? value : src[off];
    }
}

extern "C" cudaError_t kiln_data_pad_copy(void *dst, const void *src, int es, const kiln_data_pad *p, cudaStream_t stream) {
    int64_t n = 1;
    for (int k = 0; k < p->rank; k++) n *= p->out_dims[k];
    if (n <= 0) return cudaSuccess;
    switch (es) {
    case 1: pad_kernel<kd_u1><<<kd_blocks(n), KD_THREADS, 0, stream>>>((kd_u1 *)dst, (const kd_u1 *)src, *p, n); break;
    case 2: pad_kernel<kd_u2><<<kd_blocks(n), KD_THREADS, 0, stream>>>((kd_u2 *)dst, (const kd_u2 *)src, *p, n); break;
    case 4: pad_kernel<kd_u4><<<kd_blocks(n), KD_THREADS, 0, stream>>>((kd_u4 *)dst, (const kd_u4 *)src, *p, n); break;
    case 8: pad_kernel<kd_u8><<<kd_blocks(n), KD_THREADS, 0, stream>>>((kd_u8 *)dst, (const kd_u8 *)src, *p, n); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

/* ---- generators ---- */

template <typename U> __global__ void fill_kernel(U *dst, int64_t n, U value) {
    KD_LOOP(i, n) dst[i] = value;
}

/* True when the es bytes of value are all the same byte (then cudaMemsetAsync fills). */
static bool one_byte(uint64_t value, int es, unsigned char *b) {
    *b = (unsigned char)(value & 0xff);
    for (int i = 1; i < es; i++)
        if (((value >> (8 * i)) & 0xff) != *b) return false;
    return true;
}

extern "C" cudaError_t kiln_data_fill(void *dst, int es, int64_t n, uint64_t value, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    unsigned char b;
    if (one_byte(value, es, &b)) return cudaMemsetAsync(dst, b, (size_t)n * (size_t)es, stream);
    switch (es) {
    case 2: fill_kernel<kd_u2><<<kd_blocks(n), KD_THREADS, 0, stream>>>((kd_u2 *)dst, n, (kd_u2)value); break;
    case 4: fill_kernel<kd_u4><<<kd_blocks(n), KD_THREADS, 0, stream>>>((kd_u4 *)dst, n, (kd_u4)value); break;
    case 8: fill_kernel<kd_u8><<<kd_blocks(n), KD_THREADS, 0, stream>>>((kd_u8 *)dst, n, (kd_u8)value); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

template <typename U> __global__ void eye_kernel(U *dst, int64_t rows, int64_t cols, int64_t k, U one) {
    KD_LOOP(i, rows) {
        int64_t j = i + k;
        if (j >= 0 && j < cols) dst[i * cols + j] = one;
    }
}

extern "C" cudaError_t kiln_data_eye(void *dst, int es, int64_t rows, int64_t cols, int64_t k, uint64_t one,
                                     cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    cudaError_t e = cudaMemsetAsync(dst, 0, (size_t)(rows * cols) * (size_t)es, stream);
    if (e != cudaSuccess) return e;
    switch (es) {
    case 1: eye_kernel<kd_u1><<<kd_blocks(rows), KD_THREADS, 0, stream>>>((kd_u1 *)dst, rows, cols, k, (kd_u1)one); break;
    case 2: eye_kernel<kd_u2><<<kd_blocks(rows), KD_THREADS, 0, stream>>>((kd_u2 *)dst, rows, cols, k, (kd_u2)one); break;
    case 4: eye_kernel<kd_u4><<<kd_blocks(rows), KD_THREADS, 0, stream>>>((kd_u4 *)dst, rows, cols, k, (kd_u4)one); break;
    case 8: eye_kernel<kd_u8><<<kd_blocks(rows), KD_THREADS, 0, stream>>>((kd_u8 *)dst, rows, cols, k, (kd_u8)one); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

template <typename U>
__global__ void trilu_kernel(U *__restrict__ dst, const U *__restrict__ src, int64_t n, int64_t rows, int64_t cols,
                             int64_t k, int upper) {
    KD_LOOP(e, n) {
        int64_t r = e / cols, j = e - r * cols, i = r % rows;
        bool keep = upper ? j - i >= k : j - i <= k;
        dst[e] = keep ? src[e] : (U)0;
    }
}

extern "C" cudaError_t kiln_data_trilu(void *dst, const void *src, int es, int64_t batch, int64_t rows, int64_t cols,
                                       int64_t k, int upper, cudaStream_t stream) {
    int64_t n = batch * rows * cols;
    if (n <= 0) return cudaSuccess;
    unsigned g = kd_blocks(n);
    switch (es) {
    case 1: trilu_kernel<kd_u1><<<g, KD_THREADS, 0, stream>>>((kd_u1 *)dst, (const kd_u1 *)src, n, rows, cols, k, upper); break;
    case 2: trilu_kernel<kd_u2><<<g, KD_THREADS, 0, stream>>>((kd_u2 *)dst, (const kd_u2 *)src, n, rows, cols, k, upper); break;
    case 4: trilu_kernel<kd_u4><<<g, KD_THREADS, 0, stream>>>((kd_u4 *)dst, (const kd_u4 *)src, n, rows, cols, k, upper); break;
    case 8: trilu_kernel<kd_u8><<<g, KD_THREADS, 0, stream>>>((kd_u8 *)dst, (const kd_u8 *)src, n, rows, cols, k, upper); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

template <typename T> __global__ void range_float_kernel(T *dst, int64_t n, double start, double delta) {
    KD_LOOP(i, n) dst[i] = kd_num<T>::from_d(start + (double)i * delta);
}

template <typename T> __global__ void range_int_kernel(T *dst, int64_t n, uint64_t start, uint64_t delta) {
    KD_LOOP(i, n) dst[i] = (T)(start + (uint64_t)i * delta);
}

extern "C" cudaError_t kiln_data_range(void *dst, int ct, int64_t n, double fstart, double fdelta, int64_t istart,
                                       int64_t idelta, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    unsigned g = kd_blocks(n);
    uint64_t s = (uint64_t)istart, d = (uint64_t)idelta;
    switch (ct) {
    case KILN_CT_F32: range_float_kernel<float><<<g, KD_THREADS, 0, stream>>>((float *)dst, n, fstart, fdelta); break;
    case KILN_CT_F64: range_float_kernel<double><<<g, KD_THREADS, 0, stream>>>((double *)dst, n, fstart, fdelta); break;
    case KILN_CT_F16: range_float_kernel<__half><<<g, KD_THREADS, 0, stream>>>((__half *)dst, n, fstart, fdelta); break;
    case KILN_CT_BF16:
        range_float_kernel<__nv_bfloat16><<<g, KD_THREADS, 0, stream>>>((__nv_bfloat16 *)dst, n, fstart, fdelta);
        break;
    case KILN_CT_I16: range_int_kernel<int16_t><<<g, KD_THREADS, 0, stream>>>((int16_t *)dst, n, s, d); break;
    case KILN_CT_I32: range_int_kernel<int32_t><<<g, KD_THREADS, 0, stream>>>((int32_t *)dst, n, s, d); break;
    case KILN_CT_I64: range_int_kernel<int64_t><<<g, KD_THREADS, 0, stream>>>((int64_t *)dst, n, s, d); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

/* Element i of a numeric tensor as int64, floats truncated toward zero (kiln_load_i64). */
static __device__ __forceinline__ int64_t load_i64(const void *p, int ct, int64_t i) {
    switch (ct) {
    case KILN_CT_F32: {
        float f = ((const float *)p)[i];
        return f != f ? 0 : (int64_t)f;
    }
    case KILN_CT_F64: {
        double f = ((const double *)p)[i];
        return f != f ? 0 : (int64_t)f;
    }
    case KILN_CT_F16: return (int64_t)__half2float(((const __half *)p)[i]);
    case KILN_CT_BF16: return (int64_t)__bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case KILN_CT_I8: return ((const int8_t *)p)[i];
    case KILN_CT_U8: return ((const uint8_t *)p)[i];
    case KILN_CT_I16: return ((const int16_t *)p)[i];
    case KILN_CT_U16: return ((const uint16_t *)p)[i];
    case KILN_CT_I32: return ((const int32_t *)p)[i];
    case KILN_CT_U32: return ((const uint32_t *)p)[i];
    case KILN_CT_U64: return (int64_t)((const uint64_t *)p)[i];
    default: return ((const int64_t *)p)[i];
    }
}

template <typename U>
__global__ void one_hot_kernel(U *dst, const void *ind, int ind_ct, int64_t n, int64_t depth, int64_t inner, U off_value,
                               U on_value) {
    KD_LOOP(e, n) {
        int64_t i = e % inner, r = e / inner, d = r % depth, o = r / depth;
        int64_t v = load_i64(ind, ind_ct, o * inner + i);
        if (v < 0) v += depth;
        dst[e] = v == d ? on_value : off_value;
    }
}

extern "C" cudaError_t kiln_data_one_hot(void *dst, const void *ind, int ind_ct, int es, int64_t outer, int64_t depth,
                                         int64_t inner, uint64_t off_value, uint64_t on_value, cudaStream_t stream) {
    int64_t n = outer * depth * inner;
    if (n <= 0) return cudaSuccess;
    unsigned g = kd_blocks(n);
    switch (es) {
    case 1: one_hot_kernel<kd_u1><<<g, KD_THREADS, 0, stream>>>((kd_u1 *)dst, ind, ind_ct, n, depth, inner, (kd_u1)off_value, (kd_u1)on_value); break;
    case 2: one_hot_kernel<kd_u2><<<g, KD_THREADS, 0, stream>>>((kd_u2 *)dst, ind, ind_ct, n, depth, inner, (kd_u2)off_value, (kd_u2)on_value); break;
    case 4: one_hot_kernel<kd_u4><<<g, KD_THREADS, 0, stream>>>((kd_u4 *)dst, ind, ind_ct, n, depth, inner, (kd_u4)off_value, (kd_u4)on_value); break;
    case 8: one_hot_kernel<kd_u8><<<g, KD_THREADS, 0, stream>>>((kd_u8 *)dst, ind, ind_ct, n, depth, inner, (kd_u8)off_value, (kd_u8)on_value); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
