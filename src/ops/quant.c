/* quant.c — parse and shape inference of the linear quantization ops:
 *   QuantizeLinear        https://onnx.ai/onnx/operators/onnx__QuantizeLinear.html
 *   DequantizeLinear      https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html
 *   DynamicQuantizeLinear https://onnx.ai/onnx/operators/onnx__DynamicQuantizeLinear.html
 * and the granularity rule they share (per tensor, per axis, blocked), used by the kernels in
 * src/backends/ref/quant.c. Integer quantized types: int8, uint8, int16, uint16 (and int32 for
 * DequantizeLinear's input); float8, int4, uint4, int2, uint2 and float4 are refused as
 * UNSUPPORTED (kiln has no such dtypes). Tested by test_quantizelinear*, test_dequantizelinear*,
 * test_dynamicquantizelinear*. */
#include "seq_internal.h"

/* An output_dtype / precision attribute value: a kiln dtype from allowed, or an error naming it. */
static kiln_status check_dtype_attr(const kiln_node *node, const char *attr, int64_t code, const kiln_dtype *allowed,
                                    int n_allowed) {
    if (!seq_dtype_known(code))
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "attribute %s = %s (%lld) is not supported", attr,
                               seq_onnx_dtype_name(code), (long long)code);
    for (int i = 0; i < n_allowed; i++)
        if (allowed[i] == (kiln_dtype)code) return KILN_STATUS_OK;
    return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute %s = %s is not allowed for this op", attr,
                           kiln_dtype_name((kiln_dtype)code));
}

kiln_status kiln_parse_quant(kiln_node *node, kiln_attrs *attrs) {
    seq_quant_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    if (node->op == KILN_OP_DynamicQuantizeLinear) return KILN_STATUS_OK;
    int64_t saturate, out_dtype, precision;
    KILN_TRY(kiln_attr_int(attrs, "axis", 1, &p->axis));
    KILN_TRY(kiln_attr_int(attrs, "block_size", 0, &p->block_size));
    KILN_TRY(kiln_attr_int(attrs, "output_dtype", 0, &out_dtype));
    KILN_TRY(kiln_attr_int(attrs, "saturate", 1, &saturate)); /* only matters for float8 outputs */
    KILN_TRY(kiln_attr_int(attrs, "precision", 0, &precision));
    if (p->block_size < 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute block_size = %lld is negative",
                               (long long)p->block_size);
    if (node->op == KILN_OP_QuantizeLinear) {
        static const kiln_dtype outs[] = {KILN_DTYPE_U8, KILN_DTYPE_I8, KILN_DTYPE_U16, KILN_DTYPE_I16};
        static const kiln_dtype precs[] = {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16, KILN_DTYPE_F64};
        if (out_dtype) KILN_TRY(check_dtype_attr(node, "output_dtype", out_dtype, outs, 4));
        if (precision) KILN_TRY(check_dtype_attr(node, "precision", precision, precs, 4));
        p->precision = (kiln_dtype)precision;
    } else {
        static const kiln_dtype outs[] = {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16};
        if (out_dtype) KILN_TRY(check_dtype_attr(node, "output_dtype", out_dtype, outs, 3));
    }
    p->out_dtype = (kiln_dtype)out_dtype;
    return KILN_STATUS_OK;
}

static bool all_known(const kiln_tensor *t) { return t->rank >= 0 && kiln_shape_count(t->rank, t->dims) >= 0; }

kiln_status kiln_seq_quant_layout(const kiln_node *node, const seq_quant_params *p, const kiln_tensor *x,
                                  const kiln_tensor *scale, const kiln_tensor *zp, seq_quant_layout *l) {
    char s1[160], s2[160];
    int64_t count = kiln_shape_count(scale->rank, scale->dims);
    int64_t total = kiln_shape_count(x->rank, x->dims);
    memset(l, 0, sizeof *l);
    l->outer = total;
    l->d = 1;
    l->inner = 1;
    if (zp) {
        bool same = zp->rank == scale->rank;
        for (int i = 0; same && i < zp->rank; i++) same = zp->dims[i] == scale->dims[i];
        if (!same && !(count == 1 && kiln_shape_count(zp->rank, zp->dims) == 1))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "zero point %s and scale %s differ in shape",
                                   kiln_dims_str(zp->rank, zp->dims, s1, sizeof s1),
                                   kiln_dims_str(scale->rank, scale->dims, s2, sizeof s2));
    }
    if (count == 1) return KILN_STATUS_OK; /* per tensor */
    int axis;
    if (x->rank == 0 || kiln_norm_axis(p->axis, x->rank, &axis) != KILN_STATUS_OK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for input %s",
                               (long long)p->axis, kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
    l->outer = kiln_shape_count(axis, x->dims);
    l->d = x->dims[axis];
    l->inner = kiln_shape_count(x->rank - axis - 1, x->dims + axis + 1);
    if (p->block_size > 0) {
        bool ok = scale->rank == x->rank;
        for (int i = 0; ok && i < x->rank; i++) ok = i == axis || scale->dims[i] == x->dims[i];
        if (ok) ok = scale->dims[axis] == (x->dims[axis] + p->block_size - 1) / p->block_size;
        if (!ok)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                                   "scale %s does not block input %s along axis %d with block_size %lld",
                                   kiln_dims_str(scale->rank, scale->dims, s1, sizeof s1),
                                   kiln_dims_str(x->rank, x->dims, s2, sizeof s2), axis, (long long)p->block_size);
        l->kind = SEQ_QUANT_BLOCKED;
        l->s = scale->dims[axis];
        l->block = p->block_size;
        return KILN_STATUS_OK;
    }
    if (scale->rank != 1 || scale->dims[0] != x->dims[axis])
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "scale %s must be a scalar or a vector of input %s's axis %d",
                               kiln_dims_str(scale->rank, scale->dims, s1, sizeof s1),
                               kiln_dims_str(x->rank, x->dims, s2, sizeof s2), axis);
    l->kind = SEQ_QUANT_AXIS;
    return KILN_STATUS_OK;
}

static bool is_scale_dtype(kiln_dtype t) {
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16;
}

static kiln_status infer_quantize(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_quant_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 2, 3));
    const kiln_tensor *x = in[0], *scale = in[1], *zp = seq_in(node, in, 2);
    if (!is_scale_dtype(x->dtype) && x->dtype != KILN_DTYPE_I32) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (!is_scale_dtype(scale->dtype) && scale->dtype != KILN_DTYPE_I32) return kiln_node_bad_dtype(node, 1, scale->dtype);
    kiln_dtype t = KILN_DTYPE_U8;
    if (p->out_dtype) t = p->out_dtype;
    if (zp) {
        int64_t lo, hi;
        if (!seq_quant_range(zp->dtype, &lo, &hi) || zp->dtype == KILN_DTYPE_I32) return kiln_node_bad_dtype(node, 2, zp->dtype);
        if (p->out_dtype && p->out_dtype != zp->dtype)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "output_dtype %s differs from the zero point's %s",
                                   kiln_dtype_name(p->out_dtype), kiln_dtype_name(zp->dtype));
        t = zp->dtype;
    }
    out[0].dtype = t;
    out[0].rank = x->rank;
    for (int i = 0; i < x->rank; i++) out[0].dims[i] = x->dims[i];
    if (all_known(x) && all_known(scale) && (!zp || all_known(zp))) {
        seq_quant_layout l;
        KILN_TRY(kiln_seq_quant_layout(node, p, x, scale, zp, &l));
    }
    return KILN_STATUS_OK;
}

static kiln_status infer_dequantize(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_quant_params *p = node->params;
    KILN_TRY(kiln_node_check_arity(node, 2, 3));
    const kiln_tensor *x = in[0], *scale = in[1], *zp = seq_in(node, in, 2);
    int64_t lo, hi;
    if (!seq_quant_range(x->dtype, &lo, &hi)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (!is_scale_dtype(scale->dtype)) return kiln_node_bad_dtype(node, 1, scale->dtype);
    if (zp && zp->dtype != x->dtype)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "zero point dtype %s differs from input dtype %s",
                               kiln_dtype_name(zp->dtype), kiln_dtype_name(x->dtype));
    out[0].dtype = p->out_dtype ? p->out_dtype : scale->dtype;
    out[0].rank = x->rank;
    for (int i = 0; i < x->rank; i++) out[0].dims[i] = x->dims[i];
    if (all_known(x) && all_known(scale) && (!zp || all_known(zp))) {
        seq_quant_layout l;
        KILN_TRY(kiln_seq_quant_layout(node, p, x, scale, zp, &l));
    }
    return KILN_STATUS_OK;
}

static kiln_status infer_dynamic(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    const kiln_tensor *x = in[0];
    if (x->dtype != KILN_DTYPE_F32) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = KILN_DTYPE_U8;
    out[0].rank = x->rank;
    for (int i = 0; i < x->rank; i++) out[0].dims[i] = x->dims[i];
    if (node->n_outputs > 1) {
        out[1].dtype = KILN_DTYPE_F32;
        out[1].rank = 0;
    }
    if (node->n_outputs > 2) {
        out[2].dtype = KILN_DTYPE_U8;
        out[2].rank = 0;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_quant(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    switch (node->op) {
    case KILN_OP_QuantizeLinear: return infer_quantize(node, in, out);
    case KILN_OP_DequantizeLinear: return infer_dequantize(node, in, out);
    default: return infer_dynamic(node, in, out);
    }
}
