/* variadic.c — reference kernels of Sum, Mean, Max and Min (parse and infer in
 * src/ops/variadic.c). Each output element folds the elements of all inputs that broadcast
 * onto it, in input order: floats in double, rounded once on store (Mean divides the sum by the
 * input count first); integers exactly, unsigned ones compared as unsigned. Max and Min
 * propagate NaN, as numpy.maximum/minimum do.
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
    return greater ? v : acc; /* Min */
}

kiln_status kiln_ref_variadic(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_tensor *y = &out[0];
    kiln_dtype dt = y->dtype;
    int rank = y->rank, n = node->n_declared;
    int64_t count = kiln_shape_count(rank, y->dims);
    bool is_float = kiln_dtype_is_float(dt), is_unsigned = math_is_unsigned(dt);

    /* strides[k * KILN_MAX_RANK + d]: input k's stride on output axis d (0 where it broadcasts);
     * off[k]: input k's element under output element i; idx: i as a multi-index. */
    int64_t *strides = kiln_calloc((size_t)n * (KILN_MAX_RANK + 1), sizeof(int64_t));
    if (!strides) return kiln_node_error(node, KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    int64_t *off = strides + (size_t)n * KILN_MAX_RANK, idx[KILN_MAX_RANK] = {0};
    for (int k = 0; k < n; k++)
        kiln_broadcast_strides(in[k]->rank, in[k]->dims, rank, y->dims, strides + k * KILN_MAX_RANK);

    for (int64_t i = 0; i < count; i++) {
        if (is_float) {
            double acc = kiln_load_f64(dt, in[0]->data, off[0]);
            for (int k = 1; k < n; k++) acc = fold_f64(node->op, acc, kiln_load_f64(dt, in[k]->data, off[k]));
            math_store_f64(dt, y->data, i, node->op == KILN_OP_Mean ? acc / n : acc);
        } else {
            int64_t acc = kiln_load_i64(dt, in[0]->data, off[0]);
            for (int k = 1; k < n; k++) acc = fold_int(node->op, is_unsigned, acc, kiln_load_i64(dt, in[k]->data, off[k]));
            kiln_store_i64(dt, y->data, i, acc);
        }
        for (int d = rank - 1; d >= 0; d--) { /* next output element */
            idx[d]++;
            for (int k = 0; k < n; k++) off[k] += strides[k * KILN_MAX_RANK + d];
            if (idx[d] < y->dims[d]) break;
            for (int k = 0; k < n; k++) off[k] -= strides[k * KILN_MAX_RANK + d] * y->dims[d];
            idx[d] = 0;
        }
    }
    free(strides);
    return KILN_STATUS_OK;
}
