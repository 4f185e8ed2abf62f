/* registry.c — the CUDA op table (filled once from each family's register function), error
 * translation for CUDA / cuBLASLt / cuDNN, kernel element types and scratch memory. */
#include "cuda_backend.h"
#include "kernels.h"
#include "internal.h"
#include "cuda_exec.h"

#include <pthread.h>
#include <string.h>

static kiln_cuda_op table[KILN_OP_COUNT];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void fill_table(void) {
    kiln_cuda_register_elementwise(table);
    kiln_cuda_register_norm(table);
    kiln_cuda_register_data(table);
    kiln_cuda_register_gemm(table);
}

const kiln_cuda_op *kiln_cuda_ops(void) {
    pthread_once(&table_once, fill_table);
    return table;
}

kiln_status kiln_cuda_check(cudaError_t e, const kiln_node *n, const char *what) {
    if (e == cudaSuccess) return KILN_STATUS_OK;
    if (n) return kiln_node_error(n, KILN_STATUS_RUNTIME_ERROR, "%s: CUDA error %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
    return kiln_error(KILN_STATUS_RUNTIME_ERROR, "%s: CUDA error %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

kiln_status kiln_cublas_check(cublasStatus_t s, const kiln_node *n, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return KILN_STATUS_OK;
    kiln_status st = s == CUBLAS_STATUS_NOT_SUPPORTED ? KILN_STATUS_UNSUPPORTED : KILN_STATUS_RUNTIME_ERROR;
    if (n) return kiln_node_error(n, st, "%s: cuBLASLt status %d", what, (int)s);
    return kiln_error(st, "%s: cuBLASLt status %d", what, (int)s);
}

kiln_status kiln_cudnn_check(cudnnStatus_t s, const kiln_node *n, const char *what) {
    if (s == CUDNN_STATUS_SUCCESS) return KILN_STATUS_OK;
    kiln_status st = s == CUDNN_STATUS_NOT_SUPPORTED ? KILN_STATUS_UNSUPPORTED : KILN_STATUS_RUNTIME_ERROR;
    if (n) return kiln_node_error(n, st, "%s: cuDNN %s", what, cudnnGetErrorString(s));
    return kiln_error(st, "%s: cuDNN %s", what, cudnnGetErrorString(s));
}

int kiln_cuda_ctype(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_F32: return KILN_CT_F32;
    case KILN_DTYPE_F16: return KILN_CT_F16;
    case KILN_DTYPE_BF16: return KILN_CT_BF16;
    case KILN_DTYPE_I8: return KILN_CT_I8;
    case KILN_DTYPE_U8: return KILN_CT_U8;
    case KILN_DTYPE_I32: return KILN_CT_I32;
    case KILN_DTYPE_I64: return KILN_CT_I64;
    case KILN_DTYPE_BOOL: return KILN_CT_BOOL;
    case KILN_DTYPE_F64: return KILN_CT_F64;
    case KILN_DTYPE_I16: return KILN_CT_I16;
    case KILN_DTYPE_U16: return KILN_CT_U16;
    case KILN_DTYPE_U32: return KILN_CT_U32;
    case KILN_DTYPE_U64: return KILN_CT_U64;
    default: return -1;
    }
}

kiln_status kiln_cuda_scratch(kiln_cuda_run *r, size_t bytes, void **ptr) {
    return kiln_cuda_scratch_get(r->scratch, bytes, ptr);
}

kiln_status kiln_cuda_scratch_get(kiln_cuda_scratch_pool *p, size_t bytes, void **ptr) {
    if (bytes == 0) bytes = 256;
    if (bytes > p->bytes) {
        /* the stream may still use the old block */
        if (p->data) {
            KILN_TRY(kiln_cuda_check(cudaDeviceSynchronize(), NULL, "growing scratch memory"));
            cudaFree(p->data);
            p->data = NULL;
            p->bytes = 0;
        }
        size_t want = (bytes + 255) / 256 * 256;
        cudaError_t e = cudaMalloc(&p->data, want);
        if (e != cudaSuccess) {
            p->data = NULL;
            return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes of GPU scratch memory: %s", want, cudaGetErrorString(e));
        }
        p->bytes = want;
    }
    *ptr = p->data;
    return KILN_STATUS_OK;
}

void kiln_cuda_scratch_free(kiln_cuda_scratch_pool *p) {
    if (p->data) cudaFree(p->data);
    p->data = NULL;
    p->bytes = 0;
}

const char *kiln_cuda_op_kernel(int op) {
    const kiln_cuda_op *t = kiln_cuda_ops();
    return op >= 0 && op < KILN_OP_COUNT && t[op].run ? t[op].kernel : NULL;
}
