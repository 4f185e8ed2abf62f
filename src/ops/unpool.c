/* unpool.c — parse and shape inference of MaxUnpool
 * (https://onnx.ai/onnx/operators/onnx__MaxUnpool.html): X (N, C, D1..Dn) and I (int64, shape of
 * X, flat indices as MaxPool returns them) -> Y of the "unpooled" shape
 * (in - 1) * stride + kernel - pads, or of the optional output_shape input. The kernel is
 * src/backends/ref/unpool.c. Tested by test_maxunpool*. */
#include "nn_internal.h"

kiln_status kiln_parse_unpool(kiln_node *node, kiln_attrs *attrs) {
    kiln_pool_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    KILN_TRY(kiln_nn_parse_window(node, attrs, &p->w, false));
    if (p->w.n_kernel == 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute kernel_shape is required");
    return KILN_STATUS_OK;
}

kiln_status kiln_unpool_shape(const kiln_node *node, const kiln_tensor *x, int64_t *dims) {
    const kiln_pool_params *p = node->params;
    int nsp = x->rank - 2;
    char s1[160];
    if (nsp < 1 || p->w.n_kernel != nsp || (p->w.n_strides && p->w.n_strides != nsp) ||
        (p->w.n_pads && p->w.n_pads != 2 * nsp))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "X %s does not fit kernel_shape/strides/pads of %d/%d/%d values",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1), p->w.n_kernel, p->w.n_strides,
                               p->w.n_pads);
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    for (int i = 0; i < nsp; i++) {
        int64_t in = x->dims[2 + i], s = p->w.n_strides ? p->w.strides[i] : 1;
        int64_t pads = p->w.n_pads ? p->w.pads[i] + p->w.pads[nsp + i] : 0;
        dims[2 + i] = in < 0 ? KILN_DIM_UNKNOWN : (in - 1) * s + p->w.kernel[i] - pads;
        if (in >= 0 && dims[2 + i] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "pads exceed the output of X %s",
                                   kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_unpool(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 2, 3));
    const kiln_tensor *x = in[0], *ind = in[1], *shape = node->n_declared > 2 ? in[2] : NULL;
    if (!kiln_nn_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (ind->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 1, ind->dtype);
    if (shape && shape->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 2, shape->dtype);
    out[0].dtype = x->dtype;
    if (x->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char s1[160], s2[160];
    if (ind->rank >= 0) {
        bool bad = ind->rank != x->rank;
        for (int i = 0; !bad && i < x->rank; i++)
            bad = x->dims[i] >= 0 && ind->dims[i] >= 0 && x->dims[i] != ind->dims[i];
        if (bad)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "I %s must have the shape of X %s",
                                   kiln_dims_str(ind->rank, ind->dims, s1, sizeof s1),
                                   kiln_dims_str(x->rank, x->dims, s2, sizeof s2));
    }
    out[0].rank = x->rank;
    KILN_TRY(kiln_unpool_shape(node, x, out[0].dims));
    if (shape) {
        if (!shape->data || shape->rank != 1) {
            for (int i = 0; i < x->rank; i++) out[0].dims[i] = KILN_DIM_UNKNOWN;
            if (shape->rank == 1 && shape->dims[0] >= 0 && shape->dims[0] != x->rank)
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "output_shape has %lld values for X %s",
                                       (long long)shape->dims[0], kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
            return KILN_STATUS_OK;
        }
        if (shape->dims[0] != x->rank)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "output_shape has %lld values for X %s",
                                   (long long)shape->dims[0], kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
        for (int i = 0; i < x->rank; i++) {
            int64_t v = kiln_nn_get_i64(shape, i);
            if (v < 0)
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "output_shape[%d] = %lld is negative", i,
                                       (long long)v);
            out[0].dims[i] = v;
        }
    }
    return KILN_STATUS_OK;
}
