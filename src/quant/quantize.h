/* quantize.h — the scalar definition of kiln's int8 quantization, and per-channel weight
 * quantization built on it. Every fast quantize kernel must match kiln_quantize_ref bit for bit.
 *
 *   q = saturate(round_half_to_even(x / scale) + zero_point) into [qmin, qmax]
 *
 * x / scale is one float32 division (as ONNX QuantizeLinear with a float32 scale computes it);
 * NaN quantizes to the zero point (clamped), ±Inf saturates.
 *
 * Weights (docs/calibration.md): symmetric, zero point 0, one scale per output channel,
 * scale_c = max|w_c| / 127 in float32 and q in [-127, 127] so that -q is always representable.
 * An all-zero channel gets scale 1 (any scale represents it; 1 keeps bias scales finite).
 * Tested by tests/unit/test_quant.c. */
#ifndef KILN_QUANT_QUANTIZE_H
#define KILN_QUANT_QUANTIZE_H

#include "core/core.h"

int32_t kiln_quantize_ref(float x, float scale, int zero_point, int qmin, int qmax);
/* q * scale - the product in float32, as DequantizeLinear computes it for a zero point of 0. */
float kiln_dequantize_ref(int32_t q, float scale, int zero_point);

/* w holds `channels` rows of `per_channel` floats, channel-major (Conv OIHW: per_channel = I*H*W;
 * a Gemm/MatMul weight must first be laid out output-feature-major). Writes q (same layout) and
 * scales[channels]. INVALID_ARGUMENT for NULL pointers, negative sizes, or a NaN/Inf weight
 * (naming its channel and index). */
kiln_status kiln_quant_weights_per_channel(const float *w, int64_t channels, int64_t per_channel, int8_t *q,
                                           float *scales);

#endif /* KILN_QUANT_QUANTIZE_H */
