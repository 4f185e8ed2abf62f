/* gemm_lt.c — one cuBLASLt product described row-major (gemm_lt_key) and its plan: kiln's
 * tensors are row-major, cuBLASLt's matrices column-major, so D = A.B is asked for as
 * D^T = B^T.A^T (our B is cuBLASLt's A, our A its B; the transposes are free: a row-major
 * (r, c) matrix is a column-major (c, r) one). Also the tactic timer, the scratch bump
 * allocator and the per-node state helper the family's files share.
 * Tested through tests/cuda/gemm_check.c against the reference backend. */
#include "gemm_internal.h"

#include <stdio.h>
#include <string.h>

void gemm_batch_plan(int rank, const int64_t *dims, const int64_t *sa, const int64_t *sb, int64_t m, int64_t n,
                     int64_t k, bool fold, gemm_batch *p) {
    int64_t d[KILN_MAX_RANK], a[KILN_MAX_RANK], b[KILN_MAX_RANK];
    int r = 0;
    for (int i = 0; i < rank; i++)
        if (dims[i] != 1) {
            d[r] = dims[i];
            a[r] = sa[i];
            b[r] = sb[i];
            r++;
        }
    memset(p, 0, sizeof *p);
    p->m = m;
    p->n = n;
    p->k = k;
    p->a_mat = m * k;
    p->b_mat = k * n;
    p->inner = 1;
    int j = r;
    if (r > 0) {
        int64_t ua = a[r - 1], ub = b[r - 1];
        while (j > 0 && a[j - 1] == ua * p->inner && b[j - 1] == ub * p->inner) {
            p->inner *= d[j - 1];
            j--;
        }
        p->a_inner = ua;
        p->b_inner = ub;
    }
    p->outer_rank = j;
    p->outer = 1;
    for (int i = 0; i < j; i++) {
        p->outer_dims[i] = d[i];
        p->a_outer[i] = a[i];
        p->b_outer[i] = b[i];
        p->outer *= d[i];
    }
    if (fold && p->inner > 1 && p->b_inner == 0 && p->a_inner == 1) {
        p->m *= p->inner;
        p->inner = 1;
        p->a_inner = 0;
    }
}

void gemm_batch_offsets(const gemm_batch *p, int64_t o, int64_t *ao, int64_t *bo) {
    *ao = *bo = 0;
    for (int i = p->outer_rank - 1; i >= 0; i--) {
        int64_t idx = o % p->outer_dims[i];
        o /= p->outer_dims[i];
        *ao += idx * p->a_outer[i];
        *bo += idx * p->b_outer[i];
    }
}

int gemm_align(const void *p, int64_t step1, int64_t step2) {
    uint64_t v = (uint64_t)(uintptr_t)p | 16u;
    if (step1) v |= (uint64_t)step1;
    if (step2) v |= (uint64_t)step2;
    return (int)(v & (~v + 1)); /* lowest set bit, at most 16 */
}

bool gemm_lt_types(kiln_dtype t, gemm_lt_key *k) {
    switch (t) {
    case KILN_DTYPE_F32:
        k->ab_type = k->cd_type = k->scale_type = CUDA_R_32F;
        k->compute = CUBLAS_COMPUTE_32F; /* exact FP32: no TF32 */
        return true;
    case KILN_DTYPE_F16:
        k->ab_type = k->cd_type = CUDA_R_16F;
        k->scale_type = CUDA_R_32F;
        k->compute = CUBLAS_COMPUTE_32F;
        return true;
    case KILN_DTYPE_BF16:
        k->ab_type = k->cd_type = CUDA_R_16BF;
        k->scale_type = CUDA_R_32F;
        k->compute = CUBLAS_COMPUTE_32F;
        return true;
    case KILN_DTYPE_F64:
        k->ab_type = k->cd_type = k->scale_type = CUDA_R_64F;
        k->compute = CUBLAS_COMPUTE_64F;
        return true;
    case KILN_DTYPE_I8:
        k->ab_type = CUDA_R_8I;
        k->cd_type = k->scale_type = CUDA_R_32I;
        k->compute = CUBLAS_COMPUTE_32I;
        return true;
    default: return false;
    }
}

/* Column-major layout of a row-major (rows, cols) matrix with row length ld, batched. */
static cublasStatus_t make_layout(cublasLtMatrixLayout_t *l, int type, int64_t rows, int64_t cols, int64_t ld,
                                  int64_t batch, int64_t stride) {
    cublasStatus_t s = cublasLtMatrixLayoutCreate(l, (cudaDataType_t)type, (uint64_t)cols, (uint64_t)rows, ld);
    if (s != CUBLAS_STATUS_SUCCESS || batch <= 1) return s;
    int32_t b = (int32_t)batch;
    s = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride);
    return s;
}

void gemm_lt_release(gemm_lt_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    memset(p, 0, sizeof *p);
}

/* Descriptors of k (no algorithm yet). */
static cublasStatus_t build_descs(const gemm_lt_key *k, gemm_lt_plan *p) {
    cublasStatus_t s = cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)k->compute, (cudaDataType_t)k->scale_type);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    /* cuBLASLt's A is our B: op T when our B is stored transposed. */
    cublasOperation_t opa = k->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb);
    if (s == CUBLAS_STATUS_SUCCESS && k->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        cublasLtEpilogue_t e = (cublasLtEpilogue_t)k->epilogue;
        s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
        int32_t bt = k->cd_type;
        if (s == CUBLAS_STATUS_SUCCESS && (e & CUBLASLT_EPILOGUE_BIAS))
            s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
    }
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    /* our B: (k, n) stored, or (n, k) when transposed */
    s = make_layout(&p->la, k->ab_type, k->trans_b ? k->n : k->k, k->trans_b ? k->k : k->n, k->ldb, k->batch, k->stride_b);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = make_layout(&p->lb, k->ab_type, k->trans_a ? k->k : k->m, k->trans_a ? k->m : k->k, k->lda, k->batch,
                        k->stride_a);
    if (s == CUBLAS_STATUS_SUCCESS) s = make_layout(&p->ld, k->cd_type, k->m, k->n, k->ldd, k->batch, k->stride_d);
    return s;
}

static cublasStatus_t heuristic(cublasLtHandle_t lt, const gemm_lt_key *k, gemm_lt_plan *p,
                                cublasLtMatmulHeuristicResult_t *res, int max, int *got) {
    cublasLtMatmulPreference_t pref;
    *got = 0;
    cublasStatus_t s = cublasLtMatmulPreferenceCreate(&pref);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    uint64_t ws = GEMM_LT_WORKSPACE;
    uint32_t aa = (uint32_t)k->align_b, ab = (uint32_t)k->align_a, ad = (uint32_t)k->align_d; /* Lt's A is our B */
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, max, res, got);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s == CUBLAS_STATUS_SUCCESS && *got == 0) s = CUBLAS_STATUS_NOT_SUPPORTED;
    return s;
}

kiln_status gemm_lt_prepare(cublasLtHandle_t lt, const kiln_node *n, const gemm_lt_key *k, gemm_lt_plan *p) {
    if (p->ready && memcmp(&p->key, k, sizeof *k) == 0) return KILN_STATUS_OK;
    gemm_lt_release(p);
    cublasStatus_t s = build_descs(k, p);
    cublasLtMatmulHeuristicResult_t res[GEMM_TUNE_CANDIDATES];
    int got = 0;
    if (s == CUBLAS_STATUS_SUCCESS) s = heuristic(lt, k, p, res, GEMM_TUNE_CANDIDATES, &got);
    if (s != CUBLAS_STATUS_SUCCESS) {
        gemm_lt_release(p);
        return kiln_cublas_check(s, n, "cuBLASLt has no algorithm for this product");
    }
    int pick = k->tactic >= 0 && k->tactic < got ? k->tactic : 0;
    p->algo = res[pick].algo;
    p->workspace = res[pick].workspaceSize;
    p->key = *k;
    p->ready = true;
    return KILN_STATUS_OK;
}

int gemm_lt_candidates(cublasLtHandle_t lt, const gemm_lt_key *k, int max) {
    gemm_lt_plan p;
    memset(&p, 0, sizeof p);
    cublasLtMatmulHeuristicResult_t res[GEMM_TUNE_CANDIDATES];
    int got = 0;
    if (max > GEMM_TUNE_CANDIDATES) max = GEMM_TUNE_CANDIDATES;
    if (build_descs(k, &p) == CUBLAS_STATUS_SUCCESS) heuristic(lt, k, &p, res, max, &got);
    gemm_lt_release(&p);
    return got;
}

kiln_status gemm_lt_run(cublasLtHandle_t lt, const kiln_node *n, gemm_lt_plan *p, const void *alpha, const void *A,
                        const void *B, const void *beta, const void *C, void *D, const void *bias, void *ws,
                        cudaStream_t s) {
    if (p->key.epilogue & CUBLASLT_EPILOGUE_BIAS)
        KILN_TRY(kiln_cublas_check(
            cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias), n,
            "setting the bias of a cuBLASLt product"));
    if (!p->key.use_c) C = D;
    return kiln_cublas_check(cublasLtMatmul(lt, p->desc, alpha, B, p->la, A, p->lb, beta, C, p->ld, D, p->ld, &p->algo,
                                            ws, p->workspace, s),
                             n, "cublasLtMatmul");
}

const char *gemm_lt_key_str(const gemm_lt_key *k, const char *op, char *buf, size_t n) {
    snprintf(buf, n,
             "lt1:%s:t%d.%d.%d.%d:tr%d%d:m%lld:n%lld:k%lld:ld%lld.%lld.%lld:b%lld:s%lld.%lld.%lld:c%d:e%d:al%d.%d.%d", op,
             k->ab_type, k->cd_type, k->scale_type, k->compute, k->trans_a, k->trans_b, (long long)k->m,
             (long long)k->n, (long long)k->k, (long long)k->lda, (long long)k->ldb, (long long)k->ldd,
             (long long)k->batch, (long long)k->stride_a, (long long)k->stride_b, (long long)k->stride_d, k->use_c,
             k->epilogue, k->align_a, k->align_b, k->align_d);
    return buf;
}

/* Milliseconds of one fn(ctx, i), replayed from a CUDA graph so that the host's launch cost
 * (cuDNN's especially) does not hide the device time, as in engines run through CUDA graphs.
 * UNSUPPORTED when the run cannot be captured (the caller then times it directly). */
static kiln_status time_graph(cudaStream_t s, kiln_status (*fn)(void *ctx, int i), void *ctx, int i, cudaEvent_t e0,
                              cudaEvent_t e1, double *ms) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        return KILN_STATUS_UNSUPPORTED;
    }
    kiln_status st = fn(ctx, i);
    cudaError_t e = cudaStreamEndCapture(s, &g);
    if (st == KILN_STATUS_OK && e == cudaSuccess) e = cudaGraphInstantiate(&ge, g, 0);
    if (st == KILN_STATUS_OK && e == cudaSuccess) e = cudaGraphLaunch(ge, s);
    float t = 0;
    int reps = 1;
    if (st == KILN_STATUS_OK && e == cudaSuccess) {
        cudaEventRecord(e0, s);
        e = cudaGraphLaunch(ge, s);
        cudaEventRecord(e1, s);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&t, e0, e1);
    }
    if (st == KILN_STATUS_OK && e == cudaSuccess) {
        /* repeat so that the measured time spans about 5 ms (at most 50 runs) */
        reps = t > 0 ? (int)(5.0 / t) : 50;
        reps = reps < 3 ? 3 : reps > 50 ? 50 : reps;
        cudaEventRecord(e0, s);
        for (int j = 0; j < reps && e == cudaSuccess; j++) e = cudaGraphLaunch(ge, s);
        cudaEventRecord(e1, s);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&t, e0, e1);
    }
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    if (st != KILN_STATUS_OK || e != cudaSuccess) {
        cudaGetLastError();
        kiln_clear_error();
        return KILN_STATUS_UNSUPPORTED;
    }
    *ms = t / reps;
    return KILN_STATUS_OK;
}

/* Milliseconds of one fn(ctx, i) launched directly (events around repeated calls). */
static kiln_status time_direct(cudaStream_t s, kiln_status (*fn)(void *ctx, int i), void *ctx, int i, cudaEvent_t e0,
                               cudaEvent_t e1, double *ms) {
    float t = 0;
    bool ok = true;
    int reps = 5;
    cudaEventRecord(e0, s);
    for (int j = 0; j < reps && ok; j++) ok = fn(ctx, i) == KILN_STATUS_OK;
    cudaEventRecord(e1, s);
    KILN_TRY(kiln_cuda_check(cudaEventSynchronize(e1), NULL, "timing a tactic"));
    if (!ok) return KILN_STATUS_UNSUPPORTED;
    cudaEventElapsedTime(&t, e0, e1);
    *ms = t / reps;
    return KILN_STATUS_OK;
}

kiln_status gemm_time_best(cudaStream_t s, int count, kiln_status (*fn)(void *ctx, int i), void *ctx, int *best,
                           double *best_ms) {
    cudaEvent_t e0, e1;
    KILN_TRY(kiln_cuda_check(cudaEventCreate(&e0), NULL, "creating a timing event"));
    if (cudaEventCreate(&e1) != cudaSuccess) {
        cudaEventDestroy(e0);
        return kiln_error(KILN_STATUS_RUNTIME_ERROR, "cannot create a timing event");
    }
    *best = -1;
    *best_ms = 0;
    kiln_status st = KILN_STATUS_OK;
    for (int i = 0; i < count; i++) {
        /* warm-up: builds the candidate's state and sizes scratch memory outside the capture */
        if (fn(ctx, i) != KILN_STATUS_OK) continue; /* a failing candidate is skipped */
        if ((st = kiln_cuda_check(cudaStreamSynchronize(s), NULL, "timing a tactic")) != KILN_STATUS_OK) break;
        double ms = 0;
        if (time_graph(s, fn, ctx, i, e0, e1, &ms) != KILN_STATUS_OK) {
            kiln_status d = time_direct(s, fn, ctx, i, e0, e1, &ms);
            if (d == KILN_STATUS_UNSUPPORTED) continue;
            if ((st = d) != KILN_STATUS_OK) break;
        }
        if (*best < 0 || ms < *best_ms) {
            *best = i;
            *best_ms = ms;
        }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    kiln_clear_error();
    if (st != KILN_STATUS_OK) return st;
    if (*best < 0) return kiln_error(KILN_STATUS_UNSUPPORTED, "no candidate implementation ran");
    return KILN_STATUS_OK;
}

void gemm_tune_begin(gemm_tune_run *t, const kiln_cuda_tune *tune, int tactic) {
    memset(t, 0, sizeof *t);
    t->r.stream = tune->stream;
    t->r.tf32 = tune->tf32;
    t->r.lt = tune->lt;
    t->r.dnn = tune->dnn;
    t->r.scratch = tune->scratch;
    t->r.tactic = tactic;
    t->r.state = &t->state;
    t->r.state_free = &t->state_free;
}

void gemm_tune_end(gemm_tune_run *t) {
    if (t->state && t->state_free) t->state_free(t->state);
    t->state = NULL;
}

int gemm_scratch_add(gemm_scratch *s, size_t bytes) {
    KILN_ASSERT(s->n < (int)(sizeof s->off / sizeof s->off[0]));
    s->off[s->n] = s->total;
    s->total += (bytes + 255) / 256 * 256;
    return s->n++;
}

kiln_status gemm_scratch_get(kiln_cuda_run *r, gemm_scratch *s) {
    void *p = NULL;
    KILN_TRY(kiln_cuda_scratch(r, s->total, &p));
    s->base = p;
    return KILN_STATUS_OK;
}

void *gemm_state(kiln_cuda_run *r, size_t size, void (*f)(void *)) {
    if (!*r->state) {
        void *st = kiln_calloc(1, size);
        if (!st) {
            kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory for a kernel's state");
            return NULL;
        }
        *r->state = st;
        *r->state_free = f;
    }
    return *r->state;
}

kiln_status gemm_finish_act(kiln_cuda_run *r, const kiln_node *n, kiln_tensor *out, bool act_done) {
    if (act_done || n->act.kind == KILN_ACT_NONE || !kiln_dtype_is_float(out->dtype)) return KILN_STATUS_OK;
    return kiln_cuda_apply_act(r, n, &n->act, out);
}

kiln_status gemm_tune_pick(const kiln_cuda_tune *tune, const gemm_lt_key *k, const char *op, int count,
                           kiln_status (*fn)(void *ctx, int i), void *ctx, gemm_tune_run *tr, int *tactic) {
    if (count <= 1) {
        *tactic = count == 1 ? 0 : -1;
        return KILN_STATUS_OK;
    }
    char key[512];
    gemm_lt_key_str(k, op, key, sizeof key);
    int cached = kiln_timing_cache_get(tune->cache, key);
    if (cached >= 0 && cached < count) {
        *tactic = cached;
        return KILN_STATUS_OK;
    }
    gemm_tune_begin(tr, tune, -1);
    int best;
    double ms;
    kiln_status s = gemm_time_best(tune->stream, count, fn, ctx, &best, &ms);
    gemm_tune_end(tr);
    if (s != KILN_STATUS_OK) return s;
    kiln_timing_cache_put(tune->cache, key, best, ms);
    *tactic = best;
    return KILN_STATUS_OK;
}
