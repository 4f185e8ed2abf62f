/* internal.h — the CUDA backend's pieces shared by exec.c, registry.c and tune.c (not by the
 * kernel families, which see only cuda_backend.h). */
#ifndef KILN_CUDA_INTERNAL_H
#define KILN_CUDA_INTERNAL_H

#include "cuda_backend.h"

typedef struct kiln_cuda_scratch_pool {
    void *data;
    size_t bytes;
} kiln_cuda_scratch_pool;

kiln_status kiln_cuda_scratch_get(kiln_cuda_scratch_pool *p, size_t bytes, void **ptr);
void kiln_cuda_scratch_free(kiln_cuda_scratch_pool *p);

#endif /* KILN_CUDA_INTERNAL_H */
