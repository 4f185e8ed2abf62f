/* bench_report.c — `kiln bench`'s reports: latency statistics, the trtexec-like text summary,
 * the per-layer table (--profile) and the JSON report with every iteration (--json). It only
 * reads a bench_result; tools/cmd_bench.c fills it. Tested by tests/models/test_bench.py, which
 * recomputes the percentiles from the JSON iterations with numpy. */
#include "bench.h"

#include "core/core.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's default ("linear"): position p/100 * (n-1) between the sorted values. */
static double percentile(const double *sorted, int64_t n, double p) {
    double pos = p / 100.0 * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - (double)lo);
}

bench_stats bench_stats_of(const double *v, int64_t n) {
    bench_stats s = {0};
    if (n <= 0) return s;
    double *a = malloc(sizeof(double) * (size_t)n);
    if (!a) return s;
    memcpy(a, v, sizeof(double) * (size_t)n);
    qsort(a, (size_t)n, sizeof(double), cmp_double);
    double sum = 0;
    for (int64_t k = 0; k < n; k++) sum += a[k];
    s = (bench_stats){.min = a[0], .mean = sum / (double)n, .median = percentile(a, n, 50), .p90 = percentile(a, n, 90),
                      .p95 = percentile(a, n, 95), .p99 = percentile(a, n, 99), .max = a[n - 1]};
    free(a);
    return s;
}

/* Which number of a run: the latency or one part of the context's split. */
typedef enum { F_LATENCY, F_ENQUEUE, F_H2D, F_COMPUTE, F_D2H } field;

static double field_of(const bench_iter *it, field f) {
    switch (f) {
    case F_LATENCY: return it->latency_ms;
    case F_ENQUEUE: return it->t.enqueue_ms;
    case F_H2D: return it->t.h2d_ms;
    case F_COMPUTE: return it->t.compute_ms;
    case F_D2H: return it->t.d2h_ms;
    }
    return 0;
}

static bench_stats stats_of_field(const bench_result *r, field f) {
    double *v = malloc(sizeof(double) * (size_t)(r->n_iters ? r->n_iters : 1));
    if (!v) return (bench_stats){0};
    for (int64_t k = 0; k < r->n_iters; k++) v[k] = field_of(&r->iters[k], f);
    bench_stats s = bench_stats_of(v, r->n_iters);
    free(v);
    return s;
}

static const char *mib(double bytes, char *buf, size_t n) {
    if (bytes < 0) snprintf(buf, n, "n/a");
    else if (bytes < 1024.0 * 1024.0) snprintf(buf, n, "%.1f KiB", bytes / 1024.0);
    else snprintf(buf, n, "%.2f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

static void print_stats_line(FILE *f, const char *what, bench_stats s) {
    fprintf(f, "%-14s min %.4g  mean %.4g  median %.4g  p90 %.4g  p95 %.4g  p99 %.4g  max %.4g\n", what, s.min, s.mean,
            s.median, s.p90, s.p95, s.p99, s.max);
}

static int cmp_layer_cost(const void *a, const void *b) {
    const bench_layer *x = *(const bench_layer *const *)a, *y = *(const bench_layer *const *)b;
    return (x->total_ms < y->total_ms) - (x->total_ms > y->total_ms);
}

static double runs_total_ms(const bench_result *r) {
    double t = 0;
    for (int64_t k = 0; k < r->n_iters; k++) t += r->iters[k].latency_ms;
    return t;
}

static double layers_total_ms(const bench_result *r) {
    double t = 0;
    for (int i = 0; i < r->n_layers; i++) t += r->layers[i].total_ms;
    return t;
}

static void print_profile(FILE *f, const bench_result *r) {
    const bench_layer **order = malloc(sizeof *order * (size_t)(r->n_layers ? r->n_layers : 1));
    if (!order) return;
    for (int i = 0; i < r->n_layers; i++) order[i] = &r->layers[i];
    qsort(order, (size_t)r->n_layers, sizeof *order, cmp_layer_cost);
    double layers = layers_total_ms(r), runs = runs_total_ms(r);
    fprintf(f, "\nper-layer time over %lld timed runs, most costly first (layers sum to %.3f ms, %.1f%% of the runs' %.3f ms):\n",
            (long long)r->n_iters, layers, runs > 0 ? 100.0 * layers / runs : 0.0, runs);
    fprintf(f, "  %4s  %-40s %-18s %7s %12s %10s %6s\n", "rank", "layer", "op", "calls", "total ms", "avg ms", "%");
    for (int i = 0; i < r->n_layers; i++) {
        const bench_layer *l = order[i];
        fprintf(f, "  %4d  %-40.40s %-18.18s %7lld %12.3f %10.4f %6.2f\n", i + 1, l->name, l->op, (long long)l->calls,
                l->total_ms, l->calls ? l->total_ms / (double)l->calls : 0.0, layers > 0 ? 100.0 * l->total_ms / layers : 0.0);
    }
    free(order);
}

void bench_print_summary(FILE *f, const bench_result *r) {
    char a[32], b[32], c[32], d[32];
    fprintf(f, "kiln bench: %s (backend %s, device %s)%s\n", r->model, r->backend, r->device,
            r->built_from_onnx ? ", engine built in memory" : "");
    for (int i = 0; i < r->n_inputs; i++) {
        char shape[160] = "[";
        for (int k = 0; k < r->inputs[i].rank; k++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", k ? "," : "", (long long)r->inputs[i].dims[k]);
        fprintf(f, "input %s: %s%s] (%s)\n", r->inputs[i].name, kiln_dtype_name(r->inputs[i].dtype), shape, r->inputs[i].source);
    }
    fprintf(f, "engine: file %s, weights %s, arena %s per context (profile %d); peak RSS %s\n",
            mib((double)r->file_bytes, a, sizeof a), mib((double)r->weights_bytes, b, sizeof b),
            mib((double)r->arena_bytes, c, sizeof c), r->profile_index, mib((double)r->peak_rss_bytes, d, sizeof d));
    if (r->built_from_onnx) fprintf(f, "build: %.1f ms (not part of any timing below)\n", r->build_s * 1e3);
    fprintf(f, "streams: %d (one thread and one context each); warmup: %lld runs; timed: %lld runs in %.3f s\n", r->streams,
            (long long)r->warmup_runs, (long long)r->n_iters, r->wall_s);
    double qps = r->wall_s > 0 ? (double)r->n_iters / r->wall_s : 0;
    fprintf(f, "throughput: %.4g inferences/s", qps);
    if (r->batch > 1) fprintf(f, " (%.4g samples/s at batch %lld)", qps * (double)r->batch, (long long)r->batch);
    fprintf(f, "\n");
    print_stats_line(f, "latency ms:", stats_of_field(r, F_LATENCY));
    print_stats_line(f, "enqueue ms:", stats_of_field(r, F_ENQUEUE));
    bool cpu = r->n_iters > 0 && r->iters[0].t.device == KILN_DEVICE_CPU;
    if (cpu) {
        fprintf(f, "(a CPU run is synchronous and copies nothing: enqueue and compute are the whole run, H2D and D2H are 0%s)\n",
                r->no_data_transfers ? "; --no-data-transfers changes nothing here" : "");
    } else {
        print_stats_line(f, "H2D ms:", stats_of_field(r, F_H2D));
        print_stats_line(f, "compute ms:", stats_of_field(r, F_COMPUTE));
        print_stats_line(f, "D2H ms:", stats_of_field(r, F_D2H));
    }
    if (r->layers) print_profile(f, r);
}

static cJSON *stats_json(bench_stats s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "min", s.min);
    cJSON_AddNumberToObject(o, "mean", s.mean);
    cJSON_AddNumberToObject(o, "median", s.median);
    cJSON_AddNumberToObject(o, "p90", s.p90);
    cJSON_AddNumberToObject(o, "p95", s.p95);
    cJSON_AddNumberToObject(o, "p99", s.p99);
    cJSON_AddNumberToObject(o, "max", s.max);
    return o;
}

static cJSON *engine_json(const bench_result *r) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "backend", r->backend);
    cJSON_AddStringToObject(e, "device", r->device);
    cJSON_AddBoolToObject(e, "built_from_onnx", r->built_from_onnx);
    cJSON_AddNumberToObject(e, "build_s", r->build_s);
    if (r->file_bytes >= 0) cJSON_AddNumberToObject(e, "file_bytes", (double)r->file_bytes);
    else cJSON_AddNullToObject(e, "file_bytes");
    cJSON_AddNumberToObject(e, "weights_bytes", (double)r->weights_bytes);
    cJSON_AddNumberToObject(e, "arena_bytes", (double)r->arena_bytes);
    cJSON_AddNumberToObject(e, "profile", r->profile_index);
    cJSON *ins = cJSON_AddArrayToObject(e, "inputs");
    for (int i = 0; i < r->n_inputs; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r->inputs[i].name);
        cJSON_AddStringToObject(o, "dtype", kiln_dtype_name(r->inputs[i].dtype));
        cJSON *d = cJSON_AddArrayToObject(o, "shape");
        for (int k = 0; k < r->inputs[i].rank; k++) cJSON_AddItemToArray(d, cJSON_CreateNumber((double)r->inputs[i].dims[k]));
        cJSON_AddStringToObject(o, "source", r->inputs[i].source);
        cJSON_AddItemToArray(ins, o);
    }
    return e;
}

static cJSON *config_json(const bench_result *r) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "warmup_ms", r->warmup_ms);
    cJSON_AddNumberToObject(c, "iterations", (double)r->iterations_min);
    cJSON_AddNumberToObject(c, "duration_s", r->duration_s);
    cJSON_AddNumberToObject(c, "streams", r->streams);
    cJSON_AddNumberToObject(c, "threads_per_stream", 1); /* the executor runs a context's layers on its caller's thread */
    cJSON_AddNumberToObject(c, "batch", (double)r->batch);
    cJSON_AddBoolToObject(c, "no_data_transfers", r->no_data_transfers);
    cJSON_AddBoolToObject(c, "cuda_graph", r->cuda_graph);
    return c;
}

static cJSON *summary_json(const bench_result *r) {
    cJSON *s = cJSON_CreateObject();
    double qps = r->wall_s > 0 ? (double)r->n_iters / r->wall_s : 0;
    cJSON_AddNumberToObject(s, "warmup_runs", (double)r->warmup_runs);
    cJSON_AddNumberToObject(s, "iterations", (double)r->n_iters);
    cJSON_AddNumberToObject(s, "wall_s", r->wall_s);
    cJSON_AddNumberToObject(s, "throughput_qps", qps);
    cJSON_AddNumberToObject(s, "throughput_samples_per_s", qps * (double)r->batch);
    cJSON_AddItemToObject(s, "latency_ms", stats_json(stats_of_field(r, F_LATENCY)));
    cJSON_AddItemToObject(s, "enqueue_ms", stats_json(stats_of_field(r, F_ENQUEUE)));
    cJSON_AddItemToObject(s, "h2d_ms", stats_json(stats_of_field(r, F_H2D)));
    cJSON_AddItemToObject(s, "compute_ms", stats_json(stats_of_field(r, F_COMPUTE)));
    cJSON_AddItemToObject(s, "d2h_ms", stats_json(stats_of_field(r, F_D2H)));
    cJSON *m = cJSON_AddObjectToObject(s, "memory");
    cJSON_AddNumberToObject(m, "arena_bytes_per_context", (double)r->arena_bytes);
    cJSON_AddNumberToObject(m, "arena_bytes_total", (double)r->arena_bytes * r->streams);
    cJSON_AddNumberToObject(m, "peak_rss_bytes", (double)r->peak_rss_bytes);
    return s;
}

static cJSON *iterations_json(const bench_result *r) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t k = 0; k < r->n_iters; k++) {
        const bench_iter *it = &r->iters[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "iteration", (double)k);
        cJSON_AddNumberToObject(o, "stream", it->stream);
        cJSON_AddNumberToObject(o, "start_ms", it->start_ms);
        cJSON_AddNumberToObject(o, "latency_ms", it->latency_ms);
        cJSON_AddNumberToObject(o, "enqueue_ms", it->t.enqueue_ms);
        cJSON_AddNumberToObject(o, "h2d_ms", it->t.h2d_ms);
        cJSON_AddNumberToObject(o, "compute_ms", it->t.compute_ms);
        cJSON_AddNumberToObject(o, "d2h_ms", it->t.d2h_ms);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *profile_json(const bench_result *r) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "runs", (double)r->n_iters);
    cJSON_AddNumberToObject(p, "layers_total_ms", layers_total_ms(r));
    cJSON_AddNumberToObject(p, "runs_total_ms", runs_total_ms(r));
    cJSON *a = cJSON_AddArrayToObject(p, "layers");
    for (int i = 0; i < r->n_layers; i++) { /* in execution order; the text table sorts by cost */
        const bench_layer *l = &r->layers[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "node", i);
        cJSON_AddStringToObject(o, "name", l->name);
        cJSON_AddStringToObject(o, "op", l->op);
        cJSON_AddNumberToObject(o, "calls", (double)l->calls);
        cJSON_AddNumberToObject(o, "total_ms", l->total_ms);
        cJSON_AddNumberToObject(o, "avg_ms", l->calls ? l->total_ms / (double)l->calls : 0.0);
        cJSON_AddItemToArray(a, o);
    }
    return p;
}

kiln_status bench_write_json(const char *path, const bench_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kiln_version", KILN_VERSION_STRING);
    cJSON_AddStringToObject(j, "model", r->model);
    cJSON_AddItemToObject(j, "engine", engine_json(r));
    cJSON_AddItemToObject(j, "config", config_json(r));
    cJSON_AddItemToObject(j, "summary", summary_json(r));
    cJSON_AddItemToObject(j, "iterations", iterations_json(r));
    if (r->layers) cJSON_AddItemToObject(j, "profile", profile_json(r));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory writing the JSON report");
    bool to_stdout = strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (!f) {
        free(text);
        return kiln_error(KILN_STATUS_IO_ERROR, "--json %s: cannot open for writing: %s", path, strerror(errno));
    }
    bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = (to_stdout ? fflush(f) == 0 : fclose(f) == 0) && ok;
    free(text);
    return ok ? KILN_STATUS_OK : kiln_error(KILN_STATUS_IO_ERROR, "--json %s: write failed: %s", path, strerror(errno));
}
