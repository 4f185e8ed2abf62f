/* cmd_bench.c — `kiln bench`: trtexec's habits for kiln engines. Loads a .kiln engine (or builds
 * one in memory from an ONNX model), binds inputs (seeded random data or an .npz), warms up,
 * then times runs on --streams threads, each with its own context on the one shared engine,
 * until both --iterations runs and --duration seconds are done. The report (tools/bench_report.c)
 * gives throughput, latency percentiles, the context's enqueue / H2D / compute / D2H split
 * (kiln_context_last_timing), memory, and with --profile a per-layer table (the context's layer
 * timer). docs/bench.md is the user guide; tests/models/test_bench.py checks it. */
#include "bench.h"
#include "cli.h"
#include "cli_inputs.h"

#include "core/core.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_STREAMS 64

static void help(void) {
    printf("usage: kiln bench MODEL.onnx|ENGINE.kiln [options]\n\n"
           "Times an engine the way trtexec does: a warmup, then timed runs until both --iterations runs and\n"
           "--duration seconds are done, on --streams threads that each own a context on the same engine.\n"
           "An ONNX model is built into an engine in memory first (build time is reported apart).\n"
           "Prints throughput, latency min/mean/median/p90/p95/p99/max, enqueue time, on the GPU the\n"
           "H2D / compute / D2H split, engine size and memory; progress is shown on a terminal only.\n\n"
           "options:\n"
           "  --warmup MS               run untimed for MS milliseconds first (default 200)\n"
           "  --iterations N            at least N timed runs in all (default 10)\n"
           "  --duration S              and for at least S seconds (default 3; 0: stop after N runs)\n"
           "  --streams N               N threads, each with its own context on the engine (default 1)\n"
           "  --batch N                 leading dimension of every input (must fit the engine's profile)\n"
           "  --shapes NAME:AxB,...     input shapes (within the profile; for an ONNX model, the profile built)\n"
           "  --opt-profile N           the engine's optimization profile to run (default 0)\n"
           "  --inputs FILE.npz         input data keyed by input name (default: seeded random data)\n"
           "  --seed N                  seed for the random inputs (default 1)\n"
           "  --no-data-transfers       GPU engines: keep inputs and outputs on the device (CPU: no effect)\n"
           "  --cuda-graph              GPU engines: capture a run as a CUDA graph and replay it\n"
           "  --profile                 time every layer and print a table sorted by cost\n"
           "  --json FILE               write the report with every iteration's times as JSON ('-': stdout,\n"
           "                            the text summary then goes to stderr)\n"
           "  --save-engine FILE.kiln   with an ONNX model: save the engine that was benchmarked\n"
           "  -h, --help                this text\n\n"
           "Latency is the wall time of one kiln_context_run (inputs bound, outputs written to bound host\n"
           "buffers); throughput is timed runs / wall time of the timed phase. See docs/bench.md.\n"
           "Exit status: 0 on success, 1 when loading, building or running fails, 2 on bad usage.\n");
}

typedef struct bench_opts {
    const char *model, *shapes, *inputs_npz, *json, *save_engine;
    double warmup_ms, duration_s;
    int64_t iterations, batch, seed;
    int streams, opt_profile;
    bool no_data_transfers, cuda_graph, profile;
} bench_opts;

/* ---- options ---- */

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_num(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    enum { O_WARMUP = 256, O_ITERS, O_DURATION, O_STREAMS, O_BATCH, O_SHAPES, O_OPTPROF, O_INPUTS, O_SEED,
           O_NOXFER, O_GRAPH, O_PROFILE, O_JSON, O_SAVE };
    static const struct option opts[] = {
        {"warmup", required_argument, 0, O_WARMUP},   {"iterations", required_argument, 0, O_ITERS},
        {"duration", required_argument, 0, O_DURATION}, {"streams", required_argument, 0, O_STREAMS},
        {"batch", required_argument, 0, O_BATCH},     {"shapes", required_argument, 0, O_SHAPES},
        {"opt-profile", required_argument, 0, O_OPTPROF}, {"inputs", required_argument, 0, O_INPUTS},
        {"seed", required_argument, 0, O_SEED},       {"no-data-transfers", no_argument, 0, O_NOXFER},
        {"cuda-graph", no_argument, 0, O_GRAPH},      {"profile", no_argument, 0, O_PROFILE},
        {"json", required_argument, 0, O_JSON},       {"save-engine", required_argument, 0, O_SAVE},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    int c;
    int64_t v;
    optind = 1;
    opterr = 0; /* our own message names the option */
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_WARMUP:
            if (!parse_num(optarg, 0, 3.6e6, &o->warmup_ms)) return cli_usage_error("bench", "--warmup '%s': expected milliseconds >= 0", optarg);
            break;
        case O_ITERS:
            if (!parse_int(optarg, 1, INT64_C(1) << 40, &o->iterations)) return cli_usage_error("bench", "--iterations '%s': expected an integer >= 1", optarg);
            break;
        case O_DURATION:
            if (!parse_num(optarg, 0, 86400, &o->duration_s)) return cli_usage_error("bench", "--duration '%s': expected seconds >= 0", optarg);
            break;
        case O_STREAMS:
            if (!parse_int(optarg, 1, MAX_STREAMS, &v)) return cli_usage_error("bench", "--streams '%s': expected an integer from 1 to %d", optarg, MAX_STREAMS);
            o->streams = (int)v;
            break;
        case O_BATCH:
            if (!parse_int(optarg, 1, INT64_C(1) << 31, &o->batch)) return cli_usage_error("bench", "--batch '%s': expected an integer >= 1", optarg);
            break;
        case O_SHAPES: o->shapes = optarg; break;
        case O_OPTPROF:
            if (!parse_int(optarg, 0, 1 << 20, &v)) return cli_usage_error("bench", "--opt-profile '%s': expected an integer >= 0", optarg);
            o->opt_profile = (int)v;
            break;
        case O_INPUTS: o->inputs_npz = optarg; break;
        case O_SEED:
            if (!parse_int(optarg, 0, INT64_MAX, &o->seed)) return cli_usage_error("bench", "--seed '%s': expected an integer >= 0", optarg);
            break;
        case O_NOXFER: o->no_data_transfers = true; break;
        case O_GRAPH: o->cuda_graph = true; break;
        case O_PROFILE: o->profile = true; break;
        case O_JSON: o->json = optarg; break;
        case O_SAVE: o->save_engine = optarg; break;
        case 'h': help(); return -1;
        case ':': return cli_usage_error("bench", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("bench", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("bench", "expected exactly one MODEL.onnx or ENGINE.kiln argument");
    o->model = argv[optind];
    cli_shape tmp[64];
    int n;
    if (o->shapes && cli_parse_shapes(o->shapes, tmp, 64, &n))
        return cli_usage_error("bench", "--shapes '%s': expected NAME:AxBxC,... (at most 64 inputs)", o->shapes);
    return 0;
}

/* ---- the engine ---- */

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

typedef struct bench_setup {
    kiln_engine_t *e;
    kiln_tensor **data; /* per engine input; NULL for an input that keeps its default value */
    kiln_named_tensor *npz;
    int n_npz;
} bench_setup;

static const kiln_tensor *npz_array(const bench_setup *st, const char *name) {
    for (int k = 0; k < st->n_npz; k++)
        if (strcmp(st->npz[k].name, name) == 0) return st->npz[k].t;
    return NULL;
}

/* The one profile an ONNX model is built with when --shapes, --inputs or --batch fix its
 * dynamic inputs: named inputs get their --shapes (else their array's shape), inputs with a
 * dynamic leading dim get --batch there. */
static kiln_status add_fixed_profile(kiln_builder_t *b, const kiln_model_t *m, const bench_setup *st, const bench_opts *o) {
    cli_shape given[64];
    int n_given = 0;
    if (o->shapes) cli_parse_shapes(o->shapes, given, 64, &n_given);
    for (int k = 0; k < n_given; k++) {
        bool found = false;
        for (int i = 0; i < kiln_model_num_inputs(m); i++) found |= strcmp(kiln_model_input_name(m, i), given[k].name) == 0;
        if (!found) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--shapes: %s has no input named '%s'", o->model, given[k].name);
    }
    int p, n_set = 0;
    KILN_TRY(kiln_builder_add_profile(b, &p));
    for (int i = 0; i < kiln_model_num_inputs(m); i++) {
        const char *name = kiln_model_input_name(m, i);
        kiln_dtype dt;
        int rank;
        int64_t dims[KILN_MAX_RANK];
        KILN_TRY(kiln_model_input_info(m, i, &dt, &rank, dims));
        const cli_shape *sh = cli_find_shape(given, n_given, name);
        const kiln_tensor *arr = npz_array(st, name);
        if (sh) {
            rank = sh->rank;
            memcpy(dims, sh->dims, sizeof(int64_t) * (size_t)rank);
        } else if (arr) {
            rank = arr->rank;
            memcpy(dims, arr->dims, sizeof(int64_t) * (size_t)rank);
        } else if (o->batch && rank >= 1 && dims[0] < 0) {
            dims[0] = o->batch;
        } else {
            continue; /* static inputs (and weights given as inputs) need no entry */
        }
        for (int k = 0; k < rank; k++)
            if (dims[k] < 0)
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' of %s has a dynamic dim %d: give its shape with --shapes %s:...",
                                  name, o->model, k, name);
        KILN_TRY(kiln_builder_set_profile_shape(b, p, name, rank, dims, dims, dims));
        n_set++;
    }
    if (o->batch && !o->shapes && n_set == 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--batch %lld: no input of %s has a dynamic leading dimension",
                          (long long)o->batch, o->model);
    return KILN_STATUS_OK;
}

static kiln_status build_engine(const bench_opts *o, bench_setup *st, double *seconds) {
    double t0 = now_ms();
    kiln_model_t *m = NULL;
    kiln_builder_t *b = NULL;
    KILN_TRY(kiln_model_load(o->model, &m));
    kiln_status s = kiln_builder_create(&b);
    if (!s && (o->shapes || o->batch || st->n_npz)) s = add_fixed_profile(b, m, st, o);
    if (!s) s = kiln_builder_build(b, m, &st->e);
    kiln_builder_destroy(b);
    kiln_model_destroy(m);
    if (!s && o->save_engine) s = kiln_engine_save(st->e, o->save_engine);
    *seconds = (now_ms() - t0) / 1e3;
    return s;
}

/* What the engine's description tells the report: backend, device, memory, and the layers
 * (name and op with its fused activation, in execution order) for the --profile table. */
static kiln_status describe(const kiln_engine_t *e, bench_result *r, bool want_layers) {
    char *text;
    KILN_TRY(kiln_engine_describe(e, &text));
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return kiln_error(KILN_STATUS_INTERNAL, "the engine's description is not valid JSON");
    snprintf(r->backend, sizeof r->backend, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(j, "backend")));
    snprintf(r->device, sizeof r->device, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(j, "device")));
    r->weights_bytes = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "weights"), "bytes"));
    const cJSON *prof = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "profiles"), r->profile_index);
    r->arena_bytes = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(prof, "memory"), "arena_bytes"));
    kiln_status s = KILN_STATUS_OK;
    const cJSON *layers = cJSON_GetObjectItem(j, "layers");
    if (want_layers) {
        r->n_layers = cJSON_GetArraySize(layers);
        r->layers = kiln_calloc((size_t)(r->n_layers ? r->n_layers : 1), sizeof *r->layers);
        if (!r->layers) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        for (int i = 0; !s && i < r->n_layers; i++) {
            const cJSON *l = cJSON_GetArrayItem(layers, i);
            const char *op = cJSON_GetStringValue(cJSON_GetObjectItem(l, "op"));
            const char *act = cJSON_GetStringValue(cJSON_GetObjectItem(l, "fused_activation"));
            char buf[96];
            snprintf(buf, sizeof buf, "%s%s%s", op ? op : "?", act ? "+" : "", act ? act : "");
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(l, "name"));
            r->layers[i].name = kiln_strdup(name && *name ? name : "(unnamed)");
            r->layers[i].op = kiln_strdup(buf);
            if (!r->layers[i].name || !r->layers[i].op) s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        }
    }
    cJSON_Delete(j);
    return s;
}

/* ---- inputs ---- */

/* The shape input i runs with: --shapes, else the npz array's, else the profile's opt with
 * --batch as the leading dim. rank -1: an input with a default value nobody overrides. */
static kiln_status input_shape(const bench_setup *st, const bench_opts *o, int i, const kiln_tensor *given, int *rank,
                               int64_t dims[KILN_MAX_RANK]) {
    cli_shape sh[64];
    int n_sh = 0;
    if (o->shapes) cli_parse_shapes(o->shapes, sh, 64, &n_sh);
    const char *name = kiln_engine_input_name(st->e, i);
    const cli_shape *s = cli_find_shape(sh, n_sh, name);
    int64_t mn[KILN_MAX_RANK], mx[KILN_MAX_RANK];
    KILN_TRY(kiln_engine_profile_shape(st->e, o->opt_profile, i, rank, mn, dims, mx));
    if (s) {
        if (given && (given->rank != s->rank || memcmp(given->dims, s->dims, sizeof(int64_t) * (size_t)s->rank) != 0))
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s': --shapes and the array in %s disagree", name, o->inputs_npz);
        *rank = s->rank;
        memcpy(dims, s->dims, sizeof(int64_t) * (size_t)s->rank);
    } else if (given) {
        *rank = given->rank;
        memcpy(dims, given->dims, sizeof(int64_t) * (size_t)given->rank);
    } else if (*rank >= 0 && o->batch) {
        if (*rank == 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--batch: input '%s' is a scalar", name);
        dims[0] = o->batch;
    }
    return KILN_STATUS_OK;
}

static kiln_status make_inputs(bench_setup *st, const bench_opts *o, bench_result *r) {
    int n_in = kiln_engine_num_inputs(st->e);
    cli_shape sh[64];
    int n_sh = 0;
    if (o->shapes) cli_parse_shapes(o->shapes, sh, 64, &n_sh);
    for (int k = 0; k < n_sh; k++) {
        bool found = false;
        for (int i = 0; i < n_in; i++) found |= strcmp(kiln_engine_input_name(st->e, i), sh[k].name) == 0;
        if (!found) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--shapes: the engine has no input named '%s'", sh[k].name);
    }
    for (int k = 0; k < st->n_npz; k++) {
        bool found = false;
        for (int i = 0; i < n_in; i++) found |= strcmp(kiln_engine_input_name(st->e, i), st->npz[k].name) == 0;
        if (!found) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: array '%s' is not an input of the engine", o->inputs_npz, st->npz[k].name);
    }
    st->data = kiln_calloc((size_t)(n_in ? n_in : 1), sizeof *st->data);
    r->inputs = kiln_calloc((size_t)(n_in ? n_in : 1), sizeof *r->inputs);
    if (!st->data || !r->inputs) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    cli_rng rng;
    cli_rng_seed(&rng, (uint64_t)o->seed);
    for (int i = 0; i < n_in; i++) {
        const char *name = kiln_engine_input_name(st->e, i);
        const kiln_tensor *given = npz_array(st, name);
        kiln_dtype dt;
        int rank, drank;
        int64_t dims[KILN_MAX_RANK], ddims[KILN_MAX_RANK];
        KILN_TRY(kiln_engine_input_info(st->e, i, &dt, &drank, ddims));
        KILN_TRY(input_shape(st, o, i, given, &rank, dims));
        if (rank < 0) continue; /* keeps its default value */
        if (given) {
            if (given->dtype != dt)
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: input '%s' is %s, the engine expects %s", o->inputs_npz, name,
                                  kiln_dtype_name(given->dtype), kiln_dtype_name(dt));
            KILN_TRY(kiln_tensor_clone(given, &st->data[i]));
        } else {
            double lo, hi;
            cli_range_for(NULL, 0, kiln_engine_input_name(st->e, i), dt, &lo, &hi);
            KILN_TRY(cli_random_tensor(dt, rank, dims, lo, hi, &rng, &st->data[i]));
        }
        bench_input *bi = &r->inputs[r->n_inputs++];
        bi->name = kiln_strdup(name);
        bi->dtype = dt;
        bi->rank = rank;
        memcpy(bi->dims, dims, sizeof(int64_t) * (size_t)rank);
        bi->source = given ? o->inputs_npz : "random";
        if (r->n_inputs == 1) r->batch = o->batch ? o->batch : (rank >= 1 ? dims[0] : 1);
    }
    if (!r->batch) r->batch = 1;
    return KILN_STATUS_OK;
}

/* ---- streams ---- */

typedef struct bench_shared {
    double warmup_ms, duration_ms;
    int64_t iterations;
    /* The start gate: the timed phase begins when every stream has warmed up; the last one to
     * arrive sets the origin. abort_gate opens it early when not every stream could start. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived, expected;
    bool aborted;
    double start_ms;          /* the timed phase's origin, shared by every stream */
    atomic_int_fast64_t next; /* the next timed run's number, claimed by whichever stream is free */
    atomic_int_fast64_t done; /* timed runs finished, for the progress line */
    atomic_int timed;         /* the timed phase has begun */
    atomic_int finished;      /* streams that stopped */
    atomic_int failed;
} bench_shared;

static void gate_wait(bench_shared *sh) {
    pthread_mutex_lock(&sh->mu);
    if (++sh->arrived == sh->expected) {
        sh->start_ms = now_ms();
        atomic_store(&sh->timed, 1);
        pthread_cond_broadcast(&sh->cv);
    }
    while (sh->arrived < sh->expected && !sh->aborted) pthread_cond_wait(&sh->cv, &sh->mu);
    pthread_mutex_unlock(&sh->mu);
}

static void gate_abort(bench_shared *sh) {
    pthread_mutex_lock(&sh->mu);
    sh->aborted = true;
    atomic_store(&sh->failed, 1);
    pthread_cond_broadcast(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

typedef struct bench_stream {
    int id;
    kiln_context_t *c;
    bench_shared *sh;
    void **out_bufs; /* one host buffer per engine output */
    int n_out;
    bench_iter *iters;
    int64_t n_iters, cap;
    int64_t warmup_runs;
    double end_ms;   /* end of its last timed run, since the origin */
    double *layer_ms; /* per layer, with --profile */
    int64_t *layer_calls;
    int n_layers;
    kiln_status status;
    char error[512];
} bench_stream;

static void fail_stream(bench_stream *s, kiln_status status) {
    s->status = status;
    snprintf(s->error, sizeof s->error, "%s", kiln_last_error());
    atomic_store(&s->sh->failed, 1);
}

static void layer_timed(void *user, int node, const char *name, const char *op_type, double ms) {
    bench_stream *s = user;
    if (node < 0 || node >= s->n_layers) return;
    s->layer_ms[node] += ms;
    s->layer_calls[node]++;
}

/* Records one run; the array grows between runs, never inside the timed call. */
static bool record(bench_stream *s, double start, double end) {
    if (s->n_iters == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 256;
        bench_iter *it = realloc(s->iters, sizeof *it * (size_t)cap);
        if (!it) return false;
        s->iters = it;
        s->cap = cap;
    }
    bench_iter *it = &s->iters[s->n_iters++];
    it->stream = s->id;
    it->start_ms = start - s->sh->start_ms;
    it->latency_ms = end - start;
    kiln_context_last_timing(s->c, &it->t);
    return true;
}

static void timed_runs(bench_stream *s) {
    bench_shared *sh = s->sh;
    for (;;) {
        int64_t k = atomic_fetch_add(&sh->next, 1);
        double t0 = now_ms();
        if ((k >= sh->iterations && t0 - sh->start_ms >= sh->duration_ms) || atomic_load(&sh->failed)) break;
        kiln_status st = kiln_context_run(s->c);
        double t1 = now_ms();
        if (st) { fail_stream(s, st); break; }
        if (!record(s, t0, t1)) { fail_stream(s, kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory recording run %lld", (long long)k)); break; }
        s->end_ms = t1 - sh->start_ms;
        atomic_fetch_add(&sh->done, 1);
    }
}

static void *stream_main(void *arg) {
    bench_stream *s = arg;
    bench_shared *sh = s->sh;
    double t0 = now_ms();
    while (now_ms() - t0 < sh->warmup_ms && !atomic_load(&sh->failed)) {
        kiln_status st = kiln_context_run(s->c);
        if (st) { fail_stream(s, st); break; }
        s->warmup_runs++;
    }
    if (s->layer_ms) kiln_context_set_layer_timer(s->c, layer_timed, s); /* only timed runs are profiled */
    gate_wait(sh); /* every stream starts timing together */
    if (!atomic_load(&sh->failed)) timed_runs(s);
    atomic_fetch_add(&sh->finished, 1);
    return NULL;
}

/* A context for one stream: profile, shapes and inputs bound, one run to learn the outputs'
 * sizes, then outputs bound to host buffers of their own (what a caller reading results does). */
static kiln_status make_stream(const bench_setup *st, const bench_opts *o, int n_layers, bench_stream *s) {
    KILN_TRY(kiln_context_create(st->e, &s->c));
    KILN_TRY(kiln_context_set_profile(s->c, o->opt_profile));
    int n_in = kiln_engine_num_inputs(st->e);
    for (int i = 0; i < n_in; i++) {
        kiln_tensor *t = st->data[i];
        if (!t) continue;
        const char *name = kiln_engine_input_name(st->e, i);
        KILN_TRY(kiln_context_set_input_shape(s->c, name, t->rank, t->dims));
        /* a 0-sized input is still bound */
        KILN_TRY(kiln_context_set_tensor_address(s->c, name, t->data ? t->data : (void *)"", kiln_tensor_bytes(t)));
    }
    KILN_TRY(kiln_context_run(s->c));
    s->warmup_runs = 1;
    s->n_out = kiln_engine_num_outputs(st->e);
    s->out_bufs = kiln_calloc((size_t)(s->n_out ? s->n_out : 1), sizeof *s->out_bufs);
    if (!s->out_bufs) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int j = 0; j < s->n_out; j++) {
        const char *name = kiln_engine_output_name(st->e, j);
        kiln_dtype dt;
        int rank;
        int64_t dims[KILN_MAX_RANK];
        KILN_TRY(kiln_engine_output_info(st->e, j, &dt, &rank, dims));
        KILN_TRY(kiln_context_tensor_shape(s->c, name, &rank, dims));
        size_t bytes = kiln_dtype_size(dt);
        for (int k = 0; k < rank; k++) bytes *= (size_t)dims[k];
        if (dt == KILN_DTYPE_STRING) continue; /* strings stay in the context */
        s->out_bufs[j] = malloc(bytes ? bytes : 1);
        if (!s->out_bufs[j]) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory for output '%s' (%zu bytes)", name, bytes);
        KILN_TRY(kiln_context_set_tensor_address(s->c, name, s->out_bufs[j], bytes));
    }
    /* GPU modes start after the first run, which sized everything */
    if (o->cuda_graph) KILN_TRY(kiln_context_set_cuda_graph(s->c, true));
    if (o->no_data_transfers) KILN_TRY(kiln_context_set_data_transfers(s->c, false));
    if (n_layers) {
        s->n_layers = n_layers;
        s->layer_ms = kiln_calloc((size_t)n_layers, sizeof *s->layer_ms);
        s->layer_calls = kiln_calloc((size_t)n_layers, sizeof *s->layer_calls);
        if (!s->layer_ms || !s->layer_calls) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    return KILN_STATUS_OK;
}

static void free_stream(bench_stream *s) {
    kiln_context_destroy(s->c);
    for (int j = 0; s->out_bufs && j < s->n_out; j++) free(s->out_bufs[j]);
    free(s->out_bufs);
    free(s->iters);
    free(s->layer_ms);
    free(s->layer_calls);
}

/* Waits for the streams, showing progress on a terminal (stderr) every 0.2 s. */
static void wait_streams(bench_shared *sh, int n, bool progress) {
    double t0 = now_ms();
    const struct timespec tick = {0, 200 * 1000 * 1000};
    while (atomic_load(&sh->finished) < n) {
        nanosleep(&tick, NULL);
        if (!progress) continue;
        if (!atomic_load(&sh->timed)) fprintf(stderr, "\rkiln bench: warming up, %.1f s\033[K", (now_ms() - t0) / 1e3);
        else fprintf(stderr, "\rkiln bench: %lld timed runs, %.1f s\033[K", (long long)atomic_load(&sh->done), (now_ms() - sh->start_ms) / 1e3);
        fflush(stderr);
    }
    if (progress) fprintf(stderr, "\r\033[K");
}

static int cmp_iter_start(const void *a, const void *b) {
    const bench_iter *x = a, *y = b;
    return (x->start_ms > y->start_ms) - (x->start_ms < y->start_ms);
}

/* Merges the streams' records into the result, in start order. */
static kiln_status collect(bench_stream *ss, int n, bench_result *r) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += ss[i].n_iters;
    r->iters = malloc(sizeof *r->iters * (size_t)(total ? total : 1));
    if (!r->iters) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n; i++) {
        memcpy(r->iters + r->n_iters, ss[i].iters, sizeof *r->iters * (size_t)ss[i].n_iters);
        r->n_iters += ss[i].n_iters;
        r->warmup_runs += ss[i].warmup_runs;
        if (ss[i].end_ms / 1e3 > r->wall_s) r->wall_s = ss[i].end_ms / 1e3;
        for (int l = 0; ss[i].layer_ms && l < r->n_layers; l++) {
            r->layers[l].total_ms += ss[i].layer_ms[l];
            r->layers[l].calls += ss[i].layer_calls[l];
        }
    }
    qsort(r->iters, (size_t)r->n_iters, sizeof *r->iters, cmp_iter_start);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) r->peak_rss_bytes = (int64_t)ru.ru_maxrss * 1024; /* KiB on Linux */
    return KILN_STATUS_OK;
}

static kiln_status run_streams(const bench_setup *st, const bench_opts *o, bench_result *r) {
    bench_stream *ss = kiln_calloc((size_t)o->streams, sizeof *ss);
    pthread_t th[MAX_STREAMS];
    bench_shared sh = {.warmup_ms = o->warmup_ms, .duration_ms = o->duration_s * 1e3, .iterations = o->iterations,
                       .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .expected = o->streams};
    if (!ss) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status s = KILN_STATUS_OK;
    int made = 0;
    for (; made < o->streams && !s; made++) {
        ss[made] = (bench_stream){.id = made, .sh = &sh};
        s = make_stream(st, o, r->layers ? r->n_layers : 0, &ss[made]);
    }
    int started = 0;
    if (!s) {
        for (; started < o->streams; started++)
            if (pthread_create(&th[started], NULL, stream_main, &ss[started])) break;
        if (started < o->streams) {
            gate_abort(&sh); /* the gate would never open: let the started ones go */
            s = kiln_error(KILN_STATUS_RUNTIME_ERROR, "cannot start thread %d of %d for --streams", started + 1, o->streams);
        } else {
            wait_streams(&sh, o->streams, cli_interactive());
        }
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < o->streams && !s; i++)
            if (ss[i].status) s = kiln_error(ss[i].status, "stream %d: %s", i, ss[i].error);
        if (!s) s = collect(ss, o->streams, r);
    }
    for (int i = 0; i < made; i++) free_stream(&ss[i]);
    free(ss);
    return s;
}

/* ---- the command ---- */

static void free_result(bench_result *r) {
    for (int i = 0; i < r->n_inputs; i++) free(r->inputs[i].name);
    free(r->inputs);
    for (int i = 0; r->layers && i < r->n_layers; i++) {
        free(r->layers[i].name);
        free(r->layers[i].op);
    }
    free(r->layers);
    free(r->iters);
}

/* Options that only a CUDA engine can honour; the GPU side of the context provides them. */
static int check_device_options(const bench_opts *o, const bench_result *r) {
    bool gpu = strcmp(r->backend, "cuda") == 0;
    if (o->cuda_graph && o->profile)
        return cli_usage_error("bench", "--profile times every layer, which a replayed CUDA graph cannot: leave out --cuda-graph to profile");
    if (o->cuda_graph && !gpu)
        return cli_usage_error("bench", "--cuda-graph needs an engine built for CUDA (kiln build --device cuda); '%s' runs on the %s",
                               o->model, r->device);
    return 0;
}

/* Whether the report could be written at path (the file, or else its folder, is writable). */
static bool json_writable(const char *path) {
    if (strcmp(path, "-") == 0 || access(path, W_OK) == 0) return true;
    if (errno != ENOENT) return false;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return access(".", W_OK) == 0;
    if (slash == dir) slash[1] = 0;
    else *slash = 0;
    return access(dir, W_OK) == 0;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o = {.warmup_ms = 200, .duration_s = 3, .iterations = 10, .streams = 1, .seed = 1};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    bool engine_file = cli_is_engine(o.model);
    if (o.save_engine && engine_file) return cli_usage_error("bench", "--save-engine applies to ONNX models ('%s' is an engine)", o.model);
    if (o.json && !json_writable(o.json)) /* fail before a long run, not after */
        return cli_fail(kiln_error(KILN_STATUS_IO_ERROR, "--json %s: cannot write there: %s", o.json, strerror(errno)));

    bench_result r = {.model = o.model, .profile_index = o.opt_profile, .file_bytes = -1, .warmup_ms = o.warmup_ms,
                      .duration_s = o.duration_s, .iterations_min = o.iterations, .streams = o.streams,
                      .no_data_transfers = o.no_data_transfers, .cuda_graph = o.cuda_graph};
    bench_setup st = {0};
    kiln_status s = o.inputs_npz ? kiln_npz_read(o.inputs_npz, &st.npz, &st.n_npz) : KILN_STATUS_OK;
    if (!s && engine_file) s = kiln_engine_load(o.model, &st.e);
    else if (!s) {
        r.built_from_onnx = true;
        s = build_engine(&o, &st, &r.build_s);
    }
    struct stat sb;
    const char *file = engine_file ? o.model : o.save_engine;
    if (!s && file && stat(file, &sb) == 0) r.file_bytes = (int64_t)sb.st_size;
    if (!s && (o.opt_profile >= kiln_engine_num_profiles(st.e)))
        s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--opt-profile %d: the engine has %d profile(s)", o.opt_profile, kiln_engine_num_profiles(st.e));
    if (!s) s = describe(st.e, &r, o.profile);
    rc = 0;
    if (!s) rc = check_device_options(&o, &r);
    if (!s && !rc) s = make_inputs(&st, &o, &r);
    if (!s && !rc) s = run_streams(&st, &o, &r);
    if (!s && !rc) {
        bool json_stdout = o.json && strcmp(o.json, "-") == 0;
        bench_print_summary(json_stdout ? stderr : stdout, &r);
        if (o.json) s = bench_write_json(o.json, &r);
    }
    if (s && !rc) rc = cli_fail(s);
    for (int i = 0; st.data && i < kiln_engine_num_inputs(st.e); i++) kiln_tensor_destroy(st.data[i]);
    free(st.data);
    kiln_named_tensors_free(st.npz, st.n_npz);
    kiln_engine_destroy(st.e);
    free_result(&r);
    return rc;
}
