/* linear_attention.c — reference kernel of LinearAttention (parse and infer in
 * src/ops/linear_attention.c): the recurrence run token by token in double. Per key/value
 * head with state S (d_k x d_v), key k, value v, query q of each query head sharing it:
 *     gated rules:  S = exp(g) * S            (g per head or per key dim)
 *     delta rules:  v = beta * (v - S^T k)
 *     all:          S = S + k (outer) v;       o = scale * q^T S
 * Tested by the node tests test_linear_attention_*. */
#include "../../ops/reduce_internal.h"

kiln_status kiln_ref_linear_attention(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_linattn_params *p = node->params;
    const kiln_tensor *q = in[0], *k = in[1], *v = in[2];
    const kiln_tensor *past = red_has_input(node, in, 3) ? in[3] : NULL;
    const kiln_tensor *decay = red_has_input(node, in, 4) ? in[4] : NULL;
    const kiln_tensor *beta = red_has_input(node, in, 5) ? in[5] : NULL;
    int64_t B = q->dims[0], T = q->dims[1], Hq = p->q_num_heads, Hkv = p->kv_num_heads;
    int64_t dk = q->dims[2] / Hq, dv = v->dims[2] / Hkv, group = Hq / Hkv;
    double scale = p->scale != 0.0f ? (double)p->scale : 1.0 / sqrt((double)dk);
    int64_t n_state = B * Hkv * dk * dv;
    size_t bytes;
    KILN_TRY(kiln_checked_bytes((n_state ? n_state : 1) + dv, sizeof(double), &bytes));
    double *S = kiln_malloc(bytes);
    if (!S) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    double *vt = S + n_state; /* dv scratch */
    for (int64_t i = 0; i < n_state; i++) S[i] = past ? kiln_load_f64(past->dtype, past->data, i) : 0.0;

    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < T; t++) {
            for (int64_t g = 0; g < Hkv; g++) {
                double *st = S + (b * Hkv + g) * dk * dv;
                int64_t krow = (b * T + t) * Hkv * dk + g * dk, vrow = (b * T + t) * Hkv * dv + g * dv;
                if (decay) {
                    int64_t w = decay->dims[2];
                    for (int64_t d = 0; d < dk; d++) {
                        int64_t at = (b * T + t) * w + (w == Hkv ? g : g * dk + d);
                        double f = exp(kiln_load_f64(decay->dtype, decay->data, at));
                        for (int64_t m = 0; m < dv; m++) st[d * dv + m] *= f;
                    }
                }
                for (int64_t m = 0; m < dv; m++) vt[m] = kiln_load_f64(v->dtype, v->data, vrow + m);
                if (beta) {
                    int64_t w = beta->dims[2];
                    double bt = kiln_load_f64(beta->dtype, beta->data, (b * T + t) * w + (w == 1 ? 0 : g));
                    for (int64_t m = 0; m < dv; m++) {
                        double r = 0.0;
                        for (int64_t d = 0; d < dk; d++) r += st[d * dv + m] * kiln_load_f64(k->dtype, k->data, krow + d);
                        vt[m] = bt * (vt[m] - r);
                    }
                }
                for (int64_t d = 0; d < dk; d++) {
                    double kd = kiln_load_f64(k->dtype, k->data, krow + d);
                    for (int64_t m = 0; m < dv; m++) st[d * dv + m] += kd * vt[m];
                }
            }
            for (int64_t h = 0; h < Hq; h++) {
                const double *st = S + (b * Hkv + h / group) * dk * dv;
                int64_t qrow = (b * T + t) * Hq * dk + h * dk, orow = (b * T + t) * Hq * dv + h * dv;
                for (int64_t m = 0; m < dv; m++) {
                    double o = 0.0;
                    for (int64_t d = 0; d < dk; d++) o += kiln_load_f64(q->dtype, q->data, qrow + d) * st[d * dv + m];
                    red_store_f64(out[0].dtype, out[0].data, orow + m, scale * o);
                }
            }
        }
    }
    if (node->n_outputs > 1 && out[1].data)
        for (int64_t i = 0; i < n_state; i++) red_store_f64(out[1].dtype, out[1].data, i, S[i]);
    free(S);
    return KILN_STATUS_OK;
}
