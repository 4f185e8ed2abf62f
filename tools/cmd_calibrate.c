/* cmd_calibrate.c — `kiln calibrate`: run an ONNX model's FP32 graph over calibration data (an
 * .npz, a folder of .npy/.npz files, or a folder of images), print per tensor what was seen and
 * the amax every method chooses, and write the INT8 calibration cache of the chosen method. */
#include "cli.h"

#include "core/core.h"
#include "onnx/import.h"
#include "quant/cache.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"
#include "quant/collect.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: kiln calibrate MODEL.onnx (--calib FILE.npz | --calib-dir DIR | --calib-images DIR) [options]\n\n"
           "Runs the model's FP32 graph (the reference interpreter, on the original, unfused graph) over the\n"
           "calibration data and observes every float graph input and node output. Prints, per tensor, the\n"
           "values seen, min, max, max|x| and the amax each method chooses, with the chosen method's int8 scale\n"
           "(amax / 127), and writes the calibration cache (TensorRT's text format) with --cache.\n\n"
           "data (exactly one):\n"
           "  --calib FILE.npz          one array per input name, samples stacked on a leading axis\n"
           "  --calib-dir DIR           .npy/.npz files, one sample (or batch) each, in file name order;\n"
           "                            .npy only for models with one required input\n"
           "  --calib-images DIR        .jpg/.jpeg/.png/.bmp files, searched recursively (ImageFolder layout),\n"
           "                            in sorted order, preprocessed by --calib-preprocess\n"
           "  --calib-preprocess SPEC   for --calib-images, e.g. resize=256,crop=224,mean=0.485:0.456:0.406,\n"
           "                            std=0.229:0.224:0.225,layout=nchw,scale=255 (also order=rgb|bgr):\n"
           "                            resize the shorter side (N) or to HxW, bilinear with antialiasing;\n"
           "                            center crop (N or HxW); x = (pixel / scale - mean) / std per channel;\n"
           "                            defaults: no resize or crop, mean 0, std 1, scale 255, nchw, rgb\n"
           "options:\n"
           "  --calib-batch N           samples per batch, joined along the model's batch axis (default 1)\n"
           "  --calib-max N             use at most the first N samples\n"
           "  --method M                minmax, entropy (default; TensorRT's EntropyCalibrator2), percentile, mse\n"
           "  --percentile P            the percentile method's p, in (0, 100] (default 99.99)\n"
           "  --cache OUT.cache         write the cache of the chosen method (written atomically)\n"
           "  --json                    print the report as JSON\n"
           "  -h, --help                this text\n\n"
           "A sample is one slice of the npz's leading axis, one file, or one image. With rank one less than the\n"
           "model's input, samples are stacked into batches; with the same rank, they are concatenated along\n"
           "axis 0. Shapes and dtypes are checked against the model's inputs.\n"
           "Progress goes to stderr when it is a terminal. Exit status: 0 on success, 1 when loading, reading\n"
           "the data, running or writing fails (one line on stderr), 2 on bad usage.\n");
}

typedef struct calib_opts {
    const char *model, *npz, *dir, *images, *preprocess, *cache;
    int64_t batch, max;
    kiln_calib_method method;
    double percentile;
    bool json;
} calib_opts;

static bool parse_count(const char *s, int64_t *out) {
    errno = 0;
    char *e;
    long long v = strtoll(s, &e, 10);
    if (errno || e == s || *e || v < 1) return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, calib_opts *o) {
    static const struct option opts[] = {
        {"calib", required_argument, 0, 'c'},        {"calib-dir", required_argument, 0, 'd'},
        {"calib-images", required_argument, 0, 'i'}, {"calib-preprocess", required_argument, 0, 'p'},
        {"calib-batch", required_argument, 0, 'b'},  {"calib-max", required_argument, 0, 'm'},
        {"method", required_argument, 0, 'M'},       {"percentile", required_argument, 0, 'P'},
        {"cache", required_argument, 0, 'o'},        {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->npz = optarg; break;
        case 'd': o->dir = optarg; break;
        case 'i': o->images = optarg; break;
        case 'p': o->preprocess = optarg; break;
        case 'b':
            if (!parse_count(optarg, &o->batch)) return cli_usage_error("calibrate", "--calib-batch %s: expected an integer >= 1", optarg);
            break;
        case 'm':
            if (!parse_count(optarg, &o->max)) return cli_usage_error("calibrate", "--calib-max %s: expected an integer >= 1", optarg);
            break;
        case 'M':
            if (kiln_calib_method_parse(optarg, &o->method) != KILN_STATUS_OK)
                return cli_usage_error("calibrate", "--method %s: expected minmax, entropy, percentile or mse", optarg);
            break;
        case 'P': {
            char *e;
            errno = 0;
            o->percentile = strtod(optarg, &e);
            if (errno || e == optarg || *e || !(o->percentile > 0 && o->percentile <= 100))
                return cli_usage_error("calibrate", "--percentile %s: expected a number in (0, 100]", optarg);
            break;
        }
        case 'o': o->cache = optarg; break;
        case 'j': o->json = true; break;
        case 'h': help(); return -1;
        default:
            if (optopt) return cli_usage_error("calibrate", "option '%s' needs a value", argv[optind - 1]);
            return cli_usage_error("calibrate", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("calibrate", "expected exactly one MODEL argument");
    o->model = argv[optind];
    int n_src = !!o->npz + !!o->dir + !!o->images;
    if (n_src != 1)
        return cli_usage_error("calibrate", "give exactly one of --calib FILE.npz, --calib-dir DIR, --calib-images DIR");
    if (o->preprocess && !o->images) return cli_usage_error("calibrate", "--calib-preprocess applies to --calib-images");
    return 0;
}

static void progress(int64_t done, int64_t total, void *user) {
    (void)user;
    fprintf(stderr, "\rcalibrating: batch %lld/%lld", (long long)done, (long long)total);
    if (done == total) fprintf(stderr, "\n");
    fflush(stderr);
}

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The chosen scale of a tensor (valid ones only). */
static float chosen_scale(const kiln_calib_tensor *t, kiln_calib_method m) { return kiln_calib_scale(t->amax[m]); }

/* A number printed with the fewest digits that read back as the same double (cJSON's own printing
 * accepts a near miss in the last bit), or null. */
static void json_num_or_null(cJSON *obj, const char *key, double v, bool ok) {
    if (!ok || !isfinite(v)) {
        cJSON_AddNullToObject(obj, key);
        return;
    }
    char buf[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    cJSON_AddRawToObject(obj, key, buf);
}

static int print_json(const calib_opts *o, const kiln_calib_source *src, const kiln_calib_result *r) {
    cJSON *j = cJSON_CreateObject();
    char hex[32];
    cJSON_AddStringToObject(j, "model", o->model);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->fingerprint);
    cJSON_AddStringToObject(j, "fingerprint", hex);
    cJSON *s = cJSON_AddObjectToObject(j, "source");
    cJSON_AddStringToObject(s, "kind", kiln_calib_source_kind_name(kiln_calib_source_kind_of(src)));
    cJSON_AddStringToObject(s, "path", kiln_calib_source_path(src));
    cJSON_AddNumberToObject(s, "available", (double)kiln_calib_source_available(src));
    cJSON_AddNumberToObject(s, "samples", (double)r->samples);
    cJSON_AddNumberToObject(s, "batches", (double)r->batches);
    cJSON_AddNumberToObject(s, "batch_size", (double)kiln_calib_source_batch_size(src));
    cJSON *ign = cJSON_AddArrayToObject(s, "ignored");
    for (const char *const *p = kiln_calib_source_ignored(src); *p; p++) cJSON_AddItemToArray(ign, cJSON_CreateString(*p));
    cJSON_AddStringToObject(j, "method", kiln_calib_method_name(o->method));
    cJSON_AddStringToObject(j, "cache_algorithm", kiln_calib_method_cache_name(o->method));
    json_num_or_null(j, "percentile", r->options.percentile, true);
    if (o->cache) cJSON_AddStringToObject(j, "cache", o->cache);
    else cJSON_AddNullToObject(j, "cache");
    cJSON *ts = cJSON_AddArrayToObject(j, "tensors");
    for (int64_t k = 0; k < r->n; k++) {
        const kiln_calib_tensor *t = &r->tensors[k];
        const kiln_observer *ob = t->obs;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", t->name);
        cJSON_AddStringToObject(x, "kind", t->is_input ? "input" : "activation");
        cJSON_AddStringToObject(x, "op", t->op);
        cJSON_AddStringToObject(x, "dtype", kiln_dtype_name(t->dtype));
        cJSON_AddNumberToObject(x, "values", (double)ob->count);
        cJSON_AddNumberToObject(x, "nan", (double)ob->nan_count);
        cJSON_AddNumberToObject(x, "inf", (double)ob->inf_count);
        cJSON_AddNumberToObject(x, "batches", (double)ob->batches);
        bool seen = ob->count > 0;
        json_num_or_null(x, "min", ob->min, seen);
        json_num_or_null(x, "max", ob->max, seen);
        json_num_or_null(x, "max_abs", ob->max_abs, seen);
        cJSON *a = cJSON_AddObjectToObject(x, "amax");
        for (int m = 0; m < KILN_CALIB_METHOD_COUNT; m++)
            json_num_or_null(a, kiln_calib_method_name((kiln_calib_method)m), t->amax[m], t->valid);
        if (t->valid) {
            float sc = chosen_scale(t, o->method);
            json_num_or_null(x, "scale", (double)sc, true);
            snprintf(hex, sizeof hex, "%08x", (unsigned)float_bits(sc));
            cJSON_AddStringToObject(x, "scale_hex", hex);
        } else {
            cJSON_AddNullToObject(x, "scale");
            cJSON_AddNullToObject(x, "scale_hex");
        }
        cJSON_AddItemToArray(ts, x);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) {
        kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory printing the JSON report");
        return cli_fail(KILN_STATUS_OUT_OF_MEMORY);
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

static void print_g(double v, bool ok) {
    if (ok) printf(" %12.6g", v);
    else printf(" %12s", "-");
}

static void print_table(const calib_opts *o, const kiln_calib_source *src, const kiln_calib_result *r, int64_t n_cached) {
    printf("model %s: %lld sample(s) from %s (%s) in %lld batch(es) of %lld\n", o->model, (long long)r->samples,
           kiln_calib_source_path(src), kiln_calib_source_kind_name(kiln_calib_source_kind_of(src)), (long long)r->batches,
           (long long)kiln_calib_source_batch_size(src));
    printf("method %s (cache algorithm %s), percentile %g, fingerprint %016llx\n\n", kiln_calib_method_name(o->method),
           kiln_calib_method_cache_name(o->method), r->options.percentile, (unsigned long long)r->fingerprint);
    int w = 6;
    bool nonfinite = false;
    for (int64_t k = 0; k < r->n; k++) {
        int len = (int)strlen(r->tensors[k].name);
        if (len > w) w = len;
        nonfinite |= r->tensors[k].obs->nan_count || r->tensors[k].obs->inf_count;
    }
    if (w > 48) w = 48;
    printf("%-*s %-14s %12s %12s %12s %12s %12s %12s %12s %12s %12s", w, "tensor", "op", "values", "min", "max", "max|x|",
           "minmax", "entropy", "percentile", "mse", "scale");
    if (nonfinite) printf(" %10s %10s", "nan", "inf");
    printf("\n");
    for (int64_t k = 0; k < r->n; k++) {
        const kiln_calib_tensor *t = &r->tensors[k];
        const kiln_observer *ob = t->obs;
        bool seen = ob->count > 0;
        printf("%-*s %-14s %12lld", w, t->name, t->is_input ? "(input)" : t->op, (long long)ob->count);
        print_g(ob->min, seen);
        print_g(ob->max, seen);
        print_g(ob->max_abs, seen);
        for (int m = 0; m < KILN_CALIB_METHOD_COUNT; m++) print_g(t->amax[m], t->valid);
        print_g(t->valid ? (double)chosen_scale(t, o->method) : 0, t->valid);
        if (nonfinite) printf(" %10lld %10lld", (long long)ob->nan_count, (long long)ob->inf_count);
        printf("\n");
    }
    printf("\n%lld tensor(s)", (long long)r->n);
    if (o->cache) printf("; cache written to %s (%lld entries, %s)", o->cache, (long long)n_cached, kiln_calib_method_cache_name(o->method));
    printf("\n");
}

/* Warnings about tensors that calibration could not or only partly use. */
static void warn_tensors(const kiln_calib_result *r) {
    int64_t n_bad = 0, n_nonfinite = 0;
    char bad[600] = "", nf[600] = "";
    size_t kb = 0, kn = 0;
    for (int64_t k = 0; k < r->n; k++) {
        const kiln_calib_tensor *t = &r->tensors[k];
        if (!t->valid) {
            if (n_bad < 5 && kb < sizeof bad) kb += (size_t)snprintf(bad + kb, sizeof bad - kb, "%s'%s'", n_bad ? ", " : "", t->name);
            n_bad++;
        } else if (t->obs->nan_count || t->obs->inf_count) {
            if (n_nonfinite < 5 && kn < sizeof nf)
                kn += (size_t)snprintf(nf + kn, sizeof nf - kn, "%s'%s' (%lld NaN, %lld Inf)", n_nonfinite ? ", " : "", t->name,
                                       (long long)t->obs->nan_count, (long long)t->obs->inf_count);
            n_nonfinite++;
        }
    }
    if (n_bad)
        fprintf(stderr, "kiln calibrate: warning: %lld tensor(s) saw no finite value and are left out of the cache: %s%s\n",
                (long long)n_bad, bad, n_bad > 5 ? ", ..." : "");
    if (n_nonfinite)
        fprintf(stderr, "kiln calibrate: warning: %lld tensor(s) saw NaN or Inf values, which calibration ignores: %s%s\n",
                (long long)n_nonfinite, nf, n_nonfinite > 5 ? ", ..." : "");
}

int cmd_calibrate(int argc, char **argv) {
    calib_opts o = {.method = KILN_CALIB_ENTROPY};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;

    kiln_calib_preprocess pp;
    kiln_calib_preprocess_default(&pp);
    kiln_status s;
    if (o.preprocess && (s = kiln_calib_preprocess_parse(o.preprocess, &pp))) return cli_fail(kiln_error_prefix(s, "--calib-preprocess"));

    kiln_model_t *model = NULL;
    if ((s = kiln_model_load(o.model, &model))) return cli_fail(s);
    const kiln_model *m = model;

    kiln_calib_source_kind kind = o.npz ? KILN_CALIB_SOURCE_NPZ : o.dir ? KILN_CALIB_SOURCE_DIR : KILN_CALIB_SOURCE_IMAGES;
    const char *path = o.npz ? o.npz : o.dir ? o.dir : o.images;
    kiln_calib_source_options so = {.batch = o.batch, .max_samples = o.max, .preprocess = &pp};
    kiln_calib_source *src = NULL;
    kiln_calib_result *r = NULL;
    const char **names = NULL;
    float *scales = NULL;
    int64_t n_cached = 0;
    rc = 1;
    if ((s = kiln_calib_source_open(kind, m, path, &so, &src))) goto out;
    for (const char *const *p = kiln_calib_source_ignored(src); *p; p++)
        fprintf(stderr, "kiln calibrate: note: %s: array '%s' names no model input; ignored\n", path, *p);

    kiln_calib_options co = {.percentile = o.percentile};
    if ((s = kiln_calib_collect(m, src, &co, cli_interactive() ? progress : NULL, NULL, &r))) goto out;
    warn_tensors(r);

    if (o.cache) {
        names = kiln_calloc((size_t)(r->n ? r->n : 1), sizeof *names);
        scales = kiln_calloc((size_t)(r->n ? r->n : 1), sizeof *scales);
        if (!names || !scales) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); goto out; }
        for (int64_t k = 0; k < r->n; k++) {
            if (!r->tensors[k].valid) continue;
            names[n_cached] = r->tensors[k].name;
            scales[n_cached++] = chosen_scale(&r->tensors[k], o.method);
        }
        if ((s = kiln_calib_cache_write(o.cache, kiln_calib_method_cache_name(o.method), r->fingerprint, names, scales, n_cached)))
            goto out;
    }
    if (o.json) rc = print_json(&o, src, r);
    else {
        print_table(&o, src, r, n_cached);
        rc = 0;
    }
    if (fflush(stdout) != 0) {
        s = kiln_error(KILN_STATUS_IO_ERROR, "cannot write the report to stdout");
        rc = 1;
    }
out:
    if (rc == 1 && s) cli_fail(s);
    free(names);
    free(scales);
    kiln_calib_result_free(r);
    kiln_calib_source_destroy(src);
    kiln_model_destroy(model);
    return rc;
}
