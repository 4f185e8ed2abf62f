/* reorder.c — reference kernels of ReverseSequence and Col2Im. Col2Im sums every column entry
 * into its image position (floats accumulated in double, integers in int64). Shapes come
 * from src/ops/reorder.c. Tested by test_reversesequence*, test_col2im*. */
#include "../../ops/shape_internal.h"

/* https://onnx.ai/onnx/operators/onnx__ReverseSequence.html */
static kiln_status reverse_sequence(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_revseq_params *p = node->params;
    const kiln_tensor *x = in[0], *lens = in[1];
    int r = x->rank, ba = (int)p->batch_axis, ta = (int)p->time_axis;
    int64_t steps = x->dims[ta], strides[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    for (int64_t b = 0; b < x->dims[ba]; b++) {
        int64_t len = ((const int64_t *)lens->data)[b];
        if (len < 0 || len > steps)
            return kiln_node_error(node, KILN_STATUS_RUNTIME_ERROR, "sequence_lens[%lld] = %lld is out of range [0, %lld]",
                                   (long long)b, (long long)len, (long long)steps);
    }
    kiln_contiguous_strides(r, x->dims, strides);
    size_t es = kiln_dtype_size(x->dtype);
    int64_t n = kiln_shape_count(r, x->dims);
    for (int64_t i = 0; i < n; i++, kiln_shape_next_index(r, x->dims, idx)) {
        int64_t len = ((const int64_t *)lens->data)[idx[ba]], t = idx[ta];
        int64_t src = t < len ? i + (len - 1 - 2 * t) * strides[ta] : i;
        kiln_shape_copy_elem(out->data, i, x->data, src, es);
    }
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Col2Im.html */
static kiln_status col2im(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_col2im_params *p = node->params;
    const kiln_tensor *x = in[0];
    int64_t image[KILN_COL2IM_MAX_SP], block[KILN_COL2IM_MAX_SP], grid[KILN_COL2IM_MAX_SP];
    int n;
    bool known;
    KILN_TRY(kiln_col2im_shapes(node, in, image, block, &n, &known));
    int64_t kernel = kiln_shape_count(n, block), pixels = kiln_shape_count(n, image);
    for (int i = 0; i < n; i++) grid[i] = kiln_col2im_blocks(p, n, i, image[i], block[i]);
    int64_t positions = kiln_shape_count(n, grid), planes = out->dims[0] * out->dims[1], total = planes * pixels;
    bool is_float = kiln_dtype_is_float(x->dtype);
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(total + 1, sizeof(double), &bytes));
    void *acc = kiln_calloc(1, bytes); /* double or int64 per output element */
    if (!acc) return kiln_node_error(node, KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    double *accf = acc;
    int64_t *acci = acc;
    for (int64_t pl = 0; pl < planes; pl++) {
        int64_t kidx[KILN_COL2IM_MAX_SP] = {0};
        for (int64_t k = 0; k < kernel; k++, kiln_shape_next_index(n, block, kidx)) {
            int64_t lidx[KILN_COL2IM_MAX_SP] = {0};
            for (int64_t l = 0; l < positions; l++, kiln_shape_next_index(n, grid, lidx)) {
                int64_t at = 0;
                bool inside = true;
                for (int i = 0; i < n && inside; i++) {
                    int64_t s = p->n_strides ? p->strides[i] : 1, d = p->n_dilations ? p->dilations[i] : 1;
                    int64_t pos = lidx[i] * s - (p->n_pads ? p->pads[i] : 0) + kidx[i] * d;
                    inside = pos >= 0 && pos < image[i];
                    at = at * image[i] + pos;
                }
                if (!inside) continue;
                int64_t src = (pl * kernel + k) * positions + l, dst = pl * pixels + at;
                if (is_float) accf[dst] += kiln_load_f64(x->dtype, x->data, src);
                else acci[dst] += kiln_load_i64(x->dtype, x->data, src);
            }
        }
    }
    for (int64_t i = 0; i < total; i++) {
        if (is_float) kiln_store_f64(out->dtype, out->data, i, accf[i]);
        else kiln_store_i64(out->dtype, out->data, i, acci[i]);
    }
    free(acc);
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_reorder(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (node->op == KILN_OP_ReverseSequence) return reverse_sequence(node, in, out);
    return col2im(node, in, out);
}
