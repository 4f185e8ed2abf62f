/* norm.c — the norm family of the CUDA backend: LayerNormalization, RMSNormalization,
 * GroupNormalization (opset 18 per-group and opset 21 per-channel parameters),
 * InstanceNormalization, MeanVarianceNormalization, BatchNormalization (inference only),
 * LpNormalization and LRN here; the softmaxes, reductions, ArgMax/ArgMin, CumSum/CumProd and
 * TopK in norm_reduce.c; Attention, RotaryEmbedding and SwiGLU in norm_attention.c. Kernels in
 * norm*.cu behind kernels_norm.h. Float tensors are F32, F16 or BF16 (F64 is refused),
 * computed in FP32. Semantics are the reference backend's (src/backends/ref/layer_norm.c,
 * batch_norm.c, lp_norm.c), which the lead's CUDA op tests compare against. */
#include "norm_internal.h"

#include "../../ops/nn_internal.h"

#include <string.h>

/* ---- LayerNormalization, RMSNormalization ---- */

static const char *layer_norm_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const char *why = norm_float_x(n, in);
    if (why) return why;
    if (!norm_is_float(in[1]->dtype)) return "Scale dtype is not float32, float16 or bfloat16";
    if (norm_has_in(n, in, 2) && in[2]->dtype != in[1]->dtype) return "Scale and B have different dtypes";
    for (int j = 1; j < n->n_outputs; j++)
        if (n->outputs[j] >= 0 && !norm_is_float(out[j].dtype)) return "Mean/InvStdDev stash_type float64";
    return NULL;
}

/* How a parameter of shape t broadcasts over the normalized dims x->dims[axis:]. */
static void param_view(const kiln_tensor *t, const kiln_tensor *x, int axis, int64_t cols, int *direct,
                       kiln_cuda_view *v) {
    int nr = x->rank - axis;
    memset(v, 0, sizeof *v);
    *direct = kiln_shape_count(t->rank, t->dims) == cols;
    v->rank = nr;
    memcpy(v->dims, x->dims + axis, sizeof(int64_t) * (size_t)nr);
    kiln_broadcast_strides(t->rank, t->dims, nr, x->dims + axis, v->strides);
}

static kiln_status layer_norm_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = n->params;
    const kiln_tensor *x = in[0], *s = in[1], *b = norm_has_in(n, in, 2) ? in[2] : NULL;
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, x->rank, &axis));
    kiln_norm_rows_args a;
    memset(&a, 0, sizeof a);
    a.rows = norm_prod(x->dims, 0, axis);
    a.cols = norm_prod(x->dims, axis, x->rank);
    a.eps = (float)p->epsilon;
    a.rms = n->op == KILN_OP_RMSNormalization;
    a.affine = KILN_NORM_AFFINE_COL;
    a.ct_param = kiln_cuda_ctype(s->dtype);
    param_view(s, x, axis, a.cols, &a.s_direct, &a.sview);
    if (b) param_view(b, x, axis, a.cols, &a.b_direct, &a.bview);
    void *mean = norm_has_out(n, out, 1) ? out[1].data : NULL;
    void *inv = norm_has_out(n, out, 2) ? out[2].data : NULL;
    a.ct_stat = kiln_cuda_ctype(mean ? out[1].dtype : inv ? out[2].dtype : KILN_DTYPE_F32);
    return norm_check(kiln_norm_rows(kiln_cuda_ctype(x->dtype), x->data, out[0].data, s->data, b ? b->data : NULL, mean,
                                     inv, &a, r->stream),
                      n);
}

/* ---- GroupNormalization, InstanceNormalization ---- */

static const char *affine_norm_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const char *why = norm_float_x(n, in);
    if (why) return why;
    if (!norm_is_float(in[1]->dtype)) return "scale dtype is not float32, float16 or bfloat16";
    if (in[2]->dtype != in[1]->dtype) return "scale and bias have different dtypes";
    return NULL;
}

static kiln_status group_norm_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = n->params;
    const kiln_tensor *x = in[0];
    kiln_norm_rows_args a;
    memset(&a, 0, sizeof a);
    int64_t N = x->dims[0], C = x->dims[1], sp = norm_prod(x->dims, 2, x->rank);
    a.eps = (float)p->epsilon;
    a.ct_param = kiln_cuda_ctype(in[1]->dtype);
    a.ct_stat = KILN_CT_F32;
    a.sp = sp;
    if (n->op == KILN_OP_InstanceNormalization) {
        a.rows = N * C;
        a.cols = sp;
        a.C = C;
        a.affine = KILN_NORM_AFFINE_ROW;
    } else {
        a.G = p->num_groups;
        a.rows = N * a.G;
        a.cols = C / a.G * sp;
        a.affine = n->opset >= 21 ? KILN_NORM_AFFINE_GROUP_CH : KILN_NORM_AFFINE_GROUP;
    }
    return norm_check(kiln_norm_rows(kiln_cuda_ctype(x->dtype), x->data, out[0].data, in[1]->data, in[2]->data, NULL,
                                     NULL, &a, r->stream),
                      n);
}

/* ---- MeanVarianceNormalization ---- */

static kiln_status mvn_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = n->params;
    const kiln_tensor *x = in[0];
    bool mask[KILN_MAX_RANK] = {false};
    for (int i = 0; i < p->n_axes; i++) {
        int ax;
        KILN_TRY(kiln_norm_axis(p->axes[i], x->rank, &ax));
        mask[ax] = true;
    }
    /* kept and reduced axes as two strided views over X */
    int64_t str[KILN_MAX_RANK];
    kiln_contiguous_strides(x->rank, x->dims, str);
    kiln_cuda_view kept, red;
    memset(&kept, 0, sizeof kept);
    memset(&red, 0, sizeof red);
    bool trailing = true, seen_red = false;
    for (int d = 0; d < x->rank; d++) {
        kiln_cuda_view *v = mask[d] ? &red : &kept;
        v->dims[v->rank] = x->dims[d];
        v->strides[v->rank++] = str[d];
        if (mask[d]) seen_red = true;
        else if (seen_red && x->dims[d] != 1) trailing = false;
    }
    int ct = kiln_cuda_ctype(x->dtype);
    if (trailing) { /* the reduced axes are the last ones: rows of contiguous elements */
        kiln_norm_rows_args a;
        memset(&a, 0, sizeof a);
        a.rows = norm_prod(kept.dims, 0, kept.rank);
        a.cols = norm_prod(red.dims, 0, red.rank);
        a.mvn = 1;
        a.affine = KILN_NORM_AFFINE_NONE;
        a.ct_param = a.ct_stat = KILN_CT_F32;
        return norm_check(kiln_norm_rows(ct, x->data, out[0].data, NULL, NULL, NULL, NULL, &a, r->stream), n);
    }
    return norm_check(kiln_norm_mvn_general(ct, x->data, out[0].data, &kept, &red, r->stream), n);
}

/* ---- BatchNormalization (given statistics) ---- */

static const char *batch_norm_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const kiln_norm_params *p = n->params;
    const char *why = norm_float_x(n, in);
    if (why) return why;
    if (p->training) return "training_mode = 1 (batch statistics) is not supported";
    if (!norm_is_float(in[1]->dtype)) return "scale dtype is not float32, float16 or bfloat16";
    for (int i = 2; i < 5; i++)
        if (in[i]->dtype != in[1]->dtype) return "scale, B, mean and var have different dtypes";
    return NULL;
}

static kiln_status batch_norm_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = n->params;
    const kiln_tensor *x = in[0];
    int64_t P = p->per_activation ? norm_prod(x->dims, 1, x->rank) : x->dims[1];
    int64_t inner = p->per_activation ? 1 : norm_prod(x->dims, 2, x->rank);
    return norm_check(kiln_norm_batch(kiln_cuda_ctype(x->dtype), x->data, out[0].data, kiln_cuda_ctype(in[1]->dtype),
                                      in[1]->data, in[2]->data, in[3]->data, in[4]->data, x->dims[0], P, inner,
                                      (float)p->epsilon, r->stream),
                      n);
}

/* ---- LpNormalization, LRN ---- */

static const char *x_only_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return norm_float_x(n, in);
}

static kiln_status lp_norm_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = n->params;
    const kiln_tensor *x = in[0];
    int ct = kiln_cuda_ctype(x->dtype);
    if (n->op == KILN_OP_LRN)
        return norm_check(kiln_norm_lrn(ct, x->data, out[0].data, x->dims[0], x->dims[1], norm_prod(x->dims, 2, x->rank),
                                        p->size, (float)p->alpha, (float)p->beta, (float)p->bias, r->stream),
                          n);
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, x->rank, &axis));
    return norm_check(kiln_norm_lp(ct, x->data, out[0].data, norm_prod(x->dims, 0, axis), x->dims[axis],
                                   norm_prod(x->dims, axis + 1, x->rank), (int)p->p, r->stream),
                      n);
}

static void set(kiln_cuda_op *t, int op, const char *(*supports)(const kiln_node *, kiln_tensor *const *, const kiln_tensor *),
                kiln_status (*run)(kiln_cuda_run *, const kiln_node *, kiln_tensor *const *, kiln_tensor *),
                const char *kernel) {
    t[op].supports = supports;
    t[op].run = run;
    t[op].host_inputs = 0;
    t[op].kernel = kernel;
}

void kiln_cuda_register_norm(kiln_cuda_op *table) {
    set(table, KILN_OP_LayerNormalization, layer_norm_supports, layer_norm_run, "norm-rows");
    set(table, KILN_OP_RMSNormalization, layer_norm_supports, layer_norm_run, "norm-rows");
    set(table, KILN_OP_GroupNormalization, affine_norm_supports, group_norm_run, "norm-rows");
    set(table, KILN_OP_InstanceNormalization, affine_norm_supports, group_norm_run, "norm-rows");
    set(table, KILN_OP_MeanVarianceNormalization, x_only_supports, mvn_run, "norm-mvn");
    set(table, KILN_OP_BatchNormalization, batch_norm_supports, batch_norm_run, "norm-batch");
    set(table, KILN_OP_LpNormalization, x_only_supports, lp_norm_run, "norm-lp");
    set(table, KILN_OP_LRN, x_only_supports, lp_norm_run, "norm-lrn");
    kiln_cuda_norm_register_reduce(table);
    kiln_cuda_norm_register_attention(table);
}
