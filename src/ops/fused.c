/* fused.c — parse and shape inference of kiln's internal fused ops (ops_fused.def).
 * FusedMatMul(A, B, bias) = MatMul(A, B) + bias, where bias is 1-D with the length N of the
 * output's last axis (B has rank >= 2); the node's fused activation (node->act) is applied
 * after, as for every producer. MatMul's own parse/infer do the product: they are called on a
 * copy of the node whose op is MatMul. Made by src/passes/act_fuse.c; kernel in
 * src/backends/ref/fused.c. Tested by tests/models/test_passes.py (matmul_bias cases). */
#include "op.h"

/* The node as the MatMul it extends: same name and params, two inputs. */
static kiln_node as_matmul(const kiln_node *node) {
    kiln_node m = *node;
    m.op = KILN_OP_MatMul;
    m.n_inputs = m.n_declared = node->n_declared < 2 ? node->n_declared : 2;
    m.n_outputs = 1;
    return m;
}

kiln_status kiln_parse_fused(kiln_node *node, kiln_attrs *attrs) {
    kiln_node m = as_matmul(node);
    m.params = NULL;
    m.params_free = NULL;
    KILN_TRY(kiln_op_table[KILN_OP_MatMul].parse(&m, attrs));
    node->params = m.params;
    node->params_free = m.params_free;
    return KILN_STATUS_OK;
}

kiln_status kiln_infer_fused(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    KILN_TRY(kiln_node_check_arity(node, 3, 3));
    if (node->n_outputs != 1) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "has %d outputs, expected 1", node->n_outputs);
    if (!in[0] || !in[1] || !in[2]) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "A, B and bias are all required");
    kiln_node m = as_matmul(node);
    KILN_TRY(kiln_op_table[KILN_OP_MatMul].infer(&m, in, out));
    const kiln_tensor *b = in[1], *bias = in[2];
    if (!kiln_dtype_is_float(in[0]->dtype)) return kiln_node_bad_dtype(node, 0, in[0]->dtype);
    if (bias->dtype != in[0]->dtype) return kiln_node_bad_dtype(node, 2, bias->dtype);
    if (b->rank >= 0 && b->rank < 2) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "B must have rank >= 2");
    if (bias->rank >= 0 && bias->rank != 1) return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "bias must be 1-D");
    if (out[0].rank > 0 && bias->rank == 1 && kiln_dim_known(bias->dims[0]) && kiln_dim_known(out[0].dims[out[0].rank - 1]) &&
        bias->dims[0] != out[0].dims[out[0].rank - 1])
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "bias has %lld elements, the output's last axis %lld",
                               (long long)bias->dims[0], (long long)out[0].dims[out[0].rank - 1]);
    return KILN_STATUS_OK;
}
