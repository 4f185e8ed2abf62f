/* gemm_internal.h — what the gemm family's host files share (gemm.c, gemm_lt.c, gemm_int8.c,
 * conv.c, conv_int8.c): one cuBLASLt product described row-major and kept as a plan (descriptors,
 * the chosen algorithm) in a node's state, tactic timing helpers, a bump allocator over the
 * node's scratch memory, and the registration of each file's ops. Private to the family. */
#ifndef KILN_CUDA_GEMM_INTERNAL_H
#define KILN_CUDA_GEMM_INTERNAL_H

#include "cuda_backend.h"
#include "kernels_gemm.h"

/* cuBLASLt workspace: 32 MiB lets Hopper's split-K / stream-K kernels run. */
#define GEMM_LT_WORKSPACE ((size_t)32 << 20)
/* Candidates timed by a tune hook. */
#define GEMM_TUNE_CANDIDATES 8

/* One cuBLASLt call in row-major terms: D (m, n) = op(A) (m, k) . op(B) (k, n), batched:
 *   A stored (m, k) with row length lda, or (k, m) when trans_a; B likewise;
 *   D (m, n) with row length ldd; C, when used (beta != 0), has D's layout;
 *   batch matrices at element strides stride_a / stride_b (0: shared) / stride_d.
 * Filled with memset 0 first: it is compared bytewise to reuse a plan. */
typedef struct gemm_lt_key {
    int ab_type, cd_type, scale_type, compute; /* cudaDataType_t, cublasComputeType_t */
    int trans_a, trans_b;
    int64_t m, n, k, lda, ldb, ldd;
    int64_t batch, stride_a, stride_b, stride_d;
    int use_c;
    int epilogue; /* cublasLtEpilogue_t */
    int align_a, align_b, align_d; /* bytes, capped at 16: what the heuristic may assume */
    int tactic;   /* heuristic result to use; < 0: the first */
} gemm_lt_key;

typedef struct gemm_lt_plan {
    bool ready;
    gemm_lt_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld; /* cuBLASLt's A (our B), B (our A), C/D */
    cublasLtMatmulAlgo_t algo;
    size_t workspace;
} gemm_lt_plan;

/* How the batch dims map onto cuBLASLt calls: `outer` calls (a loop over outer dims) of one
 * strided batch of `inner` products. Strides in matrices. */
typedef struct gemm_batch {
    int64_t m, n, k;
    int64_t a_mat, b_mat; /* elements of one matrix of A / B (before any fold) */
    int64_t inner, a_inner, b_inner;
    int outer_rank;
    int64_t outer_dims[KILN_MAX_RANK], a_outer[KILN_MAX_RANK], b_outer[KILN_MAX_RANK];
    int64_t outer;
} gemm_batch;

/* Splits batch dims (sizes dims, operand matrix strides sa / sb, in matrices) into the longest
 * inner suffix over which both operands' matrix index is (flat index) * constant, and an outer
 * rest; with fold, an inner batch that shares one B over consecutive A matrices becomes rows. */
void gemm_batch_plan(int rank, const int64_t *dims, const int64_t *sa, const int64_t *sb, int64_t m, int64_t n,
                     int64_t k, bool fold, gemm_batch *p);
/* Matrix indices of A and B for outer call o. */
void gemm_batch_offsets(const gemm_batch *p, int64_t o, int64_t *ao, int64_t *bo);

/* The largest power of two up to 16 dividing the pointer and every byte step given (0s ignored). */
int gemm_align(const void *p, int64_t step1, int64_t step2);
/* cuBLASLt types for a kiln float/int8 dtype; false when there are none. */
bool gemm_lt_types(kiln_dtype t, gemm_lt_key *k);

/* Makes p describe k (rebuilt only when k differs from the last one). UNSUPPORTED when cuBLASLt
 * has no algorithm for it. */
kiln_status gemm_lt_prepare(cublasLtHandle_t lt, const kiln_node *n, const gemm_lt_key *k, gemm_lt_plan *p);
/* Enqueues the planned product. alpha/beta point to scale_type values; bias (epilogue with
 * bias) is a device vector of n elements (of D's type); ws is at least GEMM_LT_WORKSPACE. */
kiln_status gemm_lt_run(cublasLtHandle_t lt, const kiln_node *n, gemm_lt_plan *p, const void *alpha, const void *A,
                        const void *B, const void *beta, const void *C, void *D, const void *bias, void *ws,
                        cudaStream_t s);
void gemm_lt_release(gemm_lt_plan *p);
/* The heuristic's candidates for k (its tactic ignored): how many (<= max). */
int gemm_lt_candidates(cublasLtHandle_t lt, const gemm_lt_key *k, int max);
/* "lt1:<fields>" into buf: the timing cache's key for k (tactic excluded). */
const char *gemm_lt_key_str(const gemm_lt_key *k, const char *op, char *buf, size_t n);

/* Times fn(ctx, i) for i < count on the stream with events (warm-up, then repetitions) and
 * returns the fastest i in *best and its milliseconds; a candidate that fails is skipped.
 * UNSUPPORTED when all fail. */
kiln_status gemm_time_best(cudaStream_t s, int count, kiln_status (*fn)(void *ctx, int i), void *ctx, int *best,
                           double *best_ms);

/* A run-like context for a tune hook, with its own state; gemm_tune_end frees the state. */
typedef struct gemm_tune_run {
    kiln_cuda_run r;
    void *state;
    void (*state_free)(void *);
} gemm_tune_run;
void gemm_tune_begin(gemm_tune_run *t, const kiln_cuda_tune *tune, int tactic);
void gemm_tune_end(gemm_tune_run *t);
/* The common end of the cuBLASLt tune hooks: of count candidates for k, the timing cache's
 * earlier choice, else the fastest of fn(ctx, i) timed on the tune stream (tr: the hook's
 * run-like context inside ctx, begun and ended here); recorded in the cache. */
kiln_status gemm_tune_pick(const kiln_cuda_tune *tune, const gemm_lt_key *k, const char *op, int count,
                           kiln_status (*fn)(void *ctx, int i), void *ctx, gemm_tune_run *tr, int *tactic);

/* A bump allocator over one scratch block: gemm_scratch_add reserves (256-byte aligned) sizes,
 * gemm_scratch_get takes the block once, then gemm_scratch_at gives each reserved piece. */
typedef struct gemm_scratch {
    size_t off[16];
    int n;
    size_t total;
    char *base;
} gemm_scratch;
int gemm_scratch_add(gemm_scratch *s, size_t bytes);
kiln_status gemm_scratch_get(kiln_cuda_run *r, gemm_scratch *s);
static inline void *gemm_scratch_at(const gemm_scratch *s, int i) { return s->base + s->off[i]; }

/* The node's state of type T, created zeroed with free function f on first use. */
void *gemm_state(kiln_cuda_run *r, size_t size, void (*f)(void *));

/* Applies node->act on out unless already done (a float output). */
kiln_status gemm_finish_act(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *out, bool act_done);

/* Registration of each file's ops (called from kiln_cuda_register_gemm). */
void gemm_register_int8(kiln_cuda_op *table);
void gemm_register_conv(kiln_cuda_op *table);
void gemm_register_conv_int8(kiln_cuda_op *table);

static inline int64_t gemm_round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

#endif /* KILN_CUDA_GEMM_INTERNAL_H */
