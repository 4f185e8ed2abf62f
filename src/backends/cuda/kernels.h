/* kernels.h — what the .cu files and the C host code share: element types and small plain
 * structs passed by value to the extern "C" launchers. No kiln types here: this header is read
 * by both gcc (C17) and nvcc (C++). Each family declares its launchers in its own header
 * (kernels_<family>.h) that includes this one.
 *
 * Launchers return cudaError_t (cudaGetLastError() after the launch) and take the stream as
 * their last argument. They never synchronize. */
#ifndef KILN_CUDA_KERNELS_H
#define KILN_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
#define KILN_CUDA_EXTERN extern "C"
#else
#define KILN_CUDA_EXTERN
#endif

/* Element types of kernel arguments. */
enum {
    KILN_CT_F32 = 0, KILN_CT_F16, KILN_CT_BF16, KILN_CT_I8, KILN_CT_U8, KILN_CT_I32, KILN_CT_I64,
    KILN_CT_BOOL, KILN_CT_F64, KILN_CT_I16, KILN_CT_U16, KILN_CT_U32, KILN_CT_U64, KILN_CT_COUNT
};

#define KILN_CUDA_MAX_RANK 8

/* A strided view for broadcasting and transposes: sizes of the output, and the element strides
 * of one operand over those sizes (0 where the operand is broadcast). */
typedef struct kiln_cuda_view {
    int rank;
    int64_t dims[KILN_CUDA_MAX_RANK];
    int64_t strides[KILN_CUDA_MAX_RANK];
} kiln_cuda_view;

/* Fused activations (same numbering as kiln_act_kind in src/ir/graph.h). */
typedef struct kiln_cuda_act {
    int kind;
    float alpha, beta;
} kiln_cuda_act;

#endif /* KILN_CUDA_KERNELS_H */
