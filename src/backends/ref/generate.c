/* generate.c — reference kernels of Range, ConstantOfShape, EyeLike, OneHot and Trilu.
 * Range computes start + i * delta (in double for floats, exactly in int64 for integers);
 * OneHot leaves indices outside [-depth, depth) all "off". Shapes come from
 * src/ops/generate.c. Tested by test_range*, test_constantofshape*, test_eyelike*,
 * test_onehot*, test_tril*, test_triu*. */
#include "../../ops/shape_internal.h"

/* https://onnx.ai/onnx/operators/onnx__Range.html */
static kiln_status range(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_dtype t = in[0]->dtype;
    int64_t n = out->dims[0];
    if (kiln_dtype_is_float(t)) {
        double s = kiln_load_f64(t, in[0]->data, 0), d = kiln_load_f64(t, in[2]->data, 0);
        for (int64_t i = 0; i < n; i++) kiln_store_f64(t, out->data, i, s + (double)i * d);
    } else {
        uint64_t s = (uint64_t)kiln_load_i64(t, in[0]->data, 0), d = (uint64_t)kiln_load_i64(t, in[2]->data, 0);
        for (int64_t i = 0; i < n; i++) kiln_store_i64(t, out->data, i, (int64_t)(s + (uint64_t)i * d));
    }
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__OneHot.html */
static kiln_status one_hot(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    const kiln_tensor *ind = in[0], *values = in[2];
    int r = out->rank, axis = (int)(p->axis < 0 ? p->axis + r : p->axis);
    int64_t depth = out->dims[axis];
    int64_t outer = kiln_shape_prod(out->dims, 0, axis), inner = kiln_shape_prod(out->dims, axis + 1, r);
    size_t es = kiln_dtype_size(values->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t v = kiln_load_i64(ind->dtype, ind->data, o * inner + i);
            if (v < 0) v += depth;
            for (int64_t d = 0; d < depth; d++)
                kiln_shape_copy_elem(out->data, (o * depth + d) * inner + i, values->data, v == d ? 1 : 0, es);
        }
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_generate(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    int64_t n = kiln_shape_count(out->rank, out->dims);
    switch (node->op) {
    case KILN_OP_Range: return range(node, in, out);
    case KILN_OP_OneHot: return one_hot(node, in, out);
    case KILN_OP_ConstantOfShape: { /* https://onnx.ai/onnx/operators/onnx__ConstantOfShape.html */
        const kiln_const_params *p = node->params;
        for (int64_t i = 0; i < n; i++) kiln_shape_copy_elem(out->data, i, p->value, 0, kiln_dtype_size(p->dtype));
        return KILN_STATUS_OK;
    }
    case KILN_OP_EyeLike: { /* https://onnx.ai/onnx/operators/onnx__EyeLike.html */
        const kiln_eyelike_params *p = node->params;
        int64_t rows = out->dims[0], cols = out->dims[1];
        memset(out->data, 0, (size_t)n * kiln_dtype_size(out->dtype));
        for (int64_t i = 0; i < rows; i++) {
            int64_t j = i + p->k;
            if (j >= 0 && j < cols) kiln_store_i64(out->dtype, out->data, i * cols + j, 1);
        }
        return KILN_STATUS_OK;
    }
    default: { /* Trilu, https://onnx.ai/onnx/operators/onnx__Trilu.html */
        const kiln_trilu_params *p = node->params;
        const kiln_tensor *x = in[0], *kt = node->n_declared > 1 ? in[1] : NULL;
        int64_t k = kt ? kiln_load_i64(kt->dtype, kt->data, 0) : 0;
        int64_t rows = x->dims[x->rank - 2], cols = x->dims[x->rank - 1];
        size_t es = kiln_dtype_size(x->dtype);
        memset(out->data, 0, (size_t)n * es);
        for (int64_t e = 0; e < n; e++) {
            int64_t i = e / cols % rows, j = e % cols;
            if (p->upper ? j - i >= k : j - i <= k) kiln_shape_copy_elem(out->data, e, x->data, e, es);
        }
        return KILN_STATUS_OK;
    }
    }
}
