/* argminmax.c — reference kernel of ArgMax and ArgMin (parse and infer in src/ops/argminmax.c).
 * Floats compare in double, integers exactly (uint64 unsigned). Ties give the first index, or
 * the last with select_last_index. A NaN wins like in numpy (the first NaN is selected).
 * Tested by the node tests test_argmax*, test_argmin*. */
#include "../../ops/reduce_internal.h"

/* Whether candidate a should replace the current best b. */
static bool better_f(bool is_max, bool last, double a, double b) {
    if (isnan(b)) return false;
    if (isnan(a)) return true;
    return is_max ? (a > b || (last && a == b)) : (a < b || (last && a == b));
}

kiln_status kiln_ref_argminmax(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_arg_params *p = node->params;
    const kiln_tensor *x = in[0];
    int axis;
    KILN_TRY(kiln_norm_axis(p->axis, x->rank, &axis));
    int64_t outer, len, inner;
    red_split_axis(x, axis, &outer, &len, &inner);
    bool is_max = node->op == KILN_OP_ArgMax;
    bool is_float = kiln_dtype_is_float(x->dtype);
    bool is_u64 = x->dtype == KILN_DTYPE_U64;
    int64_t *y = out[0].data;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * len * inner + i;
            int64_t best = 0;
            if (is_float) {
                double bv = kiln_load_f64(x->dtype, x->data, base);
                for (int64_t j = 1; j < len; j++) {
                    double v = kiln_load_f64(x->dtype, x->data, base + j * inner);
                    if (better_f(is_max, p->select_last_index, v, bv)) {
                        bv = v;
                        best = j;
                    }
                }
            } else {
                int64_t bv = kiln_load_i64(x->dtype, x->data, base);
                for (int64_t j = 1; j < len; j++) {
                    int64_t v = kiln_load_i64(x->dtype, x->data, base + j * inner);
                    int c = is_u64 ? ((uint64_t)v > (uint64_t)bv) - ((uint64_t)v < (uint64_t)bv) : (v > bv) - (v < bv);
                    if (!is_max) c = -c;
                    if (c > 0 || (c == 0 && p->select_last_index)) {
                        bv = v;
                        best = j;
                    }
                }
            }
            y[o * inner + i] = best;
        }
    }
    return KILN_STATUS_OK;
}
