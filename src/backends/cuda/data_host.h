/* data_host.h — what the data family's host files share (data.c: movement and generators,
 * data_index.c: gathers and scatters, data_nn.c: pools, Resize, RoiAlign). Private to them. */
#ifndef KILN_CUDA_DATA_HOST_H
#define KILN_CUDA_DATA_HOST_H

#include "cuda_backend.h"
#include "kernels_data.h"

/* The widest unit (16, 8, 4, 2 or 1 bytes) dividing `bits`, the OR of every byte count,
 * pitch, offset and address a copy uses (0: 16). */
static inline int kiln_data_unit(uint64_t bits) {
    int u = 16;
    while (u > 1 && (bits & (uint64_t)(u - 1))) u /= 2;
    return u;
}

/* dst (contiguous, dims[rank], rank <= KILN_DATA_MAX_DIMS) gets src[offset + sum i[k] *
 * strides[k]] (elements of es bytes): dims of 1 dropped, dims that are contiguous in src
 * merged, rows copied in the widest unit their alignment allows. */
kiln_status kiln_data_strided_run(kiln_cuda_run *r, const kiln_node *n, void *dst, const void *src, size_t es, int rank,
                              const int64_t *dims, int64_t offset, const int64_t *strides);

/* Device-to-device copy of bytes on the stream (nothing when dst == src or bytes == 0). */
kiln_status kiln_data_copy(kiln_cuda_run *r, const kiln_node *n, void *dst, const void *src, size_t bytes);

/* NULL when t is a dtype the byte-moving kernels handle (every dtype kiln stores), else a
 * reason naming it. */
const char *kiln_data_movable(kiln_dtype t);

/* A kernel launcher's status as a kiln status naming the node and the kernel. */
static inline kiln_status kiln_data_check(cudaError_t e, const kiln_node *n, const char *what) {
    return kiln_cuda_check(e, n, what);
}

void kiln_cuda_register_data_index(kiln_cuda_op *table);
void kiln_cuda_register_data_nn(kiln_cuda_op *table);

#endif /* KILN_CUDA_DATA_HOST_H */
