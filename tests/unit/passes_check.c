/* passes_check.c — test driver for src/passes/, used by tests/models/test_passes.py:
 *     passes_check MODEL.onnx INPUTS.npz [--no-fusion] [--ew-fuse]
 * Loads the model, runs it on the inputs (reference backend, no passes), runs kiln_passes_run
 * on its graph (then kiln_pass_ew_fuse with --ew-fuse, as the builder does for CUDA engines),
 * checks the graph (kiln_graph_validate, graph output names unchanged), runs it
 * again, then writes the optimized graph out as an engine graph (ONNX + domain "kiln"),
 * imports that back and runs it a third time. Prints one JSON line:
 *     {"passes": {"bn_fold": {"removed": 1, "fused": 1, "folded": 0}, ...},   (summed by name)
 *      "nodes_before": N, "nodes_after": M, "ops_after": ["Conv", ...], "acts_after": ["Conv+Relu"],
 *      "max_abs_diff": x, "max_abs_ref": r, "roundtrip_diff": z, "outputs_kept": true}
 * max_abs_diff compares passes vs no passes over every output, max_abs_ref is the largest
 * |output| without passes, roundtrip_diff compares the re-imported engine graph with the
 * optimized one (-1 if the round trip failed; its error is in "roundtrip_error").
 * Exits 0 when all of that ran (the comparisons are the Python test's), 1 with kiln's message
 * on stderr otherwise. */
#include "ir/graph.h"
#include "io/npy.h"
#include "onnx/export.h"
#include "onnx/import.h"
#include "ops/op.h"
#include "passes/passes.h"

#include <cjson/cJSON.h>
#include <onnx.pb-c.h>
#include <math.h>
#include <string.h>

static int fail(const char *what, kiln_status s) {
    fprintf(stderr, "passes_check: %s: %s: %s\n", what, kiln_status_name(s), kiln_last_error());
    return 1;
}

static kiln_status run(const kiln_model *m, kiln_named_tensor *in, int n_in, kiln_tensor_t ***out) {
    const char *names[256];
    kiln_tensor_t *ts[256];
    if (n_in > 256) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "too many inputs");
    for (int i = 0; i < n_in; i++) {
        names[i] = in[i].name;
        ts[i] = in[i].t;
    }
    int n_out = kiln_model_num_outputs(m);
    *out = calloc((size_t)(n_out ? n_out : 1), sizeof(kiln_tensor_t *));
    if (!*out) return KILN_STATUS_OUT_OF_MEMORY;
    return kiln_model_run(m, n_in, names, ts, n_out, *out);
}

static void free_outputs(kiln_tensor_t **o, int n) {
    for (int j = 0; o && j < n; j++) kiln_tensor_destroy(o[j]);
    free(o);
}

/* Largest |a - b| over all outputs; INFINITY when shapes or dtypes differ. NaN where both are NaN is 0. */
static double max_diff(kiln_tensor_t **a, kiln_tensor_t **b, int n) {
    double m = 0;
    for (int j = 0; j < n; j++) {
        const kiln_tensor *x = a[j], *y = b[j];
        if (x->dtype != y->dtype || x->rank != y->rank) return INFINITY;
        for (int d = 0; d < x->rank; d++)
            if (x->dims[d] != y->dims[d]) return INFINITY;
        int64_t c = kiln_shape_count(x->rank, x->dims);
        for (int64_t i = 0; i < c; i++) {
            double u = kiln_load_f64(x->dtype, x->data, i), v = kiln_load_f64(y->dtype, y->data, i);
            if (isnan(u) && isnan(v)) continue;
            double d = fabs(u - v);
            if (isnan(d)) return INFINITY;
            if (d > m) m = d;
        }
    }
    return m;
}

static double max_abs(kiln_tensor_t **a, int n) {
    double m = 0;
    for (int j = 0; j < n; j++) {
        int64_t c = kiln_shape_count(a[j]->rank, a[j]->dims);
        for (int64_t i = 0; i < c; i++) {
            double u = fabs(kiln_load_f64(a[j]->dtype, a[j]->data, i));
            if (u > m) m = u;
        }
    }
    return m;
}

/* The optimized graph written as an engine graph and imported back; its outputs in *out. */
static kiln_status roundtrip(const kiln_model *m, kiln_named_tensor *in, int n_in, kiln_tensor_t ***out) {
    kiln_blob blob = {0};
    KILN_TRY(kiln_onnx_export(m->graph, m->opset, NULL, &blob));
    kiln_model m2 = {0};
    m2.engine_graph = true;
    kiln_status s = kiln_model_import(blob.data, blob.size, "<engine graph>", ".", &m2);
    if (s == KILN_STATUS_OK) s = run(&m2, in, n_in, out);
    kiln_model_free_contents(&m2);
    free(blob.data);
    return s;
}

int main(int argc, char **argv) {
    bool no_fusion = false, ew_fuse = false;
    for (int a = 3; a < argc; a++) {
        if (strcmp(argv[a], "--no-fusion") == 0) no_fusion = true;
        else if (strcmp(argv[a], "--ew-fuse") == 0) ew_fuse = true;
        else argc = 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: passes_check MODEL.onnx INPUTS.npz [--no-fusion] [--ew-fuse]\n");
        return 2;
    }
    kiln_model_t *m = NULL;
    kiln_status s = kiln_model_load(argv[1], &m);
    if (s) return fail(argv[1], s);
    kiln_named_tensor *in = NULL;
    int n_in = 0;
    if ((s = kiln_npz_read(argv[2], &in, &n_in))) return fail(argv[2], s);
    kiln_graph *g = m->graph;
    int n_out = g->n_outputs;
    kiln_tensor_t **ref = NULL, **opt = NULL, **rt = NULL;
    if ((s = run(m, in, n_in, &ref))) return fail("run before passes", s);
    char **out_names = calloc((size_t)(n_out ? n_out : 1), sizeof(char *));
    for (int j = 0; j < n_out; j++) out_names[j] = kiln_strdup(g->values[g->outputs[j]].name);
    int nodes_before = g->n_nodes;
    /* As ONNX Runtime: initializers listed as inputs are constants below IR 4. */
    const Onnx__ModelProto *mp = m->proto;
    kiln_pass_options po = {.no_fusion = no_fusion, .promote_initializer_inputs = mp && mp->has_ir_version && mp->ir_version < 4};
    kiln_pass_report rep = {0};
    if ((s = kiln_passes_run(g, &po, &rep))) return fail("passes", s);
    if (ew_fuse) {
        if ((s = kiln_pass_ew_fuse(g, &rep.items[rep.n]))) return fail("ew_fuse", s);
        rep.n++;
    }
    kiln_graph_validate(g);
    bool kept = g->n_outputs == n_out;
    for (int j = 0; kept && j < n_out; j++) kept = strcmp(out_names[j], g->values[g->outputs[j]].name) == 0;
    if ((s = run(m, in, n_in, &opt))) return fail("run after passes", s);
    char *rt_error = NULL;
    double rt_diff = -1;
    if ((s = roundtrip(m, in, n_in, &rt)) == KILN_STATUS_OK) rt_diff = max_diff(opt, rt, n_out);
    else rt_error = kiln_strdup(kiln_last_error());

    cJSON *j = cJSON_CreateObject();
    cJSON *passes = cJSON_AddObjectToObject(j, "passes");
    for (int k = 0; k < rep.n; k++) {
        const kiln_pass_stats *st = &rep.items[k];
        cJSON *p = cJSON_GetObjectItemCaseSensitive(passes, st->pass);
        if (!p) {
            p = cJSON_AddObjectToObject(passes, st->pass);
            cJSON_AddNumberToObject(p, "removed", 0);
            cJSON_AddNumberToObject(p, "fused", 0);
            cJSON_AddNumberToObject(p, "folded", 0);
        }
        cJSON_SetNumberValue(cJSON_GetObjectItem(p, "removed"), cJSON_GetObjectItem(p, "removed")->valuedouble + st->removed);
        cJSON_SetNumberValue(cJSON_GetObjectItem(p, "fused"), cJSON_GetObjectItem(p, "fused")->valuedouble + st->fused);
        cJSON_SetNumberValue(cJSON_GetObjectItem(p, "folded"), cJSON_GetObjectItem(p, "folded")->valuedouble + st->folded);
    }
    cJSON_AddNumberToObject(j, "nodes_before", nodes_before);
    cJSON_AddNumberToObject(j, "nodes_after", g->n_nodes);
    cJSON *ops = cJSON_AddArrayToObject(j, "ops_after");
    cJSON *acts = cJSON_AddArrayToObject(j, "acts_after");
    for (int i = 0; i < g->n_nodes; i++) {
        cJSON_AddItemToArray(ops, cJSON_CreateString(kiln_op_name(g->nodes[i].op)));
        if (g->nodes[i].act.kind != KILN_ACT_NONE) {
            char buf[96];
            snprintf(buf, sizeof buf, "%s+%s", kiln_op_name(g->nodes[i].op), kiln_act_name(g->nodes[i].act.kind));
            cJSON_AddItemToArray(acts, cJSON_CreateString(buf));
        }
    }
    double d = max_diff(ref, opt, n_out);
    cJSON_AddNumberToObject(j, "max_abs_diff", isfinite(d) ? d : 1e300);
    cJSON_AddNumberToObject(j, "max_abs_ref", max_abs(ref, n_out));
    cJSON_AddNumberToObject(j, "roundtrip_diff", isfinite(rt_diff) ? rt_diff : 1e300);
    if (rt_error) cJSON_AddStringToObject(j, "roundtrip_error", rt_error);
    cJSON_AddBoolToObject(j, "outputs_kept", kept);
    char *text = cJSON_PrintUnformatted(j);
    puts(text);
    free(text);
    cJSON_Delete(j);
    free_outputs(ref, n_out);
    free_outputs(opt, n_out);
    free_outputs(rt, n_out);
    free(rt_error);
    for (int k = 0; k < n_out; k++) free(out_names[k]);
    free(out_names);
    kiln_named_tensors_free(in, n_in);
    kiln_model_destroy(m);
    return 0;
}
