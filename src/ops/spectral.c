/* spectral.c — parse and shape inference of the window functions and the mel filter bank:
 *   HannWindow, HammingWindow, BlackmanWindow  https://onnx.ai/onnx/operators/onnx__HannWindow.html
 *   MelWeightMatrix                            https://onnx.ai/onnx/operators/onnx__MelWeightMatrix.html
 * Their output shapes depend on input values (size; dft_length and num_mel_bins), so they are
 * only known when those inputs are constants. Kernels: src/backends/ref/spectral.c.
 * Tested by test_hannwindow*, test_hammingwindow*, test_blackmanwindow*, test_melweightmatrix. */
#include "seq_internal.h"

kiln_status kiln_parse_spectral(kiln_node *node, kiln_attrs *attrs) {
    seq_spectral_params *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    node->params = p;
    int64_t dt, periodic = 1;
    KILN_TRY(kiln_attr_int(attrs, "output_datatype", KILN_DTYPE_F32, &dt));
    if (node->op != KILN_OP_MelWeightMatrix) KILN_TRY(kiln_attr_int(attrs, "periodic", 1, &periodic));
    if (!seq_dtype_known(dt) || dt == KILN_DTYPE_BOOL)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "attribute output_datatype = %s (%lld) is not supported",
                               seq_onnx_dtype_name(dt), (long long)dt);
    p->out_dtype = (kiln_dtype)dt;
    p->periodic = periodic != 0;
    return KILN_STATUS_OK;
}

static bool is_i32_64(kiln_dtype t) { return t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64; }

/* A known scalar integer input i, or *known = false when its data is not known yet. */
static kiln_status int_input(const kiln_node *node, kiln_tensor *const *in, int i, const char *what, int64_t *v,
                             bool *known) {
    if (!is_i32_64(in[i]->dtype)) return kiln_node_bad_dtype(node, i, in[i]->dtype);
    if (!in[i]->data || in[i]->rank < 0) {
        *known = false;
        return KILN_STATUS_OK;
    }
    KILN_TRY(seq_scalar_i64(node, in[i], what, v));
    if (*v < 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s = %lld is negative", what, (long long)*v);
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_spectral(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_spectral_params *p = node->params;
    out[0].dtype = p->out_dtype;
    bool known = true;
    if (node->op != KILN_OP_MelWeightMatrix) {
        KILN_TRY(kiln_node_check_arity(node, 1, 1));
        int64_t size = 0;
        KILN_TRY(int_input(node, in, 0, "size", &size, &known));
        out[0].rank = 1;
        out[0].dims[0] = known ? size : KILN_DIM_UNKNOWN;
        return KILN_STATUS_OK;
    }
    KILN_TRY(kiln_node_check_arity(node, 5, 5));
    int64_t bins = 0, dft = 0, rate = 0;
    KILN_TRY(int_input(node, in, 0, "num_mel_bins", &bins, &known));
    bool dft_known = true;
    KILN_TRY(int_input(node, in, 1, "dft_length", &dft, &dft_known));
    bool rate_known = true;
    KILN_TRY(int_input(node, in, 2, "sample_rate", &rate, &rate_known));
    if (rate_known && rate == 0) return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "sample_rate is 0");
    for (int i = 3; i < 5; i++)
        if (!kiln_dtype_is_float(in[i]->dtype)) return kiln_node_bad_dtype(node, i, in[i]->dtype);
    out[0].rank = 2;
    out[0].dims[0] = dft_known ? dft / 2 + 1 : KILN_DIM_UNKNOWN;
    out[0].dims[1] = known ? bins : KILN_DIM_UNKNOWN;
    return KILN_STATUS_OK;
}
