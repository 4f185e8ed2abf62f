/* kernels_elementwise.h — launchers of the elementwise family's kernels (the .cu files
 * elementwise_*.cu), called by the host code in elementwise.c and elementwise_quant.c.
 *
 * Element types are KILN_CT_* (kernels.h). Float tensors (f32, f16, bf16) are computed in f32,
 * f64 in f64; integer and bool tensors on 64-bit two's complement bits, wrapped to the dtype on
 * store, as the reference backend does (src/backends/ref/). Broadcasting operands come as
 * kiln_cuda_view over the output's dims (the caller merges dims first: see elementwise.c), one
 * view per operand, all with the same rank and dims. Every launcher enqueues on `stream`,
 * never synchronizes, and returns cudaGetLastError() of its launches; n == 0 launches nothing. */
#ifndef KILN_CUDA_KERNELS_ELEMENTWISE_H
#define KILN_CUDA_KERNELS_ELEMENTWISE_H

#include "kernels.h"

#include <stddef.h>

/* Inputs one variadic launch reads; Sum/Mean/Max/Min of more go through an accumulator. */
#define KILN_EW_MAX_IN 8

/* One-input ops (same shape in and out). The float ones take f32/f16/bf16/f64; the ones
 * marked "int" also (or only) take integer and bool dtypes. */
enum {
    KILN_EW_IDENT = 0, /* y = x, then the fused activation (kiln_cuda_apply_act) */
    KILN_EW_ABS,       /* float, int */
    KILN_EW_NEG,       /* float, int */
    KILN_EW_FLOOR, KILN_EW_CEIL, KILN_EW_ROUND, KILN_EW_SQRT, KILN_EW_RECIPROCAL, KILN_EW_EXP,
    KILN_EW_LOG, KILN_EW_SIN, KILN_EW_COS, KILN_EW_TAN, KILN_EW_ASIN, KILN_EW_ACOS, KILN_EW_ATAN,
    KILN_EW_SINH, KILN_EW_COSH, KILN_EW_TANH, KILN_EW_ASINH, KILN_EW_ACOSH, KILN_EW_ATANH,
    KILN_EW_ERF,
    KILN_EW_SIGN,      /* float, int */
    KILN_EW_ISNAN,     /* float -> bool */
    KILN_EW_ISINF,     /* float -> bool (detect_pos / detect_neg) */
    KILN_EW_NOT,       /* bool */
    KILN_EW_BITNOT,    /* int */
    KILN_EW_RELU,      /* float, int */
    KILN_EW_SIGMOID, KILN_EW_SOFTPLUS, KILN_EW_SOFTSIGN, KILN_EW_HARDSIGMOID, KILN_EW_HARDSWISH,
    KILN_EW_ELU, KILN_EW_SELU, KILN_EW_CELU, KILN_EW_LEAKYRELU, KILN_EW_THRESHOLDEDRELU,
    KILN_EW_MISH, KILN_EW_GELU, KILN_EW_GELU_TANH,
    KILN_EW_SHRINK,    /* float, int */
    KILN_EW_SWISH,
    KILN_EW_CLIP,      /* float, int: bounds in kiln_ew_params */
    KILN_EW_UNARY_COUNT
};

/* Two-input ops with broadcasting. Comparisons write bool. */
enum {
    KILN_EW_ADD = 0, KILN_EW_SUB, KILN_EW_MUL, KILN_EW_DIV,
    KILN_EW_MOD,     /* Python's %: the divisor's sign */
    KILN_EW_FMOD,    /* C fmod: the dividend's sign */
    KILN_EW_POW,     /* the exponent may have another dtype than the base */
    KILN_EW_PRELU,   /* a < 0 ? b * a : a */
    KILN_EW_EQUAL, KILN_EW_LESS, KILN_EW_GREATER, KILN_EW_LESS_EQUAL, KILN_EW_GREATER_EQUAL,
    KILN_EW_AND, KILN_EW_OR, KILN_EW_XOR, /* bitwise; on bool for And/Or/Xor */
    KILN_EW_SHL, KILN_EW_SHR,
    KILN_EW_BINARY_COUNT
};

/* Sum, Mean, Max, Min */
enum { KILN_EW_SUM = 0, KILN_EW_MEAN, KILN_EW_MAX, KILN_EW_MIN };

/* Attributes of the one-input ops; each op reads only the fields named beside them. */
typedef struct kiln_ew_params {
    float alpha;  /* Elu Selu Celu LeakyRelu ThresholdedRelu HardSigmoid Swish */
    float beta;   /* HardSigmoid */
    float gamma;  /* Selu */
    float bias;   /* Shrink */
    float lambd;  /* Shrink */
    int detect_pos, detect_neg; /* IsInf */
    double lo, hi;              /* Clip of floats */
    int64_t ilo, ihi;           /* Clip of integers: bits, compared unsigned for unsigned dtypes */
} kiln_ew_params;

/* y = op(x) over n elements; ct_out is ct_in, or BOOL for IsNaN / IsInf. The activation act
 * (kind 0: none) is applied to float results. */
KILN_CUDA_EXTERN cudaError_t kiln_ew_unary(int op, int ct_in, int ct_out, const void *x, void *y, int64_t n,
                                           kiln_ew_params p, kiln_cuda_act act, cudaStream_t stream);

/* y = op(a, b) broadcast: va and vb hold the output's dims and each operand's strides.
 * ct_b differs from ct_a only for Pow (any numeric exponent); ct_out is ct_a or BOOL. */
KILN_CUDA_EXTERN cudaError_t kiln_ew_binary(int op, int ct_a, int ct_b, int ct_out, const void *a, const void *b,
                                            void *y, const kiln_cuda_view *va, const kiln_cuda_view *vb,
                                            kiln_cuda_act act, cudaStream_t stream);

/* One pass of Sum/Mean/Max/Min over up to KILN_EW_MAX_IN inputs x[k] of dtype ct (views v[k]),
 * folded in input order after acc_in (if not NULL) or after x[0]. acc_out not NULL: the running
 * value goes there (8 bytes an output element: f32 for f32/f16/bf16, f64, or int64 bits), for
 * the next pass; else y gets it (Mean divided by n_total, then act). */
KILN_CUDA_EXTERN cudaError_t kiln_ew_variadic(int op, int ct, int n_in, const void *const *x,
                                              const kiln_cuda_view *v, const void *acc_in, void *acc_out,
                                              void *y, int n_total, kiln_cuda_act act, cudaStream_t stream);

/* out = cond ? x : y, by element size (1, 2, 4 or 8 bytes); v[0..2] views of cond, x, y. */
KILN_CUDA_EXTERN cudaError_t kiln_ew_where(int elem_size, const void *cond, const void *x, const void *y, void *out,
                                           const kiln_cuda_view *v, cudaStream_t stream);

/* y = x converted from ct_in to ct_out (the rules of src/backends/ref/cast.c). */
KILN_CUDA_EXTERN cudaError_t kiln_ew_cast(int ct_in, int ct_out, const void *x, void *y, int64_t n,
                                          cudaStream_t stream);

/* y[0..n) = 1 in dtype ct (Dropout's mask). */
KILN_CUDA_EXTERN cudaError_t kiln_ew_fill_one(int ct, void *y, int64_t n, cudaStream_t stream);

/* How scale and zero point map onto x seen as (outer, d, inner): kind 0 per tensor (index 0),
 * 1 per axis (index a), 2 blocked (index (o * s + a / block) * inner + i). */
typedef struct kiln_ew_quant {
    int kind;
    int64_t outer, d, inner;
    int64_t s, block;
} kiln_ew_quant;

/* QuantizeLinear: y = saturate(round_half_even(x / scale) + zp); x f32/f16/bf16/i32, scale
 * f32/f16/bf16/i32, y u8/i8/u16/i16 (zp, if not NULL, of y's dtype); the division in ct_prec
 * (f32, f16, bf16 or f64) as the reference does. */
KILN_CUDA_EXTERN cudaError_t kiln_ew_quantize(int ct_x, int ct_scale, int ct_y, int ct_prec, const void *x,
                                              const void *scale, const void *zp, void *y, kiln_ew_quant l,
                                              cudaStream_t stream);

/* DequantizeLinear: y = (x - zp) * scale; x u8/i8/u16/i16/i32 (zp, if not NULL, the same),
 * scale f32/f16/bf16, y f32/f16/bf16. */
KILN_CUDA_EXTERN cudaError_t kiln_ew_dequantize(int ct_x, int ct_scale, int ct_y, const void *x, const void *scale,
                                                const void *zp, void *y, kiln_ew_quant l, cudaStream_t stream);

/* DynamicQuantizeLinear of f32 x: y u8, and the scale (f32) and zero point (u8) scalars when
 * their pointers are not NULL. scratch: kiln_ew_dynamic_quantize_scratch() bytes. */
KILN_CUDA_EXTERN size_t kiln_ew_dynamic_quantize_scratch(void);
KILN_CUDA_EXTERN cudaError_t kiln_ew_dynamic_quantize(const float *x, int64_t n, uint8_t *y, float *scale,
                                                      uint8_t *zp, void *scratch, cudaStream_t stream);

#endif /* KILN_CUDA_KERNELS_ELEMENTWISE_H */
