/* compare_bisect.c — `kiln compare --bisect-precision`: Polygraphy's precision debugging, automated.
 * Given a reduced-precision build (INT8, FP16) that fails the thresholds, find a small set of
 * layers to keep in fp32 so that it passes:
 *   1. every candidate layer in fp32 must pass (else precision is not the cause: say so);
 *   2. score each layer by the error of a build where only it is reduced;
 *   3. bisect over k for the fewest top-scored layers whose fp32 build passes;
 *   4. greedily drop layers of that set (lowest score first) while it still passes.
 * Each trial rebuilds with kiln_builder_set_layer_precision (calibration read from one cache) and
 * reruns every step against the reference's recorded outputs. Prints the --layer-precision flags. */
#include "compare.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

typedef struct bisect {
    cmp_opts o;                 /* the session's options, quiet */
    const cmp_signature *sig;
    cmp_runner *ref;
    const kiln_model_t *model;
    const cmp_tensors *sample;
    const char *cache;
    int builds;
    bool progress;
} bisect;

typedef struct layer {
    const char *name;
    double score;
    bool pass_alone;
} layer;

/* Builds with `fp32` layers kept in fp32, runs every step; *pass and *score say how it went. */
static kiln_status trial(bisect *b, const char *const *fp32, int n, bool *pass, double *score) {
    kiln_engine_t *e;
    KILN_TRY(cmp_build_engine(&b->o.build, b->o.shapes, b->model, b->sample, fp32, n, b->cache, &e));
    b->builds++;
    cmp_runner tgt = {0};
    snprintf(tgt.path, sizeof tgt.path, "%s", b->o.tgt_path ? b->o.tgt_path : b->o.ref_path);
    kiln_status s = cmp_runner_from_engine(&tgt, e, "trial build", b->o.profile);
    cmp_result res = {0};
    if (!s) s = cmp_session_run(&b->o, b->sig, b->ref, &tgt, &res, NULL, NULL);
    if (!s) *pass = res.pass, *score = cmp_result_score(&res);
    cmp_result_free(&res);
    cmp_runner_close(&tgt);
    return s;
}

static int by_score(const void *a, const void *b) {
    double x = ((const layer *)a)->score, y = ((const layer *)b)->score;
    return (x < y) - (x > y);
}

static void progress(const bisect *b, const char *fmt, const char *what, int i, int n) {
    if (!b->progress) return;
    fprintf(stderr, "\r\033[Kkiln compare: bisect: ");
    fprintf(stderr, fmt, what, i, n);
}

/* The top k layers by score, as names. */
static void top(const layer *ls, int k, const char **out) {
    for (int i = 0; i < k; i++) out[i] = ls[i].name;
}

static kiln_status search(bisect *b, layer *ls, int n, const char **set, int *n_set, bool *all_pass) {
    const char **names = kiln_calloc((size_t)n + 1, sizeof *names);
    if (!names) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status s;
    bool pass;
    double score;
    /* 1: everything in fp32 */
    progress(b, "%s (%d/%d)", "every layer in fp32", 1, 1);
    for (int i = 0; i < n; i++) names[i] = ls[i].name;
    if ((s = trial(b, names, n, all_pass, &score)) || !*all_pass) goto done;
    /* 2: one layer reduced at a time */
    for (int i = 0; i < n; i++) {
        progress(b, "scoring layer '%s' (%d/%d)", ls[i].name, i + 1, n);
        int m = 0;
        for (int j = 0; j < n; j++)
            if (j != i) names[m++] = ls[j].name;
        if ((s = trial(b, names, m, &ls[i].pass_alone, &ls[i].score))) goto done;
    }
    qsort(ls, (size_t)n, sizeof *ls, by_score);
    /* 3: the fewest top layers (0 fails: the caller knows; n passes: step 1) */
    int lo = 0, hi = n;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        progress(b, "%s top %d", "trying the", mid, 0);
        top(ls, mid, names);
        if ((s = trial(b, names, mid, &pass, &score))) goto done;
        if (pass) hi = mid;
        else lo = mid;
    }
    top(ls, hi, set);
    *n_set = hi;
    /* 4: drop what is not needed, least important first */
    for (int i = *n_set - 1; i >= 0 && *n_set > 1; i--) {
        progress(b, "trying without '%s' (%d/%d)", set[i], *n_set - i, *n_set);
        int m = 0;
        for (int j = 0; j < *n_set; j++)
            if (j != i) names[m++] = set[j];
        if ((s = trial(b, names, m, &pass, &score))) goto done;
        if (!pass) continue;
        memmove(&set[i], &set[i + 1], sizeof *set * (size_t)(*n_set - i - 1));
        (*n_set)--;
    }
done:
    if (b->progress) fprintf(stderr, "\r\033[K");
    free(names);
    return s;
}

static void report(const bisect *b, const layer *ls, int n, const char **set, int n_set, bool all_pass, const char *flags,
                   const char *command, cJSON *json) {
    if (json) {
        cJSON *j = cJSON_AddObjectToObject(json, "bisect");
        cJSON *c = cJSON_AddArrayToObject(j, "candidates");
        for (int i = 0; all_pass && i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "layer", ls[i].name);
            cJSON_AddNumberToObject(e, "score", isfinite(ls[i].score) ? ls[i].score : 1e300);
            cJSON_AddBoolToObject(e, "pass_alone", ls[i].pass_alone);
            cJSON_AddItemToArray(c, e);
        }
        cJSON_AddNumberToObject(j, "layers", n);
        cJSON_AddBoolToObject(j, "all_fp32_pass", all_pass);
        cJSON *k = cJSON_AddArrayToObject(j, "keep_fp32");
        for (int i = 0; i < n_set; i++) cJSON_AddItemToArray(k, cJSON_CreateString(set[i]));
        cJSON_AddStringToObject(j, "flags", flags);
        cJSON_AddStringToObject(j, "command", command);
        cJSON_AddNumberToObject(j, "builds", b->builds);
        cJSON_AddBoolToObject(j, "pass", all_pass);
        return;
    }
    printf("\nbisect-precision: %d layer%s at reduced precision\n", n, n == 1 ? "" : "s");
    if (!all_pass) {
        printf("  even with every one of them in fp32 the comparison fails: the difference does not come from precision\n");
        return;
    }
    printf("  %-32s %-12s %s\n", "layer", "error score", "alone (only it reduced)");
    for (int i = 0; i < n; i++) printf("  %-32s %-12.4g %s\n", ls[i].name, ls[i].score, ls[i].pass_alone ? "pass" : "FAIL");
    printf("  keeping %d layer%s in fp32 passes (%d trial builds):", n_set, n_set == 1 ? "" : "s", b->builds);
    for (int i = 0; i < n_set; i++) printf("%s %s", i ? "," : "", set[i]);
    printf("\nflags: %s\n%s\n", flags, command);
}

kiln_status cmp_bisect(const cmp_opts *o, const cmp_signature *sig, cmp_runner *ref, const kiln_model_t *model, const cmp_tensors *sample,
                       const char *cache, char **cands, int n, cJSON *json, bool *passed) {
    bisect b = {.o = *o, .sig = sig, .ref = ref, .model = model, .sample = sample, .cache = cache, .progress = o->progress};
    b.o.progress = false;
    b.o.plot = b.o.save_ref = b.o.save_inputs = NULL;
    b.o.build.progress = false;
    *passed = false;
    if (n == 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "--bisect-precision: the target has no layer at reduced precision to keep in fp32");
    layer *ls = kiln_calloc((size_t)n, sizeof *ls);
    const char **set = kiln_calloc((size_t)n, sizeof *set);
    if (!ls || !set) {
        free(ls);
        free(set);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    for (int i = 0; i < n; i++) ls[i].name = cands[i];
    int n_set = 0;
    bool all_pass = false;
    kiln_status s = search(&b, ls, n, set, &n_set, &all_pass);
    if (!s) {
        char flags[8192] = "", command[16384];
        size_t u = 0;
        for (int i = 0; i < n_set && u < sizeof flags; i++)
            u += (size_t)snprintf(flags + u, sizeof flags - u, "%s--layer-precision %s:fp32", i ? " " : "", set[i]);
        const char *model_path = o->tgt_path && !cli_is_engine(o->tgt_path) ? o->tgt_path : o->ref_path;
        snprintf(command, sizeof command, "kiln build %s -o OUT.kiln", model_path);
        cmp_build_flags(&o->build, o->shapes, command, sizeof command);
        size_t c = strlen(command);
        snprintf(command + c, sizeof command - c, " %s", flags);
        report(&b, ls, n, set, n_set, all_pass, flags, command, json);
        *passed = all_pass;
    }
    free(ls);
    free(set);
    return s;
}
