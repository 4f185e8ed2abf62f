/* qmatmul.c — reference kernels of MatMulInteger and QLinearMatMul
 * (https://onnx.ai/onnx/operators/onnx__MatMulInteger.html, onnx__QLinearMatMul.html).
 *
 * Both compute C = sum_k (a - a_zero_point) * (b - b_zero_point) exactly in integers; the sum
 * wraps to int32 as the spec allows ("accumulation may overflow if and only if in 32 bits").
 * MatMulInteger outputs C. QLinearMatMul requantizes
 *     y = saturate(round_half_even(C * (a_scale * b_scale / y_scale)) + y_zero_point)
 * with the multiplier computed in the scales' type (one rounding per operation) and the
 * product in double, as onnx/reference/ops/op_qlinear_matmul.py does.
 * Tested by test_matmulinteger*, test_qlinearmatmul*. */
#include "../../ops/seq_internal.h"

/* Offset of a parameter at output coordinates (batch index bi, m, n). */
static int64_t param_at(const seq_mm_geom *g, const int64_t *strides, int64_t bi, int64_t m, int64_t n) {
    int nb = g->rank - 2;
    int64_t off = m * strides[nb] + n * strides[nb + 1];
    for (int i = nb - 1; i >= 0; i--) {
        off += (bi % g->dims[i]) * strides[i];
        bi /= g->dims[i];
    }
    return off;
}

/* Offset (in matrices) of operand matrix for output batch index bi. */
static int64_t batch_at(const seq_mm_geom *g, const int64_t *bstride, int64_t bi) {
    int64_t off = 0;
    for (int i = g->rank - 3; i >= 0; i--) {
        off += (bi % g->dims[i]) * bstride[i];
        bi /= g->dims[i];
    }
    return off;
}

typedef struct qparam {
    const kiln_tensor *t; /* NULL: absent (zero point 0) */
    int64_t strides[KILN_MAX_RANK];
} qparam;

static kiln_status qparam_init(const kiln_node *node, const kiln_tensor *t, seq_mm_side side, const seq_mm_geom *g,
                               const char *what, qparam *p) {
    p->t = t;
    memset(p->strides, 0, sizeof p->strides);
    return t ? kiln_seq_mm_param(node, t, side, g, what, p->strides) : KILN_STATUS_OK;
}

static int64_t qparam_i64(const seq_mm_geom *g, const qparam *p, int64_t bi, int64_t m, int64_t n) {
    return p->t ? kiln_load_i64(p->t->dtype, p->t->data, param_at(g, p->strides, bi, m, n)) : 0;
}

static double qparam_f64(const seq_mm_geom *g, const qparam *p, int64_t bi, int64_t m, int64_t n) {
    return kiln_load_f64(p->t->dtype, p->t->data, param_at(g, p->strides, bi, m, n));
}

kiln_status kiln_ref_qmatmul(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    bool qlinear = node->op == KILN_OP_QLinearMatMul;
    const kiln_tensor *a = in[0], *b = in[qlinear ? 3 : 1];
    seq_mm_geom g;
    KILN_TRY(kiln_seq_mm_geom(node, a, b, &g));
    qparam za, zb, sa, sb, sy, zy;
    KILN_TRY(qparam_init(node, seq_in(node, in, 2), SEQ_MM_A, &g, "a_zero_point", &za));
    KILN_TRY(qparam_init(node, seq_in(node, in, qlinear ? 5 : 3), SEQ_MM_B, &g, "b_zero_point", &zb));
    int64_t lo = 0, hi = 0;
    kiln_dtype ts = KILN_DTYPE_F32;
    if (qlinear) {
        KILN_TRY(qparam_init(node, in[1], SEQ_MM_A, &g, "a_scale", &sa));
        KILN_TRY(qparam_init(node, in[4], SEQ_MM_B, &g, "b_scale", &sb));
        KILN_TRY(qparam_init(node, in[6], SEQ_MM_Y, &g, "y_scale", &sy));
        KILN_TRY(qparam_init(node, in[7], SEQ_MM_Y, &g, "y_zero_point", &zy));
        KILN_ASSERT(seq_quant_range(out[0].dtype, &lo, &hi));
        ts = in[1]->dtype;
    }
    int64_t M = g.M, K = g.K, N = g.N;
    for (int64_t bi = 0; bi < g.batch; bi++) {
        int64_t aoff = batch_at(&g, g.a_bstride, bi) * M * K, boff = batch_at(&g, g.b_bstride, bi) * K * N;
        for (int64_t m = 0; m < M; m++) {
            int64_t zam = qparam_i64(&g, &za, bi, m, 0);
            for (int64_t n = 0; n < N; n++) {
                int64_t zbn = qparam_i64(&g, &zb, bi, 0, n), acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (kiln_load_i64(a->dtype, a->data, aoff + m * K + k) - zam) *
                           (kiln_load_i64(b->dtype, b->data, boff + k * N + n) - zbn);
                int32_t c = (int32_t)(uint32_t)(uint64_t)acc; /* wraps like an int32 accumulator */
                int64_t o = (bi * M + m) * N + n;
                if (!qlinear) {
                    ((int32_t *)out[0].data)[o] = c;
                    continue;
                }
                double mult = seq_round_to(ts, qparam_f64(&g, &sa, bi, m, n) * qparam_f64(&g, &sb, bi, m, n));
                mult = seq_round_to(ts, mult / qparam_f64(&g, &sy, bi, m, n));
                kiln_store_i64(out[0].dtype, out[0].data, o,
                               seq_requantize((double)c * mult, qparam_i64(&g, &zy, bi, m, n), lo, hi));
            }
        }
    }
    return KILN_STATUS_OK;
}
