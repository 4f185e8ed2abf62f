/* compare_session.c — the step loop of `kiln compare`: the inputs of each step (data, generated,
 * or state fed back), both runners, the statistics of every compared output, the contracts, and
 * the summary over the steps (pass rate, worst values, trend slope).
 *
 * State pairs (--state OUT:IN): at step 0 input IN holds its initial value (from the data, else
 * zeros); at step k > 0 the reference gets its own OUT of step k-1, and the target gets the
 * reference's OUT (functional mode, the default: every step starts from the truth) or its own
 * (--closed-loop: errors may accumulate, which is what the trend slope measures). */
#include "compare.h"

#include "core/core.h"
#include "io/npy.h"

#include <math.h>
#include <string.h>

/* ---- the loop ---- */

typedef struct side {
    cmp_runner *r;
    kiln_tensor_t **outs, **prev; /* this step's and the step before's outputs (r->n_out) */
    kiln_tensor_t **state;        /* per state pair: what this side's IN gets next */
} side;

typedef struct session {
    const cmp_opts *o;
    const cmp_signature *sig;
    cmp_feed f;
    side s[2];
    int *ref_idx, *tgt_idx;       /* per compared output */
    cmp_result *res;
    kiln_tensor_t **inputs;       /* sig->n */
    kiln_tensor_t ***saved_in, ***saved_ref; /* per step, for --save-inputs / --save-ref */
} session;

static kiln_status side_open(side *sd, cmp_runner *r, int n_state) {
    sd->r = r;
    sd->outs = kiln_calloc((size_t)(r->n_out + 1), sizeof *sd->outs);
    sd->prev = kiln_calloc((size_t)(r->n_out + 1), sizeof *sd->prev);
    sd->state = kiln_calloc((size_t)(n_state + 1), sizeof *sd->state);
    return sd->outs && sd->prev && sd->state ? KILN_STATUS_OK : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
}

static void free_list(kiln_tensor_t **t, int n) {
    for (int i = 0; t && i < n; i++) kiln_tensor_destroy(t[i]);
    free(t);
}

static void side_close(side *sd, int n_state) {
    if (!sd->r) return;
    free_list(sd->outs, sd->r->n_out);
    free_list(sd->prev, sd->r->n_out);
    free_list(sd->state, n_state);
}

/* Which outputs are compared: the target's outputs the reference also has (and --outputs names). */
static kiln_status select_outputs(session *ss) {
    const cmp_runner *ref = ss->s[0].r, *tgt = ss->s[1].r;
    cmp_result *res = ss->res;
    const char *only = ss->o->only_outputs;
    res->outs = kiln_calloc((size_t)(tgt->n_out + 1), sizeof *res->outs);
    ss->ref_idx = kiln_calloc((size_t)(tgt->n_out + 1), sizeof *ss->ref_idx);
    ss->tgt_idx = kiln_calloc((size_t)(tgt->n_out + 1), sizeof *ss->tgt_idx);
    if (!res->outs || !ss->ref_idx || !ss->tgt_idx) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int j = 0; j < tgt->n_out; j++) {
        const char *name = tgt->out_names[j];
        if (only) {
            bool listed = false;
            for (const char *p = only; *p;) {
                const char *e = strchr(p, ',');
                size_t l = e ? (size_t)(e - p) : strlen(p);
                listed |= strlen(name) == l && strncmp(p, name, l) == 0;
                p += l + (e != NULL);
            }
            if (!listed) continue;
        }
        int ri = cmp_runner_output_index(ref, name);
        if (ri < 0) continue;
        cmp_output *out = &res->outs[res->n_outs];
        snprintf(out->name, sizeof out->name, "%s", name);
        cmp_thresholds_for(ss->o, name, &out->thr);
        out->steps = kiln_calloc((size_t)ss->f.steps, sizeof *out->steps);
        if (!out->steps) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        ss->ref_idx[res->n_outs] = ri;
        ss->tgt_idx[res->n_outs] = j;
        res->n_outs++;
    }
    if (only)
        for (const char *p = only; *p;) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            bool found = false;
            for (int k = 0; k < res->n_outs; k++) found |= strlen(res->outs[k].name) == l && strncmp(p, res->outs[k].name, l) == 0;
            if (!found)
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--outputs names '%.*s', which is not an output of both %s and %s", (int)l, p,
                                  ref->path, tgt->path);
            p += l + (e != NULL);
        }
    if (!res->n_outs)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "no output of %s (the first is '%s') is in %s: nothing to compare", tgt->path,
                          tgt->n_out ? tgt->out_names[0] : "", ref->path);
    return KILN_STATUS_OK;
}

static kiln_status check_state_pairs(session *ss) {
    const cmp_opts *o = ss->o;
    for (int p = 0; p < o->n_state; p++) {
        bool is_input = false;
        for (int i = 0; i < ss->sig->n; i++) is_input |= strcmp(ss->sig->names[i], o->state[p].in) == 0;
        if (!is_input) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--state %s:%s: '%s' is not an input of the model", o->state[p].out, o->state[p].in, o->state[p].in);
        for (int k = 0; k < 2; k++) {
            const cmp_runner *r = ss->s[k].r;
            bool needed = !(k == 0 && r->kind == CMP_RUNNER_SAVED && o->closed_loop);
            if (needed && cmp_runner_output_index(r, o->state[p].out) < 0)
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--state %s:%s: '%s' is not an output of %s", o->state[p].out, o->state[p].in,
                                  o->state[p].out, r->path);
        }
    }
    return KILN_STATUS_OK;
}

/* The inputs one side runs on this step: the common ones plus its state. */
static void side_inputs(session *ss, int k, const char **names, kiln_tensor_t **ts, cmp_tensors *in) {
    const cmp_opts *o = ss->o;
    for (int i = 0; i < ss->sig->n; i++) {
        names[i] = ss->sig->names[i];
        ts[i] = ss->inputs[i];
        int p = cmp_state_of_input(o, names[i]);
        if (p >= 0) ts[i] = (k == 1 && !o->closed_loop) ? ss->s[0].state[p] : ss->s[k].state[p];
    }
    *in = (cmp_tensors){ss->sig->n, names, ts};
}

static kiln_status keep_state(session *ss) {
    const cmp_opts *o = ss->o;
    for (int k = 0; k < 2; k++) {
        side *sd = &ss->s[k];
        for (int p = 0; p < o->n_state; p++) {
            int j = cmp_runner_output_index(sd->r, o->state[p].out);
            if (j < 0 || !sd->outs[j]) continue;
            kiln_tensor_destroy(sd->state[p]);
            sd->state[p] = NULL;
            KILN_TRY(kiln_tensor_clone(sd->outs[j], &sd->state[p]));
        }
    }
    return KILN_STATUS_OK;
}

static kiln_status compare_step(session *ss, int64_t k) {
    cmp_result *res = ss->res;
    for (int i = 0; i < res->n_outs; i++) {
        cmp_output *out = &res->outs[i];
        const kiln_tensor_t *r = ss->s[0].outs[ss->ref_idx[i]], *t = ss->s[1].outs[ss->tgt_idx[i]];
        cmp_metrics *m = &out->steps[k];
        if (!r) {
            memset(m, 0, sizeof *m);
            snprintf(m->problem, sizeof m->problem, "the reference has no value at step %lld", (long long)k);
            snprintf(m->fail, sizeof m->fail, "%s", m->problem);
            m->hard = true;
            continue;
        }
        KILN_TRY(cmp_metrics_compute(r, t, &out->thr, m));
        if (k == 0) out->ref_dtype = r->dtype, out->tgt_dtype = t->dtype;
        out->rank = r->rank;
        memcpy(out->dims, r->dims, sizeof out->dims);
    }
    return KILN_STATUS_OK;
}

static void check_contracts(session *ss, int64_t k) {
    const char *names[2][256];
    for (int s = 0; s < 2; s++) {
        side *sd = &ss->s[s];
        int n = sd->r->n_out < 256 ? sd->r->n_out : 256;
        for (int j = 0; j < n; j++) names[s][j] = sd->r->out_names[j];
        cmp_tensors outs = {n, names[s], sd->outs}, prev = {n, names[s], sd->prev};
        const char *in_names[256];
        kiln_tensor_t *in_t[256];
        cmp_tensors in = {0};
        if (ss->sig->n <= 256) side_inputs(ss, s, in_names, in_t, &in);
        for (int v = 0; v < ss->res->n_inv; v++) cmp_invariant_check(&ss->res->inv[v], s, k, &outs, &in, k ? &prev : NULL);
    }
}

static kiln_status record(kiln_tensor_t ***store, int64_t k, kiln_tensor_t **ts, int n) {
    store[k] = kiln_calloc((size_t)(n + 1), sizeof **store);
    if (!store[k]) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int j = 0; j < n; j++)
        if (ts[j]) KILN_TRY(kiln_tensor_clone(ts[j], &store[k][j]));
    return KILN_STATUS_OK;
}

/* Writes steps of named tensors to an .npz: stacked on a leading step axis when there are
 * several steps, as they are for one. */
static kiln_status write_steps(const char *path, kiln_tensor_t ***store, int64_t steps, const char *const *names, int n) {
    kiln_named_tensor *items = kiln_calloc((size_t)(n + 1), sizeof *items);
    kiln_tensor_t **col = kiln_calloc((size_t)steps, sizeof *col);
    kiln_status s = items && col ? KILN_STATUS_OK : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    int m = 0;
    for (int j = 0; !s && j < n; j++) {
        if (!store[0][j]) continue;
        kiln_tensor_t *t = NULL;
        if (steps == 1) s = kiln_tensor_clone(store[0][j], &t);
        else {
            for (int64_t k = 0; k < steps; k++) col[k] = store[k][j];
            s = cli_tensor_stack(col, steps, &t);
            if (s) kiln_error_prefix(s, "%s: '%s'", path, names[j]);
        }
        if (!s) items[m++] = (kiln_named_tensor){(char *)names[j], t};
    }
    if (!s) s = kiln_npz_write(path, items, m, false);
    for (int j = 0; items && j < m; j++) kiln_tensor_destroy(items[j].t);
    free(items);
    free(col);
    return s;
}

static kiln_status run_steps(session *ss, kiln_tensor_t **trace) {
    const cmp_opts *o = ss->o;
    int64_t steps = ss->f.steps;
    const char *names[2][512];
    kiln_tensor_t *ts[2][512];
    if (ss->sig->n > 512) return kiln_error(KILN_STATUS_UNSUPPORTED, "models with more than 512 inputs");
    for (int64_t k = 0; k < steps; k++) {
        for (int i = 0; i < ss->sig->n; i++) kiln_tensor_destroy(ss->inputs[i]), ss->inputs[i] = NULL;
        KILN_TRY(cmp_feed_step(&ss->f, k, ss->inputs, k ? NULL : ss->res->inputs_desc, sizeof ss->res->inputs_desc));
        if (k == 0)
            for (int i = 0; i < ss->sig->n; i++) {
                int p = cmp_state_of_input(o, ss->sig->names[i]);
                bool from_data;
                for (int s = 0; p >= 0 && s < 2; s++) KILN_TRY(cmp_feed_initial_state(&ss->f, i, &ss->s[s].state[p], &from_data));
            }
        for (int s = 0; s < 2; s++) {
            side *sd = &ss->s[s];
            for (int j = 0; j < sd->r->n_out; j++) {
                kiln_tensor_destroy(sd->prev[j]);
                sd->prev[j] = sd->outs[j];
                sd->outs[j] = NULL;
            }
            cmp_tensors in;
            side_inputs(ss, s, names[s], ts[s], &in);
            KILN_TRY(cmp_runner_run(sd->r, k, steps, &in, sd->outs));
            if (s == 0 && ss->saved_in) {
                KILN_TRY(record(ss->saved_in, k, ts[0], ss->sig->n));
            }
        }
        KILN_TRY(compare_step(ss, k));
        check_contracts(ss, k);
        if (trace)
            for (int j = 0; j < ss->s[0].r->n_out; j++)
                if (ss->s[0].outs[j]) KILN_TRY(kiln_tensor_clone(ss->s[0].outs[j], &trace[k * ss->s[0].r->n_out + j]));
        if (ss->saved_ref) KILN_TRY(record(ss->saved_ref, k, ss->s[0].outs, ss->s[0].r->n_out));
        KILN_TRY(keep_state(ss));
        if (o->progress && steps > 1) fprintf(stderr, "\rkiln compare: step %lld / %lld", (long long)k + 1, (long long)steps);
    }
    if (o->progress && steps > 1) fprintf(stderr, "\n");
    return KILN_STATUS_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The summary of one output over the steps. */
static kiln_status summarize(const cmp_opts *o, cmp_output *out, int64_t steps) {
    out->n_steps = steps;
    cmp_metrics *w = &out->worst;
    *w = out->steps[0];
    double *mx = kiln_calloc((size_t)steps, sizeof *mx), *mean = kiln_calloc((size_t)steps, sizeof *mean);
    if (!mx || !mean) {
        free(mx);
        free(mean);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    bool hard = false;
    int64_t first_fail = -1;
    out->n_pass = 0;
    out->worst_step = 0;
    for (int64_t k = 0; k < steps; k++) {
        const cmp_metrics *m = &out->steps[k];
        mx[k] = m->abs_max;
        mean[k] = m->abs_mean;
        out->n_pass += m->pass;
        hard |= !m->pass && m->hard;
        if (!m->pass && first_fail < 0) first_fail = k;
        if (m->abs_max > out->steps[out->worst_step].abs_max) out->worst_step = k;
        if (k == 0) continue;
        w->compared &= m->compared;
        if (!w->problem[0] && m->problem[0]) snprintf(w->problem, sizeof w->problem, "%s", m->problem);
        w->count += m->count;
        w->abs_max = fmax(w->abs_max, m->abs_max), w->abs_mean = fmax(w->abs_mean, m->abs_mean);
        w->abs_median = fmax(w->abs_median, m->abs_median), w->abs_p95 = fmax(w->abs_p95, m->abs_p95);
        w->abs_p99 = fmax(w->abs_p99, m->abs_p99);
        w->rel_max = fmax(w->rel_max, m->rel_max), w->rel_mean = fmax(w->rel_mean, m->rel_mean);
        w->rel_median = fmax(w->rel_median, m->rel_median), w->rel_p95 = fmax(w->rel_p95, m->rel_p95);
        w->rel_p99 = fmax(w->rel_p99, m->rel_p99);
        if (m->compared && !m->exact) w->cosine = fmin(w->cosine, m->cosine);
        w->nan_ref += m->nan_ref, w->nan_tgt += m->nan_tgt, w->inf_ref += m->inf_ref, w->inf_tgt += m->inf_tgt;
        w->nonfinite_mismatch += m->nonfinite_mismatch;
        w->mismatches += m->mismatches;
        w->outside_tol += m->outside_tol;
    }
    const cmp_metrics *ws = &out->steps[out->worst_step];
    w->worst_index = ws->worst_index, w->worst_ref = ws->worst_ref, w->worst_tgt = ws->worst_tgt;
    out->slope_max = cmp_slope(mx, steps);
    out->slope_mean = cmp_slope(mean, steps);
    qsort(mx, (size_t)steps, sizeof *mx, cmp_double);
    double sum = 0;
    for (int64_t k = 0; k < steps; k++) sum += mx[k];
    out->series_mean = sum / (double)steps;
    out->series_median = cmp_percentile_sorted(mx, steps, 50);
    out->series_p95 = cmp_percentile_sorted(mx, steps, 95);
    out->series_p99 = cmp_percentile_sorted(mx, steps, 99);
    out->series_max = mx[steps - 1];
    free(mx);
    free(mean);
    w->pass = first_fail < 0;
    w->hard = hard;
    w->fail[0] = 0;
    if (first_fail >= 0) {
        if (steps > 1) snprintf(w->fail, sizeof w->fail, "step %lld: %.360s", (long long)first_fail, out->steps[first_fail].fail);
        else snprintf(w->fail, sizeof w->fail, "%s", out->steps[first_fail].fail);
    }
    double rate = (double)out->n_pass / (double)steps;
    out->pass = !hard && rate + 1e-12 >= o->min_pass_rate && (!o->has_max_slope || out->slope_max <= o->max_slope);
    return KILN_STATUS_OK;
}

static void session_free(session *ss) {
    for (int s = 0; s < 2; s++) side_close(&ss->s[s], ss->o->n_state);
    free_list(ss->inputs, ss->sig->n);
    free(ss->ref_idx);
    free(ss->tgt_idx);
    for (int64_t k = 0; k < ss->f.steps; k++) {
        if (ss->saved_in) free_list(ss->saved_in[k], ss->sig->n);
        if (ss->saved_ref) free_list(ss->saved_ref[k], ss->s[0].r ? ss->s[0].r->n_out : 0);
    }
    free(ss->saved_in);
    free(ss->saved_ref);
    cmp_feed_close(&ss->f);
}

static kiln_status save_files(session *ss) {
    const cmp_opts *o = ss->o;
    if (o->save_ref)
        KILN_TRY(write_steps(o->save_ref, ss->saved_ref, ss->f.steps, (const char *const *)ss->s[0].r->out_names, ss->s[0].r->n_out));
    if (o->save_inputs) {
        /* state inputs: only their initial value (what --data wants back) */
        for (int64_t k = 1; k < ss->f.steps; k++)
            for (int i = 0; i < ss->sig->n; i++)
                if (cmp_state_of_input(o, ss->sig->names[i]) >= 0) kiln_tensor_destroy(ss->saved_in[k][i]), ss->saved_in[k][i] = NULL;
        int64_t steps = ss->f.steps;
        const char **names = (const char **)ss->sig->names;
        /* one column per input: stepped ones stacked, state ones as their first value */
        kiln_named_tensor *items = kiln_calloc((size_t)(ss->sig->n + 1), sizeof *items);
        kiln_tensor_t **col = kiln_calloc((size_t)steps, sizeof *col);
        kiln_status s = items && col ? KILN_STATUS_OK : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        int m = 0;
        for (int i = 0; !s && i < ss->sig->n; i++) {
            kiln_tensor_t *t = NULL;
            if (!ss->saved_in[0][i]) continue; /* an input left to its initializer */
            if (steps == 1 || cmp_state_of_input(o, names[i]) >= 0) s = kiln_tensor_clone(ss->saved_in[0][i], &t);
            else {
                for (int64_t k = 0; k < steps; k++) col[k] = ss->saved_in[k][i];
                s = cli_tensor_stack(col, steps, &t);
            }
            if (!s) items[m++] = (kiln_named_tensor){(char *)names[i], t};
        }
        if (!s) s = kiln_npz_write(o->save_inputs, items, m, false);
        for (int j = 0; items && j < m; j++) kiln_tensor_destroy(items[j].t);
        free(items);
        free(col);
        KILN_TRY(s);
    }
    return KILN_STATUS_OK;
}

kiln_status cmp_session_run(const cmp_opts *o, const cmp_signature *sig, cmp_runner *ref, cmp_runner *tgt, cmp_result *res,
                            kiln_tensor_t ***trace, int64_t *trace_steps) {
    memset(res, 0, sizeof *res);
    session ss = {.o = o, .sig = sig, .res = res};
    kiln_status s = cmp_feed_open(&ss.f, o, sig);
    res->steps = ss.f.steps;
    res->inv = kiln_calloc((size_t)(o->n_inv + 1), sizeof *res->inv);
    ss.inputs = kiln_calloc((size_t)(sig->n + 1), sizeof *ss.inputs);
    if (!s && (!res->inv || !ss.inputs)) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (!s) {
        res->n_inv = o->n_inv;
        for (int v = 0; v < o->n_inv; v++) res->inv[v] = o->inv[v], cmp_invariant_reset(&res->inv[v]);
        s = side_open(&ss.s[0], ref, o->n_state);
    }
    if (!s) s = side_open(&ss.s[1], tgt, o->n_state);
    if (!s) s = select_outputs(&ss);
    if (!s) s = check_state_pairs(&ss);
    if (!s && o->save_inputs && !(ss.saved_in = kiln_calloc((size_t)ss.f.steps, sizeof *ss.saved_in)))
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (!s && o->save_ref && !(ss.saved_ref = kiln_calloc((size_t)ss.f.steps, sizeof *ss.saved_ref)))
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_tensor_t **tr = NULL;
    if (!s && trace && !(tr = kiln_calloc((size_t)(ss.f.steps * ref->n_out + 1), sizeof *tr)))
        s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (!s) s = run_steps(&ss, tr);
    for (int i = 0; !s && i < res->n_outs; i++) s = summarize(o, &res->outs[i], ss.f.steps);
    if (!s) s = save_files(&ss);
    if (!s) {
        res->pass = true;
        for (int i = 0; i < res->n_outs; i++) res->n_failed_outputs += !res->outs[i].pass;
        for (int v = 0; v < res->n_inv; v++) res->n_broken_invariants += res->inv[v].r[0].violations || res->inv[v].r[1].violations;
        res->pass = !res->n_failed_outputs && !res->n_broken_invariants;
    }
    if (trace) {
        if (!s) *trace = tr, *trace_steps = ss.f.steps;
        else free_list(tr, (int)(ss.f.steps * ref->n_out));
    }
    session_free(&ss);
    return s;
}

void cmp_result_free(cmp_result *res) {
    for (int i = 0; res->outs && i < res->n_outs; i++) free(res->outs[i].steps);
    free(res->outs);
    free(res->inv);
    memset(res, 0, sizeof *res);
}

double cmp_result_score(const cmp_result *res) {
    double score = 0;
    for (int i = 0; i < res->n_outs; i++) {
        const cmp_output *out = &res->outs[i];
        for (int64_t k = 0; k < out->n_steps; k++) {
            const cmp_metrics *m = &out->steps[k];
            if (!m->compared || m->nonfinite_mismatch) {
                score += 1e6;
                continue;
            }
            if (m->exact) score += m->count ? (double)m->mismatches / (double)m->count : 0;
            else score += m->abs_mean / fmax(m->ref_abs_mean, 1e-30) / (double)out->n_steps;
        }
    }
    return score;
}
