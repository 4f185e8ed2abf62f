/* slice.c — parse and shape inference of Slice: starts/ends/axes as attributes before opset
 * 10, as inputs (with steps) from 10; negative indices count from the end, out-of-range ones
 * are clamped (INT64_MAX / INT64_MIN mean "to the end"), negative steps walk backwards.
 * Kernel: src/backends/ref/slice.c. Tested by the node tests test_slice*. */
#include "shape_internal.h"

/* https://onnx.ai/onnx/operators/onnx__Slice.html */
kiln_status kiln_parse_slice(kiln_node *node, kiln_attrs *attrs) {
    kiln_slice_params *p;
    KILN_TRY(kiln_shape_new_params(node, sizeof *p, (void **)&p));
    p->from_inputs = node->opset >= 10;
    if (p->from_inputs) return kiln_node_check_arity(node, 3, 5);
    KILN_TRY(kiln_node_check_arity(node, 1, 1));
    if (!kiln_attr_has(attrs, "starts") || !kiln_attr_has(attrs, "ends"))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attributes 'starts' and 'ends' are required");
    int ne, na;
    KILN_TRY(kiln_attr_ints_fixed(attrs, "starts", p->starts, KILN_MAX_RANK, &p->n));
    KILN_TRY(kiln_attr_ints_fixed(attrs, "ends", p->ends, KILN_MAX_RANK, &ne));
    p->has_axes = kiln_attr_has(attrs, "axes");
    KILN_TRY(kiln_attr_ints_fixed(attrs, "axes", p->axes, KILN_MAX_RANK, &na));
    if (ne != p->n || (p->has_axes && na != p->n))
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "starts, ends and axes have %d, %d and %d values",
                               p->n, ne, na);
    return KILN_STATUS_OK;
}

/* The slice arguments: n values each in starts/ends/axes/steps; false in *known when an input
 * has no values yet (then *axes_known tells whether the axes are known anyway). */
typedef struct slice_args {
    int n;
    int64_t starts[KILN_MAX_RANK], ends[KILN_MAX_RANK], axes[KILN_MAX_RANK], steps[KILN_MAX_RANK];
    bool known, axes_known;
} slice_args;

static kiln_status read_arg(const kiln_node *node, const kiln_tensor *t, int i, const char *what,
                            int64_t *v, int *n, bool *known) {
    KILN_TRY(kiln_shape_check_index(node, i, t->dtype));
    if (!kiln_shape_has_data(t)) { *known = false; return KILN_STATUS_OK; }
    return kiln_shape_read_ints(node, t, what, v, KILN_MAX_RANK, n);
}

static kiln_status slice_args_read(const kiln_node *node, kiln_tensor *const *in, slice_args *a) {
    const kiln_slice_params *p = node->params;
    a->known = a->axes_known = true;
    if (!p->from_inputs) {
        a->n = p->n;
        for (int i = 0; i < p->n; i++) {
            a->starts[i] = p->starts[i];
            a->ends[i] = p->ends[i];
            a->axes[i] = p->has_axes ? p->axes[i] : i;
            a->steps[i] = 1;
        }
        return KILN_STATUS_OK;
    }
    int ns = 0, ne = 0, na = -1, nt = -1;
    if (!in[1] || !in[2]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "inputs 'starts' and 'ends' are required");
    KILN_TRY(read_arg(node, in[1], 1, "starts", a->starts, &ns, &a->known));
    KILN_TRY(read_arg(node, in[2], 2, "ends", a->ends, &ne, &a->known));
    if (node->n_declared > 3 && in[3]) {
        bool k = true;
        KILN_TRY(read_arg(node, in[3], 3, "axes", a->axes, &na, &k));
        a->axes_known = k;
        a->known &= k;
    }
    if (node->n_declared > 4 && in[4]) KILN_TRY(read_arg(node, in[4], 4, "steps", a->steps, &nt, &a->known));
    if (!a->known) {
        if (a->axes_known && na < 0) a->axes_known = false; /* default axes need the count of starts */
        if (a->axes_known) a->n = na;
        return KILN_STATUS_OK;
    }
    if (ne != ns || (na >= 0 && na != ns) || (nt >= 0 && nt != ns))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "starts, ends, axes and steps have %d, %d, %d and %d values",
                               ns, ne, na, nt);
    a->n = ns;
    for (int i = 0; i < ns; i++) {
        if (na < 0) a->axes[i] = i;
        if (nt < 0) a->steps[i] = 1;
    }
    return KILN_STATUS_OK;
}

/* Clamps start/end on an axis of size dim (known) and gives the first index and the count. */
static void clamp_axis(int64_t start, int64_t end, int64_t step, int64_t dim, int64_t *first, int64_t *count) {
    if (dim == 0) { *first = 0; *count = 0; return; }
    int64_t s = start < 0 ? start + dim : start, e = end < 0 ? end + dim : end;
    if (step > 0) {
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        *count = e > s ? (e - s - 1) / step + 1 : 0;
    } else {
        int64_t back = step < -INT64_MAX ? INT64_MAX : -step;
        s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
        e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        *count = s > e ? (s - e - 1) / back + 1 : 0;
    }
    *first = s;
}

kiln_status kiln_slice_resolve(const kiln_node *node, kiln_tensor *const *in, int64_t *start, int64_t *step,
                               int64_t *dims) {
    const kiln_tensor *x = in[0];
    slice_args a;
    int axes[KILN_MAX_RANK];
    KILN_TRY(slice_args_read(node, in, &a));
    KILN_ASSERT(a.known);
    KILN_TRY(kiln_shape_norm_axes(node, a.axes, a.n, x->rank, "axes", axes));
    for (int k = 0; k < x->rank; k++) {
        start[k] = 0;
        step[k] = 1;
        dims[k] = x->dims[k];
    }
    for (int i = 0; i < a.n; i++) {
        int k = axes[i];
        if (a.steps[i] == 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "steps[%d] is 0", i);
        step[k] = a.steps[i];
        if (x->dims[k] >= 0) clamp_axis(a.starts[i], a.ends[i], a.steps[i], x->dims[k], &start[k], &dims[k]);
        else if (a.starts[i] == 0 && a.steps[i] == 1 && a.ends[i] >= INT32_MAX) dims[k] = x->dims[k]; /* all of it */
        else dims[k] = KILN_DIM_UNKNOWN;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_slice(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    if (!x) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input 0 is missing");
    KILN_TRY(kiln_shape_check_dtype(node, 0, x->dtype));
    out->dtype = x->dtype;
    if (x->rank < 0) return KILN_STATUS_OK;
    if (x->rank == 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "cannot slice a scalar");
    slice_args a;
    KILN_TRY(slice_args_read(node, in, &a));
    if (a.known) {
        int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK];
        out->rank = x->rank;
        return kiln_slice_resolve(node, in, start, step, out->dims);
    }
    kiln_shape_unknown_dims(out, x->dtype, x->rank);
    if (a.axes_known) { /* the axes not sliced keep their size */
        int axes[KILN_MAX_RANK];
        bool sliced[KILN_MAX_RANK] = {0};
        KILN_TRY(kiln_shape_norm_axes(node, a.axes, a.n, x->rank, "axes", axes));
        for (int i = 0; i < a.n; i++) sliced[axes[i]] = true;
        for (int k = 0; k < x->rank; k++)
            if (!sliced[k]) out->dims[k] = x->dims[k];
    }
    return KILN_STATUS_OK;
}
