/* deform_conv.c — parse and shape inference of DeformConv
 * (https://onnx.ai/onnx/operators/onnx__DeformConv.html): X (N, C, H, W), W (M, C/group, kH, kW),
 * offset (N, offset_group*kH*kW*2, oH, oW), optional B (M), optional mask
 * (N, offset_group*kH*kW, oH, oW) -> Y (N, M, oH, oW), oH/oW as for Conv. 2-D only.
 * The kernel is src/backends/ref/deform_conv.c. Tested by test_deform_conv*. */
#include "nn_internal.h"

kiln_status kiln_parse_deform_conv(kiln_node *node, kiln_attrs *attrs) {
    kiln_conv_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    KILN_TRY(kiln_nn_parse_window(node, attrs, &p->w, false));
    if (p->w.auto_pad != KILN_AUTO_PAD_NOTSET)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "DeformConv has no auto_pad attribute");
    KILN_TRY(kiln_attr_int(attrs, "group", 1, &p->group));
    KILN_TRY(kiln_attr_int(attrs, "offset_group", 1, &p->offset_group));
    if (p->group <= 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute group = %lld is not positive",
                               (long long)p->group);
    if (p->offset_group <= 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute offset_group = %lld is not positive",
                               (long long)p->offset_group);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_deform_conv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 3, 5));
    const kiln_tensor *x = in[0], *w = in[1], *off = in[2];
    const kiln_tensor *b = node->n_declared > 3 ? in[3] : NULL, *mask = node->n_declared > 4 ? in[4] : NULL;
    if (!kiln_nn_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    for (int i = 1; i < node->n_declared && i < 5; i++)
        if (in[i] && in[i]->dtype != x->dtype) return kiln_node_bad_dtype(node, i, in[i]->dtype);
    out[0].dtype = x->dtype;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    if (x->rank != 4)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "rank %d input (only 2-D DeformConv is supported)",
                               x->rank);
    kiln_window_dims d;
    KILN_TRY(kiln_conv_infer_common(node, p, x, w, b, w->dims[0], &d));
    char s1[160], s2[160], s3[160];
    int64_t c = x->dims[1], m = w->dims[0], cg = w->dims[1];
    if ((m >= 0 && m % p->group) || (c >= 0 && cg >= 0 && c != cg * p->group) || (c >= 0 && c % p->offset_group))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "X %s and W %s do not fit group = %lld, offset_group = %lld",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1),
                               kiln_dims_str(w->rank, w->dims, s2, sizeof s2), (long long)p->group,
                               (long long)p->offset_group);
    int64_t taps = d.kernel[0] >= 0 && d.kernel[1] >= 0 ? d.kernel[0] * d.kernel[1] * p->offset_group : -1;
    /* offset must be (N, 2 * taps, oH, oW) and mask (N, taps, oH, oW); unknown dims pass */
    int64_t want[4] = {x->dims[0], taps >= 0 ? 2 * taps : -1, d.out[0], d.out[1]};
    for (int k = 0; k < 2; k++) {
        const kiln_tensor *t = k == 0 ? off : mask;
        if (!t) continue;
        bool bad = t->rank != 4;
        for (int i = 0; !bad && i < 4; i++) {
            int64_t wi = i == 1 && k == 1 ? taps : want[i];
            bad = wi >= 0 && t->dims[i] >= 0 && t->dims[i] != wi;
        }
        if (bad)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s %s does not fit X %s and W %s",
                                   k == 0 ? "offset" : "mask", kiln_dims_str(t->rank, t->dims, s1, sizeof s1),
                                   kiln_dims_str(x->rank, x->dims, s2, sizeof s2),
                                   kiln_dims_str(w->rank, w->dims, s3, sizeof s3));
    }
    out[0].rank = 4;
    out[0].dims[0] = x->dims[0];
    out[0].dims[1] = m;
    out[0].dims[2] = d.out[0];
    out[0].dims[3] = d.out[1];
    return KILN_STATUS_OK;
}
