/* shape_internal.h — what the shape group's files share: the typed parameter structs of the
 * data-movement ops (reshape, transpose, concat/split, slice, gather, scatter, expand/tile,
 * pad, generators, nonzero/compress/unique, ...), dtype checks, reading shape-like inputs, and
 * the strided copy that Transpose, Slice, Expand and DepthToSpace reduce to.
 * Private to src/ops/{shape_common,reshape,transpose,...}.c and their src/backends/ref/ twins.
 * Tested through the ONNX node tests of those ops (tests/conformance). */
#ifndef KILN_OPS_SHAPE_INTERNAL_H
#define KILN_OPS_SHAPE_INTERNAL_H

#include "op.h"

#include <string.h>

/* ---- parameter structs, one per op that has attributes ---- */

typedef struct kiln_reshape_params {
    bool allowzero;        /* Reshape-14: a 0 in shape means size 0, not "copy the input dim" */
} kiln_reshape_params;

typedef struct kiln_flatten_params {
    int64_t axis;          /* in [-r, r] */
} kiln_flatten_params;

typedef struct kiln_axes_params {  /* Squeeze / Unsqueeze before opset 13 */
    bool from_input;       /* opset >= 13: axes come from input 1 */
    int n_axes;            /* -1: absent (Squeeze: all dims of size 1) */
    int64_t axes[KILN_MAX_RANK];
} kiln_axes_params;

typedef struct kiln_transpose_params {
    int n_perm;            /* 0: reverse the dims */
    int64_t perm[KILN_MAX_RANK];
} kiln_transpose_params;

typedef struct kiln_d2s_params {   /* DepthToSpace / SpaceToDepth */
    int64_t blocksize;
    bool crd;              /* mode CRD (column-row-depth); else DCR */
} kiln_d2s_params;

typedef struct kiln_axis_params {  /* Concat, Gather, GatherElements, Compress, ... */
    int64_t axis;
    bool has_axis;         /* Compress: no axis means flatten */
} kiln_axis_params;

typedef struct kiln_split_params {
    int64_t axis;
    int64_t num_outputs;   /* opset 18; 0 when absent */
    int n_split;           /* split attribute (before opset 13); -1 when absent */
    int64_t *split;        /* owned */
} kiln_split_params;

typedef struct kiln_slice_params { /* Slice before opset 10: everything is an attribute */
    bool from_inputs;
    int n;                 /* number of sliced axes */
    int64_t starts[KILN_MAX_RANK], ends[KILN_MAX_RANK], axes[KILN_MAX_RANK];
    bool has_axes;
} kiln_slice_params;

typedef enum kiln_scatter_reduction {
    KILN_SCATTER_NONE = 0, KILN_SCATTER_ADD, KILN_SCATTER_MUL, KILN_SCATTER_MAX, KILN_SCATTER_MIN
} kiln_scatter_reduction;

typedef struct kiln_scatter_params { /* ScatterElements, Scatter, ScatterND, TensorScatter */
    int64_t axis;
    kiln_scatter_reduction reduction;
    bool circular;         /* TensorScatter mode */
} kiln_scatter_params;

typedef struct kiln_gathernd_params {
    int64_t batch_dims;
} kiln_gathernd_params;

typedef struct kiln_shape_params {   /* Shape-15 */
    int64_t start, end;    /* end = INT64_MAX when absent */
} kiln_shape_params;

typedef struct kiln_const_params {   /* ConstantOfShape */
    kiln_dtype dtype;
    uint8_t value[8];      /* one element of dtype */
} kiln_const_params;

typedef struct kiln_eyelike_params {
    kiln_dtype dtype;      /* UNDEFINED: the input's dtype */
    int64_t k;
} kiln_eyelike_params;

typedef enum kiln_pad_mode {
    KILN_PAD_CONSTANT = 0, KILN_PAD_REFLECT, KILN_PAD_EDGE, KILN_PAD_WRAP
} kiln_pad_mode;

typedef struct kiln_pad_params {
    kiln_pad_mode mode;
    bool from_inputs;      /* opset >= 11: pads (and value, axes) are inputs */
    int n_pads;            /* before opset 11: the pads attribute */
    int64_t pads[2 * KILN_MAX_RANK];
    float value;           /* before opset 11: the value attribute */
} kiln_pad_params;

typedef struct kiln_crop_params {    /* CenterCropPad */
    int n_axes;            /* -1: all axes */
    int64_t axes[KILN_MAX_RANK];
} kiln_crop_params;

typedef struct kiln_trilu_params {
    bool upper;
} kiln_trilu_params;

typedef struct kiln_revseq_params {
    int64_t batch_axis, time_axis;
} kiln_revseq_params;

typedef struct kiln_unique_params {
    bool has_axis;
    int64_t axis;
    bool sorted;
} kiln_unique_params;

#define KILN_COL2IM_MAX_SP (KILN_MAX_RANK - 2)
typedef struct kiln_col2im_params {
    int n_strides, n_pads, n_dilations;
    int64_t strides[KILN_COL2IM_MAX_SP], dilations[KILN_COL2IM_MAX_SP];
    int64_t pads[2 * KILN_COL2IM_MAX_SP];
} kiln_col2im_params;

/* ---- helpers (shape_common.c) ---- */

/* Allocates node->params of the given size, zeroed; OUT_OF_MEMORY naming the node. */
kiln_status kiln_shape_new_params(kiln_node *node, size_t size, void **out);

/* Data-movement ops accept every dtype kiln stores; UNSUPPORTED for others (strings).
 * UNDEFINED (type not known at import) passes. */
kiln_status kiln_shape_check_dtype(const kiln_node *node, int input, kiln_dtype t);
/* Index inputs: int32 or int64 (UNDEFINED passes). */
kiln_status kiln_shape_check_index(const kiln_node *node, int input, kiln_dtype t);

/* True when t is present and its values are known (a tensor without elements always is, even
 * where its data pointer is NULL). */
static inline bool kiln_shape_has_data(const kiln_tensor *t) {
    return t && t->rank >= 0 && (t->data || kiln_shape_count(t->rank, t->dims) == 0);
}

/* Reads the values of a 0-D or 1-D integer tensor with data into out[cap]; what names the
 * input in messages ("shape", "axes"). UNSUPPORTED when it has more than cap values (cap is
 * KILN_MAX_RANK or twice it: more would describe a tensor kiln cannot hold). */
kiln_status kiln_shape_read_ints(const kiln_node *node, const kiln_tensor *t, const char *what,
                                 int64_t *out, int cap, int *n);

/* out gets dtype and rank with every dim unknown (rank < 0: rank unknown too). */
static inline void kiln_shape_unknown_dims(kiln_tensor *out, kiln_dtype dtype, int rank) {
    out->dtype = dtype;
    out->rank = rank;
    for (int i = 0; i < rank; i++) out->dims[i] = KILN_DIM_UNKNOWN;
}

/* dst gets src's dtype and shape (not its data). */
static inline void kiln_shape_same_type(kiln_tensor *dst, const kiln_tensor *src) {
    dst->dtype = src->dtype;
    dst->rank = src->rank;
    for (int i = 0; i < src->rank && i < KILN_MAX_RANK; i++) dst->dims[i] = src->dims[i];
}

/* Product of dims[lo..hi), or KILN_DIM_UNKNOWN when one is not known. */
static inline int64_t kiln_shape_prod(const int64_t *dims, int lo, int hi) {
    return kiln_shape_count(hi - lo, dims + lo);
}

/* INVALID_ARGUMENT naming the node when a fully known output shape would hold more than
 * kiln's tensor size limit (sizes computed from input values). */
kiln_status kiln_shape_check_size(const kiln_node *node, const kiln_tensor *out);

/* Normalises n axes into [0, rank) and checks they are distinct; what names them. */
kiln_status kiln_shape_norm_axes(const kiln_node *node, const int64_t *axes, int n, int rank,
                                 const char *what, int *out);

/* Advances the row-major multi-index idx over dims; false after the last one. */
static inline bool kiln_shape_next_index(int rank, const int64_t *dims, int64_t *idx) {
    for (int k = rank - 1; k >= 0; k--) {
        if (++idx[k] < dims[k]) return true;
        idx[k] = 0;
    }
    return false;
}

/* Copies element si of src into element di of dst (elements of es bytes). */
static inline void kiln_shape_copy_elem(void *dst, int64_t di, const void *src, int64_t si, size_t es) {
    memcpy((char *)dst + (size_t)di * es, (const char *)src + (size_t)si * es, es);
}

/* dst (contiguous, shape dims[rank]) gets, at multi-index i, the element of src at
 * offset + sum_k i[k] * strides[k] (strides in elements, may be 0 or negative). The one loop
 * behind Transpose, Slice, Expand, DepthToSpace, SpaceToDepth. */
void kiln_shape_strided_copy(void *dst, const void *src, size_t es, int rank, const int64_t *dims,
                             int64_t offset, const int64_t *strides);

/* Reads index element i of an int32/int64 tensor, wraps negatives by bound and checks it is in
 * [0, bound); RUNTIME_ERROR naming the node, the index and the bound otherwise. */
kiln_status kiln_shape_index(const kiln_node *node, const kiln_tensor *indices, int64_t i,
                             int64_t bound, int64_t *out);

/* When out has no data yet (its shape depended on values), allocates it with this shape. */
kiln_status kiln_shape_alloc(const kiln_node *node, kiln_tensor *out, kiln_dtype dtype, int rank,
                             const int64_t *dims);

/* ---- shared between an op's infer and its kernel ---- */

/* Slice (src/ops/slice.c): with every input's values known, the first element read along each
 * axis of the input (start[r]), the step (step[r]) and the output dims. */
kiln_status kiln_slice_resolve(const kiln_node *node, kiln_tensor *const *in, int64_t *start, int64_t *step,
                               int64_t *dims);

/* Shape (src/ops/shape_of.c): the clamped [start, end) of the dims of an input of rank r. */
void kiln_shape_of_range(const kiln_node *node, int rank, int64_t *start, int64_t *end);

/* Range (src/ops/generate.c): the number of elements, from the three scalar inputs' values. */
kiln_status kiln_range_count(const kiln_node *node, kiln_tensor *const *in, int64_t *count);

/* Pad (src/ops/pad.c): the pads before (begin[r]) and after (end[r]) each axis, negative ones
 * cropping; *known is false while the pads or axes have no values. */
kiln_status kiln_pad_resolve(const kiln_node *node, kiln_tensor *const *in, int64_t *begin, int64_t *end, bool *known);

/* Compress (src/ops/select.c): the number of true values of the 1-D bool condition, checking
 * that none lies at or beyond dim (the size selected from). */
kiln_status kiln_compress_count(const kiln_node *node, const kiln_tensor *cond, int64_t dim, int64_t *count);

/* Col2Im (src/ops/reorder.c): image and block shapes from the inputs' values (*n spatial dims,
 * -1 when not known; *known false while the values are not), and the number of block
 * positions along spatial dim i. */
kiln_status kiln_col2im_shapes(const kiln_node *node, kiln_tensor *const *in, int64_t *image, int64_t *block, int *n,
                               bool *known);
int64_t kiln_col2im_blocks(const kiln_col2im_params *p, int n, int i, int64_t image, int64_t block);

#endif /* KILN_OPS_SHAPE_INTERNAL_H */
