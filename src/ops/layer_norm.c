/* layer_norm.c — parse and shape inference of LayerNormalization
 * (https://onnx.ai/onnx/operators/onnx__LayerNormalization.html), GroupNormalization
 * (onnx__GroupNormalization.html), RMSNormalization (onnx__RMSNormalization.html) and
 * MeanVarianceNormalization (onnx__MeanVarianceNormalization.html).
 * LayerNormalization: X, Scale, optional B (broadcast to X.shape[axis:]) -> Y, optional Mean and
 * InvStdDev (X.shape[:axis] + ones, dtype from stash_type). GroupNormalization: X (N, C, ...),
 * scale and bias of C values (opset 21+) or num_groups values (opset 18-20). RMSNormalization:
 * X, scale -> Y. MeanVarianceNormalization: X -> Y over `axes` (default 0, 2, 3).
 * Kernels in src/backends/ref/layer_norm.c. Tested by test_layer_normalization*,
 * test_group_normalization*, test_rms_normalization*, test_mvn*. */
#include "nn_internal.h"

kiln_status kiln_parse_layer_norm(kiln_node *node, kiln_attrs *attrs) {
    kiln_norm_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    float eps = 1e-5f;
    if (node->op != KILN_OP_MeanVarianceNormalization) KILN_TRY(kiln_attr_float(attrs, "epsilon", 1e-5f, &eps));
    p->epsilon = eps;
    if (node->op == KILN_OP_LayerNormalization || node->op == KILN_OP_RMSNormalization)
        KILN_TRY(kiln_attr_int(attrs, "axis", -1, &p->axis));
    if (node->op != KILN_OP_MeanVarianceNormalization) {
        int64_t st;
        KILN_TRY(kiln_attr_int(attrs, "stash_type", 1, &st));
        if (st != KILN_DTYPE_F32 && st != KILN_DTYPE_F64 && st != KILN_DTYPE_F16 && st != KILN_DTYPE_BF16)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute stash_type = %lld is not a float type",
                                   (long long)st);
        p->stash = (kiln_dtype)st;
    }
    if (node->op == KILN_OP_GroupNormalization) {
        KILN_TRY(kiln_attr_int(attrs, "num_groups", 0, &p->num_groups));
        if (p->num_groups <= 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute num_groups = %lld is not positive",
                                   (long long)p->num_groups);
    }
    if (node->op == KILN_OP_MeanVarianceNormalization) {
        KILN_TRY(kiln_attr_ints_fixed(attrs, "axes", p->axes, KILN_MAX_RANK, &p->n_axes));
        if (!kiln_attr_has(attrs, "axes")) {
            p->n_axes = 3;
            p->axes[0] = 0;
            p->axes[1] = 2;
            p->axes[2] = 3;
        }
    }
    return KILN_STATUS_OK;
}

/* t must broadcast (numpy rules, one way) to x's dims [axis, rank). */
static kiln_status check_bcast(const kiln_node *node, const kiln_tensor *t, const kiln_tensor *x, int axis,
                               const char *what) {
    char s1[160], s2[160];
    bool bad = t->rank > x->rank - axis;
    for (int i = 0; !bad && i < t->rank; i++) {
        int64_t td = t->dims[t->rank - 1 - i], xd = x->dims[x->rank - 1 - i];
        bad = td >= 0 && xd >= 0 && td != 1 && td != xd;
    }
    if (bad)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s %s does not broadcast to X %s from axis %d",
                               what, kiln_dims_str(t->rank, t->dims, s1, sizeof s1),
                               kiln_dims_str(x->rank, x->dims, s2, sizeof s2), axis);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_layer_norm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = node->params;
    int op = node->op;
    int lo = op == KILN_OP_MeanVarianceNormalization ? 1 : op == KILN_OP_GroupNormalization ? 3 : 2;
    int hi = op == KILN_OP_LayerNormalization ? 3 : lo;
    KILN_TRY(kiln_node_check_arity(node, lo, hi));
    const kiln_tensor *x = in[0];
    if (!kiln_nn_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    for (int i = 1; i < node->n_declared; i++)
        if (in[i] && !kiln_nn_is_float(in[i]->dtype)) return kiln_node_bad_dtype(node, i, in[i]->dtype);
    if (op != KILN_OP_LayerNormalization && node->n_outputs > 1)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d outputs, expected 1", node->n_outputs);
    out[0].dtype = x->dtype;
    for (int j = 1; j < node->n_outputs; j++) out[j].dtype = p->stash;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char s1[160], s2[160];
    kiln_nn_same_type(&out[0], x);
    if (op == KILN_OP_LayerNormalization || op == KILN_OP_RMSNormalization) {
        int axis;
        if (kiln_norm_axis(p->axis, x->rank, &axis) || x->rank == 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for X %s",
                                   (long long)p->axis, kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
        KILN_TRY(check_bcast(node, in[1], x, axis, "Scale"));
        if (node->n_declared > 2 && in[2]) KILN_TRY(check_bcast(node, in[2], x, axis, "B"));
        for (int j = 1; j < node->n_outputs; j++) {
            out[j].rank = x->rank;
            for (int i = 0; i < x->rank; i++) out[j].dims[i] = i < axis ? x->dims[i] : 1;
        }
    } else if (op == KILN_OP_GroupNormalization) {
        if (x->rank < 2)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s needs rank >= 2",
                                   kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
        int64_t c = x->dims[1];
        if (c >= 0 && c % p->num_groups)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s has channels not divisible by num_groups = %lld",
                                   kiln_dims_str(x->rank, x->dims, s1, sizeof s1), (long long)p->num_groups);
        for (int i = 1; i < 3; i++) {
            const kiln_tensor *t = in[i];
            int64_t want = node->opset >= 21 ? c : p->num_groups;
            if (t->rank != 1 || (t->dims[0] >= 0 && want >= 0 && t->dims[0] != want))
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s %s must have %lld values (X %s, opset %d)",
                                       i == 1 ? "scale" : "bias", kiln_dims_str(t->rank, t->dims, s1, sizeof s1),
                                       (long long)want, kiln_dims_str(x->rank, x->dims, s2, sizeof s2), node->opset);
        }
    } else {
        for (int i = 0; i < p->n_axes; i++) {
            int a;
            if (kiln_norm_axis(p->axes[i], x->rank, &a))
                return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "axes[%d] = %lld is out of range for X %s", i,
                                       (long long)p->axes[i], kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
        }
    }
    return KILN_STATUS_OK;
}
