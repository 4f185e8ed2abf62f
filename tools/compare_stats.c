/* compare_stats.c — what `kiln compare` measures on one output at one step: absolute and relative
 * error statistics (max, mean, median, p95, p99), cosine similarity, NaN and Inf counts, exact
 * match for integer and bool outputs, and the verdict against the thresholds. Also the
 * percentile and least-squares slope helpers. Checked against numpy by tests/models/test_compare.py. */
#include "compare.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

double cmp_percentile_sorted(const double *v, int64_t n, double q) {
    if (n <= 0) return 0;
    double pos = q / 100.0 * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos);
    if (lo >= n - 1) return v[n - 1];
    double frac = pos - (double)lo;
    return v[lo] + (v[lo + 1] - v[lo]) * frac;
}

double cmp_slope(const double *y, int64_t n) {
    if (n < 2) return 0;
    double xm = (double)(n - 1) / 2.0, ym = 0;
    for (int64_t i = 0; i < n; i++) ym += y[i];
    ym /= (double)n;
    double sxy = 0, sxx = 0;
    for (int64_t i = 0; i < n; i++) {
        sxy += ((double)i - xm) * (y[i] - ym);
        sxx += ((double)i - xm) * ((double)i - xm);
    }
    return sxy / sxx;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v and fills max, mean, median, p95, p99. */
static void summarize(double *v, int64_t n, double *mx, double *mean, double *med, double *p95, double *p99) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *mx = n ? v[n - 1] : 0;
    *mean = n ? sum / (double)n : 0;
    *med = cmp_percentile_sorted(v, n, 50);
    *p95 = cmp_percentile_sorted(v, n, 95);
    *p99 = cmp_percentile_sorted(v, n, 99);
}

static bool same_shape(const kiln_tensor_t *a, const kiln_tensor_t *b) {
    return a->rank == b->rank && memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0;
}

/* The first failed check, or none: sets m->pass and m->fail. */
static void judge(cmp_metrics *m, const cmp_thresholds *thr) {
    m->pass = false;
    m->hard = true;
    if (m->nonfinite_mismatch) {
        snprintf(m->fail, sizeof m->fail, "%lld element%s NaN or Inf on one side only", (long long)m->nonfinite_mismatch,
                 m->nonfinite_mismatch == 1 ? " is" : "s are");
        return;
    }
    if (m->exact) {
        if (m->mismatches) {
            snprintf(m->fail, sizeof m->fail, "%lld of %lld elements differ (exact match required); largest difference at %s: target %.17g, reference %.17g",
                     (long long)m->mismatches, (long long)m->count, m->worst_at, m->worst_tgt, m->worst_ref);
            return;
        }
        m->pass = true;
        return;
    }
    m->hard = false;
    if (thr->tol && m->outside_tol) {
        snprintf(m->fail, sizeof m->fail, "%lld of %lld elements outside atol %g + rtol %g * |ref| (largest at %s: target %.9g, reference %.9g)",
                 (long long)m->outside_tol, (long long)m->count, thr->atol, thr->rtol, m->worst_at, m->worst_tgt, m->worst_ref);
        return;
    }
    if (thr->cos && !(m->cosine >= thr->cosine)) {
        snprintf(m->fail, sizeof m->fail, "cosine similarity %.9g < %g", m->cosine, thr->cosine);
        return;
    }
    if (thr->p99 && !(m->abs_p99 <= thr->p99_atol)) {
        snprintf(m->fail, sizeof m->fail, "p99 absolute error %.4g > %g", m->abs_p99, thr->p99_atol);
        return;
    }
    m->pass = true;
}

kiln_status cmp_metrics_compute(const kiln_tensor_t *ref, const kiln_tensor_t *tgt, const cmp_thresholds *thr, cmp_metrics *m) {
    memset(m, 0, sizeof *m);
    m->worst_index = -1;
    m->exact = !kiln_dtype_is_float(ref->dtype);
    m->cosine = m->exact ? NAN : 1.0;
    if (ref->dtype == KILN_DTYPE_STRING || tgt->dtype == KILN_DTYPE_STRING)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "comparing string outputs");
    if (!same_shape(ref, tgt)) {
        char a[128], b[128];
        snprintf(m->problem, sizeof m->problem, "shapes differ: reference %s, target %s", kiln_tensor_describe(ref, a, sizeof a),
                 kiln_tensor_describe(tgt, b, sizeof b));
        snprintf(m->fail, sizeof m->fail, "%s", m->problem);
        m->hard = true;
        return KILN_STATUS_OK;
    }
    m->compared = true;
    int64_t n = kiln_tensor_count(ref);
    m->count = n;
    double *abs_e = kiln_malloc(sizeof(double) * (size_t)(n ? n : 1));
    double *rel_e = kiln_malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!abs_e || !rel_e) {
        free(abs_e);
        free(rel_e);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory comparing %lld elements", (long long)n);
    }
    int64_t na = 0, nr = 0;
    double dot = 0, rr = 0, tt = 0, worst = -1, ref_abs = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = kiln_load_f64(ref->dtype, ref->data, i), t = kiln_load_f64(tgt->dtype, tgt->data, i);
        bool rn = isnan(r), tn = isnan(t), ri = isinf(r), ti = isinf(t);
        m->nan_ref += rn;
        m->nan_tgt += tn;
        m->inf_ref += ri;
        m->inf_tgt += ti;
        if (rn || tn || ri || ti) {
            bool same = (rn && tn) || (ri && ti && r == t);
            if (!same) {
                m->nonfinite_mismatch++;
                if (worst < INFINITY) worst = INFINITY, m->worst_index = i, m->worst_ref = r, m->worst_tgt = t;
            }
            continue;
        }
        double d = fabs(t - r);
        abs_e[na++] = d;
        if (r != 0) rel_e[nr++] = d / fabs(r);
        ref_abs += fabs(r);
        dot += r * t;
        rr += r * r;
        tt += t * t;
        if (m->exact && t != r) m->mismatches++;
        if (thr->tol && !m->exact && d > thr->atol + thr->rtol * fabs(r)) m->outside_tol++;
        if (d > worst) worst = d, m->worst_index = i, m->worst_ref = r, m->worst_tgt = t;
    }
    m->ref_abs_mean = na ? ref_abs / (double)na : 0;
    summarize(abs_e, na, &m->abs_max, &m->abs_mean, &m->abs_median, &m->abs_p95, &m->abs_p99);
    summarize(rel_e, nr, &m->rel_max, &m->rel_mean, &m->rel_median, &m->rel_p95, &m->rel_p99);
    free(abs_e);
    free(rel_e);
    if (!m->exact) {
        if (rr == 0 && tt == 0) m->cosine = 1.0;
        else if (rr == 0 || tt == 0) m->cosine = 0.0;
        else m->cosine = dot / (sqrt(rr) * sqrt(tt));
    }
    int64_t idx[KILN_MAX_RANK], flat = m->worst_index < 0 ? 0 : m->worst_index;
    for (int k = ref->rank - 1; k >= 0; k--) {
        int64_t d = ref->dims[k] > 0 ? ref->dims[k] : 1;
        idx[k] = flat % d;
        flat /= d;
    }
    kiln_dims_str(ref->rank, idx, m->worst_at, sizeof m->worst_at);
    judge(m, thr);
    return KILN_STATUS_OK;
}

void cmp_thresholds_for(const cmp_opts *o, const char *name, cmp_thresholds *t) {
    memset(t, 0, sizeof *t);
    const struct { const cmp_named_value *v; int n; bool *has; double *out; } kinds[] = {
        {o->atol, o->n_atol, &t->tol, &t->atol},
        {o->rtol, o->n_rtol, &t->tol, &t->rtol},
        {o->cosine, o->n_cosine, &t->cos, &t->cosine},
        {o->p99, o->n_p99, &t->p99, &t->p99_atol},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        /* the global value, then this output's own */
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < kinds[k].n; i++) {
                bool own = strcmp(kinds[k].v[i].name, name) == 0;
                if ((pass == 0 && !kinds[k].v[i].name[0]) || (pass == 1 && own)) {
                    *kinds[k].has = true;
                    *kinds[k].out = kinds[k].v[i].v;
                }
            }
    }
    if (!t->tol && !t->cos && !t->p99) t->tol = true, t->atol = 1e-5, t->rtol = 1e-5;
}
