/* conv.c — parse and shape inference of Conv (https://onnx.ai/onnx/operators/onnx__Conv.html):
 * X (N, C, D1..Dn), W (M, C/group, k1..kn), optional B (M) -> Y (N, M, o1..on), 1 to 6 spatial
 * dims here (the reference kernel does 1-D to 3-D). The kernel is src/backends/ref/conv.c.
 * Also the checks ConvTranspose, ConvInteger/QLinearConv and DeformConv share (declared in
 * nn_internal.h). Tested by the node tests test_conv*, test_basic_conv*. */
#include "nn_internal.h"

#include <string.h>

kiln_status kiln_parse_conv(kiln_node *node, kiln_attrs *attrs) {
    kiln_conv_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    KILN_TRY(kiln_nn_parse_window(node, attrs, &p->w, false));
    KILN_TRY(kiln_attr_int(attrs, "group", 1, &p->group));
    if (p->group <= 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute group = %lld is not positive",
                               (long long)p->group);
    return KILN_STATUS_OK;
}

kiln_status kiln_conv_check_ranks(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *w) {
    char s1[160], s2[160];
    if (x->rank < 3 || w->rank != x->rank)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "X %s and W %s must have the same rank, at least 3",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1),
                               kiln_dims_str(w->rank, w->dims, s2, sizeof s2));
    if (x->rank - 2 > KILN_NN_MAX_SPATIAL)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "rank %d input", x->rank);
    return KILN_STATUS_OK;
}

kiln_status kiln_conv_infer_common(const kiln_node *node, const kiln_conv_params *p, const kiln_tensor *x,
                                   const kiln_tensor *w, const kiln_tensor *b, int64_t out_channels,
                                   kiln_window_dims *d) {
    char s1[160], s2[160];
    KILN_TRY(kiln_conv_check_ranks(node, x, w));
    int nsp = x->rank - 2;
    int64_t kernel[KILN_NN_MAX_SPATIAL];
    for (int i = 0; i < nsp; i++) {
        kernel[i] = p->w.n_kernel ? p->w.kernel[i] : w->dims[2 + i];
        if (p->w.n_kernel && p->w.n_kernel == nsp && w->dims[2 + i] >= 0 && w->dims[2 + i] != p->w.kernel[i])
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                                   "attribute kernel_shape does not match W %s",
                                   kiln_dims_str(w->rank, w->dims, s2, sizeof s2));
    }
    KILN_TRY(kiln_nn_window_resolve(node, &p->w, nsp, x->dims + 2, kernel, d));
    if (b && b->rank >= 0 && (b->rank != 1 || (b->dims[0] >= 0 && out_channels >= 0 && b->dims[0] != out_channels)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "B %s must be (%lld)",
                               kiln_dims_str(b->rank, b->dims, s1, sizeof s1), (long long)out_channels);
    return KILN_STATUS_OK;
}

kiln_status kiln_conv_float_inputs(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out, bool *known) {
    KILN_TRY(kiln_node_check_arity(node, 2, 3));
    const kiln_tensor *x = in[0], *w = in[1], *b = node->n_declared > 2 ? in[2] : NULL;
    if (!kiln_nn_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (w->dtype != x->dtype) return kiln_node_bad_dtype(node, 1, w->dtype);
    if (b && b->dtype != x->dtype) return kiln_node_bad_dtype(node, 2, b->dtype);
    out[0].dtype = x->dtype;
    *known = x->rank >= 0 && w->rank >= 0;
    if (!*known) kiln_infer_unknown(node, out);
    return KILN_STATUS_OK;
}

kiln_status kiln_conv_check_group(const kiln_node *node, const kiln_conv_params *p, const kiln_tensor *x,
                                  const kiln_tensor *w, int64_t m) {
    char s1[160], s2[160];
    int64_t c = x->dims[1], cg = w->dims[1];
    if ((m >= 0 && m % p->group) || (c >= 0 && cg >= 0 && c != cg * p->group))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s and W %s do not fit group = %lld",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1),
                               kiln_dims_str(w->rank, w->dims, s2, sizeof s2), (long long)p->group);
    return KILN_STATUS_OK;
}

void kiln_conv_set_out(const kiln_tensor *x, int64_t m, const kiln_window_dims *d, kiln_tensor *out) {
    out->rank = x->rank;
    out->dims[0] = x->dims[0];
    out->dims[1] = m;
    for (int i = 0; i < d->nsp; i++) out->dims[2 + i] = d->out[i];
}

kiln_status kiln_infer_conv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    bool known;
    KILN_TRY(kiln_conv_float_inputs(node, in, out, &known));
    if (!known) return KILN_STATUS_OK;
    const kiln_tensor *x = in[0], *w = in[1], *b = node->n_declared > 2 ? in[2] : NULL;
    kiln_window_dims d;
    KILN_TRY(kiln_conv_infer_common(node, p, x, w, b, w->dims[0], &d));
    KILN_TRY(kiln_conv_check_group(node, p, x, w, w->dims[0]));
    kiln_conv_set_out(x, w->dims[0], &d, &out[0]);
    return KILN_STATUS_OK;
}
