/* matmul.c — parse and shape inference of MatMul (https://onnx.ai/onnx/operators/onnx__MatMul.html:
 * numpy matmul, batch dims broadcast, 1-D operands promoted then their dim removed) and Gemm
 * (https://onnx.ai/onnx/operators/onnx__Gemm.html: Y = alpha * A' B' + beta * C, A' and B' maybe
 * transposed, C unidirectionally broadcast to (M, N), optional since opset 11).
 * Kernels in src/backends/ref/matmul.c. Tested by test_matmul*, test_gemm*. */
#include "nn_internal.h"

#include <string.h>

kiln_status kiln_parse_matmul(kiln_node *node, kiln_attrs *attrs) {
    kiln_matmul_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    p->alpha = p->beta = 1.0;
    if (node->op != KILN_OP_Gemm) return KILN_STATUS_OK;
    float alpha, beta;
    int64_t ta, tb, bc;
    KILN_TRY(kiln_attr_float(attrs, "alpha", 1.0f, &alpha));
    KILN_TRY(kiln_attr_float(attrs, "beta", 1.0f, &beta));
    KILN_TRY(kiln_attr_int(attrs, "transA", 0, &ta));
    KILN_TRY(kiln_attr_int(attrs, "transB", 0, &tb));
    KILN_TRY(kiln_attr_int(attrs, "broadcast", 0, &bc)); /* opset < 7; kiln always broadcasts */
    p->alpha = alpha;
    p->beta = beta;
    p->trans_a = ta != 0;
    p->trans_b = tb != 0;
    return KILN_STATUS_OK;
}

static bool matmul_dtype(kiln_dtype t) {
    return kiln_nn_is_float(t) || t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64 || t == KILN_DTYPE_U32 ||
           t == KILN_DTYPE_U64;
}

kiln_status kiln_matmul_resolve(const kiln_node *node, const kiln_tensor *a, const kiln_tensor *b,
                                kiln_matmul_dims *d, int *out_rank, int64_t *out_dims) {
    char s1[160], s2[160];
    if (a->rank < 1 || b->rank < 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "A %s and B %s must have rank >= 1",
                               kiln_dims_str(a->rank, a->dims, s1, sizeof s1),
                               kiln_dims_str(b->rank, b->dims, s2, sizeof s2));
    int ra = a->rank, rb = b->rank;
    d->m = ra == 1 ? 1 : a->dims[ra - 2];
    d->k = a->dims[ra - 1];
    int64_t kb = rb == 1 ? b->dims[0] : b->dims[rb - 2];
    d->n = rb == 1 ? 1 : b->dims[rb - 1];
    if (d->k >= 0 && kb >= 0 && d->k != kb)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "A %s and B %s: inner dims differ",
                               kiln_dims_str(a->rank, a->dims, s1, sizeof s1),
                               kiln_dims_str(b->rank, b->dims, s2, sizeof s2));
    if (d->k < 0) d->k = kb;
    int bra = ra > 2 ? ra - 2 : 0, brb = rb > 2 ? rb - 2 : 0;
    if (kiln_broadcast_shape(bra, a->dims, brb, b->dims, &d->batch_rank, d->batch))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "batch dims of A %s and B %s do not broadcast",
                               kiln_dims_str(a->rank, a->dims, s1, sizeof s1),
                               kiln_dims_str(b->rank, b->dims, s2, sizeof s2));
    int r = d->batch_rank;
    memcpy(out_dims, d->batch, sizeof(int64_t) * (size_t)r);
    if (ra > 1) out_dims[r++] = d->m;
    if (rb > 1) out_dims[r++] = d->n;
    *out_rank = r;
    if (kiln_shape_count(d->batch_rank, d->batch) >= 0) {
        kiln_broadcast_strides(bra, a->dims, d->batch_rank, d->batch, d->a_bstride);
        kiln_broadcast_strides(brb, b->dims, d->batch_rank, d->batch, d->b_bstride);
    }
    return KILN_STATUS_OK;
}

static kiln_status infer_gemm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_matmul_params *p = node->params;
    const kiln_tensor *a = in[0], *b = in[1], *c = node->n_declared > 2 ? in[2] : NULL;
    char s1[160], s2[160];
    if (a->rank != 2 || b->rank != 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "A %s and B %s must be matrices",
                               kiln_dims_str(a->rank, a->dims, s1, sizeof s1),
                               kiln_dims_str(b->rank, b->dims, s2, sizeof s2));
    int64_t m = a->dims[p->trans_a ? 1 : 0], ka = a->dims[p->trans_a ? 0 : 1];
    int64_t kb = b->dims[p->trans_b ? 1 : 0], n = b->dims[p->trans_b ? 0 : 1];
    if (ka >= 0 && kb >= 0 && ka != kb)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "A %s and B %s (transA %d, transB %d): inner dims differ",
                               kiln_dims_str(a->rank, a->dims, s1, sizeof s1),
                               kiln_dims_str(b->rank, b->dims, s2, sizeof s2), p->trans_a, p->trans_b);
    out[0].rank = 2;
    out[0].dims[0] = m;
    out[0].dims[1] = n;
    if (c) {
        bool bad = c->rank > 2;
        for (int i = 0; !bad && i < c->rank; i++) {
            int64_t cd = c->dims[c->rank - 1 - i], od = out[0].dims[1 - i];
            bad = cd >= 0 && od >= 0 && cd != 1 && cd != od;
        }
        if (bad)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "C %s does not broadcast to (%lld, %lld)",
                                   kiln_dims_str(c->rank, c->dims, s1, sizeof s1), (long long)m, (long long)n);
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_matmul(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    bool gemm = node->op == KILN_OP_Gemm;
    KILN_TRY(kiln_node_check_arity(node, 2, gemm ? 3 : 2));
    if (gemm && node->opset < 11 && (node->n_declared < 3 || !in[2]))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input C is required before opset 11");
    const kiln_tensor *a = in[0];
    if (!matmul_dtype(a->dtype)) return kiln_node_bad_dtype(node, 0, a->dtype);
    for (int i = 1; i < node->n_declared; i++)
        if (in[i] && in[i]->dtype != a->dtype) return kiln_node_bad_dtype(node, i, in[i]->dtype);
    out[0].dtype = a->dtype;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    if (gemm) return infer_gemm(node, in, out);
    kiln_matmul_dims d;
    return kiln_matmul_resolve(node, a, in[1], &d, &out[0].rank, out[0].dims);
}
