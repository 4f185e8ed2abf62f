/* qconv.c — parse and shape inference of the integer convolutions:
 *   ConvInteger  https://onnx.ai/onnx/operators/onnx__ConvInteger.html
 *   QLinearConv  https://onnx.ai/onnx/operators/onnx__QLinearConv.html
 * The attributes, output-size rules and group check are Conv's (kiln_parse_conv,
 * kiln_conv_infer_common and kiln_conv_check_group, src/ops/conv.c); the integer kernel is
 * src/backends/ref/qconv.c. Tested by test_convinteger*, test_qlinearconv. */
#include "seq_internal.h"
#include "nn_internal.h"

/* The attributes are Conv's. */
kiln_status kiln_parse_qconv(kiln_node *node, kiln_attrs *attrs) { return kiln_parse_conv(node, attrs); }

static bool is_q8(kiln_dtype t) { return t == KILN_DTYPE_I8 || t == KILN_DTYPE_U8; }

/* A scalar (one element) or, when per_channel, a vector of m elements. */
static kiln_status check_param(const kiln_node *node, const kiln_tensor *t, int idx, bool per_channel, int64_t m) {
    char s[160];
    if (!t || t->rank < 0) return KILN_STATUS_OK;
    int64_t count = kiln_shape_count(t->rank, t->dims);
    if (count == 1 || count < 0) return KILN_STATUS_OK;
    if (per_channel && t->rank == 1 && (m < 0 || t->dims[0] == m)) return KILN_STATUS_OK;
    return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %d %s must be a scalar%s", idx,
                           kiln_dims_str(t->rank, t->dims, s, sizeof s),
                           per_channel ? " or a vector of the output channels" : "");
}

kiln_status kiln_infer_qconv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    bool qlinear = node->op == KILN_OP_QLinearConv;
    KILN_TRY(qlinear ? kiln_node_check_arity(node, 8, 9) : kiln_node_check_arity(node, 2, 4));
    int ix = 0, iw = qlinear ? 3 : 1;
    int ixz = 2, iwz = qlinear ? 5 : 3;
    const kiln_tensor *x = in[ix], *w = in[iw];
    const kiln_tensor *xz = seq_in(node, in, ixz), *wz = seq_in(node, in, iwz);
    const kiln_tensor *b = qlinear ? seq_in(node, in, 8) : NULL;
    if (!is_q8(x->dtype)) return kiln_node_bad_dtype(node, ix, x->dtype);
    if (!is_q8(w->dtype)) return kiln_node_bad_dtype(node, iw, w->dtype);
    if (xz && xz->dtype != x->dtype) return kiln_node_bad_dtype(node, ixz, xz->dtype);
    if (wz && wz->dtype != w->dtype) return kiln_node_bad_dtype(node, iwz, wz->dtype);
    if (qlinear) {
        static const int scales[] = {1, 4, 6}; /* x_scale, w_scale, y_scale */
        for (int k = 0; k < 3; k++)
            if (in[scales[k]]->dtype != KILN_DTYPE_F32) return kiln_node_bad_dtype(node, scales[k], in[scales[k]]->dtype);
        if (!is_q8(in[7]->dtype)) return kiln_node_bad_dtype(node, 7, in[7]->dtype);
        if (b && b->dtype != KILN_DTYPE_I32) return kiln_node_bad_dtype(node, 8, b->dtype);
    }
    out[0].dtype = qlinear ? in[7]->dtype : KILN_DTYPE_I32;
    if (x->rank < 0 || w->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    int64_t m = w->rank > 0 ? w->dims[0] : KILN_DIM_UNKNOWN;
    kiln_window_dims d;
    KILN_TRY(kiln_conv_infer_common(node, p, x, w, b, m, &d));
    KILN_TRY(check_param(node, xz, ixz, false, m));
    KILN_TRY(check_param(node, wz, iwz, true, m));
    if (qlinear) {
        KILN_TRY(check_param(node, in[1], 1, false, m));
        KILN_TRY(check_param(node, in[4], 4, true, m));
        KILN_TRY(check_param(node, in[6], 6, false, m));
        KILN_TRY(check_param(node, in[7], 7, false, m));
    }
    KILN_TRY(kiln_conv_check_group(node, p, x, w, m));
    kiln_conv_set_out(x, m, &d, &out[0]);
    return KILN_STATUS_OK;
}
