/* rotary.c — parse and shape inference of RotaryEmbedding (opset 23,
 * https://onnx.ai/onnx/operators/onnx__RotaryEmbedding.html). Input X is (B, H, S, D), or
 * (B, S, H*D) with attribute num_heads; cos_cache/sin_cache are (max_pos, R/2) indexed by
 * position_ids (B, S), or (B, S, R/2) when position_ids is absent. R = rotary_embedding_dim
 * (default 0: the head size D); the first R values of each head are rotated, as two halves or
 * (interleaved) as even/odd pairs, the rest pass through. The output has X's shape.
 * The kernel is src/backends/ref/rotary.c. Tested by the node tests test_rotary_embedding*. */
#include "reduce_internal.h"

kiln_status kiln_parse_rotary(kiln_node *node, kiln_attrs *attrs) {
    RED_NEW_PARAMS(red_rotary_params, p);
    int64_t interleaved;
    KILN_TRY(kiln_attr_int(attrs, "interleaved", 0, &interleaved));
    KILN_TRY(kiln_attr_int(attrs, "rotary_embedding_dim", 0, &p->rotary_embedding_dim));
    KILN_TRY(kiln_attr_int(attrs, "num_heads", 0, &p->num_heads));
    p->interleaved = interleaved != 0;
    if (p->rotary_embedding_dim < 0 || p->rotary_embedding_dim % 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'rotary_embedding_dim' is %lld, expected an even value >= 0",
                               (long long)p->rotary_embedding_dim);
    if (p->num_heads < 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'num_heads' is %lld, expected > 0", (long long)p->num_heads);
    return KILN_STATUS_OK;
}

/* The layout of X: batch, sequence, heads, head size (all known at run time). */
kiln_status red_rotary_layout(const kiln_node *node, const kiln_tensor *x, int64_t *B, int64_t *S, int64_t *H, int64_t *D) {
    const red_rotary_params *p = node->params;
    char b[96];
    if (x->rank == 4) {
        *B = x->dims[0];
        *H = x->dims[1];
        *S = x->dims[2];
        *D = x->dims[3];
        return KILN_STATUS_OK;
    }
    if (x->rank != 3)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %s must be (B, H, S, D) or (B, S, H*D)",
                               kiln_dims_str(x->rank, x->dims, b, sizeof b));
    if (p->num_heads == 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "a 3-D input needs the attribute 'num_heads'");
    *B = x->dims[0];
    *S = x->dims[1];
    *H = p->num_heads;
    *D = kiln_dim_known(x->dims[2]) ? x->dims[2] / p->num_heads : KILN_DIM_UNKNOWN;
    if (kiln_dim_known(x->dims[2]) && x->dims[2] % p->num_heads)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "hidden size %lld is not a multiple of num_heads %lld",
                               (long long)x->dims[2], (long long)p->num_heads);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_rotary(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_rotary_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 3, 4));
    KILN_TRY(red_need_input(node, in, 0, "X"));
    KILN_TRY(red_need_input(node, in, 1, "cos_cache"));
    KILN_TRY(red_need_input(node, in, 2, "sin_cache"));
    const kiln_tensor *x = in[0], *cs = in[1], *sn = in[2];
    const kiln_tensor *pos = red_has_input(node, in, 3) ? in[3] : NULL;
    if (!kiln_dtype_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (cs->dtype != x->dtype) return kiln_node_bad_dtype(node, 1, cs->dtype);
    if (sn->dtype != x->dtype) return kiln_node_bad_dtype(node, 2, sn->dtype);
    if (pos && pos->dtype != KILN_DTYPE_I64) return kiln_node_bad_dtype(node, 3, pos->dtype);
    out[0].dtype = x->dtype;
    red_copy_shape(&out[0], x);
    if (!kiln_infer_ranks_known(node, in)) return KILN_STATUS_OK;
    int64_t B, S, H, D;
    KILN_TRY(red_rotary_layout(node, x, &B, &S, &H, &D));
    int64_t R = p->rotary_embedding_dim ? p->rotary_embedding_dim : D;
    char b1[96], b2[96];
    if (kiln_dim_known(D) && (R > D || R % 2))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "rotary dimension %lld must be even and at most the head size %lld",
                               (long long)R, (long long)D);
    int cache_rank = pos ? 2 : 3;
    for (int i = 1; i <= 2; i++) {
        const kiln_tensor *c = in[i];
        int64_t last = c->rank > 0 ? c->dims[c->rank - 1] : 0;
        if (c->rank != cache_rank || (kiln_dim_known(R) && kiln_dim_known(last) && last != R / 2))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s %s must be %s with last dim %lld (rotary dim / 2)",
                                   i == 1 ? "cos_cache" : "sin_cache", kiln_dims_str(c->rank, c->dims, b1, sizeof b1),
                                   pos ? "(max_position, R/2)" : "(B, S, R/2)", kiln_dim_known(R) ? (long long)R / 2 : -1LL);
    }
    if (pos && pos->rank != 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "position_ids %s must be (B, S) for input %s",
                               kiln_dims_str(pos->rank, pos->dims, b1, sizeof b1), kiln_dims_str(x->rank, x->dims, b2, sizeof b2));
    return KILN_STATUS_OK;
}
