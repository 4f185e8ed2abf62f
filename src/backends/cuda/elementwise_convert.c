/* elementwise_convert.c — GPU entries of the conversions in the elementwise family: Cast,
 * CastLike, BitCast, QuantizeLinear, DequantizeLinear (per tensor, per axis, blocked),
 * DynamicQuantizeLinear, and Dropout in inference mode (a copy, and a mask of ones).
 * Semantics of src/backends/ref/{cast,quant,dropout}.c; the granularity of the quantization
 * ops comes from kiln_seq_quant_layout (src/ops/quant.c), the same rule the reference uses.
 * Not done: Dropout in training mode (training_mode true with a nonzero ratio) draws numpy's
 * MT19937 sequence, which has no GPU kernel here: run returns UNSUPPORTED naming the node.
 * Kernels in elementwise_cast.cu and elementwise_quant.cu. */
#include "elementwise_host.h"

#include "../../ops/nn_internal.h"
#include "../../ops/seq_internal.h"

/* ---- Cast, CastLike, BitCast ---- */

static kiln_status run_cast(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    kiln_tensor *y = &out[0];
    int64_t count = kiln_shape_count(x->rank, x->dims);
    if (count <= 0) return KILN_STATUS_OK;
    cudaError_t e;
    if (n->op == KILN_OP_BitCast || x->dtype == y->dtype) {
        if (x->data == y->data) return kiln_ew_finish_act(r, n, out);
        e = cudaMemcpyAsync(y->data, x->data, (size_t)count * kiln_dtype_size(x->dtype), cudaMemcpyDeviceToDevice,
                            r->stream);
    } else {
        e = kiln_ew_cast(kiln_cuda_ctype(x->dtype), kiln_cuda_ctype(y->dtype), x->data, y->data, count, r->stream);
    }
    KILN_TRY(kiln_cuda_check(e, n, "Cast kernel"));
    return kiln_ew_finish_act(r, n, out);
}

/* ---- QuantizeLinear, DequantizeLinear ---- */

static kiln_ew_quant quant_geometry(const seq_quant_layout *l) {
    kiln_ew_quant q = {0, l->outer, l->d, l->inner, l->s, l->block};
    q.kind = l->kind == SEQ_QUANT_AXIS ? 1 : l->kind == SEQ_QUANT_BLOCKED ? 2 : 0;
    return q;
}

static bool is_scale_dtype(kiln_dtype t) {
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16;
}

static bool is_quant_dtype(kiln_dtype t) {
    return t == KILN_DTYPE_U8 || t == KILN_DTYPE_I8 || t == KILN_DTYPE_U16 || t == KILN_DTYPE_I16;
}

static const char *supports_quantize(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const seq_quant_params *p = n->params;
    if (!is_scale_dtype(in[0]->dtype) && in[0]->dtype != KILN_DTYPE_I32) return "input dtype not f32/f16/bf16/int32";
    if (!is_scale_dtype(in[1]->dtype) && in[1]->dtype != KILN_DTYPE_I32) return "scale dtype not f32/f16/bf16/int32";
    if (!is_quant_dtype(out[0].dtype)) return "output dtype not uint8/int8/uint16/int16";
    if (p->precision && !is_scale_dtype(p->precision) && p->precision != KILN_DTYPE_F64)
        return "precision not f32/f16/bf16/f64";
    return kiln_ew_supports_dtypes(n, in, out);
}

static kiln_status run_quantize(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_quant_params *p = n->params;
    const kiln_tensor *x = in[0], *scale = in[1], *zp = kiln_ew_input(n, in, 2);
    seq_quant_layout l;
    KILN_TRY(kiln_seq_quant_layout(n, p, x, scale, zp, &l));
    if (l.outer * l.d * l.inner <= 0) return KILN_STATUS_OK;
    kiln_dtype prec = p->precision ? p->precision : scale->dtype;
    if (prec == KILN_DTYPE_I32) prec = KILN_DTYPE_F32; /* an integer scale divides in f32 */
    cudaError_t e = kiln_ew_quantize(kiln_cuda_ctype(x->dtype), kiln_cuda_ctype(scale->dtype),
                                     kiln_cuda_ctype(out[0].dtype), kiln_cuda_ctype(prec), x->data, scale->data,
                                     zp ? zp->data : NULL, out[0].data, quant_geometry(&l), r->stream);
    return kiln_cuda_check(e, n, "QuantizeLinear kernel");
}

static const char *supports_dequantize(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (!is_quant_dtype(in[0]->dtype) && in[0]->dtype != KILN_DTYPE_I32)
        return "input dtype not uint8/int8/uint16/int16/int32";
    if (!is_scale_dtype(in[1]->dtype)) return "scale dtype not f32/f16/bf16";
    if (!is_scale_dtype(out[0].dtype)) return "output dtype not f32/f16/bf16";
    return kiln_ew_supports_dtypes(n, in, out);
}

static kiln_status run_dequantize(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_quant_params *p = n->params;
    const kiln_tensor *x = in[0], *scale = in[1], *zp = kiln_ew_input(n, in, 2);
    seq_quant_layout l;
    KILN_TRY(kiln_seq_quant_layout(n, p, x, scale, zp, &l));
    if (l.outer * l.d * l.inner <= 0) return KILN_STATUS_OK;
    cudaError_t e = kiln_ew_dequantize(kiln_cuda_ctype(x->dtype), kiln_cuda_ctype(scale->dtype),
                                       kiln_cuda_ctype(out[0].dtype), x->data, scale->data, zp ? zp->data : NULL,
                                       out[0].data, quant_geometry(&l), r->stream);
    KILN_TRY(kiln_cuda_check(e, n, "DequantizeLinear kernel"));
    return kiln_ew_finish_act(r, n, out);
}

/* ---- DynamicQuantizeLinear ---- */

static const char *supports_dynamic_quantize(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (in[0]->dtype != KILN_DTYPE_F32) return "input dtype not f32";
    return kiln_ew_supports_dtypes(n, in, out);
}

static kiln_status run_dynamic_quantize(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in,
                                        kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t count = kiln_shape_count(x->rank, x->dims);
    void *scratch;
    KILN_TRY(kiln_cuda_scratch(r, kiln_ew_dynamic_quantize_scratch(), &scratch));
    float *scale = kiln_ew_output_used(n, out, 1) ? out[1].data : NULL;
    uint8_t *zp = kiln_ew_output_used(n, out, 2) ? out[2].data : NULL;
    cudaError_t e = kiln_ew_dynamic_quantize(x->data, count, out[0].data, scale, zp, scratch, r->stream);
    return kiln_cuda_check(e, n, "DynamicQuantizeLinear kernels");
}

/* ---- Dropout (inference) ---- */

static const char *supports_dropout(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (!kiln_dtype_is_float(in[0]->dtype)) return "input dtype not a float";
    return kiln_ew_supports_dtypes(n, in, out);
}

static kiln_status run_dropout(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    const kiln_tensor *ratio_t = kiln_ew_input(n, in, 1), *training_t = kiln_ew_input(n, in, 2);
    double ratio = 0.5;
    bool training = false;
    if (n->opset >= 12) { /* ratio and training_mode are host inputs */
        if (ratio_t) ratio = kiln_load_f64(ratio_t->dtype, ratio_t->data, 0);
        if (training_t) training = kiln_load_i64(training_t->dtype, training_t->data, 0) != 0;
    }
    if (training && ratio != 0)
        return kiln_node_error(n, KILN_STATUS_UNSUPPORTED,
                               "training mode (training_mode = true, ratio %g) has no GPU kernel", ratio);
    int64_t count = kiln_shape_count(x->rank, x->dims);
    if (count <= 0) return KILN_STATUS_OK;
    if (out[0].data != x->data) {
        cudaError_t e = cudaMemcpyAsync(out[0].data, x->data, (size_t)count * kiln_dtype_size(x->dtype),
                                        cudaMemcpyDeviceToDevice, r->stream);
        KILN_TRY(kiln_cuda_check(e, n, "Dropout copy"));
    }
    if (kiln_ew_output_used(n, out, 1))
        KILN_TRY(kiln_cuda_check(kiln_ew_fill_one(kiln_cuda_ctype(out[1].dtype), out[1].data, count, r->stream), n,
                                 "Dropout mask"));
    return kiln_ew_finish_act(r, n, out);
}

/* ---- registration ---- */


void kiln_cuda_register_elementwise_convert(kiln_cuda_op *table) {
    kiln_ew_set(table, KILN_OP_Cast, kiln_ew_supports_dtypes, run_cast, 0);
    kiln_ew_set(table, KILN_OP_CastLike, kiln_ew_supports_dtypes, run_cast, 0);
    kiln_ew_set(table, KILN_OP_BitCast, kiln_ew_supports_dtypes, run_cast, 0);
    kiln_ew_set(table, KILN_OP_QuantizeLinear, supports_quantize, run_quantize, 0);
    kiln_ew_set(table, KILN_OP_DequantizeLinear, supports_dequantize, run_dequantize, 0);
    kiln_ew_set(table, KILN_OP_DynamicQuantizeLinear, supports_dynamic_quantize, run_dynamic_quantize, 0);
    kiln_ew_set(table, KILN_OP_Dropout, supports_dropout, run_dropout, (1u << 1) | (1u << 2)); /* ratio, training_mode */
}
