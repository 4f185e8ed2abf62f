/* model.c — the public kiln_model_* API: load (mmap + import), describe, and run through the
 * reference backend with inputs checked against the declared types. */
#include "import.h"

#include "../backends/ref/ref.h"

#include <string.h>

static kiln_status load(const void *data, size_t size, const char *file, const char *base_dir, kiln_model_t **out) {
    kiln_model *m = kiln_calloc(1, sizeof *m);
    if (!m) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status s = kiln_model_import(data, size, file, base_dir, m);
    if (s != KILN_STATUS_OK) {
        kiln_model_free_contents(m);
        free(m);
        return s;
    }
    *out = m;
    return KILN_STATUS_OK;
}

kiln_status kiln_model_load(const char *path, kiln_model_t **out) {
    if (!path || !out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_model_load: NULL argument");
    *out = NULL;
    const void *data;
    size_t size;
    KILN_TRY(kiln_file_map(path, path, &data, &size));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    /* The protobuf is unpacked into its own memory, so the file's mapping ends here. */
    kiln_status s = load(data, size, path, dir, out);
    kiln_file_unmap(data, size);
    if (s == KILN_STATUS_OK) (*out)->path = kiln_strdup(path);
    return s;
}

kiln_status kiln_model_load_buffer(const void *data, size_t size, const char *base_dir, kiln_model_t **out) {
    if (!out || (!data && size)) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_model_load_buffer: NULL argument");
    *out = NULL;
    return load(data, size, "<buffer>", base_dir, out);
}

void kiln_model_destroy(kiln_model_t *m) {
    if (!m) return;
    kiln_model_free_contents(m);
    free(m);
}

/* Graph inputs that have an initializer are optional overrides; they still count as inputs. */
int kiln_model_num_inputs(const kiln_model_t *m) { return m->graph->n_inputs; }
int kiln_model_num_outputs(const kiln_model_t *m) { return m->graph->n_outputs; }

const char *kiln_model_input_name(const kiln_model_t *m, int i) {
    return i >= 0 && i < m->graph->n_inputs ? m->graph->values[m->graph->inputs[i]].name : NULL;
}

const char *kiln_model_output_name(const kiln_model_t *m, int i) {
    return i >= 0 && i < m->graph->n_outputs ? m->graph->values[m->graph->outputs[i]].name : NULL;
}

static kiln_status info(const kiln_value *v, kiln_dtype *dtype, int *rank, int64_t *dims) {
    if (dtype) *dtype = v->type.dtype;
    if (rank) *rank = v->type.rank;
    for (int i = 0; dims && i < v->type.rank; i++) dims[i] = v->type.dims[i] < 0 ? -1 : v->type.dims[i];
    return KILN_STATUS_OK;
}

kiln_status kiln_model_input_info(const kiln_model_t *m, int i, kiln_dtype *dtype, int *rank, int64_t dims[KILN_MAX_RANK]) {
    if (i < 0 || i >= m->graph->n_inputs) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input index %d out of range", i);
    return info(&m->graph->values[m->graph->inputs[i]], dtype, rank, dims);
}

kiln_status kiln_model_output_info(const kiln_model_t *m, int i, kiln_dtype *dtype, int *rank, int64_t dims[KILN_MAX_RANK]) {
    if (i < 0 || i >= m->graph->n_outputs) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "output index %d out of range", i);
    return info(&m->graph->values[m->graph->outputs[i]], dtype, rank, dims);
}

/* A given input must have the declared dtype, rank and fixed dims; equal symbols equal sizes. */
static kiln_status check_input(const kiln_graph *g, const kiln_value *v, const kiln_tensor *t, int64_t *sym) {
    char a[200], b[200];
    if (v->type.dtype != KILN_DTYPE_UNDEFINED && t->dtype != v->type.dtype)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s': expected dtype %s, got %s", v->name,
                          kiln_dtype_name(v->type.dtype), kiln_dtype_name(t->dtype));
    if (v->type.rank < 0) return KILN_STATUS_OK;
    bool ok = t->rank == v->type.rank;
    for (int i = 0; ok && i < t->rank; i++) {
        int64_t d = v->type.dims[i];
        if (d >= 0 && d != t->dims[i]) ok = false;
        else if (d <= -2 && -2 - d < g->n_symbols) {
            int64_t k = -2 - d;
            if (sym[k] >= 0 && sym[k] != t->dims[i])
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s': dim %d ('%s') is %lld, but '%s' is %lld elsewhere",
                                  v->name, i, g->symbols[k], (long long)t->dims[i], g->symbols[k], (long long)sym[k]);
            sym[k] = t->dims[i];
        }
    }
    if (!ok)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s': expected shape %s, got %s", v->name,
                          kiln_dims_str(v->type.rank, v->type.dims, a, sizeof a), kiln_dims_str(t->rank, t->dims, b, sizeof b));
    return KILN_STATUS_OK;
}

kiln_status kiln_model_run(const kiln_model_t *m, int n_inputs, const char *const *names, kiln_tensor_t *const *inputs,
                           int n_outputs, kiln_tensor_t **outputs) {
    const kiln_graph *g = m->graph;
    if (n_outputs != g->n_outputs)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the model has %d outputs, %d were asked for", g->n_outputs, n_outputs);
    if (n_inputs < 0 || (n_inputs && (!names || !inputs)) || !outputs)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_model_run: NULL argument");
    kiln_tensor **bound = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof *bound);
    int64_t *sym = kiln_malloc(sizeof(int64_t) * (size_t)(g->n_symbols ? g->n_symbols : 1));
    kiln_tensor *outs = kiln_calloc((size_t)(g->n_outputs ? g->n_outputs : 1), sizeof *outs);
    kiln_status s = KILN_STATUS_OK;
    if (!bound || !sym || !outs) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto out; }
    for (int k = 0; k < g->n_symbols; k++) sym[k] = -1;
    for (int i = 0; i < n_inputs; i++) {
        int found = -1;
        for (int k = 0; k < g->n_inputs; k++)
            if (names[i] && strcmp(names[i], g->values[g->inputs[k]].name) == 0) found = k;
        if (found < 0) { s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the model has no input named '%s'", names[i] ? names[i] : "(null)"); goto out; }
        if (bound[found]) { s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' is given twice", names[i]); goto out; }
        if (!inputs[i] || (!inputs[i]->data && kiln_tensor_count(inputs[i]) != 0)) {
            s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has no data", names[i]);
            goto out;
        }
        if ((s = check_input(g, &g->values[g->inputs[found]], inputs[i], sym))) goto out;
        bound[found] = inputs[i];
    }
    for (int k = 0; k < g->n_inputs; k++)
        if (!bound[k] && !(g->values[g->inputs[k]].flags & KILN_VALUE_CONST)) {
            s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' is required but was not given", g->values[g->inputs[k]].name);
            goto out;
        }
    s = kiln_ref_run_graph(g, bound, NULL, outs);
    if (s != KILN_STATUS_OK) goto out;
    for (int j = 0; j < g->n_outputs; j++) {
        outputs[j] = kiln_malloc(sizeof(kiln_tensor));
        if (!outputs[j]) {
            for (int k = 0; k < j; k++) { kiln_tensor_destroy(outputs[k]); outputs[k] = NULL; }
            for (int k = j; k < g->n_outputs; k++) kiln_tensor_release(&outs[k]);
            s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            goto out;
        }
        *outputs[j] = outs[j];
    }
out:
    free(bound);
    free(sym);
    free(outs);
    return s;
}
