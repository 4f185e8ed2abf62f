/* engine.c — kiln_engine_*: saving and loading .kiln files (atomically, memory-mapped), the
 * engine's inputs/outputs/profiles, and the JSON description that kiln inspect prints. */
#include "engine.h"
#ifdef KILN_HAVE_CUDA
#include "../backends/cuda/cuda_exec.h"
#endif

#include "../backends/cpu/cpu_backend.h"
#include "../ops/op.h"
#include "../passes/quantize.h"
#include "../plan/kiln_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void kiln_engine_free_contents(kiln_engine_t *e) {
#ifdef KILN_HAVE_CUDA
    kiln_cuda_engine_free(e->gpu);
#endif
    free(e->tactics);
    for (int p = 0; p < e->n_profiles; p++) {
        free(e->profiles[p].inputs);
        kiln_mem_plan_free(&e->profiles[p].plan);
    }
    free(e->profiles);
    kiln_model_free_contents(&e->model);
    kiln_file_unmap(e->file_map, e->file_size);
    memset(e, 0, sizeof *e);
}

void kiln_engine_destroy(kiln_engine_t *e) {
    if (!e) return;
    kiln_engine_free_contents(e);
    free(e);
}

kiln_status kiln_engine_save(const kiln_engine_t *e, const char *path) {
    if (!e || !path) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_engine_save: NULL argument");
    kiln_blob b = {0};
    KILN_TRY(kiln_engine_write(e, &b));
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        free(b.data);
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: path too long", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(b.data);
        return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot create: %s", tmp, strerror(errno));
    }
    bool ok = fwrite(b.data, 1, b.size, f) == b.size;
    ok &= fflush(f) == 0;
    ok &= fclose(f) == 0;
    free(b.data);
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot write: %s", path, strerror(err));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_engine_load(const char *path, kiln_engine_t **out) {
    if (!path || !out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_engine_load: NULL argument");
    *out = NULL;
    const void *map;
    size_t size;
    KILN_TRY(kiln_file_map(path, path, &map, &size));
    kiln_engine *e = kiln_calloc(1, sizeof *e);
    if (!e) {
        kiln_file_unmap(map, size);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    e->file_map = map;
    e->file_size = size;
    kiln_status s = kiln_engine_read(map ? map : "", size, path, e);
    if (s != KILN_STATUS_OK) {
        kiln_engine_destroy(e);
        return s;
    }
#ifdef KILN_HAVE_CUDA
    if (strcmp(e->backend, "cuda") == 0 && (s = kiln_cuda_engine_create(e)) != KILN_STATUS_OK) {
        kiln_error_prefix(s, "%s", path);
        kiln_engine_destroy(e);
        return s;
    }
#endif
    *out = e;
    return KILN_STATUS_OK;
}

int kiln_engine_num_inputs(const kiln_engine_t *e) { return e->model.graph->n_inputs; }
int kiln_engine_num_outputs(const kiln_engine_t *e) { return e->model.graph->n_outputs; }
const char *kiln_engine_input_name(const kiln_engine_t *e, int i) { return kiln_model_input_name(&e->model, i); }
const char *kiln_engine_output_name(const kiln_engine_t *e, int i) { return kiln_model_output_name(&e->model, i); }

kiln_status kiln_engine_input_info(const kiln_engine_t *e, int i, kiln_dtype *dtype, int *rank, int64_t dims[KILN_MAX_RANK]) {
    return kiln_model_input_info(&e->model, i, dtype, rank, dims);
}

kiln_status kiln_engine_output_info(const kiln_engine_t *e, int i, kiln_dtype *dtype, int *rank, int64_t dims[KILN_MAX_RANK]) {
    return kiln_model_output_info(&e->model, i, dtype, rank, dims);
}

int kiln_engine_num_profiles(const kiln_engine_t *e) { return e->n_profiles; }

kiln_status kiln_engine_profile_shape(const kiln_engine_t *e, int profile, int input, int *rank, int64_t min[KILN_MAX_RANK],
                                      int64_t opt[KILN_MAX_RANK], int64_t max[KILN_MAX_RANK]) {
    if (profile < 0 || profile >= e->n_profiles || input < 0 || input >= e->model.graph->n_inputs)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "profile %d / input %d out of range", profile, input);
    const kiln_profile_dims *d = &e->profiles[profile].inputs[input];
    *rank = d->rank;
    for (int k = 0; k < d->rank; k++) {
        min[k] = d->min[k];
        opt[k] = d->opt[k];
        max[k] = d->max[k];
    }
    return KILN_STATUS_OK;
}

void *kiln_passes_json(const kiln_pass_report *r) {
    cJSON *passes = cJSON_CreateArray();
    for (int k = 0; k < r->n; k++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "pass", r->items[k].pass ? r->items[k].pass : "?");
        cJSON_AddNumberToObject(p, "removed", r->items[k].removed);
        cJSON_AddNumberToObject(p, "fused", r->items[k].fused);
        cJSON_AddNumberToObject(p, "folded", r->items[k].folded);
        cJSON_AddItemToArray(passes, p);
    }
    return passes;
}

static cJSON *dims_json(int rank, const int64_t *dims) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < rank; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)dims[k]));
    return a;
}

/* The kernel a node runs with: "ref" on the CPU; on the GPU its family's kernel, or "host"
 * for the shape arithmetic that runs on the CPU. */
static const char *layer_kernel(const kiln_engine *e, int i) {
#ifdef KILN_HAVE_CUDA
    if (e->gpu) {
        if (kiln_cuda_engine_host_node(e->gpu, i)) return "host";
        const char *k = kiln_cuda_op_kernel(e->model.graph->nodes[i].op);
        return k ? k : "cuda";
    }
#endif
    if (strcmp(e->backend, "cuda") == 0) return "cuda";
    /* a CPU engine: the fast kernel when it takes the node's value types, else the reference */
    const kiln_graph *g = e->model.graph;
    const kiln_node *n = &g->nodes[i];
    kiln_tensor *in[256];
    if (n->n_outputs < 1 || n->outputs[0] < 0 || n->n_inputs > 256) return "ref";
    for (int k = 0; k < n->n_inputs; k++) in[k] = n->inputs[k] >= 0 ? (kiln_tensor *)&g->values[n->inputs[k]].type : NULL;
    return kiln_cpu_kernel_name(n, in, &g->values[n->outputs[0]].type);
}

/* fp16 / bf16 when the node writes 16-bit floats (an fp16 or bf16 engine), else fp32. */
static const char *layer_float_precision(const kiln_graph *g, const kiln_node *n) {
    for (int j = 0; j < n->n_outputs; j++) {
        if (n->outputs[j] < 0) continue;
        kiln_dtype t = g->values[n->outputs[j]].type.dtype;
        if (t == KILN_DTYPE_F16) return "fp16";
        if (t == KILN_DTYPE_BF16) return "bf16";
    }
    return "fp32";
}

static cJSON *shape_json(const kiln_graph *g, const kiln_tensor *t) {
    if (t->rank < 0) return cJSON_CreateNull();
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < t->rank; k++) {
        int64_t d = t->dims[k];
        if (d >= 0) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)d));
        else if (d <= -2 && -2 - d < g->n_symbols) cJSON_AddItemToArray(a, cJSON_CreateString(g->symbols[-2 - d]));
        else cJSON_AddItemToArray(a, cJSON_CreateString("?"));
    }
    return a;
}

kiln_status kiln_engine_describe(const kiln_engine_t *e, char **json) {
    const kiln_graph *g = e->model.graph;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kiln_version", KILN_VERSION_STRING);
    cJSON_AddStringToObject(j, "backend", e->backend);
    cJSON_AddStringToObject(j, "device", e->device);
    cJSON_AddNumberToObject(j, "opset", e->model.opset);
    if (e->tuning_note[0]) cJSON_AddStringToObject(j, "tuning_note", e->tuning_note);
    if (e->host_fallback) { /* how many nodes run on the host for want of a GPU kernel */
        int n_fb = 0;
#ifdef KILN_HAVE_CUDA
        for (int i = 0; i < g->n_nodes; i++) n_fb += kiln_cuda_engine_fallback(e->gpu, i) != NULL;
#endif
        cJSON_AddNumberToObject(j, "host_fallback_nodes", n_fb);
    }
    cJSON *prec = cJSON_AddArrayToObject(j, "precisions"); /* what the build allowed */
    for (int k = 0; kiln_precision_bit_name(k); k++)
        if (e->precisions & (1u << k)) cJSON_AddItemToArray(prec, cJSON_CreateString(kiln_precision_bit_name(k)));
    cJSON *io = cJSON_AddArrayToObject(j, "inputs");
    for (int i = 0; i < g->n_inputs; i++) {
        const kiln_value *v = &g->values[g->inputs[i]];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", v->name);
        cJSON_AddStringToObject(o, "dtype", kiln_dtype_name(v->type.dtype));
        cJSON_AddItemToObject(o, "shape", shape_json(g, &v->type));
        cJSON_AddItemToArray(io, o);
    }
    io = cJSON_AddArrayToObject(j, "outputs");
    for (int i = 0; i < g->n_outputs; i++) {
        const kiln_value *v = &g->values[g->outputs[i]];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", v->name);
        cJSON_AddStringToObject(o, "dtype", kiln_dtype_name(v->type.dtype));
        cJSON_AddItemToObject(o, "shape", shape_json(g, &v->type));
        cJSON_AddItemToArray(io, o);
    }
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (int i = 0; i < g->n_nodes; i++) {
        const kiln_node *n = &g->nodes[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", n->name);
        cJSON_AddStringToObject(o, "op", kiln_op_name(n->op));
        if (n->act.kind != KILN_ACT_NONE) cJSON_AddStringToObject(o, "fused_activation", kiln_act_name(n->act.kind));
        if (n->op == KILN_OP_FusedElementwise) {
            char prog[512];
            cJSON_AddStringToObject(o, "fused_program", kiln_fused_ew_describe(n, prog, sizeof prog));
        }
        cJSON_AddStringToObject(o, "kernel", layer_kernel(e, i));
#ifdef KILN_HAVE_CUDA
        const char *fb = kiln_cuda_engine_fallback(e->gpu, i);
        if (fb) cJSON_AddStringToObject(o, "host_fallback", fb);
#endif
        bool int8 = n->op == KILN_OP_QLinearConv || n->op == KILN_OP_QLinearMatMul || n->op == KILN_OP_ConvInteger ||
                    n->op == KILN_OP_MatMulInteger ||
                    (n->op == KILN_OP_Relu && n->n_inputs > 0 && n->inputs[0] >= 0 && g->values[n->inputs[0]].type.dtype == KILN_DTYPE_I8);
        cJSON_AddStringToObject(o, "precision", int8 ? "int8" : layer_float_precision(g, n));
        for (int k = 0; !int8 && k < n->attrs.n; k++) /* why a Conv/MatMul/Gemm stayed f32 (passes/quantize.h) */
            if (strcmp(n->attrs.items[k].name, KILN_INT8_NOTE_ATTR) == 0 && n->attrs.items[k].type == KILN_ATTR_STRING)
                cJSON_AddStringToObject(o, "int8_note", n->attrs.items[k].s);
        /* The output scale where a constant gives it: y_scale of the QLinear ops, the scale of Q/DQ. */
        int sv = n->op == KILN_OP_QLinearConv || n->op == KILN_OP_QLinearMatMul ? 6
                 : n->op == KILN_OP_QuantizeLinear || n->op == KILN_OP_DequantizeLinear ? 1 : -1;
        if (sv >= 0 && sv < n->n_inputs && n->inputs[sv] >= 0) {
            const kiln_tensor *st = &g->values[n->inputs[sv]].type;
            if (st->data && st->dtype == KILN_DTYPE_F32 && kiln_shape_count(st->rank, st->dims) == 1)
                cJSON_AddNumberToObject(o, "output_scale", (double)*(const float *)st->data);
        }
        cJSON *ins = cJSON_AddArrayToObject(o, "inputs"), *outs = cJSON_AddArrayToObject(o, "outputs");
        for (int k = 0; k < n->n_declared; k++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "name", n->inputs[k] >= 0 ? g->values[n->inputs[k]].name : "");
            if (n->inputs[k] >= 0) {
                cJSON_AddItemToObject(t, "shape", shape_json(g, &g->values[n->inputs[k]].type));
                if (g->values[n->inputs[k]].flags & KILN_VALUE_CONST) cJSON_AddBoolToObject(t, "constant", 1);
            }
            cJSON_AddItemToArray(ins, t);
        }
        for (int k = 0; k < n->n_outputs; k++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "name", n->outputs[k] >= 0 ? g->values[n->outputs[k]].name : "");
            if (n->outputs[k] >= 0) {
                cJSON_AddStringToObject(t, "dtype", kiln_dtype_name(g->values[n->outputs[k]].type.dtype));
                cJSON_AddItemToObject(t, "shape", shape_json(g, &g->values[n->outputs[k]].type));
            }
            cJSON_AddItemToArray(outs, t);
        }
        cJSON_AddItemToArray(layers, o);
    }
    cJSON_AddNumberToObject(j, "nodes_before_passes", e->nodes_before);
    cJSON_AddNumberToObject(j, "nodes_after_passes", g->n_nodes);
    cJSON_AddItemToObject(j, "passes", kiln_passes_json(&e->passes));
    cJSON *profiles = cJSON_AddArrayToObject(j, "profiles");
    for (int p = 0; p < e->n_profiles; p++) {
        const kiln_profile *pr = &e->profiles[p];
        cJSON *o = cJSON_CreateObject();
        cJSON *shapes = cJSON_AddArrayToObject(o, "inputs");
        for (int i = 0; i < g->n_inputs; i++) {
            const kiln_profile_dims *d = &pr->inputs[i];
            if (d->rank < 0) continue;
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "name", g->values[g->inputs[i]].name);
            cJSON_AddItemToObject(s, "min", dims_json(d->rank, d->min));
            cJSON_AddItemToObject(s, "opt", dims_json(d->rank, d->opt));
            cJSON_AddItemToObject(s, "max", dims_json(d->rank, d->max));
            cJSON_AddItemToArray(shapes, s);
        }
        cJSON *mem = cJSON_AddObjectToObject(o, "memory");
        cJSON_AddNumberToObject(mem, "arena_bytes", (double)pr->plan.arena_bytes);
        cJSON_AddNumberToObject(mem, "naive_bytes", (double)pr->plan.naive_bytes);
        cJSON_AddNumberToObject(mem, "in_place", pr->plan.n_inplace);
        cJSON_AddNumberToObject(mem, "dynamic_values", pr->plan.n_dynamic);
        cJSON_AddItemToArray(profiles, o);
    }
    uint64_t wbytes = 0;
    int nweights = 0;
    for (int v = 0; v < g->n_values; v++)
        if ((g->values[v].flags & KILN_VALUE_CONST) && g->values[v].type.rank >= 0) {
            wbytes += kiln_tensor_bytes(&g->values[v].type);
            nweights++;
        }
    cJSON *w = cJSON_AddObjectToObject(j, "weights");
    cJSON_AddNumberToObject(w, "tensors", nweights);
    cJSON_AddNumberToObject(w, "bytes", (double)wbytes);
    *json = cJSON_Print(j);
    cJSON_Delete(j);
    return *json ? KILN_STATUS_OK : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
}
