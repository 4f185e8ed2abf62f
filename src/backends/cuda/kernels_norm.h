/* kernels_norm.h — launchers of the norm family's kernels (norm*.cu): normalizations,
 * softmaxes, reductions, arg-reductions, cumulative sums, TopK, fused attention, rotary
 * embedding and SwiGLU. The host side (norm*.c) maps kiln nodes onto these calls.
 *
 * Float tensors are KILN_CT_F32, KILN_CT_F16 or KILN_CT_BF16 and are computed in FP32.
 * Every launcher returns cudaGetLastError() after its launches (cudaErrorInvalidValue for an
 * element type it has no kernel for) and enqueues on `stream` only. Sizes are element counts;
 * all tensors are contiguous row-major unless a view says otherwise. */
#ifndef KILN_CUDA_KERNELS_NORM_H
#define KILN_CUDA_KERNELS_NORM_H

#include "kernels.h"

/* ---- row normalizations: LayerNorm, RMSNorm, InstanceNorm, GroupNorm, MVN ----
 * x is (rows, cols); each row is normalized with its own statistics, then scaled and shifted
 * by parameters indexed as `affine` says. */
enum {
    KILN_NORM_AFFINE_NONE = 0, /* no scale, no bias (MeanVarianceNormalization) */
    KILN_NORM_AFFINE_COL,      /* parameter of column j, through pview/bview (LayerNorm) */
    KILN_NORM_AFFINE_ROW,      /* parameter row % C (InstanceNorm) */
    KILN_NORM_AFFINE_GROUP,    /* parameter row % G (GroupNorm before opset 21) */
    KILN_NORM_AFFINE_GROUP_CH, /* parameter (row % G) * (cols / sp) + j / sp (GroupNorm 21) */
};

typedef struct kiln_norm_rows_args {
    int64_t rows, cols;
    float eps;
    int rms;      /* no mean: x / sqrt(mean(x^2) + eps) */
    int mvn;      /* (x - mean) / (sqrt(var) + 1e-9), eps unused */
    int affine;   /* KILN_NORM_AFFINE_* */
    int ct_param; /* element type of scale and bias */
    int ct_stat;  /* element type of the mean / inv_std outputs */
    int64_t C, G, sp;
    /* AFFINE_COL: when s_direct (b_direct) the scale (bias) has exactly `cols` elements in
     * order; else sview (bview) holds the normalized dims and the parameter's broadcast strides. */
    int s_direct, b_direct;
    kiln_cuda_view sview, bview;
} kiln_norm_rows_args;

/* scale/bias may be NULL (no scale: 1, no bias: 0); mean/inv_std (rows values) may be NULL. */
KILN_CUDA_EXTERN cudaError_t kiln_norm_rows(int ct, const void *x, void *y, const void *scale, const void *bias,
                                            void *mean, void *inv_std, const kiln_norm_rows_args *a,
                                            cudaStream_t stream);

/* MeanVarianceNormalization over any set of axes: group g's elements are at
 * base(g) + off(k), base from `kept` (dims and input strides of the kept axes, row-major in
 * g), off from `red` (dims and strides of the reduced axes, row-major in k). */
KILN_CUDA_EXTERN cudaError_t kiln_norm_mvn_general(int ct, const void *x, void *y, const kiln_cuda_view *kept,
                                                   const kiln_cuda_view *red, cudaStream_t stream);

/* BatchNormalization (inference): x (N, P, inner); parameters of P values of type ct_param. */
KILN_CUDA_EXTERN cudaError_t kiln_norm_batch(int ct, const void *x, void *y, int ct_param, const void *scale,
                                             const void *bias, const void *mean, const void *var, int64_t N,
                                             int64_t P, int64_t inner, float eps, cudaStream_t stream);

/* LpNormalization along the middle axis of (outer, len, inner); p is 1 or 2. */
KILN_CUDA_EXTERN cudaError_t kiln_norm_lp(int ct, const void *x, void *y, int64_t outer, int64_t len,
                                          int64_t inner, int p, cudaStream_t stream);

/* LRN across channels of (N, C, S). */
KILN_CUDA_EXTERN cudaError_t kiln_norm_lrn(int ct, const void *x, void *y, int64_t N, int64_t C, int64_t S,
                                           int64_t size, float alpha, float beta, float bias, cudaStream_t stream);

/* ---- Softmax (mode 0), LogSoftmax (1), Hardmax (2) along the middle axis of (outer, len, inner) ---- */
KILN_CUDA_EXTERN cudaError_t kiln_norm_softmax(int ct, const void *x, void *y, int64_t outer, int64_t len,
                                               int64_t inner, int mode, cudaStream_t stream);

/* ---- Reduce* ---- */
enum {
    KILN_NRED_SUM = 0, KILN_NRED_MEAN, KILN_NRED_MAX, KILN_NRED_MIN, KILN_NRED_PROD, KILN_NRED_L1,
    KILN_NRED_L2, KILN_NRED_LOGSUM, KILN_NRED_LOGSUMEXP, KILN_NRED_SUMSQUARE
};
enum {
    KILN_NRED_ROWS = 0, /* x is (outer, len): reduce each row (inner == 1) */
    KILN_NRED_MIDDLE,   /* x is (outer, len, inner): reduce the middle axis */
    KILN_NRED_GENERAL,  /* any axes: output o at base(o) from `kept`, elements off(k) from `red` */
};
typedef struct kiln_norm_reduce_args {
    int op;     /* KILN_NRED_* */
    int layout; /* KILN_NRED_ROWS / MIDDLE / GENERAL */
    int64_t outer, len, inner; /* ROWS and MIDDLE; len is also the count for GENERAL */
    int64_t n_out;
    kiln_cuda_view kept, red;  /* GENERAL */
    /* Integer Max / Min start values (the dtype's lowest / highest value). */
    int64_t int_lo, int_hi;
} kiln_norm_reduce_args;

/* ct: a float type, or KILN_CT_I8, U8, I32, I64, BOOL (Max/Min), accumulated in 64 bits. */
KILN_CUDA_EXTERN cudaError_t kiln_norm_reduce(int ct, const void *x, void *y, const kiln_norm_reduce_args *a,
                                              cudaStream_t stream);

/* ---- ArgMax / ArgMin along the middle axis of (outer, len, inner) into int64 (outer, inner) ---- */
KILN_CUDA_EXTERN cudaError_t kiln_norm_argminmax(int ct, const void *x, int64_t *y, int64_t outer, int64_t len,
                                                 int64_t inner, int is_max, int select_last, cudaStream_t stream);

/* ---- CumSum / CumProd along the middle axis of (outer, len, inner) ---- */
KILN_CUDA_EXTERN cudaError_t kiln_norm_cumulative(int ct, const void *x, void *y, int64_t outer, int64_t len,
                                                  int64_t inner, int exclusive, int reverse, int prod,
                                                  cudaStream_t stream);

/* ---- TopK along the middle axis of (outer, len, inner): values (may be NULL) and int64
 * indices (may be NULL) of shape (outer, k, inner), sorted, ties to the lower index, NaN
 * largest. Rows longer than KILN_NORM_TOPK_SORT_MAX are cut into chunks sorted in parallel,
 * rounds of them; k there must be at most KILN_NORM_TOPK_LONG_MAX_K and scratch must hold
 * kiln_norm_topk_scratch(...) bytes (cudaErrorInvalidValue otherwise). */
#define KILN_NORM_TOPK_SORT_MAX 4096
#define KILN_NORM_TOPK_LONG_MAX_K (KILN_NORM_TOPK_SORT_MAX / 2)
KILN_CUDA_EXTERN size_t kiln_norm_topk_scratch(int64_t outer, int64_t len, int64_t inner, int64_t k);
KILN_CUDA_EXTERN cudaError_t kiln_norm_topk(int ct, const void *x, void *values, int64_t *indices, int64_t outer,
                                            int64_t len, int64_t inner, int64_t k, int largest, void *scratch,
                                            cudaStream_t stream);

/* ---- Attention (fused: QK^T, scale, softcap, mask, softmax, PV in one kernel) ----
 * Element (b, h, i, e) of Q is at q + b*q_sb + h*q_sh + i*q_ss + e (e contiguous); K and V
 * likewise per kv head, for key rows j >= P (row j - P); rows j < P come from past_k / past_v,
 * (B, Hkv, P, E / Ev) contiguous. Y like Q with Ev. */
typedef struct kiln_norm_attn_args {
    int64_t B, Hq, Hkv, Sq, Skv, P, T, E, Ev;
    int64_t q_sb, q_sh, q_ss;
    int64_t k_sb, k_sh, k_ss;
    int64_t v_sb, v_sh, v_ss;
    int64_t y_sb, y_sh, y_ss;
    float scale;   /* applied to Q.K */
    float softcap; /* 0: none */
    int causal;
    int64_t left_window, right_window; /* -1: unbounded */
    /* attn_mask: element (b, h, i, j) at mask + b*m_sb + h*m_sh + i*m_ss + j (0 strides where
     * broadcast); keys j >= m_len are masked. ct_mask: KILN_CT_BOOL (attend where true) or a
     * float type (added). mask NULL: none. */
    int ct_mask;
    int64_t m_sb, m_sh, m_ss, m_len;
} kiln_norm_attn_args;

/* nonpad (B,) int64 on the device, may be NULL. tactic: -1 picks; 0 the FP32 SIMT kernel, 1 the
 * tensor-core kernel (F16/BF16 with E == Ev in {64, 128}, 16-byte aligned rows). */
KILN_CUDA_EXTERN cudaError_t kiln_norm_attention(int ct, const void *q, const void *k, const void *v,
                                                 const void *past_k, const void *past_v, const void *mask,
                                                 const int64_t *nonpad, void *y, const kiln_norm_attn_args *a,
                                                 int tactic, cudaStream_t stream);
/* Whether the SIMT attention kernel (any dtype) takes head sizes E (Q, K) and Ev (V). */
KILN_CUDA_EXTERN int kiln_norm_attention_simt_fits(int64_t E, int64_t Ev);
/* Whether the tensor-core attention kernel takes these arguments (pointers for alignment). */
KILN_CUDA_EXTERN int kiln_norm_attention_tc_ok(int ct, const void *q, const void *k, const void *v,
                                               const void *past_k, const void *past_v, const void *y,
                                               const kiln_norm_attn_args *a);

/* present (B, Hkv, P + S, W) = past (B, Hkv, P, W) then cur (element (b, g, s, w) at
 * cur + b*c_sb + g*c_sh + s*c_ss + w). */
KILN_CUDA_EXTERN cudaError_t kiln_norm_kv_concat(int ct, const void *past, const void *cur, void *present,
                                                 int64_t B, int64_t H, int64_t P, int64_t S, int64_t W,
                                                 int64_t c_sb, int64_t c_sh, int64_t c_ss, cudaStream_t stream);

/* ---- RotaryEmbedding ----
 * x element (b, h, s, d) at x + b*sb + h*sh + s*ss + d; y the same layout. cos/sin rows of
 * R/2 values: row pos[b*S + s] (pos may be NULL: row b*S + s). A position outside
 * [0, max_pos) gives NaN in the rotated part. */
typedef struct kiln_norm_rotary_args {
    int64_t B, S, H, D, R, max_pos;
    int64_t sb, sh, ss;
    int interleaved;
} kiln_norm_rotary_args;
KILN_CUDA_EXTERN cudaError_t kiln_norm_rotary(int ct, const void *x, const void *cos_cache, const void *sin_cache,
                                              const int64_t *pos, void *y, const kiln_norm_rotary_args *a,
                                              cudaStream_t stream);

/* ---- SwiGLU: y = a * sigmoid(alpha * a) * b over n elements ---- */
KILN_CUDA_EXTERN cudaError_t kiln_norm_swiglu(int ct, const void *a, const void *b, void *y, int64_t n, float alpha,
                                              cudaStream_t stream);

#endif /* KILN_CUDA_KERNELS_NORM_H */
