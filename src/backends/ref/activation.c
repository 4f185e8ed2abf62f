/* activation.c — reference kernels of the activations (parse and infer in
 * src/ops/activation.c). Floats are computed in double from the formulas of the ONNX spec
 * (the numerically stable forms for Sigmoid and Softplus) and rounded once on store. Integer
 * Relu and PRelu are exact; integer Shrink goes through double and truncates, as numpy does.
 * Tested by the node tests of the ops listed under "activation" in src/ops/ops_math.def. */
#include "../../ops/math_internal.h"

static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* log(1 + exp(x)) without overflow */
static double softplus(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }

/* max and min that propagate NaN, as numpy.maximum/minimum do (fmax/fmin drop it) */
static double max_nan(double a, double b) { return isnan(a) || a > b ? a : b; }
static double min_nan(double a, double b) { return isnan(a) || a < b ? a : b; }

static double act_f64(int op, const math_act_params *p, double x) {
    switch (op) {
    case KILN_OP_Relu: return x < 0 ? 0.0 : x;
    case KILN_OP_Sigmoid: return sigmoid(x);
    case KILN_OP_Softplus: return softplus(x);
    case KILN_OP_Softsign: return x / (1.0 + fabs(x));
    case KILN_OP_HardSigmoid: return max_nan(0.0, min_nan(1.0, p->alpha * x + p->beta));
    case KILN_OP_HardSwish: return x * max_nan(0.0, min_nan(1.0, x / 6.0 + 0.5));
    case KILN_OP_Elu: return x > 0 ? x : p->alpha * expm1(x);
    case KILN_OP_Selu: return p->gamma * (x > 0 ? x : p->alpha * expm1(x));
    case KILN_OP_Celu: return max_nan(0.0, x) + min_nan(0.0, p->alpha * expm1(x / p->alpha));
    case KILN_OP_LeakyRelu: return x < 0 ? p->alpha * x : x;
    case KILN_OP_ThresholdedRelu: return x > p->alpha ? x : 0.0;
    case KILN_OP_Mish: return x * tanh(softplus(x));
    case KILN_OP_Gelu:
        if (p->gelu_tanh) {
            const double k = 0.79788456080286535588; /* sqrt(2 / pi) */
            return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
        }
        return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440)); /* erf(x / sqrt(2)) */
    case KILN_OP_Shrink: return x < -p->lambd ? x + p->bias : x > p->lambd ? x - p->bias : 0.0;
    case KILN_OP_Swish: return x * sigmoid(p->alpha * x);
    default: KILN_ASSERT(!"act_f64: unknown op"); return 0;
    }
}

/* PRelu: y = x < 0 ? slope * x : x, slope broadcast onto x. */
static kiln_status ref_prelu(const kiln_tensor *x, const kiln_tensor *slope, kiln_tensor *y) {
    kiln_dtype dt = x->dtype;
    const kiln_tensor *ins[2] = {x, slope};
    math_bcast it;
    math_bcast_init(&it, y, 2, ins);
    int64_t n = kiln_shape_count(y->rank, y->dims);
    bool is_float = kiln_dtype_is_float(dt);
    for (int64_t i = 0; i < n; i++, math_bcast_next(&it)) {
        if (is_float) {
            double v = kiln_load_f64(dt, x->data, it.off[0]);
            math_store_f64(dt, y->data, i, v < 0 ? kiln_load_f64(dt, slope->data, it.off[1]) * v : v);
        } else {
            int64_t v = kiln_load_i64(dt, x->data, it.off[0]);
            uint64_t s = math_load_u64(dt, slope->data, it.off[1]);
            bool neg = !math_is_unsigned(dt) && v < 0;
            kiln_store_i64(dt, y->data, i, neg ? (int64_t)(s * (uint64_t)v) : v);
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_activation(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    kiln_tensor *y = &out[0];
    if (node->op == KILN_OP_PRelu) return ref_prelu(x, in[1], y);
    const math_act_params *p = node->params;
    kiln_dtype dt = x->dtype;
    int64_t n = kiln_shape_count(x->rank, x->dims);
    if (node->op == KILN_OP_Relu && !kiln_dtype_is_float(dt)) {
        for (int64_t i = 0; i < n; i++) {
            int64_t v = kiln_load_i64(dt, x->data, i);
            kiln_store_i64(dt, y->data, i, v < 0 ? 0 : v);
        }
        return KILN_STATUS_OK;
    }
    if (dt == KILN_DTYPE_F32) { /* the common case, without the per-element dtype switch */
        const float *px = x->data;
        float *py = y->data;
        for (int64_t i = 0; i < n; i++) py[i] = (float)act_f64(node->op, p, px[i]);
        return KILN_STATUS_OK;
    }
    for (int64_t i = 0; i < n; i++)
        math_store_f64(dt, y->data, i, act_f64(node->op, p, kiln_load_f64(dt, x->data, i)));
    return KILN_STATUS_OK;
}
