/* pad.c — parse and shape inference of Pad (modes constant/reflect/edge/wrap; pads as an
 * attribute before opset 11, as inputs after, with optional axes from 18; negative pads crop)
 * and CenterCropPad (crop or zero-pad each listed axis to a size, centred). Kernels:
 * src/backends/ref/pad.c. Tested by the node tests test_constant_pad*, test_edge_pad,
 * test_reflect_pad, test_wrap_pad, test_center_crop_pad*. */
#include "shape_internal.h"

kiln_status kiln_parse_pad(kiln_node *node, kiln_attrs *attrs) {
    if (node->op == KILN_OP_CenterCropPad) { /* https://onnx.ai/onnx/operators/onnx__CenterCropPad.html */
        KILN_TRY(kiln_node_check_arity(node, 2, 2));
        kiln_crop_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        bool present = kiln_attr_has(attrs, "axes");
        KILN_TRY(kiln_attr_ints_fixed(attrs, "axes", p->axes, KILN_MAX_RANK, &p->n_axes));
        if (!present) p->n_axes = -1;
        return KILN_STATUS_OK;
    }
    /* https://onnx.ai/onnx/operators/onnx__Pad.html */
    kiln_pad_params *p;
    KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
    char mode[16];
    KILN_TRY(kiln_attr_string(attrs, "mode", "constant", mode, sizeof mode));
    if (strcmp(mode, "constant") == 0) p->mode = KILN_PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0) p->mode = KILN_PAD_REFLECT;
    else if (strcmp(mode, "edge") == 0) p->mode = KILN_PAD_EDGE;
    else if (strcmp(mode, "wrap") == 0) p->mode = KILN_PAD_WRAP;
    else return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute mode = '%s' is not valid", mode);
    p->from_inputs = node->opset >= 11;
    if (p->from_inputs) return kiln_node_check_arity(node, 2, node->opset >= 18 ? 4 : 3);
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    if (!kiln_attr_has(attrs, "pads")) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'pads' is missing");
    KILN_TRY(kiln_attr_ints_fixed(attrs, "pads", p->pads, 2 * KILN_MAX_RANK, &p->n_pads));
    return kiln_attr_float(attrs, "value", 0.0f, &p->value);
}

/* Pad: the pads before (begin[k]) and after (end[k]) each axis of the input; false in *known
 * when the pads or axes have no values yet. */
kiln_status kiln_pad_resolve(const kiln_node *node, kiln_tensor *const *in, int64_t *begin, int64_t *end, bool *known) {
    const kiln_pad_params *p = node->params;
    const kiln_tensor *x = in[0];
    int r = x->rank, n_pads, n_axes = r, axes[KILN_MAX_RANK];
    int64_t pads[2 * KILN_MAX_RANK], raw_axes[KILN_MAX_RANK];
    bool has_axes = false;
    *known = false;
    if (!p->from_inputs) {
        n_pads = p->n_pads;
        memcpy(pads, p->pads, sizeof(int64_t) * (size_t)n_pads);
    } else {
        const kiln_tensor *pt = in[1], *at = node->n_declared > 3 ? in[3] : NULL;
        if (!pt) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 'pads' is missing");
        KILN_TRY(kiln_shape_check_index(node, 1, pt->dtype));
        if (at) KILN_TRY(kiln_shape_check_index(node, 3, at->dtype));
        if (!kiln_shape_has_data(pt) || (at && !kiln_shape_has_data(at))) return KILN_STATUS_OK;
        KILN_TRY(kiln_shape_read_ints(node, pt, "pads", pads, 2 * KILN_MAX_RANK, &n_pads));
        if (at) {
            KILN_TRY(kiln_shape_read_ints(node, at, "axes", raw_axes, KILN_MAX_RANK, &n_axes));
            KILN_TRY(kiln_shape_norm_axes(node, raw_axes, n_axes, r, "axes", axes));
            has_axes = true;
        }
    }
    if (!has_axes)
        for (int k = 0; k < r; k++) axes[k] = k;
    if (n_pads != 2 * n_axes)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "pads has %d values for %d axes", n_pads, n_axes);
    for (int k = 0; k < r; k++) begin[k] = end[k] = 0;
    for (int i = 0; i < n_axes; i++) {
        begin[axes[i]] = pads[i];
        end[axes[i]] = pads[n_axes + i];
    }
    *known = true;
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Pad.html */
static kiln_status infer_pad(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_pad_params *p = node->params;
    const kiln_tensor *x = in[0];
    const kiln_tensor *v = p->from_inputs && node->n_declared > 2 ? in[2] : NULL;
    if (v && v->dtype != x->dtype && v->dtype != KILN_DTYPE_UNDEFINED && x->dtype != KILN_DTYPE_UNDEFINED)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "constant_value has dtype %s, data has %s",
                               kiln_dtype_name(v->dtype), kiln_dtype_name(x->dtype));
    if (x->rank < 0) return KILN_STATUS_OK;
    kiln_shape_unknown_dims(out, x->dtype, x->rank);
    int64_t begin[KILN_MAX_RANK], end[KILN_MAX_RANK];
    bool known;
    KILN_TRY(kiln_pad_resolve(node, in, begin, end, &known));
    if (!known) return KILN_STATUS_OK;
    for (int k = 0; k < x->rank; k++) {
        int64_t d = x->dims[k], b = begin[k], e = end[k];
        if (b == 0 && e == 0) { out->dims[k] = d; continue; }
        if (d < 0) continue;
        /* the part of the input kept after negative pads crop it */
        int64_t kept = d, size;
        bool bad = (b < 0 && __builtin_add_overflow(kept, b, &kept)) || (e < 0 && __builtin_add_overflow(kept, e, &kept)) ||
                   kept < 0 || __builtin_add_overflow(kept, b > 0 ? b : 0, &size) ||
                   __builtin_add_overflow(size, e > 0 ? e : 0, &size);
        if (bad)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "pads %lld, %lld do not fit axis %d of size %lld",
                                   (long long)b, (long long)e, k, (long long)d);
        if (kept == 0 && p->mode != KILN_PAD_CONSTANT && (b > 0 || e > 0))
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot pad the empty axis %d in mode %s", k,
                                   p->mode == KILN_PAD_REFLECT ? "reflect" : p->mode == KILN_PAD_EDGE ? "edge" : "wrap");
        out->dims[k] = size;
    }
    return kiln_shape_check_size(node, out);
}

/* https://onnx.ai/onnx/operators/onnx__CenterCropPad.html */
static kiln_status infer_crop(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_crop_params *p = node->params;
    const kiln_tensor *x = in[0], *shape = in[1];
    if (!shape) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 'shape' is missing");
    KILN_TRY(kiln_shape_check_index(node, 1, shape->dtype));
    if (x->rank < 0) return KILN_STATUS_OK;
    kiln_shape_same_type(out, x);
    int n = p->n_axes < 0 ? x->rank : p->n_axes, axes[KILN_MAX_RANK];
    if (p->n_axes < 0)
        for (int k = 0; k < n; k++) axes[k] = k;
    else
        KILN_TRY(kiln_shape_norm_axes(node, p->axes, n, x->rank, "axes", axes));
    if (!kiln_shape_has_data(shape)) {
        for (int i = 0; i < n; i++) out->dims[axes[i]] = KILN_DIM_UNKNOWN;
        return KILN_STATUS_OK;
    }
    int64_t t[KILN_MAX_RANK];
    int m;
    KILN_TRY(kiln_shape_read_ints(node, shape, "shape", t, KILN_MAX_RANK, &m));
    if (m != n) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "shape has %d values for %d axes", m, n);
    for (int i = 0; i < n; i++) {
        if (t[i] < 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "shape[%d] = %lld is negative", i, (long long)t[i]);
        out->dims[axes[i]] = t[i];
    }
    return kiln_shape_check_size(node, out);
}

kiln_status kiln_infer_pad(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (!in[0]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, in[0]->dtype));
    out->dtype = in[0]->dtype;
    if (node->op == KILN_OP_CenterCropPad) return infer_crop(node, in, out);
    return infer_pad(node, in, out);
}
