/* observer.c — min/max/max|x| and the |x| histogram of one tensor over many batches.
 * See observer.h for the binning and re-binning rules. Tested by tests/unit/test_quant.c. */
#include "quant/observer.h"

#include <math.h>
#include <string.h>

enum { CHUNK = 1024 };

kiln_status kiln_observer_create(kiln_observer **out) {
    if (!out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_observer_create: NULL out");
    *out = kiln_calloc(1, sizeof **out);
    if (!*out) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "kiln_observer_create: out of memory");
    return KILN_STATUS_OK;
}

void kiln_observer_destroy(kiln_observer *obs) { free(obs); }

void kiln_observer_reset(kiln_observer *obs) {
    if (obs) memset(obs, 0, sizeof *obs);
}

double kiln_observer_bin_width(const kiln_observer *obs) { return obs->max_abs / KILN_OBSERVER_BINS; }

double kiln_observer_mass(const kiln_observer *obs) {
    double s = 0;
    for (int k = 0; k < KILN_OBSERVER_BINS; k++) s += obs->hist[k];
    return s;
}

/* Converts elements [off, off + m) of x to double. */
static void load_chunk(kiln_dtype t, const void *x, int64_t off, int64_t m, double *buf) {
    switch (t) {
    case KILN_DTYPE_F32:
        for (int64_t i = 0; i < m; i++) buf[i] = ((const float *)x)[off + i];
        break;
    case KILN_DTYPE_F64:
        memcpy(buf, (const double *)x + off, (size_t)m * sizeof *buf);
        break;
    case KILN_DTYPE_F16:
        for (int64_t i = 0; i < m; i++) buf[i] = kiln_f16_to_f32(((const uint16_t *)x)[off + i]);
        break;
    default: /* BF16, checked by the caller */
        for (int64_t i = 0; i < m; i++) buf[i] = kiln_bf16_to_f32(((const uint16_t *)x)[off + i]);
        break;
    }
}

/* Stretches the histogram from [0, max_abs] to [0, new_max] (new_max > max_abs): old bin j
 * covers [j*r, (j+1)*r) in new-bin units, r = max_abs / new_max < 1, so it overlaps new bin
 * k = floor(j*r) and maybe k+1; its mass is split in proportion to the overlaps. */
static void rebin(kiln_observer *obs, double new_max) {
    double old = obs->max_abs;
    obs->max_abs = new_max;
    if (old == 0) return; /* everything seen was 0: it stays in bin 0 */
    double r = old / new_max, out[KILN_OBSERVER_BINS] = {0};
    for (int j = 0; j < KILN_OBSERVER_BINS; j++) {
        double m = obs->hist[j];
        if (m == 0) continue;
        double lo = j * r, hi = (j + 1) * r;
        int64_t k = (int64_t)lo;
        if (k > KILN_OBSERVER_BINS - 1) k = KILN_OBSERVER_BINS - 1;
        if (hi <= (double)(k + 1) || k + 1 >= KILN_OBSERVER_BINS) {
            out[k] += m;
        } else {
            double part = m * (((double)(k + 1) - lo) / (hi - lo));
            out[k] += part;
            out[k + 1] += m - part;
        }
    }
    memcpy(obs->hist, out, sizeof out);
    obs->rebins++;
}

kiln_status kiln_observer_feed_typed(kiln_observer *obs, kiln_dtype dtype, const void *x, int64_t n) {
    if (!obs) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_observer_feed: NULL observer");
    if (n < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_observer_feed: negative count %lld", (long long)n);
    if (n > 0 && !x) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_observer_feed: NULL data with %lld values", (long long)n);
    if (dtype != KILN_DTYPE_F32 && dtype != KILN_DTYPE_F64 && dtype != KILN_DTYPE_F16 && dtype != KILN_DTYPE_BF16)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "kiln_observer_feed: cannot observe %s data (f32, f64, f16 or bf16 expected)",
                          kiln_dtype_name(dtype));
    if (n == 0) return KILN_STATUS_OK;

    /* pass 1: extremes and non-finite counts */
    double buf[CHUNK], bmin = INFINITY, bmax = -INFINITY, babs = 0;
    int64_t finite = 0, zeros = 0;
    for (int64_t off = 0; off < n; off += CHUNK) {
        int64_t m = n - off < CHUNK ? n - off : CHUNK;
        load_chunk(dtype, x, off, m, buf);
        for (int64_t i = 0; i < m; i++) {
            double v = buf[i];
            if (isnan(v)) obs->nan_count++;
            else if (isinf(v)) obs->inf_count++;
            else {
                finite++;
                zeros += v == 0;
                if (v < bmin) bmin = v;
                if (v > bmax) bmax = v;
                if (fabs(v) > babs) babs = fabs(v);
            }
        }
    }
    obs->batches++;
    if (finite == 0) return KILN_STATUS_OK;
    if (obs->count == 0) {
        obs->min = bmin;
        obs->max = bmax;
        obs->max_abs = babs; /* the histogram is empty: no re-binning needed */
    } else {
        if (bmin < obs->min) obs->min = bmin;
        if (bmax > obs->max) obs->max = bmax;
        if (babs > obs->max_abs) rebin(obs, babs);
    }
    obs->count += finite;
    obs->zero_count += zeros;

    /* pass 2: count the batch in integers, then add it to the histogram */
    int64_t counts[KILN_OBSERVER_BINS] = {0};
    double top = obs->max_abs, inv = KILN_OBSERVER_BINS / top;
    bool fast = isfinite(inv); /* false only for a subnormal max_abs */
    for (int64_t off = 0; off < n; off += CHUNK) {
        int64_t m = n - off < CHUNK ? n - off : CHUNK;
        load_chunk(dtype, x, off, m, buf);
        for (int64_t i = 0; i < m; i++) {
            double v = buf[i];
            if (!isfinite(v)) continue;
            double a = fabs(v);
            int64_t k = top == 0 ? 0 : (int64_t)(fast ? a * inv : (a / top) * KILN_OBSERVER_BINS);
            if (k > KILN_OBSERVER_BINS - 1) k = KILN_OBSERVER_BINS - 1;
            counts[k]++;
        }
    }
    for (int k = 0; k < KILN_OBSERVER_BINS; k++)
        if (counts[k]) obs->hist[k] += (double)counts[k];
    return KILN_STATUS_OK;
}

kiln_status kiln_observer_feed(kiln_observer *obs, const float *x, int64_t n) {
    return kiln_observer_feed_typed(obs, KILN_DTYPE_F32, x, n);
}
