/* random.c — parse and shape inference of the random generators:
 *   RandomNormal, RandomUniform           https://onnx.ai/onnx/operators/onnx__RandomNormal.html
 *   RandomNormalLike, RandomUniformLike   https://onnx.ai/onnx/operators/onnx__RandomUniformLike.html
 *   Bernoulli                             https://onnx.ai/onnx/operators/onnx__Bernoulli.html
 *   Multinomial                           https://onnx.ai/onnx/operators/onnx__Multinomial.html
 * The generator itself (xoshiro256**, documented there) is in src/backends/ref/random.c. Their
 * node tests (test_bernoulli*) compare values drawn by numpy, which no other generator can
 * reproduce: they are expected to fail on values while shapes and dtypes match. */
#include "seq_internal.h"

static bool is_float(kiln_dtype t) { return kiln_dtype_is_float(t); }

kiln_status kiln_parse_random(kiln_node *node, kiln_attrs *attrs) {
    seq_random_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    int op = node->op;
    bool like = op == KILN_OP_RandomNormalLike || op == KILN_OP_RandomUniformLike || op == KILN_OP_Bernoulli;
    int64_t dtype;
    int64_t def_dtype = like ? 0 : op == KILN_OP_Multinomial ? KILN_DTYPE_I32 : KILN_DTYPE_F32;
    KILN_TRY(kiln_attr_int(attrs, "dtype", def_dtype, &dtype));
    p->has_seed = kiln_attr_has(attrs, "seed");
    KILN_TRY(kiln_attr_float(attrs, "seed", 0.0f, &p->seed));
    if (dtype && !seq_dtype_known(dtype))
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "attribute dtype = %s (%lld) is not supported",
                               seq_onnx_dtype_name(dtype), (long long)dtype);
    p->dtype = (kiln_dtype)dtype;
    if (op == KILN_OP_RandomNormal || op == KILN_OP_RandomNormalLike) {
        KILN_TRY(kiln_attr_float(attrs, "mean", 0.0f, &p->mean));
        KILN_TRY(kiln_attr_float(attrs, "scale", 1.0f, &p->scale));
    }
    if (op == KILN_OP_RandomUniform || op == KILN_OP_RandomUniformLike) {
        KILN_TRY(kiln_attr_float(attrs, "low", 0.0f, &p->low));
        KILN_TRY(kiln_attr_float(attrs, "high", 1.0f, &p->high));
    }
    if (op == KILN_OP_RandomNormal || op == KILN_OP_RandomUniform) {
        if (!kiln_attr_has(attrs, "shape"))
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute shape is missing");
        KILN_TRY(kiln_attr_ints_fixed(attrs, "shape", p->shape, KILN_MAX_RANK, &p->rank));
        for (int i = 0; i < p->rank; i++)
            if (p->shape[i] < 0)
                return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute shape has a negative dim %lld",
                                       (long long)p->shape[i]);
    }
    if (op == KILN_OP_Multinomial) {
        KILN_TRY(kiln_attr_int(attrs, "sample_size", 1, &p->sample_size));
        if (p->sample_size < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute sample_size = %lld is negative",
                                   (long long)p->sample_size);
        if (p->dtype != KILN_DTYPE_I32 && p->dtype != KILN_DTYPE_I64)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute dtype = %s must be int32 or int64",
                                   kiln_dtype_name(p->dtype));
    } else if (p->dtype && op != KILN_OP_Bernoulli && !is_float(p->dtype)) {
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute dtype = %s is not a float type",
                               kiln_dtype_name(p->dtype));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_random(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_random_params *p = node->params;
    switch (node->op) {
    case KILN_OP_RandomNormal:
    case KILN_OP_RandomUniform:
        KILN_TRY(kiln_node_check_arity(node, 0, 0));
        out[0].dtype = p->dtype;
        out[0].rank = p->rank;
        for (int i = 0; i < p->rank; i++) out[0].dims[i] = p->shape[i];
        return KILN_STATUS_OK;
    case KILN_OP_Multinomial: {
        KILN_TRY(kiln_node_check_arity(node, 1, 1));
        const kiln_tensor *x = in[0];
        if (!is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
        out[0].dtype = p->dtype;
        out[0].rank = 2;
        if (x->rank >= 0 && x->rank != 2) {
            char s[160];
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input %s must be (batch, classes)",
                                   kiln_dims_str(x->rank, x->dims, s, sizeof s));
        }
        out[0].dims[0] = x->rank == 2 ? x->dims[0] : KILN_DIM_UNKNOWN;
        out[0].dims[1] = p->sample_size;
        return KILN_STATUS_OK;
    }
    default: { /* the *Like ops and Bernoulli: the input's shape */
        KILN_TRY(kiln_node_check_arity(node, 1, 1));
        const kiln_tensor *x = in[0];
        if (node->op == KILN_OP_Bernoulli && !is_float(x->dtype)) return kiln_node_bad_dtype(node, 0, x->dtype);
        if (x->dtype == KILN_DTYPE_STRING) return kiln_node_bad_dtype(node, 0, x->dtype);
        kiln_dtype t = p->dtype ? p->dtype : x->dtype;
        if (node->op != KILN_OP_Bernoulli && !is_float(t))
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL,
                                   "output dtype %s (from the input) is not a float type; set attribute dtype",
                                   kiln_dtype_name(t));
        out[0].dtype = t;
        out[0].rank = x->rank;
        for (int i = 0; i < x->rank; i++) out[0].dims[i] = x->dims[i];
        return KILN_STATUS_OK;
    }
    }
}
