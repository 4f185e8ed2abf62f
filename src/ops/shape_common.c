/* shape_common.c — the shape group's shared helpers (see shape_internal.h): dtype checks,
 * reading shape-like inputs, axes normalisation, index checks and the strided copy.
 * No op lives here. Tested through the node tests of the shape group's ops. */
#include "shape_internal.h"

kiln_status kiln_shape_new_params(kiln_node *node, size_t size, void **out) {
    void *p = kiln_calloc(1, size);
    if (!p) return kiln_node_error(node, KILN_STATUS_OUT_OF_MEMORY, "out of memory for its parameters");
    node->params = p;
    *out = p;
    return KILN_STATUS_OK;
}

kiln_status kiln_shape_check_dtype(const kiln_node *node, int input, kiln_dtype t) {
    if (t == KILN_DTYPE_UNDEFINED || kiln_dtype_size(t) > 0) return KILN_STATUS_OK;
    return kiln_node_bad_dtype(node, input, t);
}

kiln_status kiln_shape_check_index(const kiln_node *node, int input, kiln_dtype t) {
    if (t == KILN_DTYPE_UNDEFINED || t == KILN_DTYPE_I32 || t == KILN_DTYPE_I64) return KILN_STATUS_OK;
    return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "input %d has dtype %s; int32 or int64 expected",
                           input, kiln_dtype_name(t));
}

kiln_status kiln_shape_read_ints(const kiln_node *node, const kiln_tensor *t, const char *what,
                                 int64_t *out, int cap, int *n) {
    if (t->rank > 1) {
        char b[160];
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input '%s' should be 1-D, got shape %s", what,
                               kiln_dims_str(t->rank, t->dims, b, sizeof b));
    }
    if (!kiln_dtype_is_int(t->dtype))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input '%s' has dtype %s; an integer type expected",
                               what, kiln_dtype_name(t->dtype));
    int64_t count = t->rank == 0 ? 1 : t->dims[0];
    if (count > cap) /* more values than dims of a tensor kiln can hold */
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "input '%s' has %lld values, kiln's limit is %d (rank %d)",
                               what, (long long)count, cap, KILN_MAX_RANK);
    for (int64_t i = 0; i < count; i++) out[i] = kiln_load_i64(t->dtype, t->data, i);
    *n = (int)count;
    return KILN_STATUS_OK;
}

kiln_status kiln_shape_check_size(const kiln_node *node, const kiln_tensor *out) {
    for (int i = 0; i < out->rank; i++)
        if (out->dims[i] < 0) return KILN_STATUS_OK; /* not known yet */
    int64_t n = kiln_shape_count(out->rank, out->dims);
    size_t bytes;
    size_t es = kiln_dtype_size(out->dtype);
    if (n < 0 || kiln_checked_bytes(n, es ? es : 1, &bytes) != KILN_STATUS_OK) {
        char b[160];
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "output shape %s is too large",
                               kiln_dims_str(out->rank, out->dims, b, sizeof b));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_shape_norm_axes(const kiln_node *node, const int64_t *axes, int n, int rank,
                                 const char *what, int *out) {
    bool seen[KILN_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        if (axes[i] < -rank || axes[i] >= rank)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s[%d] = %lld is out of range for rank %d",
                                   what, i, (long long)axes[i], rank);
        int a = (int)(axes[i] < 0 ? axes[i] + rank : axes[i]);
        if (seen[a])
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "%s repeats axis %d", what, a);
        seen[a] = true;
        out[i] = a;
    }
    return KILN_STATUS_OK;
}

void kiln_shape_strided_copy(void *dst, const void *src, size_t es, int rank, const int64_t *dims,
                             int64_t offset, const int64_t *strides) {
    int64_t n = kiln_shape_count(rank, dims);
    if (n <= 0) return;
    int64_t idx[KILN_MAX_RANK] = {0};
    int64_t off = offset;
    for (int64_t i = 0; i < n; i++) {
        kiln_shape_copy_elem(dst, i, src, off, es);
        for (int k = rank - 1; k >= 0; k--) {
            off += strides[k];
            if (++idx[k] < dims[k]) break;
            off -= strides[k] * dims[k];
            idx[k] = 0;
        }
    }
}

kiln_status kiln_shape_index(const kiln_node *node, const kiln_tensor *indices, int64_t i,
                             int64_t bound, int64_t *out) {
    int64_t v = kiln_load_i64(indices->dtype, indices->data, i);
    int64_t w = v < 0 ? v + bound : v;
    if (w < 0 || w >= bound)
        return kiln_node_error(node, KILN_STATUS_RUNTIME_ERROR, "index %lld (at position %lld) is out of range [%lld, %lld)",
                               (long long)v, (long long)i, (long long)-bound, (long long)bound);
    *out = w;
    return KILN_STATUS_OK;
}

kiln_status kiln_shape_alloc(const kiln_node *node, kiln_tensor *out, kiln_dtype dtype, int rank,
                             const int64_t *dims) {
    if (out->data && out->rank == rank && out->dtype == dtype &&
        memcmp(out->dims, dims, sizeof(int64_t) * (size_t)rank) == 0)
        return KILN_STATUS_OK;
    kiln_status s = kiln_tensor_alloc(out, dtype, rank, dims);
    if (s != KILN_STATUS_OK) return kiln_error_prefix(s, "node '%s' (%s)", node->name, kiln_op_name(node->op));
    return KILN_STATUS_OK;
}
