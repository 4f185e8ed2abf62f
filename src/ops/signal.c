/* signal.c — parse and shape inference of the Fourier transforms:
 *   DFT   https://onnx.ai/onnx/operators/onnx__DFT.html   (opset 17: axis attribute, default 1;
 *         opset 20: axis input, default -2), forward / inverse, onesided (RFFT, IRFFT),
 *         real (last dim 1) or complex (last dim 2) input, optional dft_length input
 *   STFT  https://onnx.ai/onnx/operators/onnx__STFT.html  (frame_step, window, frame_length,
 *         onesided, default 1)
 * Output shapes depend on the values of dft_length / axis / frame_step / frame_length: they are
 * known when those inputs are constants. The resolved geometry (kiln_seq_dft_geom,
 * kiln_seq_stft_geom) is shared with the kernels in src/backends/ref/signal.c.
 * Tested by test_dft*, test_stft*. */
#include "seq_internal.h"

kiln_status kiln_parse_signal(kiln_node *node, kiln_attrs *attrs) {
    seq_signal_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    int64_t v;
    if (node->op == KILN_OP_DFT) {
        p->axis = node->opset >= 20 ? -2 : 1;
        if (node->opset < 20) KILN_TRY(kiln_attr_int(attrs, "axis", 1, &p->axis));
        KILN_TRY(kiln_attr_int(attrs, "inverse", 0, &v));
        p->inverse = v != 0;
        KILN_TRY(kiln_attr_int(attrs, "onesided", 0, &v));
        p->onesided = v != 0;
    } else {
        KILN_TRY(kiln_attr_int(attrs, "onesided", 1, &v));
        p->onesided = v != 0;
    }
    return KILN_STATUS_OK;
}

static bool int_known(const kiln_tensor *t) { return t->data && t->rank >= 0; }

/* Fills g from x and the optional inputs; g->known = false (with g->rank and g->c_out set)
 * when a needed value is not known yet. */
kiln_status kiln_seq_dft_geom(const kiln_node *node, kiln_tensor *const *in, seq_dft_geom *g) {
    const seq_signal_params *p = node->params;
    const kiln_tensor *x = in[0], *len_t = seq_in(node, in, 1), *axis_t = node->opset >= 20 ? seq_in(node, in, 2) : NULL;
    char s[160];
    memset(g, 0, sizeof *g);
    g->known = true;
    g->axis = -1;
    g->rank = x->rank;
    g->c_out = p->inverse && p->onesided ? 1 : 2;
    if (x->rank < 0) {
        g->known = false;
        return KILN_STATUS_OK;
    }
    if (x->rank < 2 || (x->dims[x->rank - 1] >= 0 && x->dims[x->rank - 1] != 1 && x->dims[x->rank - 1] != 2))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %s must be (..., 1) or (..., 2)",
                               kiln_dims_str(x->rank, x->dims, s, sizeof s));
    int64_t axis = p->axis;
    if (axis_t) {
        if (!int_known(axis_t)) {
            g->known = false;
            return KILN_STATUS_OK;
        }
        KILN_TRY(seq_scalar_i64(node, axis_t, "axis", &axis));
    }
    int r = x->rank;
    if (axis < -r || axis >= r - 1 || axis == -1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for input %s",
                               (long long)axis, kiln_dims_str(x->rank, x->dims, s, sizeof s));
    g->axis = (int)(axis < 0 ? axis + r : axis);
    g->n_in = x->dims[g->axis];
    g->c_in = x->dims[r - 1];
    if (len_t) {
        if (!int_known(len_t)) {
            g->known = false;
            return KILN_STATUS_OK;
        }
        KILN_TRY(seq_scalar_i64(node, len_t, "dft_length", &g->n));
        if (g->n < 1)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "dft_length = %lld is not positive", (long long)g->n);
    } else if (g->n_in < 0) {
        g->known = false;
        return KILN_STATUS_OK;
    } else {
        g->n = p->inverse && p->onesided ? 2 * (g->n_in - 1) : g->n_in;
        if (g->n < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "inverse onesided DFT of input %s has no length",
                                   kiln_dims_str(x->rank, x->dims, s, sizeof s));
    }
    g->n_out = !p->inverse && p->onesided ? g->n / 2 + 1 : g->n;
    g->outer = kiln_shape_count(g->axis, x->dims);
    g->inner = kiln_shape_count(r - 1 - g->axis - 1, x->dims + g->axis + 1);
    if (g->outer < 0 || g->inner < 0 || g->c_in < 0) g->known = false;
    return KILN_STATUS_OK;
}

kiln_status kiln_seq_stft_geom(const kiln_node *node, kiln_tensor *const *in, seq_stft_geom *g) {
    const seq_signal_params *p = node->params;
    const kiln_tensor *x = in[0], *step_t = in[1], *win = seq_in(node, in, 2), *len_t = seq_in(node, in, 3);
    char s[160];
    memset(g, 0, sizeof *g);
    g->known = false;
    if (x->rank < 0) return KILN_STATUS_OK;
    if (x->rank != 3 || (x->dims[2] >= 0 && x->dims[2] != 1 && x->dims[2] != 2))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "signal %s must be (batch, length, 1 or 2)",
                               kiln_dims_str(x->rank, x->dims, s, sizeof s));
    if (win && win->rank >= 0 && win->rank != 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "window %s must be 1-D",
                               kiln_dims_str(win->rank, win->dims, s, sizeof s));
    g->batch = x->dims[0];
    g->len = x->dims[1];
    g->c_in = x->dims[2];
    if (!int_known(step_t)) return KILN_STATUS_OK;
    KILN_TRY(seq_scalar_i64(node, step_t, "frame_step", &g->step));
    if (g->step < 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "frame_step = %lld is not positive", (long long)g->step);
    if (len_t) {
        if (!int_known(len_t)) return KILN_STATUS_OK;
        KILN_TRY(seq_scalar_i64(node, len_t, "frame_length", &g->frame));
    } else if (win) {
        if (win->rank < 0) return KILN_STATUS_OK;
        g->frame = win->dims[0];
    } else {
        g->frame = g->len;
    }
    if (g->frame < 0 || g->len < 0) return KILN_STATUS_OK; /* unknown dims */
    if (g->frame < 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "frame_length = %lld is not positive", (long long)g->frame);
    if (win && win->rank == 1 && win->dims[0] >= 0 && win->dims[0] != g->frame)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "window length %lld differs from frame_length %lld",
                               (long long)win->dims[0], (long long)g->frame);
    if (g->len < g->frame)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "signal %s is shorter than frame_length %lld",
                               kiln_dims_str(x->rank, x->dims, s, sizeof s), (long long)g->frame);
    g->frames = (g->len - g->frame) / g->step + 1;
    g->bins = p->onesided ? g->frame / 2 + 1 : g->frame;
    g->known = g->batch >= 0 && g->c_in >= 0;
    return KILN_STATUS_OK;
}

static bool is_float(kiln_dtype t) { return kiln_dtype_is_float(t); }
static bool is_i32_64(kiln_dtype t) { return t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64; }

kiln_status kiln_infer_signal(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    if (!is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = x->dtype;
    if (node->op == KILN_OP_DFT) {
        KILN_TRY(kiln_node_check_arity(node, 1, node->opset >= 20 ? 3 : 2));
        for (int i = 1; i < node->n_declared; i++)
            if (in[i] && !is_i32_64(in[i]->dtype)) return kiln_node_bad_dtype(node, i, in[i]->dtype);
        seq_dft_geom g;
        KILN_TRY(kiln_seq_dft_geom(node, in, &g));
        out[0].rank = g.rank;
        if (g.rank < 0) return KILN_STATUS_OK;
        for (int i = 0; i < x->rank; i++) out[0].dims[i] = x->dims[i];
        out[0].dims[x->rank - 1] = g.c_out;
        if (g.axis < 0) /* which axis is transformed is not known yet */
            for (int i = 0; i < x->rank - 1; i++) out[0].dims[i] = KILN_DIM_UNKNOWN;
        else
            out[0].dims[g.axis] = g.known || g.n > 0 ? g.n_out : KILN_DIM_UNKNOWN;
        return KILN_STATUS_OK;
    }
    KILN_TRY(kiln_node_check_arity(node, 2, 4));
    if (!is_i32_64(in[1]->dtype)) return kiln_node_bad_dtype(node, 1, in[1]->dtype);
    const kiln_tensor *win = seq_in(node, in, 2), *len_t = seq_in(node, in, 3);
    if (win && win->dtype != x->dtype) return kiln_node_bad_dtype(node, 2, win->dtype);
    if (len_t && !is_i32_64(len_t->dtype)) return kiln_node_bad_dtype(node, 3, len_t->dtype);
    seq_stft_geom g;
    KILN_TRY(kiln_seq_stft_geom(node, in, &g));
    out[0].rank = 4;
    out[0].dims[0] = x->rank == 3 ? x->dims[0] : KILN_DIM_UNKNOWN;
    out[0].dims[1] = g.frames > 0 ? g.frames : KILN_DIM_UNKNOWN;
    out[0].dims[2] = g.bins > 0 ? g.bins : KILN_DIM_UNKNOWN;
    out[0].dims[3] = 2;
    return KILN_STATUS_OK;
}
