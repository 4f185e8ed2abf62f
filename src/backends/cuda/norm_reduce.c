/* norm_reduce.c — the reduce group on the GPU: Softmax, LogSoftmax, Hardmax (opset < 13
 * flattened to 2-D at axis, opset 13 one axis), the Reduce* ops (axes as attribute or host
 * input 1, keepdims, noop_with_empty_axes), ArgMax/ArgMin (keepdims, select_last_index),
 * CumSum/CumProd (axis is host input 1; exclusive, reverse) and TopK (k from the attribute or
 * host input 1; largest; always sorted). Kernels in norm_softmax.cu, norm_reduce.cu and
 * norm_topk.cu. Semantics: src/backends/ref/{softmax,reduce,argminmax,cumulative,topk}.c.
 * Integer dtypes: I8, U8, I32, I64 (and BOOL for ReduceMax/ReduceMin); uint16/32/64, int16
 * and F64 are refused. */
#include "norm_internal.h"

#include "../../ops/reduce_internal.h"

/* ---- Softmax, LogSoftmax, Hardmax ---- */

static const char *softmax_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return norm_float_x(n, in);
}

static kiln_status softmax_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const red_softmax_params *p = n->params;
    const kiln_tensor *x = in[0];
    int axis;
    KILN_TRY(red_softmax_axis(n, x->rank, &axis));
    int64_t outer, len, inner;
    if (p->legacy_2d) {
        outer = norm_prod(x->dims, 0, axis);
        len = norm_prod(x->dims, axis, x->rank);
        inner = 1;
    } else {
        red_split_axis(x, axis, &outer, &len, &inner);
    }
    int mode = n->op == KILN_OP_LogSoftmax ? 1 : n->op == KILN_OP_Hardmax ? 2 : 0;
    return norm_check(kiln_norm_softmax(kiln_cuda_ctype(x->dtype), x->data, out[0].data, outer, len, inner, mode, r->stream), n);
}

/* ---- Reduce* ---- */

static int reduce_code(int op) {
    switch (op) {
    case KILN_OP_ReduceMean: return KILN_NRED_MEAN;
    case KILN_OP_ReduceMax: return KILN_NRED_MAX;
    case KILN_OP_ReduceMin: return KILN_NRED_MIN;
    case KILN_OP_ReduceProd: return KILN_NRED_PROD;
    case KILN_OP_ReduceL1: return KILN_NRED_L1;
    case KILN_OP_ReduceL2: return KILN_NRED_L2;
    case KILN_OP_ReduceLogSum: return KILN_NRED_LOGSUM;
    case KILN_OP_ReduceLogSumExp: return KILN_NRED_LOGSUMEXP;
    case KILN_OP_ReduceSumSquare: return KILN_NRED_SUMSQUARE;
    default: return KILN_NRED_SUM;
    }
}

static const char *reduce_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    kiln_dtype t = in[0]->dtype;
    int code = reduce_code(n->op);
    if (n->act.kind != KILN_ACT_NONE) return "fused activation on a reduction";
    if (norm_is_float(t)) return NULL;
    if (t == KILN_DTYPE_BOOL) return code == KILN_NRED_MAX || code == KILN_NRED_MIN ? NULL : "bool input";
    if (!norm_is_int(t)) return "input dtype (only float32/16, bfloat16, int8, uint8, int32, int64 are supported)";
    if (code == KILN_NRED_L2 || code == KILN_NRED_LOGSUM || code == KILN_NRED_LOGSUMEXP)
        return "integer input to ReduceL2/ReduceLogSum/ReduceLogSumExp";
    return NULL;
}

/* The lowest and highest value of integer dtype t (Max / Min start values). */
static void int_range(kiln_dtype t, int64_t *lo, int64_t *hi) {
    switch (t) {
    case KILN_DTYPE_I8: *lo = INT8_MIN; *hi = INT8_MAX; break;
    case KILN_DTYPE_U8: *lo = 0; *hi = UINT8_MAX; break;
    case KILN_DTYPE_BOOL: *lo = 0; *hi = 1; break;
    case KILN_DTYPE_I32: *lo = INT32_MIN; *hi = INT32_MAX; break;
    default: *lo = INT64_MIN; *hi = INT64_MAX; break;
    }
}

/* Fills the layout of a reduction of x over mask: dims of size 1 dropped, neighbours of the
 * same kind merged, then rows (reduce the last axis), middle (one reduced axis between kept
 * ones) or the general strided form. */
static void reduce_layout(const kiln_tensor *x, const bool *mask, kiln_norm_reduce_args *a) {
    int64_t size[KILN_MAX_RANK];
    bool red[KILN_MAX_RANK];
    int m = 0;
    for (int d = 0; d < x->rank; d++) {
        if (x->dims[d] == 1) continue;
        if (m > 0 && red[m - 1] == mask[d]) {
            size[m - 1] *= x->dims[d];
        } else {
            size[m] = x->dims[d];
            red[m++] = mask[d];
        }
    }
    a->n_out = 1;
    a->len = 1;
    for (int i = 0; i < m; i++) {
        if (red[i]) a->len *= size[i];
        else a->n_out *= size[i];
    }
    a->inner = 1;
    if (m == 0 || (m == 1 && !red[0]) || (m == 1 && red[0]) || (m == 2 && !red[0])) {
        a->layout = KILN_NRED_ROWS; /* [], [K], [R], [K, R] */
        a->outer = a->n_out;
        if (m == 1 && !red[0]) a->len = 1;
        return;
    }
    if ((m == 2 && red[0]) || (m == 3 && !red[0])) { /* [R, K], [K, R, K] */
        a->layout = KILN_NRED_MIDDLE;
        a->outer = m == 3 ? size[0] : 1;
        a->inner = size[m - 1];
        return;
    }
    a->layout = KILN_NRED_GENERAL;
    a->outer = a->n_out;
    int64_t str[KILN_MAX_RANK], s = 1;
    for (int i = m - 1; i >= 0; i--) {
        str[i] = s;
        s *= size[i];
    }
    for (int i = 0; i < m; i++) {
        kiln_cuda_view *v = red[i] ? &a->red : &a->kept;
        v->dims[v->rank] = size[i];
        v->strides[v->rank++] = str[i];
    }
}

static kiln_status reduce_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    bool mask[KILN_MAX_RANK], known;
    KILN_TRY(red_reduce_mask(n, in, mask, &known));
    if (!known) return kiln_node_error(n, KILN_STATUS_RUNTIME_ERROR, "axes are not known at run time");
    kiln_norm_reduce_args a;
    memset(&a, 0, sizeof a);
    a.op = reduce_code(n->op);
    int_range(x->dtype, &a.int_lo, &a.int_hi);
    if (kiln_shape_count(out[0].rank, out[0].dims) == 0) return KILN_STATUS_OK;
    if (kiln_shape_count(x->rank, x->dims) == 0) {
        /* an empty reduction: every output is the identity */
        a.layout = KILN_NRED_ROWS;
        a.outer = kiln_shape_count(out[0].rank, out[0].dims);
        a.len = 0;
        a.inner = 1;
    } else {
        reduce_layout(x, mask, &a);
    }
    return norm_check(kiln_norm_reduce(kiln_cuda_ctype(x->dtype), x->data, out[0].data, &a, r->stream), n);
}

/* ---- ArgMax, ArgMin ---- */

static const char *num_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->act.kind != KILN_ACT_NONE) return "fused activation";
    kiln_dtype t = in[0]->dtype;
    if (!norm_is_float(t) && !norm_is_int(t)) return "input dtype (only float32/16, bfloat16, int8, uint8, int32, int64 are supported)";
    return NULL;
}

static kiln_status argminmax_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const red_arg_params *p = n->params;
    const kiln_tensor *x = in[0];
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, x->rank, &axis));
    int64_t outer, len, inner;
    red_split_axis(x, axis, &outer, &len, &inner);
    return norm_check(kiln_norm_argminmax(kiln_cuda_ctype(x->dtype), x->data, out[0].data, outer, len, inner,
                                          n->op == KILN_OP_ArgMax, p->select_last_index, r->stream),
                      n);
}

/* ---- CumSum, CumProd ---- */

static kiln_status cumulative_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const red_cum_params *p = n->params;
    const kiln_tensor *x = in[0];
    int64_t a = 0;
    int axis;
    KILN_TRY(red_read_scalar_int(n, in[1], "axis", &a));
    if (kiln_norm_axis(a, x->rank, &axis) != KILN_STATUS_OK)
        return kiln_node_error(n, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d", (long long)a, x->rank);
    int64_t outer, len, inner;
    red_split_axis(x, axis, &outer, &len, &inner);
    return norm_check(kiln_norm_cumulative(kiln_cuda_ctype(x->dtype), x->data, out[0].data, outer, len, inner,
                                           p->exclusive, p->reverse, n->op == KILN_OP_CumProd, r->stream),
                      n);
}

/* ---- TopK ---- */

/* Whether k and the axis length are too large for the kernels (long rows take k passes). */
static bool topk_too_big(int64_t k, int64_t len) {
    return len > KILN_NORM_TOPK_SORT_MAX && k > KILN_NORM_TOPK_LONG_MAX_K;
}

static const char *topk_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const char *why = num_supports(n, in, out);
    if (why) return why;
    const red_topk_params *p = n->params;
    const kiln_tensor *x = in[0];
    int axis;
    if (x->rank <= 0 || kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK) return NULL; /* infer reports it */
    int64_t k = p->k_attr;
    if (n->opset >= 10) {
        if (!in[1]->data) return NULL; /* known at run time only: checked there */
        if (red_read_scalar_int(n, in[1], "K", &k) != KILN_STATUS_OK) return NULL;
    }
    if (x->dims[axis] >= 0 && topk_too_big(k, x->dims[axis])) return "TopK with K > 2048 on an axis longer than 4096";
    return NULL;
}

static kiln_status topk_run(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const red_topk_params *p = n->params;
    const kiln_tensor *x = in[0];
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, x->rank, &axis));
    int64_t k = 0;
    bool known;
    KILN_TRY(red_topk_k(n, in, &k, &known));
    if (!known) return kiln_node_error(n, KILN_STATUS_RUNTIME_ERROR, "K is not known at run time");
    int64_t outer, len, inner;
    red_split_axis(x, axis, &outer, &len, &inner);
    if (k > len)
        return kiln_node_error(n, KILN_STATUS_INVALID_ARGUMENT, "K = %lld exceeds the size %lld of axis %d", (long long)k,
                               (long long)len, axis);
    if (topk_too_big(k, len))
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED, "K = %lld on an axis of %lld: the GPU TopK takes K <= %d when the axis is longer than %d",
                               (long long)k, (long long)len, KILN_NORM_TOPK_LONG_MAX_K, KILN_NORM_TOPK_SORT_MAX);
    void *vals = norm_has_out(n, out, 0) ? out[0].data : NULL;
    int64_t *idx = norm_has_out(n, out, 1) ? out[1].data : NULL;
    void *scratch = NULL;
    size_t bytes = kiln_norm_topk_scratch(outer, len, inner, k);
    if (bytes) KILN_TRY(kiln_cuda_scratch(r, bytes, &scratch));
    return norm_check(kiln_norm_topk(kiln_cuda_ctype(x->dtype), x->data, vals, idx, outer, len, inner, k, p->largest,
                                     scratch, r->stream),
                      n);
}

static void set(kiln_cuda_op *t, int op, const char *(*supports)(const kiln_node *, kiln_tensor *const *, const kiln_tensor *),
                kiln_status (*run)(kiln_cuda_run *, const kiln_node *, kiln_tensor *const *, kiln_tensor *),
                uint32_t host_inputs, const char *kernel) {
    t[op].supports = supports;
    t[op].run = run;
    t[op].host_inputs = host_inputs;
    t[op].kernel = kernel;
}

void kiln_cuda_norm_register_reduce(kiln_cuda_op *table) {
    set(table, KILN_OP_Softmax, softmax_supports, softmax_run, 0, "softmax");
    set(table, KILN_OP_LogSoftmax, softmax_supports, softmax_run, 0, "softmax");
    set(table, KILN_OP_Hardmax, softmax_supports, softmax_run, 0, "hardmax");
    static const int reduces[] = {KILN_OP_ReduceSum, KILN_OP_ReduceMean, KILN_OP_ReduceMax, KILN_OP_ReduceMin,
                                  KILN_OP_ReduceProd, KILN_OP_ReduceL1, KILN_OP_ReduceL2, KILN_OP_ReduceLogSum,
                                  KILN_OP_ReduceLogSumExp, KILN_OP_ReduceSumSquare};
    for (size_t i = 0; i < sizeof reduces / sizeof reduces[0]; i++)
        set(table, reduces[i], reduce_supports, reduce_run, 1u << 1, "reduce"); /* axes (opset 13/18+) */
    set(table, KILN_OP_ArgMax, num_supports, argminmax_run, 0, "argminmax");
    set(table, KILN_OP_ArgMin, num_supports, argminmax_run, 0, "argminmax");
    set(table, KILN_OP_CumSum, num_supports, cumulative_run, 1u << 1, "cumulative");
    set(table, KILN_OP_CumProd, num_supports, cumulative_run, 1u << 1, "cumulative");
    set(table, KILN_OP_TopK, topk_supports, topk_run, 1u << 1, "topk");
}
