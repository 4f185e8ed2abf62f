/* dropout.c — parse and shape inference of Dropout (https://onnx.ai/onnx/operators/onnx__Dropout.html):
 * data -> output (same type and shape) and optional mask (bool from opset 10, data's type
 * before). Opset 12+ takes ratio and training_mode as optional inputs; before, kiln runs it in
 * inference mode (identity), as runtimes do. The kernel is src/backends/ref/dropout.c.
 * Tested by test_dropout*, test_training_dropout*. */
#include "nn_internal.h"

kiln_status kiln_parse_dropout(kiln_node *node, kiln_attrs *attrs) {
    kiln_dropout_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    float ratio;
    int64_t v;
    KILN_TRY(kiln_attr_float(attrs, "ratio", 0.5f, &ratio));
    p->ratio = ratio;
    KILN_TRY(kiln_attr_int(attrs, "is_test", 0, &v));
    p->has_seed = kiln_attr_has(attrs, "seed");
    KILN_TRY(kiln_attr_int(attrs, "seed", 0, &p->seed));
    int64_t *consumed;
    int n;
    KILN_TRY(kiln_attr_ints(attrs, "consumed_inputs", &consumed, &n, NULL));
    free(consumed);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_dropout(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 1, node->opset >= 12 ? 3 : 1));
    const kiln_tensor *x = in[0];
    if (!kiln_nn_is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
    if (node->n_declared > 1 && in[1] && !kiln_nn_is_float(in[1]->dtype)) return kiln_node_bad_dtype(node, 1, in[1]->dtype);
    if (node->n_declared > 2 && in[2] && in[2]->dtype != KILN_DTYPE_BOOL) return kiln_node_bad_dtype(node, 2, in[2]->dtype);
    if (node->n_outputs > 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d outputs, expected 1 or 2", node->n_outputs);
    for (int i = 1; i < node->n_declared; i++) {
        char s1[160];
        if (in[i] && in[i]->rank > 0 && kiln_shape_count(in[i]->rank, in[i]->dims) != 1)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %d %s must be a scalar", i,
                                   kiln_dims_str(in[i]->rank, in[i]->dims, s1, sizeof s1));
    }
    out[0].dtype = x->dtype;
    if (node->n_outputs > 1) out[1].dtype = node->opset >= 10 ? KILN_DTYPE_BOOL : x->dtype;
    if (x->rank < 0) {
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    for (int j = 0; j < node->n_outputs; j++) {
        out[j].rank = x->rank;
        for (int i = 0; i < x->rank; i++) out[j].dims[i] = x->dims[i];
    }
    return KILN_STATUS_OK;
}
