/* quantize.h — post-training INT8 quantization of a graph, with ONNX's own quantized ops so the
 * exact integer reference kernels run it (docs/engines.md, /work/shared/QUANTIZATION.md).
 *
 * kiln_pass_quantize rewrites, after the fusions, each
 *   Conv (1-D/2-D, constant f32 weights, optional constant bias, fused act none or Relu) into
 *       QuantizeLinear(x, s_x, 0) -> QLinearConv(., W int8 per output channel, s_w[C], s_y, bias
 *       int32 = rint(b / (s_x * s_w[c]))) [-> Relu on int8] -> DequantizeLinear(., s_y, 0)
 *     when x and the node's output (the activation's output for a fused act) both have a scale;
 *   MatMul / Gemm (transA = 0) / kiln.FusedMatMul with a constant 2-D f32 weight, when x has a scale:
 *       without bias and with act none or Relu, and an output scale:
 *         Q(x) -> QLinearMatMul(., B int8 [K,N] per column, s_w[N], s_y) [-> Relu] -> DQ(s_y)
 *       otherwise (bias, other activation, or no output scale):
 *         Q(x) -> MatMulInteger(., B int8) -> DequantizeLinear(int32, s_x * s_w[N], axis -1)
 *         [-> Add(bias) in f32], the fused activation applied by the last f32 node.
 *     Gemm's alpha is folded into the weights, beta into a constant C (a non-constant C needs beta 1).
 * Weights: symmetric, [-127, 127], one scale per output channel (kiln_quant_weights_per_channel).
 * Activations: symmetric int8, zero point 0, the scale given per value name.
 * Then DequantizeLinear(q, s, z) -> QuantizeLinear(., s, z) with equal scalar scale and zero point
 * collapses to q, so int8 flows between quantized layers. Everything else stays f32.
 * Needs opset >= 13 (per-axis DequantizeLinear): UNSUPPORTED below. st->fused counts layers
 * quantized, st->removed the Q/DQ pairs collapsed.
 * Tested by tests/models/test_int8.py. */
#ifndef KILN_PASSES_QUANTIZE_H
#define KILN_PASSES_QUANTIZE_H

#include "passes.h"

/* Activation scales by value name (symmetric int8, zero point 0). */
typedef struct kiln_quant_scales {
    const char *const *names;
    const float *scales;
    int64_t n;
} kiln_quant_scales;

typedef struct kiln_quant_options {
    const char *const *fp32_nodes; /* node names kept in f32 (--layer-precision NODE:fp32) */
    int n_fp32_nodes;
} kiln_quant_options;

#define KILN_QUANT_MIN_OPSET 13

kiln_status kiln_pass_quantize(kiln_graph *g, const kiln_quant_scales *scales, const kiln_quant_options *opt,
                               kiln_pass_stats *st);

#endif /* KILN_PASSES_QUANTIZE_H */
