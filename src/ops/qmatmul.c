/* qmatmul.c — parse and shape inference of the integer matrix products:
 *   MatMulInteger  https://onnx.ai/onnx/operators/onnx__MatMulInteger.html
 *   QLinearMatMul  https://onnx.ai/onnx/operators/onnx__QLinearMatMul.html
 * with numpy.matmul shapes (1-D operands promoted and their dim dropped again, batch dims
 * broadcast), and the geometry the kernels in src/backends/ref/qmatmul.c share: where each
 * scale and zero point applies. A-side parameters are per tensor or per row ((M) or
 * (..., M, 1)), B-side ones per tensor or per column ((N) or (..., 1, N)), output ones per
 * tensor or broadcast to the output. Tested by test_matmulinteger*, test_qlinearmatmul*. */
#include "seq_internal.h"

kiln_status kiln_parse_qmatmul(kiln_node *node, kiln_attrs *attrs) {
    (void)attrs;
    node->params = NULL;
    return KILN_STATUS_OK;
}

/* numpy.matmul's output shape; unknown dims propagate. */
static kiln_status matmul_shape(const kiln_node *node, const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y) {
    char s1[160], s2[160];
    if (a->rank < 0 || b->rank < 0) {
        y->rank = -1;
        return KILN_STATUS_OK;
    }
    if (a->rank == 0 || b->rank == 0 || a->rank > KILN_MAX_RANK || b->rank > KILN_MAX_RANK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "A %s and B %s must have rank 1 to %d",
                               kiln_dims_str(a->rank, a->dims, s1, sizeof s1),
                               kiln_dims_str(b->rank, b->dims, s2, sizeof s2), KILN_MAX_RANK);
    int64_t ka = a->dims[a->rank - 1], kb = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
    if (ka >= 0 && kb >= 0 && ka != kb)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "A %s and B %s do not agree on K",
                               kiln_dims_str(a->rank, a->dims, s1, sizeof s1),
                               kiln_dims_str(b->rank, b->dims, s2, sizeof s2));
    int rb_a = a->rank > 2 ? a->rank - 2 : 0, rb_b = b->rank > 2 ? b->rank - 2 : 0, r;
    int64_t batch[KILN_MAX_RANK];
    KILN_TRY(kiln_broadcast_shape(rb_a, a->dims, rb_b, b->dims, &r, batch));
    int n = r + (a->rank > 1) + (b->rank > 1);
    if (n > KILN_MAX_RANK) return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "output rank %d", n);
    y->rank = 0;
    for (int i = 0; i < r; i++) y->dims[y->rank++] = batch[i];
    if (a->rank > 1) y->dims[y->rank++] = a->dims[a->rank - 2];
    if (b->rank > 1) y->dims[y->rank++] = b->dims[b->rank - 1];
    return KILN_STATUS_OK;
}

kiln_status kiln_seq_mm_geom(const kiln_node *node, const kiln_tensor *a, const kiln_tensor *b, seq_mm_geom *g) {
    kiln_tensor y;
    memset(&y, 0, sizeof y);
    KILN_TRY(matmul_shape(node, a, b, &y));
    int64_t ad[KILN_MAX_RANK + 1], bd[KILN_MAX_RANK + 1];
    int ra = a->rank < 2 ? 2 : a->rank, rb = b->rank < 2 ? 2 : b->rank;
    if (a->rank == 1) { ad[0] = 1; ad[1] = a->dims[0]; } else memcpy(ad, a->dims, sizeof(int64_t) * (size_t)a->rank);
    if (b->rank == 1) { bd[0] = b->dims[0]; bd[1] = 1; } else memcpy(bd, b->dims, sizeof(int64_t) * (size_t)b->rank);
    memset(g, 0, sizeof *g);
    g->M = ad[ra - 2];
    g->K = ad[ra - 1];
    g->N = bd[rb - 1];
    g->rank = (ra > rb ? ra : rb);
    if (g->rank > KILN_MAX_RANK) return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "rank %d", g->rank);
    int nb = g->rank - 2;
    /* batch dims of the output: the broadcast of both (already checked by matmul_shape) */
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (ra - 2)), ib = i - (nb - (rb - 2));
        int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
        g->dims[i] = da > db ? da : db;
    }
    g->dims[nb] = g->M;
    g->dims[nb + 1] = g->N;
    kiln_broadcast_strides(ra - 2, ad, nb, g->dims, g->a_bstride);
    kiln_broadcast_strides(rb - 2, bd, nb, g->dims, g->b_bstride);
    g->batch = kiln_shape_count(nb, g->dims);
    return KILN_STATUS_OK;
}

kiln_status kiln_seq_mm_param(const kiln_node *node, const kiln_tensor *p, seq_mm_side side, const seq_mm_geom *g,
                              const char *what, int64_t *strides) {
    char s1[160], s2[160];
    int64_t count = kiln_shape_count(p->rank, p->dims);
    int vr;
    int64_t vd[KILN_MAX_RANK];
    memset(strides, 0, sizeof(int64_t) * KILN_MAX_RANK);
    if (count == 1) return KILN_STATUS_OK;
    if (p->rank == 1) {
        vr = 2;
        vd[0] = side == SEQ_MM_A ? p->dims[0] : 1;
        vd[1] = side == SEQ_MM_A ? 1 : p->dims[0];
    } else {
        vr = p->rank;
        memcpy(vd, p->dims, sizeof(int64_t) * (size_t)p->rank);
    }
    bool ok = vr >= 2 && vr <= g->rank;
    if (ok && side == SEQ_MM_A) ok = vd[vr - 1] == 1;
    if (ok && side == SEQ_MM_B) ok = vd[vr - 2] == 1;
    for (int i = 0; ok && i < vr; i++) {
        int64_t full = g->dims[g->rank - vr + i];
        ok = vd[i] == full || vd[i] == 1;
    }
    if (!ok)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s %s does not fit the product %s (%s)", what,
                               kiln_dims_str(p->rank, p->dims, s1, sizeof s1),
                               kiln_dims_str(g->rank, g->dims, s2, sizeof s2),
                               side == SEQ_MM_A ? "per tensor or per row of A"
                               : side == SEQ_MM_B ? "per tensor or per column of B" : "per tensor or broadcast");
    kiln_broadcast_strides(vr, vd, g->rank, g->dims, strides);
    return KILN_STATUS_OK;
}

static bool is_q8(kiln_dtype t) { return t == KILN_DTYPE_I8 || t == KILN_DTYPE_U8; }
static bool is_scale(kiln_dtype t) { return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16; }
static bool known(const kiln_tensor *t) { return t && t->rank >= 0 && kiln_shape_count(t->rank, t->dims) >= 0; }

kiln_status kiln_infer_qmatmul(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    bool qlinear = node->op == KILN_OP_QLinearMatMul;
    /* input positions: A, B and (side, index) of every parameter */
    const int ia = 0, ib = qlinear ? 3 : 1;
    static const int q_params[] = {1, 2, 4, 5, 6, 7};
    static const seq_mm_side q_sides[] = {SEQ_MM_A, SEQ_MM_A, SEQ_MM_B, SEQ_MM_B, SEQ_MM_Y, SEQ_MM_Y};
    static const int i_params[] = {2, 3};
    static const seq_mm_side i_sides[] = {SEQ_MM_A, SEQ_MM_B};
    const int *params = qlinear ? q_params : i_params;
    const seq_mm_side *sides = qlinear ? q_sides : i_sides;
    int n_params = qlinear ? 6 : 2;
    KILN_TRY(qlinear ? kiln_node_check_arity(node, 8, 8) : kiln_node_check_arity(node, 2, 4));
    const kiln_tensor *a = in[ia], *b = in[ib];
    if (!is_q8(a->dtype)) return kiln_node_bad_dtype(node, ia, a->dtype);
    if (!is_q8(b->dtype)) return kiln_node_bad_dtype(node, ib, b->dtype);
    for (int k = 0; k < n_params; k++) {
        const kiln_tensor *p = seq_in(node, in, params[k]);
        if (!p) continue;
        bool is_zp = !qlinear || params[k] % 3 == 2 || params[k] == 7;
        kiln_dtype want = sides[k] == SEQ_MM_A ? a->dtype : sides[k] == SEQ_MM_B ? b->dtype : p->dtype;
        if (is_zp && (!is_q8(p->dtype) || p->dtype != want)) return kiln_node_bad_dtype(node, params[k], p->dtype);
        if (!is_zp && (!is_scale(p->dtype) || p->dtype != in[1]->dtype)) return kiln_node_bad_dtype(node, params[k], p->dtype);
    }
    out[0].dtype = qlinear ? in[7]->dtype : KILN_DTYPE_I32;
    KILN_TRY(matmul_shape(node, a, b, &out[0]));
    bool all = known(a) && known(b);
    for (int k = 0; k < n_params; k++) {
        const kiln_tensor *p = seq_in(node, in, params[k]);
        if (p && !known(p)) all = false;
    }
    if (!all) return KILN_STATUS_OK;
    seq_mm_geom g;
    int64_t strides[KILN_MAX_RANK];
    KILN_TRY(kiln_seq_mm_geom(node, a, b, &g));
    for (int k = 0; k < n_params; k++) {
        const kiln_tensor *p = seq_in(node, in, params[k]);
        if (p) KILN_TRY(kiln_seq_mm_param(node, p, sides[k], &g, "scale or zero point", strides));
    }
    return KILN_STATUS_OK;
}
