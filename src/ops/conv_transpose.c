/* conv_transpose.c — parse and shape inference of ConvTranspose
 * (https://onnx.ai/onnx/operators/onnx__ConvTranspose.html): X (N, C, D1..Dn), W (C, M/group,
 * k1..kn), optional B (M) -> Y (N, M, o1..on). Output size from output_shape (pads derived from
 * it), from auto_pad SAME_* (in * stride), or stride*(in-1) + output_padding + window - pads.
 * The kernel is src/backends/ref/conv_transpose.c. Tested by test_convtranspose*. */
#include "nn_internal.h"

#include <string.h>

kiln_status kiln_parse_conv_transpose(kiln_node *node, kiln_attrs *attrs) {
    KILN_TRY(kiln_parse_conv(node, attrs)); /* window and group, as Conv's */
    kiln_conv_params *p = node->params;
    KILN_TRY(kiln_attr_ints_fixed(attrs, "output_padding", p->output_padding, KILN_NN_MAX_SPATIAL,
                                  &p->n_output_padding));
    KILN_TRY(kiln_attr_ints_fixed(attrs, "output_shape", p->output_shape, KILN_NN_MAX_SPATIAL + 2,
                                  &p->n_output_shape));
    for (int i = 0; i < p->n_output_padding; i++)
        if (p->output_padding[i] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute output_padding[%d] = %lld is negative",
                                   i, (long long)p->output_padding[i]);
    for (int i = 0; i < p->n_output_shape; i++)
        if (p->output_shape[i] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute output_shape[%d] = %lld is negative",
                                   i, (long long)p->output_shape[i]);
    return KILN_STATUS_OK;
}

static int64_t floor_half(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

kiln_status kiln_conv_transpose_resolve(const kiln_node *node, const kiln_tensor *x, const kiln_tensor *w,
                                        kiln_window_dims *d) {
    const kiln_conv_params *p = node->params;
    int nsp = x->rank - 2;
    /* Resolve strides/dilations/kernel through the common path (the output it computes is the
     * convolution's and is replaced below). */
    kiln_window plain = p->w;
    plain.auto_pad = KILN_AUTO_PAD_NOTSET;
    plain.n_pads = 0;
    int64_t kernel[KILN_NN_MAX_SPATIAL], fake_in[KILN_NN_MAX_SPATIAL];
    for (int i = 0; i < nsp; i++) {
        kernel[i] = p->w.n_kernel ? p->w.kernel[i] : w->dims[2 + i];
        fake_in[i] = KILN_DIM_UNKNOWN;
    }
    KILN_TRY(kiln_nn_window_resolve(node, &plain, nsp, fake_in, kernel, d));
    if (p->w.n_pads && p->w.n_pads != 2 * nsp)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "attribute pads has %d values for %d spatial dims",
                               p->w.n_pads, nsp);
    if (p->n_output_padding && p->n_output_padding != nsp)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "attribute output_padding has %d values for %d spatial dims", p->n_output_padding, nsp);
    if (p->n_output_shape && p->n_output_shape != nsp && p->n_output_shape != nsp + 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "attribute output_shape has %d values for %d spatial dims", p->n_output_shape, nsp);
    int shape_off = p->n_output_shape == nsp + 2 ? 2 : 0;
    for (int i = 0; i < nsp; i++) {
        int64_t in = x->dims[2 + i], k = d->kernel[i], s = d->strides[i];
        int64_t op = p->n_output_padding ? p->output_padding[i] : 0;
        d->pad_begin[i] = p->w.n_pads ? p->w.pads[i] : 0;
        d->pad_end[i] = p->w.n_pads ? p->w.pads[nsp + i] : 0;
        if (in < 0 || k < 0) {
            d->out[i] = p->n_output_shape ? p->output_shape[shape_off + i] : KILN_DIM_UNKNOWN;
            continue;
        }
        int64_t ek = (k - 1) * d->dilations[i] + 1, full = s * (in - 1) + op + ek;
        bool same = p->w.auto_pad == KILN_AUTO_PAD_SAME_UPPER || p->w.auto_pad == KILN_AUTO_PAD_SAME_LOWER;
        if (p->n_output_shape || same) {
            int64_t o = p->n_output_shape ? p->output_shape[shape_off + i] : in * s;
            int64_t total = full - o;
            if (p->w.auto_pad == KILN_AUTO_PAD_SAME_UPPER) {
                d->pad_begin[i] = floor_half(total);
                d->pad_end[i] = total - floor_half(total);
            } else {
                d->pad_begin[i] = total - floor_half(total);
                d->pad_end[i] = floor_half(total);
            }
            d->out[i] = o;
        } else {
            if (p->w.auto_pad == KILN_AUTO_PAD_VALID) d->pad_begin[i] = d->pad_end[i] = 0;
            d->out[i] = full - d->pad_begin[i] - d->pad_end[i];
            if (d->out[i] < 0)
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                                       "spatial dim %d: pads %lld+%lld exceed the output size %lld", i,
                                       (long long)d->pad_begin[i], (long long)d->pad_end[i], (long long)full);
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_conv_transpose(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_conv_params *p = node->params;
    bool known;
    KILN_TRY(kiln_conv_float_inputs(node, in, out, &known));
    if (!known) return KILN_STATUS_OK;
    const kiln_tensor *x = in[0], *w = in[1], *b = node->n_declared > 2 ? in[2] : NULL;
    char s1[160], s2[160];
    KILN_TRY(kiln_conv_check_ranks(node, x, w));
    int64_t c = x->dims[1], m = w->dims[1] >= 0 ? w->dims[1] * p->group : KILN_DIM_UNKNOWN;
    if (c >= 0 && w->dims[0] >= 0 && (c != w->dims[0] || c % p->group))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s and W %s do not fit group = %lld",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1),
                               kiln_dims_str(w->rank, w->dims, s2, sizeof s2), (long long)p->group);
    if (b && b->rank >= 0 && (b->rank != 1 || (b->dims[0] >= 0 && m >= 0 && b->dims[0] != m)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "B %s must be (%lld)",
                               kiln_dims_str(b->rank, b->dims, s1, sizeof s1), (long long)m);
    kiln_window_dims d;
    KILN_TRY(kiln_conv_transpose_resolve(node, x, w, &d));
    kiln_conv_set_out(x, m, &d, &out[0]);
    return KILN_STATUS_OK;
}
