/* causal_conv.c — parse and shape inference of CausalConvWithState (opset 27,
 * https://onnx.ai/onnx/operators/onnx__CausalConvWithState.html): a causal depthwise 1-D
 * convolution carrying its last k-1 inputs as state. Inputs: input (B, C, L), weight (C, 1, k),
 * optional bias (C) and past_state (B, C, k-1) (zeros when absent). Outputs: output (B, C, L)
 * and present_state (B, C, k-1). Attribute activation: none, silu or swish (= silu).
 * The kernel is src/backends/ref/causal_conv.c. Tested by test_causal_conv_with_state_*. */
#include "reduce_internal.h"

kiln_status kiln_parse_causal_conv(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_causal_conv_params, p);
    char act[16];
    KILN_TRY(kiln_attr_string(attrs, "activation", "none", act, sizeof act));
    if (strcmp(act, "silu") == 0 || strcmp(act, "swish") == 0) p->silu = true;
    else if (strcmp(act, "none") != 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'activation' is '%s', expected none, silu or swish", act);
    return KILN_STATUS_OK;
}

static bool clash(int64_t a, int64_t b) { return kiln_dim_known(a) && kiln_dim_known(b) && a != b; }

kiln_status kiln_infer_causal_conv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 2, 4));
    KILN_TRY(red_need_input(node, in, 0, "input"));
    KILN_TRY(red_need_input(node, in, 1, "weight"));
    const kiln_tensor *x = in[0], *w = in[1];
    const kiln_tensor *bias = red_has_input(node, in, 2) ? in[2] : NULL;
    const kiln_tensor *past = red_has_input(node, in, 3) ? in[3] : NULL;
    if (!kiln_dtype_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (w->dtype != x->dtype) return kiln_node_bad_dtype(node, 1, w->dtype);
    if (bias && bias->dtype != x->dtype) return kiln_node_bad_dtype(node, 2, bias->dtype);
    if (past && past->dtype != x->dtype) return kiln_node_bad_dtype(node, 3, past->dtype);
    for (int j = 0; j < node->n_outputs; j++) out[j].dtype = x->dtype;
    if (x->rank < 0 || w->rank < 0 || (bias && bias->rank < 0) || (past && past->rank < 0)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char b1[96], b2[96], b3[96];
    if (x->rank != 3 || w->rank != 3 || clash(w->dims[0], x->dims[1]) || clash(w->dims[1], 1))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %s and weight %s do not match (B, C, L) and (C, 1, k)",
                               kiln_dims_str(x->rank, x->dims, b1, sizeof b1), kiln_dims_str(w->rank, w->dims, b2, sizeof b2));
    int64_t k = w->dims[2];
    if (kiln_dim_known(k) && k < 1) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "kernel size %lld < 1", (long long)k);
    int64_t km1 = kiln_dim_known(k) ? k - 1 : KILN_DIM_UNKNOWN;
    if (bias && (bias->rank != 1 || clash(bias->dims[0], x->dims[1])))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "bias %s must be (C) for input %s",
                               kiln_dims_str(bias->rank, bias->dims, b1, sizeof b1), kiln_dims_str(x->rank, x->dims, b2, sizeof b2));
    if (past && (past->rank != 3 || clash(past->dims[0], x->dims[0]) || clash(past->dims[1], x->dims[1]) || clash(past->dims[2], km1)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "past_state %s must be (B, C, k-1) for input %s and weight %s",
                               kiln_dims_str(past->rank, past->dims, b1, sizeof b1), kiln_dims_str(x->rank, x->dims, b2, sizeof b2),
                               kiln_dims_str(w->rank, w->dims, b3, sizeof b3));
    red_copy_shape(&out[0], x);
    if (node->n_outputs > 1) {
        red_copy_shape(&out[1], x);
        out[1].dims[2] = km1;
    }
    return KILN_STATUS_OK;
}
