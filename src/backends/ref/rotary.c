/* rotary.c — reference kernel of RotaryEmbedding (parse and infer in src/ops/rotary.c). For
 * each (batch, position, head), with c, s the cache rows of that position and (x1, x2) the
 * pairs of the rotated part (halves, or even/odd with interleaved):
 *     out1 = c * x1 - s * x2,  out2 = s * x1 + c * x2   (in double, rounded once).
 * A position id outside the cache is a RUNTIME_ERROR naming it. Tested by test_rotary_embedding*. */
#include "../../ops/reduce_internal.h"


kiln_status kiln_ref_rotary(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_rotary_params *p = node->params;
    const kiln_tensor *x = in[0], *cs = in[1], *sn = in[2];
    const kiln_tensor *pos = red_has_input(node, in, 3) ? in[3] : NULL;
    kiln_dtype t = x->dtype;
    int64_t B, S, H, D;
    KILN_TRY(red_rotary_layout(node, x, &B, &S, &H, &D));
    int64_t R = p->rotary_embedding_dim ? p->rotary_embedding_dim : D, half = R / 2;
    char b1[96], b2[96];
    bool same = cs->rank == sn->rank;
    for (int d = 0; same && d < cs->rank; d++) same = cs->dims[d] == sn->dims[d];
    if (!same || cs->dims[cs->rank - 1] != half ||
        (pos ? pos->dims[0] != B || pos->dims[1] != S : cs->dims[0] != B || cs->dims[1] != S))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cos_cache %s and sin_cache %s do not match the input",
                               kiln_dims_str(cs->rank, cs->dims, b1, sizeof b1), kiln_dims_str(sn->rank, sn->dims, b2, sizeof b2));
    for (int64_t bi = 0; bi < B; bi++) {
        for (int64_t s = 0; s < S; s++) {
            int64_t row = bi * S + s;
            if (pos) {
                row = ((const int64_t *)pos->data)[bi * S + s];
                if (row < 0 || row >= cs->dims[0])
                    return kiln_node_error(node, KILN_STATUS_RUNTIME_ERROR, "position id %lld is outside the cache of %lld rows",
                                           (long long)row, (long long)cs->dims[0]);
            }
            for (int64_t h = 0; h < H; h++) {
                int64_t base = x->rank == 4 ? ((bi * H + h) * S + s) * D : ((bi * S + s) * H + h) * D;
                for (int64_t i = 0; i < half; i++) {
                    double c = kiln_load_f64(t, cs->data, row * half + i), sv = kiln_load_f64(t, sn->data, row * half + i);
                    int64_t i1 = p->interleaved ? base + 2 * i : base + i;
                    int64_t i2 = p->interleaved ? base + 2 * i + 1 : base + i + half;
                    double x1 = kiln_load_f64(t, x->data, i1), x2 = kiln_load_f64(t, x->data, i2);
                    red_store_f64(t, out[0].data, i1, c * x1 - sv * x2);
                    red_store_f64(t, out[0].data, i2, sv * x1 + c * x2);
                }
                size_t es = kiln_dtype_size(t);
                if (D > R)
                    memcpy((char *)out[0].data + (size_t)(base + R) * es, (const char *)x->data + (size_t)(base + R) * es,
                           (size_t)(D - R) * es);
            }
        }
    }
    return KILN_STATUS_OK;
}
