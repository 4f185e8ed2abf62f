/* dnnl_matmul.c — MatMul (batched, numpy broadcasting of the batch dims), Gemm (transA/transB,
 * alpha, beta, C of any broadcastable shape) and kiln.FusedMatMul (MatMul + bias on the last
 * axis), all f32, with the fused activation as a post-op, through oneDNN's matmul primitive on
 * kiln's plain row-major tensors (a transposed operand is described by its strides).
 *
 * MatMul: when B has no batch dims of its own and A has all of them, the batch is folded into
 * M (one (batch*M, K) x (K, N) product). Gemm: a C that is a row vector with alpha = beta = 1
 * is the primitive's bias; any other C is first written to Y as beta*C, and a sum post-op adds
 * alpha*A*B (alpha as a linear post-op before it).
 * Tested by tests/models/test_cpu_kernels.py and the conformance suite (test_matmul*, test_gemm*). */
#include "dnnl_common.h"

#include "../../ops/nn_internal.h"

#include <string.h>

typedef struct mm_state {
    kiln_cpu_cache cache;
    kiln_dnnl_prim prim;
    bool prefill;     /* Gemm: Y = beta*C first, then a sum post-op */
    bool c_is_bias;   /* Gemm: C is the primitive's bias */
    int64_t cstr[2];  /* Gemm: C's strides broadcast to Y (M, N) */
} mm_state;

static void mm_clear(void *v) {
    mm_state *st = v;
    kiln_dnnl_prim_destroy(&st->prim);
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
    const kiln_tensor *A = in[0], *B = in[1], *C = n->n_declared > 2 ? in[2] : NULL;
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

void kiln_cpu_register_dnnl_matmul(kiln_cpu_op *t) {
    kiln_cpu_op op = {.supports = matmul_supports, .run = mm_run, .kernel = "onednn"};
    t[KILN_OP_MatMul] = op;
    t[KILN_OP_Gemm] = op;
    t[KILN_OP_FusedMatMul] = op;
}
