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
#include "runtime/engine.h"

#include <math.h>
#include <string.h>

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

/* Whether graph input i has an initializer (an optional input with a default value). */
static bool has_default(const cmp_runner *r, int i) {
    const kiln_model *m = r->e ? &((const struct kiln_engine *)r->e)->model : (const kiln_model *)r->m;
    const kiln_graph *g = m->graph;
    return i < g->n_inputs && (g->values[g->inputs[i]].flags & KILN_VALUE_CONST);
}

kiln_status cmp_signature_of(const cmp_runner *r, cmp_signature *sig) {
    memset(sig, 0, sizeof *sig);
    int n = r->e ? kiln_engine_num_inputs(r->e) : kiln_model_num_inputs(r->m);
    sig->n = n;
    sig->names = kiln_calloc((size_t)(n ? n : 1), sizeof *sig->names);
    sig->dtypes = kiln_calloc((size_t)(n ? n : 1), sizeof *sig->dtypes);
    sig->ranks = kiln_calloc((size_t)(n ? n : 1), sizeof *sig->ranks);
    sig->dims = kiln_calloc((size_t)(n ? n : 1), sizeof *sig->dims);
    sig->has_default = kiln_calloc((size_t)(n ? n : 1), sizeof *sig->has_default);
    if (!sig->names || !sig->dtypes || !sig->ranks || !sig->dims || !sig->has_default) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n; i++) {
        sig->names[i] = kiln_strdup(r->e ? kiln_engine_input_name(r->e, i) : kiln_model_input_name(r->m, i));
        if (!sig->names[i]) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        sig->has_default[i] = has_default(r, i);
        if (!r->e) {
            KILN_TRY(kiln_model_input_info(r->m, i, &sig->dtypes[i], &sig->ranks[i], sig->dims[i]));
            continue;
        }
        KILN_TRY(kiln_engine_input_info(r->e, i, &sig->dtypes[i], &sig->ranks[i], sig->dims[i]));
        int prank;
        int64_t mn[KILN_MAX_RANK], op[KILN_MAX_RANK], mx[KILN_MAX_RANK];
        if (kiln_engine_profile_shape(r->e, r->profile, i, &prank, mn, op, mx) == KILN_STATUS_OK && prank >= 0) {
            sig->ranks[i] = prank;
            memcpy(sig->dims[i], op, sizeof(int64_t) * (size_t)prank);
        }
    }
    return KILN_STATUS_OK;
}

void cmp_signature_free(cmp_signature *sig) {
    for (int i = 0; sig->names && i < sig->n; i++) free(sig->names[i]);
    free(sig->names);
    free(sig->dtypes);
    free(sig->ranks);
    free(sig->dims);
    free(sig->has_default);
    memset(sig, 0, sizeof *sig);
}

static int state_of_input(const cmp_opts *o, const char *name) {
    for (int p = 0; p < o->n_state; p++)
        if (strcmp(o->state[p].in, name) == 0) return p;
    return -1;
}

/* The shape data is generated at: --shapes, else the declared (or the engine profile's) shape. */
static kiln_status gen_shape(const cmp_opts *o, const cmp_signature *sig, int i, int *rank, int64_t *dims) {
    cli_shape given[64];
    int n_given = 0;
    if (o->shapes && cli_parse_shapes(o->shapes, given, 64, &n_given))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--shapes '%s': expected NAME:AxBxC,...", o->shapes);
    const cli_shape *sh = cli_find_shape(given, n_given, sig->names[i]);
    *rank = sh ? sh->rank : sig->ranks[i];
    memcpy(dims, sh ? sh->dims : sig->dims[i], sizeof(int64_t) * KILN_MAX_RANK);
    if (*rank < 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has no declared shape: give it with --shapes or in --data", sig->names[i]);
    for (int k = 0; k < *rank; k++)
        if (dims[k] < 0)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has a dynamic dim %d: give its shape with --shapes %s:... or its data with --data",
                              sig->names[i], k, sig->names[i]);
    return KILN_STATUS_OK;
}

typedef struct feed {
    const cmp_opts *o;
    const cmp_signature *sig;
    cli_data data;
    bool has_data;
    cli_rng rng;
    int64_t steps;
} feed;

static int sig_rank(const char *name, void *user) {
    const cmp_signature *sig = user;
    for (int i = 0; i < sig->n; i++)
        if (strcmp(sig->names[i], name) == 0) return sig->ranks[i];
    return -1;
}

static kiln_status feed_open(feed *f, const cmp_opts *o, const cmp_signature *sig) {
    memset(f, 0, sizeof *f);
    f->o = o;
    f->sig = sig;
    cli_rng_seed(&f->rng, o->seed);
    int64_t data_steps = 0;
    if (o->data) {
        KILN_TRY(cli_data_open(o->data, &f->data));
        f->has_data = true;
        KILN_TRY(cli_data_steps(&f->data, sig_rank, (void *)sig, &data_steps));
    }
    f->steps = o->steps > 0 ? o->steps : data_steps > 0 ? data_steps : 1;
    return KILN_STATUS_OK;
}

/* Input i at step k: from the data when it names it, else random. *from_data says which. */
static kiln_status feed_input(feed *f, int i, int64_t k, kiln_tensor_t **out, bool *from_data) {
    const cmp_signature *sig = f->sig;
    *out = NULL;
    if (f->has_data)
        KILN_TRY(cli_data_get(&f->data, sig->names[i], sig->ranks[i], f->steps > 1, sig->n == 1, k, out));
    *from_data = *out != NULL;
    if (*out || sig->has_default[i]) return KILN_STATUS_OK; /* an input with a default keeps it */
    int rank;
    int64_t dims[KILN_MAX_RANK];
    double lo, hi;
    KILN_TRY(gen_shape(f->o, sig, i, &rank, dims));
    cli_range_for(f->o->ranges, f->o->n_ranges, sig->names[i], sig->dtypes[i], &lo, &hi);
    return cli_random_tensor(sig->dtypes[i], rank, dims, lo, hi, &f->rng, out);
}

/* The initial value of a state input: the data's (step 0 of a stepped array), else zeros. */
static kiln_status feed_initial_state(feed *f, int i, kiln_tensor_t **out, bool *from_data) {
    const cmp_signature *sig = f->sig;
    *out = NULL;
    if (f->has_data) KILN_TRY(cli_data_get(&f->data, sig->names[i], sig->ranks[i], false, sig->n == 1, 0, out));
    if (*out && sig->ranks[i] >= 0 && (*out)->rank == sig->ranks[i] + 1) {
        kiln_tensor_t *first;
        kiln_status s = cli_tensor_slice(*out, 0, &first);
        kiln_tensor_destroy(*out);
        *out = s ? NULL : first;
        KILN_TRY(s);
    }
    *from_data = *out != NULL;
    if (*out) return KILN_STATUS_OK;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    KILN_TRY(gen_shape(f->o, sig, i, &rank, dims));
    return kiln_tensor_create(sig->dtypes[i], rank, dims, out);
}

/* The inputs of a step that do not come from state (inputs[i] NULL for state inputs). */
static kiln_status feed_step(feed *f, int64_t k, kiln_tensor_t **inputs, char *desc, size_t n) {
    size_t u = 0;
    for (int i = 0; i < f->sig->n; i++) {
        bool from_data;
        if (state_of_input(f->o, f->sig->names[i]) >= 0) {
            if (k == 0 && desc) {
                kiln_tensor_t *t;
                KILN_TRY(feed_initial_state(f, i, &t, &from_data));
                kiln_tensor_destroy(t);
                if (u < n) u += (size_t)snprintf(desc + u, n - u, "%s%s: state, starts at %s", u ? "; " : "", f->sig->names[i],
                                                 from_data ? "the data's value" : "zeros");
            }
            continue;
        }
        KILN_TRY(feed_input(f, i, k, &inputs[i], &from_data));
        if (k == 0 && desc && u < n) {
            if (!inputs[i]) u += (size_t)snprintf(desc + u, n - u, "%s%s: its initializer", u ? "; " : "", f->sig->names[i]);
            else if (from_data) u += (size_t)snprintf(desc + u, n - u, "%s%s: %s", u ? "; " : "", f->sig->names[i], f->o->data);
            else u += (size_t)snprintf(desc + u, n - u, "%s%s: generated (seed %llu)", u ? "; " : "", f->sig->names[i],
                                       (unsigned long long)f->o->seed);
        }
    }
    return KILN_STATUS_OK;
}

kiln_status cmp_first_inputs(const cmp_opts *o, const cmp_signature *sig, cmp_tensors *out) {
    memset(out, 0, sizeof *out);
    feed f;
    kiln_status s = feed_open(&f, o, sig);
    out->names = kiln_calloc((size_t)(sig->n ? sig->n : 1), sizeof *out->names);
    out->t = kiln_calloc((size_t)(sig->n ? sig->n : 1), sizeof *out->t);
    if (!s && (!out->names || !out->t)) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (!s) {
        out->n = sig->n;
        for (int i = 0; i < sig->n; i++) out->names[i] = kiln_strdup(sig->names[i]);
        s = feed_step(&f, 0, out->t, NULL, 0);
        for (int i = 0; !s && i < sig->n; i++) {
            bool from_data;
            if (state_of_input(o, sig->names[i]) >= 0) s = feed_initial_state(&f, i, &out->t[i], &from_data);
        }
    }
    cli_data_close(&f.data);
    return s;
}

/* ---- the loop ---- */

typedef struct side {
    cmp_runner *r;
    kiln_tensor_t **outs, **prev; /* this step's and the step before's outputs (r->n_out) */
    kiln_tensor_t **state;        /* per state pair: what this side's IN gets next */
} side;

typedef struct session {
    const cmp_opts *o;
    const cmp_signature *sig;
    feed f;
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
        int p = state_of_input(o, names[i]);
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
        KILN_TRY(feed_step(&ss->f, k, ss->inputs, k ? NULL : ss->res->inputs_desc, sizeof ss->res->inputs_desc));
        if (k == 0)
            for (int i = 0; i < ss->sig->n; i++) {
                int p = state_of_input(o, ss->sig->names[i]);
                bool from_data;
                for (int s = 0; p >= 0 && s < 2; s++) KILN_TRY(feed_initial_state(&ss->f, i, &ss->s[s].state[p], &from_data));
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
    cli_data_close(&ss->f.data);
}

static kiln_status save_files(session *ss) {
    const cmp_opts *o = ss->o;
    if (o->save_ref)
        KILN_TRY(write_steps(o->save_ref, ss->saved_ref, ss->f.steps, (const char *const *)ss->s[0].r->out_names, ss->s[0].r->n_out));
    if (o->save_inputs) {
        /* state inputs: only their initial value (what --data wants back) */
        for (int64_t k = 1; k < ss->f.steps; k++)
            for (int i = 0; i < ss->sig->n; i++)
                if (state_of_input(o, ss->sig->names[i]) >= 0) kiln_tensor_destroy(ss->saved_in[k][i]), ss->saved_in[k][i] = NULL;
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
            if (steps == 1 || state_of_input(o, names[i]) >= 0) s = kiln_tensor_clone(ss->saved_in[0][i], &t);
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
    kiln_status s = feed_open(&ss.f, o, sig);
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
