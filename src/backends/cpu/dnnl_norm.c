/* dnnl_norm.c — Softmax and LogSoftmax (f32, any axis; the pre-13 2-D mode as a 2-D view; an axis
 * with dims after it, which oneDNN runs with its reference kernel only, in a plain loop) and
 * LayerNormalization (f32, over X.shape[axis:], Scale and B of that many elements, no Mean /
 * InvStdDev outputs) through oneDNN's softmax_v2 and layer normalization primitives, on
 * kiln's plain tensors. Statistics are in float where the reference kernels use double: the
 * difference is float rounding (tests/models/test_cpu_kernels.py bounds it).
 * Tested by tests/models/test_cpu_kernels.py and the conformance suite (test_softmax*,
 * test_logsoftmax*, test_layer_normalization*). */
#include "dnnl_common.h"

#include "../../ops/nn_internal.h"
#include "../../ops/reduce_internal.h"

typedef struct norm_state {
    kiln_cpu_cache cache;
    kiln_dnnl_prim prim;
} norm_state;

static void norm_clear(void *v) {
    norm_state *st = v;
    kiln_dnnl_prim_destroy(&st->prim);
}

static bool f32(kiln_tensor *const *in, const kiln_node *n, int k) { return kiln_cpu_is(in, n->n_inputs, k, KILN_DTYPE_F32); }

static bool softmax_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return n->n_declared == 1 && f32(in, n, 0) && in[0]->rank >= 1 && out->dtype == KILN_DTYPE_F32;
}

static bool layer_norm_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->n_declared < 2 || !f32(in, n, 0) || !f32(in, n, 1) || out->dtype != KILN_DTYPE_F32) return false;
    if (n->n_declared > 2 && in[2] && !f32(in, n, 2)) return false;
    return in[0]->rank >= 1 && kiln_cpu_output_omitted(n, 1) && kiln_cpu_output_omitted(n, 2);
}

/* Builds st->prim from an op descriptor (attributes: scratchpad only). */
static kiln_status make_prim(norm_state *st, const kiln_node *n, const void *desc, const int *ids, int n_ids) {
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng) return KILN_STATUS_RUNTIME_ERROR;
    dnnl_primitive_desc_t pd;
    kiln_status s = kiln_dnnl_pd(n, desc, kiln_op_name(n->op), &pd);
    if (s != KILN_STATUS_OK) return s;
    s = kiln_dnnl_prim_create(&st->prim, pd, ids, n_ids, n);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

static kiln_status softmax_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const red_softmax_params *p = n->params;
    const kiln_tensor *X = in[0];
    int axis;
    KILN_TRY(red_softmax_axis(n, X->rank, &axis));
    dnnl_memory_desc_t md;
    dnnl_status_t ds;
    if (p->legacy_2d) { /* (outer, the rest) */
        int64_t d2[2] = {kiln_nn_prod(X->dims, 0, axis), kiln_nn_prod(X->dims, axis, X->rank)};
        ds = kiln_dnnl_md(&md, 2, d2, KILN_DTYPE_F32);
        axis = 1;
    } else {
        ds = kiln_dnnl_md(&md, X->rank, X->dims, KILN_DTYPE_F32);
    }
    dnnl_softmax_v2_desc_t d;
    dnnl_alg_kind_t alg = n->op == KILN_OP_LogSoftmax ? dnnl_softmax_log : dnnl_softmax_accurate;
    if (ds == dnnl_success) ds = dnnl_softmax_v2_forward_desc_init(&d, dnnl_forward_inference, alg, &md, &md, axis);
    KILN_TRY(kiln_dnnl_check(ds, n, "softmax"));
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    return make_prim(state, n, &d, ids, 2);
}

static kiln_status layer_norm_build(void *state, const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const kiln_norm_params *p = n->params;
    const kiln_tensor *X = in[0], *S = in[1], *B = n->n_declared > 2 ? in[2] : NULL;
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, X->rank, &axis));
    int64_t d2[2] = {kiln_nn_prod(X->dims, 0, axis), kiln_nn_prod(X->dims, axis, X->rank)};
    if (kiln_shape_count(S->rank, S->dims) != d2[1] || (B && kiln_shape_count(B->rank, B->dims) != d2[1]))
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "Scale or B broadcast over the normalized axes");
    dnnl_memory_desc_t md;
    dnnl_layer_normalization_desc_t d;
    unsigned flags = dnnl_use_scale | (B ? dnnl_use_shift : 0);
    dnnl_status_t ds = kiln_dnnl_md(&md, 2, d2, KILN_DTYPE_F32);
    if (ds == dnnl_success) ds = dnnl_layer_normalization_forward_desc_init(&d, dnnl_forward_inference, &md, NULL, (float)p->epsilon, flags);
    KILN_TRY(kiln_dnnl_check(ds, n, "layer normalization"));
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
    return make_prim(state, n, &d, ids, 6);
}

/* (Log)Softmax along the middle axis of x seen as (outer, d, inner), inner > 1: each (o, i) column
 * in float, its max, exp and sum kept per column across the inner positions (contiguous rows). */
static kiln_status softmax_columns(const kiln_node *n, const float *x, float *y, int64_t outer, int64_t d, int64_t inner) {
    float *m = kiln_cpu_scratch(KILN_CPU_SCRATCH_SRC, sizeof(float) * 2 * (size_t)inner, n), *s = m + inner;
    if (!m) return KILN_STATUS_OUT_OF_MEMORY;
    bool log = n->op == KILN_OP_LogSoftmax;
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * d * inner;
        float *yo = y + o * d * inner;
        for (int64_t i = 0; i < inner; i++) m[i] = -INFINITY, s[i] = 0.0f;
        for (int64_t a = 0; a < d; a++)
            for (int64_t i = 0; i < inner; i++) m[i] = fmaxf(m[i], xo[a * inner + i]);
        for (int64_t a = 0; a < d; a++)
            for (int64_t i = 0; i < inner; i++) {
                float e = expf(xo[a * inner + i] - m[i]);
                s[i] += e;
                if (!log) yo[a * inner + i] = e;
            }
        for (int64_t a = 0; a < d; a++)
            for (int64_t i = 0; i < inner; i++)
                yo[a * inner + i] = log ? xo[a * inner + i] - m[i] - logf(s[i]) : yo[a * inner + i] / s[i];
    }
    return KILN_STATUS_OK;
}

static kiln_status norm_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                            kiln_tensor *out) {
    bool ln = n->op == KILN_OP_LayerNormalization;
    int axis;
    const red_softmax_params *sp = n->params;
    if (!ln && !sp->legacy_2d) {
        const kiln_tensor *X = in[0];
        if (red_softmax_axis(n, X->rank, &axis) != KILN_STATUS_OK) {
            kiln_clear_error(); /* softmax_build reports it */
        } else if (axis < X->rank - 1) {
            KILN_TRY(softmax_columns(n, X->data, out[0].data, kiln_nn_prod(X->dims, 0, axis), X->dims[axis],
                                     kiln_nn_prod(X->dims, axis + 1, X->rank)));
            kiln_cpu_report(n, &out[0], "cpu");
            return KILN_STATUS_OK;
        }
    }
    norm_state *st = kiln_cpu_state(n, state, state_free, sizeof *st, norm_clear);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    KILN_TRY(kiln_cpu_prepare(st, ln ? layer_norm_build : softmax_build, n, in, &out[0]));
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_SRC, in[0]->data);
    kiln_dnnl_prim_set(&st->prim, DNNL_ARG_DST, out[0].data);
    if (ln) {
        kiln_dnnl_prim_set(&st->prim, DNNL_ARG_SCALE, in[1]->data);
        if (n->n_declared > 2 && in[2]) kiln_dnnl_prim_set(&st->prim, DNNL_ARG_SHIFT, in[2]->data);
        /* the statistics: rows floats each, in this thread's scratch */
        int64_t rows = kiln_shape_count(out[0].rank, out[0].dims) / (in[1] ? kiln_shape_count(in[1]->rank, in[1]->dims) : 1);
        float *stats = kiln_cpu_scratch(KILN_CPU_SCRATCH_SRC, sizeof(float) * 2 * (size_t)rows, n);
        if (!stats) return KILN_STATUS_OUT_OF_MEMORY;
        kiln_dnnl_prim_set(&st->prim, DNNL_ARG_MEAN, stats);
        kiln_dnnl_prim_set(&st->prim, DNNL_ARG_VARIANCE, stats + rows);
    }
    return kiln_dnnl_prim_execute(&st->prim, n);
}

void kiln_cpu_register_dnnl_norm(kiln_cpu_op *t) {
    t[KILN_OP_Softmax] = (kiln_cpu_op){.supports = softmax_supports, .run = norm_run, .kernel = "onednn"};
    t[KILN_OP_LogSoftmax] = (kiln_cpu_op){.supports = softmax_supports, .run = norm_run, .kernel = "onednn"};
    t[KILN_OP_LayerNormalization] = (kiln_cpu_op){.supports = layer_norm_supports, .run = norm_run, .kernel = "onednn"};
}
