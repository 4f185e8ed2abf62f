/* act.c — the activations that passes fold into the node before them (kiln_act in graph.h):
 * names, the scalar definition, and the in-place application the reference executor uses. */
#include "graph.h"

#include <math.h>
#include <string.h>

static const char *const act_names[KILN_ACT_COUNT] = {
    [KILN_ACT_NONE] = "none",       [KILN_ACT_RELU] = "Relu",         [KILN_ACT_CLIP] = "Clip",
    [KILN_ACT_SIGMOID] = "Sigmoid", [KILN_ACT_SILU] = "SiLU",         [KILN_ACT_HARDSWISH] = "HardSwish",
    [KILN_ACT_GELU] = "Gelu",       [KILN_ACT_GELU_TANH] = "GeluTanh", [KILN_ACT_LEAKY_RELU] = "LeakyRelu",
    [KILN_ACT_TANH] = "Tanh",
};

const char *kiln_act_name(kiln_act_kind k) { return k >= 0 && k < KILN_ACT_COUNT ? act_names[k] : "?"; }

int kiln_act_find(const char *name) {
    for (int k = 0; k < KILN_ACT_COUNT; k++)
        if (strcmp(act_names[k], name) == 0) return k;
    return -1;
}

double kiln_act_eval(const kiln_act *a, double x) {
    switch (a->kind) {
    case KILN_ACT_NONE: return x;
    case KILN_ACT_RELU: return x > 0 ? x : 0;
    case KILN_ACT_CLIP: return x < a->alpha ? a->alpha : x > a->beta ? a->beta : x;
    case KILN_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case KILN_ACT_SILU: return x / (1.0 + exp(-x));
    case KILN_ACT_HARDSWISH: return x * fmax(0.0, fmin(1.0, x / 6.0 + 0.5));
    case KILN_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case KILN_ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case KILN_ACT_LEAKY_RELU: return x >= 0 ? x : a->alpha * x;
    case KILN_ACT_TANH: return tanh(x);
    case KILN_ACT_COUNT: break;
    }
    return x;
}

void kiln_act_apply(const kiln_act *a, kiln_tensor *t) {
    if (a->kind == KILN_ACT_NONE || !kiln_dtype_is_float(t->dtype)) return;
    int64_t n = kiln_shape_count(t->rank, t->dims);
    for (int64_t i = 0; i < n; i++) kiln_store_f64(t->dtype, t->data, i, kiln_act_eval(a, kiln_load_f64(t->dtype, t->data, i)));
}
