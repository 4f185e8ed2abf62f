/* kernels_ew_fused.h — the launcher of kiln.FusedElementwise's kernel (elementwise_fused.cu),
 * called by elementwise_fused.c. The program (src/ops/ew_program.h) is plain C, as kernels.h's
 * structs are. */
#ifndef KILN_CUDA_KERNELS_EW_FUSED_H
#define KILN_CUDA_KERNELS_EW_FUSED_H

#include "kernels.h"
#include "../../ops/ew_program.h"

/* y = prog(x[0], ..., x[prog->n_in - 1]) per element, in f32, rounded once to ct (F32, F16 or
 * BF16: every operand and y); v[k] views operand k over y's dims (all the same rank and dims,
 * merged as for kiln_ew_binary: see kiln_ew_views). Contiguous or single-element operands run
 * 16 bytes a thread where aligned; broadcast ones by index arithmetic. Enqueues on stream,
 * returns cudaGetLastError(); an empty output launches nothing. */
KILN_CUDA_EXTERN cudaError_t kiln_ew_fused(int ct, const kiln_ewp *prog, const void *const *x, const kiln_cuda_view *v,
                                           void *y, cudaStream_t stream);

#endif /* KILN_CUDA_KERNELS_EW_FUSED_H */
