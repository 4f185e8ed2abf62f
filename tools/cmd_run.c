/* cmd_run.c — `kiln run`: load an ONNX model (run by the reference interpreter) or a .kiln
 * engine (run by a context, --profile to pick its profile), bind inputs from .npy/.npz files
 * (or seeded random data), run, and print a summary of each output or save them all to an
 * .npz keyed by output name. */
#include "cli.h"
#include "cli_inputs.h"

#include "core/core.h"
#include "io/npy.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void help(void) {
    printf("usage: kiln run MODEL.onnx|ENGINE.kiln [options]\n\n"
           "Runs an ONNX model with the reference interpreter, or a .kiln engine, and prints each output's\n"
           "name, shape and first values, or saves them with --output.\n\n"
           "options:\n"
           "  --inputs FILE.npz         inputs keyed by graph input name\n"
           "  --input NAME=FILE.npy     one input (repeatable); 'FILE.npy' alone when the model has one input\n"
           "  --random                  fill every input not given with seeded random data\n"
           "  --seed N                  seed for --random (default 1)\n"
           "  --shapes NAME:AxBxC,...   shapes for --random where the model's are dynamic\n"
           "  --output FILE.npz         save the outputs, keyed by graph output name\n"
           "  --print N                 values shown per output (default 6)\n"
           "  --profile N               the engine's optimization profile to run (default 0)\n"
           "  --device cpu|cuda         ONNX models: build an engine for DEVICE in memory, its one profile fixed\n"
           "                            at the given inputs' shapes, and run that instead of the interpreter\n"
           "                            (what `kiln build --device D --shapes ...` then `kiln run E.kiln` does,\n"
           "                            in one process and without the file)\n"
           "  --host-fallback           with --device cuda: nodes without a GPU kernel run on the CPU (as\n"
           "                            kiln build --host-fallback)\n"
           "  -h, --help                this text\n\n"
           "Exit status: 0 on success, 1 when loading or running fails (one line on stderr), 2 on bad usage.\n");
}

/* What is being run: an imported model or an engine with its context. */
typedef struct runner {
    kiln_model_t *m;
    kiln_engine_t *e;
    kiln_context_t *c;
} runner;

static int r_num_inputs(const runner *r) { return r->e ? kiln_engine_num_inputs(r->e) : kiln_model_num_inputs(r->m); }
static int r_num_outputs(const runner *r) { return r->e ? kiln_engine_num_outputs(r->e) : kiln_model_num_outputs(r->m); }
static const char *r_input_name(const runner *r, int i) { return r->e ? kiln_engine_input_name(r->e, i) : kiln_model_input_name(r->m, i); }
static const char *r_output_name(const runner *r, int i) { return r->e ? kiln_engine_output_name(r->e, i) : kiln_model_output_name(r->m, i); }

/* The shape random data gets: declared, or for an engine's dynamic input the profile's opt. */
static kiln_status r_input_info(const runner *r, int i, int profile, kiln_dtype *dt, int *rank, int64_t *dims) {
    if (!r->e) return kiln_model_input_info(r->m, i, dt, rank, dims);
    KILN_TRY(kiln_engine_input_info(r->e, i, dt, rank, dims));
    int prank;
    int64_t mn[KILN_MAX_RANK], op[KILN_MAX_RANK], mx[KILN_MAX_RANK];
    if (kiln_engine_profile_shape(r->e, profile, i, &prank, mn, op, mx) == KILN_STATUS_OK && prank >= 0) {
        *rank = prank;
        memcpy(dims, op, sizeof(int64_t) * (size_t)prank);
    }
    return KILN_STATUS_OK;
}

typedef struct binding {
    char *name;
    kiln_tensor *t;
} binding;

typedef struct run_opts {
    const char *model, *inputs_npz, *output;
    const char *input_args[64];
    int n_input_args;
    const char *shapes;
    int profile;
    bool random;
    uint64_t seed;
    int print;
    const char *device; /* ONNX: build an engine for this device in memory */
    bool host_fallback; /* and let nodes without a GPU kernel run on the host */
} run_opts;

static kiln_status random_input(const runner *r, int i, const run_opts *o, cli_rng *rng, kiln_tensor **out) {
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    KILN_TRY(r_input_info(r, i, o->profile, &dt, &rank, dims));
    const char *name = r_input_name(r, i);
    cli_shape given[64];
    int n_given = 0;
    if (o->shapes && cli_parse_shapes(o->shapes, given, 64, &n_given))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--shapes '%s': expected NAME:AxBxC,...", o->shapes);
    const cli_shape *sh = cli_find_shape(given, n_given, name);
    if (sh) {
        rank = sh->rank;
        memcpy(dims, sh->dims, sizeof(int64_t) * (size_t)rank);
    }
    if (rank < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has no declared shape: give it with --shapes", name);
    for (int k = 0; k < rank; k++)
        if (dims[k] < 0)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has a dynamic dim %d: give its shape with --shapes %s:...", name, k, name);
    double lo, hi;
    cli_range_for(NULL, 0, name, dt, &lo, &hi); /* floats in [-1, 1), integers 0..7, bools half true */
    return cli_random_tensor(dt, rank, dims, lo, hi, rng, out);
}

static void print_output(const char *name, kiln_tensor *t, int nprint) {
    char desc[256];
    printf("%s: %s", name, kiln_tensor_describe(t, desc, sizeof desc));
    int64_t n = kiln_tensor_count(t);
    if (t->dtype == KILN_DTYPE_STRING || n < 0) { printf("\n"); return; }
    printf(" = [");
    for (int64_t k = 0; k < n && k < nprint; k++) {
        if (kiln_dtype_is_float(t->dtype)) printf("%s%.6g", k ? ", " : "", kiln_load_f64(t->dtype, t->data, k));
        else printf("%s%lld", k ? ", " : "", (long long)kiln_load_i64(t->dtype, t->data, k));
    }
    printf("%s]", n > nprint ? ", ..." : "");
    if (kiln_dtype_is_float(t->dtype) && n > 0) {
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        for (int64_t k = 0; k < n; k++) {
            double v = kiln_load_f64(t->dtype, t->data, k);
            lo = fmin(lo, v);
            hi = fmax(hi, v);
            sum += v;
        }
        printf("  min %.6g max %.6g mean %.6g", lo, hi, sum / (double)n);
    }
    printf("\n");
}

static int parse_args(int argc, char **argv, run_opts *o) {
    static const struct option opts[] = {
        {"inputs", required_argument, 0, 'I'}, {"input", required_argument, 0, 'i'},
        {"output", required_argument, 0, 'o'}, {"random", no_argument, 0, 'r'},
        {"seed", required_argument, 0, 's'},   {"shapes", required_argument, 0, 'S'},
        {"print", required_argument, 0, 'p'},  {"help", no_argument, 0, 'h'},
        {"profile", required_argument, 0, 'P'}, {"device", required_argument, 0, 'd'},
        {"host-fallback", no_argument, 0, 'F'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'I': o->inputs_npz = optarg; break;
        case 'i':
            if (o->n_input_args == 64) return cli_usage_error("run", "too many --input options");
            o->input_args[o->n_input_args++] = optarg;
            break;
        case 'o': o->output = optarg; break;
        case 'r': o->random = true; break;
        case 's': o->seed = strtoull(optarg, NULL, 10); break;
        case 'S': o->shapes = optarg; break;
        case 'p': o->print = atoi(optarg); break;
        case 'P': o->profile = atoi(optarg); break;
        case 'd':
            if (strcmp(optarg, "cpu") != 0 && strcmp(optarg, "cuda") != 0)
                return cli_usage_error("run", "--device takes cpu or cuda, not '%s'", optarg);
            o->device = optarg;
            break;
        case 'F': o->host_fallback = true; break;
        case 'h': help(); return -1;
        default: return cli_usage_error("run", "bad option");
        }
    }
    if (optind != argc - 1) return cli_usage_error("run", "expected exactly one MODEL argument");
    o->model = argv[optind];
    if (o->device && cli_is_engine(o->model))
        return cli_usage_error("run", "--device builds an ONNX model; %s is an engine already", o->model);
    if (o->host_fallback && (!o->device || strcmp(o->device, "cuda") != 0))
        return cli_usage_error("run", "--host-fallback goes with --device cuda");
    if (o->device && o->random) return cli_usage_error("run", "--device needs the inputs given (their shapes fix the profile)");
    return 0;
}

/* --device: the model built into an engine whose one profile is the bound inputs' shapes. */
static kiln_status build_in_memory(runner *r, const run_opts *o, const binding *b, int nb) {
    kiln_builder_t *bd = NULL;
    int p;
    kiln_status s = kiln_builder_create(&bd);
    if (!s) s = kiln_builder_set_device(bd, strcmp(o->device, "cuda") == 0 ? KILN_DEVICE_CUDA : KILN_DEVICE_CPU);
    if (!s) s = kiln_builder_set_host_fallback(bd, o->host_fallback);
    if (!s) s = kiln_builder_add_profile(bd, &p);
    for (int k = 0; !s && k < nb; k++) {
        bool is_input = false;
        for (int i = 0; i < kiln_model_num_inputs(r->m); i++) is_input |= strcmp(kiln_model_input_name(r->m, i), b[k].name) == 0;
        if (!is_input) {
            s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s has no input named '%s'", o->model, b[k].name);
            break;
        }
        const int64_t *d = kiln_tensor_dims(b[k].t);
        s = kiln_builder_set_profile_shape(bd, p, b[k].name, kiln_tensor_rank(b[k].t), d, d, d);
    }
    if (!s) s = kiln_builder_build(bd, r->m, &r->e);
    kiln_builder_destroy(bd);
    if (!s) s = kiln_context_create(r->e, &r->c);
    return s;
}

int cmd_run(int argc, char **argv) {
    run_opts o = {.seed = 1, .print = 6};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;

    runner r = {0};
    kiln_status s;
    if (cli_is_engine(o.model)) {
        if ((s = kiln_engine_load(o.model, &r.e))) return cli_fail(s);
        if ((s = kiln_context_create(r.e, &r.c)) || (s = kiln_context_set_profile(r.c, o.profile))) {
            kiln_context_destroy(r.c);
            kiln_engine_destroy(r.e);
            return cli_fail(s);
        }
    } else {
        if (o.profile) return cli_usage_error("run", "--profile applies to .kiln engines");
        if ((s = kiln_model_load(o.model, &r.m))) return cli_fail(s);
    }
    int n_in = r_num_inputs(&r), n_out = r_num_outputs(&r);
    binding *b = kiln_calloc((size_t)(n_in + 64), sizeof *b);
    kiln_named_tensor *npz = NULL;
    int n_npz = 0, nb = 0;
    kiln_tensor_t **outs = kiln_calloc((size_t)(n_out ? n_out : 1), sizeof *outs);
    rc = 1;
    if (!b || !outs) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
    if (o.inputs_npz) {
        if ((s = kiln_npz_read(o.inputs_npz, &npz, &n_npz))) goto fail;
        for (int k = 0; k < n_npz; k++) b[nb++] = (binding){kiln_strdup(npz[k].name), npz[k].t};
    }
    for (int k = 0; k < o.n_input_args; k++) {
        const char *arg = o.input_args[k], *eq = strchr(arg, '=');
        char *name;
        const char *path;
        if (eq) {
            name = strndup(arg, (size_t)(eq - arg));
            path = eq + 1;
        } else if (n_in == 1) {
            name = kiln_strdup(r_input_name(&r, 0));
            path = arg;
        } else {
            s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--input %s: the model has %d inputs, write NAME=FILE.npy", arg, n_in);
            goto fail;
        }
        b[nb].name = name;
        if ((s = kiln_npy_read(path, &b[nb].t))) { nb++; goto fail; }
        nb++;
    }
    if (o.random) {
        cli_rng rng;
        cli_rng_seed(&rng, o.seed);
        for (int i = 0; i < n_in; i++) {
            const char *name = r_input_name(&r, i);
            bool given = false;
            for (int k = 0; k < nb; k++) given |= strcmp(b[k].name, name) == 0;
            if (given) continue;
            b[nb].name = kiln_strdup(name);
            if ((s = random_input(&r, i, &o, &rng, &b[nb].t))) { nb++; goto fail; }
            nb++;
        }
    }
    const char **names = kiln_calloc((size_t)(nb ? nb : 1), sizeof *names);
    kiln_tensor_t **ts = kiln_calloc((size_t)(nb ? nb : 1), sizeof *ts);
    if (!names || !ts) { free(names); free(ts); s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
    for (int k = 0; k < nb; k++) { names[k] = b[k].name; ts[k] = b[k].t; }
    if (o.device && (s = build_in_memory(&r, &o, b, nb))) { free(names); free(ts); goto fail; }
    s = r.e ? kiln_context_run_tensors(r.c, nb, names, ts, n_out, outs) : kiln_model_run(r.m, nb, names, ts, n_out, outs);
    free(names);
    free(ts);
    if (s) goto fail;
    if (o.output) {
        kiln_named_tensor *items = kiln_calloc((size_t)(n_out ? n_out : 1), sizeof *items);
        if (!items) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
        for (int j = 0; j < n_out; j++) items[j] = (kiln_named_tensor){(char *)r_output_name(&r, j), outs[j]};
        s = kiln_npz_write(o.output, items, n_out, false);
        free(items);
        if (s) goto fail;
    } else {
        for (int j = 0; j < n_out; j++) print_output(r_output_name(&r, j), outs[j], o.print);
    }
    rc = 0;
fail:
    if (rc) cli_fail(s);
    for (int j = 0; outs && j < n_out; j++) kiln_tensor_destroy(outs[j]);
    free(outs);
    /* npz tensors are owned through the bindings that took them over */
    for (int k = 0; k < n_npz; k++) { free(npz[k].name); }
    free(npz);
    for (int k = 0; b && k < nb; k++) { free(b[k].name); kiln_tensor_destroy(b[k].t); }
    free(b);
    kiln_context_destroy(r.c);
    kiln_engine_destroy(r.e);
    kiln_model_destroy(r.m);
    return rc;
}
