/* elementwise_fused.c — GPU entry of kiln.FusedElementwise (src/ops/fused_ew.c): one launch of
 * kiln_ew_fused (elementwise_fused.cu) per node, operands described as broadcast views over
 * the output with dims merged (kiln_ew_views). Semantics are the reference's
 * (src/backends/ref/fused_ew.c: float32 steps of src/ops/ew_program.h, one rounding at the end).
 * Tested against the reference backend by tests/gpu/test_gpu_ops.py (the ew_* cases of
 * tests/op_cases.py, which CUDA builds fuse). */
#include "elementwise_host.h"
#include "kernels_ew_fused.h"

_Static_assert(KILN_EWP_MAX_IN <= KILN_EW_MAX_IN, "kiln_ew_views takes KILN_EW_MAX_IN operands");

static const char *supports_fused(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out) {
    const kiln_ewp *p = n->params;
    if (!p) return "no program";
    if (p->n_in < 1 || p->n_in > KILN_EWP_MAX_IN || p->n_in != n->n_declared) return "input count outside 1..4";
    if (p->n_regs > KILN_EWP_MAX_REGS || p->n_ops < 1 || p->n_ops > KILN_EWP_MAX_OPS) return "program too large";
    kiln_dtype dt = out[0].dtype;
    if (dt != KILN_DTYPE_F32 && dt != KILN_DTYPE_F16 && dt != KILN_DTYPE_BF16) return "dtype other than f32, f16, bf16";
    for (int i = 0; i < n->n_declared; i++) {
        if (!in[i]) return "an omitted input";
        if (in[i]->dtype != dt) return "inputs of another dtype than the output";
        if (in[i]->rank > KILN_CUDA_MAX_RANK || out[0].rank > KILN_CUDA_MAX_RANK) return "rank above 8";
    }
    return NULL;
}

static kiln_status run_fused(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_ewp *p = n->params;
    kiln_tensor *y = &out[0];
    if (kiln_shape_count(y->rank, y->dims) <= 0) return KILN_STATUS_OK;
    const kiln_tensor *ins[KILN_EWP_MAX_IN];
    const void *x[KILN_EWP_MAX_IN];
    kiln_cuda_view v[KILN_EWP_MAX_IN];
    for (int k = 0; k < p->n_in; k++) {
        ins[k] = in[k];
        x[k] = in[k]->data;
    }
    kiln_ew_views(y, ins, p->n_in, v);
    return kiln_cuda_check(kiln_ew_fused(kiln_cuda_ctype(y->dtype), p, x, v, y->data, r->stream), n, "fused elementwise kernel");
}

void kiln_cuda_register_elementwise_fused(kiln_cuda_op *table) {
    kiln_ew_set(table, KILN_OP_FusedElementwise, supports_fused, run_fused, 0);
    table[KILN_OP_FusedElementwise].kernel = "ew_fused";
}
