/* bench.h — what `kiln bench` shares between tools/cmd_bench.c (options, engine and input
 * setup, the timed loop on N threads) and tools/bench_report.c (statistics, the text summary,
 * the per-layer table and the JSON report). Nothing here touches an engine. */
#ifndef KILN_TOOLS_BENCH_H
#define KILN_TOOLS_BENCH_H

#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* One timed run. */
typedef struct bench_iter {
    int stream;
    double start_ms;   /* since the timed phase began (all streams share the origin) */
    double latency_ms; /* wall time from calling kiln_context_run to its return */
    kiln_run_timing t; /* the context's own split of that run (kiln_context_last_timing) */
} bench_iter;

/* One layer of the engine, with --profile: summed over every timed run of every stream. */
typedef struct bench_layer {
    char *name;
    char *op; /* with its fused activation, "Conv+Relu" */
    double total_ms;
    int64_t calls;
} bench_layer;

/* One bound input, for the report. */
typedef struct bench_input {
    char *name;
    kiln_dtype dtype;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    const char *source; /* "random" or the --inputs file */
} bench_input;

/* min / mean / percentiles / max of a sample. Percentiles interpolate linearly between the
 * two nearest ranks (numpy's default), so np.percentile on the JSON gives the same numbers. */
typedef struct bench_stats {
    double min, mean, median, p90, p95, p99, max;
} bench_stats;
bench_stats bench_stats_of(const double *v, int64_t n);

typedef struct bench_result {
    /* what was benchmarked */
    const char *model;
    char backend[32], device[32];
    bool built_from_onnx;
    double build_s;        /* building the engine from ONNX, 0 for a .kiln */
    int64_t file_bytes;    /* the .kiln file, -1 when the engine was built in memory and not saved */
    int64_t weights_bytes; /* from the engine's description */
    int64_t arena_bytes;   /* the planned activation arena of one context (the profile run) */
    int profile_index;
    bench_input *inputs;
    int n_inputs;
    int64_t batch; /* --batch, else the first input's leading dim: samples = runs x batch */
    /* how it was run */
    double warmup_ms, duration_s;
    int64_t iterations_min;
    int streams;
    bool no_data_transfers, cuda_graph;
    /* what came out */
    int64_t warmup_runs;
    bench_iter *iters; /* sorted by start */
    int64_t n_iters;
    double wall_s;         /* from the start of the timed phase to the end of its last run */
    int64_t peak_rss_bytes;
    bench_layer *layers;   /* NULL without --profile */
    int n_layers;
} bench_result;

/* The human summary (and the layer table with --profile), trtexec-like. */
void bench_print_summary(FILE *f, const bench_result *r);
/* The whole report with every iteration as JSON; path "-" is stdout. */
kiln_status bench_write_json(const char *path, const bench_result *r);

#endif /* KILN_TOOLS_BENCH_H */
