/* attention.c — parse and shape inference of Attention (opsets 23, 24, 25,
 * https://onnx.ai/onnx/operators/onnx__Attention.html): scaled dot-product attention.
 * Q, K, V are 4-D (B, heads, seq, head_size) or 3-D (B, seq, heads * head_size) with the
 * attributes q_num_heads / kv_num_heads; q heads may be a multiple of kv heads (GQA, each kv
 * head serving consecutive q heads). Optional inputs: attn_mask (bool: attend where true, or
 * an additive bias; broadcast right-aligned to (B, Hq, Sq, T), its last dim padded with
 * "masked" up to T), past_key / past_value (B, Hkv, P, E / Ev), nonpad_kv_seqlen (opset 24,
 * (B,) int64). Outputs: Y, present_key / present_value (past concatenated with K / V),
 * qk_matmul_output (B, Hq, Sq, T), chosen by qk_matmul_output_mode. Attributes is_causal
 * (bottom-right aligned), scale, softcap, softmax_precision, left/right_window_size (opset 25).
 * The kernel is src/backends/ref/attention.c. Tested by the node tests test_attention_*. */
#include "reduce_internal.h"

kiln_status kiln_parse_attention(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_attention_params, p);
    int64_t causal, mode, prec;
    KILN_TRY(kiln_attr_int(attrs, "is_causal", 0, &causal));
    KILN_TRY(kiln_attr_int(attrs, "q_num_heads", 0, &p->q_num_heads));
    KILN_TRY(kiln_attr_int(attrs, "kv_num_heads", 0, &p->kv_num_heads));
    KILN_TRY(kiln_attr_int(attrs, "qk_matmul_output_mode", 0, &mode));
    KILN_TRY(kiln_attr_float(attrs, "softcap", 0.0f, &p->softcap));
    KILN_TRY(kiln_attr_int(attrs, "softmax_precision", 0, &prec));
    p->has_scale = kiln_attr_has(attrs, "scale");
    KILN_TRY(kiln_attr_float(attrs, "scale", 0.0f, &p->scale));
    p->left_window = p->right_window = -1;
    if (node->opset >= 25) {
        KILN_TRY(kiln_attr_int(attrs, "left_window_size", -1, &p->left_window));
        KILN_TRY(kiln_attr_int(attrs, "right_window_size", -1, &p->right_window));
    }
    p->is_causal = causal != 0;
    if (mode < 0 || mode > 3)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'qk_matmul_output_mode' is %lld, expected 0 to 3",
                               (long long)mode);
    p->qk_matmul_output_mode = (int)mode;
    if (prec != 0 && prec != KILN_DTYPE_F32 && prec != KILN_DTYPE_F16 && prec != KILN_DTYPE_F64 && prec != KILN_DTYPE_BF16)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'softmax_precision' is %lld, expected 1, 10, 11 or 16",
                               (long long)prec);
    p->softmax_precision = (kiln_dtype)prec;
    if (p->left_window < -1 || p->right_window < -1)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "window sizes (%lld, %lld) must be -1 or >= 0",
                               (long long)p->left_window, (long long)p->right_window);
    if (p->q_num_heads < 0 || p->kv_num_heads < 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attributes 'q_num_heads' and 'kv_num_heads' must be positive");
    return KILN_STATUS_OK;
}

static bool clash(int64_t a, int64_t b) { return kiln_dim_known(a) && kiln_dim_known(b) && a != b; }
static int64_t dim_div(int64_t a, int64_t b) { return kiln_dim_known(a) && b > 0 ? a / b : KILN_DIM_UNKNOWN; }
static int64_t dim_mul(int64_t a, int64_t b) { return kiln_dim_known(a) && kiln_dim_known(b) ? a * b : KILN_DIM_UNKNOWN; }
static int64_t dim_add(int64_t a, int64_t b) { return kiln_dim_known(a) && kiln_dim_known(b) ? a + b : KILN_DIM_UNKNOWN; }
static int64_t dim_pick(int64_t a, int64_t b) { return kiln_dim_known(a) ? a : b; }

kiln_status red_attention_dims(const kiln_node *node, kiln_tensor *const *in, red_attn_dims *d) {
    const red_attention_params *p = node->params;
    const kiln_tensor *q = in[0], *k = in[1], *v = in[2];
    const kiln_tensor *pk = red_has_input(node, in, 4) ? in[4] : NULL;
    const kiln_tensor *pv = red_has_input(node, in, 5) ? in[5] : NULL;
    const kiln_tensor *mask = red_has_input(node, in, 3) ? in[3] : NULL;
    const kiln_tensor *nonpad = red_has_input(node, in, 6) ? in[6] : NULL;
    char b1[96], b2[96], b3[96];
    memset(d, 0, sizeof *d);
    if ((q->rank != 3 && q->rank != 4) || k->rank != q->rank || v->rank != q->rank)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "Q %s, K %s and V %s must all be 3-D or all 4-D",
                               kiln_dims_str(q->rank, q->dims, b1, sizeof b1), kiln_dims_str(k->rank, k->dims, b2, sizeof b2),
                               kiln_dims_str(v->rank, v->dims, b3, sizeof b3));
    d->three_d = q->rank == 3;
    bool bad;
    if (d->three_d) {
        if (p->q_num_heads <= 0 || p->kv_num_heads <= 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "3-D inputs need the attributes 'q_num_heads' and 'kv_num_heads'");
        d->B = q->dims[0];
        d->Hq = p->q_num_heads;
        d->Sq = q->dims[1];
        d->E = dim_div(q->dims[2], d->Hq);
        d->Hkv = p->kv_num_heads;
        d->Skv = dim_pick(k->dims[1], v->dims[1]);
        d->Ev = dim_div(v->dims[2], d->Hkv);
        bad = (kiln_dim_known(q->dims[2]) && q->dims[2] % d->Hq) || (kiln_dim_known(v->dims[2]) && v->dims[2] % d->Hkv) ||
              clash(k->dims[2], dim_mul(d->E, d->Hkv)) || clash(k->dims[1], v->dims[1]);
    } else {
        d->B = q->dims[0];
        d->Hq = q->dims[1];
        d->Sq = q->dims[2];
        d->E = dim_pick(q->dims[3], k->dims[3]);
        d->Hkv = dim_pick(k->dims[1], v->dims[1]);
        d->Skv = dim_pick(k->dims[2], v->dims[2]);
        d->Ev = v->dims[3];
        bad = clash(q->dims[3], k->dims[3]) || clash(k->dims[1], v->dims[1]) || clash(k->dims[2], v->dims[2]);
    }
    bad = bad || clash(q->dims[0], k->dims[0]) || clash(q->dims[0], v->dims[0]);
    if (!bad && kiln_dim_known(d->Hq) && kiln_dim_known(d->Hkv) && (d->Hkv == 0 || d->Hq % d->Hkv)) bad = true;
    if (bad)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "Q %s, K %s and V %s do not agree on batch, heads (q a multiple of kv) and head sizes",
                               kiln_dims_str(q->rank, q->dims, b1, sizeof b1), kiln_dims_str(k->rank, k->dims, b2, sizeof b2),
                               kiln_dims_str(v->rank, v->dims, b3, sizeof b3));
    if ((pk != NULL) != (pv != NULL))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "past_key and past_value must be given together");
    if (nonpad && pk) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "nonpad_kv_seqlen cannot be combined with past_key");
    d->P = 0;
    if (pk) {
        if (pk->rank != 4 || pv->rank != 4 || clash(pk->dims[0], d->B) || clash(pk->dims[1], d->Hkv) || clash(pk->dims[3], d->E) ||
            clash(pv->dims[0], d->B) || clash(pv->dims[1], d->Hkv) || clash(pv->dims[2], pk->dims[2]) || clash(pv->dims[3], d->Ev))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "past_key %s and past_value %s must be (B, Hkv, P, E) and (B, Hkv, P, Ev)",
                                   kiln_dims_str(pk->rank, pk->dims, b1, sizeof b1), kiln_dims_str(pv->rank, pv->dims, b2, sizeof b2));
        d->P = dim_pick(pk->dims[2], pv->dims[2]);
    }
    d->T = dim_add(d->P, d->Skv);
    if (nonpad && (nonpad->dtype != KILN_DTYPE_I64 || nonpad->rank != 1 || clash(nonpad->dims[0], d->B)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "nonpad_kv_seqlen %s must be (B,) int64",
                               kiln_dims_str(nonpad->rank, nonpad->dims, b1, sizeof b1));
    if (mask) {
        int64_t full[4] = {d->B, d->Hq, d->Sq, d->T};
        bad = mask->rank < 1 || mask->rank > 4;
        for (int i = 0; !bad && i < mask->rank; i++) {
            int64_t md = mask->dims[i], fd = full[4 - mask->rank + i];
            if (i == mask->rank - 1) bad = kiln_dim_known(md) && kiln_dim_known(fd) && md > fd;
            else bad = md != 1 && clash(md, fd);
        }
        if (bad)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "attn_mask %s does not broadcast to %s",
                                   kiln_dims_str(mask->rank, mask->dims, b1, sizeof b1), kiln_dims_str(4, full, b2, sizeof b2));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_attention(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 3, node->opset >= 24 ? 7 : 6));
    KILN_TRY(red_need_input(node, in, 0, "Q"));
    KILN_TRY(red_need_input(node, in, 1, "K"));
    KILN_TRY(red_need_input(node, in, 2, "V"));
    const kiln_tensor *q = in[0];
    if (!kiln_dtype_is_float(q->dtype)) return kiln_node_bad_dtype(node, 0, q->dtype);
    if (in[1]->dtype != q->dtype) return kiln_node_bad_dtype(node, 1, in[1]->dtype);
    if (!kiln_dtype_is_float(in[2]->dtype)) return kiln_node_bad_dtype(node, 2, in[2]->dtype);
    if (red_has_input(node, in, 3) && !red_dtype_in(in[3]->dtype, RED_T_NUM | RED_T_BOOL)) return kiln_node_bad_dtype(node, 3, in[3]->dtype);
    if (red_has_input(node, in, 4) && in[4]->dtype != q->dtype) return kiln_node_bad_dtype(node, 4, in[4]->dtype);
    if (red_has_input(node, in, 5) && in[5]->dtype != in[2]->dtype) return kiln_node_bad_dtype(node, 5, in[5]->dtype);
    if (red_has_input(node, in, 6) && in[6]->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 6, in[6]->dtype);
    kiln_dtype types[4] = {q->dtype, q->dtype, in[2]->dtype, q->dtype};
    for (int j = 0; j < node->n_outputs && j < 4; j++) out[j].dtype = types[j];
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    red_attn_dims d;
    KILN_TRY(red_attention_dims(node, in, &d));
    if (d.three_d) {
        out[0].rank = 3;
        out[0].dims[0] = d.B;
        out[0].dims[1] = d.Sq;
        out[0].dims[2] = dim_mul(d.Hq, d.Ev);
    } else {
        out[0].rank = 4;
        int64_t y[4] = {d.B, d.Hq, d.Sq, d.Ev};
        memcpy(out[0].dims, y, sizeof y);
    }
    int64_t shapes[3][4] = {{d.B, d.Hkv, d.T, d.E}, {d.B, d.Hkv, d.T, d.Ev}, {d.B, d.Hq, d.Sq, d.T}};
    for (int j = 1; j < node->n_outputs && j < 4; j++) {
        out[j].rank = 4;
        memcpy(out[j].dims, shapes[j - 1], sizeof shapes[0]);
    }
    return KILN_STATUS_OK;
}
