/* causal_conv.c — reference kernel of CausalConvWithState (parse and infer in
 * src/ops/causal_conv.c). With p = concat(past_state or zeros, input) along the length,
 * output[b, c, t] = bias[c] + sum_j weight[c, 0, j] * p[b, c, t + j], in double, rounded to the
 * dtype and then (silu) multiplied by its sigmoid; present_state = the last k-1 positions of p.
 * Tested by the node tests test_causal_conv_with_state_*. */
#include "../../ops/reduce_internal.h"

kiln_status kiln_ref_causal_conv(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_causal_conv_params *p = node->params;
    const kiln_tensor *x = in[0], *w = in[1];
    const kiln_tensor *bias = red_has_input(node, in, 2) ? in[2] : NULL;
    const kiln_tensor *past = red_has_input(node, in, 3) ? in[3] : NULL;
    kiln_dtype t = x->dtype;
    int64_t B = x->dims[0], C = x->dims[1], L = x->dims[2], k = w->dims[2];
    int64_t P = L + k - 1;
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(P > 0 ? P : 1, sizeof(double), &bytes));
    double *pad = kiln_malloc(bytes);
    if (!pad) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t b = 0; b < B; b++) {
        for (int64_t c = 0; c < C; c++) {
            for (int64_t j = 0; j < k - 1; j++) pad[j] = past ? kiln_load_f64(t, past->data, (b * C + c) * (k - 1) + j) : 0.0;
            for (int64_t j = 0; j < L; j++) pad[k - 1 + j] = kiln_load_f64(t, x->data, (b * C + c) * L + j);
            for (int64_t s = 0; s < L; s++) {
                double acc = bias ? kiln_load_f64(t, bias->data, c) : 0.0;
                for (int64_t j = 0; j < k; j++) acc += kiln_load_f64(t, w->data, c * k + j) * pad[s + j];
                if (p->silu) {
                    acc = red_round_to(t, acc);
                    acc = acc / (1.0 + exp(-acc));
                }
                red_store_f64(t, out[0].data, (b * C + c) * L + s, acc);
            }
            if (node->n_outputs > 1 && out[1].data)
                for (int64_t j = 0; j < k - 1; j++) red_store_f64(t, out[1].data, (b * C + c) * (k - 1) + j, pad[L + j]);
        }
    }
    free(pad);
    return KILN_STATUS_OK;
}
