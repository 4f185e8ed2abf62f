/* test_quant.c — unit tests of src/quant: the observer's histogram (re-binning keeps mass and
 * max, NaN/Inf excluded, dtypes agree, determinism), the four calibration methods, the scalar
 * quantize reference and per-channel weights, FNV-1a, and the calibration cache (round trip,
 * TensorRT caches, fingerprint mismatch, malformed lines, names holding ':').
 * Prints one line per failed check and a closing "N passed, N failed"; exits 1 on failure.
 *
 * Also a small driver for tests/models/test_calibration.py, which compares with numpy:
 *     test_quant --amax METHOD|all FILE.f32 [--batch N] [--percentile P] [--hist OUT.f64]
 * reads raw little-endian float32, feeds it N values at a time (default: all at once), and
 * prints "amax=<%.17g> max_abs=... bin_width=... count=... zeros=... nan=... inf=... rebins=..." (with
 * "all": one "METHOD=<amax>" per method); --hist writes the final histogram as raw float64. */
#include "core/core.h"
#include "quant/cache.h"
#include "quant/calibrate.h"
#include "quant/observer.h"
#include "quant/quantize.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (cond) passed++;                                                                        \
        else {                                                                                     \
            failed++;                                                                              \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* ---- deterministic random numbers (splitmix64) ---- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform(void) { return (double)(rng_u64() >> 11) * 0x1p-53; } /* [0, 1) */
static double rng_normal(void) {
    double u = rng_uniform(), v = rng_uniform();
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}
static double rng_laplace(void) {
    double u = rng_uniform() - 0.5;
    return (u < 0 ? 1.0 : -1.0) * log(1.0 - 2.0 * fabs(u));
}

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint32_t float_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static double hist_mass(const kiln_observer *o) { return kiln_observer_mass(o); }

/* Mean squared error of symmetric int8 quantize/dequantize of x with the scale of amax. */
static double quant_mse(const float *x, int64_t n, double amax) {
    float s = kiln_calib_scale(amax);
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        float y = kiln_dequantize_ref(kiln_quantize_ref(x[i], s, 0, -128, 127), s, 0);
        e += ((double)x[i] - y) * ((double)x[i] - y);
    }
    return e / (double)n;
}

/* ---- observer ---- */

static void test_observer_basic(void) {
    kiln_observer *o;
    CHECK(kiln_observer_create(&o) == KILN_STATUS_OK);
    float x[] = {1.0f, -3.0f, 2.5f, NAN, INFINITY, -INFINITY, 0.0f, 3.0f};
    CHECK(kiln_observer_feed(o, x, 8) == KILN_STATUS_OK);
    CHECK(o->min == -3.0 && o->max == 3.0 && o->max_abs == 3.0);
    CHECK(o->count == 5 && o->nan_count == 1 && o->inf_count == 2 && o->batches == 1);
    CHECK(hist_mass(o) == 5.0);
    /* bins: w = 3/2048; |x| = 1 -> bin floor(1*2048/3) = 682; 3 -> 2048 clamped to 2047 (twice) */
    CHECK(o->hist[0] == 1 && o->hist[682] == 1 && o->hist[2047] == 2 && o->hist[(int)(2.5 * 2048 / 3)] == 1);
    CHECK(kiln_observer_bin_width(o) == 3.0 / 2048);
    /* no-op and bad feeds */
    CHECK(kiln_observer_feed(o, NULL, 0) == KILN_STATUS_OK && o->batches == 1);
    CHECK(kiln_observer_feed(o, NULL, 3) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(kiln_observer_feed(o, x, -1) == KILN_STATUS_INVALID_ARGUMENT);
    int32_t ints[2] = {1, 2};
    CHECK(kiln_observer_feed_typed(o, KILN_DTYPE_I32, ints, 2) == KILN_STATUS_UNSUPPORTED);
    CHECK(strstr(kiln_last_error(), "int32") != NULL);
    /* a batch of only NaN leaves the statistics alone */
    float nans[3] = {NAN, NAN, NAN};
    CHECK(kiln_observer_feed(o, nans, 3) == KILN_STATUS_OK && o->nan_count == 4 && o->count == 5 && o->max_abs == 3.0);
    kiln_observer_reset(o);
    CHECK(o->count == 0 && o->max_abs == 0 && hist_mass(o) == 0);
    double amax;
    CHECK(kiln_observer_feed(o, nans, 3) == KILN_STATUS_OK);
    CHECK(kiln_calib_amax(o, KILN_CALIB_MINMAX, NULL, &amax) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(kiln_last_error(), "3 NaN") != NULL);
    kiln_observer_destroy(o);
    kiln_observer_destroy(NULL);
}

static void test_observer_dtypes(void) {
    enum { N = 5000 };
    static float f[N];
    static double d[N];
    static uint16_t h[N], b[N];
    for (int i = 0; i < N; i++) {
        /* values exact in f16 and bf16: integers of 8 bits times 1/8 */
        float v = (float)((int)(rng_u64() % 511) - 255) / 8.0f;
        f[i] = v;
        d[i] = v;
        h[i] = kiln_f32_to_f16(v);
        b[i] = kiln_f32_to_bf16(v);
    }
    kiln_observer *o[4];
    for (int i = 0; i < 4; i++) kiln_observer_create(&o[i]);
    CHECK(kiln_observer_feed(o[0], f, N) == KILN_STATUS_OK);
    CHECK(kiln_observer_feed_typed(o[1], KILN_DTYPE_F64, d, N) == KILN_STATUS_OK);
    CHECK(kiln_observer_feed_typed(o[2], KILN_DTYPE_F16, h, N) == KILN_STATUS_OK);
    CHECK(kiln_observer_feed_typed(o[3], KILN_DTYPE_BF16, b, N) == KILN_STATUS_OK);
    for (int i = 1; i < 4; i++) CHECK(memcmp(o[0], o[i], sizeof *o[0]) == 0);
    /* f64 values beyond float range are observed as they are */
    double big[2] = {1e300, -2e300};
    CHECK(kiln_observer_feed_typed(o[1], KILN_DTYPE_F64, big, 2) == KILN_STATUS_OK && o[1]->max_abs == 2e300 &&
          o[1]->min == -2e300 && o[1]->inf_count == 0);
    for (int i = 0; i < 4; i++) kiln_observer_destroy(o[i]);
}

static void test_observer_rebin(void) {
    kiln_observer *o, *o2;
    kiln_observer_create(&o);
    kiln_observer_create(&o2);
    enum { B = 4000 };
    static float x[B];
    double true_max = 0, true_sum = 0;
    int64_t n = 0;
    /* 60 batches whose max grows (by 0.5 % to 3x) and sometimes shrinks */
    for (int bt = 0; bt < 60; bt++) {
        double spread = bt % 7 == 3 ? 0.5 : 1.0 + bt * 0.05 * (bt % 3);
        for (int i = 0; i < B; i++) {
            x[i] = (float)(rng_normal() * spread);
            true_max = fmax(true_max, fabs(x[i]));
            true_sum += fabs(x[i]);
        }
        n += B;
        CHECK(kiln_observer_feed(o, x, B) == KILN_STATUS_OK);
        CHECK(kiln_observer_feed(o2, x, B) == KILN_STATUS_OK);
        double m = hist_mass(o);
        CHECK_MSG(fabs(m - (double)n) <= 1e-9 * (double)n, "batch %d: mass %.17g, count %lld", bt, m, (long long)n);
        CHECK(o->max_abs == true_max && o->count == n);
        CHECK(o->hist[KILN_OBSERVER_BINS - 1] > 0); /* the max always lies in the last bin */
    }
    CHECK(o->rebins > 5);
    CHECK(memcmp(o, o2, sizeof *o) == 0); /* deterministic */
    /* the histogram's mean |x| stays within a bin or two of the true mean despite re-binning */
    double w = kiln_observer_bin_width(o), hmean = 0;
    for (int k = 0; k < KILN_OBSERVER_BINS; k++) hmean += o->hist[k] * (k + 0.5) * w;
    hmean /= hist_mass(o);
    CHECK_MSG(fabs(hmean - true_sum / (double)n) < 2 * w, "mean from histogram %g, true %g, bin %g", hmean,
              true_sum / (double)n, w);

    /* exact re-binning: max 1 -> max 2 merges bin pairs; max 0 -> anything keeps the zeros in bin 0 */
    kiln_observer_reset(o);
    float a[] = {0.0f, 0.25f, 0.5f, 1.0f};
    kiln_observer_feed(o, a, 4);
    CHECK(o->hist[0] == 1 && o->hist[512] == 1 && o->hist[1024] == 1 && o->hist[2047] == 1);
    float two = 2.0f;
    kiln_observer_feed(o, &two, 1);
    CHECK(o->rebins == 1 && o->hist[0] == 1 && o->hist[256] == 1 && o->hist[512] == 1 && o->hist[1023] == 1 &&
          o->hist[2047] == 1 && hist_mass(o) == 5);
    kiln_observer_reset(o);
    float zeros[3] = {0, 0, -0.0f};
    kiln_observer_feed(o, zeros, 3);
    double amax = -1;
    CHECK(kiln_calib_amax(o, KILN_CALIB_ENTROPY, NULL, &amax) == KILN_STATUS_OK && amax == 0);
    CHECK(kiln_calib_scale(amax) == 1.0f);
    kiln_observer_feed(o, &two, 1);
    CHECK(o->hist[0] == 3 && o->hist[2047] == 1 && o->max_abs == 2);
    /* a proportional split: max 1 -> 1.5: old bin 2047 covers new bins [1364.67, 1365.33) */
    kiln_observer_reset(o);
    float one = 1.0f, onehalf = 1.5f;
    kiln_observer_feed(o, &one, 1);
    kiln_observer_feed(o, &onehalf, 1);
    double r = 1.0 / 1.5, lo = 2047 * r, hi = 2048 * r;
    CHECK(fabs(o->hist[1364] - (1365 - lo) / (hi - lo)) < 1e-12 && fabs(o->hist[1365] - (hi - 1365) / (hi - lo)) < 1e-12);
    CHECK(hist_mass(o) == 2.0);
    kiln_observer_destroy(o);
    kiln_observer_destroy(o2);
}

/* ---- calibration methods ---- */

static void test_minmax(void) {
    kiln_observer *o;
    kiln_observer_create(&o);
    float x[] = {0.1f, -7.25f, 3.0f};
    float y[] = {6.5f, -0.5f};
    kiln_observer_feed(o, x, 3);
    kiln_observer_feed(o, y, 2);
    double amax;
    CHECK(kiln_calib_amax(o, KILN_CALIB_MINMAX, NULL, &amax) == KILN_STATUS_OK && amax == 7.25);
    CHECK(kiln_calib_scale(amax) == (float)(7.25 / 127));
    CHECK(kiln_calib_scale(127 * 0.0078125) == 0.0078125f);
    CHECK(kiln_calib_scale(-1) == 1.0f && kiln_calib_scale(NAN) == 1.0f && kiln_calib_scale(1e300) == FLT_MAX &&
          kiln_calib_scale(1e-300) == FLT_TRUE_MIN);
    kiln_observer_destroy(o);
}

static void test_percentile(void) {
    kiln_observer *o;
    kiln_observer_create(&o);
    enum { N = 1000000 };
    float *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++) x[i] = (float)(rng_uniform() * 2 - 1); /* |x| ~ U[0, 1) */
    for (int off = 0; off < N; off += 100000) kiln_observer_feed(o, x + off, 100000);
    double w = kiln_observer_bin_width(o), amax;
    double ps[] = {50, 90, 99, 99.9, 99.99, 100};
    for (int i = 0; i < 6; i++) {
        kiln_calib_options opt = {.percentile = ps[i]};
        CHECK(kiln_calib_amax(o, KILN_CALIB_PERCENTILE, &opt, &amax) == KILN_STATUS_OK);
        double want = ps[i] / 100 * o->max_abs, tol = w + 4 * sqrt(ps[i] / 100 * (1 - ps[i] / 100) / N);
        CHECK_MSG(fabs(amax - want) <= tol, "p=%g: amax %.6f, want %.6f +- %.6f", ps[i], amax, want, tol);
    }
    CHECK(kiln_calib_amax(o, KILN_CALIB_PERCENTILE, &(kiln_calib_options){.percentile = 100}, &amax) == 0 &&
          amax <= o->max_abs && amax >= o->max_abs - w);
    /* default is 99.99 */
    double a1, a2;
    kiln_calib_amax(o, KILN_CALIB_PERCENTILE, NULL, &a1);
    kiln_calib_amax(o, KILN_CALIB_PERCENTILE, &(kiln_calib_options){.percentile = 99.99}, &a2);
    CHECK(a1 == a2);
    CHECK(kiln_calib_amax(o, KILN_CALIB_PERCENTILE, &(kiln_calib_options){.percentile = 100.5}, &amax) ==
          KILN_STATUS_INVALID_ARGUMENT);
    CHECK(kiln_calib_amax(o, KILN_CALIB_PERCENTILE, &(kiln_calib_options){.percentile = -1}, &amax) ==
          KILN_STATUS_INVALID_ARGUMENT);
    CHECK(kiln_calib_amax(o, KILN_CALIB_ENTROPY, &(kiln_calib_options){.levels = 300}, &amax) ==
          KILN_STATUS_INVALID_ARGUMENT);
    CHECK(kiln_calib_amax(o, (kiln_calib_method)9, NULL, &amax) == KILN_STATUS_INVALID_ARGUMENT);
    free(x);
    kiln_observer_destroy(o);
}

static void test_entropy_mse(void) {
    enum { N = 200000 };
    float *x = malloc(N * sizeof *x);
    /* Gaussian with a few large outliers: entropy must clip far below max|x| */
    for (int i = 0; i < N; i++) x[i] = (float)rng_normal();
    for (int i = 0; i < 20; i++) x[i * 997] = (float)((i % 2 ? -1 : 1) * (30 + i));
    kiln_observer *o;
    kiln_observer_create(&o);
    kiln_observer_feed(o, x, N);
    double amax[KILN_CALIB_METHOD_COUNT];
    CHECK(kiln_calib_amax_all(o, NULL, amax) == KILN_STATUS_OK);
    CHECK(amax[KILN_CALIB_MINMAX] == 49.0);
    CHECK_MSG(amax[KILN_CALIB_ENTROPY] > 2.0 && amax[KILN_CALIB_ENTROPY] < 0.4 * o->max_abs, "entropy amax %g, max %g",
              amax[KILN_CALIB_ENTROPY], o->max_abs);
    /* mse keeps most of these outliers: clipping 20 values in 200000 by ~40 costs more squared error
     * than the coarser step (0.39) does */
    CHECK_MSG(amax[KILN_CALIB_MSE] <= o->max_abs && amax[KILN_CALIB_MSE] > 0.5 * o->max_abs, "mse amax %g",
              amax[KILN_CALIB_MSE]);
    /* entropy is (i + 0.5) bins: check it lies on that grid */
    double w = kiln_observer_bin_width(o), i = amax[KILN_CALIB_ENTROPY] / w - 0.5;
    CHECK(fabs(i - rint(i)) < 1e-6 && rint(i) >= 128 && rint(i) <= 2048);
    /* mse beats minmax (and entropy stays near mse) in actual quantization error */
    double e_mm = quant_mse(x, N, amax[KILN_CALIB_MINMAX]), e_mse = quant_mse(x, N, amax[KILN_CALIB_MSE]);
    CHECK_MSG(e_mse < e_mm, "mse error %g, minmax error %g", e_mse, e_mm);

    /* heavy tails without planted outliers: Laplace */
    for (int k = 0; k < N; k++) x[k] = (float)rng_laplace();
    kiln_observer_reset(o);
    kiln_observer_feed(o, x, N);
    CHECK(kiln_calib_amax_all(o, NULL, amax) == KILN_STATUS_OK);
    e_mm = quant_mse(x, N, amax[KILN_CALIB_MINMAX]);
    e_mse = quant_mse(x, N, amax[KILN_CALIB_MSE]);
    double e_ent = quant_mse(x, N, amax[KILN_CALIB_ENTROPY]), e_pct = quant_mse(x, N, amax[KILN_CALIB_PERCENTILE]);
    /* (typically: max|x| 13, amax minmax 13, entropy 10, percentile 8.8, mse 9.7; errors 9.1e-4, 6.2e-4,
     * 6.6e-4, 6.1e-4) */
    CHECK_MSG(e_mse < 0.8 * e_mm, "laplace: mse error %g, minmax error %g", e_mse, e_mm);
    CHECK_MSG(e_mse <= e_ent * 1.05 && e_mse <= e_pct * 1.05, "laplace: mse %g, entropy %g, percentile %g", e_mse, e_ent,
              e_pct);
    /* on a uniform distribution nothing should be clipped much */
    for (int k = 0; k < N; k++) x[k] = (float)(rng_uniform() * 2 - 1);
    kiln_observer_reset(o);
    kiln_observer_feed(o, x, N);
    CHECK(kiln_calib_amax_all(o, NULL, amax) == KILN_STATUS_OK);
    CHECK_MSG(amax[KILN_CALIB_ENTROPY] > 0.9 * o->max_abs && amax[KILN_CALIB_MSE] > 0.9 * o->max_abs,
              "uniform: entropy %g, mse %g, max %g", amax[KILN_CALIB_ENTROPY], amax[KILN_CALIB_MSE], o->max_abs);
    /* determinism */
    double again[KILN_CALIB_METHOD_COUNT];
    kiln_calib_amax_all(o, NULL, again);
    CHECK(memcmp(amax, again, sizeof amax) == 0);
    free(x);
    kiln_observer_destroy(o);
}

/* A ReLU output, mostly exact zeros: entropy leaves the zeros out (int8 holds 0 exactly at any
 * threshold), so it chooses what it chooses for the positive values alone, and does not clip at
 * the first candidate as the zero spike would make it. */
static void test_entropy_zeros(void) {
    enum { N = 300000 };
    float *x = malloc(N * sizeof *x), *pos = malloc(N * sizeof *pos);
    int64_t np_ = 0;
    for (int i = 0; i < N; i++) {
        double v = rng_normal() - 0.2; /* about 58 % zeros after the ReLU */
        x[i] = v > 0 ? (float)v : (i % 2 ? 0.0f : -0.0f);
        if (v > 0) pos[np_++] = x[i];
    }
    kiln_observer *a, *b;
    kiln_observer_create(&a);
    kiln_observer_create(&b);
    kiln_observer_feed(a, x, N);
    kiln_observer_feed(b, pos, np_);
    CHECK(a->zero_count == N - np_ && b->zero_count == 0 && a->max_abs == b->max_abs);
    double ea, eb;
    CHECK(kiln_calib_amax(a, KILN_CALIB_ENTROPY, NULL, &ea) == KILN_STATUS_OK);
    CHECK(kiln_calib_amax(b, KILN_CALIB_ENTROPY, NULL, &eb) == KILN_STATUS_OK);
    CHECK_MSG(ea == eb, "entropy with zeros %g, without %g", ea, eb);
    double w = kiln_observer_bin_width(a);
    CHECK_MSG(ea > 0.6 * a->max_abs && ea > 200 * w, "entropy amax %g of max %g (bin width %g)", ea, a->max_abs, w);
    /* the zeros stay out after re-binning too: the same data in batches that grow */
    kiln_observer_reset(a);
    for (int off = 0; off < N; off += 30000) {
        for (int i = off; i < off + 30000; i++) x[i] *= 1.0f + (float)off / N;
        kiln_observer_feed(a, x + off, 30000);
    }
    CHECK(a->rebins > 0 && a->zero_count == N - np_);
    CHECK(kiln_calib_amax(a, KILN_CALIB_ENTROPY, NULL, &ea) == KILN_STATUS_OK);
    CHECK_MSG(ea > 0.5 * a->max_abs, "batched: entropy amax %g of max %g", ea, a->max_abs);
    free(x);
    free(pos);
    kiln_observer_destroy(a);
    kiln_observer_destroy(b);
}

static void test_method_names(void) {
    for (int m = 0; m < KILN_CALIB_METHOD_COUNT; m++) {
        kiln_calib_method back;
        CHECK(kiln_calib_method_parse(kiln_calib_method_name((kiln_calib_method)m), &back) == KILN_STATUS_OK &&
              (int)back == m);
    }
    kiln_calib_method back;
    CHECK(kiln_calib_method_parse("kl", &back) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(strcmp(kiln_calib_method_cache_name(KILN_CALIB_ENTROPY), "EntropyCalibration2") == 0);
    CHECK(kiln_calib_method_name((kiln_calib_method)7) == NULL);
}

/* ---- quantize reference and weights ---- */

static void test_quantize_ref(void) {
    /* ties to even */
    CHECK(kiln_quantize_ref(0.5f, 1, 0, -128, 127) == 0);
    CHECK(kiln_quantize_ref(1.5f, 1, 0, -128, 127) == 2);
    CHECK(kiln_quantize_ref(2.5f, 1, 0, -128, 127) == 2);
    CHECK(kiln_quantize_ref(-0.5f, 1, 0, -128, 127) == 0);
    CHECK(kiln_quantize_ref(-1.5f, 1, 0, -128, 127) == -2);
    CHECK(kiln_quantize_ref(-2.5f, 1, 0, -128, 127) == -2);
    CHECK(kiln_quantize_ref(0.75f, 0.5f, 0, -128, 127) == 2);  /* 1.5 -> 2 */
    CHECK(kiln_quantize_ref(1.25f, 0.5f, 0, -128, 127) == 2);  /* 2.5 -> 2 */
    CHECK(kiln_quantize_ref(2.5001f, 1, 0, -128, 127) == 3);
    /* saturation, zero point, NaN and Inf */
    CHECK(kiln_quantize_ref(1000, 1, 0, -128, 127) == 127);
    CHECK(kiln_quantize_ref(-1000, 1, 0, -128, 127) == -128);
    CHECK(kiln_quantize_ref(-1000, 1, 0, -127, 127) == -127);
    CHECK(kiln_quantize_ref(127.5f, 1, 0, -128, 127) == 127);
    CHECK(kiln_quantize_ref(-128.5f, 1, 0, -128, 127) == -128);
    CHECK(kiln_quantize_ref(0.5f, 1, 128, 0, 255) == 128);
    CHECK(kiln_quantize_ref(3.5f, 1, 128, 0, 255) == 132);
    CHECK(kiln_quantize_ref(-200, 1, 128, 0, 255) == 0);
    CHECK(kiln_quantize_ref(NAN, 1, 0, -128, 127) == 0);
    CHECK(kiln_quantize_ref(NAN, 1, 300, 0, 255) == 255);
    CHECK(kiln_quantize_ref(INFINITY, 1, 0, -128, 127) == 127);
    CHECK(kiln_quantize_ref(-INFINITY, 1, 0, -128, 127) == -128);
    /* the division is float32: x/s rounds to exactly 47.5 in float (-> 48), 47.49999985 in double (-> 47) */
    float x = bits_to_float(0x40e821a3u), s = bits_to_float(0x3e1c621du);
    CHECK((double)x / (double)s < 47.5 && x / s == 47.5f);
    CHECK(kiln_quantize_ref(x, s, 0, -128, 127) == 48);
    CHECK(kiln_dequantize_ref(-3, 0.5f, 0) == -1.5f && kiln_dequantize_ref(130, 0.25f, 128) == 0.5f);
}

static void test_weights(void) {
    /* 3 channels of 4: ties, an all-zero channel, a general one */
    float w[12] = {127, 63.5f, -63.5f, 0.5f, /* scale 1: q = 127, 64, -64, 0 */
                   0, 0, -0.0f, 0,           /* scale 1, q 0 */
                   -2.54f, 1.0f, 0.01f, 2.0f};
    int8_t q[12];
    float sc[3];
    CHECK(kiln_quant_weights_per_channel(w, 3, 4, q, sc) == KILN_STATUS_OK);
    CHECK(sc[0] == 1.0f && q[0] == 127 && q[1] == 64 && q[2] == -64 && q[3] == 0);
    CHECK(sc[1] == 1.0f && q[4] == 0 && q[5] == 0 && q[6] == 0 && q[7] == 0);
    CHECK(sc[2] == 2.54f / 127.0f && q[8] == -127);
    for (int i = 8; i < 12; i++) CHECK(q[i] == kiln_quantize_ref(w[i], sc[2], 0, -127, 127));
    CHECK(q[9] == 50 && q[10] == 0 && q[11] == 100);
    /* random: |q| <= 127, the max maps to +-127, dequantization within half a step */
    enum { C = 16, K = 77 };
    static float wr[C * K];
    static int8_t qr[C * K];
    float sr[C];
    for (int i = 0; i < C * K; i++) wr[i] = (float)(rng_normal() * (1 + i / K));
    CHECK(kiln_quant_weights_per_channel(wr, C, K, qr, sr) == KILN_STATUS_OK);
    int bad = 0;
    for (int c = 0; c < C; c++) {
        float amax = 0;
        int hit = 0;
        for (int i = 0; i < K; i++) amax = fmaxf(amax, fabsf(wr[c * K + i]));
        if (sr[c] != amax / 127.0f) bad++;
        for (int i = 0; i < K; i++) {
            int v = qr[c * K + i];
            if (v < -127 || v > 127) bad++;
            if (fabsf(wr[c * K + i]) == amax) hit += (v == 127 || v == -127);
            if (fabs((double)wr[c * K + i] - (double)v * sr[c]) > 0.5 * sr[c] * (1 + 1e-6)) bad++;
        }
        if (!hit) bad++;
    }
    CHECK(bad == 0);
    float nanw[4] = {1, 2, NAN, 3};
    CHECK(kiln_quant_weights_per_channel(nanw, 2, 2, q, sc) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(kiln_last_error(), "channel 1, element 0") != NULL);
    CHECK(kiln_quant_weights_per_channel(w, -1, 4, q, sc) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(kiln_quant_weights_per_channel(NULL, 0, 4, NULL, NULL) == KILN_STATUS_OK);
}

/* ---- FNV-1a and the cache ---- */

static void test_fnv(void) {
    CHECK(kiln_fnv1a64("", 0, KILN_FNV1A64_INIT) == 0xcbf29ce484222325ull);
    CHECK(kiln_fnv1a64("a", 1, KILN_FNV1A64_INIT) == 0xaf63dc4c8601ec8cull);
    CHECK(kiln_fnv1a64("foobar", 6, KILN_FNV1A64_INIT) == 0x85944171f73967e8ull);
    CHECK(kiln_fnv1a64("bar", 3, kiln_fnv1a64("foo", 3, KILN_FNV1A64_INIT)) == 0x85944171f73967e8ull);
}

static char tmpdir[256];

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Reads path expecting status want; on success returns entries (free them) and sets *n. */
static kiln_status read_cache(const char *path, uint64_t fp, kiln_calib_entry **e, int64_t *n, char **alg, bool *checked) {
    return kiln_calib_cache_read(path, fp, e, n, alg, checked);
}

static void test_cache_roundtrip(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/calib.cache", tmpdir);
    const char *names[] = {"input", "conv1/Relu:0", "a: b", "weird name: with: colons:", "x:",
                           "(Unnamed Layer* 12) [Shuffle]_output", "last"};
    float scales[7] = {0.0078125f, 0.0123f, 1e-30f, 3.4e38f, 0.0f, bits_to_float(0x3d8b2f4c), FLT_TRUE_MIN};
    uint64_t fp = 0x0123456789abcdefull;
    CHECK(kiln_calib_cache_write(path, "EntropyCalibration2", fp, names, scales, 7) == KILN_STATUS_OK);
    char *text = slurp(path);
    CHECK(text && strncmp(text, "KILN-" KILN_VERSION_STRING "-EntropyCalibration2 fingerprint=0123456789abcdef\n"
                                "input: 3c000000\n", 60 + strlen(KILN_VERSION_STRING)) == 0);
    CHECK(text && strstr(text, "\na: b: ") && strstr(text, "\nx:: 00000000\n") && strstr(text, "\nlast: 00000001\n"));
    kiln_calib_entry *e;
    int64_t n;
    char *alg;
    bool checked;
    CHECK(read_cache(path, fp, &e, &n, &alg, &checked) == KILN_STATUS_OK);
    CHECK(n == 7 && checked && strcmp(alg, "EntropyCalibration2") == 0);
    for (int i = 0; i < 7 && i < n; i++)
        CHECK_MSG(strcmp(e[i].name, names[i]) == 0 && float_to_bits(e[i].scale) == float_to_bits(scales[i]),
                  "entry %d: '%s' %08x", i, e[i].name, float_to_bits(e[i].scale));
    kiln_calib_entries_free(e, n);
    free(alg);
    /* no temporary left behind; overwriting works; an empty cache is valid */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp > /dev/null", tmpdir);
    CHECK(system(cmd) != 0);
    CHECK(kiln_calib_cache_write(path, "MinMaxCalibration", 7, NULL, NULL, 0) == KILN_STATUS_OK);
    CHECK(read_cache(path, 7, &e, &n, &alg, &checked) == KILN_STATUS_OK && n == 0 && checked &&
          strcmp(alg, "MinMaxCalibration") == 0);
    kiln_calib_entries_free(e, n);
    free(alg);
    /* random scales round-trip bit-exactly */
    enum { M = 500 };
    static char namebuf[M][32];
    const char *rn[M];
    float rs[M];
    for (int i = 0; i < M; i++) {
        snprintf(namebuf[i], sizeof namebuf[i], "t%d:%d", i, (int)(rng_u64() % 1000));
        rn[i] = namebuf[i];
        do rs[i] = bits_to_float((uint32_t)rng_u64() & 0x7fffffffu);
        while (!isfinite(rs[i]));
    }
    CHECK(kiln_calib_cache_write(path, "MSECalibration", ~0ull, rn, rs, M) == KILN_STATUS_OK);
    CHECK(read_cache(path, ~0ull, &e, &n, &alg, &checked) == KILN_STATUS_OK && n == M);
    int bad = 0;
    for (int i = 0; i < M && i < n; i++) bad += strcmp(e[i].name, rn[i]) != 0 || float_to_bits(e[i].scale) != float_to_bits(rs[i]);
    CHECK(bad == 0);
    kiln_calib_entries_free(e, n);
    free(alg);
    /* refusals when writing */
    const char *nl[] = {"bad\nname"};
    float one = 1;
    CHECK(kiln_calib_cache_write(path, "Entropy", 0, nl, &one, 1) == KILN_STATUS_INVALID_ARGUMENT);
    const char *empty[] = {""};
    CHECK(kiln_calib_cache_write(path, "Entropy", 0, empty, &one, 1) == KILN_STATUS_INVALID_ARGUMENT);
    const char *ok[] = {"t"};
    float nan = NAN, neg = -1;
    CHECK(kiln_calib_cache_write(path, "Entropy", 0, ok, &nan, 1) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(kiln_calib_cache_write(path, "Entropy", 0, ok, &neg, 1) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(kiln_calib_cache_write(path, "Entropy-2", 0, ok, &one, 1) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(kiln_calib_cache_write(path, "", 0, ok, &one, 1) == KILN_STATUS_INVALID_ARGUMENT);
    /* a failed write leaves the old cache alone */
    CHECK(read_cache(path, ~0ull, &e, &n, &alg, &checked) == KILN_STATUS_OK && n == M);
    kiln_calib_entries_free(e, n);
    free(alg);
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/c.cache", tmpdir);
    CHECK(kiln_calib_cache_write(nodir, "Entropy", 0, ok, &one, 1) == KILN_STATUS_IO_ERROR);
    CHECK(strstr(kiln_last_error(), nodir) != NULL);
}

static void test_cache_trt_and_errors(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/trt.cache", tmpdir);
    /* a TensorRT 8.6 cache, as trtexec writes it (no trailing newline), CRLF in one line */
    write_text(path, "TRT-8601-EntropyCalibration2\n"
                     "input: 3c010a14\r\n"
                     "(Unnamed Layer* 1) [Convolution]_output: 3d8b2f4c\n"
                     "onnx::Conv_123: 3CA3D70A\n"
                     "\n"
                     "output: 3e0a3d71");
    kiln_calib_entry *e;
    int64_t n;
    char *alg;
    bool checked = true;
    CHECK(read_cache(path, 42, &e, &n, &alg, &checked) == KILN_STATUS_OK);
    CHECK(n == 4 && !checked && strcmp(alg, "EntropyCalibration2") == 0);
    if (n == 4) {
        CHECK(strcmp(e[0].name, "input") == 0 && float_to_bits(e[0].scale) == 0x3c010a14u);
        CHECK(strcmp(e[1].name, "(Unnamed Layer* 1) [Convolution]_output") == 0 && float_to_bits(e[1].scale) == 0x3d8b2f4cu);
        CHECK(strcmp(e[2].name, "onnx::Conv_123") == 0 && e[2].scale == 0.02f);
        CHECK(strcmp(e[3].name, "output") == 0 && float_to_bits(e[3].scale) == 0x3e0a3d71u);
    }
    kiln_calib_entries_free(e, n);
    free(alg);
    write_text(path, "TRT-7000-MinMaxCalibration\n");
    CHECK(read_cache(path, 42, &e, &n, &alg, &checked) == KILN_STATUS_OK && n == 0 && !checked &&
          strcmp(alg, "MinMaxCalibration") == 0);
    kiln_calib_entries_free(e, n);
    free(alg);

    /* fingerprint mismatch names both */
    write_text(path, "KILN-0.1.0-EntropyCalibration2 fingerprint=00000000deadbeef\nx: 3c000000\n");
    CHECK(read_cache(path, 0xdeadbeefull, &e, &n, &alg, &checked) == KILN_STATUS_OK && n == 1 && checked);
    kiln_calib_entries_free(e, n);
    free(alg);
    e = (kiln_calib_entry *)1;
    alg = (char *)1;
    CHECK(read_cache(path, 0xfeedull, &e, &n, &alg, &checked) == KILN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(kiln_last_error(), "00000000deadbeef") && strstr(kiln_last_error(), "000000000000feed"));
    CHECK(e == NULL && alg == NULL && n == 0 && !checked);

    /* malformed: the line number is named */
    struct {
        const char *text, *want;
    } bad[] = {
        {"TRT-8601-EntropyCalibration2\nx 3c000000\n", ":2:"},
        {"TRT-8601-EntropyCalibration2\nx: 3c00000\n", ":2:"},
        {"TRT-8601-EntropyCalibration2\nok: 3c000000\nx: 3c00000g\n", ":3:"},
        {"TRT-8601-EntropyCalibration2\nx: 3c0000000\n", ":2:"},
        {"TRT-8601-EntropyCalibration2\n: 3c000000\n", ":2:"},
        {"TRT-8601-EntropyCalibration2\nx:3c000000\n", ":2:"},
        {"TRT-8601-EntropyCalibration2\nx: 3c000000 \n", ":2:"},
        {"TRT-8601-EntropyCalibration2\na: 3c000000\nb: 7fc00000\n", ":3:"},  /* NaN scale */
        {"TRT-8601-EntropyCalibration2\na: bc000000\n", ":2:"},               /* negative */
        {"TRT-8601-EntropyCalibration2\na: 3c000000\nb: 3c000000\n\na: 3c000001\n", ":5:"}, /* duplicate */
        {"", ":1:"},
        {"\nx: 3c000000\n", ":1:"},
        {"ORT-1-EntropyCalibration2\n", ":1:"},
        {"TRT-86x1-EntropyCalibration2\n", ":1:"},
        {"TRT-EntropyCalibration2\n", ":1:"},
        {"TRT-8601-\n", ":1:"},
        {"KILN-0.1.0-EntropyCalibration2\n", ":1:"},
        {"KILN-0.1.0-EntropyCalibration2 fingerprint=123\n", ":1:"},
        {"KILN-0.1.0-EntropyCalibration2 fp=0123456789abcdef\n", ":1:"},
        {"x: 3c000000\n", ":1:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i].text);
        kiln_status st = read_cache(path, 0x0123456789abcdefull, &e, &n, &alg, &checked);
        CHECK_MSG(st == KILN_STATUS_INVALID_MODEL && strstr(kiln_last_error(), bad[i].want) &&
                      strstr(kiln_last_error(), path),
                  "case %zu: status %d, message '%s'", i, (int)st, kiln_last_error());
        if (st == KILN_STATUS_OK) {
            kiln_calib_entries_free(e, n);
            free(alg);
        }
    }
    /* a NUL byte */
    FILE *f = fopen(path, "wb");
    fwrite("TRT-8601-EntropyCalibration2\nx\0: 3c000000\n", 1, 42, f);
    fclose(f);
    CHECK(read_cache(path, 0, &e, &n, &alg, &checked) == KILN_STATUS_INVALID_MODEL);
    snprintf(path, sizeof path, "%s/missing.cache", tmpdir);
    CHECK(read_cache(path, 0, &e, &n, &alg, &checked) == KILN_STATUS_IO_ERROR && strstr(kiln_last_error(), path));
    CHECK(kiln_calib_cache_read(path, 0, NULL, &n, &alg, &checked) == KILN_STATUS_INVALID_ARGUMENT);
}

/* ---- the driver for test_calibration.py ---- */

static int amax_main(int argc, char **argv) {
    const char *method = argv[2], *file = argv[3], *hist_out = NULL;
    int64_t batch = 0;
    kiln_calib_options opt = {0};
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--batch") == 0) batch = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--percentile") == 0) opt.percentile = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--hist") == 0) hist_out = argv[i + 1];
        else {
            fprintf(stderr, "test_quant: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "test_quant: cannot open %s\n", file);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    int64_t n = ftell(f) / 4;
    fseek(f, 0, SEEK_SET);
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    if (!x || (int64_t)fread(x, 4, (size_t)n, f) != n) {
        fprintf(stderr, "test_quant: cannot read %s\n", file);
        return 2;
    }
    fclose(f);
    kiln_observer *o;
    kiln_observer_create(&o);
    if (batch <= 0) batch = n ? n : 1;
    for (int64_t off = 0; off < n; off += batch)
        if (kiln_observer_feed(o, x + off, n - off < batch ? n - off : batch)) {
            fprintf(stderr, "test_quant: %s\n", kiln_last_error());
            return 1;
        }
    double amax[KILN_CALIB_METHOD_COUNT];
    int first = 0, last = KILN_CALIB_METHOD_COUNT - 1;
    if (strcmp(method, "all") != 0) {
        kiln_calib_method m;
        if (kiln_calib_method_parse(method, &m)) {
            fprintf(stderr, "test_quant: %s\n", kiln_last_error());
            return 2;
        }
        first = last = (int)m;
    }
    for (int m = first; m <= last; m++)
        if (kiln_calib_amax(o, (kiln_calib_method)m, &opt, &amax[m])) {
            fprintf(stderr, "test_quant: %s\n", kiln_last_error());
            return 1;
        }
    if (first == last) printf("amax=%.17g", amax[first]);
    else
        for (int m = first; m <= last; m++) printf("%s%s=%.17g", m ? " " : "", kiln_calib_method_name((kiln_calib_method)m), amax[m]);
    printf(" max_abs=%.17g bin_width=%.17g count=%lld zeros=%lld nan=%lld inf=%lld rebins=%lld\n", o->max_abs,
           kiln_observer_bin_width(o), (long long)o->count, (long long)o->zero_count, (long long)o->nan_count,
           (long long)o->inf_count, (long long)o->rebins);
    if (hist_out) {
        FILE *h = fopen(hist_out, "wb");
        if (!h || fwrite(o->hist, sizeof o->hist, 1, h) != 1 || fclose(h) != 0) {
            fprintf(stderr, "test_quant: cannot write %s\n", hist_out);
            return 2;
        }
    }
    kiln_observer_destroy(o);
    free(x);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "--amax") == 0) return amax_main(argc, argv);
    if (argc > 1) {
        fprintf(stderr, "usage: test_quant [--amax METHOD|all FILE.f32 [--batch N] [--percentile P] [--hist OUT.f64]]\n");
        return 2;
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/kiln_test_quant_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_observer_basic();
    test_observer_dtypes();
    test_observer_rebin();
    test_minmax();
    test_percentile();
    test_entropy_mse();
    test_entropy_zeros();
    test_method_names();
    test_quantize_ref();
    test_weights();
    test_fnv();
    test_cache_roundtrip();
    test_cache_trt_and_errors();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
