/* passes.c — kiln_passes_run: the passes of passes.h in order, each followed (in debug builds)
 * by the graph validator and a fresh shape inference, each reported in the pass report.
 * Folding and cleanup run first and again after the fusions (fusions leave unused constants
 * and can expose more identities). Tested by tests/models/test_passes.py. */
#include "pass_util.h"
#include "quantize.h"

typedef kiln_status (*pass_fn)(kiln_graph *g, kiln_pass_stats *st);

typedef struct pass_entry {
    pass_fn fn;
    bool fusion;                                              /* skipped with no_fusion */
    kiln_status (*group)(kiln_graph *g, kiln_pass_report *r); /* instead of fn: passes run together */
} pass_entry;

static kiln_status fold_shapes(kiln_graph *g, kiln_pass_report *report);

static const pass_entry PASSES[] = {
    {kiln_pass_constant_fold, false},
    {.group = fold_shapes}, /* shape_fold, then constant_fold over the chains it fed, to a fixpoint */
    {kiln_pass_identity_elim, false},
    {kiln_pass_dead_code, false},
    {kiln_pass_bn_fold, true},
    {kiln_pass_scale_fold, true},
    {kiln_pass_layernorm_fuse, true},
    {kiln_pass_attention_fuse, true},
    {kiln_pass_matmul_bias, true}, /* before gelu_fuse: Gelu's fallback fuses into FusedMatMul */
    {kiln_pass_gelu_fuse, true},
    {kiln_pass_act_fuse, true},
    {kiln_pass_qdq, true}, /* explicit INT8 (Q/DQ models), once the activations are fused */
    {kiln_pass_dead_code, false},
    {kiln_pass_unused_constants, false},
};

static kiln_status check(kiln_graph *g, const char *pass) {
#ifndef NDEBUG
    kiln_graph_validate(g);
    kiln_status s = kiln_graph_infer(g);
    if (s != KILN_STATUS_OK) return kiln_error_prefix(s, "after pass %s", pass);
#else
    (void)g;
    (void)pass;
#endif
    return KILN_STATUS_OK;
}

static void report_add(kiln_pass_report *report, const kiln_pass_stats *st) {
    if (report && report->n < (int)(sizeof report->items / sizeof report->items[0])) report->items[report->n++] = *st;
}

/* One pass, its errors named after it, then check. */
static kiln_status run_pass(kiln_graph *g, pass_fn fn, kiln_pass_stats *st) {
    *st = (kiln_pass_stats){0};
    kiln_status s = fn(g, st);
    if (s != KILN_STATUS_OK) return kiln_error_prefix(s, "pass %s", st->pass ? st->pass : "?");
    return check(g, st->pass);
}

/* shape_fold, then constant_fold over the chains it fed, repeated while they change the graph:
 * a Reshape whose target shape folded has known output dims only once shapes are inferred again,
 * and the Shape nodes downstream of it fold in the next round (a graph specialized to fixed input
 * shapes folds all of them so: a round a transformer layer, as each layer's shapes come from the
 * one before; a round that folds no Shape ends the loop). Reported as one shape_fold and one
 * constant_fold, summed over the rounds. */
static kiln_status fold_shapes(kiln_graph *g, kiln_pass_report *report) {
    kiln_pass_stats sf, cf, r;
    KILN_TRY(run_pass(g, kiln_pass_shape_fold, &sf));
    KILN_TRY(run_pass(g, kiln_pass_constant_fold, &cf));
    /* a round that folds something removes a node: at most as many rounds as nodes */
    for (int round = 0, n0 = g->n_nodes; round < n0 && sf.folded + sf.removed + cf.folded + cf.removed > 0; round++) {
        KILN_TRY(kiln_graph_infer(g));
        KILN_TRY(run_pass(g, kiln_pass_shape_fold, &r));
        sf.folded += r.folded;
        sf.removed += r.removed;
        if (r.folded + r.removed == 0) break;
        KILN_TRY(run_pass(g, kiln_pass_constant_fold, &r));
        cf.folded += r.folded;
        cf.removed += r.removed;
    }
    report_add(report, &sf);
    report_add(report, &cf);
    return KILN_STATUS_OK;
}

kiln_status kiln_passes_run(kiln_graph *g, const kiln_pass_options *opt, kiln_pass_report *report) {
    if (!g) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_passes_run: NULL graph");
    bool fusion = !(opt && opt->no_fusion);
    if (report) report->n = 0;
    if (opt && opt->promote_initializer_inputs) {
        kiln_pass_stats st = {0};
        KILN_TRY(kiln_pass_initializer_inputs(g, &st));
        report_add(report, &st);
    }
    for (size_t i = 0; i < sizeof PASSES / sizeof PASSES[0]; i++) {
        if (PASSES[i].fusion && !fusion) continue;
        if (PASSES[i].group) {
            KILN_TRY(PASSES[i].group(g, report));
            continue;
        }
        kiln_pass_stats st;
        KILN_TRY(run_pass(g, PASSES[i].fn, &st));
        report_add(report, &st);
    }
    return KILN_STATUS_OK;
}
