/* collect.c — runs the FP32 graph over the calibration batches, one observer per float tensor,
 * then amax by every method; and the model fingerprint. collect.h states the rules. */
#include "quant/collect.h"

#include "backends/ref/ref.h"
#include "ops/op.h"
#include "quant/cache.h"

#include <math.h>
#include <string.h>

/* ---- fingerprint ---------------------------------------------------------------------------- */

static uint64_t fp_str(uint64_t h, const char *s) {
    if (!s) s = "";
    return kiln_fnv1a64(s, strlen(s) + 1, h);
}

static uint64_t fp_i64(uint64_t h, int64_t v) {
    unsigned char b[8];
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)v >> (8 * k));
    return kiln_fnv1a64(b, sizeof b, h);
}

static const char *value_name(const kiln_graph *g, int v) { return v >= 0 && v < g->n_values ? g->values[v].name : ""; }

uint64_t kiln_calib_fingerprint(const kiln_graph *g) {
    uint64_t h = fp_str(KILN_FNV1A64_INIT, "kiln-calib-fingerprint-1");
    h = fp_i64(h, g->n_inputs);
    for (int i = 0; i < g->n_inputs; i++) h = fp_str(h, value_name(g, g->inputs[i]));
    h = fp_i64(h, g->n_outputs);
    for (int i = 0; i < g->n_outputs; i++) h = fp_str(h, value_name(g, g->outputs[i]));
    h = fp_i64(h, g->n_nodes);
    for (int i = 0; i < g->n_nodes; i++) {
        const kiln_node *n = &g->nodes[i];
        h = fp_str(h, kiln_op_name(n->op));
        h = fp_i64(h, n->n_declared);
        for (int k = 0; k < n->n_declared; k++) h = fp_str(h, value_name(g, n->inputs[k]));
        h = fp_i64(h, n->n_outputs);
        for (int k = 0; k < n->n_outputs; k++) h = fp_str(h, value_name(g, n->outputs[k]));
    }
    int64_t n_init = 0;
    for (int v = 0; v < g->n_values; v++)
        if ((g->values[v].flags & KILN_VALUE_CONST) && g->values[v].producer < 0) n_init++;
    h = fp_i64(h, n_init);
    for (int v = 0; v < g->n_values; v++) {
        const kiln_value *val = &g->values[v];
        if (!(val->flags & KILN_VALUE_CONST) || val->producer >= 0) continue;
        h = fp_str(h, val->name);
        h = fp_i64(h, val->type.dtype);
        h = fp_i64(h, val->type.rank);
        for (int d = 0; d < val->type.rank; d++) h = fp_i64(h, val->type.dims[d]);
    }
    return h;
}

/* ---- collection ----------------------------------------------------------------------------- */

typedef struct collect_state {
    const kiln_graph *g;
    kiln_observer **obs;  /* per value id, NULL until a float tensor of it is seen */
    kiln_dtype *dtype;    /* per value id: the dtype observed */
    int64_t batch;        /* for messages */
} collect_state;

static kiln_status observe_tensor(collect_state *st, int v, const kiln_tensor *t) {
    if (!kiln_dtype_is_float(t->dtype)) return KILN_STATUS_OK;
    if (!st->obs[v]) {
        KILN_TRY(kiln_observer_create(&st->obs[v]));
        st->dtype[v] = t->dtype;
    }
    int64_t n = kiln_shape_count(t->rank, t->dims);
    if (n <= 0) return KILN_STATUS_OK;
    if (!t->data)
        return kiln_error(KILN_STATUS_INTERNAL, "calibration batch %lld: tensor '%s' has no data", (long long)st->batch,
                          st->g->values[v].name);
    kiln_status s = kiln_observer_feed_typed(st->obs[v], t->dtype, t->data, n);
    if (s != KILN_STATUS_OK) return kiln_error_prefix(s, "tensor '%s'", st->g->values[v].name);
    return KILN_STATUS_OK;
}

static kiln_status on_value(const kiln_graph *g, int value, const kiln_tensor *t, void *user) {
    collect_state *st = user;
    if (g != st->g || value < 0 || value >= g->n_values) return KILN_STATUS_OK;
    return observe_tensor(st, value, t);
}

static void result_free_tensors(kiln_calib_tensor *t, int64_t n) {
    for (int64_t k = 0; t && k < n; k++) {
        free(t[k].name);
        kiln_observer_destroy(t[k].obs);
    }
    free(t);
}

void kiln_calib_result_free(kiln_calib_result *r) {
    if (!r) return;
    result_free_tensors(r->tensors, r->n);
    free(r);
}

const kiln_calib_tensor *kiln_calib_result_find(const kiln_calib_result *r, const char *name) {
    for (int64_t k = 0; r && name && k < r->n; k++)
        if (strcmp(r->tensors[k].name, name) == 0) return &r->tensors[k];
    return NULL;
}

/* Fills the defaults of opt and checks it, on a one-value observer. */
static kiln_status check_options(const kiln_calib_options *opt, kiln_calib_options *out) {
    kiln_calib_options o = opt ? *opt : (kiln_calib_options){0};
    if (o.percentile == 0) o.percentile = KILN_CALIB_DEFAULT_PERCENTILE;
    if (o.levels == 0) o.levels = KILN_CALIB_DEFAULT_LEVELS;
    if (o.start_bin == 0) o.start_bin = KILN_CALIB_DEFAULT_START_BIN;
    if (o.single_method < 0 || o.single_method > KILN_CALIB_METHOD_COUNT)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration: single_method %d is not a method", o.single_method);
    kiln_observer *probe;
    KILN_TRY(kiln_observer_create(&probe));
    float one = 1.0f;
    double a;
    kiln_status s = kiln_observer_feed(probe, &one, 1);
    for (int m = 0; s == KILN_STATUS_OK && m < KILN_CALIB_METHOD_COUNT; m++) s = kiln_calib_amax(probe, (kiln_calib_method)m, &o, &a);
    kiln_observer_destroy(probe);
    if (s == KILN_STATUS_OK) *out = o;
    return s;
}

/* dim 0 of the first fed input: the samples a batch holds */
static int64_t batch_samples(const kiln_graph *g, kiln_tensor *const *inputs) {
    for (int i = 0; i < g->n_inputs; i++)
        if (inputs[i]) return inputs[i]->rank > 0 ? inputs[i]->dims[0] : 1;
    return 0;
}

kiln_status kiln_calib_collect_from(const kiln_model *m, kiln_calib_next_fn next, void *next_user, int64_t total,
                                    const kiln_calib_options *opt, kiln_calib_progress_fn progress, void *user,
                                    kiln_calib_result **out) {
    if (!m || !m->graph || !next || !out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_collect: NULL argument");
    *out = NULL;
    const kiln_graph *g = m->graph;
    kiln_calib_options o;
    KILN_TRY(check_options(opt, &o));

    collect_state st = {.g = g};
    st.obs = kiln_calloc((size_t)g->n_values, sizeof *st.obs);
    st.dtype = kiln_calloc((size_t)g->n_values, sizeof *st.dtype);
    kiln_tensor *outs = kiln_calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *outs);
    kiln_calib_result *r = kiln_calloc(1, sizeof *r);
    kiln_status s = KILN_STATUS_OK;
    if (!st.obs || !st.dtype || !outs || !r) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");

    if (s == KILN_STATUS_OK && progress) progress(0, total, user);
    int64_t b = 0, samples = 0;
    for (; s == KILN_STATUS_OK; b++) {
        st.batch = b;
        kiln_tensor *const *inputs = NULL;
        bool done = false;
        s = next(next_user, b, &inputs, &done);
        if (s == KILN_STATUS_OK && done) break;
        if (s == KILN_STATUS_OK) samples += batch_samples(g, inputs);
        for (int i = 0; s == KILN_STATUS_OK && i < g->n_inputs; i++)
            if (inputs[i]) s = observe_tensor(&st, g->inputs[i], inputs[i]);
        if (s == KILN_STATUS_OK) {
            s = kiln_ref_run_graph_observed(g, inputs, NULL, outs, on_value, &st);
            if (s == KILN_STATUS_OK)
                for (int j = 0; j < g->n_outputs; j++) kiln_tensor_release(&outs[j]);
        }
        if (s != KILN_STATUS_OK) {
            if (total > 0) s = kiln_error_prefix(s, "calibration batch %lld of %lld", (long long)(b + 1), (long long)total);
            else s = kiln_error_prefix(s, "calibration batch %lld", (long long)(b + 1));
            break;
        }
        if (progress) progress(b + 1, total, user);
    }
    if (s == KILN_STATUS_OK && b == 0) s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration: no batches were given");

    /* The result: inputs in graph order, then node outputs in node order; each value once. */
    int64_t n = 0;
    for (int v = 0; st.obs && v < g->n_values; v++) n += st.obs[v] != NULL;
    if (s == KILN_STATUS_OK) {
        r->tensors = kiln_calloc((size_t)(n ? n : 1), sizeof *r->tensors);
        if (!r->tensors) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    for (int pass = 0; s == KILN_STATUS_OK && pass < 2; pass++) {
        int count = pass == 0 ? g->n_inputs : g->n_nodes;
        for (int i = 0; s == KILN_STATUS_OK && i < count; i++) {
            int n_vals = pass == 0 ? 1 : g->nodes[i].n_outputs;
            for (int j = 0; j < n_vals; j++) {
                int v = pass == 0 ? g->inputs[i] : g->nodes[i].outputs[j];
                if (v < 0 || !st.obs[v]) continue;
                kiln_calib_tensor *t = &r->tensors[r->n];
                t->name = kiln_strdup(g->values[v].name ? g->values[v].name : "");
                if (!t->name) {
                    s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
                    break;
                }
                t->dtype = st.dtype[v];
                t->is_input = pass == 0;
                t->op = pass == 0 ? "" : kiln_op_name(g->nodes[i].op);
                t->obs = st.obs[v];
                st.obs[v] = NULL; /* owned by the result now; a value listed twice is taken once */
                r->n++;
            }
        }
    }
    /* Each tensor's amax values (the entropy search is the costly part) on its own: one thread
     * a tensor (errors are thread-local; a tensor whose amax fails is marked invalid). */
    if (s == KILN_STATUS_OK) {
        int only = o.single_method - 1;
#pragma omp parallel for schedule(dynamic)
        for (int64_t k = 0; k < r->n; k++) {
            kiln_calib_tensor *t = &r->tensors[k];
            for (int m = 0; m < KILN_CALIB_METHOD_COUNT; m++) t->amax[m] = NAN;
            kiln_status as = t->obs->count == 0 ? KILN_STATUS_INVALID_ARGUMENT
                             : only >= 0 ? kiln_calib_amax(t->obs, (kiln_calib_method)only, &o, &t->amax[only])
                                         : kiln_calib_amax_all(t->obs, &o, t->amax);
            t->valid = as == KILN_STATUS_OK;
            if (!t->valid) {
                kiln_clear_error();
                for (int m = 0; m < KILN_CALIB_METHOD_COUNT; m++) t->amax[m] = NAN;
            }
        }
    }
    if (s == KILN_STATUS_OK && r->n != n)
        s = kiln_error(KILN_STATUS_INTERNAL, "calibration: %lld tensors observed, %lld placed in the result", (long long)n,
                       (long long)r->n);
    for (int v = 0; st.obs && v < g->n_values; v++) kiln_observer_destroy(st.obs[v]);
    free(st.obs);
    free(st.dtype);
    free(outs);
    if (s != KILN_STATUS_OK) {
        kiln_calib_result_free(r);
        return s;
    }
    r->batches = b;
    r->samples = samples;
    r->fingerprint = kiln_calib_fingerprint(g);
    r->options = o;
    *out = r;
    return KILN_STATUS_OK;
}

/* ---- batches from a calibration source ------------------------------------------------------ */

static kiln_status source_next(void *user, int64_t b, kiln_tensor *const **inputs, bool *done) {
    kiln_calib_source *src = user;
    if (b >= kiln_calib_source_num_batches(src)) {
        *done = true;
        return KILN_STATUS_OK;
    }
    return kiln_calib_source_batch(src, b, inputs);
}

kiln_status kiln_calib_collect(const kiln_model *m, kiln_calib_source *src, const kiln_calib_options *opt,
                               kiln_calib_progress_fn progress, void *user, kiln_calib_result **out) {
    if (!src) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_collect: NULL source");
    KILN_TRY(kiln_calib_collect_from(m, source_next, src, kiln_calib_source_num_batches(src), opt, progress, user, out));
    (*out)->samples = kiln_calib_source_num_samples(src);
    return KILN_STATUS_OK;
}

/* ---- batches from a kiln_calibrator's get_batch -------------------------------------------- */

typedef struct calibrator_state {
    const kiln_calibrator *cal;
    const kiln_graph *g;
    const char **names;   /* the graph input names, in order */
    kiln_tensor **tensors; /* what get_batch gave */
} calibrator_state;

static kiln_status calibrator_next(void *user, int64_t b, kiln_tensor *const **inputs, bool *done) {
    calibrator_state *cs = user;
    const kiln_graph *g = cs->g;
    for (int i = 0; i < g->n_inputs; i++) cs->tensors[i] = NULL;
    int r = cs->cal->get_batch(cs->cal->user, g->n_inputs, cs->names, cs->tensors);
    if (r < 0)
        return kiln_error(KILN_STATUS_RUNTIME_ERROR, "the calibrator's get_batch failed (returned %d) for batch %lld", r,
                          (long long)(b + 1));
    if (r == 0) {
        *done = true;
        return KILN_STATUS_OK;
    }
    char what[64];
    snprintf(what, sizeof what, "the calibrator's batch %lld", (long long)(b + 1));
    KILN_TRY(kiln_calib_check_batch(g, cs->tensors, what));
    *inputs = cs->tensors;
    return KILN_STATUS_OK;
}

kiln_status kiln_calib_collect_calibrator(const kiln_model *m, const kiln_calibrator *cal, const kiln_calib_options *opt,
                                          kiln_calib_progress_fn progress, void *user, kiln_calib_result **out) {
    if (!m || !m->graph || !cal || !cal->get_batch || !out)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_collect_calibrator: NULL argument");
    const kiln_graph *g = m->graph;
    calibrator_state cs = {.cal = cal, .g = g};
    cs.names = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof *cs.names);
    cs.tensors = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof *cs.tensors);
    kiln_status s = KILN_STATUS_OK;
    if (!cs.names || !cs.tensors) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; s == KILN_STATUS_OK && i < g->n_inputs; i++) cs.names[i] = g->values[g->inputs[i]].name;
    int64_t total = cal->num_batches > 0 ? cal->num_batches : 0;
    if (s == KILN_STATUS_OK) s = kiln_calib_collect_from(m, calibrator_next, &cs, total, opt, progress, user, out);
    free(cs.names);
    free(cs.tensors);
    return s;
}
