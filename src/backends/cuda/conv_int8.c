/* conv_int8.c — GPU ConvInteger and QLinearConv, 1-D to 3-D, any group, strides, dilations and
 * pads: im2col into int8 scratch (uint8 shifted by -128 like its zero point; taps outside the
 * input hold the shifted zero point so they vanish once it is subtracted), a cuBLASLt INT8 GEMM
 * per group (or per image, whichever is fewer; the other is cuBLASLt's batch) with int32
 * accumulation, then the epilogue kernel: zero-point corrections through row / column sums,
 * bias, and for QLinearConv the reference's requantization (multiplier in f32 arithmetic,
 * product in double, round half to even, saturate). Images go in chunks so the im2col matrix
 * stays within COL_BUDGET. Zero points and scales are read on the device.
 * Tested by tests/cuda/gemm_check.c against the reference backend. */
#include "gemm_internal.h"
#include "../../ops/nn_internal.h"
#include "../../ops/seq_internal.h"

#include <string.h>

#define COL_BUDGET ((int64_t)128 << 20)
#define QCONV_MAX_K ((int64_t)1 << 17) /* no int32 overflow below this many int8 products */

typedef struct qconv_call {
    kiln_i8_conv_geom g;
    int64_t n_img, nn;  /* images, images per chunk */
    bool loop_groups;   /* one GEMM per group (batch: images) or per image (batch: groups) */
    int64_t mg_pad;
    gemm_lt_key key;
    gemm_scratch sc;
    int sc_ws, sc_w, sc_cs, sc_col, sc_rs, sc_d;
    kiln_i8_conv_epi epi;
} qconv_call;

typedef struct qconv_state {
    gemm_lt_plan plan;
} qconv_state;

static void qconv_state_free(void *p) {
    qconv_state *s = p;
    gemm_lt_release(&s->plan);
    free(s);
}

static kiln_status qconv_setup(const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out, qconv_call *c) {
    memset(c, 0, sizeof *c);
    const kiln_conv_params *p = n->params;
    bool ql = n->op == KILN_OP_QLinearConv;
    const kiln_tensor *X = in[0], *W = in[ql ? 3 : 1], *B = ql ? seq_in(n, in, 8) : NULL;
    kiln_window_dims wd;
    KILN_TRY(kiln_conv_infer_common(n, p, X, W, B, W->dims[0], &wd));
    int nsp = wd.nsp;
    if (nsp < 1 || nsp > 3) return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "%d spatial dims (1 to 3 on the GPU)", nsp);
    kiln_i8_conv_geom *g = &c->g;
    for (int i = 0; i < 3; i++) {
        int j = i - (3 - nsp);
        g->in[i] = j < 0 ? 1 : X->dims[2 + j];
        g->out[i] = j < 0 ? 1 : out[0].dims[2 + j];
        g->k[i] = j < 0 ? 1 : wd.kernel[j];
        g->st[i] = j < 0 ? 1 : wd.strides[j];
        g->dl[i] = j < 0 ? 1 : wd.dilations[j];
        g->pad[i] = j < 0 ? 0 : wd.pad_begin[j];
    }
    int64_t M = W->dims[0];
    c->n_img = X->dims[0];
    g->c = X->dims[1];
    g->groups = p->group;
    g->cg = g->c / g->groups;
    g->mg = M / g->groups;
    g->p = g->out[0] * g->out[1] * g->out[2];
    g->p_pad = gemm_round_up(g->p, 4);
    g->kc = g->cg * g->k[0] * g->k[1] * g->k[2];
    g->kc_pad = gemm_round_up(g->kc, 16);
    c->mg_pad = gemm_round_up(g->mg, 4);
    if (g->kc_pad > QCONV_MAX_K)
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "%lld products per output above the GPU kernel's %lld",
                               (long long)g->kc, (long long)QCONV_MAX_K);
    /* the most images per chunk within the budget that divides the batch (equal chunks keep
     * one cuBLASLt plan) */
    int64_t per_img = g->groups * g->p_pad * (g->kc_pad + 4 + 4 * c->mg_pad);
    int64_t cap = COL_BUDGET / (per_img > 0 ? per_img : 1);
    if (cap < 1) cap = 1;
    c->nn = 1;
    for (int64_t d = c->n_img < cap ? c->n_img : cap; d >= 1; d--)
        if (c->n_img % d == 0) {
            c->nn = d;
            break;
        }
    c->loop_groups = g->groups <= c->nn;

    c->sc_ws = gemm_scratch_add(&c->sc, GEMM_LT_WORKSPACE);
    c->sc_w = gemm_scratch_add(&c->sc, (size_t)(g->groups * c->mg_pad * g->kc_pad));
    c->sc_cs = gemm_scratch_add(&c->sc, (size_t)(g->groups * c->mg_pad) * 4);
    c->sc_col = gemm_scratch_add(&c->sc, (size_t)(g->groups * c->nn * g->p_pad * g->kc_pad));
    c->sc_rs = gemm_scratch_add(&c->sc, (size_t)(g->groups * c->nn * g->p_pad) * 4);
    c->sc_d = gemm_scratch_add(&c->sc, (size_t)(c->nn * g->groups * c->mg_pad * g->p_pad) * 4);

    /* D (mg_pad, p_pad) = W_g (mg_pad, kc_pad) . col^T, col stored (p_pad, kc_pad): TN */
    gemm_lt_key *k = &c->key;
    KILN_ASSERT(gemm_lt_types(KILN_DTYPE_I8, k));
    k->trans_b = 1;
    k->m = c->mg_pad;
    k->n = g->p_pad;
    k->k = g->kc_pad;
    k->lda = k->ldb = g->kc_pad;
    k->ldd = g->p_pad;
    if (c->loop_groups) {
        k->batch = c->nn;
        k->stride_a = 0;
        k->stride_b = g->p_pad * g->kc_pad;
        k->stride_d = g->groups * c->mg_pad * g->p_pad;
    } else {
        k->batch = g->groups;
        k->stride_a = c->mg_pad * g->kc_pad;
        k->stride_b = c->nn * g->p_pad * g->kc_pad;
        k->stride_d = c->mg_pad * g->p_pad;
    }
    k->align_a = k->align_b = k->align_d = 16;

    kiln_i8_conv_epi *e = &c->epi;
    e->nn = c->nn;
    e->mg_pad = c->mg_pad;
    e->x_u8 = X->dtype == KILN_DTYPE_U8;
    e->w_u8 = W->dtype == KILN_DTYPE_U8;
    e->qlinear = ql;
    e->y_ct = kiln_cuda_ctype(out[0].dtype);
    const kiln_tensor *xz = seq_in(n, in, 2), *wz = seq_in(n, in, ql ? 5 : 3);
    e->xzp = xz ? xz->data : NULL;
    e->wzp = wz ? wz->data : NULL;
    e->wz_count = wz ? kiln_shape_count(wz->rank, wz->dims) : 1;
    if (ql) {
        e->bias = B ? B->data : NULL;
        e->xs = in[1]->data;
        e->ws = in[4]->data;
        e->ws_count = kiln_shape_count(in[4]->rank, in[4]->dims);
        e->ys = in[6]->data;
        e->yzp = in[7] ? in[7]->data : NULL;
    }
    return KILN_STATUS_OK;
}

static kiln_status qconv_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    if (kiln_shape_count(out[0].rank, out[0].dims) == 0) return KILN_STATUS_OK;
    bool ql = n->op == KILN_OP_QLinearConv;
    const kiln_tensor *X = in[0], *W = in[ql ? 3 : 1];
    qconv_call c;
    KILN_TRY(qconv_setup(n, in, out, &c));
    const kiln_i8_conv_geom *g = &c.g;
    KILN_TRY(gemm_scratch_get(r, &c.sc));
    int8_t *wp = gemm_scratch_at(&c.sc, c.sc_w), *col = gemm_scratch_at(&c.sc, c.sc_col);
    int32_t *cs = gemm_scratch_at(&c.sc, c.sc_cs), *rs = gemm_scratch_at(&c.sc, c.sc_rs);
    int32_t *d = gemm_scratch_at(&c.sc, c.sc_d);
    cudaStream_t s = r->stream;
    KILN_TRY(kiln_cuda_check(
        kiln_i8_pack(wp, W->data, W->dtype == KILN_DTYPE_U8, g->groups, g->mg, g->kc, c.mg_pad, g->kc_pad, s), n,
        "packing W"));
    KILN_TRY(kiln_cuda_check(kiln_i8_row_sums(cs, wp, g->groups * c.mg_pad, g->kc_pad, s), n, "sums of W"));
    qconv_state *st = gemm_state(r, sizeof *st, qconv_state_free);
    if (!st) return KILN_STATUS_OUT_OF_MEMORY;
    c.key.tactic = r->tactic;
    bool lt_ok = gemm_lt_prepare(r->lt, n, &c.key, &st->plan) == KILN_STATUS_OK;
    if (!lt_ok) kiln_clear_error();
    int32_t one = 1, zero = 0;
    int64_t w_mat = c.mg_pad * g->kc_pad, col_img = g->p_pad * g->kc_pad, d_mat = c.mg_pad * g->p_pad;
    int64_t calls = c.loop_groups ? g->groups : c.nn;
    for (int64_t n0 = 0; n0 < c.n_img; n0 += c.nn) {
        c.epi.n0 = n0;
        KILN_TRY(kiln_cuda_check(kiln_i8_im2col(col, X->data, c.epi.x_u8, c.epi.xzp, *g, n0, c.nn, s), n, "im2col"));
        KILN_TRY(kiln_cuda_check(kiln_i8_row_sums(rs, col, g->groups * c.nn * g->p_pad, g->kc_pad, s), n,
                                 "sums of the im2col rows"));
        for (int64_t i = 0; i < calls; i++) {
            /* group i over all images of the chunk, or image i over all groups */
            const int8_t *a = wp + (c.loop_groups ? i * w_mat : 0);
            const int8_t *b = col + (c.loop_groups ? i * c.nn * col_img : i * col_img);
            int32_t *dd = d + (c.loop_groups ? i * d_mat : i * g->groups * d_mat);
            if (lt_ok)
                KILN_TRY(gemm_lt_run(r->lt, n, &st->plan, &one, a, b, &zero, NULL, dd, NULL,
                                     gemm_scratch_at(&c.sc, c.sc_ws), s));
            else
                KILN_TRY(kiln_cuda_check(kiln_i8_gemm_xyt(dd, a, b, c.key.batch, c.mg_pad, g->p_pad, g->kc_pad,
                                                          g->p_pad, c.key.stride_a, c.key.stride_b, c.key.stride_d, s),
                                         n, "int8 product"));
        }
        KILN_TRY(kiln_cuda_check(kiln_i8_conv_epilogue(out[0].data, d, rs, cs, *g, c.epi, s), n,
                                 "zero points and requantization"));
    }
    return KILN_STATUS_OK;
}

typedef struct qconv_tune_ctx {
    gemm_tune_run tr;
    const kiln_node *n;
    kiln_tensor *const *in;
    kiln_tensor *out;
} qconv_tune_ctx;

static kiln_status qconv_tune_one(void *ctx, int i) {
    qconv_tune_ctx *t = ctx;
    t->tr.r.tactic = i;
    return qconv_run(&t->tr.r, t->n, t->in, t->out);
}

static kiln_status qconv_tune(kiln_cuda_tune *tune, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out,
                              int *tactic) {
    *tactic = -1;
    if (kiln_shape_count(out[0].rank, out[0].dims) <= 0) return KILN_STATUS_OK;
    qconv_call c;
    KILN_TRY(qconv_setup(n, in, out, &c));
    int count = gemm_lt_candidates(tune->lt, &c.key, GEMM_TUNE_CANDIDATES);
    qconv_tune_ctx t = {.n = n, .in = in, .out = out};
    return gemm_tune_pick(tune, &c.key, kiln_op_name(n->op), count, qconv_tune_one, &t, &t.tr, tactic);
}

static bool is_q8(const kiln_tensor *t) { return t && (t->dtype == KILN_DTYPE_I8 || t->dtype == KILN_DTYPE_U8); }

static const char *qconv_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    bool ql = n->op == KILN_OP_QLinearConv;
    if (!is_q8(in[0]) || !is_q8(in[ql ? 3 : 1])) return "X and W must be int8 or uint8";
    if (in[0]->rank >= 0 && (in[0]->rank < 3 || in[0]->rank > 5)) return "only 1-D to 3-D convolutions";
    if (n->act.kind != KILN_ACT_NONE) return "a fused activation on an integer convolution";
    if (ql) {
        if (in[1]->dtype != KILN_DTYPE_F32 || in[4]->dtype != KILN_DTYPE_F32 || in[6]->dtype != KILN_DTYPE_F32)
            return "scale dtype (f32)";
        if (!in[7]) return "y_zero_point is required";
        if (out->dtype != KILN_DTYPE_I8 && out->dtype != KILN_DTYPE_U8) return "output dtype (int8 or uint8)";
        const kiln_tensor *b = seq_in(n, in, 8);
        if (b && b->dtype != KILN_DTYPE_I32) return "bias dtype (int32)";
    } else if (out->dtype != KILN_DTYPE_I32) {
        return "output dtype (int32)";
    }
    return NULL;
}

void gemm_register_conv_int8(kiln_cuda_op *table) {
    table[KILN_OP_ConvInteger] =
        (kiln_cuda_op){.supports = qconv_supports, .run = qconv_run, .tune = qconv_tune, .kernel = "im2col+cublasLt-int8"};
    table[KILN_OP_QLinearConv] =
        (kiln_cuda_op){.supports = qconv_supports, .run = qconv_run, .tune = qconv_tune, .kernel = "im2col+cublasLt-int8"};
}
