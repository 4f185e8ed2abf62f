/* data_resize.cu — Resize / Upsample and RoiAlign, following src/backends/ref/resize.c and
 * roi_align.c. The geometry per axis (scale, output size, roi) comes from kiln_resize_resolve
 * on the host; here each output coordinate is mapped to a source coordinate and its taps in
 * double, exactly as the reference's make_taps does (coordinate transform, tap start, weights,
 * antialias normalisation, exclude_outside renormalisation, edge clamping, extrapolation).
 *
 * Nearest is a gather (every dtype, no arithmetic). Linear and cubic resize up to 3 axes in
 * one pass, taking the product of the per-axis weights; antialias (wide kernels) and more
 * axes go one axis per pass through scratch memory, as the reference does. Sums are in float
 * (double for f64 and integer data, which is rounded half to even and saturated at the end).
 * Tested against the reference backend through the CUDA engine tests. */
#include "data_device.cuh"

#include <math.h>
#include <limits>
#include <type_traits>

/* Numbering shared with kiln_resize_coord / kiln_resize_nearest (src/ops/nn_internal.h). */
enum { COORD_HALF_PIXEL, COORD_HALF_PIXEL_SYMMETRIC, COORD_PYTORCH_HALF_PIXEL, COORD_ALIGN_CORNERS, COORD_ASYMMETRIC,
       COORD_TF_HALF_PIXEL_FOR_NN, COORD_TF_CROP_AND_RESIZE };
enum { NEAREST_ROUND_PREFER_FLOOR, NEAREST_ROUND_PREFER_CEIL, NEAREST_FLOOR, NEAREST_CEIL, NEAREST_SIMPLE };

__host__ __device__ static int tap_count(const kiln_data_resize &p, double scale) {
    if (p.mode == KILN_DATA_RESIZE_NEAREST) return p.nearest == NEAREST_SIMPLE ? 1 : 2;
    if (!p.antialias || scale >= 1) return p.mode == KILN_DATA_RESIZE_LINEAR ? 2 : 4;
    double reach = p.mode == KILN_DATA_RESIZE_LINEAR ? 1.0 : 2.0;
    int start = (int)floor(-reach / scale) + 1;
    return 2 - 2 * start;
}

extern "C" int kiln_data_resize_taps(const kiln_data_resize *p, const kiln_data_resize_axis *a) {
    return tap_count(*p, a->scale);
}

static __device__ double source_coord(const kiln_data_resize &p, const kiln_data_resize_axis &a, double y, bool *extrap) {
    double scale = a.scale, ow = scale * (double)a.in_w; /* the real-valued output width */
    *extrap = false;
    switch (p.coord) {
    case COORD_ALIGN_CORNERS: return ow == 1 ? 0.0 : y * (double)(a.in_w - 1) / (ow - 1);
    case COORD_ASYMMETRIC: return y / scale;
    case COORD_TF_HALF_PIXEL_FOR_NN: return (y + 0.5) / scale;
    case COORD_PYTORCH_HALF_PIXEL: return ow == 1 ? -0.5 : (y + 0.5) / scale - 0.5;
    case COORD_HALF_PIXEL: return (y + 0.5) / scale - 0.5;
    case COORD_HALF_PIXEL_SYMMETRIC: {
        double adjustment = (double)a.out_w / ow, center = (double)a.in_w / 2;
        return center * (1 - adjustment) + (y + 0.5) / scale - 0.5;
    }
    default: { /* tf_crop_and_resize */
        double x = ow == 1 ? (a.roi1 - a.roi0) * (double)(a.in_w - 1) / 2
                           : y * (a.roi1 - a.roi0) * (double)(a.in_w - 1) / (ow - 1);
        x += a.roi0 * (double)(a.in_w - 1);
        *extrap = x < 0 || x > (double)(a.in_w - 1);
        return x;
    }
    }
}

static __device__ double cubic_kernel(double x, double A) {
    x = fabs(x);
    if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0;
}

/* The taps of one output coordinate along one axis: indices start .. start + n - 1 (clamped
 * when read), weight j = raw(j) / s1 / s2 (s1: antialias normalisation, s2: exclude_outside
 * renormalisation; both 1 when not used). */
typedef struct kd_taps {
    int64_t start;
    int n, chosen; /* chosen: nearest's tap */
    double ratio, s1, s2;
    bool extrap;
} kd_taps;

static __device__ __forceinline__ int64_t clamp_index(int64_t i, int64_t w) { return i < 0 ? 0 : i >= w ? w - 1 : i; }

/* The reference's coeffs() for tap j, before normalisation, and zero for an outside tap
 * when exclude_outside. */
static __device__ double raw_weight(const kiln_data_resize &p, const kiln_data_resize_axis &a, const kd_taps &t, int j) {
    if (p.exclude_outside && (t.start + j < 0 || t.start + j >= a.in_w)) return 0;
    if (p.mode == KILN_DATA_RESIZE_NEAREST) return t.n == 1 || j == t.chosen ? 1.0 : 0.0;
    if (!p.antialias) {
        if (p.mode == KILN_DATA_RESIZE_LINEAR) return j == 0 ? 1 - t.ratio : t.ratio;
        double A = p.cubic_a;
        switch (j) {
        case 0: return cubic_kernel(t.ratio + 1, A);
        case 1: return cubic_kernel(t.ratio, A);
        case 2: return cubic_kernel(1 - t.ratio, A);
        default: return cubic_kernel(2 - t.ratio, A);
        }
    }
    double s = a.scale < 1 ? a.scale : 1;
    double arg = s * ((double)(-(t.n / 2) + 1 + j) - t.ratio);
    return p.mode == KILN_DATA_RESIZE_LINEAR ? fmax(0.0, fmin(1.0, 1 - fabs(arg))) : cubic_kernel(arg, p.cubic_a);
}

static __device__ void make_taps(const kiln_data_resize &p, const kiln_data_resize_axis &a, int64_t y, kd_taps *t) {
    double x = source_coord(p, a, (double)y, &t->extrap);
    t->s1 = t->s2 = 1;
    t->chosen = 0;
    t->ratio = 1;
    if (p.mode == KILN_DATA_RESIZE_NEAREST && p.nearest == NEAREST_SIMPLE) {
        /* Upsample / Resize-10: floor when upsampling, ceil when downsampling */
        t->n = 1;
        t->start = clamp_index((int64_t)(a.scale < 1 ? ceil(x) : floor(x)), a.in_w);
        return;
    }
    int n = tap_count(p, a.scale);
    t->n = n;
    double fl = floor(x);
    t->ratio = x == fl ? 1.0 : x - fl;
    if (p.mode == KILN_DATA_RESIZE_NEAREST) {
        bool second;
        if (t->ratio == 1.0) second = true;
        else if (p.nearest == NEAREST_ROUND_PREFER_FLOOR) second = t->ratio > 0.5;
        else if (p.nearest == NEAREST_ROUND_PREFER_CEIL) second = t->ratio >= 0.5;
        else second = p.nearest == NEAREST_CEIL;
        t->chosen = second ? 1 : 0;
    }
    int pad = (n + 1) / 2;
    double xp = x + pad, pp = floor(xp), frac = xp - pp;
    int64_t off = n % 2 == 0 ? (frac == 0 ? -(n / 2) : -(n / 2) + 1) : (frac <= 0.5 ? -((n - 1) / 2) : -((n - 1) / 2) + 1);
    t->start = (int64_t)pp + off - pad;
    if (p.antialias && p.mode != KILN_DATA_RESIZE_NEAREST) {
        double sum = 0;
        for (int j = 0; j < n; j++) { /* the normalisation sees every tap, inside or not */
            double s = a.scale < 1 ? a.scale : 1, arg = s * ((double)(-(n / 2) + 1 + j) - t->ratio);
            sum += p.mode == KILN_DATA_RESIZE_LINEAR ? fmax(0.0, fmin(1.0, 1 - fabs(arg))) : cubic_kernel(arg, p.cubic_a);
        }
        t->s1 = sum;
    }
    if (p.exclude_outside) {
        double sum = 0;
        for (int j = 0; j < n; j++) sum += raw_weight(p, a, *t, j) / t->s1;
        if (sum != 0) t->s2 = sum;
    }
}

/* ---- nearest: a gather ---- */

template <typename U>
__global__ void nearest_kernel(U *__restrict__ dst, const U *__restrict__ src, kiln_data_resize p, int64_t total, U ext) {
    int64_t in_strides[KILN_CUDA_MAX_RANK];
    int64_t s = 1;
    for (int k = p.rank - 1; k >= 0; k--) {
        in_strides[k] = s;
        s *= p.in_dims[k];
    }
    KD_LOOP(i, total) {
        int64_t rem = i, off = 0;
        int coord[KILN_CUDA_MAX_RANK];
        int64_t o[KILN_CUDA_MAX_RANK];
        for (int k = p.rank - 1; k >= 0; k--) {
            o[k] = rem % p.out_dims[k];
            rem /= p.out_dims[k];
            coord[k] = -1;
        }
        for (int j = 0; j < p.n_axes; j++) coord[p.ax[j].axis] = j;
        bool extrap = false, zero = false;
        for (int k = 0; k < p.rank; k++) {
            if (coord[k] < 0) {
                off += o[k] * in_strides[k];
                continue;
            }
            const kiln_data_resize_axis &a = p.ax[coord[k]];
            kd_taps t;
            make_taps(p, a, o[k], &t);
            extrap |= t.extrap;
            int j = t.n == 1 ? 0 : t.chosen;
            zero |= raw_weight(p, a, t, j) == 0;
            off += clamp_index(t.start + j, a.in_w) * in_strides[k];
        }
        dst[i] = extrap ? ext : zero ? U() : src[off];
    }
}

extern "C" cudaError_t kiln_data_resize_nearest(void *dst, const void *src, int es, uint64_t ext, const kiln_data_resize *p,
                                                cudaStream_t stream) {
    int64_t total = 1;
    for (int k = 0; k < p->rank; k++) total *= p->out_dims[k];
    if (total <= 0) return cudaSuccess;
    unsigned g = kd_blocks(total);
    switch (es) {
    case 1: nearest_kernel<kd_u1><<<g, KD_THREADS, 0, stream>>>((kd_u1 *)dst, (const kd_u1 *)src, *p, total, (kd_u1)ext); break;
    case 2: nearest_kernel<kd_u2><<<g, KD_THREADS, 0, stream>>>((kd_u2 *)dst, (const kd_u2 *)src, *p, total, (kd_u2)ext); break;
    case 4: nearest_kernel<kd_u4><<<g, KD_THREADS, 0, stream>>>((kd_u4 *)dst, (const kd_u4 *)src, *p, total, (kd_u4)ext); break;
    case 8: nearest_kernel<kd_u8><<<g, KD_THREADS, 0, stream>>>((kd_u8 *)dst, (const kd_u8 *)src, *p, total, (kd_u8)ext); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

/* ---- linear / cubic ---- */

template <typename T> struct kd_io {
    /* float data sums in float, integers and f64 in double */
    typedef typename std::conditional<std::is_integral<T>::value || std::is_same<T, double>::value, double, float>::type acc;
    static __device__ __forceinline__ acc load(T v) { return (acc)kd_num<T>::to_d(v); }
    static __device__ __forceinline__ T store(double v) {
        if (std::is_integral<T>::value) { /* round half to even, saturate (the reference's saturate()) */
            double lo = (double)std::numeric_limits<T>::min(), hi = (double)std::numeric_limits<T>::max();
            if (sizeof(T) == 8) hi = std::is_signed<T>::value ? 9223372036854774784.0 : 18446744073709549568.0;
            v = rint(v);
            v = v < lo ? lo : v > hi ? hi : v;
            return (T)v;
        }
        return kd_num<T>::from_d(v);
    }
};
template <> struct kd_io<float> {
    typedef float acc;
    static __device__ __forceinline__ float load(float v) { return v; }
    static __device__ __forceinline__ float store(double v) { return (float)v; }
};

/* NAX axes (2 or 3) with at most 4 taps each, weights kept in registers. */
template <typename Tin, typename Tout, typename A, int NAX>
__global__ void interp_fused_kernel(Tout *__restrict__ dst, const Tin *__restrict__ src, kiln_data_resize p, int64_t total) {
    int64_t in_strides[KILN_CUDA_MAX_RANK];
    int64_t s = 1;
    for (int k = p.rank - 1; k >= 0; k--) {
        in_strides[k] = s;
        s *= p.in_dims[k];
    }
    KD_LOOP(i, total) {
        int64_t rem = i, base = 0, o[KILN_CUDA_MAX_RANK];
        for (int k = p.rank - 1; k >= 0; k--) {
            o[k] = rem % p.out_dims[k];
            rem /= p.out_dims[k];
        }
        for (int k = 0, j = 0; k < p.rank; k++) {
            if (j < NAX && p.ax[j].axis == k) j++;
            else base += o[k] * in_strides[k];
        }
        int n[NAX];
        int64_t idx[NAX][4];
        A w[NAX][4];
        bool extrap = false;
#pragma unroll
        for (int j = 0; j < NAX; j++) {
            const kiln_data_resize_axis &a = p.ax[j];
            kd_taps t;
            make_taps(p, a, o[a.axis], &t);
            extrap |= t.extrap;
            n[j] = t.n;
            for (int m = 0; m < 4; m++) {
                idx[j][m] = m < t.n ? clamp_index(t.start + m, a.in_w) * in_strides[a.axis] : 0;
                w[j][m] = m < t.n ? (A)(raw_weight(p, a, t, m) / t.s1 / t.s2) : (A)0;
            }
        }
        if (extrap) {
            dst[i] = kd_io<Tout>::store(p.extrapolation);
            continue;
        }
        A acc = 0;
        int m[NAX];
#pragma unroll
        for (int j = 0; j < NAX; j++) m[j] = 0;
        for (;;) {
            A wt = 1;
            int64_t off = base;
#pragma unroll
            for (int j = 0; j < NAX; j++) {
                wt *= w[j][m[j]];
                off += idx[j][m[j]];
            }
            if (wt != 0) acc += wt * (A)kd_io<Tin>::load(src[off]);
            int j = NAX - 1;
            for (; j >= 0; j--) {
                if (++m[j] < n[j]) break;
                m[j] = 0;
            }
            if (j < 0) break;
        }
        dst[i] = kd_io<Tout>::store((double)acc);
    }
}

/* One axis with any number of taps (antialias), weights computed as they are used. */
template <typename Tin, typename Tout, typename A>
__global__ void interp_axis_kernel(Tout *__restrict__ dst, const Tin *__restrict__ src, kiln_data_resize p, int64_t total) {
    const kiln_data_resize_axis &a = p.ax[0];
    int64_t inner = 1;
    for (int k = a.axis + 1; k < p.rank; k++) inner *= p.in_dims[k];
    KD_LOOP(i, total) {
        int64_t r = i / inner, e = i - r * inner, o = r / a.out_w, y = r - o * a.out_w;
        kd_taps t;
        make_taps(p, a, y, &t);
        if (t.extrap) {
            dst[i] = kd_io<Tout>::store(p.extrapolation);
            continue;
        }
        const Tin *row = src + o * a.in_w * inner + e;
        A acc = 0;
        for (int j = 0; j < t.n; j++) {
            double wj = raw_weight(p, a, t, j) / t.s1 / t.s2;
            if (wj != 0) acc += (A)wj * (A)kd_io<Tin>::load(row[clamp_index(t.start + j, a.in_w) * inner]);
        }
        dst[i] = kd_io<Tout>::store((double)acc);
    }
}

template <typename Tin, typename Tout, typename A>
static cudaError_t interp_launch(void *dst, const void *src, const kiln_data_resize *p, cudaStream_t s) {
    int64_t total = 1;
    for (int k = 0; k < p->rank; k++) total *= p->out_dims[k];
    if (total <= 0) return cudaSuccess;
    unsigned g = kd_blocks(total);
    bool narrow = true;
    for (int j = 0; j < p->n_axes; j++) narrow &= tap_count(*p, p->ax[j].scale) <= 4;
    if (p->n_axes == 1) interp_axis_kernel<Tin, Tout, A><<<g, KD_THREADS, 0, s>>>((Tout *)dst, (const Tin *)src, *p, total);
    else if (p->n_axes == 2 && narrow) interp_fused_kernel<Tin, Tout, A, 2><<<g, KD_THREADS, 0, s>>>((Tout *)dst, (const Tin *)src, *p, total);
    else if (p->n_axes == 3 && narrow) interp_fused_kernel<Tin, Tout, A, 3><<<g, KD_THREADS, 0, s>>>((Tout *)dst, (const Tin *)src, *p, total);
    else return cudaErrorInvalidValue;
    return cudaGetLastError();
}

/* in_ct / out_ct: the tensor's type T, or its accumulator type (scratch between passes). */
template <typename T>
static cudaError_t interp_typed(void *dst, int out_ct, const void *src, int in_ct, int ct, const kiln_data_resize *p,
                                cudaStream_t s) {
    typedef typename kd_io<T>::acc A;
    bool in_t = in_ct == ct, out_t = out_ct == ct;
    if (in_t && out_t) return interp_launch<T, T, A>(dst, src, p, s);
    if (p->n_axes != 1) return cudaErrorInvalidValue; /* separable passes are one axis each */
    if (in_t) return interp_launch<T, A, A>(dst, src, p, s);
    if (out_t) return interp_launch<A, T, A>(dst, src, p, s);
    return interp_launch<A, A, A>(dst, src, p, s);
}

extern "C" cudaError_t kiln_data_resize_interp(void *dst, int out_ct, const void *src, int in_ct, const kiln_data_resize *p,
                                               cudaStream_t stream) {
    /* the tensor's type is whichever end is not an accumulator (both are for middle passes) */
    int ct = in_ct;
    if (ct == KILN_CT_F32 || ct == KILN_CT_F64) ct = out_ct;
    switch (ct) {
    case KILN_CT_F32: return interp_typed<float>(dst, out_ct, src, in_ct, ct, p, stream);
    case KILN_CT_F64: return interp_typed<double>(dst, out_ct, src, in_ct, ct, p, stream);
    case KILN_CT_F16: return interp_typed<__half>(dst, out_ct, src, in_ct, ct, p, stream);
    case KILN_CT_BF16: return interp_typed<__nv_bfloat16>(dst, out_ct, src, in_ct, ct, p, stream);
    case KILN_CT_U8: return interp_typed<uint8_t>(dst, out_ct, src, in_ct, ct, p, stream);
    case KILN_CT_I8: return interp_typed<int8_t>(dst, out_ct, src, in_ct, ct, p, stream);
    case KILN_CT_I32: return interp_typed<int32_t>(dst, out_ct, src, in_ct, ct, p, stream);
    case KILN_CT_I64: return interp_typed<int64_t>(dst, out_ct, src, in_ct, ct, p, stream);
    default: return cudaErrorInvalidValue;
    }
}

/* ---- the common case: one axis, or two adjacent axes, of at most 4 taps ----
 * The output is viewed as (P, OH, OW, C): P the dims before the resized ones, C those after.
 * Each resized axis gets a table of its output coordinates' taps (built on the device, in
 * scratch memory), so the per-element work is two table reads and the weighted taps. */

typedef struct kd_tap4 {
    int n, flags; /* flags: 1 extrapolate, 2 zero (nearest's tap excluded) */
    int idx[4];   /* clamped input coordinates */
    double w[4];
} kd_tap4;

typedef struct kd_view2d {
    int64_t P;
    int ih, iw, oh, ow, c;
    int h, w; /* which of p.ax is the H / W axis, -1 for none (identity) */
} kd_view2d;

/* The 2-D view of p, or false when the resized axes are not one or two adjacent ones with
 * at most 4 taps each, or sizes do not fit in 32 bits. */
static bool view2d(const kiln_data_resize &p, kd_view2d *v) {
    if (p.n_axes < 1 || p.n_axes > 2) return false;
    if (p.n_axes == 2 && p.ax[1].axis != p.ax[0].axis + 1) return false;
    for (int j = 0; j < p.n_axes; j++)
        if (tap_count(p, p.ax[j].scale) > 4) return false;
    int first = p.ax[0].axis, last = p.ax[p.n_axes - 1].axis;
    int64_t P = 1, C = 1;
    for (int k = 0; k < first; k++) P *= p.in_dims[k];
    for (int k = last + 1; k < p.rank; k++) C *= p.in_dims[k];
    int64_t ih = p.in_dims[first], oh = p.out_dims[first];
    int64_t iw = p.n_axes == 2 ? p.in_dims[last] : 1, ow = p.n_axes == 2 ? p.out_dims[last] : 1;
    if (ih * iw * C >= INT32_MAX || oh * ow * C >= INT32_MAX || P * oh >= INT32_MAX) return false;
    v->P = P;
    v->ih = (int)ih, v->oh = (int)oh, v->iw = (int)iw, v->ow = (int)ow, v->c = (int)C;
    v->h = 0;
    v->w = p.n_axes == 2 ? 1 : -1;
    return true;
}

__global__ void tap_table_kernel(kd_tap4 *tab, kiln_data_resize p, int j) {
    const kiln_data_resize_axis &a = p.ax[j];
    KD_LOOP(y, a.out_w) {
        kd_taps t;
        make_taps(p, a, y, &t);
        kd_tap4 e;
        e.flags = t.extrap ? 1 : 0;
        if (p.mode == KILN_DATA_RESIZE_NEAREST) {
            int m = t.n == 1 ? 0 : t.chosen;
            e.n = 1;
            e.idx[0] = (int)clamp_index(t.start + m, a.in_w);
            e.w[0] = 1;
            if (raw_weight(p, a, t, m) == 0) e.flags |= 2;
            for (int k = 1; k < 4; k++) e.idx[k] = 0, e.w[k] = 0;
        } else {
            e.n = t.n;
            for (int k = 0; k < 4; k++) {
                e.idx[k] = k < t.n ? (int)clamp_index(t.start + k, a.in_w) : 0;
                e.w[k] = k < t.n ? raw_weight(p, a, t, k) / t.s1 / t.s2 : 0;
            }
        }
        tab[y] = e;
    }
}

/* The taps of output coordinate o on an axis with table tab, or the identity without one. */
static __device__ __forceinline__ kd_tap4 tap_at(const kd_tap4 *tab, int o) {
    if (tab) return tab[o];
    kd_tap4 e;
    e.n = 1, e.flags = 0;
    e.idx[0] = o, e.idx[1] = e.idx[2] = e.idx[3] = 0;
    e.w[0] = 1, e.w[1] = e.w[2] = e.w[3] = 0;
    return e;
}

/* threadIdx.y / blockIdx.y run over the (p, oh) rows of the output (whose H taps are the
 * same for a row); each thread takes KD_COLS columns of a row, blockDim.x apart, and keeps
 * their W taps in registers for all the rows it visits. Row arithmetic is 32-bit (view2d
 * checks the sizes). Measured on an H100 (8x128x64x64 f32, 2x): nearest 63 us with 4
 * columns a thread (81 us with 1); linear 204 us with 1 (323 us with 4: register-bound). */
template <typename Tin, typename Tout, typename A, bool NEAREST, int KD_COLS>
__global__ void resize2d_kernel(Tout *__restrict__ dst, const Tin *__restrict__ src, const kd_tap4 *__restrict__ th,
                                const kd_tap4 *__restrict__ tw, kd_view2d v, Tout ext_value, double ext) {
    int cols = v.ow * v.c, iwc = v.iw * v.c;
    int wn[KD_COLS], wflags[KD_COLS], woff[KD_COLS][4], col[KD_COLS];
    A ww[KD_COLS][4];
#pragma unroll
    for (int k = 0; k < KD_COLS; k++) {
        col[k] = (blockIdx.x * KD_COLS + k) * blockDim.x + threadIdx.x;
        int ow = v.c == 1 ? col[k] : col[k] / v.c, c = col[k] - ow * v.c;
        kd_tap4 e = tap_at(tw, col[k] < cols ? ow : 0);
        wn[k] = e.n;
        wflags[k] = e.flags;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            woff[k][j] = e.idx[j] * v.c + c;
            ww[k][j] = (A)e.w[j];
        }
    }
    unsigned rows = (unsigned)(v.P * v.oh);
    for (unsigned row = blockIdx.y * blockDim.y + threadIdx.y; row < rows; row += gridDim.y * blockDim.y) {
        unsigned p = row / (unsigned)v.oh, oh = row - p * (unsigned)v.oh;
        kd_tap4 eh = tap_at(th, (int)oh);
        const Tin *plane = src + (int64_t)p * ((int64_t)v.ih * iwc);
        Tout *out = dst + (int64_t)row * cols;
#pragma unroll
        for (int k = 0; k < KD_COLS; k++) {
            if (col[k] >= cols) continue;
            if ((eh.flags | wflags[k]) & 1) {
                out[col[k]] = NEAREST ? ext_value : kd_io<Tout>::store(ext);
                continue;
            }
            if (NEAREST) {
                out[col[k]] = (eh.flags | wflags[k]) & 2 ? Tout() : plane[eh.idx[0] * iwc + woff[k][0]];
                continue;
            }
            A acc = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (i < eh.n) {
                    const Tin *line = plane + eh.idx[i] * iwc;
                    A wh = (A)eh.w[i];
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        A wt = wh * ww[k][j];
                        if (j < wn[k] && wt != 0) acc += wt * (A)kd_io<Tin>::load(line[woff[k][j]]);
                    }
                }
            }
            out[col[k]] = kd_io<Tout>::store((double)acc);
        }
    }
}

extern "C" size_t kiln_data_resize_2d_scratch(const kiln_data_resize *p) {
    kd_view2d v;
    if (!view2d(*p, &v)) return 0;
    return sizeof(kd_tap4) * (size_t)(v.oh + (v.w >= 0 ? v.ow : 0));
}

template <typename Tin, typename Tout, typename A, bool NEAREST>
static cudaError_t launch2d(void *dst, const void *src, const kd_tap4 *th, const kd_tap4 *tw, const kd_view2d &v, Tout ext_value,
                            double ext, cudaStream_t s) {
    const int COLS = NEAREST ? 4 : 1;
    int cols = v.ow * v.c, per_thread = (cols + COLS - 1) / COLS;
    int tx = per_thread >= 256 ? 256 : (per_thread + 31) / 32 * 32, ty = 256 / tx;
    int64_t rows = v.P * v.oh, gy = (rows + ty - 1) / ty;
    dim3 grid((unsigned)((cols + tx * COLS - 1) / (tx * COLS)), (unsigned)(gy < 65535 ? gy : 65535));
    resize2d_kernel<Tin, Tout, A, NEAREST, COLS><<<grid, dim3(tx, ty), 0, s>>>((Tout *)dst, (const Tin *)src, th, tw, v, ext_value, ext);
    return cudaGetLastError();
}

template <typename T>
static cudaError_t interp2d(void *dst, const void *src, const kd_tap4 *th, const kd_tap4 *tw, const kd_view2d &v, double ext,
                            cudaStream_t s) {
    return launch2d<T, T, typename kd_io<T>::acc, false>(dst, src, th, tw, v, T(), ext, s);
}

extern "C" cudaError_t kiln_data_resize_2d(void *dst, const void *src, int ct, int es, uint64_t ext_bits,
                                           const kiln_data_resize *p, void *scratch, cudaStream_t stream) {
    kd_view2d v;
    if (!view2d(*p, &v)) return cudaErrorInvalidValue;
    if (v.P * v.oh * v.ow * v.c <= 0) return cudaSuccess;
    kd_tap4 *th = (kd_tap4 *)scratch, *tw = v.w >= 0 ? th + v.oh : NULL;
    tap_table_kernel<<<kd_blocks(v.oh), KD_THREADS, 0, stream>>>(th, *p, 0);
    if (tw) tap_table_kernel<<<kd_blocks(v.ow), KD_THREADS, 0, stream>>>(tw, *p, 1);
    if (p->mode == KILN_DATA_RESIZE_NEAREST) {
        switch (es) {
        case 1: return launch2d<kd_u1, kd_u1, float, true>(dst, src, th, tw, v, (kd_u1)ext_bits, 0, stream);
        case 2: return launch2d<kd_u2, kd_u2, float, true>(dst, src, th, tw, v, (kd_u2)ext_bits, 0, stream);
        case 4: return launch2d<kd_u4, kd_u4, float, true>(dst, src, th, tw, v, (kd_u4)ext_bits, 0, stream);
        case 8: return launch2d<kd_u8, kd_u8, float, true>(dst, src, th, tw, v, (kd_u8)ext_bits, 0, stream);
        default: return cudaErrorInvalidValue;
        }
    }
    double ext = p->extrapolation;
    switch (ct) {
    case KILN_CT_F32: return interp2d<float>(dst, src, th, tw, v, ext, stream);
    case KILN_CT_F64: return interp2d<double>(dst, src, th, tw, v, ext, stream);
    case KILN_CT_F16: return interp2d<__half>(dst, src, th, tw, v, ext, stream);
    case KILN_CT_BF16: return interp2d<__nv_bfloat16>(dst, src, th, tw, v, ext, stream);
    case KILN_CT_U8: return interp2d<uint8_t>(dst, src, th, tw, v, ext, stream);
    case KILN_CT_I8: return interp2d<int8_t>(dst, src, th, tw, v, ext, stream);
    case KILN_CT_I32: return interp2d<int32_t>(dst, src, th, tw, v, ext, stream);
    case KILN_CT_I64: return interp2d<int64_t>(dst, src, th, tw, v, ext, stream);
    default: return cudaErrorInvalidValue;
    }
}

/* ---- RoiAlign ---- */

/* The four corner offsets and weights of a bilinear sample at (y, x) on an (H, W) map
 * (corners() of src/backends/ref/roi_align.c). */
static __device__ void roi_corners(double y, double x, int64_t H, int64_t W, int64_t *pos, double *w) {
    if (y < -1.0 || y > (double)H || x < -1.0 || x > (double)W) {
        for (int i = 0; i < 4; i++) pos[i] = 0, w[i] = 0;
        return;
    }
    if (y < 0) y = 0;
    if (x < 0) x = 0;
    int64_t yl = (int64_t)y, xl = (int64_t)x, yh, xh;
    if (yl >= H - 1) yh = yl = H - 1, y = (double)yl;
    else yh = yl + 1;
    if (xl >= W - 1) xh = xl = W - 1, x = (double)xl;
    else xh = xl + 1;
    double ly = y - (double)yl, lx = x - (double)xl, hy = 1 - ly, hx = 1 - lx;
    pos[0] = yl * W + xl, pos[1] = yl * W + xh, pos[2] = yh * W + xl, pos[3] = yh * W + xh;
    w[0] = hy * hx, w[1] = hy * lx, w[2] = ly * hx, w[3] = ly * lx;
}

/* One thread per output bin (roi, channel, ph, pw); geometry in double as the reference. */
template <typename T>
__global__ void roi_align_kernel(T *__restrict__ dst, const T *__restrict__ x, const T *__restrict__ rois,
                                 const void *__restrict__ bidx, int idx64, kiln_data_roi_align p, int64_t total) {
    typedef typename kd_io<T>::acc A;
    double off = p.half_pixel ? 0.5 : 0.0;
    KD_LOOP(i, total) {
        int64_t pw = i % p.out_w, r1 = i / p.out_w, ph = r1 % p.out_h, r2 = r1 / p.out_h, c = r2 % p.c, r = r2 / p.c;
        int64_t b = kd_index(bidx, idx64, r);
        if (b < 0 || b >= p.n) { /* the reference fails the run; nothing to read here */
            dst[i] = kd_io<T>::store(0.0);
            continue;
        }
        double x1 = kd_num<T>::to_d(rois[r * 4 + 0]) * p.spatial_scale - off;
        double y1 = kd_num<T>::to_d(rois[r * 4 + 1]) * p.spatial_scale - off;
        double x2 = kd_num<T>::to_d(rois[r * 4 + 2]) * p.spatial_scale - off;
        double y2 = kd_num<T>::to_d(rois[r * 4 + 3]) * p.spatial_scale - off;
        double rw = x2 - x1, rh = y2 - y1;
        if (!p.half_pixel) {
            rw = fmax(rw, 1.0);
            rh = fmax(rh, 1.0);
        }
        double bh = rh / (double)p.out_h, bw = rw / (double)p.out_w;
        int64_t gh = p.sampling_ratio > 0 ? p.sampling_ratio : (int64_t)ceil(rh / (double)p.out_h);
        int64_t gw = p.sampling_ratio > 0 ? p.sampling_ratio : (int64_t)ceil(rw / (double)p.out_w);
        if (gh < 0) gh = 0;
        if (gw < 0) gw = 0;
        double count = (double)(gh * gw > 1 ? gh * gw : 1);
        const T *map = x + (b * p.c + c) * p.h * p.w;
        A acc = 0;
        bool first = true;
        for (int64_t iy = 0; iy < gh; iy++) {
            double yy = y1 + (double)ph * bh + ((double)iy + 0.5) * bh / (double)gh;
            for (int64_t ix = 0; ix < gw; ix++) {
                double xx = x1 + (double)pw * bw + ((double)ix + 0.5) * bw / (double)gw;
                int64_t pos[4];
                double w[4];
                roi_corners(yy, xx, p.h, p.w, pos, w);
                A v[4];
                for (int k = 0; k < 4; k++) v[k] = (A)w[k] * kd_io<T>::load(map[pos[k]]);
                if (!p.max_mode) {
                    acc += v[0] + v[1] + v[2] + v[3];
                } else {
                    A m = fmax(fmax(v[0], v[1]), fmax(v[2], v[3]));
                    acc = first ? m : fmax(acc, m);
                    first = false;
                }
            }
        }
        if (!p.max_mode) acc /= (A)count;
        dst[i] = kd_io<T>::store((double)acc);
    }
}

template <typename T>
static cudaError_t roi_align_typed(void *dst, const void *x, const void *rois, const void *bidx, int idx64,
                                   const kiln_data_roi_align *p, cudaStream_t s) {
    int64_t total = p->rois * p->c * p->out_h * p->out_w;
    if (total <= 0) return cudaSuccess;
    roi_align_kernel<T><<<kd_blocks(total), KD_THREADS, 0, s>>>((T *)dst, (const T *)x, (const T *)rois, bidx, idx64, *p, total);
    return cudaGetLastError();
}

extern "C" cudaError_t kiln_data_roi_align_bins(void *dst, const void *x, const void *rois, const void *batch_index, int idx64,
                                           int ct, const kiln_data_roi_align *p, cudaStream_t stream) {
    switch (ct) {
    case KILN_CT_F32: return roi_align_typed<float>(dst, x, rois, batch_index, idx64, p, stream);
    case KILN_CT_F16: return roi_align_typed<__half>(dst, x, rois, batch_index, idx64, p, stream);
    case KILN_CT_BF16: return roi_align_typed<__nv_bfloat16>(dst, x, rois, batch_index, idx64, p, stream);
    case KILN_CT_F64: return roi_align_typed<double>(dst, x, rois, batch_index, idx64, p, stream);
    default: return cudaErrorInvalidValue;
    }
}
