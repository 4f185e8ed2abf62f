/* builder.c — kiln_builder_*: the build configuration, and kiln_builder_build, which copies
 * the model's graph (through an ONNX round trip, so the engine owns everything), runs the
 * passes, checks the optimization profiles against the inputs, chooses a kernel per node and
 * plans memory for each profile. */
#include "engine.h"

#include "../onnx/export.h"
#include "../ops/op.h"
#include "onnx.pb-c.h"

#include <string.h>

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
    free(b);
}

kiln_status kiln_builder_set_device(kiln_builder_t *b, kiln_device d) {
    if (d == KILN_DEVICE_CUDA)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "the CUDA backend is not part of this kiln build yet: build for --device cpu");
    if (d != KILN_DEVICE_CPU) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "unknown device %d", (int)d);
    b->device = d;
    return KILN_STATUS_OK;
}

kiln_status kiln_builder_set_precisions(kiln_builder_t *b, unsigned flags) {
    if (flags & ~(unsigned)(KILN_PRECISION_FP32 | KILN_PRECISION_FP16 | KILN_PRECISION_BF16 | KILN_PRECISION_INT8))
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

kiln_status kiln_builder_build(const kiln_builder_t *b, const kiln_model_t *m, kiln_engine_t **out) {
    if (!b || !m || !out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_builder_build: NULL argument");
    *out = NULL;
    if (b->precisions & (KILN_PRECISION_FP16 | KILN_PRECISION_BF16 | KILN_PRECISION_INT8))
        return kiln_error(KILN_STATUS_UNSUPPORTED,
                          "%s%s%sengines are not supported yet: the CPU backend runs fp32 (reduced precisions come with the INT8 and CUDA backends)",
                          b->precisions & KILN_PRECISION_FP16 ? "fp16 " : "", b->precisions & KILN_PRECISION_BF16 ? "bf16 " : "",
                          b->precisions & KILN_PRECISION_INT8 ? "int8 " : "");
    for (int k = 0; k < b->n_layer_precisions; k++) {
        bool found = false;
        for (int i = 0; i < m->graph->n_nodes; i++) found |= strcmp(m->graph->nodes[i].name, b->layer_precisions[k].node) == 0;
        if (!found) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--layer-precision names node '%s', which the model does not have", b->layer_precisions[k].node);
        if (b->layer_precisions[k].p != KILN_PRECISION_FP32)
            return kiln_error(KILN_STATUS_UNSUPPORTED, "node '%s': only fp32 layers exist in this build", b->layer_precisions[k].node);
    }
    kiln_engine *e = kiln_calloc(1, sizeof *e);
    if (!e) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    const char *what = m->path ? m->path : "<model>";
    kiln_status s = copy_model(m->graph, m->opset, what, m->base_dir, &e->model);
    if (s != KILN_STATUS_OK) goto fail;
    kiln_graph *g = e->model.graph;
    snprintf(e->backend, sizeof e->backend, "ref");
    snprintf(e->device, sizeof e->device, "cpu");
    e->precisions = b->precisions;
    e->nodes_before = g->n_nodes;
    if (b->opt_level > 0) {
        kiln_pass_options po = {.no_fusion = b->opt_level < 2};
        /* Before IR 4 every initializer had to be listed as a graph input: those are weights,
         * not inputs (ONNX Runtime treats them so too). From IR 4 on they stay overridable. */
        const Onnx__ModelProto *mp = m->proto;
        po.promote_initializer_inputs = mp && mp->has_ir_version && mp->ir_version < 4;
        if ((s = kiln_passes_run(g, &po, &e->passes))) goto fail;
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
    *out = e;
    return KILN_STATUS_OK;
fail:
    kiln_engine_destroy(e);
    return s;
}
