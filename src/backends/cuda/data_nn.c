/* data_nn.c — host side of the CUDA pools (MaxPool with Indices, AveragePool, LpPool over 1 to
 * 3 spatial dims, the global pools), Resize / Upsample and RoiAlign (kernels in data_pool.cu
 * and data_resize.cu). Windows come from kiln_nn_window_resolve and Resize's geometry from
 * kiln_resize_resolve, the same helpers the reference kernels use.
 * Tested against the reference backend through the CUDA engine tests. */
#include "data_host.h"

#include "../../ops/nn_internal.h"

#include <math.h>
#include <string.h>

static bool is_float(kiln_dtype t) {
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16 || t == KILN_DTYPE_F64;
}

/* ---- pools ---- */

static bool is_global(int op) {
    return op == KILN_OP_GlobalAveragePool || op == KILN_OP_GlobalMaxPool || op == KILN_OP_GlobalLpPool;
}

static const char *supports_pool(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    if (!x) return "input missing";
    bool ints_ok = n->op == KILN_OP_MaxPool && (x->dtype == KILN_DTYPE_I8 || x->dtype == KILN_DTYPE_U8);
    if (!is_float(x->dtype) && !ints_ok) return "dtype not f32/f16/bf16/f64 (or int8/uint8 for MaxPool)";
    if (!is_global(n->op) && (x->rank < 3 || x->rank > 2 + KILN_DATA_POOL_MAX_SP)) return "not 1 to 3 spatial dims";
    return NULL;
}

static kiln_status run_pool(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_pool_params *pp = n->params;
    const kiln_tensor *x = in[0];
    int ct = kiln_cuda_ctype(x->dtype);
    int64_t planes = x->dims[0] * x->dims[1];
    if (kiln_shape_count(out[0].rank, out[0].dims) == 0) return KILN_STATUS_OK;
    if (is_global(n->op)) {
        int kind = n->op == KILN_OP_GlobalMaxPool ? KILN_DATA_POOL_MAX
                   : n->op == KILN_OP_GlobalAveragePool ? KILN_DATA_POOL_AVG : KILN_DATA_POOL_LP;
        int64_t size = kiln_nn_prod(x->dims, 2, x->rank);
        return kiln_data_check(kiln_data_global_pool(out[0].data, x->data, ct, kind, (float)pp->p, planes, size, r->stream), n,
                               "global pool kernel");
    }
    int nsp = x->rank - 2;
    kiln_window_dims d;
    KILN_TRY(kiln_nn_window_resolve(n, &pp->w, nsp, x->dims + 2, pp->w.kernel, &d));
    kiln_data_pool p;
    memset(&p, 0, sizeof p);
    p.kind = n->op == KILN_OP_MaxPool ? KILN_DATA_POOL_MAX : n->op == KILN_OP_AveragePool ? KILN_DATA_POOL_AVG : KILN_DATA_POOL_LP;
    p.nsp = nsp;
    p.count_include_pad = pp->count_include_pad;
    p.column_major = pp->column_major;
    p.p = (float)pp->p;
    p.planes = planes;
    for (int i = 0; i < nsp; i++) {
        p.in[i] = x->dims[2 + i];
        p.out[i] = out[0].dims[2 + i];
        p.kernel[i] = d.kernel[i];
        p.strides[i] = d.strides[i];
        p.dilations[i] = d.dilations[i];
        p.pad_begin[i] = d.pad_begin[i];
        p.pad_end[i] = d.pad_end[i];
    }
    int64_t *indices = n->n_outputs > 1 && out[1].data ? out[1].data : NULL;
    return kiln_data_check(kiln_data_pool_window(out[0].data, indices, x->data, ct, &p, r->stream), n, "pool kernel");
}

/* ---- Resize / Upsample ---- */

static bool interp_dtype(kiln_dtype t) {
    return is_float(t) || t == KILN_DTYPE_U8 || t == KILN_DTYPE_I8 || t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64;
}

static const char *supports_resize(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const kiln_resize_params *p = n->params;
    const kiln_tensor *x = in[0];
    if (!x) return "input missing";
    if (x->rank > KILN_CUDA_MAX_RANK) return "rank above 8";
    if (p->mode == KILN_RESIZE_NEAREST) return kiln_data_movable(x->dtype);
    if (!interp_dtype(x->dtype)) return "dtype not f32/f16/bf16/f64/uint8/int8/int32/int64 for linear or cubic";
    return NULL;
}

/* The reference's integer rounding of a value stored into an integer tensor: round half to
 * even, then saturate (saturate() in src/backends/ref/resize.c, for the extrapolation value). */
static uint64_t stored_value(kiln_dtype t, double v) {
    uint64_t bits = 0;
    if (kiln_dtype_is_float(t)) {
        kiln_store_f64(t, &bits, 0, v);
        return bits;
    }
    kiln_store_f64(t, &bits, 0, kiln_round_saturate(t, v));
    return bits;
}

/* One resize pass over the axes in p (p->in_dims / out_dims set by the caller). */
static kiln_status interp_pass(kiln_cuda_run *r, const kiln_node *n, void *dst, int out_ct, const void *src, int in_ct,
                               const kiln_data_resize *p) {
    return kiln_data_check(kiln_data_resize_interp(dst, out_ct, src, in_ct, p, r->stream), n, "resize kernel");
}

/* Linear / cubic: up to 3 axes of at most 4 taps in one pass; else one axis per pass as the
 * reference does, through two scratch buffers of the accumulator type (float, or double for
 * f64 and integer data). */
static kiln_status run_interp(kiln_cuda_run *r, const kiln_node *n, const kiln_tensor *x, kiln_tensor *out,
                              const kiln_data_resize *all) {
    int ct = kiln_cuda_ctype(x->dtype);
    bool narrow = all->n_axes <= 3;
    for (int j = 0; j < all->n_axes; j++) narrow &= kiln_data_resize_taps(all, &all->ax[j]) <= 4;
    if (narrow || all->n_axes == 1) return interp_pass(r, n, out->data, ct, x->data, ct, all);
    int acc = x->dtype == KILN_DTYPE_F32 || x->dtype == KILN_DTYPE_F16 || x->dtype == KILN_DTYPE_BF16 ? KILN_CT_F32 : KILN_CT_F64;
    size_t acc_size = acc == KILN_CT_F32 ? 4 : 8;
    /* the largest intermediate, after each pass but the last */
    int64_t dims[KILN_MAX_RANK], most = 0;
    for (int k = 0; k < x->rank; k++) dims[k] = x->dims[k];
    for (int j = 0; j + 1 < all->n_axes; j++) {
        dims[all->ax[j].axis] = all->ax[j].out_w;
        int64_t c = kiln_shape_count(x->rank, dims);
        if (c > most) most = c;
    }
    size_t half = ((size_t)most * acc_size + 255) / 256 * 256;
    char *scratch;
    KILN_TRY(kiln_cuda_scratch(r, 2 * half, (void **)&scratch));
    kiln_data_resize p = *all;
    for (int k = 0; k < x->rank; k++) p.out_dims[k] = x->dims[k];
    const void *src = x->data;
    int src_ct = ct;
    for (int j = 0; j < all->n_axes; j++) {
        bool last = j + 1 == all->n_axes;
        const kiln_data_resize_axis *a = &all->ax[j];
        memcpy(p.in_dims, p.out_dims, sizeof p.in_dims);
        p.out_dims[a->axis] = a->out_w;
        p.n_axes = 1;
        p.ax[0] = *a;
        void *dst = last ? out->data : scratch + (j % 2) * half;
        int dst_ct = last ? ct : acc;
        KILN_TRY(interp_pass(r, n, dst, dst_ct, src, src_ct, &p));
        src = dst;
        src_ct = dst_ct;
    }
    return KILN_STATUS_OK;
}

static kiln_status run_resize(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_resize_params *rp = n->params;
    const kiln_tensor *x = in[0];
    kiln_resize_geom g;
    KILN_TRY(kiln_resize_resolve(n, in, &g));
    if (kiln_shape_count(out[0].rank, out[0].dims) == 0) return KILN_STATUS_OK;
    for (int a = 0; a < x->rank; a++)
        if (x->dims[a] == 0)
            return kiln_node_error(n, KILN_STATUS_INVALID_ARGUMENT, "cannot resize an empty axis %d to %lld", a,
                                   (long long)out[0].dims[a]);
    kiln_data_resize p;
    memset(&p, 0, sizeof p);
    p.mode = rp->mode == KILN_RESIZE_NEAREST ? KILN_DATA_RESIZE_NEAREST
             : rp->mode == KILN_RESIZE_LINEAR ? KILN_DATA_RESIZE_LINEAR : KILN_DATA_RESIZE_CUBIC;
    p.coord = (int)rp->coord;
    p.nearest = (int)rp->nearest;
    p.antialias = rp->antialias;
    p.exclude_outside = rp->exclude_outside;
    p.cubic_a = rp->cubic_a;
    p.extrapolation = rp->extrapolation;
    p.rank = x->rank;
    for (int a = 0; a < x->rank; a++) {
        p.in_dims[a] = x->dims[a];
        p.out_dims[a] = out[0].dims[a];
        /* the axes the reference leaves alone */
        bool crop = rp->coord == KILN_COORD_TF_CROP_AND_RESIZE && (g.roi_start[a] != 0 || g.roi_end[a] != 1);
        if (fabs(g.scale[a] - 1.0) < 1e-9 && g.out[a] == x->dims[a] && !crop) continue;
        kiln_data_resize_axis *ax = &p.ax[p.n_axes++];
        ax->axis = a;
        ax->in_w = x->dims[a];
        ax->out_w = g.out[a];
        ax->scale = g.scale[a];
        ax->roi0 = g.roi_start[a];
        ax->roi1 = g.roi_end[a];
    }
    size_t es = kiln_dtype_size(x->dtype);
    if (p.n_axes == 0) return kiln_data_copy(r, n, out[0].data, x->data, (size_t)kiln_shape_count(x->rank, x->dims) * es);
    size_t tables = kiln_data_resize_2d_scratch(&p);
    if (tables) {
        void *scratch;
        KILN_TRY(kiln_cuda_scratch(r, tables, &scratch));
        uint64_t ext = stored_value(x->dtype, p.extrapolation);
        return kiln_data_check(kiln_data_resize_2d(out[0].data, x->data, kiln_cuda_ctype(x->dtype), (int)es, ext, &p, scratch,
                                                   r->stream),
                               n, "resize kernel");
    }
    if (p.mode == KILN_DATA_RESIZE_NEAREST)
        return kiln_data_check(kiln_data_resize_nearest(out[0].data, x->data, (int)es, stored_value(x->dtype, p.extrapolation),
                                                        &p, r->stream),
                               n, "resize kernel");
    return run_interp(r, n, x, &out[0], &p);
}

/* ---- RoiAlign ---- */

static const char *supports_roi_align(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (!in[0] || !in[1] || !in[2]) return "input missing";
    if (!is_float(in[0]->dtype) || in[1]->dtype != in[0]->dtype) return "dtype not f32/f16/bf16/f64";
    if (in[2]->dtype != KILN_DTYPE_I64 && in[2]->dtype != KILN_DTYPE_I32) return "batch_indices not int32/int64";
    return NULL;
}

static kiln_status run_roi_align(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_roi_align_params *rp = n->params;
    const kiln_tensor *x = in[0];
    kiln_data_roi_align p;
    memset(&p, 0, sizeof p);
    p.max_mode = rp->max_mode;
    p.half_pixel = rp->half_pixel;
    p.n = x->dims[0];
    p.c = x->dims[1];
    p.h = x->dims[2];
    p.w = x->dims[3];
    p.rois = out[0].dims[0];
    p.out_h = rp->out_h;
    p.out_w = rp->out_w;
    p.sampling_ratio = rp->sampling_ratio;
    p.spatial_scale = rp->spatial_scale;
    int64_t total = kiln_shape_count(out[0].rank, out[0].dims);
    if (total == 0) return KILN_STATUS_OK;
    if (p.h == 0 || p.w == 0) /* every sample is outside: zeros */
        return kiln_data_check(cudaMemsetAsync(out[0].data, 0, (size_t)total * kiln_dtype_size(x->dtype), r->stream), n,
                               "zero fill");
    return kiln_data_check(kiln_data_roi_align_bins(out[0].data, x->data, in[1]->data, in[2]->data,
                                                    in[2]->dtype == KILN_DTYPE_I64, kiln_cuda_ctype(x->dtype), &p, r->stream),
                           n, "roi-align kernel");
}

void kiln_cuda_register_data_nn(kiln_cuda_op *t) {
    static const int pools[] = {KILN_OP_MaxPool,          KILN_OP_AveragePool,   KILN_OP_LpPool,
                                KILN_OP_GlobalAveragePool, KILN_OP_GlobalMaxPool, KILN_OP_GlobalLpPool};
    for (int i = 0; i < 6; i++) {
        t[pools[i]].supports = supports_pool;
        t[pools[i]].run = run_pool;
        t[pools[i]].kernel = "pool";
    }
    /* Resize-11+: roi, scales, sizes; Upsample-9 and Resize-10: scales at 1 */
    static const int resizes[] = {KILN_OP_Resize, KILN_OP_Upsample};
    for (int i = 0; i < 2; i++) {
        t[resizes[i]].supports = supports_resize;
        t[resizes[i]].run = run_resize;
        t[resizes[i]].host_inputs = (1u << 1) | (1u << 2) | (1u << 3);
        t[resizes[i]].kernel = "resize";
    }
    t[KILN_OP_RoiAlign].supports = supports_roi_align;
    t[KILN_OP_RoiAlign].run = run_roi_align;
    t[KILN_OP_RoiAlign].kernel = "roi-align";
}
