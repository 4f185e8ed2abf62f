/* einsum.c — reference kernel of Einsum (https://onnx.ai/onnx/operators/onnx__Einsum.html): one
 * loop over every combination of label values (src/ops/einsum.c builds the strides), adding the
 * product of the inputs' elements to the output element. Floats in double, integers exact
 * (wrap-around). Tested by test_einsum*. */
#include "../../ops/nn_internal.h"

kiln_status kiln_ref_einsum(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_einsum_plan *plan = kiln_malloc(sizeof *plan);
    if (!plan) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status s = kiln_einsum_make_plan(node, in, plan);
    if (s) {
        free(plan);
        return s;
    }
    int n_in = node->n_declared, L = 0;
    int labels[KILN_EINSUM_MAX_LABELS];
    int64_t dims[KILN_EINSUM_MAX_LABELS], idx[KILN_EINSUM_MAX_LABELS] = {0};
    bool empty = false;
    for (int l = 0; l < KILN_EINSUM_MAX_LABELS; l++) {
        bool used = plan->out_stride[l] != 0 || plan->size[l] != 1;
        for (int t = 0; t < n_in; t++) used |= plan->in_stride[t][l] != 0;
        if (!used) continue;
        labels[L] = l;
        dims[L++] = plan->size[l];
        empty |= plan->size[l] == 0;
    }
    int64_t total = kiln_shape_count(out[0].rank, out[0].dims);
    bool is_float = kiln_nn_is_float(out[0].dtype);
    double *acc = is_float ? kiln_nn_alloc_f64(total) : NULL;
    uint64_t *iacc = is_float ? NULL : kiln_calloc((size_t)(total ? total : 1), sizeof(uint64_t));
    if ((is_float && !acc) || (!is_float && !iacc)) {
        free(plan);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    while (!empty) {
        int64_t o = 0;
        for (int i = 0; i < L; i++) o += idx[i] * plan->out_stride[labels[i]];
        if (is_float) {
            double prod = 1;
            for (int t = 0; t < n_in; t++) {
                int64_t off = 0;
                for (int i = 0; i < L; i++) off += idx[i] * plan->in_stride[t][labels[i]];
                prod *= kiln_load_f64(in[t]->dtype, in[t]->data, off);
            }
            acc[o] += prod;
        } else {
            uint64_t prod = 1;
            for (int t = 0; t < n_in; t++) {
                int64_t off = 0;
                for (int i = 0; i < L; i++) off += idx[i] * plan->in_stride[t][labels[i]];
                prod *= (uint64_t)kiln_load_i64(in[t]->dtype, in[t]->data, off);
            }
            iacc[o] += prod;
        }
        if (!kiln_nn_next(L, dims, idx)) break;
    }
    if (is_float) kiln_nn_from_f64(&out[0], acc, total);
    else
        for (int64_t i = 0; i < total; i++) kiln_store_i64(out[0].dtype, out[0].data, i, (int64_t)iacc[i]);
    free(acc);
    free(iacc);
    free(plan);
    return KILN_STATUS_OK;
}
