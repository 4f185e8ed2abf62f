/* reduce.c — reference kernels of the Reduce* ops (parse and infer in src/ops/reduce.c).
 * One walk over the input adds each element into the accumulator of its output element.
 * Floats accumulate in double and round once on store. Integers are exact: Sum, Prod,
 * SumSquare, L1 wrap in 64 bits and then to the dtype (numpy's behaviour), Mean divides the
 * exact sum with truncation, Max/Min compare as signed or, for uint64, unsigned. L2, LogSum and
 * LogSumExp of integers go through double. Empty reductions give the identity: 0 for the sums,
 * 1 for Prod, -inf/+inf (the dtype's min/max for integers, false/true for bool) for Max/Min,
 * -inf for LogSum/LogSumExp, NaN for Mean. Max/Min propagate NaN like numpy.
 * Tested by the node tests test_reduce_*. */
#include "../../ops/reduce_internal.h"

/* Walks the input in row-major order keeping the offset of the output element it reduces into. */
typedef struct reduce_walk {
    int rank;
    int64_t dims[KILN_MAX_RANK], idx[KILN_MAX_RANK], ostride[KILN_MAX_RANK];
    int64_t off;
} reduce_walk;

static void walk_init(reduce_walk *w, const kiln_tensor *x, const bool *mask) {
    memset(w, 0, sizeof *w);
    w->rank = x->rank;
    int64_t s = 1;
    for (int d = x->rank - 1; d >= 0; d--) {
        w->dims[d] = x->dims[d];
        w->ostride[d] = mask[d] ? 0 : s;
        if (!mask[d]) s *= x->dims[d];
    }
}

static void walk_next(reduce_walk *w) {
    for (int d = w->rank - 1; d >= 0; d--) {
        w->idx[d]++;
        w->off += w->ostride[d];
        if (w->idx[d] < w->dims[d]) return;
        w->off -= w->ostride[d] * w->dims[d];
        w->idx[d] = 0;
    }
}

static bool op_is_float_only(int op) {
    return op == KILN_OP_ReduceL2 || op == KILN_OP_ReduceLogSum || op == KILN_OP_ReduceLogSumExp;
}

static kiln_status reduce_float(const kiln_node *node, const kiln_tensor *x, const bool *mask, kiln_tensor *y,
                                int64_t n_in, int64_t n_out, int64_t count) {
    int op = node->op;
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(n_out ? n_out : 1, sizeof(double), &bytes));
    double *acc = kiln_malloc(bytes);
    double *mx = op == KILN_OP_ReduceLogSumExp ? kiln_malloc(bytes) : NULL;
    if (!acc || (op == KILN_OP_ReduceLogSumExp && !mx)) {
        free(acc);
        free(mx);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    double init = 0.0;
    if (op == KILN_OP_ReduceProd) init = 1.0;
    else if (op == KILN_OP_ReduceMax) init = -INFINITY;
    else if (op == KILN_OP_ReduceMin) init = INFINITY;
    for (int64_t o = 0; o < n_out; o++) acc[o] = init;

    reduce_walk w;
    if (mx) {
        /* LogSumExp: shift by the largest finite value of each group (0 if none). */
        for (int64_t o = 0; o < n_out; o++) mx[o] = -INFINITY;
        walk_init(&w, x, mask);
        for (int64_t i = 0; i < n_in; i++, walk_next(&w)) {
            double v = kiln_load_f64(x->dtype, x->data, i);
            if (isfinite(v) && v > mx[w.off]) mx[w.off] = v;
        }
        for (int64_t o = 0; o < n_out; o++)
            if (mx[o] == -INFINITY) mx[o] = 0.0;
    }
    walk_init(&w, x, mask);
    for (int64_t i = 0; i < n_in; i++, walk_next(&w)) {
        double v = kiln_load_f64(x->dtype, x->data, i);
        double *a = &acc[w.off];
        switch (op) {
        case KILN_OP_ReduceMax: if (!isnan(*a) && (isnan(v) || v > *a)) *a = v; break;
        case KILN_OP_ReduceMin: if (!isnan(*a) && (isnan(v) || v < *a)) *a = v; break;
        case KILN_OP_ReduceProd: *a *= v; break;
        case KILN_OP_ReduceL1: *a += fabs(v); break;
        case KILN_OP_ReduceL2: case KILN_OP_ReduceSumSquare: *a += v * v; break;
        case KILN_OP_ReduceLogSumExp: *a += exp(v - mx[w.off]); break;
        default: *a += v; break; /* Sum, Mean, LogSum */
        }
    }
    for (int64_t o = 0; o < n_out; o++) {
        double v = acc[o];
        switch (op) {
        case KILN_OP_ReduceMean: v = v / (double)count; break;
        case KILN_OP_ReduceL2: v = sqrt(v); break;
        case KILN_OP_ReduceLogSum: v = log(v); break;
        case KILN_OP_ReduceLogSumExp: v = log(v) + mx[o]; break;
        default: break;
        }
        red_store_f64(y->dtype, y->data, o, v);
    }
    free(acc);
    free(mx);
    return KILN_STATUS_OK;
}

/* The identity of Max (lowest value) or Min (highest value) for integer dtype t. */
static uint64_t int_extreme(kiln_dtype t, bool lowest) {
    if (t == KILN_DTYPE_BOOL) return lowest ? 0 : 1;
    int bits = (int)kiln_dtype_size(t) * 8;
    if (red_dtype_class(t) == RED_T_UINT)
        return lowest ? 0 : (bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1);
    uint64_t smax = ((uint64_t)1 << (bits - 1)) - 1;
    return lowest ? ~smax : smax; /* two's complement bits of the signed min / max */
}

static kiln_status reduce_int(const kiln_node *node, const kiln_tensor *x, const bool *mask, kiln_tensor *y,
                              int64_t n_in, int64_t n_out, int64_t count) {
    int op = node->op;
    kiln_dtype t = x->dtype;
    bool is_u64 = t == KILN_DTYPE_U64;
    size_t bytes;
    KILN_TRY(kiln_checked_bytes(n_out ? n_out : 1, sizeof(uint64_t), &bytes));
    uint64_t *acc = kiln_malloc(bytes);
    if (!acc) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    uint64_t init = 0;
    if (op == KILN_OP_ReduceProd) init = 1;
    else if (op == KILN_OP_ReduceMax) init = int_extreme(t, true);
    else if (op == KILN_OP_ReduceMin) init = int_extreme(t, false);
    for (int64_t o = 0; o < n_out; o++) acc[o] = init;

    reduce_walk w;
    walk_init(&w, x, mask);
    for (int64_t i = 0; i < n_in; i++, walk_next(&w)) {
        int64_t s = kiln_load_i64(t, x->data, i);
        uint64_t v = (uint64_t)s;
        uint64_t *a = &acc[w.off];
        bool greater = is_u64 ? v > *a : s > (int64_t)*a;
        bool less = is_u64 ? v < *a : s < (int64_t)*a;
        switch (op) {
        case KILN_OP_ReduceMax: if (greater) *a = v; break;
        case KILN_OP_ReduceMin: if (less) *a = v; break;
        case KILN_OP_ReduceProd: *a *= v; break;
        case KILN_OP_ReduceL1: *a += (!is_u64 && s < 0) ? 0 - v : v; break;
        case KILN_OP_ReduceSumSquare: *a += v * v; break;
        default: *a += v; break; /* Sum, Mean */
        }
    }
    for (int64_t o = 0; o < n_out; o++) {
        uint64_t v = acc[o];
        if (op == KILN_OP_ReduceMean) {
            if (count == 0) v = 0;
            else if (is_u64) v = v / (uint64_t)count;
            else v = (uint64_t)((int64_t)v / count);
        }
        kiln_store_i64(y->dtype, y->data, o, (int64_t)v);
    }
    free(acc);
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_reduce(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_tensor *x = in[0];
    bool mask[KILN_MAX_RANK], known;
    KILN_TRY(red_reduce_mask(node, in, mask, &known));
    KILN_ASSERT(known);
    int64_t n_in = kiln_shape_count(x->rank, x->dims);
    int64_t n_out = kiln_shape_count(out[0].rank, out[0].dims);
    int64_t count = 1;
    for (int d = 0; d < x->rank; d++)
        if (mask[d]) count *= x->dims[d];
    if (kiln_dtype_is_float(x->dtype) || op_is_float_only(node->op))
        return reduce_float(node, x, mask, &out[0], n_in, n_out, count);
    return reduce_int(node, x, mask, &out[0], n_in, n_out, count);
}
