/* cmd_compare.c — `kiln compare`: Polygraphy-style parity checking. Runs a reference (an ONNX
 * model on the reference backend, an engine, or saved outputs) and a target (an engine, loaded or
 * built on the fly at any precision) on the same inputs, step by step with state fed back when
 * asked, and judges every output against thresholds and every contract. --bisect-precision then
 * finds the layers to keep in fp32. The parts live in tools/compare_*.c (see compare.h); the user
 * guide is docs/compare.md; tests/models/test_compare.py tests it. */
#include "compare.h"

#include "core/core.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Exit status when the comparison ran and failed (1 is for errors, 2 for bad usage). */
#define EXIT_MISMATCH 3

static void help(void) {
    printf(
        "usage: kiln compare REFERENCE [TARGET] [options]\n\n"
        "Runs REFERENCE and TARGET on the same inputs and compares every output they share: absolute and\n"
        "relative error (max, mean, median, p95, p99), cosine similarity, NaN and Inf counts, exact match\n"
        "for integer and bool outputs; a verdict per output and overall. Guide: docs/compare.md.\n\n"
        "  REFERENCE  MODEL.onnx (the reference backend: the fp32 truth), ENGINE.kiln, or OUTPUTS.npz (saved\n"
        "             reference outputs, e.g. from --save-ref; a leading step axis when --steps > 1)\n"
        "  TARGET     ENGINE.kiln, or MODEL.onnx built into an engine with the build options below; left out,\n"
        "             REFERENCE (an ONNX model) is built with them\n\n"
        "inputs (any input the data does not name is generated):\n"
        "  --data FILE.npz|DIR         an .npz keyed by input name (an array with one more axis than the input\n"
        "                              holds one value per step), or a folder with one .npy/.npz file per step\n"
        "  --input-range [NAME:]LO,HI  generated values: uniform in [LO,HI) for floats, integers in [LO,HI]\n"
        "                              (defaults -1,1 floats, 0,7 integers, 0,1 bools; repeatable)\n"
        "  --seed N                    seed of generated inputs (default 1)\n"
        "  --shapes NAME:AxB,...       shapes of generated inputs, and the profile of a target built here\n"
        "  --save-inputs FILE.npz      write the inputs used (stepped) ...\n"
        "  --save-ref FILE.npz         ... and the reference's outputs, to replay later\n\n"
        "steps and state (streaming models):\n"
        "  --steps N                   run N steps (default: the data's step count, else 1)\n"
        "  --state OUT:IN              output OUT feeds input IN at the next step (repeatable); IN starts from\n"
        "                              the data or zeros. The target gets the reference's OUT (functional mode)\n"
        "  --closed-loop               ... or each runner its own OUT, so errors can accumulate\n\n"
        "thresholds ([NAME:] for one output; with none given for an output: --atol 1e-5 --rtol 1e-5):\n"
        "  --atol [NAME:]V  --rtol [NAME:]V    every element: |t - r| <= atol + rtol * |r|\n"
        "  --cosine [NAME:]V                   cosine similarity >= V\n"
        "  --p99-atol [NAME:]V                 99th percentile of |t - r| <= V\n"
        "  --min-pass-rate R                   fraction (or N%%) of steps each output must pass (default 1)\n"
        "  --max-slope S                       fail when the error grows faster than S per step\n"
        "  --outputs A,B                       compare only these outputs\n"
        "  NaN/Inf on one side only, shape differences and integer/bool mismatches always fail.\n\n"
        "contracts, checked on both runners at every step (docs/compare.md):\n"
        "  --invariant EXPR            'len==73', 'out<=ref_in', 'y:finite', 'cache_len:nondecreasing',\n"
        "                              'x:increasing', 'enc:shape=1x*x2' (repeatable)\n\n"
        "report:\n"
        "  --json                      the report as JSON on stdout\n"
        "  --plot FILE.png             error against step, with the trend (needs kiln built with cairo)\n\n"
        "building the target (as `kiln build`):\n"
        "  --int8 --fp16 --bf16, --calib FILE.npz, --calib-dir DIR, --calib-batch N, --calib-max N,\n"
        "  --calib-method M, --calib-cache FILE, --layer-precision NODE:fp32 (repeatable), --device cpu|cuda,\n"
        "  -O LEVEL, --min-shapes/--opt-shapes/--max-shapes (one profile)\n"
        "  --profile N                 the engine profile to run (default 0)\n"
        "  --bisect-precision          when a reduced-precision target fails: find the fewest layers to keep in\n"
        "                              fp32 for it to pass, and print their --layer-precision flags\n"
        "  -h, --help                  this text\n\n"
        "Exit status: 0 pass (with --bisect-precision: a passing layer set was found), 3 the comparison\n"
        "failed, 1 a model, engine or file could not be loaded or run, 2 bad usage.\n");
}

static int add_named_value(const char *opt, const char *arg, cmp_named_value *v, int *n) {
    if (*n == CMP_MAX_ARGS) return cli_usage_error("compare", "too many %s", opt);
    cmp_named_value *e = &v[(*n)++];
    memset(e, 0, sizeof *e);
    char *end;
    e->v = strtod(arg, &end);
    if (end != arg && !*end) return 0;
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof e->name)
        return cli_usage_error("compare", "%s wants a number or NAME:NUMBER, not '%s'", opt, arg);
    e->v = strtod(colon + 1, &end);
    if (end == colon + 1 || *end) return cli_usage_error("compare", "%s wants a number or NAME:NUMBER, not '%s'", opt, arg);
    memcpy(e->name, arg, (size_t)(colon - arg));
    return 0;
}

static int parse_count(const char *opt, const char *arg, int64_t *out) {
    char *end;
    long long v = strtoll(arg, &end, 10);
    if (end == arg || *end || v < 1) return cli_usage_error("compare", "%s wants a positive count, not '%s'", opt, arg);
    *out = v;
    return 0;
}

enum {
    O_DATA = 256, O_RANGE, O_SEED, O_SHAPES, O_SAVE_IN, O_SAVE_REF, O_STEPS, O_STATE, O_CLOSED, O_ATOL, O_RTOL, O_COS, O_P99,
    O_RATE, O_SLOPE, O_OUTPUTS, O_INV, O_JSON, O_PLOT, O_INT8, O_FP16, O_BF16, O_CALIB, O_CALIB_DIR, O_CALIB_BATCH, O_CALIB_MAX,
    O_CALIB_METHOD, O_CALIB_CACHE, O_LAYER_PREC, O_DEVICE, O_MIN, O_OPT, O_MAX, O_PROFILE, O_BISECT,
};

static int parse_option(int c, const char *arg, cmp_opts *o) {
    cmp_build *b = &o->build;
    char err[200];
    switch (c) {
    case O_DATA: o->data = arg; return 0;
    case O_RANGE:
        if (o->n_ranges == CMP_MAX_ARGS) return cli_usage_error("compare", "too many --input-range");
        if (cli_parse_range(arg, &o->ranges[o->n_ranges++])) return cli_usage_error("compare", "--input-range wants [NAME:]LO,HI with LO <= HI, not '%s'", arg);
        return 0;
    case O_SEED: o->seed = strtoull(arg, NULL, 10); return 0;
    case O_SHAPES: o->shapes = arg; return 0;
    case O_SAVE_IN: o->save_inputs = arg; return 0;
    case O_SAVE_REF: o->save_ref = arg; return 0;
    case O_STEPS: return parse_count("--steps", arg, &o->steps);
    case O_STATE: {
        const char *colon = strrchr(arg, ':');
        if (o->n_state == CMP_MAX_ARGS) return cli_usage_error("compare", "too many --state");
        if (!colon || colon == arg || !colon[1] || (size_t)(colon - arg) >= sizeof o->state[0].out || strlen(colon + 1) >= sizeof o->state[0].in)
            return cli_usage_error("compare", "--state wants OUTPUT:INPUT, not '%s'", arg);
        snprintf(o->state[o->n_state].out, sizeof o->state[0].out, "%.*s", (int)(colon - arg), arg);
        snprintf(o->state[o->n_state].in, sizeof o->state[0].in, "%s", colon + 1);
        o->n_state++;
        return 0;
    }
    case O_CLOSED: o->closed_loop = true; return 0;
    case O_ATOL: return add_named_value("--atol", arg, o->atol, &o->n_atol);
    case O_RTOL: return add_named_value("--rtol", arg, o->rtol, &o->n_rtol);
    case O_COS: return add_named_value("--cosine", arg, o->cosine, &o->n_cosine);
    case O_P99: return add_named_value("--p99-atol", arg, o->p99, &o->n_p99);
    case O_RATE: {
        char *end;
        double v = strtod(arg, &end);
        if (end != arg && *end == '%' && !end[1]) v /= 100, end++;
        if (end == arg || *end || !(v >= 0 && v <= 1)) return cli_usage_error("compare", "--min-pass-rate wants a fraction 0..1 or a percentage, not '%s'", arg);
        o->min_pass_rate = v;
        return 0;
    }
    case O_SLOPE: {
        char *end;
        o->max_slope = strtod(arg, &end);
        if (end == arg || *end) return cli_usage_error("compare", "--max-slope wants a number, not '%s'", arg);
        o->has_max_slope = true;
        return 0;
    }
    case O_OUTPUTS: o->only_outputs = arg; return 0;
    case O_INV:
        if (o->n_inv == CMP_MAX_ARGS) return cli_usage_error("compare", "too many --invariant");
        if (cmp_invariant_parse(arg, &o->inv[o->n_inv++], err, sizeof err)) return cli_usage_error("compare", "--invariant '%s': %s", arg, err);
        return 0;
    case O_JSON: o->json = true; return 0;
    case O_PLOT: o->plot = arg; return 0;
    case O_INT8: b->precisions |= KILN_PRECISION_INT8, b->any = true; return 0;
    case O_FP16: b->precisions |= KILN_PRECISION_FP16, b->any = true; return 0;
    case O_BF16: b->precisions |= KILN_PRECISION_BF16, b->any = true; return 0;
    case O_CALIB: b->calib = arg, b->any = true; return 0;
    case O_CALIB_DIR: b->calib_dir = arg, b->any = true; return 0;
    case O_CALIB_BATCH: b->any = true; return parse_count("--calib-batch", arg, &b->calib_batch);
    case O_CALIB_MAX: b->any = true; return parse_count("--calib-max", arg, &b->calib_max);
    case O_CALIB_METHOD: b->calib_method = arg, b->any = true; return 0;
    case O_CALIB_CACHE: b->calib_cache = arg, b->any = true; return 0;
    case O_LAYER_PREC:
        if (b->n_layer_prec == 256) return cli_usage_error("compare", "too many --layer-precision");
        b->layer_prec[b->n_layer_prec++] = arg, b->any = true;
        return 0;
    case O_DEVICE:
        b->any = true;
        if (strcmp(arg, "cpu") == 0) b->device = KILN_DEVICE_CPU;
        else if (strcmp(arg, "cuda") == 0) b->device = KILN_DEVICE_CUDA;
        else return cli_usage_error("compare", "--device must be cpu or cuda, not '%s'", arg);
        return 0;
    case 'O': b->level = atoi(arg), b->any = true; return 0;
    case O_MIN: b->min_shapes = arg, b->any = true; return 0;
    case O_OPT: b->opt_shapes = arg, b->any = true; return 0;
    case O_MAX: b->max_shapes = arg, b->any = true; return 0;
    case O_PROFILE: o->profile = atoi(arg); return 0;
    case O_BISECT: o->bisect = true; return 0;
    default: return cli_usage_error("compare", "bad option");
    }
}

static bool is_npz(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".npz") == 0;
}

/* Checks that the options make sense together; returns an exit code, or 0. */
static int check_options(cmp_opts *o) {
    cmp_build *b = &o->build;
    const char *onnx_target = o->tgt_path ? (cli_is_engine(o->tgt_path) ? NULL : o->tgt_path)
                                          : (cli_is_engine(o->ref_path) || is_npz(o->ref_path) ? NULL : o->ref_path);
    if (o->tgt_path && is_npz(o->tgt_path)) return cli_usage_error("compare", "saved outputs (.npz) can only be the REFERENCE");
    if (!o->tgt_path && !onnx_target) return cli_usage_error("compare", "a TARGET is needed when the REFERENCE is not an ONNX model");
    if (b->any && !onnx_target) return cli_usage_error("compare", "build options apply to a target built from ONNX, not to %s", o->tgt_path);
    int n_profile_flags = !!b->min_shapes + !!b->opt_shapes + !!b->max_shapes;
    if (n_profile_flags != 0 && n_profile_flags != 3)
        return cli_usage_error("compare", "give --min-shapes, --opt-shapes and --max-shapes together");
    if (b->calib && b->calib_dir) return cli_usage_error("compare", "--calib and --calib-dir exclude each other");
    bool int8 = (b->precisions & KILN_PRECISION_INT8) != 0;
    if (!int8 && (b->calib || b->calib_dir || b->calib_method || b->calib_cache || b->calib_batch || b->calib_max))
        return cli_usage_error("compare", "the --calib* options need --int8");
    if (int8 && !b->calib && !b->calib_dir && !b->calib_cache)
        return cli_usage_error("compare", "--int8 needs calibration data (--calib FILE.npz or --calib-dir DIR) or --calib-cache FILE");
    if (o->bisect && (!onnx_target || !(b->precisions & ~(unsigned)KILN_PRECISION_FP32)))
        return cli_usage_error("compare", "--bisect-precision needs a target built from ONNX at reduced precision (--int8, --fp16 or --bf16)");
    if (o->plot && !cmp_plot_available())
        return cli_usage_error("compare", "--plot needs cairo, and this kiln was built without it (install libcairo2-dev and rebuild)");
    if (o->closed_loop && !o->n_state) return cli_usage_error("compare", "--closed-loop needs at least one --state OUT:IN");
    if (o->profile && o->tgt_path && !cli_is_engine(o->tgt_path) && !cli_is_engine(o->ref_path))
        return cli_usage_error("compare", "--profile applies to .kiln engines");
    return 0;
}

static int parse_args(int argc, char **argv, cmp_opts *o) {
    static const struct option opts[] = {
        {"data", required_argument, 0, O_DATA},          {"input-range", required_argument, 0, O_RANGE},
        {"seed", required_argument, 0, O_SEED},          {"shapes", required_argument, 0, O_SHAPES},
        {"save-inputs", required_argument, 0, O_SAVE_IN}, {"save-ref", required_argument, 0, O_SAVE_REF},
        {"steps", required_argument, 0, O_STEPS},        {"state", required_argument, 0, O_STATE},
        {"closed-loop", no_argument, 0, O_CLOSED},       {"atol", required_argument, 0, O_ATOL},
        {"rtol", required_argument, 0, O_RTOL},          {"cosine", required_argument, 0, O_COS},
        {"p99-atol", required_argument, 0, O_P99},       {"min-pass-rate", required_argument, 0, O_RATE},
        {"max-slope", required_argument, 0, O_SLOPE},    {"outputs", required_argument, 0, O_OUTPUTS},
        {"invariant", required_argument, 0, O_INV},      {"json", no_argument, 0, O_JSON},
        {"plot", required_argument, 0, O_PLOT},          {"int8", no_argument, 0, O_INT8},
        {"fp16", no_argument, 0, O_FP16},                {"bf16", no_argument, 0, O_BF16},
        {"calib", required_argument, 0, O_CALIB},        {"calib-dir", required_argument, 0, O_CALIB_DIR},
        {"calib-batch", required_argument, 0, O_CALIB_BATCH}, {"calib-max", required_argument, 0, O_CALIB_MAX},
        {"calib-method", required_argument, 0, O_CALIB_METHOD}, {"calib-cache", required_argument, 0, O_CALIB_CACHE},
        {"layer-precision", required_argument, 0, O_LAYER_PREC}, {"device", required_argument, 0, O_DEVICE},
        {"min-shapes", required_argument, 0, O_MIN},     {"opt-shapes", required_argument, 0, O_OPT},
        {"max-shapes", required_argument, 0, O_MAX},     {"profile", required_argument, 0, O_PROFILE},
        {"bisect-precision", no_argument, 0, O_BISECT},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hO:", opts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return -1;
        }
        if (c == '?') return cli_usage_error("compare", "bad option");
        if ((rc = parse_option(c, optarg, o))) return rc;
    }
    int npos = argc - optind;
    if (npos < 1 || npos > 2) return cli_usage_error("compare", "expected REFERENCE and an optional TARGET");
    o->ref_path = argv[optind];
    o->tgt_path = npos == 2 ? argv[optind + 1] : NULL;
    return check_options(o);
}

/* Everything one comparison holds, so that one function frees it. */
typedef struct job {
    cmp_opts *o;
    cmp_runner ref, tgt;
    kiln_model_t *tgt_model;     /* a second ONNX model to build (NULL: the reference's) */
    cmp_signature sig;
    cmp_tensors sample;
    char **cands;
    int n_cands;
    char tmpdir[512], cache[560]; /* under $TMPDIR */
    char shapes[4096];           /* the profile taken from the data, when the model is dynamic */
    cmp_result res;
    cJSON *json;
} job;

static kiln_status open_reference(job *j) {
    const cmp_opts *o = j->o;
    if (is_npz(o->ref_path)) return cmp_runner_open_saved(&j->ref, o->ref_path);
    if (cli_is_engine(o->ref_path)) return cmp_runner_open_engine(&j->ref, o->ref_path, o->profile);
    return cmp_runner_open_model(&j->ref, o->ref_path);
}

/* A temporary calibration cache, so that the trial builds of --bisect-precision calibrate once. */
static const char *bisect_cache(job *j) {
    const cmp_build *b = &j->o->build;
    if (!j->o->bisect || !(b->precisions & KILN_PRECISION_INT8) || b->calib_cache) return NULL;
    if (!j->tmpdir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(j->tmpdir, sizeof j->tmpdir, "%s/kiln-compare-XXXXXX", t && *t ? t : "/tmp"); /* mkdtemp's template */
        if (!mkdtemp(j->tmpdir)) {
            j->tmpdir[0] = 0;
            return NULL;
        }
        snprintf(j->cache, sizeof j->cache, "%s/calib.cache", j->tmpdir);
    }
    return j->cache;
}

/* A model with dynamic inputs and no shape flags is built for the shapes of the first step's
 * inputs: --shapes is set to them, so that the report and the printed build command say so. */
static void fixed_shapes(job *j, const kiln_model_t *m) {
    bool dynamic = false;
    for (int i = 0; i < j->sig.n; i++) {
        dynamic |= j->sig.ranks[i] < 0;
        for (int k = 0; k < j->sig.ranks[i]; k++) dynamic |= j->sig.dims[i][k] < 0;
    }
    if (!dynamic) return;
    size_t u = 0;
    for (int i = 0; i < kiln_model_num_inputs(m) && u < sizeof j->shapes; i++) {
        const kiln_tensor_t *t = cmp_tensors_find(&j->sample, kiln_model_input_name(m, i));
        if (!t) continue;
        u += (size_t)snprintf(j->shapes + u, sizeof j->shapes - u, "%s%s:", u ? "," : "", kiln_model_input_name(m, i));
        for (int k = 0; k < t->rank && u < sizeof j->shapes; k++)
            u += (size_t)snprintf(j->shapes + u, sizeof j->shapes - u, "%s%lld", k ? "x" : "", (long long)t->dims[k]);
    }
    if (u < sizeof j->shapes) j->o->shapes = j->shapes;
}

static kiln_status open_target(job *j) {
    const cmp_opts *o = j->o;
    if (o->tgt_path && cli_is_engine(o->tgt_path)) {
        KILN_TRY(cmp_runner_open_engine(&j->tgt, o->tgt_path, o->profile));
        return j->ref.kind == CMP_RUNNER_SAVED ? cmp_signature_of(&j->tgt, &j->sig) : cmp_signature_of(&j->ref, &j->sig);
    }
    /* built on the fly from ONNX: the signature comes first, for the profile of dynamic inputs */
    if (o->tgt_path) KILN_TRY(kiln_model_load(o->tgt_path, &j->tgt_model));
    const kiln_model_t *m = j->tgt_model ? j->tgt_model : j->ref.m;
    if (j->ref.kind == CMP_RUNNER_SAVED) {
        cmp_runner tmp = {.kind = CMP_RUNNER_MODEL, .m = (kiln_model_t *)m};
        KILN_TRY(cmp_signature_of(&tmp, &j->sig));
    } else {
        KILN_TRY(cmp_signature_of(&j->ref, &j->sig));
    }
    KILN_TRY(cmp_first_inputs(o, &j->sig, &j->sample));
    if (!o->shapes && !o->build.min_shapes) fixed_shapes(j, m);
    if (o->progress) fprintf(stderr, "kiln compare: building %s\n", o->tgt_path ? o->tgt_path : o->ref_path);
    kiln_engine_t *e;
    KILN_TRY(cmp_build_engine(&o->build, o->shapes, m, &j->sample, NULL, 0, bisect_cache(j), &e));
    if (o->bisect) {
        char buf[256];
        kiln_status s = cmp_engine_precisions(e, m, buf, sizeof buf, &j->cands, &j->n_cands);
        if (s) {
            kiln_engine_destroy(e);
            return s;
        }
    }
    char label[1024] = "engine built here with";
    cmp_build_flags(&o->build, o->shapes, label, sizeof label);
    if (!strcmp(label, "engine built here with")) snprintf(label, sizeof label, "engine built here (fp32)");
    snprintf(j->tgt.path, sizeof j->tgt.path, "%s", o->tgt_path ? o->tgt_path : o->ref_path);
    return cmp_runner_from_engine(&j->tgt, e, label, o->profile);
}

static void job_free(job *j) {
    cmp_result_free(&j->res);
    cmp_runner_close(&j->ref);
    cmp_runner_close(&j->tgt);
    kiln_model_destroy(j->tgt_model);
    cmp_signature_free(&j->sig);
    cmp_tensors_free(&j->sample);
    for (int i = 0; i < j->n_cands; i++) free(j->cands[i]);
    free(j->cands);
    if (j->tmpdir[0]) {
        unlink(j->cache);
        rmdir(j->tmpdir);
    }
    cJSON_Delete(j->json);
}

static void print_json(cJSON *json) {
    char *text = cJSON_Print(json);
    if (text) printf("%s\n", text);
    free(text);
}

/* Runs --bisect-precision after a failed comparison (or says there is nothing to do). */
static kiln_status run_bisect(job *j, kiln_tensor_t **trace, int64_t trace_steps, bool *found) {
    const cmp_opts *o = j->o;
    if (j->res.pass) {
        *found = true;
        if (j->json) {
            cJSON *b = cJSON_AddObjectToObject(j->json, "bisect");
            cJSON_AddArrayToObject(b, "keep_fp32");
            cJSON_AddStringToObject(b, "flags", "");
            cJSON_AddBoolToObject(b, "pass", true);
        } else {
            printf("\nbisect-precision: the target passes as built; no layer needs to stay in fp32\n");
        }
        for (int64_t k = 0; k < trace_steps * j->ref.n_out; k++) kiln_tensor_destroy(trace[k]);
        free(trace);
        return KILN_STATUS_OK;
    }
    cmp_runner_replay(&j->ref, trace, trace_steps);
    const kiln_model_t *m = j->tgt_model ? j->tgt_model : j->ref.m;
    return cmp_bisect(o, &j->sig, &j->ref, m, &j->sample, bisect_cache(j), j->cands, j->n_cands, j->json, found);
}

int cmd_compare(int argc, char **argv) {
    cmp_opts *o = kiln_calloc(1, sizeof *o);
    if (!o) return cli_fail(kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"));
    o->seed = 1;
    o->min_pass_rate = 1;
    o->build.level = 2;
    o->build.precisions = KILN_PRECISION_FP32;
    int rc = parse_args(argc, argv, o);
    if (rc) {
        free(o);
        return rc < 0 ? 0 : rc;
    }
    o->progress = cli_interactive();
    o->build.progress = o->progress;
    job j = {.o = o};
    kiln_tensor_t **trace = NULL;
    int64_t trace_steps = 0;
    kiln_status s = open_reference(&j);
    if (!s) s = open_target(&j);
    if (!s && !j.sig.names) s = cmp_signature_of(j.ref.kind == CMP_RUNNER_SAVED ? &j.tgt : &j.ref, &j.sig);
    if (!s) s = cmp_session_run(o, &j.sig, &j.ref, &j.tgt, &j.res, o->bisect ? &trace : NULL, &trace_steps);
    if (!s && o->plot) s = cmp_plot(o->plot, o, &j.res);
    bool ok = !s && j.res.pass;
    if (!s) {
        if (o->json) j.json = cmp_report_json(o, &j.ref, &j.tgt, &j.res);
        else cmp_report_text(stdout, o, &j.ref, &j.tgt, &j.res);
        fflush(stdout);
    }
    if (!s && o->bisect) {
        s = run_bisect(&j, trace, trace_steps, &ok);
        trace = NULL; /* replayed by the reference, or freed */
    }
    for (int64_t k = 0; trace && k < trace_steps * j.ref.n_out; k++) kiln_tensor_destroy(trace[k]);
    free(trace);
    if (!s && j.json) print_json(j.json);
    rc = s ? cli_fail(s) : ok ? 0 : EXIT_MISMATCH;
    job_free(&j);
    free(o);
    return rc;
}
