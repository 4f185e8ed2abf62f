/* variadic.c — reference kernels of Sum, Mean, Max and Min (parse and infer in
 * src/ops/variadic.c). The output starts as input 0 broadcast to it, then each further input is
 * folded in, element by element, rounding to the dtype after each step as numpy's chain of
 * binary ops does; Mean divides the sum by the input count at the end. Max and Min propagate
 * NaN (numpy.maximum/minimum) and compare integers exactly, unsigned ones as unsigned.
 * Tested by the node tests test_sum_*, test_mean_*, test_max_*, test_min_*. */
#include "../../ops/math_internal.h"

static double fold_f64(int op, double acc, double v) {
    switch (op) {
    case KILN_OP_Max: return isnan(acc) || acc > v ? acc : v;
    case KILN_OP_Min: return isnan(acc) || acc < v ? acc : v;
    default: return acc + v; /* Sum, Mean */
    }
}

static int64_t fold_int(int op, bool is_unsigned, int64_t acc, int64_t v) {
    bool greater = is_unsigned ? (uint64_t)acc > (uint64_t)v : acc > v;
    if (op == KILN_OP_Max) return greater ? acc : v;
    return greater || acc == v ? v : acc; /* Min */
}

kiln_status kiln_ref_variadic(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_tensor *y = &out[0];
    kiln_dtype dt = y->dtype;
    int64_t count = kiln_shape_count(y->rank, y->dims);
    bool is_float = kiln_dtype_is_float(dt), is_unsigned = math_is_unsigned(dt);
    size_t esize = kiln_dtype_size(dt);
    int n = node->n_declared;

    /* y = input 0 broadcast */
    const kiln_tensor *first[1] = {in[0]};
    math_bcast it;
    math_bcast_init(&it, y, 1, first);
    for (int64_t i = 0; i < count; i++, math_bcast_next(&it))
        memcpy((char *)y->data + i * esize, (const char *)in[0]->data + it.off[0] * esize, esize);

    for (int k = 1; k < n; k++) {
        const kiln_tensor *x[1] = {in[k]};
        math_bcast_init(&it, y, 1, x);
        for (int64_t i = 0; i < count; i++, math_bcast_next(&it)) {
            if (is_float) {
                double acc = kiln_load_f64(dt, y->data, i), v = kiln_load_f64(dt, in[k]->data, it.off[0]);
                math_store_f64(dt, y->data, i, fold_f64(node->op, acc, v));
            } else {
                int64_t acc = kiln_load_i64(dt, y->data, i), v = kiln_load_i64(dt, in[k]->data, it.off[0]);
                kiln_store_i64(dt, y->data, i, fold_int(node->op, is_unsigned, acc, v));
            }
        }
    }
    if (node->op == KILN_OP_Mean)
        for (int64_t i = 0; i < count; i++) math_store_f64(dt, y->data, i, kiln_load_f64(dt, y->data, i) / n);
    return KILN_STATUS_OK;
}
