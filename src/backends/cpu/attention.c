/* attention.c — a float32 CPU kernel for Attention (opset 23): for each batch, query head and
 * query row, the scores against every key (past first), the additive mask and the causal
 * limit, a softmax and the weighted sum of the values, all in float32 over contiguous rows
 * (the reference kernel, src/backends/ref/attention.c, computes in double with the rounding
 * steps of onnx's reference, element by element). GQA (query heads sharing a kv head), 3-D and
 * 4-D layouts, bool and float masks that broadcast (a mask shorter than the keys masks the
 * rest), is_causal, past keys/values and the present outputs. Anything else goes to the
 * reference kernel: softcap, sliding windows, nonpad_kv_seqlen, qk_matmul_output, a
 * softmax_precision other than float32, other dtypes. Rows masked everywhere give zeros, as
 * in the reference. Tested against the reference kernels and ONNX Runtime by
 * tests/models/test_cpu_kernels.py (attention family) and by the node tests as engines. */
#include "cpu_backend.h"

#include "../../ops/reduce_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static bool f32_or_absent(const kiln_node *n, kiln_tensor *const *in, int i) {
    return !red_has_input(n, in, i) || in[i]->dtype == KILN_DTYPE_F32;
}

static bool attn_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const red_attention_params *p = n->params;
    if (!p || n->act.kind != KILN_ACT_NONE || n->n_declared < 3) return false;
    if (p->softcap != 0.0f || p->left_window >= 0 || p->right_window >= 0) return false;
    if (p->softmax_precision != KILN_DTYPE_UNDEFINED && p->softmax_precision != KILN_DTYPE_F32) return false;
    if (n->n_outputs > 3 && n->outputs[3] >= 0) return false; /* qk_matmul_output */
    if (red_has_input(n, in, 6)) return false;                /* nonpad_kv_seqlen */
    for (int i = 0; i < 3; i++)
        if (!in[i] || in[i]->dtype != KILN_DTYPE_F32) return false;
    if (red_has_input(n, in, 3) && in[3]->dtype != KILN_DTYPE_F32 && in[3]->dtype != KILN_DTYPE_BOOL) return false;
    return f32_or_absent(n, in, 4) && f32_or_absent(n, in, 5) && out->dtype == KILN_DTYPE_F32;
}

typedef struct attn_job {
    red_attn_dims d;
    const float *q, *k, *v, *pk, *pv;
    const kiln_tensor *mask;
    bool causal;
    float scale;
} attn_job;

/* Row j of the keys (or values) of kv head g in batch b: past first, then the new ones. */
static const float *kv_row(const attn_job *c, bool is_v, int64_t b, int64_t g, int64_t j) {
    const red_attn_dims *d = &c->d;
    int64_t w = is_v ? d->Ev : d->E;
    if (j < d->P) return (is_v ? c->pv : c->pk) + ((b * d->Hkv + g) * d->P + j) * w;
    j -= d->P;
    const float *t = is_v ? c->v : c->k;
    return t + (d->three_d ? (b * d->Skv + j) * d->Hkv + g : (b * d->Hkv + g) * d->Skv + j) * w;
}

/* The mask's additive bias for row (b, h, i) into bias[0..T). */
static void mask_row(const attn_job *c, int64_t b, int64_t h, int64_t i, float *bias) {
    const red_attn_dims *d = &c->d;
    for (int64_t j = 0; j < d->T; j++) bias[j] = 0.0f;
    const kiln_tensor *m = c->mask;
    if (m) {
        int64_t full[3] = {b, h, i}, at = 0, last = m->dims[m->rank - 1];
        for (int r = 0; r < m->rank - 1; r++) {
            int64_t md = m->dims[r];
            at = at * md + (md == 1 ? 0 : full[3 - (m->rank - 1) + r]);
        }
        at *= last;
        for (int64_t j = 0; j < d->T; j++) {
            if (j >= last) bias[j] = -INFINITY; /* a short mask: the keys past it are masked */
            else if (m->dtype == KILN_DTYPE_BOOL) bias[j] = ((const uint8_t *)m->data)[at + j] ? 0.0f : -INFINITY;
            else bias[j] = ((const float *)m->data)[at + (last == 1 ? 0 : j)];
        }
    }
    if (c->causal)
        for (int64_t j = i + d->P + 1; j < d->T; j++) bias[j] = -INFINITY;
}

/* acc += w * v over n floats, in blocks of 8 (a fixed inner loop the compiler vectorizes; acc and
 * v are distinct buffers, so no store waits on a load as in the plain loop), then the tail. */
static void axpy(float *restrict acc, float w, const float *restrict v, int64_t n) {
    int64_t e = 0;
    for (; e + 8 <= n; e += 8)
        for (int l = 0; l < 8; l++) acc[e + l] += w * v[e + l];
    for (; e < n; e++) acc[e] += w * v[e];
}

/* Copies past and new keys (or values) into a present output (B, Hkv, T, width). */
static void write_present(const attn_job *c, bool is_v, float *out) {
    const red_attn_dims *d = &c->d;
    int64_t w = is_v ? d->Ev : d->E;
    for (int64_t b = 0; b < d->B; b++)
        for (int64_t g = 0; g < d->Hkv; g++)
            for (int64_t j = 0; j < d->T; j++) memcpy(out + ((b * d->Hkv + g) * d->T + j) * w, kv_row(c, is_v, b, g, j), sizeof(float) * (size_t)w);
}

static kiln_status attn_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                            kiln_tensor *out) {
    (void)state;
    (void)state_free;
    const red_attention_params *p = n->params;
    attn_job c = {0};
    KILN_TRY(red_attention_dims(n, in, &c.d));
    const red_attn_dims *d = &c.d;
    c.q = in[0]->data;
    c.k = in[1]->data;
    c.v = in[2]->data;
    c.mask = red_has_input(n, in, 3) ? in[3] : NULL;
    c.pk = red_has_input(n, in, 4) ? in[4]->data : NULL;
    c.pv = red_has_input(n, in, 5) ? in[5]->data : NULL;
    if ((c.pk == NULL) != (c.pv == NULL) || (c.mask && c.mask->rank < 1)) return KILN_STATUS_UNSUPPORTED;
    if (!c.pk) c.d.P = 0;
    c.causal = p->is_causal;
    c.scale = p->has_scale ? p->scale : (float)(1.0 / sqrt((double)d->E));
    int64_t group = d->Hq / d->Hkv;
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(2 * d->T + d->Ev + 1 + d->E * d->T, sizeof(float), &bytes));
    float *buf = kiln_malloc(bytes);
    if (!buf) return kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "attention scratch");
    float *score = buf, *bias = buf + d->T, *acc = bias + d->T, *kt = acc + d->Ev + 1;
    float *y = out[0].data;
    for (int64_t b = 0; b < d->B; b++)
        for (int64_t h = 0; h < d->Hq; h++) {
            int64_t g = h / group;
            /* this kv head's keys transposed, (E, T), once per head group: a row's scores are then E
             * vectorized axpys over the keys instead of T dot products of E */
            if (h % group == 0)
                for (int64_t j = 0; j < d->T; j++) {
                    const float *kr = kv_row(&c, false, b, g, j);
                    for (int64_t e = 0; e < d->E; e++) kt[e * d->T + j] = kr[e];
                }
            for (int64_t i = 0; i < d->Sq; i++) {
                const float *qr = c.q + (d->three_d ? (b * d->Sq + i) * d->Hq + h : (b * d->Hq + h) * d->Sq + i) * d->E;
                mask_row(&c, b, h, i, bias);
                for (int64_t j = 0; j < d->T; j++) score[j] = 0.0f;
                for (int64_t e = 0; e < d->E; e++) axpy(score, qr[e], kt + e * d->T, d->T);
                float mx = -INFINITY;
                for (int64_t j = 0; j < d->T; j++) {
                    score[j] = bias[j] == -INFINITY ? -INFINITY : score[j] * c.scale + bias[j];
                    mx = score[j] > mx ? score[j] : mx; /* fmaxf, inline (a NaN score is skipped either way) */
                }
                float *yr = y + (d->three_d ? (b * d->Sq + i) * d->Hq + h : (b * d->Hq + h) * d->Sq + i) * d->Ev;
                for (int64_t e = 0; e < d->Ev; e++) acc[e] = 0.0f;
                if (mx != -INFINITY) { /* else a row masked everywhere: zeros, as the reference */
                    float sum = 0.0f;
                    for (int64_t j = 0; j < d->T; j++) {
                        if (score[j] == -INFINITY) continue;
                        float w = expf(score[j] - mx);
                        sum += w;
                        axpy(acc, w, kv_row(&c, true, b, g, j), d->Ev);
                    }
                    for (int64_t e = 0; e < d->Ev; e++) acc[e] /= sum;
                }
                memcpy(yr, acc, sizeof(float) * (size_t)d->Ev);
            }
        }
    free(buf);
    if (n->n_outputs > 1 && out[1].data) write_present(&c, false, out[1].data);
    if (n->n_outputs > 2 && out[2].data) write_present(&c, true, out[2].data);
    kiln_cpu_report(n, out, "cpu");
    return KILN_STATUS_OK;
}

void kiln_cpu_register_attention(kiln_cpu_op *table) {
    table[KILN_OP_Attention] = (kiln_cpu_op){.supports = attn_supports, .run = attn_run, .kernel = "cpu"};
}
