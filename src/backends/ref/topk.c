/* topk.c — reference kernel of TopK (parse and infer in src/ops/topk.c). Each slice along the
 * axis is merge-sorted (stable) by value, descending for largest and ascending otherwise, equal
 * values keeping the lower index first; the first k are written. NaN counts as larger than any
 * number (numpy's sort order). Output is always sorted, which sorted=0 allows.
 * Tested by the node tests test_top_k*. */
#include "../../ops/reduce_internal.h"

typedef struct topk_ctx {
    const double *vf;   /* float values of the slice, or NULL */
    const int64_t *vi;  /* integer values of the slice */
    bool is_u64, largest;
} topk_ctx;

/* Whether element a comes strictly before element b (values only; stability handles ties). */
static bool before(const topk_ctx *c, int64_t a, int64_t b) {
    int cmp;
    if (c->vf) {
        double x = c->vf[a], y = c->vf[b];
        bool nx = isnan(x), ny = isnan(y);
        if (nx || ny) cmp = nx - ny;
        else cmp = (x > y) - (x < y);
    } else if (c->is_u64) {
        uint64_t x = (uint64_t)c->vi[a], y = (uint64_t)c->vi[b];
        cmp = (x > y) - (x < y);
    } else {
        cmp = (c->vi[a] > c->vi[b]) - (c->vi[a] < c->vi[b]);
    }
    return c->largest ? cmp > 0 : cmp < 0;
}

/* Stable bottom-up merge sort of idx[0..n) with scratch tmp[0..n). */
static void merge_sort(const topk_ctx *c, int64_t *idx, int64_t *tmp, int64_t n) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = before(c, idx[j], idx[i]) ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, sizeof(int64_t) * (size_t)n);
    }
}


kiln_status kiln_ref_topk(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_topk_params *p = node->params;
    const kiln_tensor *x = in[0];
    kiln_dtype t = x->dtype;
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, x->rank, &axis));
    int64_t k = 0;
    bool known;
    KILN_TRY(red_topk_k(node, in, &k, &known));
    int64_t outer, len, inner;
    red_split_axis(x, axis, &outer, &len, &inner);
    bool is_float = kiln_dtype_is_float(t);
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(len ? len : 1, 3 * sizeof(int64_t), &bytes));
    int64_t *buf = kiln_malloc(bytes);
    if (!buf) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    int64_t *idx = buf, *tmp = buf + len, *vals = buf + 2 * len;
    double *valf = (double *)vals;
    topk_ctx c = {is_float ? valf : NULL, vals, t == KILN_DTYPE_U64, p->largest};
    int64_t *yi = node->n_outputs > 1 && out[1].data ? out[1].data : NULL;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * len * inner + i;
            for (int64_t j = 0; j < len; j++) {
                idx[j] = j;
                if (is_float) valf[j] = kiln_load_f64(t, x->data, base + j * inner);
                else vals[j] = kiln_load_i64(t, x->data, base + j * inner);
            }
            merge_sort(&c, idx, tmp, len);
            for (int64_t j = 0; j < k; j++) {
                int64_t at = (o * k + j) * inner + i;
                /* Copy the element bits: exact for every dtype. */
                size_t es = kiln_dtype_size(t);
                if (out[0].data)
                    memcpy((char *)out[0].data + (size_t)at * es, (const char *)x->data + (size_t)(base + idx[j] * inner) * es, es);
                if (yi) yi[at] = idx[j];
            }
        }
    }
    free(buf);
    return KILN_STATUS_OK;
}
