/* kernels_data.h — launchers of the data family's GPU kernels (data movement, indexing,
 * generators, pooling, resampling). Defined in data_move.cu, data_index.cu, data_pool.cu and
 * data_resize.cu; called from data.c, data_index.c and data_nn.c, which plan the work on the
 * host (collapse dims, pick a vector width, resolve attributes) and pass plain structs by value.
 *
 * Data movement works by element size only ("unit": 1, 2, 4, 8 or 16 bytes), so every dtype
 * goes through the same kernels; ops that compute (pools, Resize, RoiAlign, scatter
 * reductions, Range) take a KILN_CT_* element type. Sizes, strides and offsets are in units
 * (or elements) unless a name says bytes. Out-of-range gather/scatter indices cannot be
 * reported from the device: gathers write zeros for them and scatters skip them. */
#ifndef KILN_CUDA_KERNELS_DATA_H
#define KILN_CUDA_KERNELS_DATA_H

#include "kernels.h"

/* Twice KILN_CUDA_MAX_RANK: Tile views each axis as (repeat, dim). */
#define KILN_DATA_MAX_DIMS 16

/* dst (contiguous, dims[rank]) gets, at multi-index i, src[offset + sum_k i[k] * strides[k]]
 * (strides may be 0 or negative). Transpose, Slice, Expand, Tile, DepthToSpace. */
typedef struct kiln_data_strided {
    int rank;
    int64_t dims[KILN_DATA_MAX_DIMS];
    int64_t strides[KILN_DATA_MAX_DIMS];
    int64_t offset;
} kiln_data_strided;
KILN_CUDA_EXTERN cudaError_t kiln_data_strided_copy(void *dst, const void *src, int unit, const kiln_data_strided *v,
                                                    cudaStream_t stream);

/* A transpose that moves the innermost dim, through 32x32 tiles in shared memory: element
 * (b, y, x) goes from src[boff_in(b) + y * in_stride_y + x] to dst[boff_out(b) + x *
 * out_stride_x + y]; b runs over the batch dims (row-major, with their own strides). */
typedef struct kiln_data_tiled {
    int64_t nx, ny, in_stride_y, out_stride_x;
    int nb;
    int64_t bdims[KILN_DATA_MAX_DIMS], bin[KILN_DATA_MAX_DIMS], bout[KILN_DATA_MAX_DIMS];
} kiln_data_tiled;
KILN_CUDA_EXTERN cudaError_t kiln_data_tiled_transpose(void *dst, const void *src, int unit, const kiln_data_tiled *t,
                                                       cudaStream_t stream);

/* Up to KILN_DATA_ROWS_MAX copies of `rows` rows each: row r of item j, len[j] units long,
 * goes from src[j] + r * src_pitch[j] to dst[j] + r * dst_pitch[j] (Concat, Split). */
#define KILN_DATA_ROWS_MAX 16
typedef struct kiln_data_rows {
    int n;
    int64_t rows;
    const void *src[KILN_DATA_ROWS_MAX];
    void *dst[KILN_DATA_ROWS_MAX];
    int64_t len[KILN_DATA_ROWS_MAX], src_pitch[KILN_DATA_ROWS_MAX], dst_pitch[KILN_DATA_ROWS_MAX];
} kiln_data_rows;
KILN_CUDA_EXTERN cudaError_t kiln_data_copy_rows(int unit, const kiln_data_rows *r, cudaStream_t stream);

/* Pad and CenterCropPad: output coordinate o on axis k reads input coordinate
 * lo[k] + map(o - before[k]) within the kept part [lo, lo + kept), or the constant. */
enum { KILN_DATA_PAD_CONSTANT = 0, KILN_DATA_PAD_REFLECT, KILN_DATA_PAD_EDGE, KILN_DATA_PAD_WRAP };
typedef struct kiln_data_pad {
    int rank, mode;
    int64_t out_dims[KILN_CUDA_MAX_RANK], in_strides[KILN_CUDA_MAX_RANK];
    int64_t before[KILN_CUDA_MAX_RANK], lo[KILN_CUDA_MAX_RANK], kept[KILN_CUDA_MAX_RANK];
    uint64_t value; /* the constant's bytes (element size es) */
} kiln_data_pad;
KILN_CUDA_EXTERN cudaError_t kiln_data_pad_copy(void *dst, const void *src, int es, const kiln_data_pad *p, cudaStream_t stream);

/* Fills n elements of es bytes with the bytes of value. */
KILN_CUDA_EXTERN cudaError_t kiln_data_fill(void *dst, int es, int64_t n, uint64_t value, cudaStream_t stream);

/* EyeLike: a zeroed (rows, cols) matrix of es-byte elements with `one` at (i, i + k). */
KILN_CUDA_EXTERN cudaError_t kiln_data_eye(void *dst, int es, int64_t rows, int64_t cols, int64_t k, uint64_t one,
                                           cudaStream_t stream);

/* Trilu over a batch of (rows, cols) matrices: keeps j - i >= k (upper) or j - i <= k. */
KILN_CUDA_EXTERN cudaError_t kiln_data_trilu(void *dst, const void *src, int es, int64_t batch, int64_t rows, int64_t cols,
                                             int64_t k, int upper, cudaStream_t stream);

/* Range: dst[i] = start + i * delta, floats through double, integers in wrapping int64. */
KILN_CUDA_EXTERN cudaError_t kiln_data_range(void *dst, int ct, int64_t n, double fstart, double fdelta, int64_t istart,
                                             int64_t idelta, cudaStream_t stream);

/* OneHot: dst (outer, depth, inner) of es-byte elements is on_value where the index
 * (ind_ct element o * inner + i, negative ones wrapped by depth) equals d, else off_value. */
KILN_CUDA_EXTERN cudaError_t kiln_data_one_hot(void *dst, const void *ind, int ind_ct, int es, int64_t outer, int64_t depth,
                                               int64_t inner, uint64_t off_value, uint64_t on_value, cudaStream_t stream);

/* ---- indexing (data_index.cu); index tensors are int32 (idx64 = 0) or int64 ---- */

/* Gather: dst (outer, n, inner) from src (outer, dim, inner) at index[i] along dim. */
KILN_CUDA_EXTERN cudaError_t kiln_data_gather(void *dst, const void *src, const void *index, int idx64, int unit,
                                              int64_t outer, int64_t dim, int64_t n, int64_t inner, cudaStream_t stream);

/* GatherElements / ScatterElements geometry: the index tensor's dims and contiguous strides,
 * the data tensor's strides and the axis. */
typedef struct kiln_data_elements {
    int rank, axis;
    int64_t idims[KILN_CUDA_MAX_RANK], xstrides[KILN_CUDA_MAX_RANK];
    int64_t axis_dim; /* data's size along axis (indices wrap by it) */
} kiln_data_elements;
KILN_CUDA_EXTERN cudaError_t kiln_data_gather_elements(void *dst, const void *src, const void *index, int idx64, int es,
                                                       const kiln_data_elements *g, cudaStream_t stream);

/* GatherND / ScatterND geometry: m index components address dims[b .. b + m) of data (b =
 * batch_dims, 0 for ScatterND); each index tuple selects a slice of `slice` units. */
typedef struct kiln_data_nd {
    int m;
    int64_t batches, per_batch, slice, data_batch; /* data_batch: units of data per batch */
    int64_t dims[KILN_CUDA_MAX_RANK], strides[KILN_CUDA_MAX_RANK]; /* of the m addressed dims */
} kiln_data_nd;
KILN_CUDA_EXTERN cudaError_t kiln_data_gather_nd(void *dst, const void *src, const void *index, int idx64, int unit,
                                                 const kiln_data_nd *g, cudaStream_t stream);

enum { KILN_DATA_RED_NONE = 0, KILN_DATA_RED_ADD, KILN_DATA_RED_MUL, KILN_DATA_RED_MAX, KILN_DATA_RED_MIN };

/* ScatterElements on dst (a copy of data): the updates along each line of the axis are
 * applied in index order by one thread, so repeated indices give the reference's result. */
KILN_CUDA_EXTERN cudaError_t kiln_data_scatter_elements(void *dst, const void *upd, const void *index, int idx64, int ct,
                                                        int reduction, const kiln_data_elements *g, cudaStream_t stream);

/* ScatterND on dst (a copy of data). Reductions combine with atomics. Without one, `winner`
 * (scratch of dst's slice positions, int32, zeroed here) makes the last update of repeated
 * indices win, as in the reference; winner NULL lets any of them win. */
KILN_CUDA_EXTERN cudaError_t kiln_data_scatter_nd(void *dst, const void *upd, const void *index, int idx64, int ct,
                                                  int reduction, const kiln_data_nd *g, int64_t n_tuples, int *winner,
                                                  int64_t positions, cudaStream_t stream);

/* TensorScatter: dst (outer, max_len, inner) gets upd (outer, len, inner) at rows
 * write_index[o / per_batch] + s (mod max_len when circular; others skipped). */
KILN_CUDA_EXTERN cudaError_t kiln_data_tensor_scatter(void *dst, const void *upd, const int64_t *write_index, int unit,
                                                      int64_t outer, int64_t per_batch, int64_t max_len, int64_t len,
                                                      int64_t inner, int circular, cudaStream_t stream);

/* ---- pools (data_pool.cu) ---- */

enum { KILN_DATA_POOL_MAX = 0, KILN_DATA_POOL_AVG, KILN_DATA_POOL_LP };
#define KILN_DATA_POOL_MAX_SP 3
typedef struct kiln_data_pool {
    int kind, nsp;
    int count_include_pad, column_major;
    float p; /* LpPool */
    int64_t planes;
    int64_t in[KILN_DATA_POOL_MAX_SP], out[KILN_DATA_POOL_MAX_SP];
    int64_t kernel[KILN_DATA_POOL_MAX_SP], strides[KILN_DATA_POOL_MAX_SP], dilations[KILN_DATA_POOL_MAX_SP];
    int64_t pad_begin[KILN_DATA_POOL_MAX_SP], pad_end[KILN_DATA_POOL_MAX_SP];
} kiln_data_pool;
/* indices: int64 Indices output of MaxPool, or NULL. */
KILN_CUDA_EXTERN cudaError_t kiln_data_pool_window(void *dst, int64_t *indices, const void *src, int ct, const kiln_data_pool *p,
                                            cudaStream_t stream);
/* Global pools over planes of `size` elements. */
KILN_CUDA_EXTERN cudaError_t kiln_data_global_pool(void *dst, const void *src, int ct, int kind, float p, int64_t planes,
                                                   int64_t size, cudaStream_t stream);

/* ---- Resize (data_resize.cu) ---- */

enum { KILN_DATA_RESIZE_NEAREST = 0, KILN_DATA_RESIZE_LINEAR, KILN_DATA_RESIZE_CUBIC };
/* Same numbering as kiln_resize_coord and kiln_resize_nearest (src/ops/nn_internal.h). */
typedef struct kiln_data_resize_axis {
    int axis;                  /* which dim of the tensor */
    int64_t in_w, out_w;
    double scale, roi0, roi1;
} kiln_data_resize_axis;
typedef struct kiln_data_resize {
    int mode, coord, nearest, antialias, exclude_outside;
    double cubic_a, extrapolation;
    int rank;
    int64_t in_dims[KILN_CUDA_MAX_RANK], out_dims[KILN_CUDA_MAX_RANK];
    int n_axes;                /* the resized axes, in increasing order */
    kiln_data_resize_axis ax[KILN_CUDA_MAX_RANK];
} kiln_data_resize;
/* Nearest: a gather of es-byte elements (every dtype); ext holds the bytes of the
 * extrapolation value in the tensor's dtype (tf_crop_and_resize). */
KILN_CUDA_EXTERN cudaError_t kiln_data_resize_nearest(void *dst, const void *src, int es, uint64_t ext,
                                                      const kiln_data_resize *p, cudaStream_t stream);
/* Linear / cubic resize of the axes in p from src (in_ct) to dst (out_ct): in_ct / out_ct is
 * the tensor's type or KILN_CT_F32 / KILN_CT_F64 (the accumulator, for separable passes
 * through scratch memory). */
KILN_CUDA_EXTERN cudaError_t kiln_data_resize_interp(void *dst, int out_ct, const void *src, int in_ct,
                                                     const kiln_data_resize *p, cudaStream_t stream);
/* The common case, one axis or two adjacent axes of at most 4 taps (NCHW / NCW / NHWC
 * upsampling): scratch bytes it needs for its tap tables, 0 when p is not such a case. */
KILN_CUDA_EXTERN size_t kiln_data_resize_2d_scratch(const kiln_data_resize *p);
/* Runs that case: nearest moves es-byte elements (ext: the extrapolation value's bytes),
 * linear / cubic compute in element type ct. scratch: kiln_data_resize_2d_scratch(p) bytes. */
KILN_CUDA_EXTERN cudaError_t kiln_data_resize_2d(void *dst, const void *src, int ct, int es, uint64_t ext,
                                                 const kiln_data_resize *p, void *scratch, cudaStream_t stream);
/* The number of taps an axis uses (for choosing fused or separable). */
KILN_CUDA_EXTERN int kiln_data_resize_taps(const kiln_data_resize *p, const kiln_data_resize_axis *a);

/* ---- RoiAlign (data_resize.cu) ---- */
typedef struct kiln_data_roi_align {
    int max_mode, half_pixel;
    int64_t n, c, h, w, rois, out_h, out_w, sampling_ratio;
    double spatial_scale;
} kiln_data_roi_align;
KILN_CUDA_EXTERN cudaError_t kiln_data_roi_align_bins(void *dst, const void *x, const void *rois, const void *batch_index,
                                                 int idx64, int ct, const kiln_data_roi_align *p, cudaStream_t stream);

#endif /* KILN_CUDA_KERNELS_DATA_H */
