/* scatter.c — reference kernels of ScatterElements/Scatter, ScatterND and TensorScatter: the
 * output starts as a copy of data, then each update is written (or combined by the reduction)
 * at its index, in index order. Index values wrap when negative and are range-checked
 * (RUNTIME_ERROR naming index and bound). Shapes come from src/ops/scatter.c.
 * Tested by test_scatter*, test_tensorscatter*. */
#include "../../ops/shape_internal.h"

#include <math.h>

/* dst[di] = dst[di] (reduction) src[si], in the dtype's own arithmetic: floats through double
 * (exact before the store's rounding), integers through int64 (uint64 compared unsigned). */
static void combine(kiln_dtype t, void *dst, int64_t di, const void *src, int64_t si, kiln_scatter_reduction r) {
    if (r == KILN_SCATTER_NONE) {
        kiln_shape_copy_elem(dst, di, src, si, kiln_dtype_size(t));
    } else if (kiln_dtype_is_float(t)) {
        double a = kiln_load_f64(t, dst, di), b = kiln_load_f64(t, src, si), v;
        switch (r) {
        case KILN_SCATTER_ADD: v = a + b; break;
        case KILN_SCATTER_MUL: v = a * b; break;
        case KILN_SCATTER_MAX: v = a > b || isnan(a) ? a : b; break;
        default: v = a < b || isnan(a) ? a : b; break;
        }
        kiln_store_f64(t, dst, di, v);
    } else {
        int64_t a = kiln_load_i64(t, dst, di), b = kiln_load_i64(t, src, si), v;
        bool u = t == KILN_DTYPE_U64;
        switch (r) {
        case KILN_SCATTER_ADD: v = (int64_t)((uint64_t)a + (uint64_t)b); break;
        case KILN_SCATTER_MUL: v = (int64_t)((uint64_t)a * (uint64_t)b); break;
        case KILN_SCATTER_MAX: v = (u ? (uint64_t)a > (uint64_t)b : a > b) ? a : b; break;
        default: v = (u ? (uint64_t)a < (uint64_t)b : a < b) ? a : b; break;
        }
        kiln_store_i64(t, dst, di, v);
    }
}

/* https://onnx.ai/onnx/operators/onnx__ScatterElements.html */
static kiln_status scatter_elements(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_scatter_params *p = node->params;
    const kiln_tensor *x = in[0], *ind = in[1], *upd = in[2];
    int r = x->rank, axis = (int)(p->axis < 0 ? p->axis + r : p->axis);
    int64_t strides[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    kiln_contiguous_strides(r, x->dims, strides);
    int64_t n = kiln_shape_count(ind->rank, ind->dims);
    for (int64_t i = 0; i < n; i++, kiln_shape_next_index(r, ind->dims, idx)) {
        int64_t j, off = 0;
        KILN_TRY(kiln_shape_index(node, ind, i, x->dims[axis], &j));
        for (int k = 0; k < r; k++) off += (k == axis ? j : idx[k]) * strides[k];
        combine(x->dtype, out->data, off, upd->data, i, p->reduction);
    }
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__ScatterND.html */
static kiln_status scatter_nd(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_scatter_params *p = node->params;
    const kiln_tensor *x = in[0], *ind = in[1], *upd = in[2];
    int q = ind->rank, m = (int)ind->dims[q - 1];
    int64_t strides[KILN_MAX_RANK];
    kiln_contiguous_strides(x->rank, x->dims, strides);
    int64_t n = kiln_shape_prod(ind->dims, 0, q - 1), slice = kiln_shape_prod(x->dims, m, x->rank);
    for (int64_t t = 0; t < n; t++) {
        int64_t off = 0;
        for (int j = 0; j < m; j++) {
            int64_t v;
            KILN_TRY(kiln_shape_index(node, ind, t * m + j, x->dims[j], &v));
            off += v * strides[j];
        }
        for (int64_t e = 0; e < slice; e++) combine(x->dtype, out->data, off + e, upd->data, t * slice + e, p->reduction);
    }
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__TensorScatter.html */
static kiln_status tensor_scatter(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_scatter_params *p = node->params;
    const kiln_tensor *past = in[0], *upd = in[1], *wi = node->n_declared > 2 ? in[2] : NULL;
    int r = past->rank, axis = (int)(p->axis < 0 ? p->axis + r : p->axis);
    size_t es = kiln_dtype_size(past->dtype);
    int64_t outer = kiln_shape_prod(past->dims, 0, axis), per_batch = kiln_shape_prod(past->dims, 1, axis);
    int64_t inner = kiln_shape_prod(past->dims, axis + 1, r), max_len = past->dims[axis], len = upd->dims[axis];
    size_t chunk = (size_t)inner * es;
    for (int64_t o = 0; o < outer && chunk; o++) {
        int64_t b = o / per_batch, w = wi ? ((const int64_t *)wi->data)[b] : 0;
        for (int64_t s = 0; s < len; s++) {
            int64_t c = w + s;
            if (p->circular) c = ((c % max_len) + max_len) % max_len;
            else if (c < 0 || c >= max_len)
                return kiln_node_error(node, KILN_STATUS_RUNTIME_ERROR,
                                       "write index %lld + %lld of batch %lld is out of range [0, %lld)", (long long)w,
                                       (long long)s, (long long)b, (long long)max_len);
            memcpy((char *)out->data + (size_t)(o * max_len + c) * chunk, (const char *)upd->data + (size_t)(o * len + s) * chunk,
                   chunk);
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_scatter(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t n = kiln_shape_count(x->rank, x->dims);
    if (n > 0) memcpy(out->data, x->data, (size_t)n * kiln_dtype_size(x->dtype));
    switch (node->op) {
    case KILN_OP_ScatterND: return scatter_nd(node, in, out);
    case KILN_OP_TensorScatter: return tensor_scatter(node, in, out);
    default: return scatter_elements(node, in, out);
    }
}
