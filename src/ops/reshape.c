/* reshape.c — parse and shape inference of the ops that keep the elements and change only the
 * shape: Identity, Reshape, Flatten, Squeeze, Unsqueeze. Their kernel (a copy) is in
 * src/backends/ref/reshape.c. Does not handle sequence or optional values (Identity on them).
 * Tested by the node tests test_identity*, test_reshape*, test_flatten*, test_squeeze*,
 * test_unsqueeze*. */
#include "shape_internal.h"

kiln_status kiln_parse_reshape(kiln_node *node, kiln_attrs *attrs) {
    switch (node->op) {
    case KILN_OP_Identity: /* https://onnx.ai/onnx/operators/onnx__Identity.html */
        return kiln_node_check_arity(node, 1, 1);
    case KILN_OP_Reshape: { /* https://onnx.ai/onnx/operators/onnx__Reshape.html */
        KILN_TRY(kiln_node_check_arity(node, 2, 2));
        kiln_reshape_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        int64_t az;
        KILN_TRY(kiln_attr_int(attrs, "allowzero", 0, &az));
        p->allowzero = az != 0;
        return KILN_STATUS_OK;
    }
    case KILN_OP_Flatten: { /* https://onnx.ai/onnx/operators/onnx__Flatten.html */
        KILN_TRY(kiln_node_check_arity(node, 1, 1));
        kiln_flatten_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        return kiln_attr_int(attrs, "axis", 1, &p->axis);
    }
    case KILN_OP_Squeeze:   /* https://onnx.ai/onnx/operators/onnx__Squeeze.html */
    case KILN_OP_Unsqueeze: { /* https://onnx.ai/onnx/operators/onnx__Unsqueeze.html */
        bool squeeze = node->op == KILN_OP_Squeeze;
        kiln_axes_params *p;
        KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
        p->from_input = node->opset >= 13;
        p->n_axes = -1;
        if (p->from_input) return kiln_node_check_arity(node, squeeze ? 1 : 2, 2);
        KILN_TRY(kiln_node_check_arity(node, 1, 1));
        bool present = kiln_attr_has(attrs, "axes");
        KILN_TRY(kiln_attr_ints_fixed(attrs, "axes", p->axes, KILN_MAX_RANK, &p->n_axes));
        if (!present) {
            if (!squeeze) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute 'axes' is missing");
            p->n_axes = -1;
        }
        return KILN_STATUS_OK;
    }
    default:
        return kiln_node_error(node, KILN_STATUS_INTERNAL, "not a reshape-family op");
    }
}

/* a *= b unless it overflows (then false). */
static bool mul_ok(int64_t *a, int64_t b) { return !__builtin_mul_overflow(*a, b, a); }

/* The size of the -1 dim of Reshape, or KILN_DIM_UNKNOWN when the dims cannot tell: known
 * factors are divided, symbolic ones must cancel between input and output. */
static kiln_status reshape_infer_minus_one(const kiln_node *node, const kiln_tensor *x, int rank,
                                           const int64_t *dims, int neg, int64_t *out) {
    *out = KILN_DIM_UNKNOWN;
    if (x->rank < 0) return KILN_STATUS_OK;
    int64_t in_known = 1, out_known = 1, sym[KILN_MAX_RANK];
    int n_sym = 0;
    for (int i = 0; i < x->rank; i++) {
        if (x->dims[i] == KILN_DIM_UNKNOWN) return KILN_STATUS_OK;
        if (x->dims[i] < 0) sym[n_sym++] = x->dims[i];
        else if (!mul_ok(&in_known, x->dims[i])) return KILN_STATUS_OK;
    }
    for (int i = 0; i < rank; i++) {
        if (i == neg) continue;
        if (dims[i] == KILN_DIM_UNKNOWN) return KILN_STATUS_OK;
        if (dims[i] >= 0) {
            if (!mul_ok(&out_known, dims[i])) out_known = 0; /* no tensor is that large: an error below */
            continue;
        }
        int j = 0;
        while (j < n_sym && sym[j] != dims[i]) j++;
        if (j == n_sym) return KILN_STATUS_OK; /* a symbol the input does not have */
        sym[j] = sym[--n_sym];
    }
    if (n_sym > 0) return KILN_STATUS_OK;
    char a[160], b[160];
    if (out_known == 0 || in_known % out_known != 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot reshape %s to %s (with -1 at %d)",
                               kiln_dims_str(x->rank, x->dims, a, sizeof a), kiln_dims_str(rank, dims, b, sizeof b), neg);
    *out = in_known / out_known;
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Reshape.html */
static kiln_status infer_reshape(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_reshape_params *p = node->params;
    const kiln_tensor *x = in[0], *shape = in[1];
    out->dtype = x->dtype;
    KILN_TRY(kiln_shape_check_index(node, 1, shape->dtype));
    if (!kiln_shape_has_data(shape)) {
        if (shape->rank == 1 && shape->dims[0] >= 0 && shape->dims[0] <= KILN_MAX_RANK)
            kiln_shape_unknown_dims(out, x->dtype, (int)shape->dims[0]);
        return KILN_STATUS_OK;
    }
    int64_t v[KILN_MAX_RANK], dims[KILN_MAX_RANK];
    int n, neg = -1;
    bool has_zero = false;
    KILN_TRY(kiln_shape_read_ints(node, shape, "shape", v, KILN_MAX_RANK, &n));
    for (int i = 0; i < n; i++) {
        if (v[i] == -1) {
            if (neg >= 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "shape has more than one -1");
            neg = i;
            dims[i] = KILN_DIM_UNKNOWN;
        } else if (v[i] == 0 && !p->allowzero) {
            if (x->rank >= 0 && i >= x->rank)
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                                       "shape[%d] = 0 copies an input dim, but the input has rank %d", i, x->rank);
            dims[i] = x->rank < 0 ? KILN_DIM_UNKNOWN : x->dims[i];
        } else if (v[i] < 0) {
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "shape[%d] = %lld is not valid", i, (long long)v[i]);
        } else {
            has_zero |= v[i] == 0;
            dims[i] = v[i];
        }
    }
    if (neg >= 0 && has_zero)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "shape has both -1 and 0 with allowzero = 1");
    if (neg >= 0) KILN_TRY(reshape_infer_minus_one(node, x, n, dims, neg, &dims[neg]));
    int64_t cin = x->rank < 0 ? -1 : kiln_shape_count(x->rank, x->dims), cout = kiln_shape_count(n, dims);
    bool all_known = true;
    for (int i = 0; i < n; i++) all_known &= dims[i] >= 0;
    if ((cin >= 0 && cout >= 0 && cin != cout) || (all_known && cout < 0)) {
        char a[160], b[160];
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot reshape %s (%lld elements) to %s",
                               kiln_dims_str(x->rank, x->dims, a, sizeof a), (long long)cin,
                               kiln_dims_str(n, dims, b, sizeof b));
    }
    out->rank = n;
    for (int i = 0; i < n; i++) out->dims[i] = dims[i];
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Flatten.html */
static kiln_status infer_flatten(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_flatten_params *p = node->params;
    const kiln_tensor *x = in[0];
    out->dtype = x->dtype;
    if (x->rank < 0) {
        kiln_shape_unknown_dims(out, x->dtype, 2);
        return KILN_STATUS_OK;
    }
    if (p->axis < -x->rank || p->axis > x->rank)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                               (long long)p->axis, x->rank);
    int axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
    out->rank = 2;
    out->dims[0] = kiln_shape_prod(x->dims, 0, axis);
    out->dims[1] = kiln_shape_prod(x->dims, axis, x->rank);
    return KILN_STATUS_OK;
}

/* The axes of Squeeze/Unsqueeze: *n = -1 when absent; *known = false when they are an input
 * without values (then *n is their count if known, else -1). */
static kiln_status read_axes(const kiln_node *node, kiln_tensor *const *in, int64_t *axes, int *n, bool *known) {
    const kiln_axes_params *p = node->params;
    *known = true;
    if (!p->from_input) {
        *n = p->n_axes;
        for (int i = 0; i < p->n_axes; i++) axes[i] = p->axes[i];
        return KILN_STATUS_OK;
    }
    const kiln_tensor *a = node->n_inputs > 1 ? in[1] : NULL;
    if (!a) { *n = -1; return KILN_STATUS_OK; }
    KILN_TRY(kiln_shape_check_index(node, 1, a->dtype));
    if (kiln_shape_has_data(a)) return kiln_shape_read_ints(node, a, "axes", axes, KILN_MAX_RANK, n);
    *known = false;
    *n = a->rank == 1 && a->dims[0] >= 0 ? (int)a->dims[0] : -1;
    if (a->rank == 0) *n = 1;
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Squeeze.html */
static kiln_status infer_squeeze(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t axes[KILN_MAX_RANK];
    int n, norm[KILN_MAX_RANK];
    bool known;
    out->dtype = x->dtype;
    KILN_TRY(read_axes(node, in, axes, &n, &known));
    if (x->rank < 0) return KILN_STATUS_OK;
    if (!known) {
        if (n > 0 && n <= x->rank) kiln_shape_unknown_dims(out, x->dtype, x->rank - n);
        return KILN_STATUS_OK;
    }
    bool drop[KILN_MAX_RANK] = {0};
    if (n <= 0) { /* every dim of size 1 (empty axes too, as onnxruntime does); an unknown dim
                   * leaves the rank unknown */
        for (int i = 0; i < x->rank; i++) {
            if (x->dims[i] < 0) return KILN_STATUS_OK;
            drop[i] = x->dims[i] == 1;
        }
    } else {
        KILN_TRY(kiln_shape_norm_axes(node, axes, n, x->rank, "axes", norm));
        for (int i = 0; i < n; i++) {
            if (x->dims[norm[i]] >= 0 && x->dims[norm[i]] != 1) {
                char b[160];
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot squeeze axis %d of shape %s",
                                       norm[i], kiln_dims_str(x->rank, x->dims, b, sizeof b));
            }
            drop[norm[i]] = true;
        }
    }
    out->rank = 0;
    for (int i = 0; i < x->rank; i++)
        if (!drop[i]) out->dims[out->rank++] = x->dims[i];
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Unsqueeze.html */
static kiln_status infer_unsqueeze(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t axes[KILN_MAX_RANK];
    int n, norm[KILN_MAX_RANK];
    bool known;
    out->dtype = x->dtype;
    KILN_TRY(read_axes(node, in, axes, &n, &known));
    if (n < 0 && known) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input 'axes' is missing");
    if (x->rank < 0 || n < 0) return KILN_STATUS_OK;
    int r = x->rank + n;
    if (r > KILN_MAX_RANK)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "output rank %d is above kiln's limit of %d", r, KILN_MAX_RANK);
    if (!known) {
        kiln_shape_unknown_dims(out, x->dtype, r);
        return KILN_STATUS_OK;
    }
    KILN_TRY(kiln_shape_norm_axes(node, axes, n, r, "axes", norm));
    bool added[KILN_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) added[norm[i]] = true;
    out->rank = r;
    for (int i = 0, j = 0; i < r; i++) out->dims[i] = added[i] ? 1 : x->dims[j++];
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_reshape(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    if (!in[0] || (node->op == KILN_OP_Reshape && !in[1]))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "a required input is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, in[0]->dtype));
    switch (node->op) {
    case KILN_OP_Identity:
        kiln_shape_same_type(out, in[0]);
        return KILN_STATUS_OK;
    case KILN_OP_Reshape: return infer_reshape(node, in, out);
    case KILN_OP_Flatten: return infer_flatten(node, in, out);
    case KILN_OP_Squeeze: return infer_squeeze(node, in, out);
    case KILN_OP_Unsqueeze: return infer_unsqueeze(node, in, out);
    default: return kiln_node_error(node, KILN_STATUS_INTERNAL, "not a reshape-family op");
    }
}
