/* det.c — reference kernel of Det (parse and infer in src/ops/det.c): LU decomposition with
 * partial pivoting in double, the determinant being the product of the pivots with the sign of
 * the row swaps. An empty (0 x 0) matrix has determinant 1. Tested by the node tests test_det*. */
#include "../../ops/reduce_internal.h"

kiln_status kiln_ref_det(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    int64_t m = x->dims[x->rank - 1];
    int64_t batch = kiln_shape_count(x->rank - 2, x->dims);
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(m > 0 ? m * m : 1, sizeof(double), &bytes));
    double *a = kiln_malloc(bytes);
    if (!a) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t i = 0; i < m * m; i++) a[i] = kiln_load_f64(x->dtype, x->data, b * m * m + i);
        double det = 1.0;
        for (int64_t k = 0; k < m; k++) {
            int64_t piv = k;
            for (int64_t r = k + 1; r < m; r++)
                if (fabs(a[r * m + k]) > fabs(a[piv * m + k])) piv = r;
            if (piv != k) {
                for (int64_t c = 0; c < m; c++) {
                    double tmp = a[k * m + c];
                    a[k * m + c] = a[piv * m + c];
                    a[piv * m + c] = tmp;
                }
                det = -det;
            }
            double pv = a[k * m + k];
            det *= pv;
            if (pv == 0.0) break;
            for (int64_t r = k + 1; r < m; r++) {
                double f = a[r * m + k] / pv;
                for (int64_t c = k; c < m; c++) a[r * m + c] -= f * a[k * m + c];
            }
        }
        red_store_f64(out[0].dtype, out[0].data, b, det);
    }
    free(a);
    return KILN_STATUS_OK;
}
