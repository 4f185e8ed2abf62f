/* where_clip.c — reference kernels of Where and Clip (parse and infer in src/ops/where_clip.c).
 * Where copies elements (any dtype, by size) through a three-way broadcast. Clip computes
 * min(max(x, lo), hi) — so hi wins when lo > hi, as numpy.clip does — exactly for integers
 * (unsigned ones compared as unsigned) and in double for floats; NaN passes through. Absent
 * bounds are the dtype's lowest and highest finite values (numeric_limits, as the spec says), so
 * float infinities are clipped to them.
 * Tested by the node tests test_where_*, test_clip*. */
#include "../../ops/math_internal.h"

#include <float.h>

static kiln_status ref_where(kiln_tensor *const *in, kiln_tensor *y) {
    const kiln_tensor *ins[3] = {in[0], in[1], in[2]};
    math_bcast it;
    math_bcast_init(&it, y, 3, ins);
    size_t esize = kiln_dtype_size(y->dtype);
    int64_t n = kiln_shape_count(y->rank, y->dims);
    const uint8_t *cond = in[0]->data;
    for (int64_t i = 0; i < n; i++, math_bcast_next(&it)) {
        const char *src = cond[it.off[0]] ? (const char *)in[1]->data + it.off[1] * esize
                                          : (const char *)in[2]->data + it.off[2] * esize;
        memcpy((char *)y->data + i * esize, src, esize);
    }
    return KILN_STATUS_OK;
}

/* numeric_limits<T>::max() of a float dtype: Clip's default bound (so that Clip maps inf to it). */
static double float_max(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_F16: return 65504.0;
    case KILN_DTYPE_BF16: return 3.3895313892515355e38; /* 0x7f7f */
    case KILN_DTYPE_F32: return FLT_MAX;
    default: return DBL_MAX;
    }
}

static kiln_status ref_clip(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *y) {
    const kiln_tensor *x = in[0];
    const kiln_tensor *lo = node->n_declared > 1 ? in[1] : NULL, *hi = node->n_declared > 2 ? in[2] : NULL;
    kiln_dtype dt = x->dtype;
    int64_t n = kiln_shape_count(x->rank, x->dims);
    if (kiln_dtype_is_float(dt)) {
        double vlo = -float_max(dt), vhi = float_max(dt);
        const math_clip_params *p = node->params;
        if (p) {
            vlo = p->min;
            vhi = p->max;
        }
        if (lo) vlo = kiln_load_f64(dt, lo->data, 0);
        if (hi) vhi = kiln_load_f64(dt, hi->data, 0);
        for (int64_t i = 0; i < n; i++) {
            double v = kiln_load_f64(dt, x->data, i);
            if (v < vlo) v = vlo;
            if (v > vhi) v = vhi;
            math_store_f64(dt, y->data, i, v);
        }
        return KILN_STATUS_OK;
    }
    bool is_unsigned = math_is_unsigned(dt);
    uint64_t ulo = lo ? math_load_u64(dt, lo->data, 0) : 0, uhi = hi ? math_load_u64(dt, hi->data, 0) : UINT64_MAX;
    int64_t slo = lo ? kiln_load_i64(dt, lo->data, 0) : INT64_MIN, shi = hi ? kiln_load_i64(dt, hi->data, 0) : INT64_MAX;
    for (int64_t i = 0; i < n; i++) {
        if (is_unsigned) {
            uint64_t v = math_load_u64(dt, x->data, i);
            if (v < ulo) v = ulo;
            if (v > uhi) v = uhi;
            kiln_store_i64(dt, y->data, i, (int64_t)v);
        } else {
            int64_t v = kiln_load_i64(dt, x->data, i);
            if (v < slo) v = slo;
            if (v > shi) v = shi;
            kiln_store_i64(dt, y->data, i, v);
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_where_clip(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    return node->op == KILN_OP_Where ? ref_where(in, &out[0]) : ref_clip(node, in, &out[0]);
}
