/* calibrate.c — amax by minmax, entropy (TensorRT EntropyCalibrator2), percentile and mse from
 * an observer's |x| histogram; the rules are written out in calibrate.h and docs/calibration.md.
 * Tested by tests/unit/test_quant.c and tests/models/test_calibration.py (numpy reference). */
#include "quant/calibrate.h"

#include <float.h>
#include <math.h>
#include <string.h>

enum { BINS = KILN_OBSERVER_BINS };

static const char *const method_names[KILN_CALIB_METHOD_COUNT] = {"minmax", "entropy", "percentile", "mse"};
static const char *const cache_names[KILN_CALIB_METHOD_COUNT] = {"MinMaxCalibration", "EntropyCalibration2",
                                                                 "PercentileCalibration", "MSECalibration"};

const char *kiln_calib_method_name(kiln_calib_method m) {
    return (unsigned)m < KILN_CALIB_METHOD_COUNT ? method_names[m] : NULL;
}

const char *kiln_calib_method_cache_name(kiln_calib_method m) {
    return (unsigned)m < KILN_CALIB_METHOD_COUNT ? cache_names[m] : NULL;
}

kiln_status kiln_calib_method_parse(const char *name, kiln_calib_method *out) {
    for (int m = 0; name && m < KILN_CALIB_METHOD_COUNT; m++)
        if (strcmp(name, method_names[m]) == 0) {
            *out = (kiln_calib_method)m;
            return KILN_STATUS_OK;
        }
    return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "unknown calibration method '%s' (minmax, entropy, percentile or mse)",
                      name ? name : "(null)");
}

float kiln_calib_scale(double amax) {
    if (!(amax > 0)) return 1.0f;
    double s = amax / 127.0;
    if (s > FLT_MAX) return FLT_MAX;
    float f = (float)s;
    return f > 0 ? f : FLT_TRUE_MIN;
}

/* ---- entropy ---- */

/* Exact zeros are left out of P and Q: int8 represents 0 exactly at every threshold, so they say
 * nothing about which threshold is best, and as a spike in bin 0 (half of a ReLU's output, say)
 * they would dominate the divergence and pull the threshold down to the smallest candidate. */
static double entropy_amax(const kiln_observer *o, int levels, int start) {
    double h[BINS], suffix[BINS + 1], q[BINS];
    memcpy(h, o->hist, sizeof h);
    h[0] -= (double)o->zero_count;
    if (h[0] < 0) h[0] = 0; /* re-binning rounds; zeros never leave bin 0 */
    suffix[BINS] = 0;
    for (int k = BINS - 1; k >= 0; k--) suffix[k] = suffix[k + 1] + h[k];
    double best_kl = INFINITY;
    int best_i = BINS;
    for (int i = start; i <= BINS; i++) {
        /* Q: bins [0, i) merged into `levels` groups and expanded over each group's non-empty bins */
        for (int g = 0; g < levels; g++) {
            int s = (int)(((int64_t)g * i + levels - 1) / levels), e = (int)(((int64_t)(g + 1) * i + levels - 1) / levels);
            double mass = 0;
            int nz = 0;
            for (int k = s; k < e; k++) {
                mass += h[k];
                nz += h[k] > 0;
            }
            for (int k = s; k < e; k++) q[k] = h[k] > 0 ? mass / nz : 0;
        }
        /* P: bins [0, i) with the clipped mass folded into bin i-1; smoothing of Q. Both are
         * normalised by P's total, all the values observed: Q, made of the unclipped values only,
         * then falls short by the clipped mass, which adds about the clipped fraction to the
         * divergence. Normalising Q by its own sum instead (the published pseudo-code) lets a
         * candidate that clips nearly everything into one bin match with a divergence near 0, and
         * discrete data (8-bit pixels) were then clipped at the first candidate. */
        double sum_p = 0;
        for (int k = 0; k < i; k++) {
            double p = k == i - 1 ? h[k] + suffix[i] : h[k];
            if (p > 0 && q[k] == 0) q[k] = KILN_CALIB_KL_EPS;
            sum_p += p;
        }
        double kl = 0;
        for (int k = 0; k < i; k++) {
            double p = k == i - 1 ? h[k] + suffix[i] : h[k];
            if (p > 0) {
                double pn = p / sum_p, qn = q[k] / sum_p;
                kl += pn * log(pn / qn);
            }
        }
        if (kl < best_kl) {
            best_kl = kl;
            best_i = i;
        }
    }
    return (best_i + 0.5) * kiln_observer_bin_width(o);
}

/* ---- percentile ---- */

static double percentile_amax(const kiln_observer *o, double pct) {
    const double *h = o->hist;
    double total = 0;
    for (int k = 0; k < BINS; k++) total += h[k];
    double target = pct / 100.0 * total, cum = 0, w = kiln_observer_bin_width(o);
    for (int k = 0; k < BINS; k++) {
        double prev = cum;
        cum += h[k];
        if (h[k] > 0 && cum >= target) {
            double frac = (target - prev) / h[k];
            if (frac < 0) frac = 0;
            if (frac > 1) frac = 1;
            return (k + frac) * w;
        }
    }
    return o->max_abs;
}

/* ---- mse ---- */

static double mse_amax(const kiln_observer *o, int start) {
    const double *h = o->hist;
    double w = kiln_observer_bin_width(o), best_err = INFINITY, best_t = o->max_abs;
    for (int i = start; i <= BINS; i++) {
        double t = i * w, s = t / 127.0, err = 0;
        for (int k = 0; k < BINS; k++) {
            if (h[k] == 0) continue;
            double c = (k + 0.5) * w, qv = rint(c / s);
            if (qv > 127) qv = 127;
            double d = c - qv * s;
            err += h[k] * d * d;
        }
        if (err < best_err) {
            best_err = err;
            best_t = t;
        }
    }
    return best_t;
}

static kiln_status check_options(const kiln_calib_options *opt, kiln_calib_options *o) {
    *o = opt ? *opt : (kiln_calib_options){0};
    if (o->percentile == 0) o->percentile = KILN_CALIB_DEFAULT_PERCENTILE;
    if (o->levels == 0) o->levels = KILN_CALIB_DEFAULT_LEVELS;
    if (o->start_bin == 0) o->start_bin = KILN_CALIB_DEFAULT_START_BIN;
    if (!(o->percentile > 0 && o->percentile <= 100))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration: percentile %g outside (0, 100]", o->percentile);
    if (o->start_bin < 1 || o->start_bin > BINS)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration: start bin %d outside [1, %d]", o->start_bin, BINS);
    if (o->levels < 2 || o->levels > o->start_bin)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration: %d levels outside [2, start bin %d]", o->levels,
                          o->start_bin);
    return KILN_STATUS_OK;
}

kiln_status kiln_calib_amax(const kiln_observer *obs, kiln_calib_method m, const kiln_calib_options *opt,
                            double *amax) {
    if (!obs || !amax) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_amax: NULL argument");
    kiln_calib_options o;
    KILN_TRY(check_options(opt, &o));
    if ((unsigned)m >= KILN_CALIB_METHOD_COUNT)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_amax: unknown method %d", (int)m);
    if (obs->count == 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                          "calibration (%s): no finite values observed (%lld NaN, %lld Inf in %lld batches)",
                          method_names[m], (long long)obs->nan_count, (long long)obs->inf_count,
                          (long long)obs->batches);
    double a;
    if (obs->max_abs == 0) a = 0;
    else switch (m) {
    case KILN_CALIB_MINMAX: a = obs->max_abs; break;
    case KILN_CALIB_ENTROPY: a = entropy_amax(obs, o.levels, o.start_bin); break;
    case KILN_CALIB_PERCENTILE: a = percentile_amax(obs, o.percentile); break;
    default: a = mse_amax(obs, o.start_bin); break;
    }
    *amax = a < obs->max_abs ? a : obs->max_abs;
    return KILN_STATUS_OK;
}

kiln_status kiln_calib_amax_all(const kiln_observer *obs, const kiln_calib_options *opt,
                                double amax[KILN_CALIB_METHOD_COUNT]) {
    for (int m = 0; m < KILN_CALIB_METHOD_COUNT; m++) KILN_TRY(kiln_calib_amax(obs, (kiln_calib_method)m, opt, &amax[m]));
    return KILN_STATUS_OK;
}
