/* swiglu.c — reference kernel of SwiGLU (parse and infer in src/ops/swiglu.c), in double.
 * As in onnx's reference, the sigmoid, the gate A * sigmoid and the product are each rounded
 * to the dtype (this matters for f16 and bf16 only). Tested by the node tests test_swiglu*. */
#include "../../ops/reduce_internal.h"

kiln_status kiln_ref_swiglu(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_swiglu_params *p = node->params;
    const kiln_tensor *a = in[0], *b = in[1];
    kiln_dtype t = a->dtype;
    int64_t n = kiln_shape_count(a->rank, a->dims);
    for (int64_t i = 0; i < n; i++) {
        double x = kiln_load_f64(t, a->data, i);
        double sig = red_round_to(t, 1.0 / (1.0 + exp(-(double)p->alpha * x)));
        double gate = red_round_to(t, x * sig);
        red_store_f64(t, out[0].data, i, gate * kiln_load_f64(t, b->data, i));
    }
    return KILN_STATUS_OK;
}
