/* compare_runner.c — the two sides of `kiln compare`: an ONNX model run by the reference backend,
 * an engine (a .kiln file, or an ONNX model built on the fly with `kiln build`'s flags), or saved
 * reference outputs (.npz, or a trace recorded in memory for --bisect-precision). */
#include "compare.h"

#include "core/core.h"
#include "io/npy.h"
#include "onnx/import.h"

#include <string.h>

kiln_tensor_t *cmp_tensors_find(const cmp_tensors *s, const char *name) {
    for (int i = 0; s && i < s->n; i++)
        if (s->t[i] && strcmp(s->names[i], name) == 0) return s->t[i];
    return NULL;
}

void cmp_tensors_free(cmp_tensors *t) {
    for (int i = 0; i < t->n; i++) {
        free((char *)t->names[i]);
        kiln_tensor_destroy(t->t[i]);
    }
    free(t->names);
    free(t->t);
    memset(t, 0, sizeof *t);
}

static kiln_status set_out_names(cmp_runner *r, int n, const char *(*name_of)(const void *, int), const void *obj) {
    r->n_out = n;
    r->out_names = kiln_calloc((size_t)(n ? n : 1), sizeof *r->out_names);
    if (!r->out_names) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int j = 0; j < n; j++)
        if (!(r->out_names[j] = kiln_strdup(name_of(obj, j)))) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    return KILN_STATUS_OK;
}

static const char *model_out(const void *m, int j) { return kiln_model_output_name(m, j); }
static const char *engine_out(const void *e, int j) { return kiln_engine_output_name(e, j); }

kiln_status cmp_runner_open_model(cmp_runner *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->kind = CMP_RUNNER_MODEL;
    snprintf(r->path, sizeof r->path, "%s", path);
    snprintf(r->desc, sizeof r->desc, "ONNX model, reference backend (fp32)");
    KILN_TRY(kiln_model_load(path, &r->m));
    return set_out_names(r, kiln_model_num_outputs(r->m), model_out, r->m);
}

kiln_status cmp_runner_from_engine(cmp_runner *r, kiln_engine_t *e, const char *label, int profile) {
    r->kind = CMP_RUNNER_ENGINE;
    r->e = e;
    r->profile = profile;
    char prec[256];
    KILN_TRY(cmp_engine_precisions(e, NULL, prec, sizeof prec, NULL, NULL));
    snprintf(r->desc, sizeof r->desc, "%s; layers %s", label, prec);
    KILN_TRY(kiln_context_create(e, &r->c));
    KILN_TRY(kiln_context_set_profile(r->c, profile));
    return set_out_names(r, kiln_engine_num_outputs(e), engine_out, e);
}

kiln_status cmp_runner_open_engine(cmp_runner *r, const char *path, int profile) {
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    kiln_engine_t *e;
    KILN_TRY(kiln_engine_load(path, &e));
    return cmp_runner_from_engine(r, e, "engine", profile);
}

kiln_status cmp_runner_open_saved(cmp_runner *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->kind = CMP_RUNNER_SAVED;
    snprintf(r->path, sizeof r->path, "%s", path);
    snprintf(r->desc, sizeof r->desc, "saved outputs");
    kiln_named_tensor *items;
    int n;
    KILN_TRY(kiln_npz_read(path, &items, &n));
    r->n_out = n;
    r->out_names = kiln_calloc((size_t)(n ? n : 1), sizeof *r->out_names);
    r->arrays = kiln_calloc((size_t)(n ? n : 1), sizeof *r->arrays);
    if (!r->out_names || !r->arrays) {
        kiln_named_tensors_free(items, n);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    for (int j = 0; j < n; j++) r->out_names[j] = items[j].name, r->arrays[j] = items[j].t;
    free(items);
    return KILN_STATUS_OK;
}

void cmp_runner_replay(cmp_runner *r, kiln_tensor_t **trace, int64_t steps) {
    r->trace = trace;
    r->trace_steps = steps;
    r->kind = CMP_RUNNER_SAVED;
}

void cmp_runner_close(cmp_runner *r) {
    for (int j = 0; j < r->n_out; j++) {
        free(r->out_names[j]);
        if (r->arrays) kiln_tensor_destroy(r->arrays[j]);
    }
    for (int64_t k = 0; r->trace && k < r->trace_steps * r->n_out; k++) kiln_tensor_destroy(r->trace[k]);
    free(r->trace);
    free(r->arrays);
    free(r->out_names);
    kiln_context_destroy(r->c);
    kiln_engine_destroy(r->e);
    kiln_model_destroy(r->m);
    memset(r, 0, sizeof *r);
}

int cmp_runner_output_index(const cmp_runner *r, const char *name) {
    for (int j = 0; j < r->n_out; j++)
        if (strcmp(r->out_names[j], name) == 0) return j;
    return -1;
}

static bool declares_input(const cmp_runner *r, const char *name) {
    int n = r->e ? kiln_engine_num_inputs(r->e) : kiln_model_num_inputs(r->m);
    for (int i = 0; i < n; i++)
        if (strcmp(r->e ? kiln_engine_input_name(r->e, i) : kiln_model_input_name(r->m, i), name) == 0) return true;
    return false;
}

static kiln_status run_saved(cmp_runner *r, int64_t step, int64_t n_steps, kiln_tensor_t **outs) {
    for (int j = 0; j < r->n_out; j++) {
        if (r->trace) {
            if (step < r->trace_steps && r->trace[step * r->n_out + j]) KILN_TRY(kiln_tensor_clone(r->trace[step * r->n_out + j], &outs[j]));
            continue;
        }
        const kiln_tensor_t *a = r->arrays[j];
        if (n_steps == 1) {
            KILN_TRY(kiln_tensor_clone(a, &outs[j]));
            continue;
        }
        if (a->rank < 1 || step >= a->dims[0])
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: '%s' holds %lld steps (its leading axis), step %lld asked for", r->path,
                              r->out_names[j], (long long)(a->rank ? a->dims[0] : 0), (long long)step);
        KILN_TRY(cli_tensor_slice(a, step, &outs[j]));
    }
    return KILN_STATUS_OK;
}

kiln_status cmp_runner_run(cmp_runner *r, int64_t step, int64_t n_steps, const cmp_tensors *in, kiln_tensor_t **outs) {
    for (int j = 0; j < r->n_out; j++) outs[j] = NULL;
    if (r->kind == CMP_RUNNER_SAVED) return run_saved(r, step, n_steps, outs);
    const char **names = kiln_calloc((size_t)(in->n ? in->n : 1), sizeof *names);
    kiln_tensor_t **ts = kiln_calloc((size_t)(in->n ? in->n : 1), sizeof *ts);
    if (!names || !ts) {
        free(names);
        free(ts);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    int n = 0;
    for (int i = 0; i < in->n; i++)
        if (in->t[i] && declares_input(r, in->names[i])) names[n] = in->names[i], ts[n++] = in->t[i];
    kiln_status s = r->e ? kiln_context_run_tensors(r->c, n, names, ts, r->n_out, outs)
                         : kiln_model_run(r->m, n, names, ts, r->n_out, outs);
    free(names);
    free(ts);
    if (s) kiln_error_prefix(s, "%s, step %lld", r->path, (long long)step);
    return s;
}

static bool model_has_node(const kiln_model_t *m, const char *name) {
    const kiln_graph *g = ((const kiln_model *)m)->graph;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].name && strcmp(g->nodes[i].name, name) == 0) return true;
    return false;
}

kiln_status cmp_engine_precisions(const kiln_engine_t *e, const kiln_model_t *m, char *buf, size_t n, char ***names, int *n_names) {
    char *desc;
    KILN_TRY(kiln_engine_describe(e, &desc));
    cJSON *j = cJSON_Parse(desc);
    free(desc);
    if (!j) return kiln_error(KILN_STATUS_INTERNAL, "the engine's description is not JSON");
    static const char *const precs[] = {"int8", "fp16", "bf16", "fp32"};
    int counts[4] = {0};
    const cJSON *layer;
    kiln_status s = KILN_STATUS_OK;
    if (names) *names = NULL, *n_names = 0;
    cJSON_ArrayForEach(layer, cJSON_GetObjectItem(j, "layers")) {
        const cJSON *p = cJSON_GetObjectItem(layer, "precision"), *nm = cJSON_GetObjectItem(layer, "name");
        if (!cJSON_IsString(p)) continue;
        for (int k = 0; k < 4; k++)
            if (strcmp(p->valuestring, precs[k]) == 0) counts[k]++;
        if (!names || strcmp(p->valuestring, "fp32") == 0 || !cJSON_IsString(nm) || !model_has_node(m, nm->valuestring)) continue;
        char **nn = realloc(*names, sizeof *nn * (size_t)(*n_names + 1));
        if (!nn || !(nn[*n_names] = kiln_strdup(nm->valuestring))) {
            if (nn) *names = nn;
            s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            break;
        }
        *names = nn;
        (*n_names)++;
    }
    cJSON_Delete(j);
    buf[0] = 0;
    size_t used = 0;
    for (int k = 0; k < 4; k++)
        if (counts[k] && used < n)
            used += (size_t)snprintf(buf + used, n - used, "%s%s x%d", used ? ", " : "", precs[k], counts[k]);
    return s;
}

/* ---- building a target on the fly ---- */

static void calib_progress(int64_t done, int64_t total, void *user) {
    (void)user;
    fprintf(stderr, "\rkiln compare: calibrating, batch %lld / %lld", (long long)done, (long long)total);
    if (done == total) fputc('\n', stderr);
}

static kiln_status parse_precision(const char *arg, char *node, size_t cap, kiln_precision *p) {
    static const struct { const char *word; kiln_precision p; } words[] = {
        {"fp32", KILN_PRECISION_FP32}, {"fp16", KILN_PRECISION_FP16}, {"bf16", KILN_PRECISION_BF16}, {"int8", KILN_PRECISION_INT8}};
    const char *colon = strrchr(arg, ':');
    for (size_t k = 0; colon && colon > arg && k < sizeof words / sizeof *words; k++)
        if (strcmp(colon + 1, words[k].word) == 0) {
            *p = words[k].p;
            snprintf(node, cap, "%.*s", (int)(colon - arg), arg);
            return KILN_STATUS_OK;
        }
    return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--layer-precision wants NODE:fp32|fp16|bf16|int8, got '%s'", arg);
}

static kiln_status add_profile(kiln_builder_t *b, const char *min, const char *opt, const char *max) {
    cli_shape smin[64], sopt[64], smax[64];
    int nmin, nopt, nmax, p;
    if (cli_parse_shapes(min, smin, 64, &nmin) || cli_parse_shapes(opt, sopt, 64, &nopt) || cli_parse_shapes(max, smax, 64, &nmax))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "bad shape list (expected NAME:AxBxC,...): '%s' / '%s' / '%s'", min, opt, max);
    if (nopt != nmin || nmax != nmin)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--min-shapes, --opt-shapes and --max-shapes must name the same inputs");
    KILN_TRY(kiln_builder_add_profile(b, &p));
    for (int k = 0; k < nmin; k++) {
        const cli_shape *o = cli_find_shape(sopt, nopt, smin[k].name), *x = cli_find_shape(smax, nmax, smin[k].name);
        if (!o || !x || o->rank != smin[k].rank || x->rank != smin[k].rank)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' needs min, opt and max shapes of one rank", smin[k].name);
        KILN_TRY(kiln_builder_set_profile_shape(b, p, smin[k].name, smin[k].rank, smin[k].dims, o->dims, x->dims));
    }
    return KILN_STATUS_OK;
}

/* A profile fixed at the sample's shapes, for a model with dynamic inputs and no shape flags. */
static kiln_status sample_profile(kiln_builder_t *b, const kiln_model_t *m, const cmp_tensors *sample) {
    bool dynamic = false;
    for (int i = 0; i < kiln_model_num_inputs(m); i++) {
        kiln_dtype dt;
        int rank;
        int64_t dims[KILN_MAX_RANK];
        if (kiln_model_input_info(m, i, &dt, &rank, dims)) continue;
        for (int k = 0; k < rank; k++) dynamic |= dims[k] < 0;
        dynamic |= rank < 0;
    }
    if (!dynamic || !sample) return KILN_STATUS_OK;
    int p;
    KILN_TRY(kiln_builder_add_profile(b, &p));
    for (int i = 0; i < kiln_model_num_inputs(m); i++) {
        const kiln_tensor_t *t = cmp_tensors_find(sample, kiln_model_input_name(m, i));
        if (t) KILN_TRY(kiln_builder_set_profile_shape(b, p, kiln_model_input_name(m, i), t->rank, t->dims, t->dims, t->dims));
    }
    return KILN_STATUS_OK;
}

static kiln_status configure(kiln_builder_t *b, const cmp_build *o, const char *shapes, const kiln_model_t *m, const cmp_tensors *sample,
                             const char *const *extra_fp32, int n_extra, const char *cache) {
    KILN_TRY(kiln_builder_set_device(b, o->device));
    KILN_TRY(kiln_builder_set_precisions(b, o->precisions));
    KILN_TRY(kiln_builder_set_optimization_level(b, o->level));
    if (o->precisions & KILN_PRECISION_INT8)
        KILN_TRY(kiln_builder_set_calibration(b, o->calib ? o->calib : o->calib_dir, o->calib_method, o->calib_batch, o->calib_max,
                                              cache ? cache : o->calib_cache, o->progress ? calib_progress : NULL, NULL));
    for (int k = 0; k < o->n_layer_prec; k++) {
        char node[512];
        kiln_precision p = KILN_PRECISION_FP32;
        KILN_TRY(parse_precision(o->layer_prec[k], node, sizeof node, &p));
        KILN_TRY(kiln_builder_set_layer_precision(b, node, p));
    }
    for (int k = 0; k < n_extra; k++) KILN_TRY(kiln_builder_set_layer_precision(b, extra_fp32[k], KILN_PRECISION_FP32));
    if (o->min_shapes) return add_profile(b, o->min_shapes, o->opt_shapes, o->max_shapes);
    if (shapes) return add_profile(b, shapes, shapes, shapes);
    return sample_profile(b, m, sample);
}

kiln_status cmp_build_engine(const cmp_build *o, const char *shapes, const kiln_model_t *m, const cmp_tensors *sample,
                             const char *const *extra_fp32, int n_extra, const char *cache, kiln_engine_t **out) {
    kiln_builder_t *b;
    KILN_TRY(kiln_builder_create(&b));
    kiln_status s = configure(b, o, shapes, m, sample, extra_fp32, n_extra, cache);
    if (!s) s = kiln_builder_build(b, m, out);
    kiln_builder_destroy(b);
    if (s) kiln_error_prefix(s, "building the target");
    return s;
}

void cmp_build_flags(const cmp_build *o, const char *shapes, char *buf, size_t n) {
    size_t u = strlen(buf);
#define ADD(...) (u < n ? (u += (size_t)snprintf(buf + u, n - u, __VA_ARGS__)) : u)
    if (o->device == KILN_DEVICE_CUDA) ADD(" --device cuda");
    if (o->precisions & KILN_PRECISION_FP16) ADD(" --fp16");
    if (o->precisions & KILN_PRECISION_BF16) ADD(" --bf16");
    if (o->precisions & KILN_PRECISION_INT8) ADD(" --int8");
    if (o->calib) ADD(" --calib %s", o->calib);
    if (o->calib_dir) ADD(" --calib-dir %s", o->calib_dir);
    if (o->calib_method) ADD(" --calib-method %s", o->calib_method);
    if (o->calib_batch) ADD(" --calib-batch %lld", (long long)o->calib_batch);
    if (o->calib_max) ADD(" --calib-max %lld", (long long)o->calib_max);
    if (o->calib_cache) ADD(" --calib-cache %s", o->calib_cache);
    if (o->level != 2) ADD(" -O %d", o->level);
    if (o->min_shapes) ADD(" --min-shapes %s --opt-shapes %s --max-shapes %s", o->min_shapes, o->opt_shapes, o->max_shapes);
    else if (shapes) ADD(" --shapes %s", shapes);
    for (int k = 0; k < o->n_layer_prec; k++) ADD(" --layer-precision %s", o->layer_prec[k]);
#undef ADD
}
