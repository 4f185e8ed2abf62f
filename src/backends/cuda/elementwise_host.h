/* elementwise_host.h — what the elementwise family's two host files share: elementwise.c (math,
 * activations, broadcasting ops, Where, Clip, the fused activation) and elementwise_convert.c
 * (Cast, CastLike, BitCast, QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, Dropout).
 * Private to those files. */
#ifndef KILN_CUDA_ELEMENTWISE_HOST_H
#define KILN_CUDA_ELEMENTWISE_HOST_H

#include "cuda_backend.h"
#include "kernels_elementwise.h"

/* The node's fused activation for the kernels (kind 0 when none or when out is not a float). */
kiln_cuda_act kiln_ew_act(const kiln_node *n, kiln_dtype out);

/* NULL when every present input and output has a dtype the kernels handle and a rank of at
 * most KILN_CUDA_MAX_RANK; else the reason. */
const char *kiln_ew_supports_dtypes(const kiln_node *n, kiln_tensor *const *in, const kiln_tensor *out);

/* For ops whose kernels do not fuse the activation: applies node->act to out[0] (if any). */
kiln_status kiln_ew_finish_act(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *out);

/* Present input i (declared and not omitted), else NULL. */
static inline const kiln_tensor *kiln_ew_input(const kiln_node *n, kiln_tensor *const *in, int i) {
    return i < n->n_declared ? in[i] : NULL;
}

/* True when output j is wanted and placed. */
static inline bool kiln_ew_output_used(const kiln_node *n, const kiln_tensor *out, int j) {
    return j < n->n_outputs && n->outputs[j] >= 0 && out[j].data != NULL;
}

/* Views of ins[0..k) (k <= KILN_EW_MAX_IN) broadcast onto out: size-1 dims dropped,
 * neighbouring dims merged where every operand's stride allows (outer stride == inner stride *
 * inner size, 0 == 0 for broadcast ones). At least rank 1. */
void kiln_ew_views(const kiln_tensor *out, const kiln_tensor *const *ins, int k, kiln_cuda_view *v);

/* Registers kiln.FusedElementwise (elementwise_fused.c). */
void kiln_cuda_register_elementwise_fused(kiln_cuda_op *table);

/* Registers Cast, CastLike, BitCast, the quantization ops and Dropout (elementwise_convert.c). */
void kiln_cuda_register_elementwise_convert(kiln_cuda_op *table);

/* One table entry of the family. */
static inline void kiln_ew_set(kiln_cuda_op *table, int op,
                               const char *(*supports)(const kiln_node *, kiln_tensor *const *, const kiln_tensor *),
                               kiln_status (*run)(kiln_cuda_run *, const kiln_node *, kiln_tensor *const *, kiln_tensor *),
                               uint32_t host_inputs) {
    table[op].supports = supports;
    table[op].run = run;
    table[op].host_inputs = host_inputs;
    table[op].kernel = "elementwise";
}

#endif /* KILN_CUDA_ELEMENTWISE_HOST_H */
