/* data_index.cu — gathers and scatters of the data family: Gather, GatherElements, GatherND,
 * ScatterElements (and Scatter), ScatterND, TensorScatter. Index tensors are int32 or int64;
 * negative indices wrap; indices still out of range cannot be reported from the device, so
 * gathers write zeros there and scatters skip them (the reference fails the run instead).
 * Scatter reductions combine in the element type's own arithmetic, as the reference does:
 * floats through float (double for f64), integers wrapping, bool as logic.
 * Tested against the reference backend through the CUDA engine tests. */
#include "data_device.cuh"

#include <type_traits>

/* ---- Gather ---- */

template <typename U, typename I>
__global__ void gather_kernel(U *__restrict__ dst, const U *__restrict__ src, const void *__restrict__ index, int idx64,
                              int64_t total, I dim, I n, I inner) {
    KD_LOOP(e, total) {
        I r = (I)e / inner, k = (I)e - r * inner, o = r / n, i = r - o * n;
        int64_t j = kd_wrap(kd_index(index, idx64, i), dim);
        dst[e] = j < 0 ? U() : src[((int64_t)o * dim + j) * inner + k];
    }
}

extern "C" cudaError_t kiln_data_gather(void *dst, const void *src, const void *index, int idx64, int unit, int64_t outer,
                                        int64_t dim, int64_t n, int64_t inner, cudaStream_t stream) {
    int64_t total = outer * n * inner;
    if (total <= 0) return cudaSuccess;
    bool small = total < INT32_MAX && dim < INT32_MAX;
    KD_DISPATCH_UNIT(unit, {
        if (small)
            gather_kernel<U, uint32_t><<<kd_blocks(total), KD_THREADS, 0, stream>>>(
                (U *)dst, (const U *)src, index, idx64, total, (uint32_t)dim, (uint32_t)n, (uint32_t)inner);
        else
            gather_kernel<U, uint64_t><<<kd_blocks(total), KD_THREADS, 0, stream>>>(
                (U *)dst, (const U *)src, index, idx64, total, (uint64_t)dim, (uint64_t)n, (uint64_t)inner);
    });
    return cudaGetLastError();
}

/* ---- GatherElements ---- */

template <typename U>
__global__ void gather_elements_kernel(U *__restrict__ dst, const U *__restrict__ src, const void *__restrict__ index,
                                       int idx64, int64_t total, kiln_data_elements g) {
    KD_LOOP(i, total) {
        int64_t rem = i, off = 0;
        for (int k = g.rank - 1; k >= 0; k--) {
            int64_t q = rem / g.idims[k], c = rem - q * g.idims[k];
            rem = q;
            if (k != g.axis) off += c * g.xstrides[k];
        }
        int64_t j = kd_wrap(kd_index(index, idx64, i), g.axis_dim);
        dst[i] = j < 0 ? U() : src[off + j * g.xstrides[g.axis]];
    }
}

extern "C" cudaError_t kiln_data_gather_elements(void *dst, const void *src, const void *index, int idx64, int es,
                                                 const kiln_data_elements *g, cudaStream_t stream) {
    int64_t total = 1;
    for (int k = 0; k < g->rank; k++) total *= g->idims[k];
    if (total <= 0) return cudaSuccess;
    KD_DISPATCH_UNIT(es, {
        gather_elements_kernel<U><<<kd_blocks(total), KD_THREADS, 0, stream>>>((U *)dst, (const U *)src, index, idx64, total, *g);
    });
    return cudaGetLastError();
}

/* ---- GatherND ---- */

/* Offset (in units) of index tuple t's slice in data, or -1 when a component is out of range. */
static __device__ __forceinline__ int64_t nd_offset(const kiln_data_nd &g, const void *index, int idx64, int64_t t) {
    int64_t off = (t / g.per_batch) * g.data_batch;
    for (int j = 0; j < g.m; j++) {
        int64_t v = kd_wrap(kd_index(index, idx64, t * g.m + j), g.dims[j]);
        if (v < 0) return -1;
        off += v * g.strides[j];
    }
    return off;
}

template <typename U>
__global__ void gather_nd_kernel(U *__restrict__ dst, const U *__restrict__ src, const void *__restrict__ index, int idx64,
                                 int64_t total, kiln_data_nd g) {
    KD_LOOP(i, total) {
        int64_t t = i / g.slice, e = i - t * g.slice;
        int64_t off = nd_offset(g, index, idx64, t);
        dst[i] = off < 0 ? U() : src[off + e];
    }
}

extern "C" cudaError_t kiln_data_gather_nd(void *dst, const void *src, const void *index, int idx64, int unit,
                                           const kiln_data_nd *g, cudaStream_t stream) {
    int64_t total = g->batches * g->per_batch * g->slice;
    if (total <= 0) return cudaSuccess;
    KD_DISPATCH_UNIT(unit, {
        gather_nd_kernel<U><<<kd_blocks(total), KD_THREADS, 0, stream>>>((U *)dst, (const U *)src, index, idx64, total, *g);
    });
    return cudaGetLastError();
}

/* ---- scatter reductions ---- */

/* Bool elements: one byte, any nonzero byte is true. */
struct kd_bool {
    unsigned char v;
};

template <typename T> struct kd_red {
    /* integers: wrapping add / mul (through uint64, then truncated), native max / min */
    static __device__ __forceinline__ T apply(T a, T b, int r) {
        switch (r) {
        case KILN_DATA_RED_ADD: return (T)((uint64_t)a + (uint64_t)b);
        case KILN_DATA_RED_MUL: return (T)((uint64_t)a * (uint64_t)b);
        case KILN_DATA_RED_MAX: return a > b ? a : b;
        case KILN_DATA_RED_MIN: return a < b ? a : b;
        default: return b;
        }
    }
};

/* Floats: a NaN already there stays (the reference's "a > b || isnan(a) ? a : b"). */
template <typename F> static __device__ __forceinline__ F kd_red_float(F a, F b, int r) {
    switch (r) {
    case KILN_DATA_RED_ADD: return a + b;
    case KILN_DATA_RED_MUL: return a * b;
    case KILN_DATA_RED_MAX: return a > b || a != a ? a : b;
    case KILN_DATA_RED_MIN: return a < b || a != a ? a : b;
    default: return b;
    }
}
template <> struct kd_red<float> {
    static __device__ __forceinline__ float apply(float a, float b, int r) { return kd_red_float(a, b, r); }
};
template <> struct kd_red<double> {
    static __device__ __forceinline__ double apply(double a, double b, int r) { return kd_red_float(a, b, r); }
};
template <> struct kd_red<__half> {
    static __device__ __forceinline__ __half apply(__half a, __half b, int r) {
        return __float2half_rn(kd_red_float(__half2float(a), __half2float(b), r));
    }
};
template <> struct kd_red<__nv_bfloat16> {
    static __device__ __forceinline__ __nv_bfloat16 apply(__nv_bfloat16 a, __nv_bfloat16 b, int r) {
        return __float2bfloat16_rn(kd_red_float(__bfloat162float(a), __bfloat162float(b), r));
    }
};
template <> struct kd_red<kd_bool> {
    static __device__ __forceinline__ kd_bool apply(kd_bool a, kd_bool b, int r) {
        bool x = a.v != 0, y = b.v != 0, v;
        switch (r) {
        case KILN_DATA_RED_ADD: case KILN_DATA_RED_MAX: v = x || y; break;
        case KILN_DATA_RED_MUL: case KILN_DATA_RED_MIN: v = x && y; break;
        default: return b;
        }
        kd_bool o;
        o.v = v ? 1 : 0;
        return o;
    }
};

template <typename To, typename From> static __device__ __forceinline__ To kd_bits(From f) {
    static_assert(sizeof(To) == sizeof(From), "same size");
    To t;
    memcpy(&t, &f, sizeof t);
    return t;
}

/* *p = apply(*p, v) atomically, by compare-and-swap on the element (or, for 1-byte elements,
 * on the aligned 32-bit word that holds it). */
template <typename T> static __device__ void kd_atomic_apply(T *p, T v, int r) {
    if constexpr (sizeof(T) == 8) {
        unsigned long long *a = (unsigned long long *)p, old = *a, assumed;
        do {
            assumed = old;
            old = atomicCAS(a, assumed, kd_bits<unsigned long long>(kd_red<T>::apply(kd_bits<T>(assumed), v, r)));
        } while (old != assumed);
    } else if constexpr (sizeof(T) == 4) {
        unsigned *a = (unsigned *)p, old = *a, assumed;
        do {
            assumed = old;
            old = atomicCAS(a, assumed, kd_bits<unsigned>(kd_red<T>::apply(kd_bits<T>(assumed), v, r)));
        } while (old != assumed);
    } else if constexpr (sizeof(T) == 2) {
        unsigned short *a = (unsigned short *)p, old = *a, assumed;
        do {
            assumed = old;
            old = atomicCAS(a, assumed, kd_bits<unsigned short>(kd_red<T>::apply(kd_bits<T>(assumed), v, r)));
        } while (old != assumed);
    } else {
        uintptr_t addr = (uintptr_t)p;
        unsigned *a = (unsigned *)(addr & ~(uintptr_t)3);
        unsigned shift = (unsigned)(addr & 3) * 8, old = *a, assumed;
        do {
            assumed = old;
            T cur = kd_bits<T>((unsigned char)((assumed >> shift) & 0xff));
            unsigned char nv = kd_bits<unsigned char>(kd_red<T>::apply(cur, v, r));
            old = atomicCAS(a, assumed, (assumed & ~(0xffu << shift)) | ((unsigned)nv << shift));
        } while (old != assumed);
    }
}

/* Calls BODY with T the element type of ct (kd_bool for bool). */
#define KD_DISPATCH_CT(ct, ...)                                                                    \
    switch (ct) {                                                                                  \
    case KILN_CT_F32: { typedef float T; __VA_ARGS__; } break;                                     \
    case KILN_CT_F16: { typedef __half T; __VA_ARGS__; } break;                                    \
    case KILN_CT_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;                            \
    case KILN_CT_F64: { typedef double T; __VA_ARGS__; } break;                                    \
    case KILN_CT_I8: { typedef int8_t T; __VA_ARGS__; } break;                                     \
    case KILN_CT_U8: { typedef uint8_t T; __VA_ARGS__; } break;                                    \
    case KILN_CT_I16: { typedef int16_t T; __VA_ARGS__; } break;                                   \
    case KILN_CT_U16: { typedef uint16_t T; __VA_ARGS__; } break;                                  \
    case KILN_CT_I32: { typedef int32_t T; __VA_ARGS__; } break;                                   \
    case KILN_CT_U32: { typedef uint32_t T; __VA_ARGS__; } break;                                  \
    case KILN_CT_I64: { typedef int64_t T; __VA_ARGS__; } break;                                   \
    case KILN_CT_U64: { typedef uint64_t T; __VA_ARGS__; } break;                                  \
    case KILN_CT_BOOL: { typedef kd_bool T; __VA_ARGS__; } break;                                  \
    default: return cudaErrorInvalidValue;                                                         \
    }

/* ---- ScatterElements ---- */

/* One thread per line along the axis: the updates of a line only touch the same line of the
 * output, and walking it in order applies repeated indices in the reference's order. */
template <typename T>
__global__ void scatter_elements_kernel(T *__restrict__ dst, const T *__restrict__ upd, const void *__restrict__ index,
                                        int idx64, int reduction, int64_t lines, kiln_data_elements g) {
    int64_t istride = 1; /* contiguous stride of the axis in the index tensor */
    for (int k = g.rank - 1; k > g.axis; k--) istride *= g.idims[k];
    KD_LOOP(l, lines) {
        int64_t rem = l, ibase = 0, xoff = 0, s = 1;
        for (int k = g.rank - 1; k >= 0; k--) {
            if (k == g.axis) {
                s *= g.idims[k];
                continue;
            }
            int64_t q = rem / g.idims[k], c = rem - q * g.idims[k];
            rem = q;
            ibase += c * s;
            xoff += c * g.xstrides[k];
            s *= g.idims[k];
        }
        for (int64_t t = 0; t < g.idims[g.axis]; t++) {
            int64_t i = ibase + t * istride;
            int64_t j = kd_wrap(kd_index(index, idx64, i), g.axis_dim);
            if (j < 0) continue;
            T *p = dst + xoff + j * g.xstrides[g.axis];
            *p = kd_red<T>::apply(*p, upd[i], reduction);
        }
    }
}

extern "C" cudaError_t kiln_data_scatter_elements(void *dst, const void *upd, const void *index, int idx64, int ct,
                                                  int reduction, const kiln_data_elements *g, cudaStream_t stream) {
    int64_t lines = 1;
    for (int k = 0; k < g->rank; k++)
        if (k != g->axis) lines *= g->idims[k];
    if (lines <= 0 || g->idims[g->axis] <= 0) return cudaSuccess;
    KD_DISPATCH_CT(ct, {
        scatter_elements_kernel<T><<<kd_blocks(lines), KD_THREADS, 0, stream>>>((T *)dst, (const T *)upd, index, idx64,
                                                                                reduction, lines, *g);
    });
    return cudaGetLastError();
}

/* ---- ScatterND ---- */

/* Pass 1 without a reduction: the last tuple writing each slice position wins. */
__global__ void scatter_nd_winner_kernel(int *winner, const void *__restrict__ index, int idx64, int64_t n_tuples,
                                         kiln_data_nd g) {
    KD_LOOP(t, n_tuples) {
        int64_t off = nd_offset(g, index, idx64, t);
        if (off >= 0) atomicMax(winner + off / g.slice, (int)(t + 1));
    }
}

template <typename T>
__global__ void scatter_nd_kernel(T *dst, const T *__restrict__ upd, const void *__restrict__ index, int idx64,
                                  int reduction, int64_t total, const int *__restrict__ winner, kiln_data_nd g) {
    KD_LOOP(i, total) {
        int64_t t = i / g.slice, e = i - t * g.slice;
        int64_t off = nd_offset(g, index, idx64, t);
        if (off < 0) continue;
        if (reduction != KILN_DATA_RED_NONE) kd_atomic_apply(dst + off + e, upd[i], reduction);
        else if (!winner || winner[off / g.slice] == (int)(t + 1)) dst[off + e] = upd[i];
    }
}

extern "C" cudaError_t kiln_data_scatter_nd(void *dst, const void *upd, const void *index, int idx64, int ct, int reduction,
                                            const kiln_data_nd *g, int64_t n_tuples, int *winner, int64_t positions,
                                            cudaStream_t stream) {
    int64_t total = n_tuples * g->slice;
    if (total <= 0) return cudaSuccess;
    if (reduction != KILN_DATA_RED_NONE) winner = NULL;
    if (winner) {
        cudaError_t e = cudaMemsetAsync(winner, 0, (size_t)positions * sizeof(int), stream);
        if (e != cudaSuccess) return e;
        scatter_nd_winner_kernel<<<kd_blocks(n_tuples), KD_THREADS, 0, stream>>>(winner, index, idx64, n_tuples, *g);
    }
    KD_DISPATCH_CT(ct, {
        scatter_nd_kernel<T><<<kd_blocks(total), KD_THREADS, 0, stream>>>((T *)dst, (const T *)upd, index, idx64, reduction,
                                                                          total, winner, *g);
    });
    return cudaGetLastError();
}

/* ---- TensorScatter ---- */

template <typename U>
__global__ void tensor_scatter_kernel(U *__restrict__ dst, const U *__restrict__ upd, const int64_t *__restrict__ wi,
                                      int64_t total, int64_t per_batch, int64_t max_len, int64_t len, int64_t inner,
                                      int circular) {
    KD_LOOP(i, total) {
        int64_t r = i / inner, k = i - r * inner, o = r / len, s = r - o * len;
        int64_t c = (wi ? wi[o / per_batch] : 0) + s;
        if (circular) c = ((c % max_len) + max_len) % max_len;
        else if (c < 0 || c >= max_len) continue;
        dst[(o * max_len + c) * inner + k] = upd[i];
    }
}

extern "C" cudaError_t kiln_data_tensor_scatter(void *dst, const void *upd, const int64_t *write_index, int unit, int64_t outer,
                                                int64_t per_batch, int64_t max_len, int64_t len, int64_t inner, int circular,
                                                cudaStream_t stream) {
    int64_t total = outer * len * inner;
    if (total <= 0 || max_len <= 0) return cudaSuccess;
    KD_DISPATCH_UNIT(unit, {
        tensor_scatter_kernel<U><<<kd_blocks(total), KD_THREADS, 0, stream>>>((U *)dst, (const U *)upd, write_index, total,
                                                                             per_batch, max_len, len, inner, circular);
    });
    return cudaGetLastError();
}
