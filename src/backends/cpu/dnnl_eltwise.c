/* dnnl_eltwise.c — element-wise ops and Transpose through oneDNN, f32 on kiln's plain tensors:
 *   Add, Sub, Mul, Div, and Sum of two inputs: the binary primitive (numpy broadcasting where A has the output's
 *     shape; for Add and Mul also where B has it, the operands swapped). Each result is the f32
 *     operation correctly rounded, as the reference kernel's double result rounded to f32.
 *   Relu, LeakyRelu, Sigmoid, Tanh, HardSwish, Gelu, Exp, Abs, Sqrt: the eltwise primitive.
 *   Transpose (f32, int32, int8, uint8): a reorder from X seen through permuted strides.
 * Broadcasting both operands, other dtypes and other ops go to the reference kernels.
 * Tested by tests/models/test_cpu_kernels.py and the conformance suite (test_add*, test_mul*,
 * test_relu*, test_transpose*, ...). */
#include "dnnl_common.h"

#include "../../ops/math_internal.h"
#include "../../ops/shape_internal.h"

#include <string.h>

typedef struct elt_state {
    kiln_cpu_cache cache;
    kiln_dnnl_prim prim;
    bool swapped; /* binary: B is src0 (it has the output's shape), A src1 */
    bool plain;   /* binary: oneDNN offers only its reference kernel for this broadcast: a C loop instead */
} elt_state;

static void elt_clear(void *v) {
    elt_state *st = v;
    kiln_dnnl_prim_destroy(&st->prim);
}

static bool f32(kiln_tensor *const *in, const kiln_node *n, int k) { return kiln_cpu_is(in, n->n_inputs, k, KILN_DTYPE_F32); }

static bool same_dims(const kiln_tensor *a, const kiln_tensor *b) {
    return a->rank == b->rank && memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0;
}

/* ---- binary ---- */

static bool binary_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return n->n_declared == 2 && f32(in, n, 0) && f32(in, n, 1) && out->dtype == KILN_DTYPE_F32 && out->rank >= 0 &&
           kiln_dnnl_act_ok(&n->act);
}

/* t's descriptor at the output's rank (leading dims of 1 added). */
static dnnl_status_t lifted_md(dnnl_memory_desc_t *md, const kiln_tensor *t, int rank) {
    int64_t d[KILN_MAX_RANK];
    int r = rank > 0 ? rank : 1;
    for (int i = 0; i < r; i++) d[i] = 1;
    for (int i = 0; i < t->rank; i++) d[r - t->rank + i] = t->dims[i];
    return kiln_dnnl_md(md, r, d, KILN_DTYPE_F32);
}

/* When B varies along one run of dims [k0, k1] that ends before the last (a [C, 1, 1] per-channel
 * operand of a [C, H, W] tensor), the same dense memory seen as 3-D: [before, run, after] against
 * [1, run, 1]. oneDNN's JIT kernels broadcast such per-channel operands along dim 1 only; other
 * patterns ([C, 1, 1] on a 3-D tensor) fell to its reference kernel, ~100x slower. */
static bool channel_view(const kiln_tensor *b, const kiln_tensor *out, dnnl_memory_desc_t *ma, dnnl_memory_desc_t *mb,
                         dnnl_memory_desc_t *my) {
    int r = out->rank, k0 = -1, k1 = -1;
    for (int i = 0; i < r; i++) {
        int j = i - (r - b->rank);
        if (j < 0 || b->dims[j] == 1) continue;
        if (k0 >= 0 && k1 != i - 1) return false; /* two runs */
        if (k0 < 0) k0 = i;
        k1 = i;
    }
    if (k0 < 0 || k1 == r - 1 || (k0 == 1 && r <= 4)) return false; /* scalar, last dims, or already dim 1 */
    int64_t d[3] = {1, 1, 1}, db[3] = {1, 1, 1};
    for (int i = 0; i < r; i++) d[i < k0 ? 0 : i <= k1 ? 1 : 2] *= out->dims[i];
    db[1] = d[1];
    return kiln_dnnl_md(ma, 3, d, KILN_DTYPE_F32) == dnnl_success && kiln_dnnl_md(mb, 3, db, KILN_DTYPE_F32) == dnnl_success &&
           kiln_dnnl_md(my, 3, d, KILN_DTYPE_F32) == dnnl_success;
}

static kiln_status binary_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    elt_state *st = state;
    bool commutes = n->op == KILN_OP_Add || n->op == KILN_OP_Mul || n->op == KILN_OP_Sum;
    st->swapped = !same_dims(in[0], out) && same_dims(in[1], out) && commutes;
    const kiln_tensor *s0 = in[st->swapped ? 1 : 0], *s1 = in[st->swapped ? 0 : 1];
    if (!same_dims(s0, out)) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "its first operand is broadcast");
    dnnl_alg_kind_t alg = n->op == KILN_OP_Add || n->op == KILN_OP_Sum ? dnnl_binary_add : n->op == KILN_OP_Sub ? dnnl_binary_sub
                          : n->op == KILN_OP_Mul ? dnnl_binary_mul : dnnl_binary_div;
    dnnl_memory_desc_t a, b, y;
    dnnl_status_t ds = dnnl_success;
    if (!channel_view(s1, out, &a, &b, &y)) {
        ds = lifted_md(&a, s0, out->rank);
        if (ds == dnnl_success) ds = lifted_md(&b, s1, out->rank);
        if (ds == dnnl_success) ds = lifted_md(&y, out, out->rank);
    }
    dnnl_binary_desc_t d;
    if (ds == dnnl_success) ds = dnnl_binary_desc_init(&d, alg, &a, &b, &y);
    KILN_TRY(kiln_dnnl_check(ds, n, "binary"));
    dnnl_primitive_desc_t pd;
    kiln_status s = kiln_dnnl_pd(n, &d, "binary", &pd);
    if (s != KILN_STATUS_OK) return s;
    /* oneDNN's JIT kernels broadcast some patterns only ([1, H, 1, D] on [B, H, T, D] is not one of
     * them); its reference kernel then costs ~100 ns an element, a plain loop far less */
    const char *impl = NULL;
    st->plain = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
                strncmp(impl, "ref", 3) == 0 && n->act.kind == KILN_ACT_NONE;
    if (st->plain) {
        dnnl_primitive_desc_destroy(pd);
        return KILN_STATUS_OK;
    }
    static const int ids[] = {DNNL_ARG_SRC_0, DNNL_ARG_SRC_1, DNNL_ARG_DST};
    s = kiln_dnnl_prim_create(&st->prim, pd, ids, 3, n);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

/* y = a op b, a with y's shape, b broadcast onto it (numpy rules), in float32: each result the
 * correctly rounded f32 operation, as oneDNN's and the reference's. */
static void binary_plain(int op, const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *y) {
    int r = y->rank;
    int64_t bs[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    kiln_broadcast_strides(b->rank, b->dims, r, y->dims, bs); /* 0 along broadcast dims */
    int64_t w = r > 0 ? y->dims[r - 1] : 1, n = kiln_shape_count(r, y->dims), step = r > 0 ? bs[r - 1] : 0;
    const float *xa = a->data, *xb = b->data;
    float *o = y->data;
    for (int64_t row = 0; w > 0 && row < n / w; row++, kiln_shape_next_index(r - 1, y->dims, idx)) {
        int64_t boff = 0;
        for (int k = 0; k < r - 1; k++) boff += idx[k] * bs[k];
        const float *pa = xa + row * w, *pb = xb + boff;
        float *py = o + row * w;
        switch (op) {
        case KILN_OP_Sub: for (int64_t j = 0; j < w; j++) py[j] = pa[j] - pb[j * step]; break;
        case KILN_OP_Mul: for (int64_t j = 0; j < w; j++) py[j] = pa[j] * pb[j * step]; break;
        case KILN_OP_Div: for (int64_t j = 0; j < w; j++) py[j] = pa[j] / pb[j * step]; break;
        default: for (int64_t j = 0; j < w; j++) py[j] = pa[j] + pb[j * step]; break;
        }
    }
}

static kiln_status binary_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                              kiln_tensor *out) {
    elt_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, elt_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    if (!kiln_dnnl_engine()) return KILN_STATUS_RUNTIME_ERROR;
    KILN_TRY(kiln_cpu_prepare(st, binary_build, n, in, &out[0]));
    if (st->plain) {
        binary_plain(n->op, in[st->swapped ? 1 : 0], in[st->swapped ? 0 : 1], &out[0]);
        return KILN_STATUS_OK;
    }
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_SRC_0, in[st->swapped ? 1 : 0]->data);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_SRC_1, in[st->swapped ? 0 : 1]->data);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_DST, out[0].data);
    return kiln_dnnl_prim_execute(&st->prim, n);
}

/* ---- unary ---- */

/* The eltwise algorithm of a unary node, false if none. */
static bool unary_alg(const kiln_node *n, dnnl_alg_kind_t *alg, float *alpha, float *beta) {
    const math_act_params *p = n->params;
    *alpha = *beta = 0;
    switch (n->op) {
    case KILN_OP_Relu: *alg = dnnl_eltwise_relu; return true;
    case KILN_OP_LeakyRelu: *alg = dnnl_eltwise_relu; *alpha = p->alpha; return true;
    case KILN_OP_Sigmoid: *alg = dnnl_eltwise_logistic; return true;
    case KILN_OP_Tanh: *alg = dnnl_eltwise_tanh; return true;
    case KILN_OP_HardSwish: *alg = dnnl_eltwise_hardswish; *alpha = 1.0f / 6; *beta = 0.5f; return true;
    case KILN_OP_Gelu: *alg = p->gelu_tanh ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf; return true;
    case KILN_OP_Exp: *alg = dnnl_eltwise_exp; return true;
    case KILN_OP_Abs: *alg = dnnl_eltwise_abs; return true;
    case KILN_OP_Sqrt: *alg = dnnl_eltwise_sqrt; return true;
    default: return false;
    }
}

static bool unary_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    dnnl_alg_kind_t alg;
    float a, b;
    return n->n_declared == 1 && f32(in, n, 0) && out->dtype == KILN_DTYPE_F32 && unary_alg(n, &alg, &a, &b) &&
           kiln_dnnl_act_ok(&n->act);
}

static kiln_status unary_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    elt_state *st = state;
    dnnl_alg_kind_t alg = dnnl_alg_kind_undef;
    float alpha = 0, beta = 0;
    if (!unary_alg(n, &alg, &alpha, &beta)) return KILN_STATUS_UNSUPPORTED;
    int64_t count = kiln_shape_count(out->rank, out->dims); /* one flat row: layout does not matter */
    dnnl_memory_desc_t md;
    dnnl_eltwise_desc_t d;
    dnnl_status_t ds = kiln_dnnl_md(&md, 1, &count, KILN_DTYPE_F32);
    if (ds == dnnl_success) ds = dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, alg, &md, alpha, beta);
    KILN_TRY(kiln_dnnl_check(ds, n, "eltwise"));
    dnnl_primitive_desc_t pd;
    kiln_status s = kiln_dnnl_pd(n, &d, "eltwise", &pd);
    if (s != KILN_STATUS_OK) return s;
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    s = kiln_dnnl_prim_create(&st->prim, pd, ids, 2, n);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

static kiln_status unary_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                             kiln_tensor *out) {
    elt_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, elt_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    if (!kiln_dnnl_engine()) return KILN_STATUS_RUNTIME_ERROR;
    KILN_TRY(kiln_cpu_prepare(st, unary_build, n, in, &out[0]));
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_SRC, in[0]->data);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_DST, out[0].data);
    return kiln_dnnl_prim_execute(&st->prim, n);
}

/* ---- Transpose ---- */

static bool transpose_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->n_declared != 1 || !in[0] || in[0]->rank < 1 || out->dtype != in[0]->dtype || n->act.kind != KILN_ACT_NONE) return false;
    return kiln_dnnl_dtype(in[0]->dtype) != dnnl_data_type_undef;
}

static kiln_status transpose_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    elt_state *st = state;
    const kiln_transpose_params *p = n->params;
    const kiln_tensor *X = in[0];
    int r = X->rank;
    if (r > DNNL_MAX_NDIMS) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "rank %d", r);
    int64_t xs[KILN_MAX_RANK];
    kiln_contiguous_strides(r, X->dims, xs);
    dnnl_dims_t d, s;
    for (int i = 0; i < r; i++) { /* Y[.., i, ..] reads X's axis perm[i] */
        int64_t a = p->n_perm ? p->perm[i] : r - 1 - i;
        if (a < 0) a += r;
        d[i] = X->dims[a];
        s[i] = xs[a];
    }
    dnnl_memory_desc_t from, to;
    dnnl_status_t ds = dnnl_memory_desc_init_by_strides(&from, r, d, kiln_dnnl_dtype(X->dtype), s);
    if (ds == dnnl_success) ds = kiln_dnnl_md(&to, out->rank, out->dims, out->dtype);
    KILN_TRY(kiln_dnnl_check(ds, n, "transpose descriptors"));
    return kiln_dnnl_reorder_prim(&st->prim, &from, &to, n);
}

static kiln_status transpose_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                                 kiln_tensor *out) {
    elt_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, elt_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    KILN_TRY(kiln_cpu_prepare(st, transpose_build, n, in, &out[0]));
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_FROM, in[0]->data);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_TO, out[0].data);
    return kiln_dnnl_prim_execute(&st->prim, n);
}

void kiln_cpu_register_dnnl_eltwise(kiln_cpu_op *t) {
    kiln_cpu_op bin = {.supports = binary_supports, .run = binary_run, .kernel = "onednn"};
    kiln_cpu_op un = {.supports = unary_supports, .run = unary_run, .kernel = "onednn"};
    static const int binary_ops[] = {KILN_OP_Add, KILN_OP_Sub, KILN_OP_Mul, KILN_OP_Div, KILN_OP_Sum};
    static const int unary_ops[] = {KILN_OP_Relu, KILN_OP_LeakyRelu, KILN_OP_Sigmoid, KILN_OP_Tanh, KILN_OP_HardSwish,
                                    KILN_OP_Gelu, KILN_OP_Exp, KILN_OP_Abs, KILN_OP_Sqrt};
    for (size_t i = 0; i < sizeof binary_ops / sizeof *binary_ops; i++) t[binary_ops[i]] = bin;
    for (size_t i = 0; i < sizeof unary_ops / sizeof *unary_ops; i++) t[unary_ops[i]] = un;
    t[KILN_OP_Transpose] = (kiln_cpu_op){.supports = transpose_supports, .run = transpose_run, .kernel = "onednn"};
}
