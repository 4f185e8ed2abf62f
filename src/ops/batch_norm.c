/* batch_norm.c — parse and shape inference of BatchNormalization
 * (https://onnx.ai/onnx/operators/onnx__BatchNormalization.html) and InstanceNormalization
 * (https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html).
 * BatchNormalization: X (N, C, ...), scale, B, mean, var (C) -> Y; with training_mode = 1
 * (opset 14+) also running_mean and running_var (C). Before opset 9, spatial = 0 makes the
 * parameters (C, D1, ...). InstanceNormalization: X (N, C, ...), scale, B (C) -> Y.
 * Kernels in src/backends/ref/batch_norm.c. Tested by test_batchnorm*, test_instancenorm*. */
#include "nn_internal.h"

kiln_status kiln_parse_batch_norm(kiln_node *node, kiln_attrs *attrs) {
    kiln_norm_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    float eps, mom;
    KILN_TRY(kiln_attr_float(attrs, "epsilon", 1e-5f, &eps));
    p->epsilon = eps;
    if (node->op == KILN_OP_InstanceNormalization) return KILN_STATUS_OK;
    KILN_TRY(kiln_attr_float(attrs, "momentum", 0.9f, &mom));
    p->momentum = mom;
    int64_t v;
    KILN_TRY(kiln_attr_int(attrs, "training_mode", 0, &v));
    p->training = v != 0 && node->opset >= 14;
    KILN_TRY(kiln_attr_int(attrs, "spatial", 1, &v));
    p->per_activation = v == 0 && node->opset < 9;
    KILN_TRY(kiln_attr_int(attrs, "is_test", 0, &v)); /* opset < 7: inference is what kiln does */
    int64_t *consumed;
    int n;
    KILN_TRY(kiln_attr_ints(attrs, "consumed_inputs", &consumed, &n, NULL));
    free(consumed);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_batch_norm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = node->params;
    bool bn = node->op == KILN_OP_BatchNormalization;
    KILN_TRY(kiln_node_check_arity(node, bn ? 5 : 3, bn ? 5 : 3));
    const kiln_tensor *x = in[0];
    if (!kiln_nn_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    for (int i = 1; i < node->n_declared; i++)
        if (!in[i] || !kiln_nn_is_float(in[i]->dtype))
            return in[i] ? kiln_node_bad_dtype(node, i, in[i]->dtype)
                         : kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input %d is required", i);
    if (bn && !p->training) {
        for (int j = 1; j < node->n_outputs; j++)
            if (node->outputs[j] >= 0)
                return kiln_node_error(node, KILN_STATUS_UNSUPPORTED,
                                       "training outputs (output %d) without training_mode = 1", j);
    }
    if (node->n_outputs > (bn ? 3 : 1) && p->training)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d outputs", node->n_outputs);
    out[0].dtype = x->dtype;
    for (int j = 1; j < node->n_outputs; j++) out[j].dtype = in[3]->dtype;
    if (!kiln_infer_ranks_known(node, in)) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    char s1[160], s2[160];
    if (x->rank < 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "X %s needs rank >= 2",
                               kiln_dims_str(x->rank, x->dims, s1, sizeof s1));
    for (int i = 1; i < node->n_declared; i++) {
        const kiln_tensor *t = in[i];
        bool bad;
        if (p->per_activation) {
            bad = t->rank != x->rank - 1;
            for (int a = 0; !bad && a < t->rank; a++)
                bad = t->dims[a] >= 0 && x->dims[a + 1] >= 0 && t->dims[a] != x->dims[a + 1];
        } else {
            bad = t->rank != 1 || (t->dims[0] >= 0 && x->dims[1] >= 0 && t->dims[0] != x->dims[1]);
        }
        if (bad)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %d %s does not fit X %s", i,
                                   kiln_dims_str(t->rank, t->dims, s1, sizeof s1),
                                   kiln_dims_str(x->rank, x->dims, s2, sizeof s2));
    }
    kiln_nn_same_type(&out[0], x);
    for (int j = 1; j < node->n_outputs; j++) {
        kiln_nn_same_type(&out[j], in[3]);
    }
    return KILN_STATUS_OK;
}
