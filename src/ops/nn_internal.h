/* nn_internal.h — helpers shared by the nn group's files (conv, pool, norm, resize, matmul, ...):
 * the sliding-window attributes of Conv/ConvTranspose/pools and their output-shape rules,
 * dtype checks, and conversion of whole tensors to double buffers for the reference kernels.
 * Private to src/ops/{conv,conv_transpose,deform_conv,pool,unpool,norm,layernorm,resize,
 * matmul,einsum,dropout,roi_align,grid_sample}.c and their src/backends/ref/ twins. */
#ifndef KILN_OPS_NN_INTERNAL_H
#define KILN_OPS_NN_INTERNAL_H

#include "op.h"

#define KILN_NN_MAX_SPATIAL (KILN_MAX_RANK - 2)

typedef enum kiln_auto_pad {
    KILN_AUTO_PAD_NOTSET = 0,
    KILN_AUTO_PAD_SAME_UPPER,
    KILN_AUTO_PAD_SAME_LOWER,
    KILN_AUTO_PAD_VALID,
} kiln_auto_pad;

/* The window attributes of Conv, ConvTranspose, DeformConv and the pools, as written in the
 * model. n_* = 0 means the attribute was absent (defaults: strides 1, dilations 1, pads 0,
 * kernel from the weights). pads are [x1_begin, x2_begin, ..., x1_end, x2_end, ...]. */
typedef struct kiln_window {
    int n_kernel, n_strides, n_dilations, n_pads;
    int64_t kernel[KILN_NN_MAX_SPATIAL];
    int64_t strides[KILN_NN_MAX_SPATIAL];
    int64_t dilations[KILN_NN_MAX_SPATIAL];
    int64_t pads[2 * KILN_NN_MAX_SPATIAL];
    kiln_auto_pad auto_pad;
    bool ceil_mode;
} kiln_window;

/* Reads kernel_shape, strides, dilations, pads, auto_pad (and ceil_mode when with_ceil) and
 * checks their values (positive strides/dilations/kernel, non-negative pads). */
kiln_status kiln_nn_parse_window(kiln_node *node, kiln_attrs *attrs, kiln_window *w, bool with_ceil);

/* The resolved window for nsp spatial dims: every array filled, pads computed for auto_pad. */
typedef struct kiln_window_dims {
    int nsp;
    int64_t kernel[KILN_NN_MAX_SPATIAL];
    int64_t strides[KILN_NN_MAX_SPATIAL];
    int64_t dilations[KILN_NN_MAX_SPATIAL];
    int64_t pad_begin[KILN_NN_MAX_SPATIAL];
    int64_t pad_end[KILN_NN_MAX_SPATIAL];
    int64_t out[KILN_NN_MAX_SPATIAL]; /* output spatial size (KILN_DIM_UNKNOWN if input unknown) */
} kiln_window_dims;

/* Resolves w for spatial input dims in_sp[nsp] and kernel kernel[nsp] (from the attribute or the
 * weights; an unknown kernel dim makes the output unknown). Output sizes follow the Conv/pool
 * rules: explicit pads with floor (or ceil, the last window starting inside the input or its
 * begin padding), SAME_UPPER / SAME_LOWER: ceil(in / stride), VALID: no padding.
 * INVALID_ARGUMENT when the attribute lengths do not match nsp or the output would be empty. */
kiln_status kiln_nn_window_resolve(const kiln_node *node, const kiln_window *w, int nsp,
                                   const int64_t *in_sp, const int64_t *kernel, kiln_window_dims *d);

/* Conv, ConvTranspose and DeformConv attributes. */
typedef struct kiln_conv_params {
    kiln_window w;
    int64_t group;
    int64_t offset_group;                          /* DeformConv */
    int n_output_padding, n_output_shape;          /* ConvTranspose (0: absent) */
    int64_t output_padding[KILN_NN_MAX_SPATIAL];
    int64_t output_shape[KILN_NN_MAX_SPATIAL + 2]; /* spatial dims, or N, C and spatial dims */
} kiln_conv_params;

/* X and W have the same rank, at least 3 and at most KILN_NN_MAX_SPATIAL + 2 (src/ops/conv.c). */
kiln_status kiln_conv_check_ranks(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *w);

/* Conv's and ConvTranspose's X, W, optional B: arity 2..3 and one float dtype checked, out[0]'s
 * dtype set; *known is false (out[0] made unknown) when X's or W's rank is not known. */
kiln_status kiln_conv_float_inputs(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out, bool *known);

/* X's channels C and W (M, C/group, ...) fit group for m = M output channels (src/ops/conv.c). */
kiln_status kiln_conv_check_group(const kiln_node *node, const kiln_conv_params *p, const kiln_tensor *x,
                                  const kiln_tensor *w, int64_t m);

/* out = (N, m, d's output sizes) for X (N, ...). */
void kiln_conv_set_out(const kiln_tensor *x, int64_t m, const kiln_window_dims *d, kiln_tensor *out);

/* Checks X (N, C, ...) against W (rank equal, kernel_shape matching W's spatial dims) and B
 * (out_channels), and resolves the window of a Conv-like op (src/ops/conv.c). */
kiln_status kiln_conv_infer_common(const kiln_node *node, const kiln_conv_params *p, const kiln_tensor *x,
                                   const kiln_tensor *w, const kiln_tensor *b, int64_t out_channels,
                                   kiln_window_dims *d);

/* ConvTranspose's window for X and W: output sizes and begin/end pads (src/ops/conv_transpose.c). */
kiln_status kiln_conv_transpose_resolve(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *w,
                                        kiln_window_dims *d);

/* MaxPool, AveragePool, LpPool and the global pools. */
typedef struct kiln_pool_params {
    kiln_window w;
    bool count_include_pad; /* AveragePool */
    bool column_major;      /* MaxPool storage_order = 1: Indices count the spatial dims column-major */
    double p;               /* LpPool, GlobalLpPool */
} kiln_pool_params;

/* MaxUnpool's unpooled shape of X: (in - 1) * stride + kernel - pads (src/ops/unpool.c). */
kiln_status kiln_unpool_shape(const kiln_node *node, const kiln_tensor *x, int64_t *dims);

/* BatchNormalization, InstanceNormalization, LayerNormalization, GroupNormalization,
 * RMSNormalization, MeanVarianceNormalization, LpNormalization, LRN. */
typedef struct kiln_norm_params {
    double epsilon;
    double momentum;       /* BatchNormalization training mode */
    bool training;         /* BatchNormalization training_mode = 1 (opset 14+) */
    bool per_activation;   /* BatchNormalization spatial = 0 (before opset 9) */
    int64_t axis;          /* LayerNormalization, RMSNormalization, LpNormalization */
    kiln_dtype stash;      /* LayerNormalization's Mean / InvStdDev dtype */
    int64_t num_groups;    /* GroupNormalization */
    int n_axes;            /* MeanVarianceNormalization */
    int64_t axes[KILN_MAX_RANK];
    int64_t p;             /* LpNormalization: 1 or 2 */
    int64_t size;          /* LRN */
    double alpha, beta, bias;
} kiln_norm_params;

/* Advances a row-major multi-index over dims; returns false after the last one. */
static inline bool kiln_nn_next(int rank, const int64_t *dims, int64_t *idx) {
    for (int i = rank - 1; i >= 0; i--) {
        if (++idx[i] < dims[i]) return true;
        idx[i] = 0;
    }
    return false;
}

/* MatMul and Gemm. */
typedef struct kiln_matmul_params {
    double alpha, beta; /* Gemm */
    bool trans_a, trans_b;
} kiln_matmul_params;

/* MatMul's shapes: a, b lifted to rank >= 2 (1-D a: (1, K); 1-D b: (K, 1)), the broadcast batch
 * dims, and the output (src/ops/matmul.c). */
typedef struct kiln_matmul_dims {
    int batch_rank;
    int64_t batch[KILN_MAX_RANK];
    int64_t m, k, n;
    int64_t a_bstride[KILN_MAX_RANK], b_bstride[KILN_MAX_RANK]; /* in matrices, 0 on broadcast */
} kiln_matmul_dims;
kiln_status kiln_matmul_resolve(const kiln_node *node, const kiln_tensor *a, const kiln_tensor *b,
                                kiln_matmul_dims *d, int *out_rank, int64_t *out_dims);

/* Dropout. */
typedef struct kiln_dropout_params {
    double ratio;      /* before opset 12 (an input since) */
    bool has_seed;
    int64_t seed;
} kiln_dropout_params;

/* Einsum: the equation, and its plan for given input shapes (src/ops/einsum.c). */
#define KILN_EINSUM_MAX_INPUTS 16
#define KILN_EINSUM_MAX_LABELS 64 /* 52 letters + ellipsis dims */
typedef struct kiln_einsum_params {
    char equation[256];
} kiln_einsum_params;
typedef struct kiln_einsum_plan {
    int n_labels;
    int64_t size[KILN_EINSUM_MAX_LABELS];
    int64_t in_stride[KILN_EINSUM_MAX_INPUTS][KILN_EINSUM_MAX_LABELS]; /* 0 for absent or broadcast */
    int64_t out_stride[KILN_EINSUM_MAX_LABELS];                        /* 0 for summed labels */
    int out_rank;
    int64_t out_dims[KILN_MAX_RANK];
} kiln_einsum_plan;
kiln_status kiln_einsum_make_plan(const kiln_node *node, kiln_tensor *const *in, kiln_einsum_plan *plan);

/* Resize and Upsample. */
typedef enum { KILN_RESIZE_NEAREST, KILN_RESIZE_LINEAR, KILN_RESIZE_CUBIC } kiln_resize_mode;
typedef enum {
    KILN_COORD_HALF_PIXEL, KILN_COORD_HALF_PIXEL_SYMMETRIC, KILN_COORD_PYTORCH_HALF_PIXEL,
    KILN_COORD_ALIGN_CORNERS, KILN_COORD_ASYMMETRIC, KILN_COORD_TF_HALF_PIXEL_FOR_NN,
    KILN_COORD_TF_CROP_AND_RESIZE,
} kiln_resize_coord;
typedef enum {
    KILN_NEAREST_ROUND_PREFER_FLOOR, KILN_NEAREST_ROUND_PREFER_CEIL, KILN_NEAREST_FLOOR, KILN_NEAREST_CEIL,
    KILN_NEAREST_SIMPLE, /* Upsample and Resize-10: floor when upsampling, ceil when downsampling */
} kiln_resize_nearest;
typedef enum { KILN_ASPECT_STRETCH, KILN_ASPECT_NOT_LARGER, KILN_ASPECT_NOT_SMALLER } kiln_resize_aspect;

typedef struct kiln_resize_params {
    kiln_resize_mode mode;
    kiln_resize_coord coord;
    kiln_resize_nearest nearest;
    kiln_resize_aspect aspect;
    double cubic_a, extrapolation;
    bool exclude_outside, antialias;
    int n_axes; /* 0: all axes */
    int64_t axes[KILN_MAX_RANK];
    int n_attr_scales; /* Upsample-7's scales attribute */
    float attr_scales[KILN_MAX_RANK];
    int in_roi, in_scales, in_sizes; /* input positions for this op and opset, -1 if none */
} kiln_resize_params;

/* Resize's geometry for X: per axis the scale used by the coordinate transform, the output
 * size and the roi (tf_crop_and_resize). known is false when scales/sizes data is missing. */
typedef struct kiln_resize_geom {
    bool known;
    double scale[KILN_MAX_RANK];
    int64_t out[KILN_MAX_RANK];
    double roi_start[KILN_MAX_RANK], roi_end[KILN_MAX_RANK];
} kiln_resize_geom;
kiln_status kiln_resize_resolve(const kiln_node *node, kiln_tensor *const *in, kiln_resize_geom *g);

/* RoiAlign. */
typedef struct kiln_roi_align_params {
    bool max_mode;
    bool half_pixel; /* coordinate_transformation_mode (opset 16+; output_half_pixel before) */
    int64_t out_h, out_w, sampling_ratio;
    double spatial_scale;
} kiln_roi_align_params;

/* GridSample and AffineGrid. */
typedef enum { KILN_GRID_LINEAR, KILN_GRID_NEAREST, KILN_GRID_CUBIC } kiln_grid_mode;
typedef enum { KILN_GRID_ZEROS, KILN_GRID_BORDER, KILN_GRID_REFLECTION } kiln_grid_padding;
typedef struct kiln_grid_params {
    kiln_grid_mode mode;
    kiln_grid_padding padding;
    bool align_corners;
} kiln_grid_params;

/* For a sliding window: the range [lo, hi) of positions o < count whose source o*s + off lies
 * in [0, n). Lets kernels walk only the valid part of a row, without per-element checks. */
static inline void kiln_nn_tap_range(int64_t off, int64_t s, int64_t n, int64_t count, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = n - 1 - off >= 0 ? (n - 1 - off) / s + 1 : 0;
    if (h > count) h = count;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* True for f16, bf16, f32, f64. */
static inline bool kiln_nn_is_float(kiln_dtype t) { return kiln_dtype_is_float(t); }

/* A malloc'ed copy of t's elements as doubles (NULL with OUT_OF_MEMORY set on failure). */
double *kiln_nn_to_f64(const kiln_tensor *t);
/* Stores n doubles into t's data (rounding to its dtype). */
void kiln_nn_from_f64(kiln_tensor *t, const double *v, int64_t n);
/* A zeroed malloc'ed double buffer of n elements; NULL with OUT_OF_MEMORY set on failure. */
double *kiln_nn_alloc_f64(int64_t n);

/* Reads element i of an integer or float 1-D tensor as int64 (for shape-like inputs). */
static inline int64_t kiln_nn_get_i64(const kiln_tensor *t, int64_t i) {
    return kiln_load_i64(t->dtype, t->data, i);
}

/* Copies dtype/rank/dims of src into dst (the data pointer is left alone). */
static inline void kiln_nn_same_type(kiln_tensor *dst, const kiln_tensor *src) {
    dst->dtype = src->dtype;
    dst->rank = src->rank;
    for (int i = 0; i < src->rank; i++) dst->dims[i] = src->dims[i];
}

/* Product of dims[lo..hi), or -1 when one is not known. */
static inline int64_t kiln_nn_prod(const int64_t *dims, int lo, int hi) {
    int64_t p = 1;
    for (int i = lo; i < hi; i++) {
        if (dims[i] < 0) return -1;
        p *= dims[i];
    }
    return p;
}

#endif /* KILN_OPS_NN_INTERNAL_H */
