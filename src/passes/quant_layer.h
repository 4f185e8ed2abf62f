/* quant_layer.h — private to src/passes/quantize.c and qdq.c: the int8 parameters of one Conv,
 * MatMul or Gemm layer, whichever way they were found — from calibrated scales and f32 weights
 * (post-training, quantize.c) or from the QuantizeLinear/DequantizeLinear nodes around the layer
 * (explicit quantization of QAT models, qdq.c) — so that one emitter (quantize.c) turns both into
 * the same integer ops. quantize.h says what the rewrites are. */
#ifndef KILN_PASSES_QUANT_LAYER_H
#define KILN_PASSES_QUANT_LAYER_H

#include "pass_util.h"

typedef struct qlayer {
    /* The f32 input (activation) and how it is quantized: q = saturate(rint(x / sx) + zx). */
    int x;
    float sx;
    int32_t zx;
    kiln_dtype xdt;  /* I8 or U8 */
    bool trans_a;    /* Gemm transA: the quantized input is transposed before the product */
    /* Weights: m output channels of `per` values each, channel-major, symmetric int8 (zero point 0),
     * one scale per channel. Conv keeps its weight shape (wrank, wdims: OIHW...); for MatMul/Gemm
     * the emitter lays them out [K, N]. */
    int64_t m, per;
    int8_t *w;       /* [m][per], owned */
    float *sw;       /* [m], owned */
    int wrank;
    int64_t wdims[KILN_MAX_RANK];
    /* Bias. Conv: a constant [m] (owned) or NULL. MatMul/Gemm: an f32 value added to the product
     * (any shape that broadcasts; Gemm's beta already applied) or -1. */
    float *bias;
    int bias_v;
    /* The output: quantized too when has_y (a calibrated scale, or every reader is a QuantizeLinear
     * with the same parameters), which lets QLinearConv/QLinearMatMul requantize it directly. */
    bool has_y;
    float sy;
    int32_t zy;
    kiln_dtype ydt;
} qlayer;

void qlayer_free(qlayer *L);

/* Explicit quantization (qdq.c). A node is an explicit int8 layer when its input is the output
 * of a DequantizeLinear. Each function fills L from the Q/DQ nodes around node ni and returns
 * NULL, or returns why ni stays f32 (a static string; L is then left empty). */
bool qdq_reads_dequantized(const pass_ctx *c, int ni);
const char *qdq_conv_layer(pass_ctx *c, int ni, qlayer *L);
const char *qdq_matmul_layer(pass_ctx *c, int ni, qlayer *L);

#endif /* KILN_PASSES_QUANT_LAYER_H */
