/* calibrate.h — from an observer (observer.h) to the amax of a tensor, by one of four methods,
 * and from amax to its symmetric int8 scale (amax / 127). docs/calibration.md explains them.
 *
 *   MINMAX      amax = max|x|.
 *   ENTROPY     TensorRT's EntropyCalibrator2 on the histogram without its exact zeros (taken out
 *               of bin 0: int8 holds 0 exactly at any threshold, and a ReLU's spike of zeros
 *               would otherwise decide the search): for i = start_bin .. BINS, P = bins [0, i) with
 *               the mass beyond i added to bin i-1; Q = the same bins merged into `levels` (128)
 *               groups, group g = bins [ceil(g*i/levels), ceil((g+1)*i/levels)), each group's
 *               mass spread evenly over its non-empty bins (empty bins stay 0); where P > 0 and
 *               Q == 0, Q gets KILN_CALIB_KL_EPS (in counts); both divided by P's total (so Q,
 *               without the clipped mass, sums to less than 1);
 *               KL(P||Q) = sum over P > 0 of P ln(P/Q). The first i with the smallest KL wins;
 *               amax = min((i + 0.5) * w, max|x|), w = the bin width.
 *   PERCENTILE  amax = the p-th percentile of |x| (p = 99.99 by default), read off the
 *               histogram's cumulative mass with linear interpolation inside the bin that
 *               crosses p; at most max|x|.
 *   MSE         amax = the candidate threshold T among the bin edges i*w, i = start_bin .. BINS,
 *               that minimises sum_k hist[k] * (c_k - s*min(rint(c_k/s), 127))^2 over the bin
 *               centres c_k = (k + 0.5) w, s = T/127; ties go to the smaller T.
 * All are deterministic functions of the observer. With no finite value observed the methods
 * fail with INVALID_ARGUMENT; an observer that saw only zeros gives amax 0 (scale 1).
 * Tested by tests/unit/test_quant.c and, against numpy and ONNX Runtime, tests/models/test_calibration.py. */
#ifndef KILN_QUANT_CALIBRATE_H
#define KILN_QUANT_CALIBRATE_H

#include "quant/observer.h"
#include "quant/quantize.h"

typedef enum kiln_calib_method {
    KILN_CALIB_MINMAX = 0,
    KILN_CALIB_ENTROPY = 1,
    KILN_CALIB_PERCENTILE = 2,
    KILN_CALIB_MSE = 3,
} kiln_calib_method;
#define KILN_CALIB_METHOD_COUNT 4

#define KILN_CALIB_DEFAULT_PERCENTILE 99.99
#define KILN_CALIB_DEFAULT_LEVELS 128    /* int8: 128 non-negative levels */
#define KILN_CALIB_DEFAULT_START_BIN 128 /* first candidate of ENTROPY and MSE */
#define KILN_CALIB_KL_EPS 1e-4           /* Q's mass (in samples) where P > 0 and Q == 0 */

/* Parameters of the methods; zero fields take the defaults above, so {0} (or NULL) is valid. */
typedef struct kiln_calib_options {
    double percentile; /* PERCENTILE: in (0, 100] */
    int levels;        /* ENTROPY: quantized levels Q is merged into, 2 .. start_bin */
    int start_bin;     /* ENTROPY, MSE: first candidate bin, levels .. BINS */
    int single_method; /* 1 + the only method whose amax a collection computes (a build needs one;
                          entropy is the costly one), 0: all four (kiln calibrate reports them) */
} kiln_calib_options;

/* "minmax", "entropy", "percentile", "mse"; NULL for an unknown value. */
const char *kiln_calib_method_name(kiln_calib_method m);
/* The inverse of kiln_calib_method_name (INVALID_ARGUMENT listing the names for others). */
kiln_status kiln_calib_method_parse(const char *name, kiln_calib_method *out);
/* The algorithm name a calibration cache header carries: "MinMaxCalibration",
 * "EntropyCalibration2" (TensorRT's names), "PercentileCalibration", "MSECalibration" (kiln's). */
const char *kiln_calib_method_cache_name(kiln_calib_method m);

/* amax of the observed tensor by method m. INVALID_ARGUMENT for bad options, an unknown method,
 * or an observer without finite values (its NaN/Inf counts are named). */
kiln_status kiln_calib_amax(const kiln_observer *obs, kiln_calib_method m, const kiln_calib_options *opt,
                            double *amax);
/* amax by every method, indexed by kiln_calib_method: the per-tensor report of why a layer
 * lost accuracy. */
kiln_status kiln_calib_amax_all(const kiln_observer *obs, const kiln_calib_options *opt,
                                double amax[KILN_CALIB_METHOD_COUNT]);
/* The symmetric int8 scale, amax / 127 rounded to float32. 1 for amax <= 0 or NaN (an all-zero
 * tensor: any scale represents it); the smallest positive float where amax / 127 underflows
 * and FLT_MAX where it overflows, so a scale is always finite and positive. */
float kiln_calib_scale(double amax);

#endif /* KILN_QUANT_CALIBRATE_H */
