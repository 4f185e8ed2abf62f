/* linear_attention.c — parse and shape inference of LinearAttention (opset 27,
 * https://onnx.ai/onnx/operators/onnx__LinearAttention.html): a recurrent linear attention
 * with a (d_k x d_v) state per key/value head. Inputs query (B, T, Hq*d_k), key (B, T, Hkv*d_k),
 * value (B, T, Hkv*d_v), optional past_state (B, Hkv, d_k, d_v), decay (B, T, Hkv or Hkv*d_k;
 * required by the gated rules, refused by the others) and beta (B, T, Hkv or 1; required by the
 * delta rules, refused by the others). Outputs output (B, T, Hq*d_v) and present_state
 * (B, Hkv, d_k, d_v), of past_state's dtype (query's without it). Attributes q_num_heads,
 * kv_num_heads (required, Hq a multiple of Hkv), scale (0: 1/sqrt(d_k)), update_rule
 * (linear, gated, delta, gated_delta = default), chunk_size (a tuning hint, ignored).
 * The kernel is src/backends/ref/linear_attention.c. Tested by test_linear_attention_*. */
#include "reduce_internal.h"

kiln_status kiln_parse_linear_attention(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_linattn_params, p);
    char rule[32];
    int64_t chunk;
    KILN_TRY(kiln_attr_int(attrs, "q_num_heads", 0, &p->q_num_heads));
    KILN_TRY(kiln_attr_int(attrs, "kv_num_heads", 0, &p->kv_num_heads));
    KILN_TRY(kiln_attr_float(attrs, "scale", 0.0f, &p->scale));
    KILN_TRY(kiln_attr_int(attrs, "chunk_size", 64, &chunk));
    KILN_TRY(kiln_attr_string(attrs, "update_rule", "gated_delta", rule, sizeof rule));
    if (strcmp(rule, "linear") == 0) p->rule = RED_RULE_LINEAR;
    else if (strcmp(rule, "gated") == 0) p->rule = RED_RULE_GATED;
    else if (strcmp(rule, "delta") == 0) p->rule = RED_RULE_DELTA;
    else if (strcmp(rule, "gated_delta") == 0) p->rule = RED_RULE_GATED_DELTA;
    else return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'update_rule' is '%s', expected linear, gated, delta or gated_delta", rule);
    if (p->q_num_heads <= 0 || p->kv_num_heads <= 0 || p->q_num_heads % p->kv_num_heads)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                               "attributes 'q_num_heads' (%lld) and 'kv_num_heads' (%lld) must be positive, q a multiple of kv",
                               (long long)p->q_num_heads, (long long)p->kv_num_heads);
    return KILN_STATUS_OK;
}

static bool clash(int64_t a, int64_t b) { return kiln_dim_known(a) && kiln_dim_known(b) && a != b; }
static int64_t dim_div(int64_t a, int64_t b) { return kiln_dim_known(a) ? a / b : KILN_DIM_UNKNOWN; }
static int64_t dim_mul(int64_t a, int64_t b) { return kiln_dim_known(a) && kiln_dim_known(b) ? a * b : KILN_DIM_UNKNOWN; }

kiln_status kiln_infer_linear_attention(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_linattn_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 3, 6));
    KILN_TRY(red_need_input(node, in, 0, "query"));
    KILN_TRY(red_need_input(node, in, 1, "key"));
    KILN_TRY(red_need_input(node, in, 2, "value"));
    const kiln_tensor *q = in[0], *k = in[1], *v = in[2];
    const kiln_tensor *past = red_has_input(node, in, 3) ? in[3] : NULL;
    const kiln_tensor *decay = red_has_input(node, in, 4) ? in[4] : NULL;
    const kiln_tensor *beta = red_has_input(node, in, 5) ? in[5] : NULL;
    if (!kiln_dtype_is_float(q->dtype) || q->dtype == KILN_DTYPE_F64) return kiln_node_bad_dtype(node, 0, q->dtype);
    for (int i = 1; i < 6; i++) {
        if (!red_has_input(node, in, i)) continue;
        bool ok = i == 3 ? kiln_dtype_is_float(in[i]->dtype) && in[i]->dtype != KILN_DTYPE_F64 : in[i]->dtype == q->dtype;
        if (!ok) return kiln_node_bad_dtype(node, i, in[i]->dtype);
    }
    bool gating = p->rule == RED_RULE_GATED || p->rule == RED_RULE_GATED_DELTA;
    bool delta = p->rule == RED_RULE_DELTA || p->rule == RED_RULE_GATED_DELTA;
    if (gating != (decay != NULL))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "the update rule %s the decay input", gating ? "requires" : "forbids");
    if (delta != (beta != NULL))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "the update rule %s the beta input", delta ? "requires" : "forbids");
    out[0].dtype = q->dtype;
    if (node->n_outputs > 1) out[1].dtype = past ? past->dtype : q->dtype;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char b1[96], b2[96], b3[96];
    if (q->rank != 3 || k->rank != 3 || v->rank != 3)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "query %s, key %s and value %s must be rank 3 (B, T, H*D)",
                               kiln_dims_str(q->rank, q->dims, b1, sizeof b1), kiln_dims_str(k->rank, k->dims, b2, sizeof b2),
                               kiln_dims_str(v->rank, v->dims, b3, sizeof b3));
    int64_t Hq = p->q_num_heads, Hkv = p->kv_num_heads;
    int64_t dk = dim_div(q->dims[2], Hq), dv = dim_div(v->dims[2], Hkv);
    bool bad = (kiln_dim_known(q->dims[2]) && q->dims[2] % Hq) || (kiln_dim_known(v->dims[2]) && v->dims[2] % Hkv) ||
               clash(k->dims[2], dim_mul(dk, Hkv));
    for (int d = 0; d < 2; d++) bad = bad || clash(q->dims[d], k->dims[d]) || clash(q->dims[d], v->dims[d]);
    if (bad)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "query %s, key %s and value %s do not fit q_num_heads %lld and kv_num_heads %lld",
                               kiln_dims_str(q->rank, q->dims, b1, sizeof b1), kiln_dims_str(k->rank, k->dims, b2, sizeof b2),
                               kiln_dims_str(v->rank, v->dims, b3, sizeof b3), (long long)Hq, (long long)Hkv);
    int64_t state[4] = {q->dims[0], Hkv, dk, dv};
    if (past && (past->rank != 4 || clash(past->dims[0], state[0]) || clash(past->dims[1], Hkv) || clash(past->dims[2], dk) ||
                 clash(past->dims[3], dv)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "past_state %s must be %s",
                               kiln_dims_str(past->rank, past->dims, b1, sizeof b1), kiln_dims_str(4, state, b2, sizeof b2));
    if (decay && (decay->rank != 3 || clash(decay->dims[0], q->dims[0]) || clash(decay->dims[1], q->dims[1]) ||
                  (kiln_dim_known(decay->dims[2]) && decay->dims[2] != Hkv && clash(decay->dims[2], dim_mul(Hkv, dk)))))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "decay %s must be (B, T, %lld) or (B, T, %lld * d_k)",
                               kiln_dims_str(decay->rank, decay->dims, b1, sizeof b1), (long long)Hkv, (long long)Hkv);
    if (beta && (beta->rank != 3 || clash(beta->dims[0], q->dims[0]) || clash(beta->dims[1], q->dims[1]) ||
                 (kiln_dim_known(beta->dims[2]) && beta->dims[2] != Hkv && beta->dims[2] != 1)))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "beta %s must be (B, T, %lld) or (B, T, 1)",
                               kiln_dims_str(beta->rank, beta->dims, b1, sizeof b1), (long long)Hkv);
    out[0].rank = 3;
    out[0].dims[0] = q->dims[0];
    out[0].dims[1] = q->dims[1];
    out[0].dims[2] = dim_mul(Hq, dv);
    if (node->n_outputs > 1) {
        out[1].rank = 4;
        memcpy(out[1].dims, state, sizeof state);
    }
    return KILN_STATUS_OK;
}
