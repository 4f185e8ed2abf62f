/* norm_attention.c — Attention (opsets 23-25), RotaryEmbedding and SwiGLU on the GPU; kernels
 * in norm_attention.cu. Attention is one fused kernel (tensor cores for F16/BF16 with head
 * size 64 or 128 on 16-byte aligned rows, an FP32 SIMT kernel for everything else: V head size
 * up to 512, Q/K head size while a tile fits in 48 KB, about 700): 3-D and 4-D Q/K/V, GQA, is_causal, attn_mask (bool, or float added; broadcast,
 * short last dim), scale, softcap, past_key/past_value (attended after them) with
 * present_key/present_value, nonpad_kv_seqlen and the opset 25 window sizes.
 * Refused: the qk_matmul_output output, V of another dtype than Q, masks of integer dtypes.
 * Semantics: src/backends/ref/attention.c, rotary.c, swiglu.c. */
#include "norm_internal.h"

#include "../../ops/reduce_internal.h"

#include <math.h>

/* ---- Attention ---- */

static const char *attention_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const char *why = norm_float_x(n, in);
    if (why) return why;
    kiln_dtype t = in[0]->dtype;
    if (in[1]->dtype != t || in[2]->dtype != t) return "K or V dtype differs from Q";
    if (norm_has_in(n, in, 3) && in[3]->dtype != KILN_DTYPE_BOOL && !norm_is_float(in[3]->dtype))
        return "attn_mask dtype (only bool, float32, float16, bfloat16)";
    if (n->n_outputs > 3 && n->outputs[3] >= 0) return "qk_matmul_output (output 3) is not produced by the fused kernel";
    /* the SIMT kernel's head-size limits (known shapes only; run checks again) */
    const kiln_tensor *q = in[0], *v = in[2];
    const red_attention_params *p = n->params;
    int64_t e = q->rank == 4 ? q->dims[3] : KILN_DIM_UNKNOWN, ev = v->rank == 4 ? v->dims[3] : KILN_DIM_UNKNOWN;
    if (q->rank == 3 && p->q_num_heads > 0 && q->dims[2] >= 0) e = q->dims[2] / p->q_num_heads;
    if (v->rank == 3 && p->kv_num_heads > 0 && v->dims[2] >= 0) ev = v->dims[2] / p->kv_num_heads;
    if (e >= 0 && ev >= 0 && !kiln_norm_attention_simt_fits(e, ev)) return "head sizes too large (V above 512, or Q/K and V rows over 48 KB)";
    return NULL;
}

/* Element strides (batch, head, sequence) of a 3-D (B, S, H*W) or 4-D (B, H, S, W) tensor. */
static void bhs_strides(bool three_d, int64_t H, int64_t S, int64_t W, int64_t *sb, int64_t *sh, int64_t *ss) {
    *sb = H * S * W;
    *sh = three_d ? W : S * W;
    *ss = three_d ? H * W : W;
}

/* attn_mask (rank 1..4) right-aligned against (B, Hq, Sq, T): strides, 0 where broadcast. */
static void mask_strides(const kiln_tensor *m, kiln_norm_attn_args *a) {
    int64_t str[KILN_MAX_RANK], full[3] = {0, 0, 0};
    kiln_contiguous_strides(m->rank, m->dims, str);
    for (int f = 0; f < 3; f++) {
        int d = f - (4 - m->rank);
        full[f] = d >= 0 && m->dims[d] != 1 ? str[d] : 0;
    }
    a->m_sb = full[0];
    a->m_sh = full[1];
    a->m_ss = full[2];
    a->m_len = m->dims[m->rank - 1];
}

static kiln_status attention_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const red_attention_params *p = n->params;
    red_attn_dims d;
    KILN_TRY(red_attention_dims(n, in, &d));
    const kiln_tensor *q = in[0], *k = in[1], *v = in[2];
    const kiln_tensor *mask = norm_has_in(n, in, 3) ? in[3] : NULL;
    const kiln_tensor *pk = norm_has_in(n, in, 4) ? in[4] : NULL, *pv = norm_has_in(n, in, 5) ? in[5] : NULL;
    const kiln_tensor *nonpad = norm_has_in(n, in, 6) ? in[6] : NULL;
    if (!kiln_norm_attention_simt_fits(d.E, d.Ev))
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "head sizes E = %lld, Ev = %lld are too large for the GPU attention kernel",
                               (long long)d.E, (long long)d.Ev);
    kiln_norm_attn_args a;
    memset(&a, 0, sizeof a);
    a.B = d.B;
    a.Hq = d.Hq;
    a.Hkv = d.Hkv;
    a.Sq = d.Sq;
    a.Skv = d.Skv;
    a.P = d.P;
    a.T = d.T;
    a.E = d.E;
    a.Ev = d.Ev;
    bhs_strides(d.three_d, d.Hq, d.Sq, d.E, &a.q_sb, &a.q_sh, &a.q_ss);
    bhs_strides(d.three_d, d.Hkv, d.Skv, d.E, &a.k_sb, &a.k_sh, &a.k_ss);
    bhs_strides(d.three_d, d.Hkv, d.Skv, d.Ev, &a.v_sb, &a.v_sh, &a.v_ss);
    bhs_strides(d.three_d, d.Hq, d.Sq, d.Ev, &a.y_sb, &a.y_sh, &a.y_ss);
    a.scale = p->has_scale ? p->scale : (float)(1.0 / sqrt((double)d.E));
    a.softcap = p->softcap;
    a.causal = p->is_causal;
    a.left_window = p->left_window;
    a.right_window = p->right_window;
    if (mask) {
        a.ct_mask = kiln_cuda_ctype(mask->dtype);
        mask_strides(mask, &a);
    }
    int ct = kiln_cuda_ctype(q->dtype);
    /* present_key / present_value: past then the new keys / values, (B, Hkv, T, E / Ev) */
    if (norm_has_out(n, out, 1))
        KILN_TRY(norm_check(kiln_norm_kv_concat(ct, pk ? pk->data : NULL, k->data, out[1].data, d.B, d.Hkv, d.P, d.Skv,
                                                d.E, a.k_sb, a.k_sh, a.k_ss, r->stream),
                            n));
    if (norm_has_out(n, out, 2))
        KILN_TRY(norm_check(kiln_norm_kv_concat(ct, pv ? pv->data : NULL, v->data, out[2].data, d.B, d.Hkv, d.P, d.Skv,
                                                d.Ev, a.v_sb, a.v_sh, a.v_ss, r->stream),
                            n));
    return norm_check(kiln_norm_attention(ct, q->data, k->data, v->data, pk ? pk->data : NULL, pv ? pv->data : NULL,
                                          mask ? mask->data : NULL, nonpad ? nonpad->data : NULL, out[0].data, &a,
                                          r->tactic, r->stream),
                      n);
}

/* ---- RotaryEmbedding ---- */

static const char *rotary_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return norm_float_x(n, in);
}

static kiln_status rotary_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const red_rotary_params *p = n->params;
    const kiln_tensor *x = in[0], *cs = in[1], *sn = in[2];
    const kiln_tensor *pos = norm_has_in(n, in, 3) ? in[3] : NULL;
    kiln_norm_rotary_args a;
    memset(&a, 0, sizeof a);
    KILN_TRY(red_rotary_layout(n, x, &a.B, &a.S, &a.H, &a.D));
    a.R = p->rotary_embedding_dim ? p->rotary_embedding_dim : a.D;
    int64_t half = a.R / 2;
    char b1[96], b2[96];
    bool same = cs->rank == sn->rank;
    for (int i = 0; same && i < cs->rank; i++) same = cs->dims[i] == sn->dims[i];
    if (!same || cs->dims[cs->rank - 1] != half ||
        (pos ? pos->dims[0] != a.B || pos->dims[1] != a.S : cs->dims[0] != a.B || cs->dims[1] != a.S))
        return kiln_node_error(n, KILN_STATUS_INVALID_ARGUMENT, "cos_cache %s and sin_cache %s do not match the input",
                               kiln_dims_str(cs->rank, cs->dims, b1, sizeof b1), kiln_dims_str(sn->rank, sn->dims, b2, sizeof b2));
    a.max_pos = pos ? cs->dims[0] : a.B * a.S;
    a.interleaved = p->interleaved;
    bhs_strides(x->rank == 3, a.H, a.S, a.D, &a.sb, &a.sh, &a.ss);
    return norm_check(kiln_norm_rotary(kiln_cuda_ctype(x->dtype), x->data, cs->data, sn->data, pos ? pos->data : NULL,
                                       out[0].data, &a, r->stream),
                      n);
}

/* ---- SwiGLU ---- */

static kiln_status swiglu_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const red_swiglu_params *p = n->params;
    return norm_check(kiln_norm_swiglu(kiln_cuda_ctype(in[0]->dtype), in[0]->data, in[1]->data, out[0].data,
                                       kiln_shape_count(in[0]->rank, in[0]->dims), p->alpha, r->stream),
                      n);
}

void kiln_cuda_norm_register_attention(kiln_cuda_op *table) {
    table[KILN_OP_Attention] = (kiln_cuda_op){attention_supports, attention_run, NULL, 0, "attention-fused"};
    table[KILN_OP_RotaryEmbedding] = (kiln_cuda_op){rotary_supports, rotary_run, NULL, 0, "rotary"};
    table[KILN_OP_SwiGLU] = (kiln_cuda_op){rotary_supports, swiglu_run, NULL, 0, "swiglu"};
}
