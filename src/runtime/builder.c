/* builder.c — kiln_builder_*: the build configuration, and kiln_builder_build, which copies
 * the model's graph (through an ONNX round trip, so the engine owns everything), runs the
 * passes, checks the optimization profiles against the inputs, chooses a kernel per node and
 * plans memory for each profile. */
#include "engine.h"
#ifdef KILN_HAVE_CUDA
#include "../backends/cuda/cuda_exec.h"
#include "context.h"
#endif

#include "../onnx/export.h"
#include "../ops/op.h"
#include "../passes/quantize.h"
#include "../quant/cache.h"
#include "../quant/collect.h"
#include "onnx.pb-c.h"

#include <string.h>
#include <sys/stat.h>

kiln_status kiln_builder_create(kiln_builder_t **out) {
    if (!out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_builder_create: NULL argument");
    *out = kiln_calloc(1, sizeof **out);
    if (!*out) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    (*out)->precisions = KILN_PRECISION_FP32;
    (*out)->opt_level = 2;
    return KILN_STATUS_OK;
}

void kiln_builder_destroy(kiln_builder_t *b) {
    if (!b) return;
    for (int p = 0; p < b->n_profiles; p++) {
        for (int k = 0; k < b->profiles[p].n; k++) free(b->profiles[p].shapes[k].name);
        free(b->profiles[p].shapes);
    }
    free(b->profiles);
    for (int k = 0; k < b->n_layer_precisions; k++) free(b->layer_precisions[k].node);
    free(b->layer_precisions);
    free(b->calib_data);
    free(b->calib_method);
    free(b->calib_cache);
    free(b->timing_cache);
    free(b);
}

kiln_status kiln_builder_set_timing_cache(kiln_builder_t *b, const char *path) {
    free(b->timing_cache);
    b->timing_cache = path ? kiln_strdup(path) : NULL;
    if (path && !b->timing_cache) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_host_fallback(kiln_builder_t *b, int allow) {
    if (!b) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_builder_set_host_fallback: NULL builder");
    b->host_fallback = allow != 0;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_calibration(kiln_builder_t *b, const char *data, const char *method, int64_t batch,
                                         int64_t max_samples, const char *cache,
                                         void (*progress)(int64_t done, int64_t total, void *user), void *user) {
    if (!b) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_builder_set_calibration: NULL builder");
    if (batch < 0 || max_samples < 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration batch (%lld) and sample limit (%lld) must be >= 0",
                          (long long)batch, (long long)max_samples);
    kiln_calib_method m;
    if (method) KILN_TRY(kiln_calib_method_parse(method, &m));
    free(b->calib_data);
    free(b->calib_method);
    free(b->calib_cache);
    b->calib_data = data ? kiln_strdup(data) : NULL;
    b->calib_method = method ? kiln_strdup(method) : NULL;
    b->calib_cache = cache ? kiln_strdup(cache) : NULL;
    if ((data && !b->calib_data) || (method && !b->calib_method) || (cache && !b->calib_cache))
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    b->calib_batch = batch;
    b->calib_max = max_samples;
    b->calib_progress = progress;
    b->calib_user = user;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_calibrator(kiln_builder_t *b, const kiln_calibrator *cal) {
    if (!b) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_builder_set_calibrator: NULL builder");
    if (cal && !cal->get_batch) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_builder_set_calibrator: get_batch is NULL");
    kiln_calib_method m;
    if (cal && cal->method) KILN_TRY(kiln_calib_method_parse(cal->method, &m));
    b->has_calibrator = cal != NULL;
    if (cal) b->calibrator = *cal;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_device(kiln_builder_t *b, kiln_device d) {
#ifndef KILN_HAVE_CUDA
    if (d == KILN_DEVICE_CUDA)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "this kiln was built without the CUDA backend (no nvcc at build time): build for --device cpu");
#endif
    if (d != KILN_DEVICE_CPU && d != KILN_DEVICE_CUDA) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "unknown device %d", (int)d);
    b->device = d;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_precisions(kiln_builder_t *b, unsigned flags) {
    if (flags & ~(unsigned)(KILN_PRECISION_FP32 | KILN_PRECISION_FP16 | KILN_PRECISION_BF16 | KILN_PRECISION_INT8 | KILN_PRECISION_TF32))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "unknown precision flags 0x%x", flags);
    b->precisions = flags | KILN_PRECISION_FP32;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_optimization_level(kiln_builder_t *b, int level) {
    if (level < 0 || level > 2) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "optimization level %d is not 0, 1 or 2", level);
    b->opt_level = level;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_workspace(kiln_builder_t *b, uint64_t bytes) {
    b->workspace = bytes;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_layer_precision(kiln_builder_t *b, const char *node, kiln_precision p) {
    if (!node || !*node) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "layer precision: empty node name");
    void *np = realloc(b->layer_precisions, sizeof *b->layer_precisions * (size_t)(b->n_layer_precisions + 1));
    if (!np) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    b->layer_precisions = np;
    b->layer_precisions[b->n_layer_precisions].node = kiln_strdup(node);
    b->layer_precisions[b->n_layer_precisions].p = p;
    b->n_layer_precisions++;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_add_profile(kiln_builder_t *b, int *index) {
    void *np = realloc(b->profiles, sizeof *b->profiles * (size_t)(b->n_profiles + 1));
    if (!np) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    b->profiles = np;
    memset(&b->profiles[b->n_profiles], 0, sizeof *b->profiles);
    if (index) *index = b->n_profiles;
    b->n_profiles++;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_profile_shape(kiln_builder_t *b, int profile, const char *input, int rank, const int64_t *min,
                                           const int64_t *opt, const int64_t *max) {
    if (profile < 0 || profile >= b->n_profiles)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d does not exist (add it with kiln_builder_add_profile)", profile);
    if (!input || rank < 0 || rank > KILN_MAX_RANK || (rank && (!min || !opt || !max)))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile shape for '%s': bad arguments", input ? input : "(null)");
    for (int i = 0; i < rank; i++)
        if (min[i] < 0 || min[i] > opt[i] || opt[i] > max[i])
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d, input '%s', dim %d: need 0 <= min <= opt <= max, got %lld / %lld / %lld",
                              profile, input, i, (long long)min[i], (long long)opt[i], (long long)max[i]);
    struct builder_profile *p = &b->profiles[profile];
    struct builder_shape *sh = NULL;
    for (int k = 0; k < p->n; k++)
        if (strcmp(p->shapes[k].name, input) == 0) sh = &p->shapes[k];
    if (!sh) {
        void *ns = realloc(p->shapes, sizeof *p->shapes * (size_t)(p->n + 1));
        if (!ns) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        p->shapes = ns;
        sh = &p->shapes[p->n++];
        sh->name = kiln_strdup(input);
        if (!sh->name) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    sh->d.rank = rank;
    if (rank) {
        memcpy(sh->d.min, min, sizeof(int64_t) * (size_t)rank);
        memcpy(sh->d.opt, opt, sizeof(int64_t) * (size_t)rank);
        memcpy(sh->d.max, max, sizeof(int64_t) * (size_t)rank);
    }
    return KILN_STATUS_OK;
}

/* The profile dims of every graph input: given ones checked against the declared type,
 * static inputs filled in, dynamic inputs without a shape refused. */
static kiln_status resolve_profile(const kiln_graph *g, const struct builder_profile *bp, int index, kiln_profile_dims *out) {
    for (int k = 0; bp && k < bp->n; k++) {
        bool found = false;
        for (int i = 0; i < g->n_inputs; i++) found |= strcmp(g->values[g->inputs[i]].name, bp->shapes[k].name) == 0;
        if (!found) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d names input '%s', which the model does not have", index, bp->shapes[k].name);
    }
    for (int i = 0; i < g->n_inputs; i++) {
        const kiln_value *v = &g->values[g->inputs[i]];
        kiln_profile_dims *d = &out[i];
        d->rank = -1;
        const struct builder_shape *given = NULL;
        for (int k = 0; bp && k < bp->n; k++)
            if (strcmp(bp->shapes[k].name, v->name) == 0) given = &bp->shapes[k];
        if (given) {
            if (v->type.rank >= 0 && given->d.rank != v->type.rank)
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d: input '%s' has rank %d, the profile gives %d dims", index,
                                  v->name, v->type.rank, given->d.rank);
            for (int j = 0; j < given->d.rank && v->type.rank >= 0; j++)
                if (v->type.dims[j] >= 0 && (given->d.min[j] != v->type.dims[j] || given->d.max[j] != v->type.dims[j]))
                    return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d: input '%s' dim %d is fixed at %lld, the profile gives %lld..%lld",
                                      index, v->name, j, (long long)v->type.dims[j], (long long)given->d.min[j], (long long)given->d.max[j]);
            *d = given->d;
            continue;
        }
        if (v->flags & KILN_VALUE_CONST) continue; /* an input with a default: planned at its default shape */
        if (v->type.rank < 0 || !kiln_shape_known(&v->type)) {
            char buf[160];
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                              "input '%s' has dynamic shape %s: give its range with --min-shapes/--opt-shapes/--max-shapes (or --shapes) for profile %d",
                              v->name, kiln_dims_str(v->type.rank, v->type.dims, buf, sizeof buf), index);
        }
        d->rank = v->type.rank;
        memcpy(d->min, v->type.dims, sizeof(int64_t) * (size_t)d->rank);
        memcpy(d->opt, v->type.dims, sizeof(int64_t) * (size_t)d->rank);
        memcpy(d->max, v->type.dims, sizeof(int64_t) * (size_t)d->rank);
    }
    return KILN_STATUS_OK;
}

/* A build with one profile that fixes every input (min == max, as --shapes gives) is specialized
 * to those shapes before the passes: the graph inputs take the profile's dims and shapes are
 * inferred again, so every shape is known and the shape computations exporters emit (Shape /
 * Gather / Concat chains, a Range over a sequence length, a causal mask from shapes) fold into
 * constants, as in a static-shape TensorRT engine. An engine with dynamic dims keeps them. */
static kiln_status specialize_fixed_shapes(kiln_graph *g, const struct builder_profile *bp) {
    kiln_profile_dims *d = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof *d);
    if (!d) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (resolve_profile(g, bp, 0, d) != KILN_STATUS_OK) { /* refused again where the profiles are planned */
        kiln_clear_error();
        free(d);
        return KILN_STATUS_OK;
    }
    bool fixed = true;
    for (int i = 0; i < g->n_inputs; i++)
        for (int j = 0; j < d[i].rank; j++) fixed &= d[i].min[j] == d[i].max[j];
    for (int i = 0; fixed && i < g->n_inputs; i++) {
        if (d[i].rank < 0) continue; /* an input with a default keeps its type */
        kiln_tensor *t = &g->values[g->inputs[i]].type;
        t->rank = d[i].rank;
        memcpy(t->dims, d[i].min, sizeof(int64_t) * (size_t)d[i].rank);
    }
    free(d);
    return fixed ? kiln_graph_infer(g) : KILN_STATUS_OK;
}

/* The engine gets its own copy of a graph: exported to ONNX (weights into a blob the copy
 * owns) and imported again, so nothing points into the caller's model. Done again after the
 * passes, so that the graph that is planned is exactly the one a saved engine loads (value
 * ids are the importer's numbering). */
static kiln_status copy_model(const kiln_graph *g, int opset, const char *what, const char *base_dir, kiln_model *dst) {
    kiln_blob weights = {0}, proto = {0};
    kiln_status s = kiln_onnx_export(g, opset, &weights, &proto);
    if (s != KILN_STATUS_OK) {
        free(weights.data);
        free(proto.data);
        return s;
    }
    memset(dst, 0, sizeof *dst);
    dst->weights = weights.data;
    dst->weights_size = weights.size;
    dst->engine_graph = true;
    dst->owned_weights = weights.data; /* freed with the model */
    s = kiln_model_import(proto.data, proto.size, what, base_dir, dst);
    free(proto.data); /* the importer keeps copies of what it needs */
    return s;
}

static void scales_free(kiln_quant_scales *sc) {
    for (int64_t i = 0; i < sc->n; i++) free((char *)sc->names[i]);
    free((void *)sc->names);
    free((void *)sc->scales);
    memset(sc, 0, sizeof *sc);
}

/* Scales from parsed cache entries (the names are taken over). */
static kiln_status scales_from_entries(kiln_calib_entry *ent, int64_t n, kiln_quant_scales *out) {
    const char **names = kiln_calloc((size_t)(n ? n : 1), sizeof *names);
    float *scales = kiln_calloc((size_t)(n ? n : 1), sizeof *scales);
    if (!names || !scales) {
        free(names);
        free(scales);
        kiln_calib_entries_free(ent, n);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        names[i] = ent[i].name;
        ent[i].name = NULL;
        scales[i] = ent[i].scale;
    }
    kiln_calib_entries_free(ent, n);
    out->names = names;
    out->scales = scales;
    out->n = n;
    return KILN_STATUS_OK;
}

/* Scales by method from a calibration run (tensors that saw no finite value left out). */
static kiln_status scales_from_result(const kiln_calib_result *r, kiln_calib_method method, kiln_quant_scales *out) {
    const char **names = kiln_calloc((size_t)(r->n ? r->n : 1), sizeof *names);
    float *scales = kiln_calloc((size_t)(r->n ? r->n : 1), sizeof *scales);
    out->names = names;
    out->scales = scales;
    out->n = 0;
    if (!names || !scales) {
        scales_free(out);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < r->n; i++) {
        const kiln_calib_tensor *t = &r->tensors[i];
        if (!t->valid) continue;
        if (!(names[out->n] = kiln_strdup(t->name))) {
            scales_free(out);
            return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        }
        scales[out->n++] = kiln_calib_scale(t->amax[method]);
    }
    return KILN_STATUS_OK;
}

/* Scales from a cache the calibrator's read_cache gives, if it gives one (*found). */
static kiln_status calibrator_cache(const kiln_calibrator *cal, uint64_t fp, kiln_quant_scales *out, bool *found) {
    *found = false;
    size_t size = 0;
    const void *data = cal->read_cache ? cal->read_cache(cal->user, &size) : NULL;
    if (!data) return KILN_STATUS_OK;
    kiln_calib_entry *ent = NULL;
    int64_t n = 0;
    char *alg = NULL;
    bool checked = false;
    kiln_status s = kiln_calib_cache_parse("(the calibrator's read_cache)", data, size, fp, &ent, &n, &alg, &checked);
    free(alg);
    if (s) return kiln_error_prefix(s, "int8 calibration cache");
    *found = true;
    return scales_from_entries(ent, n, out);
}

/* Activation scales for INT8, by ONNX value name, from the first of: the cache file when it exists
 * (fingerprint checked); the calibrator's read_cache; calibrating m (the original graph, before any
 * pass) over the calibration data or the calibrator's batches. Fresh scales go to the cache file
 * and the calibrator's write_cache. */
static kiln_status int8_scales(const kiln_builder_t *b, const kiln_model *m, kiln_quant_scales *out) {
    memset(out, 0, sizeof *out);
    uint64_t fp = kiln_calib_fingerprint(m->graph);
    const kiln_calibrator *cal = b->has_calibrator ? &b->calibrator : NULL;
    struct stat st;
    if (cal && b->calib_data)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                          "int8 calibration: give either calibration data (%s) or a calibrator, not both", b->calib_data);
    if (b->calib_cache && stat(b->calib_cache, &st) == 0) {
        kiln_calib_entry *ent = NULL;
        int64_t n = 0;
        char *alg = NULL;
        bool checked = false;
        kiln_status s = kiln_calib_cache_read(b->calib_cache, fp, &ent, &n, &alg, &checked);
        free(alg);
        if (s) return kiln_error_prefix(s, "int8 calibration cache %s", b->calib_cache);
        return scales_from_entries(ent, n, out);
    }
    if (cal) {
        bool found;
        KILN_TRY(calibrator_cache(cal, fp, out, &found));
        if (found) return KILN_STATUS_OK;
    }
    if (!b->calib_data && !cal)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                          "int8 needs calibration (the model has no Q/DQ nodes to take scales from): give calibration data "
                          "(--calib FILE.npz, --calib-dir DIR or --calib-images DIR)%s%s%s",
                          b->calib_cache ? " or an existing calibration cache (" : "", b->calib_cache ? b->calib_cache : "",
                          b->calib_cache ? " does not exist)" : "");
    kiln_calib_method method = KILN_CALIB_ENTROPY;
    const char *mname = cal && cal->method ? cal->method : b->calib_method;
    if (mname) KILN_TRY(kiln_calib_method_parse(mname, &method));
    kiln_calib_result *r = NULL;
    kiln_calib_options co = {.single_method = (int)method + 1}; /* the build needs only this method's amax */
    kiln_status s;
    if (cal) {
        s = kiln_calib_collect_calibrator(m, cal, &co, b->calib_progress, b->calib_user, &r);
    } else {
        kiln_calib_source_kind kind = stat(b->calib_data, &st) == 0 && S_ISDIR(st.st_mode) ? KILN_CALIB_SOURCE_DIR : KILN_CALIB_SOURCE_NPZ;
        kiln_calib_source_options so = {.batch = b->calib_batch, .max_samples = b->calib_max};
        kiln_calib_source *src = NULL;
        s = kiln_calib_source_open(kind, m, b->calib_data, &so, &src);
        if (s == KILN_STATUS_OK) s = kiln_calib_collect(m, src, &co, b->calib_progress, b->calib_user, &r);
        kiln_calib_source_destroy(src);
    }
    if (s == KILN_STATUS_OK) s = scales_from_result(r, method, out);
    kiln_calib_result_free(r);
    if (s) return kiln_error_prefix(s, "int8 calibration");
    const char *alg = kiln_calib_method_cache_name(method);
    if (b->calib_cache) s = kiln_calib_cache_write(b->calib_cache, alg, fp, out->names, out->scales, out->n);
    if (s == KILN_STATUS_OK && cal && cal->write_cache) {
        char *text = NULL;
        size_t size = 0;
        s = kiln_calib_cache_format("(the calibrator's write_cache)", alg, fp, out->names, out->scales, out->n, &text, &size);
        if (s == KILN_STATUS_OK) cal->write_cache(cal->user, text, size);
        free(text);
    }
    if (s) scales_free(out);
    return s;
}

#ifdef KILN_HAVE_CUDA
/* Random data for input i at profile 0's opt shape: floats in [-1, 1], integers 0 (safe as
 * indices), for the tuning run. */
static kiln_status tuning_input(const kiln_engine *e, int i, kiln_tensor *t) {
    const kiln_value *v = &e->model.graph->values[e->model.graph->inputs[i]];
    const kiln_profile_dims *d = &e->profiles[0].inputs[i];
    int rank = d->rank >= 0 ? d->rank : v->type.rank;
    const int64_t *dims = d->rank >= 0 ? d->opt : v->type.dims;
    KILN_TRY(kiln_tensor_alloc(t, v->type.dtype, rank, dims));
    int64_t n = kiln_shape_count(rank, dims);
    uint64_t x = 0x9E3779B97F4A7C15ull ^ (uint64_t)i;
    for (int64_t k = 0; k < n; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double r = (double)(x >> 11) / 9007199254740992.0 * 2 - 1;
        if (kiln_dtype_is_float(t->dtype)) kiln_store_f64(t->dtype, t->data, k, r);
    }
    return KILN_STATUS_OK;
}

/* A cuda engine: the GPU's name and architecture, weights on the device, the nodes placed, then
 * one run at profile 0's opt shapes that times the kernels with several tactics. */
static kiln_status gpu_finish(const kiln_builder_t *b, kiln_engine *e) {
    const kiln_graph *g = e->model.graph;
    char name[96];
    int cc = 0;
    KILN_TRY(kiln_cuda_device_info(&cc, name, sizeof name, NULL));
    snprintf(e->backend, sizeof e->backend, "cuda");
    snprintf(e->device, sizeof e->device, "%s", name);
    e->cuda_cc = cc;
    e->tactics = kiln_malloc(sizeof(int) * (size_t)(g->n_nodes ? g->n_nodes : 1));
    if (!e->tactics) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < g->n_nodes; i++) e->tactics[i] = -1;
    KILN_TRY(kiln_cuda_engine_create(e));
    struct kiln_timing_cache *tc = NULL;
    if (b->timing_cache) KILN_TRY(kiln_timing_cache_open(b->timing_cache, name, &tc));
    kiln_context_t *c = NULL;
    kiln_tensor *ins = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof *ins);
    kiln_status s = ins ? kiln_context_create(e, &c) : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; s == KILN_STATUS_OK && i < g->n_inputs; i++) {
        const char *nm = g->values[g->inputs[i]].name;
        if ((s = tuning_input(e, i, &ins[i]))) break;
        if ((s = kiln_context_set_input_shape(c, nm, ins[i].rank, ins[i].dims))) break;
        s = kiln_context_set_tensor_address(c, nm, ins[i].data ? ins[i].data : (void *)"", kiln_tensor_bytes(&ins[i]));
    }
    if (s == KILN_STATUS_OK) {
        kiln_cuda_context_set_tuning(c->gpu, e->tactics, tc);
        s = kiln_context_run(c);
        if (s == KILN_STATUS_INVALID_ARGUMENT) {
            /* The tuning inputs are made up (floats in [-1, 1], integers 0). A graph whose shapes
             * or indices come from its inputs (a Reshape's target, a Resize's scales) may refuse
             * them; that says nothing about real inputs. The nodes timed so far keep their
             * tactics, the rest the kernels' defaults, and the engine records why. */
            snprintf(e->tuning_note, sizeof e->tuning_note, "tuning run stopped (made-up inputs): %s; "
                     "untimed nodes use default kernels", kiln_last_error());
            s = KILN_STATUS_OK;
        } else if (s) {
            kiln_error_prefix(s, "timing the GPU kernels");
        }
    }
    if (s == KILN_STATUS_OK && tc) s = kiln_timing_cache_save(tc);
    kiln_context_destroy(c);
    for (int i = 0; ins && i < g->n_inputs; i++) kiln_tensor_release(&ins[i]);
    free(ins);
    kiln_timing_cache_free(tc);
    return s;
}
#endif

kiln_status kiln_builder_build(const kiln_builder_t *b, const kiln_model_t *m, kiln_engine_t **out) {
    if (!b || !m || !out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_builder_build: NULL argument");
    *out = NULL;
    bool gpu = b->device == KILN_DEVICE_CUDA;
    if ((b->precisions & KILN_PRECISION_FP16) && (b->precisions & KILN_PRECISION_BF16))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "choose one of fp16 and bf16");
    bool int8 = (b->precisions & KILN_PRECISION_INT8) != 0;
    if (int8 && m->opset < KILN_QUANT_MIN_OPSET)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "int8 engines need a model of opset >= %d (per-axis DequantizeLinear); %s is opset %d",
                          KILN_QUANT_MIN_OPSET, m->path ? m->path : "the model", m->opset);
    for (int k = 0; k < b->n_layer_precisions; k++) {
        bool found = false;
        for (int i = 0; i < m->graph->n_nodes; i++) found |= strcmp(m->graph->nodes[i].name, b->layer_precisions[k].node) == 0;
        if (!found) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--layer-precision names node '%s', which the model does not have", b->layer_precisions[k].node);
        kiln_precision lp = b->layer_precisions[k].p;
        if (lp != KILN_PRECISION_FP32 && !(int8 && lp == KILN_PRECISION_INT8) && !(lp & b->precisions & (KILN_PRECISION_FP16 | KILN_PRECISION_BF16)))
            return kiln_error(KILN_STATUS_UNSUPPORTED, "node '%s': only fp32%s layers exist in this build", b->layer_precisions[k].node,
                              int8 ? " and int8" : "");
    }
    kiln_quant_scales scales = {0};
    const char **fp32_nodes = NULL;
    int n_fp32 = 0;
    kiln_status s = KILN_STATUS_OK;
    /* A model with Q/DQ nodes is explicitly quantized: its scales are in the graph (kiln_pass_qdq). */
    bool explicit_q = int8 && kiln_graph_has_qdq(m->graph);
    if (explicit_q && (b->calib_data || b->calib_cache || b->has_calibrator))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                          "%s has QuantizeLinear/DequantizeLinear nodes (explicit quantization): its int8 scales come from "
                          "the graph; drop the calibration data, cache and calibrator",
                          m->path ? m->path : "the model");
    if (int8) {
        if (!explicit_q) KILN_TRY(int8_scales(b, m, &scales));
        fp32_nodes = kiln_calloc((size_t)(b->n_layer_precisions + 1), sizeof *fp32_nodes);
        if (!fp32_nodes) {
            scales_free(&scales);
            return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        }
        for (int k = 0; k < b->n_layer_precisions; k++)
            if (b->layer_precisions[k].p == KILN_PRECISION_FP32) fp32_nodes[n_fp32++] = b->layer_precisions[k].node;
    }
    kiln_engine *e = kiln_calloc(1, sizeof *e);
    if (!e) {
        scales_free(&scales);
        free(fp32_nodes);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    const char *what = m->path ? m->path : "<model>";
    s = copy_model(m->graph, m->opset, what, m->base_dir, &e->model);
    if (s != KILN_STATUS_OK) goto fail;
    kiln_graph *g = e->model.graph;
    snprintf(e->backend, sizeof e->backend, "ref");
    snprintf(e->device, sizeof e->device, "cpu");
    e->precisions = b->precisions;
    e->host_fallback = b->host_fallback && b->device == KILN_DEVICE_CUDA;
    e->nodes_before = g->n_nodes;
    if (b->n_profiles <= 1 && (s = specialize_fixed_shapes(g, b->n_profiles ? &b->profiles[0] : NULL))) goto fail;
    if (b->opt_level > 0) {
        kiln_pass_options po = {.no_fusion = b->opt_level < 2};
        /* Before IR 4 every initializer had to be listed as a graph input: those are weights,
         * not inputs (ONNX Runtime treats them so too). From IR 4 on they stay overridable. */
        const Onnx__ModelProto *mp = m->proto;
        po.promote_initializer_inputs = mp && mp->has_ir_version && mp->ir_version < 4;
        if ((s = kiln_passes_run(g, &po, &e->passes))) goto fail;
    }
    if (int8) {
        kiln_quant_options qo = {.fp32_nodes = fp32_nodes, .n_fp32_nodes = n_fp32};
        kiln_pass_stats qst;
        if ((s = kiln_pass_quantize(g, explicit_q ? NULL : &scales, &qo, &qst))) goto fail;
        if (e->passes.n < (int)(sizeof e->passes.items / sizeof e->passes.items[0])) e->passes.items[e->passes.n++] = qst;
    }
    bool low = (b->precisions & (KILN_PRECISION_FP16 | KILN_PRECISION_BF16)) != 0;
    if (low) {
        const char **keep = kiln_calloc((size_t)(b->n_layer_precisions + 1), sizeof *keep);
        int n_keep = 0;
        if (!keep) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
        for (int k = 0; k < b->n_layer_precisions; k++)
            if (b->layer_precisions[k].p == KILN_PRECISION_FP32) keep[n_keep++] = b->layer_precisions[k].node;
        kiln_pass_stats pst;
        s = kiln_pass_reduce_precision(g, b->precisions & KILN_PRECISION_FP16 ? KILN_DTYPE_F16 : KILN_DTYPE_BF16, keep, n_keep, &pst);
        free(keep);
        if (s) goto fail;
        if (e->passes.n < (int)(sizeof e->passes.items / sizeof e->passes.items[0])) e->passes.items[e->passes.n++] = pst;
    }
    /* Element-wise groups into one kernel each, on the graph as it will run (its final dtypes):
     * CUDA engines (KILN_EW_FUSE overrides; passes.h). */
    bool ew_fuse = b->opt_level >= 2 && kiln_ew_fuse_wanted(gpu);
    if (ew_fuse) {
        kiln_pass_stats est;
        if ((s = kiln_pass_ew_fuse(g, &est))) goto fail;
        if (e->passes.n < (int)(sizeof e->passes.items / sizeof e->passes.items[0])) e->passes.items[e->passes.n++] = est;
    }
    if (b->opt_level > 0 || int8 || low) {
        kiln_model optimized;
        s = copy_model(g, e->model.opset, what, m->base_dir, &optimized);
        kiln_model_free_contents(&e->model);
        e->model = optimized;
        if (s != KILN_STATUS_OK) goto fail;
        g = e->model.graph;
    }
    int np = b->n_profiles ? b->n_profiles : 1;
    e->profiles = kiln_calloc((size_t)np, sizeof *e->profiles);
    if (!e->profiles) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
    e->n_profiles = np;
    for (int p = 0; p < np; p++) {
        e->profiles[p].inputs = kiln_calloc((size_t)(g->n_inputs ? g->n_inputs : 1), sizeof(kiln_profile_dims));
        if (!e->profiles[p].inputs) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
        if ((s = resolve_profile(g, b->n_profiles ? &b->profiles[p] : NULL, p, e->profiles[p].inputs))) goto fail;
        if ((s = kiln_plan_memory(g, e->profiles[p].inputs, &e->profiles[p].plan))) {
            kiln_error_prefix(s, "planning memory for profile %d", p);
            goto fail;
        }
    }
#ifdef KILN_HAVE_CUDA
    if (gpu && (s = gpu_finish(b, e)) != KILN_STATUS_OK) goto fail;
#else
    (void)gpu; /* refused by kiln_builder_set_device in a build without CUDA */
#endif
    scales_free(&scales);
    free(fp32_nodes);
    *out = e;
    return KILN_STATUS_OK;
fail:
    scales_free(&scales);
    free(fp32_nodes);
    kiln_engine_destroy(e);
    return s;
}
