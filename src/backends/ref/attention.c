/* attention.c — reference kernel of Attention (parse and infer in src/ops/attention.c).
 * For each batch b, query head h (served by kv head h / (Hq / Hkv)) and query i, over the
 * T = P + Skv keys j (past first, then K):
 *     s = sqrt(scale), scale defaulting to 1/sqrt(E)
 *     qk[j] = sum_e (Q[e] * s) * (K[j, e] * s)
 *     capped[j] = softcap > 0 ? softcap * tanh(qk[j] / softcap) : qk[j]
 *     bias[j] = mask (0 / -inf for bool, the value for float; -inf where j is past its
 *               last dim) + causal (-inf where j > i + offset) + window + nonpad (-inf
 *               where j >= nonpad_kv_seqlen[b])
 *     p = softmax(capped + bias), 0 on rows whose bias is -inf everywhere
 *     Y[i] = sum_j p[j] V[j]
 * offset is P with a past, nonpad_kv_seqlen[b] - Sq with nonpad_kv_seqlen, else 0.
 * Arithmetic is in double, rounded to the input dtype where onnx's reference rounds (Q*s, K*s,
 * qk, the softcap steps, qk + bias, p, Y) so that f16 results agree; the softmax steps (x - max,
 * exp, the sum, the quotient) round to softmax_precision (default the dtype), p then to the dtype.
 * qk_matmul_output: mode 0 qk, 1 capped, 2 capped + bias, 3 p.
 * Tested by the node tests test_attention_*. */
#include "../../ops/reduce_internal.h"
#include "ref.h"

typedef struct attn_ctx {
    const red_attention_params *p;
    red_attn_dims d;
    const kiln_tensor *q, *k, *v, *mask, *pk, *pv;
    const int64_t *nonpad;
    kiln_dtype t; /* Q's dtype: the dtype intermediate results are rounded to */
} attn_ctx;

/* Offset of element e of query (b, h, i). */
static int64_t q_at(const attn_ctx *c, int64_t b, int64_t h, int64_t i, int64_t e) {
    const red_attn_dims *d = &c->d;
    return d->three_d ? ((b * d->Sq + i) * d->Hq + h) * d->E + e : ((b * d->Hq + h) * d->Sq + i) * d->E + e;
}

/* Element e of key (or value, when is_v) j of kv head g in batch b: past first, then K/V. */
static double kv_load(const attn_ctx *c, bool is_v, int64_t b, int64_t g, int64_t j, int64_t e) {
    const red_attn_dims *d = &c->d;
    int64_t width = is_v ? d->Ev : d->E;
    if (j < d->P) {
        const kiln_tensor *pt = is_v ? c->pv : c->pk;
        return kiln_load_f64(pt->dtype, pt->data, ((b * d->Hkv + g) * d->P + j) * width + e);
    }
    const kiln_tensor *t = is_v ? c->v : c->k;
    j -= d->P;
    int64_t at = d->three_d ? ((b * d->Skv + j) * d->Hkv + g) * width + e : ((b * d->Hkv + g) * d->Skv + j) * width + e;
    return kiln_load_f64(t->dtype, t->data, at);
}

/* The additive bias of (b, h, i, j). */
static double bias_at(const attn_ctx *c, int64_t b, int64_t h, int64_t i, int64_t j) {
    const red_attn_dims *d = &c->d;
    const red_attention_params *p = c->p;
    double bias = 0.0;
    if (c->mask) {
        const kiln_tensor *m = c->mask;
        int64_t full[4] = {b, h, i, j};
        if (j >= m->dims[m->rank - 1]) {
            bias = -INFINITY; /* padding of a short mask */
        } else {
            int64_t at = 0;
            for (int r = 0; r < m->rank; r++) {
                int64_t md = m->dims[r];
                at = at * md + (md == 1 ? 0 : full[4 - m->rank + r]);
            }
            if (m->dtype == KILN_DTYPE_BOOL) bias = ((const uint8_t *)m->data)[at] ? 0.0 : -INFINITY;
            else bias = kiln_load_f64(m->dtype, m->data, at);
        }
    }
    int64_t offset = c->pk ? d->P : c->nonpad ? c->nonpad[b] - d->Sq : 0;
    if (p->is_causal && j > i + offset) bias += -INFINITY;
    if (p->left_window >= 0 || p->right_window >= 0) {
        int64_t diff = i + offset - j;
        if ((p->left_window >= 0 && diff > p->left_window) || (p->right_window >= 0 && -diff > p->right_window)) bias += -INFINITY;
    }
    if (c->nonpad && j >= c->nonpad[b]) bias += -INFINITY;
    return red_round_to(c->t, bias);
}

/* Copies past and new keys (or values) into a present output (B, Hkv, T, width). */
static void write_present(const attn_ctx *c, bool is_v, kiln_tensor *out) {
    const red_attn_dims *d = &c->d;
    int64_t width = is_v ? d->Ev : d->E;
    for (int64_t b = 0; b < d->B; b++)
        for (int64_t g = 0; g < d->Hkv; g++)
            for (int64_t j = 0; j < d->T; j++)
                for (int64_t e = 0; e < width; e++)
                    kiln_store_f64(out->dtype, out->data, ((b * d->Hkv + g) * d->T + j) * width + e, kv_load(c, is_v, b, g, j, e));
}

kiln_status kiln_ref_attention(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_attention_params *p = node->params;
    attn_ctx c = {0};
    c.p = p;
    KILN_TRY(red_attention_dims(node, in, &c.d));
    const red_attn_dims *d = &c.d;
    c.q = in[0];
    c.k = in[1];
    c.v = in[2];
    c.mask = red_has_input(node, in, 3) ? in[3] : NULL;
    c.pk = red_has_input(node, in, 4) ? in[4] : NULL;
    c.pv = red_has_input(node, in, 5) ? in[5] : NULL;
    c.nonpad = red_has_input(node, in, 6) ? in[6]->data : NULL;
    c.t = c.q->dtype;
    kiln_dtype t = c.t;
    kiln_dtype sm_t = p->softmax_precision != KILN_DTYPE_UNDEFINED ? p->softmax_precision : t;
    double scale = p->has_scale ? (double)p->scale : 1.0 / sqrt((double)d->E);
    double s = red_round_to(t, sqrt(scale));
    int64_t group = d->Hq / d->Hkv;
    kiln_tensor *qk_out = node->n_outputs > 3 && out[3].data ? &out[3] : NULL;

    size_t bytes;
    KILN_TRY(kiln_checked_bytes(4 * (d->T + d->E) + 1, sizeof(double), &bytes));
    bool oom = false;
    /* (batch, head) pairs are independent: each thread has its own row buffers */
#pragma omp parallel if (d->B * d->Hq * d->Sq * d->T * d->E > KILN_REF_PARALLEL_MIN)
    {
    double *buf = kiln_malloc(bytes);
    if (!buf) {
#pragma omp atomic write
        oom = true;
    }
    double *raw = buf, *capped = raw + d->T, *logit = capped + d->T, *prob = logit + d->T, *qs = prob + d->T;
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < d->B; b++) {
        for (int64_t h = 0; h < d->Hq; h++) {
            if (!buf) continue;
            int64_t g = h / group;
            for (int64_t i = 0; i < d->Sq; i++) {
                for (int64_t e = 0; e < d->E; e++) qs[e] = red_round_to(t, kiln_load_f64(t, c.q->data, q_at(&c, b, h, i, e)) * s);
                double bias_max = -INFINITY, mx = -INFINITY;
                for (int64_t j = 0; j < d->T; j++) {
                    double acc = 0.0;
                    for (int64_t e = 0; e < d->E; e++) acc += qs[e] * red_round_to(t, kv_load(&c, false, b, g, j, e) * s);
                    raw[j] = red_round_to(t, acc);
                    capped[j] = raw[j];
                    if (p->softcap > 0.0f) {
                        double sc = (double)p->softcap;
                        double th = red_round_to(t, tanh(red_round_to(t, raw[j] / sc)));
                        capped[j] = red_round_to(t, th * sc);
                    }
                    double bias = bias_at(&c, b, h, i, j);
                    bias_max = fmax(bias_max, bias);
                    logit[j] = red_round_to(sm_t, red_round_to(t, capped[j] + bias));
                    mx = fmax(mx, logit[j]);
                }
                /* softmax; a row whose bias is -inf everywhere (or whose logits all are) gives 0 */
                bool masked_row = bias_max == -INFINITY || mx == -INFINITY;
                double sum = 0.0;
                for (int64_t j = 0; j < d->T; j++) {
                    prob[j] = masked_row ? 0.0 : red_round_to(sm_t, exp(red_round_to(sm_t, logit[j] - mx)));
                    sum += prob[j];
                }
                sum = red_round_to(sm_t, sum);
                for (int64_t j = 0; j < d->T; j++)
                    prob[j] = masked_row ? 0.0 : red_round_to(t, red_round_to(sm_t, prob[j] / sum));
                if (qk_out) {
                    int64_t row = ((b * d->Hq + h) * d->Sq + i) * d->T;
                    for (int64_t j = 0; j < d->T; j++) {
                        double v = p->qk_matmul_output_mode == 0 ? raw[j]
                                   : p->qk_matmul_output_mode == 1 ? capped[j]
                                   : p->qk_matmul_output_mode == 2 ? red_round_to(t, capped[j] + bias_at(&c, b, h, i, j))
                                                                   : prob[j];
                        red_store_f64(qk_out->dtype, qk_out->data, row + j, v);
                    }
                }
                for (int64_t e = 0; e < d->Ev; e++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < d->T; j++)
                        if (prob[j] != 0.0) acc += prob[j] * kv_load(&c, true, b, g, j, e);
                    int64_t at = d->three_d ? ((b * d->Sq + i) * d->Hq + h) * d->Ev + e : ((b * d->Hq + h) * d->Sq + i) * d->Ev + e;
                    red_store_f64(out[0].dtype, out[0].data, at, acc);
                }
            }
        }
    }
    free(buf);
    }
    if (oom) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (node->n_outputs > 1 && out[1].data) write_present(&c, false, &out[1]);
    if (node->n_outputs > 2 && out[2].data) write_present(&c, true, &out[2]);
    return KILN_STATUS_OK;
}
