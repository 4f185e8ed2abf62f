/* pool.c — parse and shape inference of the pools: MaxPool, AveragePool, LpPool
 * (https://onnx.ai/onnx/operators/onnx__MaxPool.html, onnx__AveragePool.html, onnx__LpPool.html)
 * over X (N, C, D1..Dn) with kernel_shape, strides, pads/auto_pad, dilations, ceil_mode, and
 * GlobalAveragePool / GlobalMaxPool / GlobalLpPool (every spatial dim reduced to 1).
 * MaxPool's optional second output Indices (int64) holds flat indices into X.
 * The kernels are in src/backends/ref/pool.c. Tested by test_maxpool*, test_averagepool*,
 * test_lppool*, test_global*pool*. */
#include "nn_internal.h"

static bool is_global(int op) {
    return op == KILN_OP_GlobalAveragePool || op == KILN_OP_GlobalMaxPool || op == KILN_OP_GlobalLpPool;
}

kiln_status kiln_parse_pool(kiln_node *node, kiln_attrs *attrs) {
    kiln_pool_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    p->p = 2.0;
    if (node->op == KILN_OP_LpPool || node->op == KILN_OP_GlobalLpPool) {
        float pv; /* a float before opset 2, an int since */
        KILN_TRY(kiln_attr_float(attrs, "p", 2.0f, &pv));
        if (!(pv > 0))
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute p = %g is not positive", (double)pv);
        p->p = pv;
    }
    if (is_global(node->op)) return KILN_STATUS_OK;
    KILN_TRY(kiln_nn_parse_window(node, attrs, &p->w, true));
    if (p->w.n_kernel == 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute kernel_shape is required");
    if (node->op == KILN_OP_AveragePool) {
        int64_t cip;
        KILN_TRY(kiln_attr_int(attrs, "count_include_pad", 0, &cip));
        p->count_include_pad = cip != 0;
    }
    if (node->op == KILN_OP_MaxPool) {
        int64_t so;
        KILN_TRY(kiln_attr_int(attrs, "storage_order", 0, &so));
        if (so != 0 && so != 1)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute storage_order = %lld is not 0 or 1",
                                   (long long)so);
        p->column_major = so == 1;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_pool(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_pool_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    const kiln_tensor *x = in[0];
    bool ints_ok = node->op == KILN_OP_MaxPool && (x->dtype == KILN_DTYPE_I8 || x->dtype == KILN_DTYPE_U8);
    if (!kiln_nn_is_float(x->dtype) && !ints_ok) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (node->n_outputs > 1 && node->op != KILN_OP_MaxPool)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d outputs, expected 1", node->n_outputs);
    out[0].dtype = x->dtype;
    if (node->n_outputs > 1) out[1].dtype = KILN_DTYPE_I64;
    if (x->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char s1[160];
    int min_rank = is_global(node->op) ? 2 : 3;
    if (x->rank < min_rank)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s needs rank >= %d",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1), min_rank);
    int nsp = x->rank - 2;
    out[0].rank = x->rank;
    out[0].dims[0] = x->dims[0];
    out[0].dims[1] = x->dims[1];
    if (is_global(node->op)) {
        for (int i = 0; i < nsp; i++) out[0].dims[2 + i] = 1;
        return KILN_STATUS_OK;
    }
    if (p->w.n_kernel != nsp)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "kernel_shape has %d values for X %s",
                               p->w.n_kernel, kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
    kiln_window_dims d;
    KILN_TRY(kiln_nn_window_resolve(node, &p->w, nsp, x->dims + 2, p->w.kernel, &d));
    for (int i = 0; i < nsp; i++) out[0].dims[2 + i] = d.out[i];
    if (node->n_outputs > 1) {
        out[1].rank = out[0].rank;
        for (int i = 0; i < out[0].rank; i++) out[1].dims[i] = out[0].dims[i];
    }
    return KILN_STATUS_OK;
}
