/* activation.c — parse and shape inference of the element-wise activations: Relu Sigmoid
 * Softplus Softsign HardSigmoid HardSwish Elu Selu Celu LeakyRelu ThresholdedRelu Mish Gelu
 * Shrink Swish, and PRelu, whose slope broadcasts onto X (unidirectional broadcasting).
 * Specs: https://onnx.ai/onnx/operators/onnx__<Op>.html. The output has X's shape and dtype.
 * The kernel is src/backends/ref/activation.c. Tested by the node tests test_relu,
 * test_sigmoid*, test_elu*, ..., test_gelu*, test_prelu* (with their _expanded variants). */
#include "math_internal.h"

kiln_status kiln_parse_activation(kiln_node *node, kiln_attrs *attrs) {
    math_act_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    switch (node->op) {
    case KILN_OP_Elu: return kiln_attr_float(attrs, "alpha", 1.0f, &p->alpha);
    case KILN_OP_Celu:
        KILN_TRY(kiln_attr_float(attrs, "alpha", 1.0f, &p->alpha));
        if (p->alpha == 0.0f)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute alpha = 0 (Celu divides by it)");
        return KILN_STATUS_OK;
    case KILN_OP_Selu:
        KILN_TRY(kiln_attr_float(attrs, "alpha", 1.67326319217681884765625f, &p->alpha));
        return kiln_attr_float(attrs, "gamma", 1.05070102214813232421875f, &p->gamma);
    case KILN_OP_LeakyRelu: return kiln_attr_float(attrs, "alpha", 0.01f, &p->alpha);
    case KILN_OP_ThresholdedRelu: return kiln_attr_float(attrs, "alpha", 1.0f, &p->alpha);
    case KILN_OP_HardSigmoid:
        KILN_TRY(kiln_attr_float(attrs, "alpha", 0.2f, &p->alpha));
        return kiln_attr_float(attrs, "beta", 0.5f, &p->beta);
    case KILN_OP_Swish: return kiln_attr_float(attrs, "alpha", 1.0f, &p->alpha);
    case KILN_OP_Shrink:
        KILN_TRY(kiln_attr_float(attrs, "bias", 0.0f, &p->bias));
        return kiln_attr_float(attrs, "lambd", 0.5f, &p->lambd);
    case KILN_OP_Gelu: {
        char mode[16];
        KILN_TRY(kiln_attr_string(attrs, "approximate", "none", mode, sizeof mode));
        if (strcmp(mode, "tanh") == 0) p->gelu_tanh = true;
        else if (strcmp(mode, "none") != 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                                   "attribute approximate = '%s' (expected 'none' or 'tanh')", mode);
        return KILN_STATUS_OK;
    }
    default: return KILN_STATUS_OK;
    }
}

/* The dtypes each op accepts, from the ONNX spec. */
static unsigned act_classes(int op) {
    switch (op) {
    case KILN_OP_Relu: return MATH_T_FLOAT | MATH_T_SINT;
    case KILN_OP_Shrink: return MATH_T_NUM;
    default: return MATH_T_FLOAT;
    }
}

kiln_status kiln_infer_activation(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    bool prelu = node->op == KILN_OP_PRelu;
    KILN_TRY(kiln_node_check_arity(node, prelu ? 2 : 1, prelu ? 2 : 1));
    const kiln_tensor *x = in[0];
    if (!x) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input X is missing");
    if (math_dtype_pending(node, in)) {
        out[0].dtype = x->dtype;
        kiln_infer_unknown(node, out);
        return KILN_STATUS_OK;
    }
    bool prelu_int = prelu && (x->dtype == KILN_DTYPE_I32 || x->dtype == KILN_DTYPE_I64 ||
                               x->dtype == KILN_DTYPE_U32 || x->dtype == KILN_DTYPE_U64);
    if (!math_dtype_in(x->dtype, act_classes(node->op)) && !prelu_int) return kiln_node_bad_dtype(node, 0, x->dtype);
    out[0].dtype = x->dtype;
    math_copy_shape(&out[0], x);
    if (!prelu) return KILN_STATUS_OK;

    const kiln_tensor *slope = in[1];
    if (!slope) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "input slope is missing");
    if (slope->dtype != x->dtype) return kiln_node_bad_dtype(node, 1, slope->dtype);
    if (x->rank < 0 || slope->rank < 0) return KILN_STATUS_OK;
    /* slope must broadcast onto X without changing X's shape */
    kiln_tensor b = {0};
    KILN_TRY(math_broadcast_n(node, in, 2, &b));
    bool ok = b.rank == x->rank;
    for (int d = 0; ok && d < x->rank; d++)
        if (kiln_dim_known(x->dims[d]) && kiln_dim_known(b.dims[d]) && x->dims[d] != b.dims[d]) ok = false;
    if (!ok) {
        char s1[160], s2[160];
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "slope %s does not broadcast onto X %s",
                               kiln_dims_str(slope->rank, slope->dims, s1, sizeof s1),
                               kiln_dims_str(x->rank, x->dims, s2, sizeof s2));
    }
    for (int d = 0; d < x->rank; d++) /* X's unknown dims may be fixed by the slope */
        if (!kiln_dim_known(x->dims[d]) && kiln_dim_known(b.dims[d])) out[0].dims[d] = b.dims[d];
    return KILN_STATUS_OK;
}
