/* quantize.c — the scalar int8 quantize/dequantize definition and per-channel weight
 * quantization (see quantize.h). Tested by tests/unit/test_quant.c. */
#include "quant/quantize.h"

#include <math.h>

int32_t kiln_quantize_ref(float x, float scale, int zero_point, int qmin, int qmax) {
    volatile float q = x / scale; /* one float32 rounding, whatever FLT_EVAL_METHOD says */
    double r = isnan(q) ? (double)zero_point : (double)nearbyintf(q) + (double)zero_point;
    if (r <= (double)qmin) return qmin;
    if (r >= (double)qmax) return qmax;
    return (int32_t)r;
}

float kiln_dequantize_ref(int32_t q, float scale, int zero_point) {
    return (float)((int64_t)q - zero_point) * scale;
}

kiln_status kiln_quant_weights_per_channel(const float *w, int64_t channels, int64_t per_channel, int8_t *q,
                                           float *scales) {
    if (channels < 0 || per_channel < 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "per-channel weights: negative size (%lld channels of %lld)",
                          (long long)channels, (long long)per_channel);
    if (channels > 0 && (!scales || (per_channel > 0 && (!w || !q))))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "per-channel weights: NULL pointer");
    for (int64_t c = 0; c < channels; c++) {
        const float *wc = w + c * per_channel;
        float amax = 0;
        for (int64_t i = 0; i < per_channel; i++) {
            if (!isfinite(wc[i]))
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "per-channel weights: channel %lld, element %lld is %g",
                                  (long long)c, (long long)i, (double)wc[i]);
            if (fabsf(wc[i]) > amax) amax = fabsf(wc[i]);
        }
        float s = amax / 127.0f;
        if (!(s > 0)) s = 1.0f; /* an all-zero channel (or amax so small that amax/127 underflows) */
        scales[c] = s;
        for (int64_t i = 0; i < per_channel; i++) q[c * per_channel + i] = (int8_t)kiln_quantize_ref(wc[i], s, 0, -127, 127);
    }
    return KILN_STATUS_OK;
}
