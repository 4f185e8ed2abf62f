/* generate.c — parse and shape inference of the ops that make a tensor from a few values:
 * Range, ConstantOfShape, EyeLike, OneHot and Trilu (a masked copy). Output sizes that come
 * from input values (Range's count, ConstantOfShape's shape, OneHot's depth) are known only
 * when those values are. Kernels: src/backends/ref/generate.c.
 * Tested by the node tests test_range*, test_constantofshape*, test_eyelike*, test_onehot*,
 * test_tril*, test_triu*. */
#include "shape_internal.h"

#include <math.h>

kiln_status kiln_parse_generate(kiln_node *node, kiln_attrs *attrs) {
    switch (node->op) {
    case KILN_OP_Range: { /* https://onnx.ai/onnx/operators/onnx__Range.html */
        KILN_TRY(kiln_node_check_arity(node, 3, 3));
        int64_t stash; /* f16/bf16 are computed in double here, as precise as either stash type */
        KILN_TRY(kiln_attr_int(attrs, "stash_type", 1, &stash));
        if (stash != KILN_DTYPE_F32 && stash != KILN_DTYPE_F64)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute stash_type = %lld is not FLOAT or DOUBLE",
                                   (long long)stash);
        return KILN_STATUS_OK;
    }
    case KILN_OP_ConstantOfShape: { /* https://onnx.ai/onnx/operators/onnx__ConstantOfShape.html */
        KILN_TRY(kiln_node_check_arity(node, 1, 1));
        kiln_const_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        p->dtype = KILN_DTYPE_F32; /* value 0.0f */
        kiln_tensor *v;
        KILN_TRY(kiln_attr_take_tensor(attrs, "value", &v));
        if (!v) return KILN_STATUS_OK;
        kiln_status s = KILN_STATUS_OK;
        size_t es = kiln_dtype_size(v->dtype);
        if (es == 0) s = kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "attribute value has dtype %s", kiln_dtype_name(v->dtype));
        else if (kiln_shape_count(v->rank, v->dims) != 1 || !v->data)
            s = kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute value should hold one element");
        else {
            p->dtype = v->dtype;
            memcpy(p->value, v->data, es);
        }
        kiln_tensor_release(v);
        free(v);
        return s;
    }
    case KILN_OP_EyeLike: { /* https://onnx.ai/onnx/operators/onnx__EyeLike.html */
        KILN_TRY(kiln_node_check_arity(node, 1, 1));
        kiln_eyelike_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        int64_t dt;
        KILN_TRY(kiln_attr_int(attrs, "dtype", 0, &dt));
        KILN_TRY(kiln_attr_int(attrs, "k", 0, &p->k));
        p->dtype = (kiln_dtype)dt;
        if (dt != 0 && (dt < 0 || dt > 64 || kiln_dtype_size(p->dtype) == 0))
            return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "attribute dtype = %lld is not supported", (long long)dt);
        return KILN_STATUS_OK;
    }
    case KILN_OP_OneHot: { /* https://onnx.ai/onnx/operators/onnx__OneHot.html */
        KILN_TRY(kiln_node_check_arity(node, 3, 3));
        kiln_axis_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        p->has_axis = true;
        return kiln_attr_int(attrs, "axis", -1, &p->axis);
    }
    default: { /* Trilu, https://onnx.ai/onnx/operators/onnx__Trilu.html */
        KILN_TRY(kiln_node_check_arity(node, 1, 2));
        kiln_trilu_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        int64_t up;
        KILN_TRY(kiln_attr_int(attrs, "upper", 1, &up));
        p->upper = up != 0;
        return KILN_STATUS_OK;
    }
    }
}

/* Checks that an input with data is a scalar or a one-element 1-D tensor. */
static kiln_status scalar_of(const kiln_node *node, const kiln_tensor *t, const char *what) {
    if (kiln_shape_count(t->rank, t->dims) != 1 || t->rank > 1) {
        char b[160];
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input '%s' should be a scalar, got shape %s", what,
                               kiln_dims_str(t->rank, t->dims, b, sizeof b));
    }
    return KILN_STATUS_OK;
}

static bool range_dtype(kiln_dtype t) {
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F64 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16 ||
           t == KILN_DTYPE_I16 || t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64 || t == KILN_DTYPE_UNDEFINED;
}

kiln_status kiln_range_count(const kiln_node *node, kiln_tensor *const *in, int64_t *count) {
    static const char *names[3] = {"start", "limit", "delta"};
    for (int i = 0; i < 3; i++) KILN_TRY(scalar_of(node, in[i], names[i]));
    kiln_dtype t = in[0]->dtype;
    if (kiln_dtype_is_float(t)) {
        double s = kiln_load_f64(t, in[0]->data, 0), l = kiln_load_f64(t, in[1]->data, 0), d = kiln_load_f64(t, in[2]->data, 0);
        double n = ceil((l - s) / d);
        if (d == 0 || !isfinite(n))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "range(%g, %g, %g) has no finite length", s, l, d);
        if (n > (double)((int64_t)1 << 40))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "range(%g, %g, %g) is too long", s, l, d);
        *count = n > 0 ? (int64_t)n : 0;
        return KILN_STATUS_OK;
    }
    int64_t s = kiln_load_i64(t, in[0]->data, 0), l = kiln_load_i64(t, in[1]->data, 0), d = kiln_load_i64(t, in[2]->data, 0);
    if (d == 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "delta is 0");
    /* ceil((l - s) / d) without overflow: the span as an unsigned distance */
    uint64_t span, step = d > 0 ? (uint64_t)d : (uint64_t)0 - (uint64_t)d;
    if (d > 0 ? l <= s : l >= s) { *count = 0; return KILN_STATUS_OK; }
    span = d > 0 ? (uint64_t)l - (uint64_t)s : (uint64_t)s - (uint64_t)l;
    uint64_t n = (span - 1) / step + 1;
    if (n > ((uint64_t)1 << 40))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "range(%lld, %lld, %lld) is too long", (long long)s,
                               (long long)l, (long long)d);
    *count = (int64_t)n;
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Range.html */
static kiln_status infer_range(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    for (int i = 0; i < 3; i++) {
        if (!in[i]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input %d is missing", i);
        if (!range_dtype(in[i]->dtype)) return kiln_node_bad_dtype(node, i, in[i]->dtype);
        if (in[i]->dtype != in[0]->dtype && in[i]->dtype != KILN_DTYPE_UNDEFINED && in[0]->dtype != KILN_DTYPE_UNDEFINED)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "inputs have dtypes %s and %s",
                                   kiln_dtype_name(in[0]->dtype), kiln_dtype_name(in[i]->dtype));
    }
    kiln_shape_unknown_dims(out, in[0]->dtype, 1);
    for (int i = 0; i < 3; i++)
        if (!kiln_shape_has_data(in[i])) return KILN_STATUS_OK;
    return kiln_range_count(node, in, &out->dims[0]);
}

/* https://onnx.ai/onnx/operators/onnx__ConstantOfShape.html */
static kiln_status infer_constant_of_shape(const kiln_node *node, const kiln_tensor *shape, kiln_tensor *out) {
    const kiln_const_params *p = node->params;
    out->dtype = p->dtype;
    if (shape->dtype != KILN_DTYPE_I64 && shape->dtype != KILN_DTYPE_UNDEFINED) return kiln_node_bad_dtype(node, 0, shape->dtype);
    if (!kiln_shape_has_data(shape)) {
        if (shape->rank == 1 && shape->dims[0] >= 0 && shape->dims[0] <= KILN_MAX_RANK)
            kiln_shape_unknown_dims(out, p->dtype, (int)shape->dims[0]);
        return KILN_STATUS_OK;
    }
    int n;
    KILN_TRY(kiln_shape_read_ints(node, shape, "input", out->dims, KILN_MAX_RANK, &n));
    for (int i = 0; i < n; i++)
        if (out->dims[i] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "shape[%d] = %lld is negative", i, (long long)out->dims[i]);
    out->rank = n;
    return kiln_shape_check_size(node, out);
}

/* https://onnx.ai/onnx/operators/onnx__OneHot.html */
static kiln_status infer_one_hot(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    const kiln_tensor *ind = in[0], *depth = in[1], *values = in[2];
    if (!ind || !depth || !values) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "a required input is missing");
    for (int i = 0; i < 2; i++)
        if (in[i]->dtype != KILN_DTYPE_UNDEFINED && (in[i]->dtype == KILN_DTYPE_BOOL || kiln_dtype_size(in[i]->dtype) == 0))
            return kiln_node_bad_dtype(node, i, in[i]->dtype);
    KILN_TRY(kiln_shape_check_dtype(node, 2, values->dtype));
    out->dtype = values->dtype;
    if (values->rank >= 0 && kiln_shape_count(values->rank, values->dims) >= 0 &&
        (values->rank != 1 || values->dims[0] != 2))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input 'values' should have shape [2]");
    if (ind->rank < 0) return KILN_STATUS_OK;
    int r = ind->rank + 1, axis;
    if (r > KILN_MAX_RANK)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "output rank %d is above kiln's limit of %d", r, KILN_MAX_RANK);
    if (kiln_norm_axis(p->axis, r, &axis) != KILN_STATUS_OK)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d", (long long)p->axis, r);
    int64_t d = KILN_DIM_UNKNOWN;
    if (kiln_shape_has_data(depth)) {
        KILN_TRY(scalar_of(node, depth, "depth"));
        d = kiln_load_i64(depth->dtype, depth->data, 0);
        if (d < 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "depth %lld is negative", (long long)d);
    }
    out->rank = r;
    for (int k = 0, j = 0; k < r; k++) out->dims[k] = k == axis ? d : ind->dims[j++];
    return kiln_shape_check_size(node, out);
}

kiln_status kiln_infer_generate(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    switch (node->op) {
    case KILN_OP_Range: return infer_range(node, in, out);
    case KILN_OP_ConstantOfShape:
        if (!in[0]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
        return infer_constant_of_shape(node, in[0], out);
    case KILN_OP_OneHot: return infer_one_hot(node, in, out);
    default: break;
    }
    const kiln_tensor *x = in[0];
    if (!x) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, x->dtype));
    kiln_shape_same_type(out, x);
    if (node->op == KILN_OP_EyeLike) { /* https://onnx.ai/onnx/operators/onnx__EyeLike.html */
        const kiln_eyelike_params *p = node->params;
        if (p->dtype != KILN_DTYPE_UNDEFINED) out->dtype = p->dtype;
        if (x->rank >= 0 && x->rank != 2)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input should be 2-D, it has rank %d", x->rank);
        return KILN_STATUS_OK;
    }
    /* Trilu, https://onnx.ai/onnx/operators/onnx__Trilu.html */
    if (x->rank >= 0 && x->rank < 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input should have rank 2 or more, it has %d", x->rank);
    const kiln_tensor *k = node->n_declared > 1 ? in[1] : NULL;
    if (k && k->dtype != KILN_DTYPE_I64 && k->dtype != KILN_DTYPE_UNDEFINED) return kiln_node_bad_dtype(node, 1, k->dtype);
    if (kiln_shape_has_data(k)) KILN_TRY(scalar_of(node, k, "k"));
    return KILN_STATUS_OK;
}
