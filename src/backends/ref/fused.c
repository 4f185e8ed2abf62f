/* fused.c — reference kernels of kiln's internal fused ops (src/ops/ops_fused.def).
 * FusedMatMul: MatMul's reference kernel, then bias[j] added along the last axis, in double
 * and stored once (what MatMul followed by Add computes). The executor applies node->act
 * after. Tested by tests/models/test_passes.py. */
#include "../../ops/op.h"

kiln_status kiln_ref_fused(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    kiln_node m = *node;
    m.op = KILN_OP_MatMul;
    m.n_inputs = m.n_declared = 2;
    KILN_TRY(kiln_op_table[KILN_OP_MatMul].ref(&m, in, out));
    const kiln_tensor *bias = in[2];
    kiln_tensor *y = &out[0];
    int64_t n = kiln_shape_count(y->rank, y->dims), cols = y->rank > 0 ? y->dims[y->rank - 1] : 1;
    if (n <= 0 || cols <= 0) return KILN_STATUS_OK;
    for (int64_t i = 0; i < n; i++) {
        double v = kiln_load_f64(y->dtype, y->data, i) + kiln_load_f64(bias->dtype, bias->data, i % cols);
        kiln_store_f64(y->dtype, y->data, i, v);
    }
    return KILN_STATUS_OK;
}
