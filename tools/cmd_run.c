/* cmd_run.c — `kiln run`: load a model, bind inputs from .npy/.npz files (or seeded random
 * data), run it with the reference backend, print a summary of each output or save them all
 * to an .npz keyed by output name. */
#include "cli.h"

#include "core/core.h"
#include "io/npy.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void help(void) {
    printf("usage: kiln run MODEL.onnx [options]\n\n"
           "Runs MODEL with the reference backend and prints each output's name, shape and first values,\n"
           "or saves them with --output.\n\n"
           "options:\n"
           "  --inputs FILE.npz         inputs keyed by graph input name\n"
           "  --input NAME=FILE.npy     one input (repeatable); 'FILE.npy' alone when the model has one input\n"
           "  --random                  fill every input not given with seeded random data\n"
           "  --seed N                  seed for --random (default 1)\n"
           "  --shapes NAME:AxBxC,...   shapes for --random where the model's are dynamic\n"
           "  --output FILE.npz         save the outputs, keyed by graph output name\n"
           "  --print N                 values shown per output (default 6)\n"
           "  -h, --help                this text\n\n"
           "Exit status: 0 on success, 1 when loading or running fails (one line on stderr), 2 on bad usage.\n");
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
    bool random;
    uint64_t seed;
    int print;
} run_opts;

/* xorshift64*: a small, documented, seedable generator for input data. */
static double next_uniform(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static bool parse_shape_for(const char *spec, const char *name, int *rank, int64_t *dims) {
    const char *p = spec;
    size_t nl = strlen(name);
    while (p && *p) {
        const char *colon = strrchr(p, ':');
        const char *comma = strchr(p, ',');
        /* entries are NAME:AxB separated by commas; names may hold ':' so find the entry end first */
        const char *end = comma ? comma : p + strlen(p);
        colon = NULL;
        for (const char *q = p; q < end; q++)
            if (*q == ':') colon = q;
        if (colon && (size_t)(colon - p) == nl && strncmp(p, name, nl) == 0) {
            *rank = 0;
            const char *d = colon + 1;
            while (d < end && *rank < KILN_MAX_RANK) {
                char *e;
                dims[(*rank)++] = strtoll(d, &e, 10);
                d = (*e == 'x') ? e + 1 : end;
            }
            return true;
        }
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

static kiln_status random_input(const kiln_model_t *m, int i, const run_opts *o, uint64_t *state, kiln_tensor **out) {
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    KILN_TRY(kiln_model_input_info(m, i, &dt, &rank, dims));
    const char *name = kiln_model_input_name(m, i);
    if (o->shapes) parse_shape_for(o->shapes, name, &rank, dims);
    if (rank < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has no declared shape: give it with --shapes", name);
    for (int k = 0; k < rank; k++)
        if (dims[k] < 0)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "input '%s' has a dynamic dim %d: give its shape with --shapes %s:...", name, k, name);
    KILN_TRY(kiln_tensor_create(dt, rank, dims, out));
    int64_t n = kiln_tensor_count(*out);
    for (int64_t k = 0; k < n; k++) {
        double u = next_uniform(state);
        if (kiln_dtype_is_float(dt)) kiln_store_f64(dt, (*out)->data, k, u * 2.0 - 1.0);
        else if (dt == KILN_DTYPE_BOOL) kiln_store_i64(dt, (*out)->data, k, u < 0.5);
        else kiln_store_i64(dt, (*out)->data, k, (int64_t)(u * 8.0));
    }
    return KILN_STATUS_OK;
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
        case 'h': help(); return -1;
        default: return cli_usage_error("run", "bad option");
        }
    }
    if (optind != argc - 1) return cli_usage_error("run", "expected exactly one MODEL argument");
    o->model = argv[optind];
    return 0;
}

int cmd_run(int argc, char **argv) {
    run_opts o = {.seed = 1, .print = 6};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;

    kiln_model_t *m = NULL;
    kiln_status s = kiln_model_load(o.model, &m);
    if (s) return cli_fail(s);
    int n_in = kiln_model_num_inputs(m), n_out = kiln_model_num_outputs(m);
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
            name = kiln_strdup(kiln_model_input_name(m, 0));
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
        uint64_t state = o.seed * 0x9E3779B97F4A7C15ull + 1;
        for (int i = 0; i < n_in; i++) {
            const char *name = kiln_model_input_name(m, i);
            bool given = false;
            for (int k = 0; k < nb; k++) given |= strcmp(b[k].name, name) == 0;
            if (given) continue;
            b[nb].name = kiln_strdup(name);
            if ((s = random_input(m, i, &o, &state, &b[nb].t))) { nb++; goto fail; }
            nb++;
        }
    }
    const char **names = kiln_calloc((size_t)(nb ? nb : 1), sizeof *names);
    kiln_tensor_t **ts = kiln_calloc((size_t)(nb ? nb : 1), sizeof *ts);
    if (!names || !ts) { free(names); free(ts); s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
    for (int k = 0; k < nb; k++) { names[k] = b[k].name; ts[k] = b[k].t; }
    s = kiln_model_run(m, nb, names, ts, n_out, outs);
    free(names);
    free(ts);
    if (s) goto fail;
    if (o.output) {
        kiln_named_tensor *items = kiln_calloc((size_t)(n_out ? n_out : 1), sizeof *items);
        if (!items) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto fail; }
        for (int j = 0; j < n_out; j++) items[j] = (kiln_named_tensor){(char *)kiln_model_output_name(m, j), outs[j]};
        s = kiln_npz_write(o.output, items, n_out, false);
        free(items);
        if (s) goto fail;
    } else {
        for (int j = 0; j < n_out; j++) print_output(kiln_model_output_name(m, j), outs[j], o.print);
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
    kiln_model_destroy(m);
    return rc;
}
