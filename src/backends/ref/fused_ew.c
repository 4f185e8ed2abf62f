/* fused_ew.c — reference kernel of kiln.FusedElementwise (parse and infer in
 * src/ops/fused_ew.c; the program's steps in src/ops/ew_program.h).
 *
 * Per output element: each input's broadcast element is loaded as float32 into its register,
 * the steps run in float32 (kiln_ewp_apply), and the result is rounded once to the output's
 * dtype. For f32 engines this is what the unfused nodes compute up to float32 rounding of the
 * intermediates (the unfused reference kernels work in double and round each result to f32).
 * For f16/bf16 engines it is slightly *more* accurate than the unfused chain, which rounds every
 * intermediate value to 16 bits; fused and unfused 16-bit engines therefore differ by about one
 * 16-bit rounding per step, and the fused one is the closer to the float32 model.
 * Tested by tests/models/test_passes.py (ew_fuse cases, against ONNX Runtime too). */
#include "../../ops/ew_program.h"
#include "../../ops/op.h"

#include <string.h>

kiln_status kiln_ref_fused_ew(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_ewp *p = node->params;
    kiln_tensor *y = &out[0];
    int64_t n = kiln_shape_count(y->rank, y->dims);
    if (n <= 0) return KILN_STATUS_OK;
    int rank = y->rank;
    int64_t strides[KILN_EWP_MAX_IN][KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, off[KILN_EWP_MAX_IN] = {0};
    for (int k = 0; k < p->n_in; k++) kiln_broadcast_strides(in[k]->rank, in[k]->dims, rank, y->dims, strides[k]);
    float r[KILN_EWP_MAX_REGS] = {0};
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < p->n_in; k++) r[k] = (float)kiln_load_f64(in[k]->dtype, in[k]->data, off[k]);
        for (int s = 0; s < p->n_ops; s++) {
            const kiln_ewp_step *st = &p->ops[s];
            r[st->dst] = kiln_ewp_apply(st->code, r[st->a], r[st->b], st->alpha, st->beta);
        }
        kiln_store_f64(y->dtype, y->data, i, (double)r[p->out]); /* a float is exact in double: one rounding */
        for (int d = rank - 1; d >= 0; d--) { /* next output index, row-major, and the inputs' offsets */
            idx[d]++;
            for (int k = 0; k < p->n_in; k++) off[k] += strides[k][d];
            if (idx[d] < y->dims[d]) break;
            for (int k = 0; k < p->n_in; k++) off[k] -= strides[k][d] * y->dims[d];
            idx[d] = 0;
        }
    }
    return KILN_STATUS_OK;
}
