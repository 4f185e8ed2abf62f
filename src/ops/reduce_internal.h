/* reduce_internal.h — what the reduce group's files share: the typed attribute structs of
 * its ops (node->params), dtype classes for the checks in infer, reading small integer inputs
 * (axes, K, axis), axis-set resolution for the Reduce* ops, and float stores that round once.
 * Private to src/ops/{reduce,argminmax,softmax,cumulative,topk,nms,losses,attention,rotary,
 * det,linear_attention,causal_conv,swiglu}.c and their src/backends/ref/ twins. The helpers are
 * static inline, except the red_* shape functions declared beside each struct, which live in
 * the family's src/ops/<family>.c so that infer and the kernel agree. Tested through the node
 * tests listed in src/ops/ops_reduce.def. */
#ifndef KILN_OPS_REDUCE_INTERNAL_H
#define KILN_OPS_REDUCE_INTERNAL_H

#include "op.h"

#include <math.h>
#include <string.h>

/* ---- typed attribute structs (node->params) ---- */

/* Reduce*: axes as an attribute (before opset 13 for ReduceSum, 18 for the others) or as
 * input 1 (axes_from_input). n_axes = 0 means "all axes" unless noop_with_empty_axes. */
typedef struct red_reduce_params {
    bool keepdims;
    bool noop_with_empty_axes;
    bool axes_from_input;
    int n_axes;
    int64_t axes[KILN_MAX_RANK];
} red_reduce_params;

/* The reduced axes of a Reduce* node for input in[0] of known rank (src/ops/reduce.c);
 * *known is false when they come from an input whose values are not known yet. */
kiln_status red_reduce_mask(const kiln_node *node, kiln_tensor *const *in, bool mask[KILN_MAX_RANK], bool *known);

/* ArgMax, ArgMin */
typedef struct red_arg_params {
    int64_t axis;
    bool keepdims;
    bool select_last_index;
} red_arg_params;

/* Softmax, LogSoftmax, Hardmax: before opset 13 the input is coerced to 2-D at axis (legacy). */
typedef struct red_softmax_params {
    int64_t axis;
    bool legacy_2d;
} red_softmax_params;

/* The normalised axis of a Softmax/LogSoftmax/Hardmax node (src/ops/softmax.c). */
kiln_status red_softmax_axis(const kiln_node *node, int rank, int *axis);

/* CumSum, CumProd */
typedef struct red_cum_params {
    bool exclusive;
    bool reverse;
} red_cum_params;

/* TopK: k is an attribute before opset 10 (k_attr >= 0), input 1 from opset 10. */
typedef struct red_topk_params {
    int64_t axis;
    int64_t k_attr;
    bool largest;
    bool sorted;
} red_topk_params;

/* k of a TopK node: the attribute, or input 1's value; *known is false while that input's
 * data is not known (src/ops/topk.c). */
kiln_status red_topk_k(const kiln_node *node, kiln_tensor *const *in, int64_t *k, bool *known);

/* NonMaxSuppression */
typedef struct red_nms_params {
    bool center_point_box;
} red_nms_params;

/* NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss */
typedef enum red_reduction { RED_REDUCTION_NONE, RED_REDUCTION_SUM, RED_REDUCTION_MEAN } red_reduction;
typedef struct red_loss_params {
    red_reduction reduction;
    bool has_ignore_index;
    int64_t ignore_index;
} red_loss_params;

/* Attention (opset 23, 24, 25) */
typedef struct red_attention_params {
    bool is_causal;
    int64_t q_num_heads, kv_num_heads; /* 0 when absent (4-D inputs) */
    int qk_matmul_output_mode;         /* 0..3 */
    bool has_scale;
    float scale;
    float softcap;                     /* 0: none */
    kiln_dtype softmax_precision;      /* UNDEFINED: the input's type */
    int64_t left_window, right_window; /* -1: unbounded (opset 25) */
} red_attention_params;

/* The sizes of an Attention node: batch, q/kv heads, q/kv sequence lengths, past length P,
 * total kv length T = P + Skv, head sizes of Q/K (E) and V (Ev); three_d for 3-D inputs.
 * red_attention_dims (src/ops/attention.c) checks the shapes and fills it (unknown dims stay
 * unknown at import; all are known at run time). */
typedef struct red_attn_dims {
    bool three_d;
    int64_t B, Hq, Hkv, Sq, Skv, P, T, E, Ev;
} red_attn_dims;
kiln_status red_attention_dims(const kiln_node *node, kiln_tensor *const *in, red_attn_dims *d);

/* RotaryEmbedding */
typedef struct red_rotary_params {
    bool interleaved;
    int64_t rotary_embedding_dim; /* 0: the head size */
    int64_t num_heads;            /* 0: absent (4-D input) */
} red_rotary_params;

/* The layout of a RotaryEmbedding input: batch, sequence, heads, head size (src/ops/rotary.c). */
kiln_status red_rotary_layout(const kiln_node *node, const kiln_tensor *x, int64_t *B, int64_t *S, int64_t *H, int64_t *D);

/* LinearAttention */
typedef enum red_update_rule {
    RED_RULE_LINEAR, RED_RULE_GATED, RED_RULE_DELTA, RED_RULE_GATED_DELTA
} red_update_rule;
typedef struct red_linattn_params {
    int64_t q_num_heads, kv_num_heads;
    float scale; /* 0: 1/sqrt(d_k) */
    red_update_rule rule;
} red_linattn_params;

/* CausalConvWithState */
typedef struct red_causal_conv_params {
    bool silu;
} red_causal_conv_params;

/* SwiGLU */
typedef struct red_swiglu_params {
    float alpha;
} red_swiglu_params;

/* Allocates node->params as a zeroed struct of type T into variable p, or returns OOM. */
#define RED_NEW_PARAMS(T, p)                                                                       \
    T *p = kiln_calloc(1, sizeof(T));                                                              \
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");                         \
    node->params = p

/* ---- dtype classes ---- */
enum {
    RED_T_FLOAT = 1u, /* f16, bf16, f32, f64 */
    RED_T_SINT = 2u,  /* int8 .. int64 */
    RED_T_UINT = 4u,  /* uint8 .. uint64 */
    RED_T_BOOL = 8u,
    RED_T_INT = RED_T_SINT | RED_T_UINT,
    RED_T_NUM = RED_T_FLOAT | RED_T_INT,
};

static inline unsigned red_dtype_class(kiln_dtype t) {
    if (kiln_dtype_is_float(t)) return RED_T_FLOAT;
    if (t == KILN_DTYPE_BOOL) return RED_T_BOOL;
    if (kiln_dtype_is_int(t)) return kiln_dtype_is_signed(t) ? RED_T_SINT : RED_T_UINT;
    return 0;
}

static inline bool red_dtype_in(kiln_dtype t, unsigned classes) { return (red_dtype_class(t) & classes) != 0; }

/* A present input of the node, or an INVALID_MODEL error naming it. */
static inline kiln_status red_need_input(const kiln_node *node, kiln_tensor *const *in, int i, const char *name) {
    if (i >= node->n_declared || !in[i])
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "required input %d (%s) is missing", i, name);
    return KILN_STATUS_OK;
}

/* Whether optional input i is given. */
static inline bool red_has_input(const kiln_node *node, kiln_tensor *const *in, int i) {
    return i < node->n_declared && in[i] != NULL;
}

static inline void red_copy_shape(kiln_tensor *out, const kiln_tensor *in) {
    out->rank = in->rank;
    if (in->rank > 0) memcpy(out->dims, in->dims, sizeof(int64_t) * (size_t)in->rank);
}

/* Reads a scalar or one-element int32/int64 tensor (axis of CumSum, K of TopK). */
static inline kiln_status red_read_scalar_int(const kiln_node *node, const kiln_tensor *t, const char *what,
                                              int64_t *v) {
    if (t->dtype != KILN_DTYPE_I64 && t->dtype != KILN_DTYPE_I32)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "%s has dtype %s, expected int32 or int64", what,
                               kiln_dtype_name(t->dtype));
    if (kiln_shape_count(t->rank, t->dims) != 1 || t->rank > 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s must be a scalar or hold one value", what);
    *v = kiln_load_i64(t->dtype, t->data, 0);
    return KILN_STATUS_OK;
}

/* ---- float stores that round once ----
 * kiln_store_f64 rounds a double to f16/bf16 through f32, which can round twice. Rounding to
 * f32 "to odd" first (truncate, then set the last bit when inexact) keeps the final
 * round-to-nearest-even exact. */
static inline float red_f64_to_f32_odd(double v) {
    float f = (float)v;
    if (isnan(v) || isinf(v) || (double)f == v) return f;
    if (fabs((double)f) > fabs(v)) f = nextafterf(f, 0.0f);
    uint32_t u;
    memcpy(&u, &f, 4);
    u |= 1u;
    memcpy(&f, &u, 4);
    return f;
}

static inline void red_store_f64(kiln_dtype t, void *p, int64_t i, double v) {
    if (t == KILN_DTYPE_F16) ((uint16_t *)p)[i] = kiln_f32_to_f16(red_f64_to_f32_odd(v));
    else if (t == KILN_DTYPE_BF16) ((uint16_t *)p)[i] = kiln_f32_to_bf16(red_f64_to_f32_odd(v));
    else kiln_store_f64(t, p, i, v);
}

/* v rounded to the precision of float dtype t (the value a store then load would give). */
static inline double red_round_to(kiln_dtype t, double v) {
    switch (t) {
    case KILN_DTYPE_F32: return (double)(float)v;
    case KILN_DTYPE_F16: return kiln_f16_to_f32(kiln_f32_to_f16(red_f64_to_f32_odd(v)));
    case KILN_DTYPE_BF16: return kiln_bf16_to_f32(kiln_f32_to_bf16(red_f64_to_f32_odd(v)));
    default: return v;
    }
}

/* Copies a whole tensor of known shape into a new malloc'ed double buffer (the caller frees
 * it); NULL on OOM. An empty tensor gives a 1-element buffer, so NULL always means OOM. */
static inline double *red_load_all_f64(const kiln_tensor *t, int64_t *n_out) {
    int64_t n = kiln_shape_count(t->rank, t->dims);
    size_t bytes;
    if (n < 0 || kiln_checked_bytes(n ? n : 1, sizeof(double), &bytes) != KILN_STATUS_OK) return NULL;
    double *b = kiln_malloc(bytes);
    if (!b) return NULL;
    for (int64_t i = 0; i < n; i++) b[i] = kiln_load_f64(t->dtype, t->data, i);
    if (n_out) *n_out = n;
    return b;
}

/* Outer/axis/inner split of a shape around axis: outer = prod(dims[:axis]), len = dims[axis],
 * inner = prod(dims[axis+1:]). Element (o, j, i) sits at (o * len + j) * inner + i. */
static inline void red_split_axis(const kiln_tensor *t, int axis, int64_t *outer, int64_t *len, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++) *outer *= t->dims[d];
    for (int d = axis + 1; d < t->rank; d++) *inner *= t->dims[d];
    *len = t->dims[axis];
}

#endif /* KILN_OPS_REDUCE_INTERNAL_H */
