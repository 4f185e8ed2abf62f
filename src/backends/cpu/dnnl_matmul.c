/* dnnl_matmul.c — MatMul (batched, numpy broadcasting of the batch dims), Gemm (transA/transB,
 * alpha, beta, C of any broadcastable shape) and kiln.FusedMatMul (MatMul + bias on the last
 * axis), all f32, with the fused activation as a post-op, through oneDNN's matmul primitive on
 * kiln's plain row-major tensors (a transposed operand is described by its strides).
 *
 * MatMul: when B has no batch dims of its own and A has all of them, the batch is folded into
 * M (one (batch*M, K) x (K, N) product). Gemm: a C that is a row vector with alpha = beta = 1
 * is the primitive's bias; any other C is first written to Y as beta*C, and a sum post-op adds
 * alpha*A*B (alpha as a linear post-op before it).
 *
 * QLinearMatMul and MatMulInteger (8-bit A and B; scales and zero points per tensor, B's also
 * per column) run as the same f32 product of A - a_zero_point and B - b_zero_point: integer
 * sums that floats hold exactly while below 2^24. MatMulInteger, whose int32 output is that sum,
 * runs here only when K * max|A'| * max|B'| < 2^24 guarantees it (else the reference kernel);
 * QLinearMatMul requantizes as the reference (round half to even, zero point, saturation), at
 * most one step off when a sum passes 2^24. (oneDNN's int8 kernels add products in 16 bits with
 * saturation on CPUs without VNNI: see dnnl_conv.c.)
 * Tested by tests/models/test_cpu_kernels.py and the conformance suite (test_matmul*, test_gemm*,
 * test_qlinearmatmul*, test_matmulinteger*). */
#include "dnnl_common.h"

#include "../../ops/nn_internal.h"
#include "../../ops/seq_internal.h"

#include <string.h>

typedef struct mm_state {
    kiln_cpu_cache cache;
    kiln_dnnl_prim prim;
    bool prefill;     /* Gemm: Y = beta*C first, then a sum post-op */
    bool c_is_bias;   /* Gemm: C is the primitive's bias */
    int64_t cstr[2];  /* Gemm: C's strides broadcast to Y (M, N) */
    /* QLinearMatMul / MatMulInteger: B - b_zero_point as floats, its largest magnitude, the
     * per-column multipliers a_scale * b_scale[n] / y_scale, Y's zero point and range */
    float *bq, *mult, bmax;
    int64_t n_mult, zy, lo, hi;
} mm_state;

static void mm_clear(void *v) {
    mm_state *st = v;
    kiln_dnnl_prim_destroy(&st->prim);
    free(st->bq);
    free(st->mult);
    st->bq = st->mult = NULL;
}

static bool f32(kiln_tensor *const *in, const kiln_node *n, int k) { return kiln_cpu_is(in, n->n_inputs, k, KILN_DTYPE_F32); }

static bool matmul_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->n_declared < 2 || !f32(in, n, 0) || !f32(in, n, 1) || out->dtype != KILN_DTYPE_F32 || !kiln_dnnl_act_ok(&n->act))
        return false;
    if (in[0]->rank < 1 || in[1]->rank < 1) return false;
    if (n->op == KILN_OP_FusedMatMul) return n->n_declared == 3 && f32(in, n, 2) && in[2]->rank == 1;
    if (n->op == KILN_OP_Gemm)
        return in[0]->rank == 2 && in[1]->rank == 2 && (n->n_declared < 3 || !in[2] || (f32(in, n, 2) && in[2]->rank <= 2));
    return n->n_declared == 2;
}

/* A contiguous descriptor of dims[nd] with the last two dims optionally swapped in memory
 * (a transposed matrix: logical (r, c) stored as (c, r)). */
static dnnl_status_t matrix_md(dnnl_memory_desc_t *md, int nd, const int64_t *dims, bool trans) {
    dnnl_dims_t d, s;
    memcpy(d, dims, sizeof(int64_t) * (size_t)nd);
    int64_t r = dims[nd - 2], c = dims[nd - 1];
    s[nd - 1] = trans ? r : 1;
    s[nd - 2] = trans ? 1 : c;
    int64_t acc = r * c;
    for (int i = nd - 3; i >= 0; i--) {
        s[i] = acc;
        acc *= dims[i];
    }
    return dnnl_memory_desc_init_by_strides(md, nd, d, dnnl_f32, s);
}

/* MatMul / FusedMatMul: the three descriptors (bias too when FusedMatMul). */
static kiln_status matmul_mds(const kiln_node *n, kiln_tensor *const *in, dnnl_memory_desc_t *a, dnnl_memory_desc_t *b,
                              dnnl_memory_desc_t *bias, dnnl_memory_desc_t *y) {
    kiln_matmul_dims d;
    int r;
    int64_t od[KILN_MAX_RANK];
    KILN_TRY(kiln_matmul_resolve(n, in[0], in[1], &d, &r, od));
    int nd = d.batch_rank + 2;
    if (nd > DNNL_MAX_NDIMS) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "rank %d is above oneDNN's", nd);
    int64_t ad[DNNL_MAX_NDIMS], bd[DNNL_MAX_NDIMS], yd[DNNL_MAX_NDIMS], zd[DNNL_MAX_NDIMS];
    bool b_batched = false, a_full = true;
    for (int i = 0; i < d.batch_rank; i++) {
        ad[i] = d.a_bstride[i] ? d.batch[i] : 1;
        bd[i] = d.b_bstride[i] ? d.batch[i] : 1;
        yd[i] = d.batch[i];
        zd[i] = 1;
        b_batched |= bd[i] != 1;
        a_full &= ad[i] == d.batch[i];
    }
    if (!b_batched && a_full) { /* fold the batch into M */
        nd = 2;
        ad[0] = yd[0] = kiln_shape_count(d.batch_rank, d.batch) * d.m;
        bd[0] = d.k;
        zd[0] = 1;
    } else {
        ad[nd - 2] = yd[nd - 2] = d.m;
        bd[nd - 2] = d.k;
        zd[nd - 2] = 1;
    }
    ad[nd - 1] = d.k;
    bd[nd - 1] = yd[nd - 1] = zd[nd - 1] = d.n;
    dnnl_status_t s = matrix_md(a, nd, ad, false);
    if (s == dnnl_success) s = matrix_md(b, nd, bd, false);
    if (s == dnnl_success) s = matrix_md(y, nd, yd, false);
    if (s == dnnl_success && bias) s = matrix_md(bias, nd, zd, false);
    return kiln_dnnl_check(s, n, "matmul descriptors");
}

/* Gemm: A (M, K), B (K, N) as stored (transposed by strides), Y (M, N), and how C enters. */
static kiln_status gemm_mds(mm_state *st, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out,
                            dnnl_memory_desc_t *a, dnnl_memory_desc_t *b, dnnl_memory_desc_t *bias, dnnl_memory_desc_t *y) {
    const kiln_matmul_params *p = n->params;
    const kiln_tensor *A = in[0], *C = n->n_declared > 2 ? in[2] : NULL;
    int64_t M = out->dims[0], N = out->dims[1], K = A->dims[p->trans_a ? 0 : 1];
    int64_t ad[2] = {M, K}, bd[2] = {K, N}, yd[2] = {M, N}, zd[2] = {1, N};
    dnnl_status_t s = matrix_md(a, 2, ad, p->trans_a);
    if (s == dnnl_success) s = matrix_md(b, 2, bd, p->trans_b);
    if (s == dnnl_success) s = matrix_md(y, 2, yd, false);
    bool has_c = C && p->beta != 0;
    int64_t c_count = has_c ? kiln_shape_count(C->rank, C->dims) : 0;
    st->c_is_bias = has_c && p->alpha == 1 && p->beta == 1 && c_count == N && (C->rank == 1 || (C->rank == 2 && C->dims[0] == 1));
    st->prefill = has_c && !st->c_is_bias;
    if (has_c) kiln_broadcast_strides(C->rank, C->dims, 2, out->dims, st->cstr);
    if (s == dnnl_success && st->c_is_bias) s = matrix_md(bias, 2, zd, false);
    return kiln_dnnl_check(s, n, "gemm descriptors");
}

static kiln_status mm_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    mm_state *st = state;
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng) return KILN_STATUS_RUNTIME_ERROR;
    dnnl_memory_desc_t a, b, bias, y;
    bool has_bias;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t ds = dnnl_success;
    if (n->op == KILN_OP_Gemm) {
        const kiln_matmul_params *p = n->params;
        KILN_TRY(gemm_mds(st, n, in, out, &a, &b, &bias, &y));
        has_bias = st->c_is_bias;
        if (p->alpha != 1 || st->prefill) ds = dnnl_post_ops_create(&po);
        if (ds == dnnl_success && p->alpha != 1) ds = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_linear, (float)p->alpha, 0.0f);
        if (ds == dnnl_success && st->prefill) ds = dnnl_post_ops_append_sum(po, 1.0f);
    } else {
        has_bias = n->op == KILN_OP_FusedMatMul;
        KILN_TRY(matmul_mds(n, in, &a, &b, has_bias ? &bias : NULL, &y));
    }
    kiln_status s = kiln_dnnl_check(ds, n, "post-ops");
    dnnl_matmul_desc_t md;
    if (s == KILN_STATUS_OK) s = kiln_dnnl_check(dnnl_matmul_desc_init(&md, &a, &b, has_bias ? &bias : NULL, &y), n, "matmul");
    dnnl_primitive_attr_t attr = NULL;
    if (s == KILN_STATUS_OK) s = kiln_dnnl_attr(n, po, &attr);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_desc_t pd = NULL;
    if (s == KILN_STATUS_OK) s = kiln_dnnl_check(dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL), n, "matmul");
    if (attr) dnnl_primitive_attr_destroy(attr);
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
    if (s == KILN_STATUS_OK) s = kiln_dnnl_prim_create(&st->prim, pd, ids, 4, n);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return s;
}

/* Gemm: Y = beta * C, broadcast, before the product is added. */
static void prefill(const mm_state *st, const kiln_node *n, const kiln_tensor *C, kiln_tensor *y) {
    const kiln_matmul_params *p = n->params;
    const float *c = C->data;
    float *o = y->data, beta = (float)p->beta;
    int64_t M = y->dims[0], N = y->dims[1];
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) o[i * N + j] = beta * c[i * st->cstr[0] + j * st->cstr[1]];
}

static kiln_status mm_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                          kiln_tensor *out) {
    mm_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, mm_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    KILN_TRY(kiln_cpu_prepare(st, mm_build, n, in, &out[0]));
    if (st->prefill) prefill(st, n, in[2], &out[0]);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_SRC, in[0]->data);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_WEIGHTS, in[1]->data);
    if (n->op == KILN_OP_FusedMatMul || st->c_is_bias) kiln_dnnl_prim_set(&st->prim, DNNL_ARG_BIAS, in[2]->data);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_DST, out[0].data);
    return kiln_dnnl_prim_execute(&st->prim, n);
}

/* ---- QLinearMatMul, MatMulInteger ---- */

static bool qmm_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->act.kind != KILN_ACT_NONE) return false;
    if (n->op == KILN_OP_MatMulInteger) {
        if (n->n_declared < 2 || n->n_declared > 4 || !kiln_cpu_is_q8(in[0]) || !kiln_cpu_is_q8(in[1]) || out->dtype != KILN_DTYPE_I32)
            return false;
        for (int k = 2; k < n->n_declared; k++)
            if (in[k] && in[k]->dtype != in[k - 2]->dtype) return false;
        return in[0]->rank >= 1 && in[1]->rank >= 1;
    }
    if (n->n_declared != 8) return false;
    for (int k = 0; k < 8; k++)
        if (!in[k] || in[k]->rank < 0) return false;
    if (!kiln_cpu_is_q8(in[0]) || !kiln_cpu_is_q8(in[3]) || (out->dtype != KILN_DTYPE_U8 && out->dtype != KILN_DTYPE_I8)) return false;
    if (in[1]->dtype != KILN_DTYPE_F32 || in[4]->dtype != KILN_DTYPE_F32 || in[6]->dtype != KILN_DTYPE_F32) return false;
    return in[2]->dtype == in[0]->dtype && in[5]->dtype == in[3]->dtype && in[7]->dtype == out->dtype && in[0]->rank >= 1 &&
           in[3]->rank >= 1;
}

static int64_t count_of(const kiln_tensor *t) { return t ? kiln_shape_count(t->rank, t->dims) : 1; }

static kiln_status qmm_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    mm_state *st = state;
    bool qlinear = n->op == KILN_OP_QLinearMatMul;
    const kiln_tensor *A = in[0], *B = in[qlinear ? 3 : 1];
    const kiln_tensor *az = n->n_declared > 2 ? in[2] : NULL, *bz = n->n_declared > (qlinear ? 5 : 3) ? in[qlinear ? 5 : 3] : NULL;
    int64_t N = B->rank == 1 ? 1 : B->dims[B->rank - 1];
    const kiln_tensor *bs = qlinear ? in[4] : NULL;
    bool per_col_ok = (!bz || count_of(bz) == 1 || (bz->rank == 1 && bz->dims[0] == N)) &&
                      (!bs || count_of(bs) == 1 || (bs->rank == 1 && bs->dims[0] == N));
    if (count_of(az) != 1 || !per_col_ok || (qlinear && (count_of(in[1]) != 1 || count_of(in[6]) != 1 || count_of(in[7]) != 1)))
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "scales or zero points neither per tensor nor per column of B");
    for (int k = 1; k < n->n_declared; k++)
        if (k != (qlinear ? 3 : 1) && in[k] && !in[k]->data) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "input %d has no data", k);
    st->bq = malloc(sizeof(float) * (size_t)count_of(B));
    st->n_mult = bs && count_of(bs) > 1 ? N : 1;
    st->mult = malloc(sizeof(float) * (size_t)st->n_mult);
    if (!st->bq || !st->mult) return kiln_node_error(n, KILN_STATUS_OUT_OF_MEMORY, "int8 matmul state");
    st->bmax = kiln_cpu_q8_to_float(B, bz, true, st->bq);
    if (qlinear) {
        float as = *(const float *)in[1]->data, ys = *(const float *)in[6]->data;
        for (int64_t j = 0; j < st->n_mult; j++) st->mult[j] = (as * ((const float *)bs->data)[j]) / ys; /* in f32, as the reference */
        st->zy = kiln_cpu_q8_at(in[7], 0);
        st->lo = out->dtype == KILN_DTYPE_U8 ? 0 : -128;
        st->hi = out->dtype == KILN_DTYPE_U8 ? 255 : 127;
    }
    kiln_tensor views[2] = {kiln_cpu_float_view(A, NULL), kiln_cpu_float_view(B, NULL)};
    kiln_tensor *vin[2] = {&views[0], &views[1]};
    dnnl_memory_desc_t a, b, y;
    KILN_TRY(matmul_mds(n, vin, &a, &b, NULL, &y));
    dnnl_matmul_desc_t md;
    KILN_TRY(kiln_dnnl_check(dnnl_matmul_desc_init(&md, &a, &b, NULL, &y), n, "matmul"));
    dnnl_primitive_desc_t pd;
    kiln_status s = kiln_dnnl_pd(n, &md, "matmul", &pd);
    if (s != KILN_STATUS_OK) return s;
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
    s = kiln_dnnl_prim_create(&st->prim, pd, ids, 3, n);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

static kiln_status qmm_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                           kiln_tensor *out) {
    mm_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, mm_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    if (!kiln_dnnl_engine()) return KILN_STATUS_RUNTIME_ERROR;
    bool qlinear = n->op == KILN_OP_QLinearMatMul;
    /* scales and zero points (MatMulInteger: its zero points) are part of the prepared state */
    st->cache.value_inputs = qlinear ? (1u << 1 | 1u << 2 | 1u << 4 | 1u << 5 | 1u << 6 | 1u << 7) : (1u << 2 | 1u << 3);
    KILN_TRY(kiln_cpu_prepare(st, qmm_build, n, in, &out[0]));
    const kiln_tensor *A = in[0], *B = in[qlinear ? 3 : 1];
    const kiln_tensor *az = n->n_declared > 2 ? in[2] : NULL, *bz = n->n_declared > (qlinear ? 5 : 3) ? in[qlinear ? 5 : 3] : NULL;
    if (!(B->flags & KILN_TENSOR_CONSTANT)) st->bmax = kiln_cpu_q8_to_float(B, bz, true, st->bq);
    int64_t na = kiln_shape_count(A->rank, A->dims), ny = kiln_shape_count(out[0].rank, out[0].dims);
    int64_t K = A->dims[A->rank - 1];
    float *af = kiln_cpu_scratch(KILN_CPU_SCRATCH_QIN, sizeof(float) * (size_t)na, n);
    float *acc = kiln_cpu_scratch(KILN_CPU_SCRATCH_QOUT, sizeof(float) * (size_t)ny, n);
    if (!af || !acc) return KILN_STATUS_OUT_OF_MEMORY;
    float amax = kiln_cpu_q8_to_float(A, az, false, af);
    /* MatMulInteger's int32 output must be the exact sum: every partial sum below 2^24 */
    if (!qlinear && (double)K * amax * st->bmax >= 16777216.0)
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "sums may pass 2^24 (K %lld, max |A| %g, max |B| %g)", (long long)K,
                               (double)amax, (double)st->bmax);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_SRC, af);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_WEIGHTS, st->bq);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_DST, acc);
    KILN_TRY(kiln_dnnl_prim_execute(&st->prim, n));
    if (!qlinear) {
        int32_t *y = out[0].data;
        for (int64_t i = 0; i < ny; i++) y[i] = (int32_t)acc[i];
        return KILN_STATUS_OK;
    }
    int64_t cols = st->n_mult;
    for (int64_t i = 0; i < ny; i++) {
        int64_t q = seq_requantize((double)acc[i] * st->mult[cols > 1 ? i % cols : 0], st->zy, st->lo, st->hi);
        if (out[0].dtype == KILN_DTYPE_U8) ((uint8_t *)out[0].data)[i] = (uint8_t)q;
        else ((int8_t *)out[0].data)[i] = (int8_t)q;
    }
    return KILN_STATUS_OK;
}

void kiln_cpu_register_dnnl_matmul(kiln_cpu_op *t) {
    t[KILN_OP_QLinearMatMul] = (kiln_cpu_op){.supports = qmm_supports, .run = qmm_run, .kernel = "onednn"};
    t[KILN_OP_MatMulInteger] = (kiln_cpu_op){.supports = qmm_supports, .run = qmm_run, .kernel = "onednn"};
    kiln_cpu_op op = {.supports = matmul_supports, .run = mm_run, .kernel = "onednn"};
    t[KILN_OP_MatMul] = op;
    t[KILN_OP_Gemm] = op;
    t[KILN_OP_FusedMatMul] = op;
}
