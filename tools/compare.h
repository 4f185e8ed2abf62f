/* compare.h — the parts of `kiln compare` (tools/cmd_compare.c and tools/compare_*.c):
 *
 *   compare_stats.c      error statistics of one output pair and the checks against thresholds
 *   compare_invariant.c  user contracts on outputs ("len==73", "cache_len:nondecreasing", ...)
 *   compare_runner.c     the two sides: an ONNX model (reference backend), an engine (loaded or
 *                        built on the fly), or saved reference outputs
 *   compare_feed.c       the inputs of each step: data, generated, defaults, initial state
 *   compare_session.c    the step loop: inputs, state feedback, statistics per step and summary
 *   compare_report.c     text and JSON reports
 *   compare_plot.c       the PNG of error against step (cairo)
 *   compare_bisect.c     --bisect-precision: the fewest layers to keep in fp32
 * The user guide is docs/compare.md; the tests are tests/models/test_compare.py. */
#ifndef KILN_TOOLS_COMPARE_H
#define KILN_TOOLS_COMPARE_H

#include "cli.h"
#include "cli_inputs.h"

#include <cjson/cJSON.h>
#include <stdio.h>

#define CMP_MAX_ARGS 64

/* ---- tensors by name ---- */
typedef struct cmp_tensors {
    int n;
    const char **names;
    kiln_tensor_t **t;
} cmp_tensors;
kiln_tensor_t *cmp_tensors_find(const cmp_tensors *s, const char *name);

/* ---- thresholds and statistics ---- */
typedef struct cmp_thresholds {
    bool tol;       /* elementwise |t - r| <= atol + rtol * |r| */
    double atol, rtol;
    bool cos;       /* cosine similarity >= cosine */
    double cosine;
    bool p99;       /* 99th percentile of |t - r| <= p99_atol */
    double p99_atol;
} cmp_thresholds;

/* The statistics of one output at one step; errors over elements finite on both sides. */
typedef struct cmp_metrics {
    bool compared;         /* false: shapes clash (problem says how); nothing else is set */
    char problem[200];
    bool exact;            /* integer or bool reference: compared exactly */
    int64_t count;         /* elements */
    double abs_max, abs_mean, abs_median, abs_p95, abs_p99;
    double rel_max, rel_mean, rel_median, rel_p95, rel_p99; /* |t - r| / |r| over r != 0 */
    double cosine;         /* 1 when both are all zeros; NAN for exact outputs */
    double ref_abs_mean;   /* mean |r|, the scale errors are ranked against */
    int64_t nan_ref, nan_tgt, inf_ref, inf_tgt;
    int64_t nonfinite_mismatch; /* elements where NaN/Inf on one side is not matched on the other */
    int64_t mismatches;    /* exact outputs: elements that differ */
    int64_t outside_tol;   /* elements outside atol + rtol |r| (when that check applies) */
    int64_t worst_index;   /* the element with the largest |t - r| (-1 if none) */
    double worst_ref, worst_tgt;
    char worst_at[96];     /* worst_index as a position: "[2,0,1]" */
    bool pass;
    bool hard;             /* a failure no pass rate forgives: shapes, NaN/Inf, exact mismatch */
    char fail[400];        /* the first failed check, in words */
} cmp_metrics;

/* Compares tgt against ref and judges the result against thr. */
kiln_status cmp_metrics_compute(const kiln_tensor_t *ref, const kiln_tensor_t *tgt, const cmp_thresholds *thr,
                                cmp_metrics *m);
/* numpy's default (linear) percentile of n sorted values; q in [0, 100]. */
double cmp_percentile_sorted(const double *v, int64_t n, double q);
/* Least-squares slope of y over x = 0, 1, ..., n-1 (0 when n < 2). */
double cmp_slope(const double *y, int64_t n);

/* ---- invariants (contracts) ---- */
enum { INV_COMPARE, INV_FINITE, INV_MONOTONE, INV_SHAPE };
enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };
typedef struct cmp_inv_state {
    int64_t checked, violations; /* steps */
    int64_t first_step;          /* -1: none */
    char first[240];             /* what the first violation saw */
    bool missing;                /* the runner has no tensor of that name */
} cmp_inv_state;
typedef struct cmp_invariant {
    char text[256];
    int kind;
    char lhs[256];
    int op;                      /* INV_COMPARE: OP_*; INV_MONOTONE: OP_GE (nondecreasing), OP_GT, OP_LE, OP_LT */
    bool rhs_is_tensor;
    char rhs[256];
    double value;
    int rank;                    /* INV_SHAPE */
    int64_t dims[KILN_MAX_RANK]; /* -1: any size */
    cmp_inv_state r[2];          /* 0: reference, 1: target */
} cmp_invariant;
/* Parses the syntax of docs/compare.md; on failure returns -1 and says why in err. */
int cmp_invariant_parse(const char *text, cmp_invariant *inv, char *err, size_t n);
/* Checks one runner's step. now: its outputs and inputs of this step; prev: its outputs of the
 * step before (NULL at step 0). */
void cmp_invariant_check(cmp_invariant *inv, int runner, int64_t step, const cmp_tensors *outs, const cmp_tensors *ins,
                         const cmp_tensors *prev);
void cmp_invariant_reset(cmp_invariant *inv);

/* ---- how a target is built from ONNX on the fly (the flags of `kiln build`) ---- */
typedef struct cmp_build {
    bool any;                    /* some build flag was given */
    kiln_device device;
    unsigned precisions;
    const char *calib, *calib_dir, *calib_method, *calib_cache;
    int64_t calib_batch, calib_max;
    const char *layer_prec[256];
    int n_layer_prec;
    int level;
    const char *min_shapes, *opt_shapes, *max_shapes;
    bool progress;               /* calibration progress on the terminal */
} cmp_build;
/* Builds m into an engine; profile from --min/--opt/--max-shapes, else --shapes, else (when the
 * model has dynamic inputs) fixed at the shapes of `sample`. extra_fp32 nodes are kept in fp32 on
 * top of the flags; cache, when not NULL, replaces --calib-cache. */
kiln_status cmp_build_engine(const cmp_build *b, const char *shapes, const kiln_model_t *m, const cmp_tensors *sample,
                             const char *const *extra_fp32, int n_extra, const char *cache, kiln_engine_t **out);
/* Appends the flags of b (as `kiln build` takes them) to buf. */
void cmp_build_flags(const cmp_build *b, const char *shapes, char *buf, size_t n);

/* ---- runners ---- */
typedef enum { CMP_RUNNER_MODEL, CMP_RUNNER_ENGINE, CMP_RUNNER_SAVED } cmp_runner_kind;
typedef struct cmp_runner {
    cmp_runner_kind kind;
    char path[1024];
    char desc[512];              /* for the report: what runs it and at which precisions */
    int profile;                 /* ENGINE: the optimization profile it runs */
    kiln_model_t *m;
    kiln_engine_t *e;
    kiln_context_t *c;
    int n_out;
    char **out_names;
    /* SAVED: arrays read from an .npz (stepped when steps > 1 or their rank says so), or a trace
     * recorded in memory, trace[step * n_out + j] */
    kiln_tensor_t **arrays;
    kiln_tensor_t **trace;
    int64_t trace_steps;
} cmp_runner;

kiln_status cmp_runner_open_model(cmp_runner *r, const char *path);
kiln_status cmp_runner_open_engine(cmp_runner *r, const char *path, int profile);
kiln_status cmp_runner_from_engine(cmp_runner *r, kiln_engine_t *e, const char *label, int profile);
kiln_status cmp_runner_open_saved(cmp_runner *r, const char *path);
void cmp_runner_close(cmp_runner *r);
int cmp_runner_output_index(const cmp_runner *r, const char *name);
/* Runs one step; outs[j] receive new tensors for the runner's outputs (NULL where a saved runner
 * has nothing for that step). Inputs the runner does not declare are not passed. */
kiln_status cmp_runner_run(cmp_runner *r, int64_t step, int64_t n_steps, const cmp_tensors *in, kiln_tensor_t **outs);
/* Turns r into a SAVED runner replaying the trace (per-step outputs, taken over). */
void cmp_runner_replay(cmp_runner *r, kiln_tensor_t **trace, int64_t steps);
/* The engine's precisions as "int8 (5 layers), fp32 (8 layers)" into buf; layer names at reduced
 * precision that are nodes of the model go to *names (malloc'ed, n) when names is not NULL. */
kiln_status cmp_engine_precisions(const kiln_engine_t *e, const kiln_model_t *m, char *buf, size_t n, char ***names,
                                  int *n_names);

/* ---- the session ---- */
typedef struct cmp_named_value {
    char name[256]; /* "" for every output */
    double v;
} cmp_named_value;

typedef struct cmp_opts {
    const char *ref_path, *tgt_path;
    const char *data;
    const char *shapes;
    cli_range ranges[CMP_MAX_ARGS];
    int n_ranges;
    uint64_t seed;
    int64_t steps;               /* 0: from the data, else 1 */
    bool closed_loop;
    struct { char out[256], in[256]; } state[CMP_MAX_ARGS];
    int n_state;
    cmp_named_value atol[CMP_MAX_ARGS], rtol[CMP_MAX_ARGS], cosine[CMP_MAX_ARGS], p99[CMP_MAX_ARGS];
    int n_atol, n_rtol, n_cosine, n_p99;
    double min_pass_rate;        /* of steps, per output (default 1) */
    bool has_max_slope;
    double max_slope;
    cmp_invariant inv[CMP_MAX_ARGS];
    int n_inv;
    const char *only_outputs;    /* --outputs a,b */
    const char *plot, *save_ref, *save_inputs;
    int profile;
    bool json, progress, bisect;
    cmp_build build;
} cmp_opts;

/* What one output did over the steps. */
typedef struct cmp_output {
    char name[256];
    kiln_dtype ref_dtype, tgt_dtype;
    int rank;
    int64_t dims[KILN_MAX_RANK]; /* the reference's shape at the last step */
    cmp_thresholds thr;
    cmp_metrics *steps;
    int64_t n_steps;
    cmp_metrics worst;           /* each statistic at its worst over the steps (max errors, min cosine) */
    int64_t n_pass, worst_step;
    double slope_max, slope_mean;                   /* per step, of abs_max and abs_mean */
    double series_mean, series_median, series_p95, series_p99, series_max; /* of the per-step abs_max */
    bool pass;
} cmp_output;

typedef struct cmp_result {
    int64_t steps;
    char inputs_desc[1024];
    cmp_output *outs;
    int n_outs;
    cmp_invariant *inv;          /* copies of the options' invariants, with what each runner did */
    int n_inv;
    int n_failed_outputs, n_broken_invariants;
    bool pass;
} cmp_result;

/* The thresholds of output `name` (per-output values over global ones; none given anywhere for
 * it: atol = rtol = 1e-5). */
void cmp_thresholds_for(const cmp_opts *o, const char *name, cmp_thresholds *t);
/* The input names, dtypes and shapes the session feeds (from the reference model or engine, else
 * the target); used to generate data and to decide which data arrays are stepped. */
typedef struct cmp_signature {
    int n;
    char **names;
    kiln_dtype *dtypes;
    int *ranks;
    int64_t (*dims)[KILN_MAX_RANK];
    bool *has_default;           /* an initializer backs it: fed only when the data names it */
} cmp_signature;
kiln_status cmp_signature_of(const cmp_runner *r, cmp_signature *sig);
void cmp_signature_free(cmp_signature *sig);

/* The inputs of the steps (compare_feed.c). */
typedef struct cmp_feed {
    const cmp_opts *o;
    const cmp_signature *sig;
    cli_data data;
    bool has_data;
    cli_rng rng;
    int64_t steps;               /* --steps, else the data's step count, else 1 */
} cmp_feed;
kiln_status cmp_feed_open(cmp_feed *f, const cmp_opts *o, const cmp_signature *sig);
void cmp_feed_close(cmp_feed *f);
/* The inputs of step k that do not come from state (inputs[i] stays NULL for state inputs and for
 * inputs left to their initializer); at step 0 desc (when not NULL) says where each comes from. */
kiln_status cmp_feed_step(cmp_feed *f, int64_t k, kiln_tensor_t **inputs, char *desc, size_t n);
/* The initial value of state input i: the data's (step 0 of a stepped array), else zeros. */
kiln_status cmp_feed_initial_state(cmp_feed *f, int i, kiln_tensor_t **out, bool *from_data);
/* The --state pair whose input is `name`, or -1. */
int cmp_state_of_input(const cmp_opts *o, const char *name);
/* Prepares the inputs of step 0 (for building a target whose profile follows the data). */
kiln_status cmp_first_inputs(const cmp_opts *o, const cmp_signature *sig, cmp_tensors *out);
void cmp_tensors_free(cmp_tensors *t);
/* Runs every step. With trace not NULL the reference's outputs are recorded there
 * (*trace = steps * ref->n_out tensors). */
kiln_status cmp_session_run(const cmp_opts *o, const cmp_signature *sig, cmp_runner *ref, cmp_runner *tgt,
                            cmp_result *res, kiln_tensor_t ***trace, int64_t *trace_steps);
void cmp_result_free(cmp_result *res);
/* A score for ranking (bigger is worse): over outputs, the mean |t - r| relative to the mean |r|
 * averaged over the steps, plus mismatch fractions; 1e6 per step with NaN/Inf or shape trouble. */
double cmp_result_score(const cmp_result *res);

/* ---- reports ---- */
void cmp_report_text(FILE *f, const cmp_opts *o, const cmp_runner *ref, const cmp_runner *tgt, const cmp_result *res);
cJSON *cmp_report_json(const cmp_opts *o, const cmp_runner *ref, const cmp_runner *tgt, const cmp_result *res);

/* ---- plot ---- */
/* Draws the per-step maximum absolute error of every float output (log scale), its trend line
 * and the atol line, into a PNG. UNSUPPORTED when kiln was built without cairo. */
kiln_status cmp_plot(const char *path, const cmp_opts *o, const cmp_result *res);
bool cmp_plot_available(void);

/* ---- bisect ---- */
/* Finds a small set of the candidate layers (reduced-precision layers of the target that are nodes
 * of `model`) to keep in fp32 so that the comparison passes. ref replays recorded outputs; every
 * trial build reads its calibration from `cache`. Adds a "bisect" object to json when not NULL,
 * else prints its report on stdout. *passed: a passing set was found. */
kiln_status cmp_bisect(const cmp_opts *o, const cmp_signature *sig, cmp_runner *ref, const kiln_model_t *model, const cmp_tensors *sample,
                       const char *cache, char **cands, int n, cJSON *json, bool *passed);

#endif /* KILN_TOOLS_COMPARE_H */
