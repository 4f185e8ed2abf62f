/* batch_norm.c — reference kernels of BatchNormalization
 * (https://onnx.ai/onnx/operators/onnx__BatchNormalization.html) and InstanceNormalization
 * (https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html), in double.
 * BatchNormalization: Y = scale * (X - mean) / sqrt(var + epsilon) + B per channel, with the
 * given statistics, or in training mode with the batch's (population variance), also returning
 * running stats input * momentum + batch * (1 - momentum). InstanceNormalization: the same with
 * the statistics of each (n, c) plane. Tested by test_batchnorm*, test_instancenorm*. */
#include "../../ops/nn_internal.h"

#include <math.h>

static kiln_status instance_norm(const kiln_norm_params *p, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *X = in[0];
    int64_t N = X->dims[0], C = X->dims[1], S = kiln_nn_prod(X->dims, 2, X->rank);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            int64_t base = (n * C + c) * S;
            double mean = 0, var = 0;
            for (int64_t i = 0; i < S; i++) mean += kiln_load_f64(X->dtype, X->data, base + i);
            mean /= (double)S;
            for (int64_t i = 0; i < S; i++) {
                double d = kiln_load_f64(X->dtype, X->data, base + i) - mean;
                var += d * d;
            }
            var /= (double)S;
            double sc = kiln_load_f64(in[1]->dtype, in[1]->data, c) / sqrt(var + p->epsilon);
            double b = kiln_load_f64(in[2]->dtype, in[2]->data, c);
            for (int64_t i = 0; i < S; i++)
                kiln_store_f64(out[0].dtype, out[0].data, base + i,
                               (kiln_load_f64(X->dtype, X->data, base + i) - mean) * sc + b);
        }
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_batch_norm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_norm_params *p = node->params;
    if (node->op == KILN_OP_InstanceNormalization) return instance_norm(p, in, out);
    const kiln_tensor *X = in[0];
    int64_t N = X->dims[0];
    /* params index c in [0, P); each (n, c) covers `inner` consecutive elements */
    int64_t P = p->per_activation ? kiln_nn_prod(X->dims, 1, X->rank) : X->dims[1];
    int64_t inner = p->per_activation ? 1 : kiln_nn_prod(X->dims, 2, X->rank);
    for (int64_t c = 0; c < P; c++) {
        double mean = kiln_load_f64(in[3]->dtype, in[3]->data, c);
        double var = kiln_load_f64(in[4]->dtype, in[4]->data, c);
        if (p->training) {
            double bm = 0, bv = 0, cnt = (double)(N * inner);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < inner; i++) bm += kiln_load_f64(X->dtype, X->data, (n * P + c) * inner + i);
            bm /= cnt;
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < inner; i++) {
                    double d = kiln_load_f64(X->dtype, X->data, (n * P + c) * inner + i) - bm;
                    bv += d * d;
                }
            bv /= cnt;
            if (node->n_outputs > 1 && out[1].data)
                kiln_store_f64(out[1].dtype, out[1].data, c, mean * p->momentum + bm * (1 - p->momentum));
            if (node->n_outputs > 2 && out[2].data)
                kiln_store_f64(out[2].dtype, out[2].data, c, var * p->momentum + bv * (1 - p->momentum));
            mean = bm;
            var = bv;
        }
        double sc = kiln_load_f64(in[1]->dtype, in[1]->data, c) / sqrt(var + p->epsilon);
        double b = kiln_load_f64(in[2]->dtype, in[2]->data, c);
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t k = (n * P + c) * inner + i;
                kiln_store_f64(out[0].dtype, out[0].data, k, (kiln_load_f64(X->dtype, X->data, k) - mean) * sc + b);
            }
    }
    return KILN_STATUS_OK;
}
