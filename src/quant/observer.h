/* observer.h — the per-tensor statistics that INT8 calibration is computed from.
 *
 * An observer is fed the values of one tensor, batch after batch, as the FP32 model runs over
 * the calibration set. It keeps the signed min and max, max|x|, how many finite values it saw
 * (NaN and ±Inf are counted apart and left out of everything else), and a histogram of |x|
 * with KILN_OBSERVER_BINS bins spanning [0, max|x|]. When a batch raises max|x| the old
 * histogram is re-binned onto the wider range first: each old bin's mass is split between the
 * (at most two) new bins it overlaps, in proportion to the overlap. Counts are doubles for that
 * reason. Everything is sequential and deterministic: the same batches give the same bits.
 *
 * Binning: value a = |x| (in double) goes to bin floor(a * (BINS / max_abs)), the last bin also
 * holding a == max_abs. Exact zeros are also counted apart (zero_count): a ReLU output is often
 * mostly zeros, which int8 represents exactly at any scale, and the entropy method leaves them out. A batch is first counted in integers, then added to the histogram.
 *
 * One observer must not be fed from two threads at once; separate observers are independent.
 * It knows nothing of graphs or executors; calibrate.h turns an observer into an amax.
 * Tested by tests/unit/test_quant.c and tests/models/test_calibration.py. */
#ifndef KILN_QUANT_OBSERVER_H
#define KILN_QUANT_OBSERVER_H

#include "core/core.h"

#define KILN_OBSERVER_BINS 2048

typedef struct kiln_observer {
    double min, max;      /* signed extremes of the finite values; 0 when count == 0 */
    double max_abs;       /* max |x| of the finite values = the histogram's upper edge */
    int64_t count;        /* finite values seen (= the histogram's total mass, up to rounding) */
    int64_t zero_count;   /* of those, exact zeros (±0): always in bin 0, whatever max|x| becomes */
    int64_t nan_count;    /* NaNs seen (excluded) */
    int64_t inf_count;    /* +Inf and -Inf seen (excluded) */
    int64_t batches;      /* non-empty feeds */
    int64_t rebins;       /* times the histogram was stretched to a larger max_abs */
    double hist[KILN_OBSERVER_BINS]; /* mass of |x| in [k*w, (k+1)*w), w = max_abs / BINS */
} kiln_observer;

/* A new, empty observer (OUT_OF_MEMORY on failure). destroy(NULL) is a no-op. */
kiln_status kiln_observer_create(kiln_observer **out);
void kiln_observer_destroy(kiln_observer *obs);
/* Forgets everything seen so far. */
void kiln_observer_reset(kiln_observer *obs);

/* Feeds n float32 values (n == 0 is a no-op). INVALID_ARGUMENT for n < 0 or x == NULL with n > 0. */
kiln_status kiln_observer_feed(kiln_observer *obs, const float *x, int64_t n);
/* Same for data of another float dtype: F32, F64, F16 or BF16 (UNSUPPORTED for others).
 * F64 values are observed in double, without rounding to float. */
kiln_status kiln_observer_feed_typed(kiln_observer *obs, kiln_dtype dtype, const void *x, int64_t n);

/* Width of one histogram bin, max_abs / BINS (0 before any nonzero value). */
double kiln_observer_bin_width(const kiln_observer *obs);
/* Sum of the histogram (== count but for rounding after re-binning). */
double kiln_observer_mass(const kiln_observer *obs);

#endif /* KILN_QUANT_OBSERVER_H */
