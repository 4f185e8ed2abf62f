/* matmul.c — reference kernels of MatMul (https://onnx.ai/onnx/operators/onnx__MatMul.html) and
 * Gemm (https://onnx.ai/onnx/operators/onnx__Gemm.html). Floats accumulate in double; integer
 * types are exact with wrap-around (uint64 arithmetic). Rows of the output are accumulated as
 * y[i, :] += a[i, k] * b[k, :] (in tiles, see gemm_f64) so the inner loop walks B and Y
 * contiguously; Gemm transposes a transposed operand first. Tested by test_matmul*, test_gemm*. */
#include "../../ops/nn_internal.h"
#include "ref.h"

#include <string.h>

/* One matrix product y (m, n) = a (m, k) b (k, n), all row-major double, in tiles of GEMM_ROWS rows
 * by GEMM_COLS columns: a tile's part of B's row kk is loaded once for all its rows, and the tile of
 * y stays in cache while k runs. Each element's sum is the same sequence as the plain loop's
 * (0 + a[i,0] b[0,j] + a[i,1] b[1,j] + ... in that order), so the result does not depend on the
 * tiles or the threads; the inner loop is one vector multiply and add per lane, no reduction. */
enum { GEMM_ROWS = 16, GEMM_COLS = 256 };

static void gemm_f64(const double *a, const double *b, double *y, int64_t m, int64_t k, int64_t n) {
    int64_t mb = (m + GEMM_ROWS - 1) / GEMM_ROWS, nb = (n + GEMM_COLS - 1) / GEMM_COLS;
#pragma omp parallel for collapse(2) schedule(static) if (m * k * n > KILN_REF_PARALLEL_MIN)
    for (int64_t ib = 0; ib < mb; ib++)
        for (int64_t jb = 0; jb < nb; jb++) {
            int64_t i0 = ib * GEMM_ROWS, i1 = i0 + GEMM_ROWS < m ? i0 + GEMM_ROWS : m;
            int64_t j0 = jb * GEMM_COLS, jn = (j0 + GEMM_COLS < n ? j0 + GEMM_COLS : n) - j0;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = 0; j < jn; j++) y[i * n + j0 + j] = 0;
            for (int64_t kk = 0; kk < k; kk++) {
                const double *br = b + kk * n + j0;
                for (int64_t i = i0; i < i1; i++) {
                    double av = a[i * k + kk], *yr = y + i * n + j0;
#pragma omp simd
                    for (int64_t j = 0; j < jn; j++) yr[j] += av * br[j];
                }
            }
        }
}

/* *p (rows, cols) row-major becomes its transpose (cols, rows) in a new buffer; false (and *p
 * freed) when out of memory. */
static bool transpose_f64(double **p, int64_t rows, int64_t cols) {
    double *t = kiln_nn_alloc_f64(rows * cols);
    if (t)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) t[c * rows + r] = (*p)[r * cols + c];
    free(*p);
    *p = t;
    return t != NULL;
}

static kiln_status matmul(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *A = in[0], *B = in[1];
    kiln_matmul_dims d;
    int r;
    int64_t od[KILN_MAX_RANK];
    KILN_TRY(kiln_matmul_resolve(node, A, B, &d, &r, od));
    int64_t batches = kiln_shape_count(d.batch_rank, d.batch), m = d.m, k = d.k, n = d.n;
    int64_t total = batches * m * n;
    if (total == 0) return KILN_STATUS_OK;
    bool is_float = kiln_nn_is_float(A->dtype);
    double *a = NULL, *b = NULL, *y = NULL;
    if (is_float) {
        a = kiln_nn_to_f64(A);
        b = kiln_nn_to_f64(B);
        y = kiln_nn_alloc_f64(total);
        if (!a || !b || !y) {
            free(a);
            free(b);
            free(y);
            return KILN_STATUS_OUT_OF_MEMORY;
        }
    }
    int64_t bidx[KILN_MAX_RANK] = {0};
    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t ao = 0, bo = 0;
        for (int i = 0; i < d.batch_rank; i++) {
            ao += bidx[i] * d.a_bstride[i];
            bo += bidx[i] * d.b_bstride[i];
        }
        ao *= m * k;
        bo *= k * n;
        if (is_float) {
            gemm_f64(a + ao, b + bo, y + bi * m * n, m, k, n);
        } else {
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    uint64_t s = 0;
                    for (int64_t kk = 0; kk < k; kk++)
                        s += (uint64_t)kiln_load_i64(A->dtype, A->data, ao + i * k + kk) *
                             (uint64_t)kiln_load_i64(B->dtype, B->data, bo + kk * n + j);
                    kiln_store_i64(out[0].dtype, out[0].data, (bi * m + i) * n + j, (int64_t)s);
                }
        }
        kiln_nn_next(d.batch_rank, d.batch, bidx);
    }
    if (is_float) kiln_nn_from_f64(&out[0], y, total);
    free(a);
    free(b);
    free(y);
    return KILN_STATUS_OK;
}

static kiln_status gemm(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_matmul_params *p = node->params;
    const kiln_tensor *A = in[0], *B = in[1], *C = node->n_declared > 2 ? in[2] : NULL;
    int64_t M = out[0].dims[0], N = out[0].dims[1], K = A->dims[p->trans_a ? 0 : 1];
    int64_t total = M * N;
    if (total == 0) return KILN_STATUS_OK;
    bool is_float = kiln_nn_is_float(A->dtype);
    double *y = kiln_nn_alloc_f64(total);
    if (!y) return KILN_STATUS_OUT_OF_MEMORY;
    int64_t cstr[2] = {0, 0};
    if (C) kiln_broadcast_strides(C->rank, C->dims, 2, out[0].dims, cstr);
    if (is_float) {
        double *a = kiln_nn_to_f64(A), *b = kiln_nn_to_f64(B);
        if (!a || !b) {
            free(a);
            free(b);
            free(y);
            return KILN_STATUS_OUT_OF_MEMORY;
        }
        /* a transposed operand is transposed once here, so every case is gemm_f64's */
        if (p->trans_a && !transpose_f64(&a, K, M)) a = NULL;
        if (a && p->trans_b && !transpose_f64(&b, N, K)) b = NULL;
        if (!a || !b) {
            free(a);
            free(b);
            free(y);
            return KILN_STATUS_OUT_OF_MEMORY;
        }
        gemm_f64(a, b, y, M, K, N);
        free(a);
        free(b);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double v = p->alpha * y[i * N + j];
                if (C && p->beta != 0) v += p->beta * kiln_load_f64(C->dtype, C->data, i * cstr[0] + j * cstr[1]);
                y[i * N + j] = v;
            }
        kiln_nn_from_f64(&out[0], y, total);
        free(y);
        return KILN_STATUS_OK;
    }
    /* integers: exact sums, alpha and beta applied exactly when they are 1 */
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            uint64_t s = 0;
            for (int64_t kk = 0; kk < K; kk++) {
                int64_t ai = p->trans_a ? kk * M + i : i * K + kk, bi = p->trans_b ? j * K + kk : kk * N + j;
                s += (uint64_t)kiln_load_i64(A->dtype, A->data, ai) * (uint64_t)kiln_load_i64(B->dtype, B->data, bi);
            }
            int64_t cv = C && p->beta != 0 ? kiln_load_i64(C->dtype, C->data, i * cstr[0] + j * cstr[1]) : 0;
            if (p->alpha == 1.0 && (p->beta == 1.0 || !C || p->beta == 0)) {
                kiln_store_i64(out[0].dtype, out[0].data, i * N + j, (int64_t)(s + (uint64_t)cv));
            } else {
                double v = p->alpha * (double)(int64_t)s + p->beta * (double)cv;
                kiln_store_f64(out[0].dtype, out[0].data, i * N + j, v);
            }
        }
    free(y);
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_matmul(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    return node->op == KILN_OP_Gemm ? gemm(node, in, out) : matmul(node, in, out);
}
