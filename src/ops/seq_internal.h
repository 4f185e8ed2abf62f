/* seq_internal.h — what the seq group's families share: their typed attribute structs
 * (node->params), the geometry each infer function resolves and its kernel reuses (RNN sizes,
 * quantization granularity, matmul batching, DFT/STFT sizes), and small helpers for optional
 * inputs, scalar inputs, rounding to a float dtype and the ranges of quantized types.
 * Private to src/ops/{rnn,signal,spectral,quant,qmatmul,qconv,random}.c and their twins in
 * src/backends/ref/. Tested through the node tests of those ops (see src/ops/ops_seq.def). */
#ifndef KILN_OPS_SEQ_INTERNAL_H
#define KILN_OPS_SEQ_INTERNAL_H

#include "op.h"

#include <math.h>
#include <string.h>

/* ---- rnn: RNN, GRU, LSTM ---- */

typedef enum seq_act_kind {
    SEQ_ACT_RELU, SEQ_ACT_TANH, SEQ_ACT_SIGMOID, SEQ_ACT_AFFINE, SEQ_ACT_LEAKY_RELU,
    SEQ_ACT_THRESHOLDED_RELU, SEQ_ACT_SCALED_TANH, SEQ_ACT_HARD_SIGMOID, SEQ_ACT_ELU,
    SEQ_ACT_SOFTSIGN, SEQ_ACT_SOFTPLUS
} seq_act_kind;

typedef struct seq_act {
    seq_act_kind kind;
    float alpha, beta;
} seq_act;

#define SEQ_RNN_MAX_ACTS 6 /* 3 per direction (LSTM), 2 directions */

typedef struct seq_rnn_params {
    int num_directions;  /* 1 or 2 */
    bool reverse;        /* direction = "reverse" (with num_directions 1) */
    int64_t hidden_size; /* -1 when the attribute is absent (taken from R) */
    int gates;           /* 1 (RNN), 3 (GRU), 4 (LSTM) */
    int acts_per_dir;    /* 1 (RNN), 2 (GRU), 3 (LSTM) */
    seq_act acts[SEQ_RNN_MAX_ACTS]; /* direction d uses acts[d * acts_per_dir + k] */
    bool has_clip;
    float clip;
    bool input_forget;        /* LSTM */
    bool linear_before_reset; /* GRU */
    int layout;               /* 0: [seq, batch, ...], 1: [batch, seq, ...] */
} seq_rnn_params;

/* Sizes of a recurrent layer (KILN_DIM_UNKNOWN where not known). */
typedef struct seq_rnn_geom {
    int64_t dirs, seq, batch, input, hidden;
} seq_rnn_geom;

/* Reads the sizes from X, W, R (and hidden_size) and checks every present input's shape
 * (INVALID_ARGUMENT naming it). src/ops/rnn.c. */
kiln_status kiln_seq_rnn_geom(const kiln_node *node, kiln_tensor *const *in, seq_rnn_geom *g);

/* ---- signal: DFT, STFT ---- */

typedef struct seq_signal_params {
    int64_t axis;   /* DFT before opset 20 (attribute); later read from input 2 */
    bool inverse;   /* DFT */
    bool onesided;  /* DFT (default 0), STFT (default 1) */
} seq_signal_params;

/* DFT geometry: x seen as (outer, n_in, inner, c_in) around the axis, y as
 * (outer, n_out, inner, c_out); n is the transform length (dft_length). */
typedef struct seq_dft_geom {
    bool known;      /* every field below is known */
    int rank;        /* of x and y (-1 unknown) */
    int axis;        /* -1 until known */
    int64_t n, n_in, n_out, outer, inner, c_in, c_out;
} seq_dft_geom;

/* STFT geometry: signal (batch, len, c_in) -> (batch, frames, bins, 2). */
typedef struct seq_stft_geom {
    bool known;
    int64_t batch, len, c_in, step, frame, frames, bins;
} seq_stft_geom;

/* Resolve the geometry from the inputs (src/ops/signal.c); INVALID_ARGUMENT for bad values. */
kiln_status kiln_seq_dft_geom(const kiln_node *node, kiln_tensor *const *in, seq_dft_geom *g);
kiln_status kiln_seq_stft_geom(const kiln_node *node, kiln_tensor *const *in, seq_stft_geom *g);

/* ---- spectral: HannWindow, HammingWindow, BlackmanWindow, MelWeightMatrix ---- */

typedef struct seq_spectral_params {
    kiln_dtype out_dtype; /* output_datatype */
    bool periodic;        /* windows */
} seq_spectral_params;

/* ---- quant: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear ---- */

typedef struct seq_quant_params {
    int64_t axis;         /* per-axis and blocked */
    int64_t block_size;   /* 0: not blocked */
    kiln_dtype out_dtype; /* output_dtype attribute, UNDEFINED when absent */
    kiln_dtype precision; /* QuantizeLinear precision attribute, UNDEFINED when absent */
} seq_quant_params;

/* How scale and zero point map onto x, seen as (outer, d, inner) around the quantization axis:
 * per tensor (index 0), per axis (index a), blocked (scale (outer, s, inner), index
 * (o * s + a / block) * inner + i). */
typedef enum seq_quant_kind { SEQ_QUANT_TENSOR, SEQ_QUANT_AXIS, SEQ_QUANT_BLOCKED } seq_quant_kind;

typedef struct seq_quant_layout {
    seq_quant_kind kind;
    int64_t outer, d, inner; /* per tensor: (count, 1, 1) */
    int64_t s, block;        /* blocked */
} seq_quant_layout;

/* Decides the granularity from the shapes of x, scale and zero point (may be NULL), checking
 * them (INVALID_ARGUMENT with the shapes). All shapes must be known. src/ops/quant.c. */
kiln_status kiln_seq_quant_layout(const kiln_node *node, const seq_quant_params *p, const kiln_tensor *x,
                                  const kiln_tensor *scale, const kiln_tensor *zp, seq_quant_layout *l);

static inline int64_t seq_quant_index(const seq_quant_layout *l, int64_t o, int64_t a, int64_t i) {
    switch (l->kind) {
    case SEQ_QUANT_AXIS: return a;
    case SEQ_QUANT_BLOCKED: return (o * l->s + a / l->block) * l->inner + i;
    default: return 0;
    }
}

/* ---- qmatmul: MatMulInteger, QLinearMatMul ---- */

/* A product viewed as (batch..., M, K) x (batch..., K, N) -> (batch..., M, N). */
typedef struct seq_mm_geom {
    int rank;                        /* batch rank + 2 */
    int64_t dims[KILN_MAX_RANK];     /* (batch..., M, N) */
    int64_t M, K, N, batch;          /* batch: the number of matrices */
    int64_t a_bstride[KILN_MAX_RANK]; /* per batch dim, in matrices of A (0 where broadcast) */
    int64_t b_bstride[KILN_MAX_RANK];
} seq_mm_geom;

typedef enum seq_mm_side { SEQ_MM_A, SEQ_MM_B, SEQ_MM_Y } seq_mm_side;

/* Geometry of numpy.matmul(a, b) for known shapes (src/ops/qmatmul.c). */
kiln_status kiln_seq_mm_geom(const kiln_node *node, const kiln_tensor *a, const kiln_tensor *b, seq_mm_geom *g);
/* Element strides of a scale or zero point p over the (batch..., M, N) space: per tensor (all
 * 0), A side per row ((M) or (..., M, 1)), B side per column ((N) or (..., 1, N)), Y side
 * ((N) or broadcastable). INVALID_ARGUMENT naming what when p fits none. */
kiln_status kiln_seq_mm_param(const kiln_node *node, const kiln_tensor *p, seq_mm_side side, const seq_mm_geom *g,
                              const char *what, int64_t *strides);

/* ---- random: RandomNormal(Like), RandomUniform(Like), Bernoulli, Multinomial ---- */

typedef struct seq_random_params {
    kiln_dtype dtype;     /* UNDEFINED: from the input (the *Like ops, Bernoulli) */
    bool has_seed;
    float seed;
    float mean, scale;    /* RandomNormal(Like) */
    float low, high;      /* RandomUniform(Like) */
    int64_t sample_size;  /* Multinomial */
    int rank;             /* RandomNormal, RandomUniform: the shape attribute */
    int64_t shape[KILN_MAX_RANK];
} seq_random_params;

/* ---- helpers ---- */

/* Input i of the node, or NULL when it is omitted or beyond the declared inputs. */
static inline const kiln_tensor *seq_in(const kiln_node *node, kiln_tensor *const *in, int i) {
    return i < node->n_declared ? in[i] : NULL;
}

/* True when output j is wanted by the graph. */
static inline bool seq_out_used(const kiln_node *node, int j) {
    return j < node->n_outputs && node->outputs[j] >= 0;
}

/* Reads a one-element integer tensor (a scalar or shape [1]) into *v: INVALID_ARGUMENT naming
 * what when it has another element count, UNSUPPORTED for a non-integer dtype. Needs t->data. */
static inline kiln_status seq_scalar_i64(const kiln_node *node, const kiln_tensor *t, const char *what,
                                         int64_t *v) {
    if (!kiln_dtype_is_int(t->dtype))
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "%s has dtype %s, expected an integer type", what,
                               kiln_dtype_name(t->dtype));
    if (kiln_shape_count(t->rank, t->dims) != 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s must hold one value", what);
    *v = kiln_load_i64(t->dtype, t->data, 0);
    return KILN_STATUS_OK;
}

/* v rounded to the precision of float dtype t (f16, bf16, f32; f64 unchanged): used to
 * reproduce arithmetic "in the type of" a tensor, one rounding per operation. */
static inline double seq_round_to(kiln_dtype t, double v) {
    switch (t) {
    case KILN_DTYPE_F32: return (float)v;
    case KILN_DTYPE_F16: return kiln_f16_to_f32(kiln_f32_to_f16((float)v));
    case KILN_DTYPE_BF16: return kiln_bf16_to_f32(kiln_f32_to_bf16((float)v));
    default: return v;
    }
}

/* The saturation range of an integer quantized type; false for other dtypes. */
static inline bool seq_quant_range(kiln_dtype t, int64_t *lo, int64_t *hi) {
    switch (t) {
    case KILN_DTYPE_U8: *lo = 0; *hi = 255; return true;
    case KILN_DTYPE_I8: *lo = -128; *hi = 127; return true;
    case KILN_DTYPE_U16: *lo = 0; *hi = 65535; return true;
    case KILN_DTYPE_I16: *lo = -32768; *hi = 32767; return true;
    case KILN_DTYPE_I32: *lo = INT32_MIN; *hi = INT32_MAX; return true;
    default: return false;
    }
}

/* saturate(round_half_even(q) + zp) into [lo, hi]; NaN gives zp (clamped). */
static inline int64_t seq_requantize(double q, int64_t zp, int64_t lo, int64_t hi) {
    double r = isnan(q) ? (double)zp : rint(q) + (double)zp;
    if (r <= (double)lo) return lo;
    if (r >= (double)hi) return hi;
    return (int64_t)r;
}

/* Names an ONNX dtype code kiln does not have (float8, int4, float4, ...), for messages. */
static inline const char *seq_onnx_dtype_name(int64_t code) {
    switch (code) {
    case 8: return "string";
    case 14: return "complex64";
    case 15: return "complex128";
    case 17: return "float8e4m3fn";
    case 18: return "float8e4m3fnuz";
    case 19: return "float8e5m2";
    case 20: return "float8e5m2fnuz";
    case 21: return "uint4";
    case 22: return "int4";
    case 23: return "float4e2m1";
    case 24: return "float8e8m0";
    case 25: return "uint2";
    case 26: return "int2";
    default: return kiln_dtype_name((kiln_dtype)code);
    }
}

/* True for the dtype codes kiln has (kiln_dtype values other than UNDEFINED and STRING). */
static inline bool seq_dtype_known(int64_t code) {
    return (code >= 1 && code <= 7) || (code >= 9 && code <= 13) || code == 16;
}

#endif /* KILN_OPS_SEQ_INTERNAL_H */
