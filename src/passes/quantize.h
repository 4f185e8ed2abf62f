/* quantize.h — INT8 layers in a graph, with ONNX's own quantized ops so the exact integer
 * reference kernels run them (docs/engines.md, docs/calibration.md, /work/shared/QUANTIZATION.md).
 *
 * Two sources of int8 parameters, one rewrite:
 *   post-training (kiln_pass_quantize with calibrated scales): activation scales per value name,
 *     symmetric int8 with zero point 0; weights from the f32 constants, symmetric, [-127, 127], one
 *     scale per output channel (kiln_quant_weights_per_channel);
 *   explicit (kiln_pass_qdq, and kiln_pass_quantize for nodes whose input is dequantized): the
 *     QuantizeLinear/DequantizeLinear nodes of a quantization-aware-trained model give the scales
 *     and zero points (int8 or uint8 activations), and the int8 weights (a constant behind a
 *     DequantizeLinear, or a fake-quantized f32 constant), as qdq.c lists.
 * Each layer then becomes
 *   Conv (1-D/2-D, fused act none or Relu) with an output quantization:
 *       QuantizeLinear(x) -> QLinearConv(W int8, s_w[C], s_y, bias int32 = rint(b / (s_x * s_w[c])))
 *       [-> Relu on int8] -> DequantizeLinear(s_y)
 *   Conv otherwise (no output scale, or another act):
 *       Q(x) -> ConvInteger -> DequantizeLinear(int32, s_x * s_w[C], axis 1) [-> Add(bias [C,1,..])]
 *   MatMul / Gemm / kiln.FusedMatMul with a 2-D weight, no bias, act none or Relu, an output scale:
 *       Q(x) -> QLinearMatMul(B int8 [K,N], s_w[N], s_y) [-> Relu] -> DQ(s_y)
 *   otherwise: Q(x) -> MatMulInteger -> DequantizeLinear(int32, s_x * s_w[N], axis -1) [-> Add(bias)]
 *   with the fused activation applied by the last f32 node. Gemm's alpha is folded into the weight
 *   scales (explicit) or the weights (post-training), beta into a constant C (a non-constant C needs
 *   beta 1), and transA into a Transpose of the int8 input.
 * Then DequantizeLinear(q, s, z) -> QuantizeLinear(., s, z) with equal scalar scale and zero point
 * collapses to q, so int8 flows between int8 layers (and a QAT model's Q/DQ pairs disappear around
 * them). Everything else stays f32; a Conv/MatMul/Gemm that could have been int8 and is not gets the
 * string attribute kiln_int8_note saying why (shown by kiln inspect).
 * Needs opset >= 13 (per-axis DequantizeLinear): kiln_pass_quantize is UNSUPPORTED below, kiln_pass_qdq
 * does nothing. st->fused counts layers made int8, st->removed the Q/DQ pairs collapsed.
 * Tested by tests/models/test_int8.py and tests/models/test_int8_qdq.py. */
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

/* The node attribute holding why a layer stays f32. */
#define KILN_INT8_NOTE_ATTR "kiln_int8_note"

/* Post-training quantization with scales (NULL: explicit layers only), and the explicit layers. */
kiln_status kiln_pass_quantize(kiln_graph *g, const kiln_quant_scales *scales, const kiln_quant_options *opt,
                               kiln_pass_stats *st);
/* Explicit quantization only: the pass kiln_passes_run applies among the fusions ("qdq_int8"). */
kiln_status kiln_pass_qdq(kiln_graph *g, kiln_pass_stats *st);
/* The graph holds QuantizeLinear or DequantizeLinear nodes: it is explicitly quantized, and INT8
 * builds take its scales from them instead of calibrating. */
bool kiln_graph_has_qdq(const kiln_graph *g);

#endif /* KILN_PASSES_QUANTIZE_H */
