/* gemm_int8.c — GPU MatMulInteger and QLinearMatMul: cuBLASLt INT8 GEMM (int32 accumulation)
 * plus the family's own kernels for what it does not do.
 *
 * cuBLASLt's IMMA kernels take signed int8, A transposed and B not ("TN"), and dims and leading
 * dims in multiples of 4. So each operand is packed into scratch first: uint8 data shifted to
 * int8 (x - 128, the zero point shifted alike, so x - zp is unchanged), A as (M_pad, K_pad)
 * rows and B transposed to (N_pad, K_pad) rows, zeros in the padding. The GEMM gives
 * sum a'b'; the epilogue kernel subtracts the zero points through row / column sums,
 *     sum (a' - za')(b' - zb') = sum a'b' - zb' rowsum(a') - za' colsum(b') + K za' zb',
 * in wrapping int32 arithmetic (the reference's int32 wrap), and QLinearMatMul requantizes
 * exactly as the reference does. Zero points and scales are read on the device: per tensor,
 * per row of A, per column of B, and broadcast output parameters. Where cuBLASLt has no
 * algorithm, a plain dp4a kernel computes the same product.
 * Tested by tests/cuda/gemm_check.c against the reference backend. */
#include "gemm_internal.h"
#include "../../ops/seq_internal.h"

#include <string.h>

/* With int8 inputs and K <= 2^17 no int32 sum of products can overflow, so cuBLASLt's int32
 * accumulator and the reference's wrapped int64 sum agree. */
#define QMM_MAX_K ((int64_t)1 << 17)

typedef struct qmm_call {
    seq_mm_geom g;
    gemm_batch bp;
    bool folded;
    int64_t rows_a, count_a, count_b, m_pad, n_pad, k_pad;
    gemm_lt_key key;
    gemm_scratch sc;
    int sc_ws, sc_a, sc_b, sc_rs, sc_cs, sc_d;
    kiln_i8_mm_epi epi;
} qmm_call;

typedef struct qmm_state {
    gemm_lt_plan plan;
} qmm_state;

static void qmm_state_free(void *p) {
    qmm_state *s = p;
    gemm_lt_release(&s->plan);
    free(s);
}

static int64_t batch_count(const kiln_tensor *t) {
    int64_t c = 1;
    for (int i = 0; i + 2 < t->rank; i++) c *= t->dims[i];
    return c;
}

static kiln_status qparam(const kiln_node *n, const kiln_tensor *t, seq_mm_side side, const seq_mm_geom *g,
                          const char *what, kiln_i8_param *p) {
    memset(p, 0, sizeof *p);
    if (!t) return KILN_STATUS_OK;
    int64_t st[KILN_MAX_RANK];
    KILN_TRY(kiln_seq_mm_param(n, t, side, g, what, st));
    int nb = g->rank - 2;
    p->p = t->data;
    p->ct = kiln_cuda_ctype(t->dtype);
    for (int i = 0; i < nb; i++) p->b[i] = st[i];
    p->m = st[nb];
    p->n = st[nb + 1];
    return KILN_STATUS_OK;
}

static kiln_status qmm_setup(const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out, qmm_call *c) {
    memset(c, 0, sizeof *c);
    bool ql = n->op == KILN_OP_QLinearMatMul;
    const kiln_tensor *A = in[0], *B = in[ql ? 3 : 1];
    seq_mm_geom *g = &c->g;
    KILN_TRY(kiln_seq_mm_geom(n, A, B, g));
    int nb = g->rank - 2;
    if (g->K > QMM_MAX_K)
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "K = %lld above the GPU kernel's %lld (int32 overflow)",
                               (long long)g->K, (long long)QMM_MAX_K);
    gemm_batch_plan(nb, g->dims, g->a_bstride, g->b_bstride, g->M, g->N, g->K, false, &c->bp);
    c->count_a = batch_count(A);
    c->count_b = batch_count(B);
    /* one B over all of a contiguous A: the batch becomes rows of one product */
    c->folded = c->bp.outer == 1 && c->bp.inner > 1 && c->bp.b_inner == 0 && c->bp.a_inner == 1;
    c->rows_a = c->folded ? c->count_a * g->M : g->M;
    if (c->folded) c->count_a = 1;
    c->m_pad = gemm_round_up(c->rows_a, 4);
    c->n_pad = gemm_round_up(g->N, 4);
    c->k_pad = gemm_round_up(g->K, 16);

    c->sc_ws = gemm_scratch_add(&c->sc, GEMM_LT_WORKSPACE);
    c->sc_a = gemm_scratch_add(&c->sc, (size_t)(c->count_a * c->m_pad * c->k_pad));
    c->sc_b = gemm_scratch_add(&c->sc, (size_t)(c->count_b * c->n_pad * c->k_pad));
    c->sc_rs = gemm_scratch_add(&c->sc, (size_t)(c->count_a * c->m_pad) * 4);
    c->sc_cs = gemm_scratch_add(&c->sc, (size_t)(c->count_b * c->n_pad) * 4);
    int64_t d_mats = c->folded ? 1 : g->batch;
    c->sc_d = gemm_scratch_add(&c->sc, (size_t)(d_mats * c->m_pad * c->n_pad) * 4);

    /* D (m_pad, n_pad) = A' (m_pad, k_pad) . B'^T, B' stored (n_pad, k_pad): cuBLASLt's TN */
    gemm_lt_key *k = &c->key;
    KILN_ASSERT(gemm_lt_types(KILN_DTYPE_I8, k));
    k->trans_b = 1;
    k->m = c->m_pad;
    k->n = c->n_pad;
    k->k = c->k_pad;
    k->lda = k->ldb = c->k_pad;
    k->ldd = c->n_pad;
    k->batch = c->folded ? 1 : c->bp.inner;
    k->stride_a = c->bp.a_inner * c->m_pad * c->k_pad;
    k->stride_b = c->bp.b_inner * c->n_pad * c->k_pad;
    k->stride_d = c->m_pad * c->n_pad;
    k->align_a = k->align_b = k->align_d = 16; /* packed in 256-byte aligned scratch */

    kiln_i8_mm_epi *e = &c->epi;
    e->nb = nb;
    for (int i = 0; i < nb; i++) {
        e->batch[i] = g->dims[i];
        e->a_b[i] = g->a_bstride[i];
        e->b_b[i] = g->b_bstride[i];
    }
    e->m = g->M;
    e->n = g->N;
    e->k = g->K;
    e->d_b = (c->folded ? g->M : c->m_pad) * c->n_pad;
    e->d_m = c->n_pad;
    e->rs_mat = c->folded ? g->M : c->m_pad;
    e->cs_mat = c->n_pad;
    e->a_u8 = A->dtype == KILN_DTYPE_U8;
    e->b_u8 = B->dtype == KILN_DTYPE_U8;
    e->qlinear = ql;
    e->y_ct = kiln_cuda_ctype(out[0].dtype);
    KILN_TRY(qparam(n, seq_in(n, in, 2), SEQ_MM_A, g, "a_zero_point", &e->za));
    KILN_TRY(qparam(n, seq_in(n, in, ql ? 5 : 3), SEQ_MM_B, g, "b_zero_point", &e->zb));
    if (ql) {
        e->scale_ct = kiln_cuda_ctype(in[1]->dtype);
        KILN_TRY(qparam(n, in[1], SEQ_MM_A, g, "a_scale", &e->sa));
        KILN_TRY(qparam(n, in[4], SEQ_MM_B, g, "b_scale", &e->sb));
        KILN_TRY(qparam(n, in[6], SEQ_MM_Y, g, "y_scale", &e->sy));
        KILN_TRY(qparam(n, in[7], SEQ_MM_Y, g, "y_zero_point", &e->zy));
    }
    return KILN_STATUS_OK;
}

static kiln_status qmm_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    if (kiln_shape_count(out[0].rank, out[0].dims) == 0) return KILN_STATUS_OK;
    bool ql = n->op == KILN_OP_QLinearMatMul;
    const kiln_tensor *A = in[0], *B = in[ql ? 3 : 1];
    qmm_call c;
    KILN_TRY(qmm_setup(n, in, out, &c));
    KILN_TRY(gemm_scratch_get(r, &c.sc));
    int8_t *pa = gemm_scratch_at(&c.sc, c.sc_a), *pb = gemm_scratch_at(&c.sc, c.sc_b);
    int32_t *rs = gemm_scratch_at(&c.sc, c.sc_rs), *cs = gemm_scratch_at(&c.sc, c.sc_cs);
    int32_t *d = gemm_scratch_at(&c.sc, c.sc_d);
    const seq_mm_geom *g = &c.g;
    cudaStream_t s = r->stream;
    KILN_TRY(kiln_cuda_check(kiln_i8_pack(pa, A->data, A->dtype == KILN_DTYPE_U8, c.count_a, c.rows_a, g->K, c.m_pad,
                                          c.k_pad, s),
                             n, "packing A"));
    KILN_TRY(kiln_cuda_check(
        kiln_i8_pack_t(pb, B->data, B->dtype == KILN_DTYPE_U8, c.count_b, g->K, g->N, c.k_pad, c.n_pad, s), n,
        "packing B"));
    KILN_TRY(kiln_cuda_check(kiln_i8_row_sums(rs, pa, c.count_a * c.m_pad, c.k_pad, s), n, "row sums of A"));
    KILN_TRY(kiln_cuda_check(kiln_i8_row_sums(cs, pb, c.count_b * c.n_pad, c.k_pad, s), n, "column sums of B"));

    int64_t a_mat = c.m_pad * c.k_pad, b_mat = c.n_pad * c.k_pad, d_mat = c.m_pad * c.n_pad;
    int64_t per_call = c.folded ? 1 : c.bp.inner;
    if (g->K == 0) {
        size_t bytes = (size_t)((c.folded ? 1 : g->batch) * d_mat) * 4;
        KILN_TRY(kiln_cuda_check(cudaMemsetAsync(d, 0, bytes, s), n, "zeroing the products"));
    } else {
        qmm_state *st = gemm_state(r, sizeof *st, qmm_state_free);
        if (!st) return KILN_STATUS_OUT_OF_MEMORY;
        c.key.tactic = r->tactic;
        bool lt_ok = gemm_lt_prepare(r->lt, n, &c.key, &st->plan) == KILN_STATUS_OK;
        if (!lt_ok) kiln_clear_error();
        int32_t one = 1, zero = 0;
        for (int64_t o = 0; o < c.bp.outer; o++) {
            int64_t ai, bi;
            gemm_batch_offsets(&c.bp, o, &ai, &bi);
            const int8_t *xa = pa + ai * a_mat, *yb = pb + bi * b_mat;
            int32_t *dd = d + o * per_call * d_mat;
            if (lt_ok)
                KILN_TRY(gemm_lt_run(r->lt, n, &st->plan, &one, xa, yb, &zero, NULL, dd, NULL,
                                     gemm_scratch_at(&c.sc, c.sc_ws), s));
            else
                KILN_TRY(kiln_cuda_check(kiln_i8_gemm_xyt(dd, xa, yb, per_call, c.m_pad, c.n_pad, c.k_pad, c.n_pad,
                                                          c.key.stride_a, c.key.stride_b, d_mat, s),
                                         n, "int8 product"));
        }
    }
    return kiln_cuda_check(kiln_i8_mm_epilogue(out[0].data, d, rs, cs, c.epi, s), n, "zero points and requantization");
}

typedef struct qmm_tune_ctx {
    gemm_tune_run tr;
    const kiln_node *n;
    kiln_tensor *const *in;
    kiln_tensor *out;
} qmm_tune_ctx;

static kiln_status qmm_tune_one(void *ctx, int i) {
    qmm_tune_ctx *t = ctx;
    t->tr.r.tactic = i;
    return qmm_run(&t->tr.r, t->n, t->in, t->out);
}

static kiln_status qmm_tune(kiln_cuda_tune *tune, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                            int *tactic) {
    *tactic = -1;
    if (kiln_shape_count(out[0].rank, out[0].dims) <= 0) return KILN_STATUS_OK;
    qmm_call c;
    KILN_TRY(qmm_setup(n, in, out, &c));
    if (c.g.K == 0) return KILN_STATUS_OK;
    int count = gemm_lt_candidates(tune->lt, &c.key, GEMM_TUNE_CANDIDATES);
    qmm_tune_ctx t = {.n = n, .in = in, .out = out};
    return gemm_tune_pick(tune, &c.key, kiln_op_name(n->op), count, qmm_tune_one, &t, &t.tr, tactic);
}

static bool is_q8(const kiln_tensor *t) { return t && (t->dtype == KILN_DTYPE_I8 || t->dtype == KILN_DTYPE_U8); }

static const char *qmm_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    bool ql = n->op == KILN_OP_QLinearMatMul;
    if (!is_q8(in[0]) || !is_q8(in[ql ? 3 : 1])) return "A and B must be int8 or uint8";
    if (n->act.kind != KILN_ACT_NONE) return "a fused activation on an integer product";
    if (ql) {
        kiln_dtype st = in[1]->dtype;
        if (st != KILN_DTYPE_F32 && st != KILN_DTYPE_F16 && st != KILN_DTYPE_BF16) return "scale dtype";
        if (out->dtype != KILN_DTYPE_I8 && out->dtype != KILN_DTYPE_U8) return "output dtype (int8 or uint8)";
    } else if (out->dtype != KILN_DTYPE_I32) {
        return "output dtype (int32)";
    }
    return NULL;
}

void gemm_register_int8(kiln_cuda_op *table) {
    table[KILN_OP_MatMulInteger] =
        (kiln_cuda_op){.supports = qmm_supports, .run = qmm_run, .tune = qmm_tune, .kernel = "cublasLt-int8"};
    table[KILN_OP_QLinearMatMul] =
        (kiln_cuda_op){.supports = qmm_supports, .run = qmm_run, .tune = qmm_tune, .kernel = "cublasLt-int8"};
}
