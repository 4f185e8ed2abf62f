/* elementwise.c — plain-C element-wise kernels (with or without oneDNN):
 *   Pow of a float32 tensor by a constant exponent 2 (x * x: the variance and RMSNorm pattern of
 *   exported transformers), one float32 product per element, which is the reference's double
 *   pow rounded to float32 (the exact square of a float fits in a double). Other exponents go to
 *   the reference kernel (powf is not correctly rounded).
 *   RMSNormalization of float32 rows with a Scale of the row's length (what layernorm_fuse makes
 *   of an exported RMSNorm): the mean square in double as the reference kernel, the row scaled
 *   in float.
 * Tested by tests/models/test_cpu_kernels.py (Pow: family norm_eltwise; RMSNormalization: family
 * attention, opset 23) and the node tests test_pow*, test_rms_normalization*. */
#include "cpu_backend.h"

#include "../../ops/nn_internal.h"

#include <math.h>

static bool pow2_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    if (n->n_declared != 2 || !in[0] || !in[1] || in[0]->dtype != KILN_DTYPE_F32 || out->dtype != KILN_DTYPE_F32) return false;
    const kiln_tensor *e = in[1];
    if (!(e->flags & KILN_TENSOR_CONSTANT) || !e->data || kiln_shape_count(e->rank, e->dims) != 1) return false;
    return kiln_load_f64(e->dtype, e->data, 0) == 2.0 && n->act.kind == KILN_ACT_NONE;
}

static kiln_status pow2_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                            kiln_tensor *out) {
    (void)state, (void)state_free;
    const float *x = in[0]->data;
    float *y = out[0].data;
    int64_t count = kiln_shape_count(out[0].rank, out[0].dims);
    if (kiln_shape_count(in[0]->rank, in[0]->dims) != count) return KILN_STATUS_UNSUPPORTED; /* the exponent broadcasts x */
    for (int64_t i = 0; i < count; i++) y[i] = x[i] * x[i];
    kiln_cpu_report(n, &out[0], "cpu");
    return KILN_STATUS_OK;
}

/* The axis needs no check here: shape inference refuses a bad one before any run. */
static bool rms_supports(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    return n->n_declared == 2 && n->n_outputs == 1 && in[0] && in[1] && in[0]->dtype == KILN_DTYPE_F32 &&
           in[1]->dtype == KILN_DTYPE_F32 && out->dtype == KILN_DTYPE_F32 && in[0]->rank >= 1 && n->act.kind == KILN_ACT_NONE;
}

static kiln_status rms_run(const kiln_node *n, void **state, void (**state_free)(void *), kiln_tensor *const *in,
                           kiln_tensor *out) {
    (void)state, (void)state_free;
    const kiln_norm_params *p = n->params;
    const kiln_tensor *X = in[0], *S = in[1];
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, X->rank, &axis));
    int64_t rows = kiln_nn_prod(X->dims, 0, axis), cols = kiln_nn_prod(X->dims, axis, X->rank);
    if (kiln_shape_count(S->rank, S->dims) != cols) return KILN_STATUS_UNSUPPORTED; /* Scale broadcasts: the reference */
    const float *x = X->data, *sc = S->data;
    float *y = out[0].data;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        double ss = 0;
        for (int64_t j = 0; j < cols; j++) ss += (double)xr[j] * xr[j];
        float inv = (float)(1.0 / sqrt(ss / (double)cols + p->epsilon));
        for (int64_t j = 0; j < cols; j++) yr[j] = xr[j] * inv * sc[j];
    }
    kiln_cpu_report(n, &out[0], "cpu");
    return KILN_STATUS_OK;
}

void kiln_cpu_register_elementwise(kiln_cpu_op *table) {
    table[KILN_OP_RMSNormalization] = (kiln_cpu_op){.supports = rms_supports, .run = rms_run, .kernel = "cpu"};
    table[KILN_OP_Pow] = (kiln_cpu_op){.supports = pow2_supports, .run = pow2_run, .kernel = "cpu"};
}
