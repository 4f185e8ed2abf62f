/* select.c — reference kernels of NonZero, Compress and Unique; each allocates its outputs
 * once the values tell their size. Unique sorts slice numbers with a stable merge sort, so the
 * first index of each group is its first occurrence; NaNs sort last and count as equal (as
 * numpy's unique does). Shapes come from src/ops/select.c.
 * Tested by test_nonzero*, test_compress*, test_unique*. */
#include "../../ops/shape_internal.h"

#include <math.h>

static bool nonzero_at(kiln_dtype t, const void *p, int64_t i) {
    if (kiln_dtype_is_float(t)) return kiln_load_f64(t, p, i) != 0.0; /* NaN counts */
    return kiln_load_i64(t, p, i) != 0;
}

/* https://onnx.ai/onnx/operators/onnx__NonZero.html */
static kiln_status nonzero(const kiln_node *node, const kiln_tensor *x, kiln_tensor *out) {
    int64_t n = kiln_shape_count(x->rank, x->dims), nnz = 0, idx[KILN_MAX_RANK] = {0};
    for (int64_t i = 0; i < n; i++) nnz += nonzero_at(x->dtype, x->data, i);
    int64_t dims[2] = {x->rank, nnz};
    KILN_TRY(kiln_shape_alloc(node, out, KILN_DTYPE_I64, 2, dims));
    int64_t *o = out->data, col = 0;
    for (int64_t i = 0; i < n; i++, kiln_shape_next_index(x->rank, x->dims, idx)) {
        if (!nonzero_at(x->dtype, x->data, i)) continue;
        for (int k = 0; k < x->rank; k++) o[k * nnz + col] = idx[k];
        col++;
    }
    return KILN_STATUS_OK;
}

/* https://onnx.ai/onnx/operators/onnx__Compress.html */
static kiln_status compress(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_axis_params *p = node->params;
    const kiln_tensor *x = in[0], *cond = in[1];
    int64_t outer = 1, dim = kiln_shape_count(x->rank, x->dims), inner = 1, count;
    int rank = 1, axis = 0;
    int64_t dims[KILN_MAX_RANK];
    if (p->has_axis) {
        axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
        outer = kiln_shape_prod(x->dims, 0, axis);
        dim = x->dims[axis];
        inner = kiln_shape_prod(x->dims, axis + 1, x->rank);
        rank = x->rank;
        memcpy(dims, x->dims, sizeof(int64_t) * (size_t)rank);
    }
    KILN_TRY(kiln_compress_count(node, cond, dim, &count));
    dims[axis] = count;
    KILN_TRY(kiln_shape_alloc(node, out, x->dtype, rank, dims));
    size_t chunk = (size_t)inner * kiln_dtype_size(x->dtype);
    const uint8_t *c = cond->data;
    char *dst = out->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < dim && j < cond->dims[0]; j++)
            if (c[j]) {
                memcpy(dst, (const char *)x->data + (size_t)(o * dim + j) * chunk, chunk);
                dst += chunk;
            }
    return KILN_STATUS_OK;
}

/* ---- Unique ---- */

/* The tensor seen as n slices of outer * inner elements each (slice s, element (o, i) at
 * (o * n + s) * inner + i); without an axis, n elements of one. */
typedef struct slices {
    const kiln_tensor *x;
    int64_t n, outer, inner;
} slices;

static int cmp_elem(kiln_dtype t, const void *p, int64_t a, int64_t b) {
    if (kiln_dtype_is_float(t)) {
        double x = kiln_load_f64(t, p, a), y = kiln_load_f64(t, p, b);
        if (isnan(x) || isnan(y)) return isnan(x) - isnan(y);
        return x < y ? -1 : x > y;
    }
    if (t == KILN_DTYPE_U64) {
        uint64_t x = ((const uint64_t *)p)[a], y = ((const uint64_t *)p)[b];
        return x < y ? -1 : x > y;
    }
    int64_t x = kiln_load_i64(t, p, a), y = kiln_load_i64(t, p, b);
    return x < y ? -1 : x > y;
}

/* Lexicographic order of slices a and b. */
static int cmp_slices(const slices *s, int64_t a, int64_t b) {
    for (int64_t o = 0; o < s->outer; o++)
        for (int64_t i = 0; i < s->inner; i++) {
            int c = cmp_elem(s->x->dtype, s->x->data, (o * s->n + a) * s->inner + i, (o * s->n + b) * s->inner + i);
            if (c) return c;
        }
    return 0;
}

/* Stable merge sort of v[0..n) by slice order; tmp has n entries. */
static void merge_sort(const slices *s, int64_t *v, int64_t *tmp, int64_t n) {
    if (n < 2) return;
    int64_t h = n / 2, i = 0, j = h, k = 0;
    merge_sort(s, v, tmp, h);
    merge_sort(s, v + h, tmp, n - h);
    while (i < h && j < n) tmp[k++] = cmp_slices(s, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, sizeof(int64_t) * (size_t)n);
}

/* https://onnx.ai/onnx/operators/onnx__Unique.html */
static kiln_status unique(const kiln_node *node, const kiln_tensor *x, kiln_tensor *out) {
    const kiln_unique_params *p = node->params;
    slices s = {.x = x, .n = kiln_shape_count(x->rank, x->dims), .outer = 1, .inner = 1};
    int axis = 0;
    if (p->has_axis) {
        axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
        s.outer = kiln_shape_prod(x->dims, 0, axis);
        s.n = x->dims[axis];
        s.inner = kiln_shape_prod(x->dims, axis + 1, x->rank);
    }
    int64_t n = s.n;
    /* order: slices sorted; first/count: per group; group: the group of each slice */
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(6 * n + 1, sizeof(int64_t), &bytes));
    int64_t *buf = kiln_malloc(bytes);
    if (!buf) return kiln_node_error(node, KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    int64_t *order = buf, *tmp = buf + n, *first = buf + 2 * n, *count = buf + 3 * n, *group = buf + 4 * n;
    int64_t *pos_of_group = buf + 5 * n, u = 0;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    merge_sort(&s, order, tmp, n);
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || cmp_slices(&s, order[i - 1], order[i]) != 0) {
            first[u] = order[i];
            count[u] = 0;
            u++;
        }
        count[u - 1]++;
        group[order[i]] = u - 1;
    }
    /* output position of each group: sorted order, or order of first occurrence */
    for (int64_t g = 0; g < u; g++) pos_of_group[g] = p->sorted ? g : -1;
    for (int64_t i = 0, q = 0; i < n && !p->sorted; i++)
        if (pos_of_group[group[i]] < 0) pos_of_group[group[i]] = q++;

    kiln_status st = KILN_STATUS_OK;
    int64_t dims[KILN_MAX_RANK];
    int rank = p->has_axis ? x->rank : 1;
    if (p->has_axis) memcpy(dims, x->dims, sizeof(int64_t) * (size_t)rank);
    dims[axis] = u;
    st = kiln_shape_alloc(node, &out[0], x->dtype, rank, dims);
    for (int j = 1; st == KILN_STATUS_OK && j < node->n_outputs; j++) {
        int64_t len = j == 2 ? n : u;
        st = kiln_shape_alloc(node, &out[j], KILN_DTYPE_I64, 1, &len);
    }
    if (st == KILN_STATUS_OK) {
        size_t chunk = (size_t)s.inner * kiln_dtype_size(x->dtype);
        for (int64_t g = 0; g < u; g++) {
            int64_t q = pos_of_group[g];
            for (int64_t o = 0; o < s.outer && chunk; o++)
                memcpy((char *)out[0].data + (size_t)(o * u + q) * chunk,
                       (const char *)x->data + (size_t)(o * n + first[g]) * chunk, chunk);
            if (node->n_outputs > 1) ((int64_t *)out[1].data)[q] = first[g];
            if (node->n_outputs > 3) ((int64_t *)out[3].data)[q] = count[g];
        }
        if (node->n_outputs > 2)
            for (int64_t i = 0; i < n; i++) ((int64_t *)out[2].data)[i] = pos_of_group[group[i]];
    }
    free(buf);
    return st;
}

kiln_status kiln_ref_select(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    switch (node->op) {
    case KILN_OP_NonZero: return nonzero(node, in[0], out);
    case KILN_OP_Compress: return compress(node, in, out);
    default: return unique(node, in[0], out);
    }
}
