/* compare_report.c — the text and JSON reports of `kiln compare`: per output its statistics,
 * checks and verdict, the step summary (pass rate, trend), the contracts, and the overall verdict.
 * The JSON holds the same numbers as the text (docs/compare.md lists its fields). */
#include "compare.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

static const char *mode_name(const cmp_opts *o, int64_t steps) {
    if (o->n_state == 0) return steps > 1 ? "steps" : "single";
    return o->closed_loop ? "closed_loop" : "functional";
}

static void print_checks(FILE *f, const cmp_thresholds *t) {
    const char *sep = "";
    fprintf(f, "  checks      ");
    if (t->tol) fprintf(f, "|t - r| <= %g + %g * |r| for every element", t->atol, t->rtol), sep = "; ";
    if (t->cos) fprintf(f, "%scosine >= %g", sep, t->cosine), sep = "; ";
    if (t->p99) fprintf(f, "%sp99 |t - r| <= %g", sep, t->p99_atol);
    fprintf(f, "\n");
}

static void print_verdict(FILE *f, const cmp_opts *o, const cmp_output *out, int64_t steps) {
    const cmp_metrics *w = &out->worst;
    double rate = (double)out->n_pass / (double)steps;
    if (out->pass && !w->fail[0]) fprintf(f, "  verdict     PASS\n");
    else if (out->pass) fprintf(f, "  verdict     PASS (%.1f%% of steps pass, within --min-pass-rate; first failure at %s)\n", 100 * rate, w->fail);
    else if (w->hard || steps == 1) fprintf(f, "  verdict     FAIL: %s\n", w->fail);
    else if (rate + 1e-12 < o->min_pass_rate)
        fprintf(f, "  verdict     FAIL: %.1f%% of steps pass, under %.1f%%; first failure at %s\n", 100 * rate, 100 * o->min_pass_rate, w->fail);
    else fprintf(f, "  verdict     FAIL: trend slope %.4g per step is above --max-slope %g\n", out->slope_max, o->max_slope);
}

/* A flat element index as a position in the output's shape: "[2,0]". */
static const char *index_str(const cmp_output *out, int64_t flat, char *buf, size_t n) {
    int64_t idx[KILN_MAX_RANK];
    for (int k = out->rank - 1; k >= 0; k--) {
        int64_t d = out->dims[k] > 0 ? out->dims[k] : 1;
        idx[k] = flat % d;
        flat /= d;
    }
    return kiln_dims_str(out->rank, idx, buf, n);
}

static void print_output(FILE *f, const cmp_opts *o, const cmp_output *out, int64_t steps) {
    const cmp_metrics *w = &out->worst;
    char dims[160];
    kiln_dims_str(out->rank, out->dims, dims, sizeof dims);
    fprintf(f, "\noutput '%s'  %s%s", out->name, kiln_dtype_name(out->ref_dtype), dims);
    if (out->tgt_dtype != out->ref_dtype) fprintf(f, " (target %s)", kiln_dtype_name(out->tgt_dtype));
    fprintf(f, "%s\n", w->exact ? "  exact match" : "");
    char over[64] = "";
    if (steps > 1) snprintf(over, sizeof over, " (each at its worst of %lld steps)", (long long)steps);
    if (!w->compared) {
        fprintf(f, "  problem     %s\n", w->problem);
        if (steps == 1) {
            print_verdict(f, o, out, steps);
            return;
        }
    }
    if (w->exact) {
        fprintf(f, "  mismatches  %lld of %lld elements%s\n", (long long)w->mismatches, (long long)w->count,
                steps > 1 ? " (all steps)" : "");
        fprintf(f, "  abs error   max %.4g\n", w->abs_max);
    } else {
        fprintf(f, "  abs error   max %.4g  mean %.4g  median %.4g  p95 %.4g  p99 %.4g%s\n", w->abs_max, w->abs_mean, w->abs_median,
                w->abs_p95, w->abs_p99, over);
        fprintf(f, "  rel error   max %.4g  mean %.4g  median %.4g  p95 %.4g  p99 %.4g%s\n", w->rel_max, w->rel_mean, w->rel_median,
                w->rel_p95, w->rel_p99, over);
        fprintf(f, "  cosine      %.9f%s\n", w->cosine, over);
        if (w->worst_index >= 0 && (w->abs_max > 0 || w->nonfinite_mismatch)) {
            char at[160];
            char when[64] = "";
            if (steps > 1) snprintf(when, sizeof when, " of step %lld", (long long)out->worst_step);
            fprintf(f, "  largest     at %s%s: target %.9g, reference %.9g\n", index_str(out, w->worst_index, at, sizeof at), when,
                    w->worst_tgt, w->worst_ref);
        }
        fprintf(f, "  NaN / Inf   reference %lld / %lld, target %lld / %lld%s\n", (long long)w->nan_ref, (long long)w->inf_ref,
                (long long)w->nan_tgt, (long long)w->inf_tgt, steps > 1 ? " (all steps)" : "");
        print_checks(f, &out->thr);
    }
    if (steps > 1) {
        fprintf(f, "  steps       %lld of %lld pass (%.1f%%); worst step %lld\n", (long long)out->n_pass, (long long)steps,
                100.0 * (double)out->n_pass / (double)steps, (long long)out->worst_step);
        fprintf(f, "  per step    max abs error: mean %.4g  median %.4g  p95 %.4g  p99 %.4g  max %.4g\n", out->series_mean,
                out->series_median, out->series_p95, out->series_p99, out->series_max);
        fprintf(f, "  trend       slope %+.4g per step (max abs error, least squares); mean abs error %+.4g per step\n", out->slope_max,
                out->slope_mean);
    }
    print_verdict(f, o, out, steps);
}

static void print_inv_side(FILE *f, const char *who, const cmp_inv_state *st) {
    if (st->missing && !st->checked) fprintf(f, "%s: no such tensor", who);
    else if (!st->violations) fprintf(f, "%s: held on %lld step%s", who, (long long)st->checked, st->checked == 1 ? "" : "s");
    else
        fprintf(f, "%s: VIOLATED on %lld of %lld steps, first at step %lld: %s", who, (long long)st->violations, (long long)st->checked,
                (long long)st->first_step, st->first);
}

void cmp_report_text(FILE *f, const cmp_opts *o, const cmp_runner *ref, const cmp_runner *tgt, const cmp_result *res) {
    fprintf(f, "reference   %s: %s\n", ref->path, ref->desc);
    fprintf(f, "target      %s: %s\n", tgt->path, tgt->desc);
    fprintf(f, "inputs      %s\n", res->inputs_desc);
    fprintf(f, "steps       %lld", (long long)res->steps);
    if (o->n_state) {
        fprintf(f, ", %s:", o->closed_loop ? "closed loop (each runner feeds back its own state)"
                                            : "functional (the target gets the reference's state)");
        for (int p = 0; p < o->n_state; p++) fprintf(f, "%s %s -> %s", p ? "," : "", o->state[p].out, o->state[p].in);
    }
    fprintf(f, "\n");
    for (int i = 0; i < res->n_outs; i++) print_output(f, o, &res->outs[i], res->steps);
    if (res->n_inv) {
        fprintf(f, "\ncontracts (checked on every step)\n");
        for (int v = 0; v < res->n_inv; v++) {
            const cmp_invariant *inv = &res->inv[v];
            fprintf(f, "  %-28s ", inv->text);
            print_inv_side(f, "reference", &inv->r[0]);
            fprintf(f, "; ");
            print_inv_side(f, "target", &inv->r[1]);
            fprintf(f, "\n");
        }
    }
    fprintf(f, "\n");
    if (res->pass) {
        fprintf(f, "PASS: %d output%s", res->n_outs, res->n_outs == 1 ? " matches" : "s match");
        if (res->n_inv) fprintf(f, ", %d contract%s held", res->n_inv, res->n_inv == 1 ? "" : "s");
        fprintf(f, "\n");
        return;
    }
    fprintf(f, "FAIL:");
    if (res->n_failed_outputs) {
        fprintf(f, " %d of %d output%s (", res->n_failed_outputs, res->n_outs, res->n_outs == 1 ? "" : "s");
        const char *sep = "";
        for (int i = 0; i < res->n_outs; i++)
            if (!res->outs[i].pass) fprintf(f, "%s%s", sep, res->outs[i].name), sep = ", ";
        fprintf(f, ")%s", res->n_broken_invariants ? ";" : "");
    }
    if (res->n_broken_invariants) {
        fprintf(f, " %d contract violation%s (", res->n_broken_invariants, res->n_broken_invariants == 1 ? "" : "s");
        const char *sep = "";
        for (int v = 0; v < res->n_inv; v++)
            if (res->inv[v].r[0].violations || res->inv[v].r[1].violations) fprintf(f, "%s%s", sep, res->inv[v].text), sep = ", ";
        fprintf(f, ")");
    }
    fprintf(f, "\n");
}

/* ---- JSON ---- */

static cJSON *num(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static cJSON *stats(double mx, double mean, double med, double p95, double p99) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "max", num(mx));
    cJSON_AddItemToObject(j, "mean", num(mean));
    cJSON_AddItemToObject(j, "median", num(med));
    cJSON_AddItemToObject(j, "p95", num(p95));
    cJSON_AddItemToObject(j, "p99", num(p99));
    return j;
}

static cJSON *pair(int64_t ref, int64_t tgt) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "reference", (double)ref);
    cJSON_AddNumberToObject(j, "target", (double)tgt);
    return j;
}

static cJSON *runner_json(const cmp_runner *r) {
    static const char *const kinds[] = {"model", "engine", "saved"};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", r->path);
    cJSON_AddStringToObject(j, "kind", kinds[r->kind]);
    cJSON_AddStringToObject(j, "description", r->desc);
    return j;
}

static cJSON *thresholds_json(const cmp_thresholds *t) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "atol", t->tol ? num(t->atol) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "rtol", t->tol ? num(t->rtol) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "cosine", t->cos ? num(t->cosine) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "p99_atol", t->p99 ? num(t->p99_atol) : cJSON_CreateNull());
    return j;
}

static cJSON *output_json(const cmp_output *out) {
    const cmp_metrics *w = &out->worst;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", out->name);
    cJSON_AddStringToObject(j, "reference_dtype", kiln_dtype_name(out->ref_dtype));
    cJSON_AddStringToObject(j, "target_dtype", kiln_dtype_name(out->tgt_dtype));
    cJSON *shape = cJSON_AddArrayToObject(j, "shape");
    for (int k = 0; k < out->rank; k++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)out->dims[k]));
    cJSON_AddBoolToObject(j, "exact", w->exact);
    cJSON_AddBoolToObject(j, "compared", w->compared);
    cJSON_AddItemToObject(j, "thresholds", thresholds_json(&out->thr));
    cJSON_AddNumberToObject(j, "elements", (double)w->count);
    cJSON_AddItemToObject(j, "abs", stats(w->abs_max, w->abs_mean, w->abs_median, w->abs_p95, w->abs_p99));
    cJSON_AddItemToObject(j, "rel", stats(w->rel_max, w->rel_mean, w->rel_median, w->rel_p95, w->rel_p99));
    cJSON_AddItemToObject(j, "cosine", w->exact ? cJSON_CreateNull() : num(w->cosine));
    cJSON_AddItemToObject(j, "nan", pair(w->nan_ref, w->nan_tgt));
    cJSON_AddItemToObject(j, "inf", pair(w->inf_ref, w->inf_tgt));
    cJSON_AddNumberToObject(j, "nonfinite_mismatch", (double)w->nonfinite_mismatch);
    cJSON_AddNumberToObject(j, "mismatches", (double)w->mismatches);
    cJSON_AddNumberToObject(j, "outside_tolerance", (double)w->outside_tol);
    cJSON *worst = cJSON_AddObjectToObject(j, "largest_error");
    cJSON_AddNumberToObject(worst, "step", (double)out->worst_step);
    cJSON_AddNumberToObject(worst, "index", (double)w->worst_index);
    cJSON_AddItemToObject(worst, "reference", num(w->worst_ref));
    cJSON_AddItemToObject(worst, "target", num(w->worst_tgt));
    cJSON *st = cJSON_AddObjectToObject(j, "steps");
    cJSON_AddNumberToObject(st, "count", (double)out->n_steps);
    cJSON_AddNumberToObject(st, "passed", (double)out->n_pass);
    cJSON_AddNumberToObject(st, "pass_rate", (double)out->n_pass / (double)out->n_steps);
    cJSON_AddItemToObject(st, "slope_max_abs", num(out->slope_max));
    cJSON_AddItemToObject(st, "slope_mean_abs", num(out->slope_mean));
    cJSON_AddItemToObject(st, "max_abs", stats(out->series_max, out->series_mean, out->series_median, out->series_p95, out->series_p99));
    cJSON *per = cJSON_AddArrayToObject(st, "per_step");
    for (int64_t k = 0; k < out->n_steps; k++) {
        const cmp_metrics *m = &out->steps[k];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToObject(e, "max_abs", num(m->abs_max));
        cJSON_AddItemToObject(e, "mean_abs", num(m->abs_mean));
        cJSON_AddItemToObject(e, "p99_abs", num(m->abs_p99));
        cJSON_AddItemToObject(e, "cosine", m->exact ? cJSON_CreateNull() : num(m->cosine));
        cJSON_AddBoolToObject(e, "pass", m->pass);
        cJSON_AddItemToArray(per, e);
    }
    cJSON_AddBoolToObject(j, "pass", out->pass);
    cJSON_AddItemToObject(j, "failure", w->fail[0] ? cJSON_CreateString(w->fail) : cJSON_CreateNull());
    return j;
}

static cJSON *inv_side_json(const cmp_inv_state *st) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "checked", (double)st->checked);
    cJSON_AddNumberToObject(j, "violations", (double)st->violations);
    cJSON_AddItemToObject(j, "first_step", st->first_step >= 0 ? cJSON_CreateNumber((double)st->first_step) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "first", st->first_step >= 0 ? cJSON_CreateString(st->first) : cJSON_CreateNull());
    cJSON_AddBoolToObject(j, "missing", st->missing && !st->checked);
    return j;
}

cJSON *cmp_report_json(const cmp_opts *o, const cmp_runner *ref, const cmp_runner *tgt, const cmp_result *res) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "reference", runner_json(ref));
    cJSON_AddItemToObject(j, "target", runner_json(tgt));
    cJSON_AddStringToObject(j, "inputs", res->inputs_desc);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddNumberToObject(j, "steps", (double)res->steps);
    cJSON_AddStringToObject(j, "mode", mode_name(o, res->steps));
    cJSON *state = cJSON_AddArrayToObject(j, "state");
    for (int p = 0; p < o->n_state; p++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "output", o->state[p].out);
        cJSON_AddStringToObject(e, "input", o->state[p].in);
        cJSON_AddItemToArray(state, e);
    }
    cJSON_AddNumberToObject(j, "min_pass_rate", o->min_pass_rate);
    cJSON_AddItemToObject(j, "max_slope", o->has_max_slope ? num(o->max_slope) : cJSON_CreateNull());
    cJSON *outs = cJSON_AddArrayToObject(j, "outputs");
    for (int i = 0; i < res->n_outs; i++) cJSON_AddItemToArray(outs, output_json(&res->outs[i]));
    cJSON *cons = cJSON_AddArrayToObject(j, "contracts");
    for (int v = 0; v < res->n_inv; v++) {
        const cmp_invariant *inv = &res->inv[v];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "invariant", inv->text);
        cJSON_AddItemToObject(e, "reference", inv_side_json(&inv->r[0]));
        cJSON_AddItemToObject(e, "target", inv_side_json(&inv->r[1]));
        cJSON_AddBoolToObject(e, "pass", !inv->r[0].violations && !inv->r[1].violations);
        cJSON_AddItemToArray(cons, e);
    }
    cJSON_AddNumberToObject(j, "failed_outputs", res->n_failed_outputs);
    cJSON_AddNumberToObject(j, "contract_violations", res->n_broken_invariants);
    cJSON_AddBoolToObject(j, "pass", res->pass);
    return j;
}
