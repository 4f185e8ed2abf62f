/* quant.c — reference kernels of QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear
 * (https://onnx.ai/onnx/operators/onnx__QuantizeLinear.html and its siblings).
 *
 *   QuantizeLinear:   y = saturate(round_half_even(x / y_scale) + y_zero_point), the division
 *                     done in the precision attribute's type, else y_scale's type (f32 for an
 *                     f32 scale: both operands rounded to f32, quotient rounded to f32), as
 *                     onnx/reference/ops/op_quantize_linear.py does.
 *   DequantizeLinear: y = (x - x_zero_point) * x_scale, the difference exact in int64, the
 *                     product rounded to f32 and then to the output type (numpy's order).
 *   DynamicQuantizeLinear: uint8, scale = (max(0, max x) - min(0, min x)) / 255 and
 *                     zero point = saturate(round(0 - min / scale)), all in f32; an all-zero
 *                     input gets scale 1 (ONNX Runtime's choice: the spec's formula divides by 0).
 * Granularity (per tensor, per axis, blocked) from kiln_seq_quant_layout (src/ops/quant.c).
 * Tested by test_quantizelinear*, test_dequantizelinear*, test_dynamicquantizelinear*. */
#include "../../ops/seq_internal.h"

/* x / s in the float type prec, as numpy computes it in that type. */
static double div_in(kiln_dtype prec, double x, double s) {
    if (prec == KILN_DTYPE_F64) return x / s;
    return seq_round_to(prec, seq_round_to(prec, x) / seq_round_to(prec, s));
}

static kiln_status quantize(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_quant_params *p = node->params;
    const kiln_tensor *x = in[0], *scale = in[1], *zp = seq_in(node, in, 2);
    seq_quant_layout l;
    KILN_TRY(kiln_seq_quant_layout(node, p, x, scale, zp, &l));
    kiln_dtype prec = p->precision ? p->precision : scale->dtype;
    if (prec == KILN_DTYPE_I32) prec = KILN_DTYPE_F32; /* an integer scale divides in f32 */
    int64_t lo, hi;
    KILN_ASSERT(seq_quant_range(out[0].dtype, &lo, &hi));
    int64_t k = 0;
    for (int64_t o = 0; o < l.outer; o++)
        for (int64_t a = 0; a < l.d; a++)
            for (int64_t i = 0; i < l.inner; i++, k++) {
                int64_t j = seq_quant_index(&l, o, a, i);
                double q = div_in(prec, kiln_load_f64(x->dtype, x->data, k), kiln_load_f64(scale->dtype, scale->data, j));
                int64_t z = zp ? kiln_load_i64(zp->dtype, zp->data, j) : 0;
                kiln_store_i64(out[0].dtype, out[0].data, k, seq_requantize(q, z, lo, hi));
            }
    return KILN_STATUS_OK;
}

static kiln_status dequantize(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_quant_params *p = node->params;
    const kiln_tensor *x = in[0], *scale = in[1], *zp = seq_in(node, in, 2);
    seq_quant_layout l;
    KILN_TRY(kiln_seq_quant_layout(node, p, x, scale, zp, &l));
    int64_t k = 0;
    for (int64_t o = 0; o < l.outer; o++)
        for (int64_t a = 0; a < l.d; a++)
            for (int64_t i = 0; i < l.inner; i++, k++) {
                int64_t j = seq_quant_index(&l, o, a, i);
                int64_t d = kiln_load_i64(x->dtype, x->data, k) - (zp ? kiln_load_i64(zp->dtype, zp->data, j) : 0);
                float y = (float)((double)d * kiln_load_f64(scale->dtype, scale->data, j));
                kiln_store_f64(out[0].dtype, out[0].data, k, y);
            }
    return KILN_STATUS_OK;
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static kiln_status dynamic_quantize(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    const float *xv = x->data;
    int64_t n = kiln_shape_count(x->rank, x->dims);
    float mx = 0.0f, mn = 0.0f; /* the range is widened to include 0 */
    for (int64_t i = 0; i < n; i++) {
        if (xv[i] > mx) mx = xv[i];
        if (xv[i] < mn) mn = xv[i];
    }
    float scale = mx == mn ? 1.0f : (mx - mn) / 255.0f; /* all zeros: 1, as ONNX Runtime */
    float zp = rintf(clampf(0.0f - mn / scale, 0.0f, 255.0f));
    uint8_t *y = out[0].data;
    for (int64_t i = 0; i < n; i++) {
        float q = rintf(xv[i] / scale) + zp;
        y[i] = isnan(q) ? (uint8_t)zp : (uint8_t)clampf(q, 0.0f, 255.0f);
    }
    if (node->n_outputs > 1 && out[1].data) *(float *)out[1].data = scale;
    if (node->n_outputs > 2 && out[2].data) *(uint8_t *)out[2].data = (uint8_t)zp;
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_quant(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    switch (node->op) {
    case KILN_OP_QuantizeLinear: return quantize(node, in, out);
    case KILN_OP_DequantizeLinear: return dequantize(node, in, out);
    default: return dynamic_quantize(node, in, out);
    }
}
