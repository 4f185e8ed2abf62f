/* cumulative.c — reference kernels of CumSum and CumProd (parse and infer in
 * src/ops/cumulative.c). Along the axis, forwards or (reverse) backwards, each output is the
 * sum/product of the elements up to and including (or, exclusive, before) it. Floats run in
 * double and round on store; integers exactly, wrapping in 64 bits then to the dtype.
 * Tested by the node tests test_cumsum*, test_cumprod*. */
#include "../../ops/reduce_internal.h"

kiln_status kiln_ref_cumulative(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const red_cum_params *p = node->params;
    const kiln_tensor *x = in[0];
    kiln_dtype t = x->dtype;
    int64_t a = 0;
    int axis;
    KILN_TRY(red_read_scalar_int(node, in[1], "axis", &a));
    KILN_TRY(kiln_norm_axis(a, x->rank, &axis));
    int64_t outer, len, inner;
    red_split_axis(x, axis, &outer, &len, &inner);
    bool prod = node->op == KILN_OP_CumProd;
    bool is_float = kiln_dtype_is_float(t);
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * len * inner + i;
            double accf = prod ? 1.0 : 0.0;
            uint64_t acci = prod ? 1 : 0;
            for (int64_t s = 0; s < len; s++) {
                int64_t j = p->reverse ? len - 1 - s : s;
                int64_t at = base + j * inner;
                if (is_float) {
                    double v = kiln_load_f64(t, x->data, at);
                    if (!p->exclusive) accf = prod ? accf * v : accf + v;
                    red_store_f64(t, out[0].data, at, accf);
                    if (p->exclusive) accf = prod ? accf * v : accf + v;
                } else {
                    uint64_t v = (uint64_t)kiln_load_i64(t, x->data, at);
                    if (!p->exclusive) acci = prod ? acci * v : acci + v;
                    kiln_store_i64(t, out[0].data, at, (int64_t)acci);
                    if (p->exclusive) acci = prod ? acci * v : acci + v;
                }
            }
        }
    }
    return KILN_STATUS_OK;
}
