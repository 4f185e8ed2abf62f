/* gemm.c — GPU MatMul, Gemm and kiln.FusedMatMul (MatMul + bias on the last axis + node->act)
 * through cuBLASLt, and the family's registration (kiln_cuda_register_gemm).
 *
 * Floats (f32 exact FP32, f16/bf16 with FP32 accumulation, f64): one cuBLASLt call per group of
 * batch matrices that cuBLASLt's strided batching can express; batch dims that broadcast B
 * (weights) over a contiguous A fold into the rows of one large product (the common
 * (batch, seq, K) x (K, N) case). Bias and Relu/GeluTanh run as cuBLASLt epilogues; other
 * activations after the product (kiln_cuda_apply_act). Gemm's C: a row vector (any scalar or
 * (N) / (1, N) shape) becomes the bias (times beta), a full (M, N) matrix is cuBLASLt's C, and a
 * column (M, 1) is broadcast into scratch first. Integer MatMul/Gemm (int32/int64/uint32/uint64)
 * run a plain wrap-around kernel. The tune hook times cuBLASLt's heuristic candidates.
 * Tested by tests/cuda/gemm_check.c against the reference backend. */
#include "gemm_internal.h"
#include "../../ops/nn_internal.h"

#include <string.h>

/* Everything one float product node needs, resolved from its inputs. */
typedef struct mm_call {
    gemm_lt_key key;
    gemm_batch bp;
    const void *a, *b, *c, *bias; /* c: cuBLASLt's C (key.use_c); bias: last-axis vector or NULL */
    void *d;
    float alpha32, beta32;
    double alpha64, beta64;
    bool act_in_epilogue;
    /* scratch pieces: workspace, prepared bias vector / C matrix */
    gemm_scratch sc;
    int sc_ws, sc_vec, sc_mat;
    /* C preparation to enqueue once scratch is known */
    const void *c_src;
    int64_t c_rows, c_row, c_col;
    double c_scale;
} mm_call;

typedef struct mm_state {
    gemm_lt_plan plan;
} mm_state;

static void mm_state_free(void *p) {
    mm_state *s = p;
    gemm_lt_release(&s->plan);
    free(s);
}

static int mm_epilogue(bool bias, kiln_act_kind act, bool *act_done) {
    *act_done = true;
    if (act == KILN_ACT_RELU) return bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    if (act == KILN_ACT_GELU_TANH) return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU; /* tanh form */
    *act_done = act == KILN_ACT_NONE;
    return bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

/* Fills the key's shape fields for D (m, n) = op(A) op(B) with the given row lengths. */
static void mm_key_shape(mm_call *c, kiln_dtype t, bool ta, bool tb, int64_t lda, int64_t ldb) {
    size_t es = kiln_dtype_size(t);
    gemm_lt_key *k = &c->key;
    const gemm_batch *p = &c->bp;
    k->trans_a = ta;
    k->trans_b = tb;
    k->m = p->m;
    k->n = p->n;
    k->k = p->k;
    k->lda = lda;
    k->ldb = ldb;
    k->ldd = p->n;
    k->batch = p->inner;
    k->stride_a = p->a_inner * p->a_mat;
    k->stride_b = p->b_inner * p->b_mat;
    k->stride_d = p->m * p->n;
    bool looped = p->outer > 1;
    k->align_a = gemm_align(c->a, lda * (int64_t)es, looped ? p->a_mat * (int64_t)es : 0);
    k->align_b = gemm_align(c->b, ldb * (int64_t)es, looped ? p->b_mat * (int64_t)es : 0);
    k->align_d = gemm_align(c->d, p->n * (int64_t)es, p->m * p->n * (int64_t)es);
}

/* Resolves a float MatMul / FusedMatMul / Gemm node into c (no device work yet). */
static kiln_status mm_setup(const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out, bool tf32, mm_call *c) {
    memset(c, 0, sizeof *c);
    const kiln_tensor *A = in[0], *B = in[1];
    kiln_dtype t = A->dtype;
    size_t es = kiln_dtype_size(t);
    KILN_ASSERT(gemm_lt_types(t, &c->key));
    if (tf32 && t == KILN_DTYPE_F32) c->key.compute = CUBLAS_COMPUTE_32F_FAST_TF32; /* KILN_PRECISION_TF32 */
    c->a = A->data;
    c->b = B->data;
    c->d = out[0].data;
    c->alpha32 = 1.0f;
    c->alpha64 = 1.0;
    c->sc_ws = gemm_scratch_add(&c->sc, GEMM_LT_WORKSPACE);
    c->sc_vec = c->sc_mat = -1;
    bool ta = false, tb = false;
    if (n->op == KILN_OP_Gemm) {
        const kiln_matmul_params *p = n->params;
        ta = p->trans_a;
        tb = p->trans_b;
        int64_t M = out[0].dims[0], N = out[0].dims[1], K = A->dims[ta ? 0 : 1];
        gemm_batch_plan(0, NULL, NULL, NULL, M, N, K, false, &c->bp);
        c->alpha32 = (float)p->alpha;
        c->alpha64 = p->alpha;
        const kiln_tensor *C = n->n_declared > 2 ? in[2] : NULL;
        if (C && p->beta != 0 && M * N > 0) {
            int64_t cs[2] = {0, 0};
            kiln_broadcast_strides(C->rank, C->dims, 2, out[0].dims, cs);
            c->c_src = C->data;
            c->c_scale = p->beta;
            c->c_row = cs[0];
            c->c_col = cs[1];
            if (cs[0] == 0 || M == 1) {
                /* the same row for every output row: cuBLASLt's bias (beta applied first) */
                bool direct = p->beta == 1.0 && (cs[1] == 1 || N == 1) && gemm_align(C->data, 0, 0) >= 16;
                if (direct) {
                    c->bias = C->data;
                    c->c_src = NULL;
                } else {
                    c->sc_vec = gemm_scratch_add(&c->sc, (size_t)N * es);
                    c->c_rows = 1;
                }
            } else if (cs[0] == N && cs[1] == 1) {
                c->c = C->data;
                c->key.use_c = 1;
                c->beta32 = (float)p->beta;
                c->beta64 = p->beta;
                c->c_src = NULL;
            } else {
                c->sc_mat = gemm_scratch_add(&c->sc, (size_t)(M * N) * es);
                c->c_rows = M;
                c->key.use_c = 1;
                c->beta32 = 1.0f; /* beta applied while broadcasting */
                c->beta64 = 1.0;
            }
        }
        mm_key_shape(c, t, ta, tb, A->dims[1], B->dims[1]);
    } else {
        kiln_matmul_dims d;
        int orank;
        int64_t od[KILN_MAX_RANK];
        KILN_TRY(kiln_matmul_resolve(n, A, B, &d, &orank, od));
        gemm_batch_plan(d.batch_rank, d.batch, d.a_bstride, d.b_bstride, d.m, d.n, d.k, true, &c->bp);
        if (n->op == KILN_OP_FusedMatMul) c->bias = in[2]->data;
        mm_key_shape(c, t, false, false, d.k, d.n);
    }
    bool act_done;
    c->key.epilogue = mm_epilogue(c->bias || c->sc_vec >= 0, n->act.kind, &act_done);
    c->act_in_epilogue = act_done;
    return KILN_STATUS_OK;
}

/* Drops the epilogue: bias and activation then run as separate kernels. */
static void mm_no_epilogue(mm_call *c) {
    c->key.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    c->act_in_epilogue = false;
}

/* A plan for c: with its epilogue if cuBLASLt has one (and the bias is aligned), else without. */
static kiln_status mm_plan(kiln_cuda_run *r, const kiln_node *n, mm_call *c, gemm_lt_plan *plan) {
    c->key.tactic = r->tactic;
    if (c->bias && gemm_align(c->bias, 0, 0) < 16) mm_no_epilogue(c);
    if (c->key.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        if (gemm_lt_prepare(r->lt, n, &c->key, plan) == KILN_STATUS_OK) return KILN_STATUS_OK;
        kiln_clear_error();
        mm_no_epilogue(c);
    }
    return gemm_lt_prepare(r->lt, n, &c->key, plan);
}

static kiln_status mm_float_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    int64_t total = kiln_shape_count(out[0].rank, out[0].dims);
    if (total == 0) return KILN_STATUS_OK;
    mm_call c;
    KILN_TRY(mm_setup(n, in, out, r->tf32, &c));
    int ct = kiln_cuda_ctype(out[0].dtype);
    KILN_TRY(gemm_scratch_get(r, &c.sc));
    const void *bias = c.bias;
    if (c.sc_vec >= 0 || c.sc_mat >= 0) {
        void *dst = gemm_scratch_at(&c.sc, c.sc_vec >= 0 ? c.sc_vec : c.sc_mat);
        KILN_TRY(kiln_cuda_check(kiln_gemm_fill_c(dst, c.c_src, ct, c.c_rows, c.bp.n, c.c_row, c.c_col, c.c_scale,
                                                  r->stream),
                                 n, "broadcasting Gemm's C"));
        if (c.sc_vec >= 0)
            bias = dst;
        else
            c.c = dst;
    }
    if (c.bp.k == 0) {
        /* an empty sum: D = beta C (+ bias) */
        if (c.key.use_c)
            KILN_TRY(kiln_cuda_check(cudaMemcpyAsync(c.d, c.c, (size_t)total * kiln_dtype_size(out[0].dtype),
                                                     cudaMemcpyDeviceToDevice, r->stream),
                                     n, "copying C"));
        else
            KILN_TRY(kiln_cuda_check(kiln_gemm_fill_c(c.d, NULL, ct, 1, total, 0, 0, 0, r->stream), n, "zeroing Y"));
        if (c.key.use_c && c.beta64 != 1.0)
            KILN_TRY(kiln_cuda_check(kiln_gemm_fill_c(c.d, c.d, ct, 1, total, 0, 1, c.beta64, r->stream), n,
                                     "scaling C"));
        if (bias)
            KILN_TRY(kiln_cuda_check(kiln_gemm_bias_last(c.d, bias, ct, total / c.bp.n, c.bp.n, r->stream), n,
                                     "adding the bias"));
        return gemm_finish_act(r, n, &out[0], false);
    }
    mm_state *st = gemm_state(r, sizeof *st, mm_state_free);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    KILN_TRY(mm_plan(r, n, &c, &st->plan));
    bool f64 = out[0].dtype == KILN_DTYPE_F64;
    const void *alpha = f64 ? (const void *)&c.alpha64 : (const void *)&c.alpha32;
    const void *beta = f64 ? (const void *)&c.beta64 : (const void *)&c.beta32;
    size_t es = kiln_dtype_size(out[0].dtype);
    const char *ab = c.a, *bb = c.b;
    char *db = c.d;
    int64_t d_per_call = c.bp.inner * c.bp.m * c.bp.n;
    bool epi_bias = (c.key.epilogue & CUBLASLT_EPILOGUE_BIAS) != 0;
    for (int64_t o = 0; o < c.bp.outer; o++) {
        int64_t ao, bo;
        gemm_batch_offsets(&c.bp, o, &ao, &bo);
        KILN_TRY(gemm_lt_run(r->lt, n, &st->plan, alpha, ab + ao * c.bp.a_mat * (int64_t)es,
                             bb + bo * c.bp.b_mat * (int64_t)es, beta, c.c,
                             db + o * d_per_call * (int64_t)es, epi_bias ? bias : NULL,
                             gemm_scratch_at(&c.sc, c.sc_ws), r->stream));
    }
    if (bias && !epi_bias)
        KILN_TRY(kiln_cuda_check(kiln_gemm_bias_last(c.d, bias, ct, total / c.bp.n, c.bp.n, r->stream), n,
                                 "adding the bias"));
    return gemm_finish_act(r, n, &out[0], c.act_in_epilogue);
}

/* ---- integer MatMul / Gemm ---- */

static kiln_status mm_int_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *A = in[0], *B = in[1];
    kiln_gemm_int_geom g;
    memset(&g, 0, sizeof g);
    const void *cdata = NULL;
    if (n->op == KILN_OP_Gemm) {
        const kiln_matmul_params *p = n->params;
        const kiln_tensor *C = n->n_declared > 2 ? in[2] : NULL;
        g.m = out[0].dims[0];
        g.n = out[0].dims[1];
        g.k = A->dims[p->trans_a ? 0 : 1];
        g.a_m = p->trans_a ? 1 : g.k;
        g.a_k = p->trans_a ? g.m : 1;
        g.b_k = p->trans_b ? 1 : g.n;
        g.b_n = p->trans_b ? g.k : 1;
        if (C && p->beta != 0) {
            int64_t cs[2] = {0, 0};
            kiln_broadcast_strides(C->rank, C->dims, 2, out[0].dims, cs);
            cdata = C->data;
            g.c_m = cs[0];
            g.c_n = cs[1];
        }
    } else {
        kiln_matmul_dims d;
        int orank;
        int64_t od[KILN_MAX_RANK];
        KILN_TRY(kiln_matmul_resolve(n, A, B, &d, &orank, od));
        g.nb = d.batch_rank;
        for (int i = 0; i < d.batch_rank; i++) {
            g.batch[i] = d.batch[i];
            g.a_b[i] = d.a_bstride[i] * d.m * d.k;
            g.b_b[i] = d.b_bstride[i] * d.k * d.n;
        }
        g.m = d.m;
        g.n = d.n;
        g.k = d.k;
        g.a_m = d.k;
        g.a_k = 1;
        g.b_k = d.n;
        g.b_n = 1;
    }
    return kiln_cuda_check(kiln_gemm_int(out[0].data, A->data, B->data, cdata, kiln_cuda_ctype(out[0].dtype), g, r->stream),
                           n, "integer matrix product");
}

static bool is_int_mm(kiln_dtype t) {
    return t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64 || t == KILN_DTYPE_U32 || t == KILN_DTYPE_U64;
}

static kiln_status mm_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    if (is_int_mm(in[0]->dtype)) return mm_int_run(r, n, in, out);
    return mm_float_run(r, n, in, out);
}

/* ---- tactics ---- */

typedef struct mm_tune_ctx {
    gemm_tune_run tr;
    const kiln_node *n;
    kiln_tensor *const *in;
    kiln_tensor *out;
} mm_tune_ctx;

static kiln_status mm_tune_one(void *ctx, int i) {
    mm_tune_ctx *t = ctx;
    t->tr.r.tactic = i;
    return mm_float_run(&t->tr.r, t->n, t->in, t->out);
}

static kiln_status mm_tune(kiln_cuda_tune *tune, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                           int *tactic) {
    *tactic = -1;
    if (is_int_mm(in[0]->dtype) || kiln_shape_count(out[0].rank, out[0].dims) <= 0) return KILN_STATUS_OK;
    mm_call c;
    KILN_TRY(mm_setup(n, in, out, tune->tf32, &c));
    if (c.bp.k == 0) return KILN_STATUS_OK;
    if (c.bias && gemm_align(c.bias, 0, 0) < 16) mm_no_epilogue(&c);
    int count = gemm_lt_candidates(tune->lt, &c.key, GEMM_TUNE_CANDIDATES);
    if (count == 0 && c.key.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        mm_no_epilogue(&c);
        count = gemm_lt_candidates(tune->lt, &c.key, GEMM_TUNE_CANDIDATES);
    }
    mm_tune_ctx t = {.n = n, .in = in, .out = out};
    return gemm_tune_pick(tune, &c.key, kiln_op_name(n->op), count, mm_tune_one, &t, &t.tr, tactic);
}

/* ---- supports ---- */

static const char *mm_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    (void)out;
    kiln_dtype t = in[0]->dtype;
    for (int i = 1; i < n->n_declared; i++)
        if (in[i] && in[i]->dtype != t) return "inputs of different dtypes";
    switch (t) {
    case KILN_DTYPE_F32:
    case KILN_DTYPE_F16:
    case KILN_DTYPE_BF16: return NULL;
    case KILN_DTYPE_F64: return n->act.kind == KILN_ACT_NONE ? NULL : "a fused activation on f64";
    case KILN_DTYPE_I32:
    case KILN_DTYPE_I64:
    case KILN_DTYPE_U32:
    case KILN_DTYPE_U64:
        if (n->op == KILN_OP_FusedMatMul) return "an integer FusedMatMul";
        if (n->op == KILN_OP_Gemm) {
            const kiln_matmul_params *p = n->params;
            bool has_c = n->n_declared > 2 && in[2];
            if (p->alpha != 1.0 || (has_c && p->beta != 1.0 && p->beta != 0.0))
                return "an integer Gemm with alpha or beta other than 1";
        }
        return NULL;
    default: return "dtype (f32, f16, bf16, f64 and 32/64-bit integers are supported)";
    }
}

void kiln_cuda_register_gemm(kiln_cuda_op *table) {
    static const int ops[] = {KILN_OP_MatMul, KILN_OP_Gemm, KILN_OP_FusedMatMul};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        table[ops[i]] = (kiln_cuda_op){.supports = mm_supports, .run = mm_run, .tune = mm_tune, .kernel = "cublasLt"};
    gemm_register_int8(table);
    gemm_register_conv(table);
    gemm_register_conv_int8(table);
}
