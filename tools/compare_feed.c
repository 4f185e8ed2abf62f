/* compare_feed.c — the model's input signature and the inputs of each step: from --data, generated
 * (seeded, within --input-range), an initializer's default, or, for state inputs, the initial value
 * (the data's, else zeros). The session feeds state itself after step 0. */
#include "compare.h"

#include "core/core.h"
#include "runtime/engine.h"

#include <string.h>

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

int cmp_state_of_input(const cmp_opts *o, const char *name) {
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


static int sig_rank(const char *name, void *user) {
    const cmp_signature *sig = user;
    for (int i = 0; i < sig->n; i++)
        if (strcmp(sig->names[i], name) == 0) return sig->ranks[i];
    return -1;
}

kiln_status cmp_feed_open(cmp_feed *f, const cmp_opts *o, const cmp_signature *sig) {
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
static kiln_status feed_input(cmp_feed *f, int i, int64_t k, kiln_tensor_t **out, bool *from_data) {
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
kiln_status cmp_feed_initial_state(cmp_feed *f, int i, kiln_tensor_t **out, bool *from_data) {
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
kiln_status cmp_feed_step(cmp_feed *f, int64_t k, kiln_tensor_t **inputs, char *desc, size_t n) {
    size_t u = 0;
    for (int i = 0; i < f->sig->n; i++) {
        bool from_data;
        if (cmp_state_of_input(f->o, f->sig->names[i]) >= 0) {
            if (k == 0 && desc) {
                kiln_tensor_t *t;
                KILN_TRY(cmp_feed_initial_state(f, i, &t, &from_data));
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
    /* arrays of the data that feed nothing: said, so that a misspelt name is seen */
    for (int a = 0; k == 0 && desc && f->has_data && a < f->data.n_arrays; a++) {
        bool used = false;
        for (int i = 0; i < f->sig->n; i++) used |= strcmp(f->sig->names[i], f->data.arrays[a].name) == 0;
        if (!used && u < n) u += (size_t)snprintf(desc + u, n - u, "; '%s' of the data is no input (ignored)", f->data.arrays[a].name);
    }
    return KILN_STATUS_OK;
}

kiln_status cmp_first_inputs(const cmp_opts *o, const cmp_signature *sig, cmp_tensors *out) {
    memset(out, 0, sizeof *out);
    cmp_feed f;
    kiln_status s = cmp_feed_open(&f, o, sig);
    out->names = kiln_calloc((size_t)(sig->n ? sig->n : 1), sizeof *out->names);
    out->t = kiln_calloc((size_t)(sig->n ? sig->n : 1), sizeof *out->t);
    if (!s && (!out->names || !out->t)) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (!s) {
        out->n = sig->n;
        for (int i = 0; i < sig->n; i++) out->names[i] = kiln_strdup(sig->names[i]);
        s = cmp_feed_step(&f, 0, out->t, NULL, 0);
        for (int i = 0; !s && i < sig->n; i++) {
            bool from_data;
            if (cmp_state_of_input(o, sig->names[i]) >= 0) s = cmp_feed_initial_state(&f, i, &out->t[i], &from_data);
        }
    }
    cmp_feed_close(&f);
    return s;
}

void cmp_feed_close(cmp_feed *f) { cli_data_close(&f->data); }
