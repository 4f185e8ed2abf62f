/* nn_common.c — the nn group's shared helpers (see nn_internal.h): window attributes of
 * Conv/ConvTranspose/pools, their output-size rules, and tensor <-> double conversion.
 * No op lives here. Tested through the conv and pool node tests. */
#include "nn_internal.h"

#include <string.h>

kiln_status kiln_nn_parse_window(kiln_node *node, kiln_attrs *attrs, kiln_window *w, bool with_ceil) {
    memset(w, 0, sizeof *w);
    KILN_TRY(kiln_attr_ints_fixed(attrs, "kernel_shape", w->kernel, KILN_NN_MAX_SPATIAL, &w->n_kernel));
    KILN_TRY(kiln_attr_ints_fixed(attrs, "strides", w->strides, KILN_NN_MAX_SPATIAL, &w->n_strides));
    KILN_TRY(kiln_attr_ints_fixed(attrs, "dilations", w->dilations, KILN_NN_MAX_SPATIAL, &w->n_dilations));
    KILN_TRY(kiln_attr_ints_fixed(attrs, "pads", w->pads, 2 * KILN_NN_MAX_SPATIAL, &w->n_pads));
    char ap[32];
    KILN_TRY(kiln_attr_string(attrs, "auto_pad", "NOTSET", ap, sizeof ap));
    if (strcmp(ap, "NOTSET") == 0 || ap[0] == 0) w->auto_pad = KILN_AUTO_PAD_NOTSET;
    else if (strcmp(ap, "SAME_UPPER") == 0) w->auto_pad = KILN_AUTO_PAD_SAME_UPPER;
    else if (strcmp(ap, "SAME_LOWER") == 0) w->auto_pad = KILN_AUTO_PAD_SAME_LOWER;
    else if (strcmp(ap, "VALID") == 0) w->auto_pad = KILN_AUTO_PAD_VALID;
    else return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute auto_pad = '%s' is not valid", ap);
    if (with_ceil) {
        int64_t c;
        KILN_TRY(kiln_attr_int(attrs, "ceil_mode", 0, &c));
        w->ceil_mode = c != 0;
    }
    for (int i = 0; i < w->n_kernel; i++)
        if (w->kernel[i] <= 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute kernel_shape[%d] = %lld is not positive",
                                   i, (long long)w->kernel[i]);
    for (int i = 0; i < w->n_strides; i++)
        if (w->strides[i] <= 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute strides[%d] = %lld is not positive",
                                   i, (long long)w->strides[i]);
    for (int i = 0; i < w->n_dilations; i++)
        if (w->dilations[i] <= 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute dilations[%d] = %lld is not positive",
                                   i, (long long)w->dilations[i]);
    for (int i = 0; i < w->n_pads; i++)
        if (w->pads[i] < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute pads[%d] = %lld is negative", i,
                                   (long long)w->pads[i]);
    if (w->n_pads % 2)
        return kiln_node_error(node, KILN_STATUS_INVALID_MODEL, "attribute pads has an odd length %d", w->n_pads);
    return KILN_STATUS_OK;
}

kiln_status kiln_nn_window_resolve(const kiln_node *node, const kiln_window *w, int nsp,
                                   const int64_t *in_sp, const int64_t *kernel, kiln_window_dims *d) {
    if (nsp > KILN_NN_MAX_SPATIAL)
        return kiln_node_error(node, KILN_STATUS_UNSUPPORTED, "%d spatial dims is above kiln's limit", nsp);
    if ((w->n_kernel && w->n_kernel != nsp) || (w->n_strides && w->n_strides != nsp) ||
        (w->n_dilations && w->n_dilations != nsp) || (w->n_pads && w->n_pads != 2 * nsp))
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                               "attributes kernel_shape/strides/dilations/pads have %d/%d/%d/%d values for %d spatial dims",
                               w->n_kernel, w->n_strides, w->n_dilations, w->n_pads, nsp);
    d->nsp = nsp;
    for (int i = 0; i < nsp; i++) {
        int64_t k = kernel[i], s = w->n_strides ? w->strides[i] : 1;
        int64_t dl = w->n_dilations ? w->dilations[i] : 1, in = in_sp[i];
        d->kernel[i] = k;
        d->strides[i] = s;
        d->dilations[i] = dl;
        d->pad_begin[i] = w->n_pads ? w->pads[i] : 0;
        d->pad_end[i] = w->n_pads ? w->pads[nsp + i] : 0;
        if (w->auto_pad == KILN_AUTO_PAD_VALID) d->pad_begin[i] = d->pad_end[i] = 0;
        if (k < 0 || in < 0) { /* not known yet */
            d->out[i] = KILN_DIM_UNKNOWN;
            continue;
        }
        int64_t ek = (k - 1) * dl + 1;
        if (w->auto_pad == KILN_AUTO_PAD_SAME_UPPER || w->auto_pad == KILN_AUTO_PAD_SAME_LOWER) {
            int64_t out = (in + s - 1) / s;
            int64_t total = (out - 1) * s + ek - in;
            if (total < 0) total = 0;
            int64_t small = total / 2, big = total - small;
            d->pad_begin[i] = w->auto_pad == KILN_AUTO_PAD_SAME_UPPER ? small : big;
            d->pad_end[i] = w->auto_pad == KILN_AUTO_PAD_SAME_UPPER ? big : small;
            d->out[i] = out;
            continue;
        }
        int64_t span = in + d->pad_begin[i] + d->pad_end[i] - ek;
        if (span < 0)
            return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT,
                                   "spatial dim %d: input %lld (padded by %lld+%lld) is smaller than the window %lld", i,
                                   (long long)in, (long long)d->pad_begin[i], (long long)d->pad_end[i], (long long)ek);
        int64_t out = span / s + 1;
        if (w->ceil_mode && span % s) {
            out = span / s + 2;
            if ((out - 1) * s >= in + d->pad_begin[i]) out--; /* the last window must start inside */
        }
        d->out[i] = out;
    }
    return KILN_STATUS_OK;
}

double *kiln_nn_alloc_f64(int64_t n) {
    size_t bytes;
    if (kiln_checked_bytes(n, sizeof(double), &bytes) != KILN_STATUS_OK) return NULL;
    double *p = kiln_calloc(bytes ? bytes : 1, 1);
    if (!p) kiln_error(KILN_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes of scratch", bytes);
    return p;
}

double *kiln_nn_to_f64(const kiln_tensor *t) {
    int64_t n = kiln_shape_count(t->rank, t->dims);
    double *p = kiln_nn_alloc_f64(n);
    if (!p) return NULL;
    if (t->dtype == KILN_DTYPE_F32) {
        const float *f = t->data;
        for (int64_t i = 0; i < n; i++) p[i] = f[i];
    } else {
        for (int64_t i = 0; i < n; i++) p[i] = kiln_load_f64(t->dtype, t->data, i);
    }
    return p;
}

void kiln_nn_from_f64(kiln_tensor *t, const double *v, int64_t n) {
    if (t->dtype == KILN_DTYPE_F32) {
        float *f = t->data;
        for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) kiln_store_f64(t->dtype, t->data, i, v[i]);
}
