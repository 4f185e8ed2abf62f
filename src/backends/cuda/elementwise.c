/* elementwise.c — GPU entries of the elementwise family: the unary math ops, the activations
 * (PRelu too), the broadcasting binary ops, Sum/Mean/Max/Min, Where, Clip, and the fused
 * activation pass kiln_cuda_apply_act. Cast, quantization and Dropout are in
 * elementwise_convert.c; the kernels in elementwise_*.cu (launchers: kernels_elementwise.h).
 *
 * Host work per node: map the op and its typed params (src/ops/math_internal.h) onto a kernel
 * op code, and describe broadcasting as one kiln_cuda_view per operand over the output, with
 * size-1 dims dropped and dims merged where every operand runs contiguously across them (so a
 * bias add over (N, C, H, W) becomes a rank-2 walk and a same-shape add a rank-1 one, which the
 * kernels take as their vectorized fast path). node->act is fused into the kernels' epilogue.
 * Semantics, dtypes and rounding are those of src/backends/ref/{unary,activation,binary,
 * variadic,where_clip}.c; tested against the reference backend by the CUDA op tests. */
#include "elementwise_host.h"

#include "../../ops/math_internal.h"

#include <float.h>

/* kernels.h's activation numbering must stay kiln_act_kind's */
_Static_assert(KILN_ACT_RELU == 1 && KILN_ACT_CLIP == 2 && KILN_ACT_SIGMOID == 3 && KILN_ACT_SILU == 4 &&
                   KILN_ACT_HARDSWISH == 5 && KILN_ACT_GELU == 6 && KILN_ACT_GELU_TANH == 7 &&
                   KILN_ACT_LEAKY_RELU == 8 && KILN_ACT_TANH == 9 && KILN_ACT_COUNT == 10,
               "kiln_act_kind changed: update act_apply in elementwise_common.cuh");
_Static_assert(KILN_CUDA_MAX_RANK == KILN_MAX_RANK, "broadcast views hold KILN_MAX_RANK dims");

/* ---- shared helpers (elementwise_host.h) ---- */

kiln_cuda_act kiln_ew_act(const kiln_node *n, kiln_dtype out) {
    kiln_cuda_act a = {0, 0.0f, 0.0f};
    if (n->act.kind == KILN_ACT_NONE || !kiln_dtype_is_float(out)) return a;
    a.kind = (int)n->act.kind;
    a.alpha = n->act.alpha;
    a.beta = n->act.beta;
    return a;
}

static const char *dtype_reason(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_UNDEFINED: return "dtype not known at build time";
    case KILN_DTYPE_STRING: return "dtype string (no GPU kernel)";
    default: return "dtype without a GPU kernel";
    }
}

const char *kiln_ew_supports_dtypes(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    for (int i = 0; i < n->n_declared; i++) {
        if (!in[i]) continue;
        if (kiln_cuda_ctype(in[i]->dtype) < 0) return dtype_reason(in[i]->dtype);
        if (in[i]->rank > KILN_CUDA_MAX_RANK) return "rank above 8";
    }
    for (int j = 0; j < n->n_outputs; j++) {
        if (n->outputs[j] < 0) continue;
        if (kiln_cuda_ctype(out[j].dtype) < 0) return dtype_reason(out[j].dtype);
    }
    return NULL;
}

kiln_status kiln_ew_finish_act(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *out) {
    if (n->act.kind == KILN_ACT_NONE || !out[0].data) return KILN_STATUS_OK;
    return kiln_cuda_apply_act(r, n, &n->act, &out[0]);
}

kiln_status kiln_cuda_apply_act(kiln_cuda_run *r, const kiln_node *n, const kiln_act *a, kiln_tensor *t) {
    if (a->kind == KILN_ACT_NONE || !kiln_dtype_is_float(t->dtype)) return KILN_STATUS_OK;
    int64_t count = kiln_shape_count(t->rank, t->dims);
    if (count <= 0) return KILN_STATUS_OK;
    kiln_cuda_act act = {(int)a->kind, a->alpha, a->beta};
    kiln_ew_params p = {0};
    int ct = kiln_cuda_ctype(t->dtype);
    return kiln_cuda_check(kiln_ew_unary(KILN_EW_IDENT, ct, ct, t->data, t->data, count, p, act, r->stream), n,
                           "fused activation kernel");
}

/* ---- broadcasting views ---- */

/* (elementwise_host.h) */
void kiln_ew_views(const kiln_tensor *out, const kiln_tensor *const *ins, int k, kiln_cuda_view *v) {
    int64_t s[KILN_EW_MAX_IN][KILN_MAX_RANK];
    int64_t dims[KILN_MAX_RANK], st[KILN_EW_MAX_IN][KILN_MAX_RANK];
    int r = 0;
    for (int i = 0; i < k; i++) kiln_broadcast_strides(ins[i]->rank, ins[i]->dims, out->rank, out->dims, s[i]);
    for (int d = out->rank - 1; d >= 0; d--) { /* innermost first */
        int64_t size = out->dims[d];
        if (size == 1) continue;
        bool merge = r > 0;
        for (int i = 0; merge && i < k; i++) merge = s[i][d] == st[i][r - 1] * dims[r - 1];
        if (merge) {
            dims[r - 1] *= size;
            continue;
        }
        dims[r] = size;
        for (int i = 0; i < k; i++) st[i][r] = s[i][d];
        r++;
    }
    if (r == 0) {
        dims[0] = 1;
        for (int i = 0; i < k; i++) st[i][0] = 0;
        r = 1;
    }
    for (int i = 0; i < k; i++) {
        v[i].rank = r;
        for (int j = 0; j < r; j++) {
            v[i].dims[j] = dims[r - 1 - j];
            v[i].strides[j] = st[i][r - 1 - j];
        }
    }
}

/* ---- unary math and activations ---- */

static int unary_code(const kiln_node *n) {
    switch (n->op) {
    case KILN_OP_Abs: return KILN_EW_ABS;
    case KILN_OP_Neg: return KILN_EW_NEG;
    case KILN_OP_Floor: return KILN_EW_FLOOR;
    case KILN_OP_Ceil: return KILN_EW_CEIL;
    case KILN_OP_Round: return KILN_EW_ROUND;
    case KILN_OP_Sqrt: return KILN_EW_SQRT;
    case KILN_OP_Reciprocal: return KILN_EW_RECIPROCAL;
    case KILN_OP_Exp: return KILN_EW_EXP;
    case KILN_OP_Log: return KILN_EW_LOG;
    case KILN_OP_Sin: return KILN_EW_SIN;
    case KILN_OP_Cos: return KILN_EW_COS;
    case KILN_OP_Tan: return KILN_EW_TAN;
    case KILN_OP_Asin: return KILN_EW_ASIN;
    case KILN_OP_Acos: return KILN_EW_ACOS;
    case KILN_OP_Atan: return KILN_EW_ATAN;
    case KILN_OP_Sinh: return KILN_EW_SINH;
    case KILN_OP_Cosh: return KILN_EW_COSH;
    case KILN_OP_Tanh: return KILN_EW_TANH;
    case KILN_OP_Asinh: return KILN_EW_ASINH;
    case KILN_OP_Acosh: return KILN_EW_ACOSH;
    case KILN_OP_Atanh: return KILN_EW_ATANH;
    case KILN_OP_Erf: return KILN_EW_ERF;
    case KILN_OP_Sign: return KILN_EW_SIGN;
    case KILN_OP_IsNaN: return KILN_EW_ISNAN;
    case KILN_OP_IsInf: return KILN_EW_ISINF;
    case KILN_OP_Not: return KILN_EW_NOT;
    case KILN_OP_BitwiseNot: return KILN_EW_BITNOT;
    case KILN_OP_Relu: return KILN_EW_RELU;
    case KILN_OP_Sigmoid: return KILN_EW_SIGMOID;
    case KILN_OP_Softplus: return KILN_EW_SOFTPLUS;
    case KILN_OP_Softsign: return KILN_EW_SOFTSIGN;
    case KILN_OP_HardSigmoid: return KILN_EW_HARDSIGMOID;
    case KILN_OP_HardSwish: return KILN_EW_HARDSWISH;
    case KILN_OP_Elu: return KILN_EW_ELU;
    case KILN_OP_Selu: return KILN_EW_SELU;
    case KILN_OP_Celu: return KILN_EW_CELU;
    case KILN_OP_LeakyRelu: return KILN_EW_LEAKYRELU;
    case KILN_OP_ThresholdedRelu: return KILN_EW_THRESHOLDEDRELU;
    case KILN_OP_Mish: return KILN_EW_MISH;
    case KILN_OP_Gelu: return ((const math_act_params *)n->params)->gelu_tanh ? KILN_EW_GELU_TANH : KILN_EW_GELU;
    case KILN_OP_Shrink: return KILN_EW_SHRINK;
    case KILN_OP_Swish: return KILN_EW_SWISH;
    case KILN_OP_Clip: return KILN_EW_CLIP;
    default: return -1;
    }
}

static kiln_ew_params unary_params(const kiln_node *n) {
    kiln_ew_params p = {0};
    if (n->op == KILN_OP_IsInf) {
        const math_isinf_params *q = n->params;
        p.detect_pos = q->detect_positive;
        p.detect_neg = q->detect_negative;
    } else if (n->op != KILN_OP_Clip && n->params) { /* the activations' math_act_params */
        const math_act_params *q = n->params;
        p.alpha = q->alpha;
        p.beta = q->beta;
        p.gamma = q->gamma;
        p.bias = q->bias;
        p.lambd = q->lambd;
    }
    return p;
}

static kiln_status launch_unary(kiln_cuda_run *r, const kiln_node *n, const kiln_tensor *x, kiln_tensor *out,
                                kiln_ew_params p) {
    int64_t count = kiln_shape_count(x->rank, x->dims);
    if (count <= 0) return KILN_STATUS_OK;
    cudaError_t e = kiln_ew_unary(unary_code(n), kiln_cuda_ctype(x->dtype), kiln_cuda_ctype(out[0].dtype), x->data,
                                  out[0].data, count, p, kiln_ew_act(n, out[0].dtype), r->stream);
    return kiln_cuda_check(e, n, "elementwise kernel");
}

static kiln_status run_unary(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    return launch_unary(r, n, in[0], out, unary_params(n));
}

/* numeric_limits<T>::max() of a float dtype: Clip's default bound, as the reference's */
static double float_max(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_F16: return 65504.0;
    case KILN_DTYPE_BF16: return 3.3895313892515355e38; /* 0x7f7f */
    case KILN_DTYPE_F32: return FLT_MAX;
    default: return DBL_MAX;
    }
}

/* Clip: bounds from the attributes (before opset 11) or the host inputs min and max. */
static kiln_status run_clip(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0], *lo = kiln_ew_input(n, in, 1), *hi = kiln_ew_input(n, in, 2);
    kiln_dtype dt = x->dtype;
    kiln_ew_params p = {0};
    if (kiln_dtype_is_float(dt)) {
        const math_clip_params *a = n->params;
        p.lo = a ? a->min : -float_max(dt);
        p.hi = a ? a->max : float_max(dt);
        if (lo) p.lo = kiln_load_f64(dt, lo->data, 0);
        if (hi) p.hi = kiln_load_f64(dt, hi->data, 0);
    } else if (math_is_unsigned(dt)) {
        p.ilo = lo ? (int64_t)math_load_u64(dt, lo->data, 0) : 0;
        p.ihi = hi ? (int64_t)math_load_u64(dt, hi->data, 0) : (int64_t)UINT64_MAX;
    } else {
        p.ilo = lo ? kiln_load_i64(dt, lo->data, 0) : INT64_MIN;
        p.ihi = hi ? kiln_load_i64(dt, hi->data, 0) : INT64_MAX;
    }
    return launch_unary(r, n, x, out, p);
}

static const char *supports_clip(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    for (int i = 1; i < n->n_declared && i < 3; i++) {
        const kiln_tensor *b = in[i];
        if (b && b->rank >= 0 && kiln_shape_count(b->rank, b->dims) > 1) return "min / max with more than one element";
    }
    return kiln_ew_supports_dtypes(n, in, out);
}

/* ---- binary ops with broadcasting (PRelu too) ---- */

static int binary_code(const kiln_node *n) {
    const math_binary_params *p = n->params;
    switch (n->op) {
    case KILN_OP_Add: return KILN_EW_ADD;
    case KILN_OP_Sub: return KILN_EW_SUB;
    case KILN_OP_Mul: return KILN_EW_MUL;
    case KILN_OP_Div: return KILN_EW_DIV;
    case KILN_OP_Pow: return KILN_EW_POW;
    case KILN_OP_Mod: return p->fmod ? KILN_EW_FMOD : KILN_EW_MOD;
    case KILN_OP_BitShift: return p->shift_left ? KILN_EW_SHL : KILN_EW_SHR;
    case KILN_OP_And: case KILN_OP_BitwiseAnd: return KILN_EW_AND;
    case KILN_OP_Or: case KILN_OP_BitwiseOr: return KILN_EW_OR;
    case KILN_OP_Xor: case KILN_OP_BitwiseXor: return KILN_EW_XOR;
    case KILN_OP_Equal: return KILN_EW_EQUAL;
    case KILN_OP_Less: return KILN_EW_LESS;
    case KILN_OP_Greater: return KILN_EW_GREATER;
    case KILN_OP_LessOrEqual: return KILN_EW_LESS_EQUAL;
    case KILN_OP_GreaterOrEqual: return KILN_EW_GREATER_EQUAL;
    case KILN_OP_PRelu: return KILN_EW_PRELU;
    default: return -1;
    }
}

static kiln_status run_binary(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_tensor *y = &out[0];
    if (kiln_shape_count(y->rank, y->dims) <= 0) return KILN_STATUS_OK;
    const kiln_tensor *ins[2] = {in[0], in[1]};
    kiln_cuda_view v[2];
    kiln_ew_views(y, ins, 2, v);
    cudaError_t e = kiln_ew_binary(binary_code(n), kiln_cuda_ctype(in[0]->dtype), kiln_cuda_ctype(in[1]->dtype),
                                   kiln_cuda_ctype(y->dtype), in[0]->data, in[1]->data, y->data, &v[0], &v[1],
                                   kiln_ew_act(n, y->dtype), r->stream);
    return kiln_cuda_check(e, n, "elementwise binary kernel");
}

/* ---- Sum, Mean, Max, Min: KILN_EW_MAX_IN inputs a pass, a running value in scratch between ---- */

static kiln_status run_variadic(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_tensor *y = &out[0];
    int64_t count = kiln_shape_count(y->rank, y->dims);
    if (count <= 0) return KILN_STATUS_OK;
    int op = n->op == KILN_OP_Sum ? KILN_EW_SUM : n->op == KILN_OP_Mean ? KILN_EW_MEAN
             : n->op == KILN_OP_Max ? KILN_EW_MAX : KILN_EW_MIN;
    int total = n->n_declared, ct = kiln_cuda_ctype(y->dtype);
    void *acc = NULL;
    if (total > KILN_EW_MAX_IN) KILN_TRY(kiln_cuda_scratch(r, (size_t)count * 8, &acc));
    const void *acc_in = NULL;
    for (int done = 0; done < total;) {
        int k = total - done < KILN_EW_MAX_IN ? total - done : KILN_EW_MAX_IN;
        bool last = done + k == total;
        const kiln_tensor *ins[KILN_EW_MAX_IN];
        const void *ptrs[KILN_EW_MAX_IN];
        kiln_cuda_view v[KILN_EW_MAX_IN];
        for (int i = 0; i < k; i++) {
            ins[i] = in[done + i];
            ptrs[i] = in[done + i]->data;
        }
        kiln_ew_views(y, ins, k, v);
        cudaError_t e = kiln_ew_variadic(op, ct, k, ptrs, v, acc_in, last ? NULL : acc, last ? y->data : NULL, total,
                                         kiln_ew_act(n, y->dtype), r->stream);
        KILN_TRY(kiln_cuda_check(e, n, "elementwise variadic kernel"));
        acc_in = acc;
        done += k;
    }
    return KILN_STATUS_OK;
}

/* ---- Where ---- */

static kiln_status run_where(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_tensor *y = &out[0];
    if (kiln_shape_count(y->rank, y->dims) <= 0) return KILN_STATUS_OK;
    const kiln_tensor *ins[3] = {in[0], in[1], in[2]};
    kiln_cuda_view v[3];
    kiln_ew_views(y, ins, 3, v);
    cudaError_t e = kiln_ew_where((int)kiln_dtype_size(y->dtype), in[0]->data, in[1]->data, in[2]->data, y->data, v,
                                  r->stream);
    KILN_TRY(kiln_cuda_check(e, n, "Where kernel"));
    return kiln_ew_finish_act(r, n, out);
}

/* ---- registration ---- */


void kiln_cuda_register_elementwise(kiln_cuda_op *table) {
    static const int unary_ops[] = {
        KILN_OP_Abs, KILN_OP_Neg, KILN_OP_Floor, KILN_OP_Ceil, KILN_OP_Round, KILN_OP_Sqrt, KILN_OP_Reciprocal,
        KILN_OP_Exp, KILN_OP_Log, KILN_OP_Sin, KILN_OP_Cos, KILN_OP_Tan, KILN_OP_Asin, KILN_OP_Acos, KILN_OP_Atan,
        KILN_OP_Sinh, KILN_OP_Cosh, KILN_OP_Tanh, KILN_OP_Asinh, KILN_OP_Acosh, KILN_OP_Atanh, KILN_OP_Erf,
        KILN_OP_Sign, KILN_OP_IsNaN, KILN_OP_IsInf, KILN_OP_Not, KILN_OP_BitwiseNot, KILN_OP_Relu, KILN_OP_Sigmoid,
        KILN_OP_Softplus, KILN_OP_Softsign, KILN_OP_HardSigmoid, KILN_OP_HardSwish, KILN_OP_Elu, KILN_OP_Selu,
        KILN_OP_Celu, KILN_OP_LeakyRelu, KILN_OP_ThresholdedRelu, KILN_OP_Mish, KILN_OP_Gelu, KILN_OP_Shrink,
        KILN_OP_Swish,
    };
    static const int binary_ops[] = {
        KILN_OP_Add, KILN_OP_Sub, KILN_OP_Mul, KILN_OP_Div, KILN_OP_Pow, KILN_OP_Mod, KILN_OP_BitShift,
        KILN_OP_And, KILN_OP_Or, KILN_OP_Xor, KILN_OP_Equal, KILN_OP_Less, KILN_OP_Greater, KILN_OP_LessOrEqual,
        KILN_OP_GreaterOrEqual, KILN_OP_BitwiseAnd, KILN_OP_BitwiseOr, KILN_OP_BitwiseXor, KILN_OP_PRelu,
    };
    for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++)
        kiln_ew_set(table, unary_ops[i], kiln_ew_supports_dtypes, run_unary, 0);
    for (size_t i = 0; i < sizeof binary_ops / sizeof binary_ops[0]; i++)
        kiln_ew_set(table, binary_ops[i], kiln_ew_supports_dtypes, run_binary, 0);
    kiln_ew_set(table, KILN_OP_Sum, kiln_ew_supports_dtypes, run_variadic, 0);
    kiln_ew_set(table, KILN_OP_Mean, kiln_ew_supports_dtypes, run_variadic, 0);
    kiln_ew_set(table, KILN_OP_Max, kiln_ew_supports_dtypes, run_variadic, 0);
    kiln_ew_set(table, KILN_OP_Min, kiln_ew_supports_dtypes, run_variadic, 0);
    kiln_ew_set(table, KILN_OP_Where, kiln_ew_supports_dtypes, run_where, 0);
    kiln_ew_set(table, KILN_OP_Clip, supports_clip, run_clip, (1u << 1) | (1u << 2)); /* min, max on the host */
    kiln_cuda_register_elementwise_convert(table);
    kiln_cuda_register_elementwise_fused(table);
}
