/* quant.c — QuantizeLinear and DequantizeLinear between float32 and 8-bit integers, per tensor
 * or per axis (plain C, with or without oneDNN): the Q/DQ pairs of quantization-aware-trained
 * models, run at every layer, where the reference kernels' per-element dtype dispatch in double
 * cost as much as the layers themselves.
 *
 * Bit-identical to the reference kernels (src/backends/ref/quant.c): Quantize divides in float32
 * (x and the scale are float32, the quotient correctly rounded to float32, as numpy does), rounds
 * half to even, adds the zero point and saturates; NaN gives the zero point. Dequantize multiplies
 * (x - zero point), a small exact integer, by the float32 scale: the float32 product is the
 * correctly rounded exact product, as the reference's double product rounded to float32.
 * Blocked quantization, other dtypes and a precision attribute other than float32 go to the
 * reference kernels. Tested by tests/models/test_cpu_kernels.py (family "quant") and the node
 * tests test_quantizelinear*, test_dequantizelinear*. */
#include "cpu_backend.h"

#include "../../ops/seq_internal.h"

#include <math.h>

static bool is8(kiln_dtype t) { return t == KILN_DTYPE_I8 || t == KILN_DTYPE_U8; }

static bool q_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const seq_quant_params *p = n->params;
    if (n->n_declared < 2 || !in[0] || !in[1] || p->block_size != 0 || in[1]->dtype != KILN_DTYPE_F32) return false;
    const kiln_tensor *zp = seq_in(n, in, 2);
    bool q = n->op == KILN_OP_QuantizeLinear;
    if (q && (in[0]->dtype != KILN_DTYPE_F32 || !is8(out->dtype) || (p->precision && p->precision != KILN_DTYPE_F32)))
        return false;
    if (!q && (!is8(in[0]->dtype) || out->dtype != KILN_DTYPE_F32)) return false;
    return !zp || zp->dtype == (q ? out->dtype : in[0]->dtype);
}

static void quantize_run(const float *x, float s, float z, float lo, float hi, int64_t n, kiln_dtype t, void *y) {
    for (int64_t i = 0; i < n; i++) {
        float r = rintf(x[i] / s);
        r = isnan(r) ? z : fminf(fmaxf(r + z, lo), hi);
        if (t == KILN_DTYPE_U8) ((uint8_t *)y)[i] = (uint8_t)r;
        else ((int8_t *)y)[i] = (int8_t)r;
    }
}

static kiln_status q_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                         kiln_tensor *out) {
    (void)state, (void)state_free;
    const kiln_tensor *x = in[0], *scale = in[1], *zp = seq_in(n, in, 2);
    if (zp && !zp->data) zp = NULL;
    seq_quant_layout l;
    KILN_TRY(kiln_seq_quant_layout(n, n->params, x, scale, zp, &l));
    if (l.kind == SEQ_QUANT_TENSOR) l.inner = l.outer * l.d * l.inner, l.outer = l.d = 1; /* one run */
    const float *sc = scale->data;
    bool q = n->op == KILN_OP_QuantizeLinear;
    kiln_dtype t = q ? out->dtype : x->dtype;
    float lo = t == KILN_DTYPE_U8 ? 0.0f : -128.0f, hi = t == KILN_DTYPE_U8 ? 255.0f : 127.0f;
    for (int64_t o = 0, k = 0; o < l.outer; o++)
        for (int64_t a = 0; a < l.d; a++, k += l.inner) {
            int64_t j = seq_quant_index(&l, o, a, 0);
            int32_t z = zp ? kiln_cpu_q8_at(zp, j) : 0;
            if (q) {
                void *y = (uint8_t *)out->data + k;
                quantize_run((const float *)x->data + k, sc[j], (float)z, lo, hi, l.inner, t, y);
            } else {
                float *y = (float *)out->data + k;
                if (x->dtype == KILN_DTYPE_U8)
                    for (int64_t i = 0; i < l.inner; i++) y[i] = (float)(((const uint8_t *)x->data)[k + i] - z) * sc[j];
                else
                    for (int64_t i = 0; i < l.inner; i++) y[i] = (float)(((const int8_t *)x->data)[k + i] - z) * sc[j];
            }
        }
    kiln_cpu_report(n, out, "cpu");
    return KILN_STATUS_OK;
}

void kiln_cpu_register_quant(kiln_cpu_op *table) {
    table[KILN_OP_QuantizeLinear] = (kiln_cpu_op){.supports = q_supports, .run = q_run, .kernel = "cpu"};
    table[KILN_OP_DequantizeLinear] = (kiln_cpu_op){.supports = q_supports, .run = q_run, .kernel = "cpu"};
}
