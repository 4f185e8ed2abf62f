/* pool.c — reference kernels of MaxPool, AveragePool, LpPool and the global pools
 * (https://onnx.ai/onnx/operators/onnx__MaxPool.html, onnx__AveragePool.html,
 * onnx__LpPool.html, onnx__GlobalAveragePool.html, onnx__GlobalMaxPool.html,
 * onnx__GlobalLpPool.html), any number of spatial dims, in double.
 *
 * For each output position the window is cut, per dim, to the taps that land inside the input;
 * AveragePool divides by those taps' count, or with count_include_pad by the taps inside the
 * padded input (the explicit pads, not the extra room ceil_mode adds). MaxPool keeps the first
 * maximum in row-major window order and its flat index into X (row- or column-major spatial
 * order per storage_order). Tested by test_maxpool*, test_averagepool*, test_lppool*,
 * test_global*pool*. */
#include "../../ops/nn_internal.h"

#include <math.h>

static kiln_status global_pool(const kiln_node *node, const kiln_pool_params *p, const double *x, int64_t planes,
                               int64_t size, double *y) {
    for (int64_t pl = 0; pl < planes; pl++) {
        const double *v = x + pl * size;
        double acc;
        if (node->op == KILN_OP_GlobalMaxPool) {
            acc = -INFINITY;
            for (int64_t i = 0; i < size; i++)
                if (v[i] > acc || isnan(v[i])) acc = v[i];
        } else if (node->op == KILN_OP_GlobalAveragePool) {
            acc = 0;
            for (int64_t i = 0; i < size; i++) acc += v[i];
            acc /= (double)size;
        } else {
            acc = 0;
            for (int64_t i = 0; i < size; i++) acc += pow(fabs(v[i]), p->p);
            acc = pow(acc, 1.0 / p->p);
        }
        y[pl] = acc;
    }
    return KILN_STATUS_OK;
}

/* One window: taps k in [k0[i], k1[i]) per dim land inside the input. */
typedef struct window_cut {
    int64_t start[KILN_NN_MAX_SPATIAL], k0[KILN_NN_MAX_SPATIAL], k1[KILN_NN_MAX_SPATIAL];
    int64_t padded_count; /* taps inside the explicitly padded input */
} window_cut;

static void cut_window(const kiln_window_dims *d, const int64_t *in, const int64_t *o, window_cut *c) {
    c->padded_count = 1;
    for (int i = 0; i < d->nsp; i++) {
        int64_t st = o[i] * d->strides[i] - d->pad_begin[i], dl = d->dilations[i], k = d->kernel[i];
        c->start[i] = st;
        int64_t k0 = 0, k1 = k, n_pad = 0;
        while (k0 < k && st + k0 * dl < 0) k0++;
        while (k1 > k0 && st + (k1 - 1) * dl >= in[i]) k1--;
        for (int64_t j = 0; j < k; j++) {
            int64_t pos = st + j * dl;
            if (pos >= -d->pad_begin[i] && pos < in[i] + d->pad_end[i]) n_pad++;
        }
        c->k0[i] = k0;
        c->k1[i] = k1;
        c->padded_count *= n_pad;
    }
}

kiln_status kiln_ref_pool(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const kiln_pool_params *p = node->params;
    const kiln_tensor *X = in[0];
    int nsp = X->rank - 2;
    int64_t planes = X->dims[0] * X->dims[1], in_size = kiln_nn_prod(X->dims, 2, X->rank);
    int64_t out_size = kiln_nn_prod(out[0].dims, 2, out[0].rank), total = planes * out_size;
    if (total == 0) return KILN_STATUS_OK;
    double *x = kiln_nn_to_f64(X), *y = kiln_nn_alloc_f64(total);
    if (!x || !y) {
        free(x);
        free(y);
        return KILN_STATUS_OUT_OF_MEMORY;
    }
    if (node->op == KILN_OP_GlobalAveragePool || node->op == KILN_OP_GlobalMaxPool ||
        node->op == KILN_OP_GlobalLpPool) {
        global_pool(node, p, x, planes, in_size, y);
        goto store;
    }
    kiln_window_dims d;
    kiln_status s = kiln_nn_window_resolve(node, &p->w, nsp, X->dims + 2, p->w.kernel, &d);
    if (s) {
        free(x);
        free(y);
        return s;
    }
    const int64_t *idims = X->dims + 2;
    int64_t rstride[KILN_NN_MAX_SPATIAL], cstride[KILN_NN_MAX_SPATIAL]; /* row/column-major strides */
    kiln_contiguous_strides(nsp, idims, rstride);
    int64_t cacc = 1;
    for (int i = 0; i < nsp; i++) {
        cstride[i] = cacc;
        cacc *= idims[i];
    }
    int64_t *ind = node->n_outputs > 1 && out[1].data ? out[1].data : NULL;
    for (int64_t pl = 0; pl < planes; pl++) {
        const double *xp = x + pl * in_size;
        int64_t o[KILN_NN_MAX_SPATIAL] = {0};
        for (int64_t oi = 0; oi < out_size; oi++) {
            window_cut c;
            cut_window(&d, idims, o, &c);
            bool empty = false;
            for (int i = 0; i < nsp; i++) empty |= c.k0[i] >= c.k1[i];
            double best = -INFINITY, sum = 0;
            int64_t best_idx = -1, n_valid = 0;
            int64_t k[KILN_NN_MAX_SPATIAL];
            for (int i = 0; i < nsp; i++) k[i] = c.k0[i];
            while (!empty) {
                int64_t off = 0, coff = 0;
                for (int i = 0; i < nsp; i++) {
                    int64_t pos = c.start[i] + k[i] * d.dilations[i];
                    off += pos * rstride[i];
                    coff += pos * cstride[i];
                }
                double v = xp[off];
                if (node->op == KILN_OP_MaxPool) {
                    if (best_idx < 0 || v > best) {
                        best = v;
                        best_idx = p->column_major ? coff : off;
                    }
                } else if (node->op == KILN_OP_AveragePool) {
                    sum += v;
                } else {
                    sum += pow(fabs(v), p->p);
                }
                n_valid++;
                int i = nsp - 1;
                for (; i >= 0; i--) {
                    if (++k[i] < c.k1[i]) break;
                    k[i] = c.k0[i];
                }
                if (i < 0) break;
            }
            double r;
            if (node->op == KILN_OP_MaxPool) r = best;
            else if (node->op == KILN_OP_AveragePool)
                r = sum / (double)(p->count_include_pad ? c.padded_count : n_valid);
            else r = pow(sum, 1.0 / p->p);
            y[pl * out_size + oi] = r;
            if (ind) ind[pl * out_size + oi] = best_idx < 0 ? -1 : pl * in_size + best_idx;
            for (int i = nsp - 1; i >= 0; i--) { /* next output position */
                if (++o[i] < out[0].dims[2 + i]) break;
                o[i] = 0;
            }
        }
    }
store:
    kiln_nn_from_f64(&out[0], y, total);
    free(x);
    free(y);
    return KILN_STATUS_OK;
}
