/* reorder.c — parse and shape inference of ReverseSequence (reverse the first seq_len[b]
 * steps of each batch entry) and Col2Im (sum column blocks back into an N-D image, the inverse
 * of im2col). Kernels: src/backends/ref/reorder.c.
 * Tested by the node tests test_reversesequence*, test_col2im*. */
#include "shape_internal.h"

static kiln_status parse_window_attr(kiln_node *node, kiln_attrs *attrs, const char *name, int64_t *v, int cap, int *n,
                                     int64_t min) {
    KILN_TRY(kiln_attr_ints_fixed(attrs, name, v, cap, n));
    for (int i = 0; i < *n; i++)
        if (v[i] < min)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute %s[%d] = %lld is not valid", name, i,
                                   (long long)v[i]);
    return KILN_STATUS_OK;
}

kiln_status kiln_parse_reorder(kiln_node *node, kiln_attrs *attrs) {
    if (node->op == KILN_OP_ReverseSequence) { /* https://onnx.ai/onnx/operators/onnx__ReverseSequence.html */
        KILN_TRY(kiln_node_check_arity(node, 2, 2));
        kiln_revseq_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        KILN_TRY(kiln_attr_int(attrs, "batch_axis", 1, &p->batch_axis));
        KILN_TRY(kiln_attr_int(attrs, "time_axis", 0, &p->time_axis));
        if ((p->batch_axis != 0 && p->batch_axis != 1) || (p->time_axis != 0 && p->time_axis != 1) ||
            p->batch_axis == p->time_axis)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "batch_axis = %lld and time_axis = %lld should be 0 and 1",
                                   (long long)p->batch_axis, (long long)p->time_axis);
        return KILN_STATUS_OK;
    }
    /* https://onnx.ai/onnx/operators/onnx__Col2Im.html */
    KILN_TRY(kiln_node_check_arity(node, 3, 3));
    kiln_col2im_params *p;
    KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
    KILN_TRY(parse_window_attr(node, attrs, "strides", p->strides, KILN_COL2IM_MAX_SP, &p->n_strides, 1));
    KILN_TRY(parse_window_attr(node, attrs, "dilations", p->dilations, KILN_COL2IM_MAX_SP, &p->n_dilations, 1));
    return parse_window_attr(node, attrs, "pads", p->pads, 2 * KILN_COL2IM_MAX_SP, &p->n_pads, 0);
}

/* https://onnx.ai/onnx/operators/onnx__ReverseSequence.html */
static kiln_status infer_reverse_sequence(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_revseq_params *p = node->params;
    const kiln_tensor *x = in[0], *lens = in[1];
    if (!lens) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 'sequence_lens' is missing");
    if (lens->dtype != KILN_DTYPE_I64 && lens->dtype != KILN_DTYPE_UNDEFINED) return kiln_node_bad_dtype(node, 1, lens->dtype);
    kiln_shape_same_type(out, x);
    if (x->rank < 0) return KILN_STATUS_OK;
    if (x->rank < 2) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input should have rank 2 or more, it has %d", x->rank);
    int64_t b = x->dims[p->batch_axis];
    if (lens->rank >= 0 && (lens->rank != 1 || (b >= 0 && lens->dims[0] >= 0 && lens->dims[0] != b)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "sequence_lens should have shape [%lld]", (long long)b);
    return KILN_STATUS_OK;
}

/* Col2Im: the image and block shapes (n spatial dims) from the inputs' values; false in
 * *known while either has none. */
kiln_status kiln_col2im_shapes(const kiln_node *node, kiln_tensor *const *in, int64_t *image, int64_t *block, int *n,
                               bool *known) {
    *known = false;
    *n = -1;
    for (int i = 1; i < 3; i++) {
        if (!in[i]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input %d is missing", i);
        if (in[i]->dtype != KILN_DTYPE_I64 && in[i]->dtype != KILN_DTYPE_UNDEFINED) return kiln_node_bad_dtype(node, i, in[i]->dtype);
    }
    if (in[1]->rank == 1 && in[1]->dims[0] >= 0) *n = (int)(in[1]->dims[0] <= KILN_COL2IM_MAX_SP ? in[1]->dims[0] : -1);
    if (!kiln_shape_has_data(in[1]) || !kiln_shape_has_data(in[2])) return KILN_STATUS_OK;
    int m;
    KILN_TRY(kiln_shape_read_ints(node, in[1], "image_shape", image, KILN_COL2IM_MAX_SP, n));
    KILN_TRY(kiln_shape_read_ints(node, in[2], "block_shape", block, KILN_COL2IM_MAX_SP, &m));
    if (m != *n || *n < 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "image_shape and block_shape have %d and %d values", *n, m);
    for (int i = 0; i < *n; i++)
        if (image[i] < 1 || block[i] < 1)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "image_shape[%d] = %lld or block_shape[%d] = %lld is not positive",
                                   i, (long long)image[i], i, (long long)block[i]);
    *known = true;
    return KILN_STATUS_OK;
}

/* Col2Im: the number of block positions along spatial dim i. */
int64_t kiln_col2im_blocks(const kiln_col2im_params *p, int n, int i, int64_t image, int64_t block) {
    int64_t s = p->n_strides ? p->strides[i] : 1, d = p->n_dilations ? p->dilations[i] : 1;
    int64_t pads = p->n_pads ? p->pads[i] + p->pads[n + i] : 0;
    int64_t span = image + pads - (d * (block - 1) + 1);
    return span < 0 ? 0 : span / s + 1;
}

/* https://onnx.ai/onnx/operators/onnx__Col2Im.html */
static kiln_status infer_col2im(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_col2im_params *p = node->params;
    const kiln_tensor *x = in[0];
    int64_t image[KILN_COL2IM_MAX_SP], block[KILN_COL2IM_MAX_SP];
    int n;
    bool known;
    out->dtype = x->dtype;
    KILN_TRY(kiln_col2im_shapes(node, in, image, block, &n, &known));
    if (n < 0) return KILN_STATUS_OK;
    kiln_shape_unknown_dims(out, x->dtype, n + 2);
    if ((p->n_strides && p->n_strides != n) || (p->n_dilations && p->n_dilations != n) || (p->n_pads && p->n_pads != 2 * n))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "strides, dilations or pads do not have %d spatial values", n);
    if (x->rank >= 0 && x->rank != 3)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input should be 3-D (N, C * prod(block), L), it has rank %d",
                               x->rank);
    if (x->rank == 3) out->dims[0] = x->dims[0];
    if (!known) return KILN_STATUS_OK;
    int64_t kernel = 1, blocks = 1;
    for (int i = 0; i < n; i++) {
        out->dims[2 + i] = image[i];
        if (__builtin_mul_overflow(kernel, block[i], &kernel) ||
            __builtin_mul_overflow(blocks, kiln_col2im_blocks(p, n, i, image[i], block[i]), &blocks))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "block_shape or image_shape is too large");
    }
    if (x->rank < 0) return KILN_STATUS_OK;
    char s[160];
    kiln_dims_str(x->rank, x->dims, s, sizeof s);
    if (x->dims[1] >= 0) {
        if (x->dims[1] % kernel != 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %s: dim 1 is not a multiple of prod(block_shape) = %lld",
                                   s, (long long)kernel);
        out->dims[1] = x->dims[1] / kernel;
    }
    if (x->dims[2] >= 0 && x->dims[2] != blocks)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %s: dim 2 should be the %lld block positions", s,
                               (long long)blocks);
    return kiln_shape_check_size(node, out);
}

kiln_status kiln_infer_reorder(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (!in[0]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
    if (node->op == KILN_OP_ReverseSequence) {
        KILN_TRY(kiln_shape_check_dtype(node, 0, in[0]->dtype));
        return infer_reverse_sequence(node, in, out);
    }
    if (in[0]->dtype != KILN_DTYPE_UNDEFINED && (in[0]->dtype == KILN_DTYPE_BOOL || kiln_dtype_size(in[0]->dtype) == 0))
        return kiln_node_bad_dtype(node, 0, in[0]->dtype);
    return infer_col2im(node, in, out);
}
