/* tensor.c — tensor allocation, shapes, broadcasting helpers and the public tensor API. */
#include "core.h"

#include <string.h>

/* No single tensor may exceed this: a hostile model cannot make kiln ask for more. */
#define KILN_MAX_TENSOR_BYTES ((size_t)1 << 40)

int64_t kiln_shape_count(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return -1;
        if (dims[i] != 0 && n > INT64_MAX / dims[i]) return -1;
        n *= dims[i];
    }
    return n;
}

kiln_status kiln_checked_bytes(int64_t count, size_t elem_size, size_t *bytes) {
    if (count < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "tensor size is not known");
    if (elem_size && (uint64_t)count > KILN_MAX_TENSOR_BYTES / elem_size)
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY,
                          "tensor of %lld elements is larger than kiln's 1 TiB limit", (long long)count);
    *bytes = (size_t)count * elem_size;
    return KILN_STATUS_OK;
}

/* Unknown rank (-1: not inferred yet, e.g. an outer value seen from a subgraph at import) is not known. */
bool kiln_shape_known(const kiln_tensor *t) { return t->rank >= 0 && kiln_shape_count(t->rank, t->dims) >= 0; }

size_t kiln_tensor_bytes(const kiln_tensor *t) {
    int64_t n = kiln_shape_count(t->rank, t->dims);
    KILN_ASSERT(n >= 0);
    return (size_t)n * kiln_dtype_size(t->dtype);
}

kiln_status kiln_tensor_alloc(kiln_tensor *t, kiln_dtype dtype, int rank, const int64_t *dims) {
    if (rank < 0 || rank > KILN_MAX_RANK)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "rank %d is above kiln's limit of %d", rank,
                          KILN_MAX_RANK);
    for (int i = 0; i < rank; i++)
        if (dims[i] < 0)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "cannot allocate a tensor with dim %d = %lld",
                              i, (long long)dims[i]);
    if (kiln_dtype_size(dtype) == 0)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "dtype %s (%d) is not supported", kiln_dtype_name(dtype),
                          (int)dtype);
    int64_t count = kiln_shape_count(rank, dims);
    if (count < 0) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "tensor element count overflows");
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(count, kiln_dtype_size(dtype), &bytes));
    int64_t tmp[KILN_MAX_RANK];
    if (rank) memcpy(tmp, dims, sizeof(int64_t) * (size_t)rank); /* dims may alias t->dims */
    kiln_tensor_release(t);
    void *data = kiln_calloc(bytes ? bytes : 1, 1);
    if (!data)
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes for a tensor", bytes);
    t->dtype = dtype;
    t->rank = rank;
    if (rank) memcpy(t->dims, tmp, sizeof(int64_t) * (size_t)rank);
    t->data = data;
    t->flags |= KILN_TENSOR_OWNS_DATA;
    return KILN_STATUS_OK;
}

void kiln_tensor_release(kiln_tensor *t) {
    if (t->flags & KILN_TENSOR_OWNS_DATA) free(t->data);
    t->data = NULL;
    t->flags &= ~(uint32_t)KILN_TENSOR_OWNS_DATA;
}

kiln_status kiln_tensor_clone(const kiln_tensor *src, kiln_tensor **out) {
    kiln_tensor *t = kiln_calloc(1, sizeof *t);
    if (!t) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory cloning a tensor");
    kiln_status s = kiln_tensor_alloc(t, src->dtype, src->rank, src->dims);
    if (s) { free(t); return s; }
    if (src->data) memcpy(t->data, src->data, kiln_tensor_bytes(t));
    *out = t;
    return KILN_STATUS_OK;
}

const char *kiln_dims_str(int rank, const int64_t *dims, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < rank && k < n; i++) {
        if (dims[i] >= 0) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)dims[i]);
        else if (dims[i] == KILN_DIM_UNKNOWN) k += (size_t)snprintf(buf + k, n - k, "%s?", i ? "," : "");
        else k += (size_t)snprintf(buf + k, n - k, "%ss%lld", i ? "," : "", (long long)(-2 - dims[i]));
    }
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

const char *kiln_tensor_describe(const kiln_tensor *t, char *buf, size_t n) {
    char d[160];
    snprintf(buf, n, "%s%s", kiln_dtype_name(t->dtype), kiln_dims_str(t->rank, t->dims, d, sizeof d));
    return buf;
}

kiln_status kiln_broadcast_shape(int ra, const int64_t *a, int rb, const int64_t *b, int *rout,
                                 int64_t *out) {
    int r = ra > rb ? ra : rb;
    int64_t tmp[KILN_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int64_t da = i < r - ra ? 1 : a[i - (r - ra)];
        int64_t db = i < r - rb ? 1 : b[i - (r - rb)];
        if (da == db) tmp[i] = da;
        else if (da == 1) tmp[i] = db;
        else if (db == 1) tmp[i] = da;
        else if (da >= 0 && db >= 0) {
            char sa[160], sb[160];
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "shapes %s and %s do not broadcast",
                              kiln_dims_str(ra, a, sa, sizeof sa), kiln_dims_str(rb, b, sb, sizeof sb));
        } else if (da >= 0) tmp[i] = da; /* the unknown one must be 1 or equal */
        else if (db >= 0) tmp[i] = db;
        else tmp[i] = KILN_DIM_UNKNOWN;
    }
    memcpy(out, tmp, sizeof(int64_t) * (size_t)r);
    *rout = r;
    return KILN_STATUS_OK;
}

void kiln_contiguous_strides(int rank, const int64_t *dims, int64_t *strides) {
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i];
    }
}

void kiln_broadcast_strides(int rin, const int64_t *din, int rout, const int64_t *dout,
                            int64_t *strides) {
    int64_t s = 1;
    for (int i = rout - 1; i >= 0; i--) {
        int j = i - (rout - rin);
        if (j < 0) { strides[i] = 0; continue; }
        strides[i] = (din[j] == 1 && dout[i] != 1) ? 0 : s;
        s *= din[j];
    }
}

kiln_status kiln_norm_axis(int64_t axis, int rank, int *out) {
    int64_t lo = rank == 0 ? -1 : -rank, hi = rank == 0 ? 1 : rank;
    if (axis < lo || axis >= hi)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "axis %lld is out of range for rank %d",
                          (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + (rank ? rank : 1) : axis);
    return KILN_STATUS_OK;
}

/* ---- public API ---- */

kiln_status kiln_tensor_create(kiln_dtype dtype, int rank, const int64_t *dims, kiln_tensor_t **out) {
    if (!out || (rank > 0 && !dims)) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_create: NULL argument");
    *out = NULL;
    kiln_tensor *t = kiln_calloc(1, sizeof *t);
    if (!t) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status s = kiln_tensor_alloc(t, dtype, rank, dims);
    if (s) { free(t); return s; }
    *out = t;
    return KILN_STATUS_OK;
}

kiln_status kiln_tensor_wrap(kiln_dtype dtype, int rank, const int64_t *dims, void *data,
                             kiln_tensor_t **out) {
    if (!out || (rank > 0 && !dims)) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_wrap: NULL argument");
    *out = NULL;
    if (rank < 0 || rank > KILN_MAX_RANK)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_wrap: rank %d out of range", rank);
    if (kiln_dtype_size(dtype) == 0)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "kiln_tensor_wrap: dtype %d not supported", (int)dtype);
    for (int i = 0; i < rank; i++)
        if (dims[i] < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_wrap: negative dim");
    kiln_tensor *t = kiln_calloc(1, sizeof *t);
    if (!t) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    t->dtype = dtype;
    t->rank = rank;
    if (rank) memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
    t->data = data;
    *out = t;
    return KILN_STATUS_OK;
}

void kiln_tensor_destroy(kiln_tensor_t *t) {
    if (!t) return;
    kiln_tensor_release(t);
    free(t);
}

kiln_dtype kiln_tensor_dtype(const kiln_tensor_t *t) { return t->dtype; }
int kiln_tensor_rank(const kiln_tensor_t *t) { return t->rank; }
const int64_t *kiln_tensor_dims(const kiln_tensor_t *t) { return t->dims; }
int64_t kiln_tensor_count(const kiln_tensor_t *t) { return kiln_shape_count(t->rank, t->dims); }
size_t kiln_tensor_nbytes(const kiln_tensor_t *t) { return kiln_tensor_bytes(t); }
void *kiln_tensor_data(kiln_tensor_t *t) { return t->data; }
