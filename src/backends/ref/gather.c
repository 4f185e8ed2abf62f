/* gather.c — reference kernels of Gather, GatherElements and GatherND. Every index value is
 * wrapped (negative counts from the end) and range-checked: RUNTIME_ERROR names the index and
 * the bound. Shapes come from src/ops/gather.c. Tested by test_gather*. */
#include "../../ops/shape_internal.h"

/* https://onnx.ai/onnx/operators/onnx__Gather.html */
static kiln_status gather(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *ind, kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    int axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
    size_t es = kiln_dtype_size(x->dtype);
    int64_t outer = kiln_shape_prod(x->dims, 0, axis), inner = kiln_shape_prod(x->dims, axis + 1, x->rank);
    int64_t dim = x->dims[axis], n = kiln_shape_count(ind->rank, ind->dims);
    size_t chunk = (size_t)inner * es;
    for (int64_t i = 0; i < n; i++) {
        int64_t j;
        KILN_TRY(kiln_shape_index(node, ind, i, dim, &j));
        for (int64_t o = 0; o < outer && chunk; o++)
            memcpy((char *)out->data + (size_t)(o * n + i) * chunk, (const char *)x->data + (size_t)(o * dim + j) * chunk, chunk);
    }
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__GatherElements.html */
static kiln_status gather_elements(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *ind, kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    int r = x->rank, axis = (int)(p->axis < 0 ? p->axis + r : p->axis);
    size_t es = kiln_dtype_size(x->dtype);
    int64_t strides[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    kiln_contiguous_strides(r, x->dims, strides);
    int64_t n = kiln_shape_count(ind->rank, ind->dims);
    for (int64_t i = 0; i < n; i++, kiln_shape_next_index(r, ind->dims, idx)) {
        int64_t j, off = 0;
        KILN_TRY(kiln_shape_index(node, ind, i, x->dims[axis], &j));
        for (int k = 0; k < r; k++) off += (k == axis ? j : idx[k]) * strides[k];
        kiln_shape_copy_elem(out->data, i, x->data, off, es);
    }
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__GatherND.html */
static kiln_status gather_nd(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *ind, kiln_tensor *out) {
    const kiln_gathernd_params *p = node->params;
    int b = (int)p->batch_dims, q = ind->rank;
    int m = (int)ind->dims[q - 1];
    size_t es = kiln_dtype_size(x->dtype);
    int64_t strides[KILN_MAX_RANK];
    kiln_contiguous_strides(x->rank, x->dims, strides);
    int64_t batches = kiln_shape_prod(ind->dims, 0, b), per_batch = kiln_shape_prod(ind->dims, b, q - 1);
    int64_t slice = kiln_shape_prod(x->dims, b + m, x->rank), data_batch = kiln_shape_prod(x->dims, b, x->rank);
    for (int64_t bi = 0; bi < batches; bi++)
        for (int64_t ni = 0; ni < per_batch; ni++) {
            int64_t t = bi * per_batch + ni, off = bi * data_batch;
            for (int j = 0; j < m; j++) {
                int64_t v;
                KILN_TRY(kiln_shape_index(node, ind, t * m + j, x->dims[b + j], &v));
                off += v * strides[b + j];
            }
            if (slice)
                memcpy((char *)out->data + (size_t)(t * slice) * es, (const char *)x->data + (size_t)off * es, (size_t)slice * es);
        }
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_gather(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    switch (node->op) {
    case KILN_OP_Gather: return gather(node, in[0], in[1], out);
    case KILN_OP_GatherElements: return gather_elements(node, in[0], in[1], out);
    default: return gather_nd(node, in[0], in[1], out);
    }
}
