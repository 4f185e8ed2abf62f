/* norm_internal.h — what the norm family's host files (norm.c, norm_reduce.c,
 * norm_attention.c) share: dtype checks for supports(), the error check after a launch and
 * the registration of each file's ops. Private to those files. */
#ifndef KILN_CUDA_NORM_INTERNAL_H
#define KILN_CUDA_NORM_INTERNAL_H

#include "cuda_backend.h"
#include "kernels_norm.h"

/* True for the float dtypes the kernels compute (F32, F16, BF16; F64 is not handled). */
static inline bool norm_is_float(kiln_dtype t) {
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16;
}

/* The integer dtypes of the Reduce / ArgMax / CumSum / TopK kernels. */
static inline bool norm_is_int(kiln_dtype t) {
    return t == KILN_DTYPE_I8 || t == KILN_DTYPE_U8 || t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64;
}

/* Whether optional input i of n is present. */
static inline bool norm_has_in(const kiln_node *n, kiln_tensor *const *in, int i) {
    return i < n->n_declared && in[i] != NULL;
}

/* Whether output j of n is wanted and placed. */
static inline bool norm_has_out(const kiln_node *n, kiln_tensor *out, int j) {
    return j < n->n_outputs && n->outputs[j] >= 0 && out[j].data != NULL;
}

/* The common refusals: a fused activation (none of these ops gets one) and X not F32/F16/BF16. */
static inline const char *norm_float_x(const kiln_node *n, kiln_tensor *const *in) {
    if (n->act.kind != KILN_ACT_NONE) return "fused activation on a norm-family op";
    if (!norm_is_float(in[0]->dtype)) return "input dtype is not float32, float16 or bfloat16";
    return NULL;
}

/* Product of dims[lo..hi). */
static inline int64_t norm_prod(const int64_t *dims, int lo, int hi) {
    int64_t p = 1;
    for (int i = lo; i < hi; i++) p *= dims[i];
    return p;
}

/* A launch's status as a kiln status naming the node. */
static inline kiln_status norm_check(cudaError_t e, const kiln_node *n) {
    return kiln_cuda_check(e, n, "norm-family kernel");
}

void kiln_cuda_norm_register_reduce(kiln_cuda_op *table);
void kiln_cuda_norm_register_attention(kiln_cuda_op *table);

#endif /* KILN_CUDA_NORM_INTERNAL_H */
