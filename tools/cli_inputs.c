/* cli_inputs.c — seeded random inputs and step-wise input data for the CLI (see cli_inputs.h).
 * Tested through `kiln compare` by tests/models/test_compare.py. */
#include "cli_inputs.h"

#include "core/core.h"
#include "io/npy.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void cli_rng_seed(cli_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 1; }

/* xorshift64*: small, documented and the same on every platform. */
double cli_rng_uniform(cli_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (double)((r->s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

int cli_parse_range(const char *arg, cli_range *out) {
    memset(out, 0, sizeof *out);
    const char *nums = arg, *colon = strrchr(arg, ':');
    if (colon) {
        size_t n = (size_t)(colon - arg);
        if (n == 0 || n >= sizeof out->name) return -1;
        memcpy(out->name, arg, n);
        nums = colon + 1;
    }
    char *e;
    out->lo = strtod(nums, &e);
    if (e == nums || *e != ',') return -1;
    const char *h = e + 1;
    out->hi = strtod(h, &e);
    if (e == h || *e || !(out->lo <= out->hi) || !isfinite(out->lo) || !isfinite(out->hi)) return -1;
    return 0;
}

void cli_range_for(const cli_range *ranges, int n, const char *name, kiln_dtype dt, double *lo, double *hi) {
    const cli_range *any = NULL;
    for (int i = 0; i < n; i++) {
        if (strcmp(ranges[i].name, name) == 0) {
            *lo = ranges[i].lo;
            *hi = ranges[i].hi;
            return;
        }
        if (!ranges[i].name[0]) any = &ranges[i];
    }
    if (any) *lo = any->lo, *hi = any->hi;
    else if (kiln_dtype_is_float(dt)) *lo = -1, *hi = 1;
    else if (dt == KILN_DTYPE_BOOL) *lo = 0, *hi = 1;
    else *lo = 0, *hi = 7;
}

kiln_status cli_random_tensor(kiln_dtype dt, int rank, const int64_t *dims, double lo, double hi, cli_rng *rng,
                              kiln_tensor_t **out) {
    if (dt == KILN_DTYPE_STRING) return kiln_error(KILN_STATUS_UNSUPPORTED, "random data for string inputs");
    KILN_TRY(kiln_tensor_create(dt, rank, dims, out));
    int64_t n = kiln_tensor_count(*out);
    bool is_float = kiln_dtype_is_float(dt);
    double ilo = ceil(lo), ihi = floor(hi);
    if (!is_float && ilo > ihi) ilo = ihi = round(lo);
    for (int64_t k = 0; k < n; k++) {
        double u = cli_rng_uniform(rng);
        if (is_float) kiln_store_f64(dt, (*out)->data, k, lo + u * (hi - lo));
        else if (dt == KILN_DTYPE_BOOL && ilo < ihi) kiln_store_i64(dt, (*out)->data, k, u < 0.5); /* as kiln run and bench */
        else kiln_store_i64(dt, (*out)->data, k, (int64_t)(ilo + floor(u * (ihi - ilo + 1))));
    }
    return KILN_STATUS_OK;
}

kiln_status cli_tensor_slice(const kiln_tensor_t *t, int64_t k, kiln_tensor_t **out) {
    if (t->rank < 1 || k < 0 || k >= t->dims[0])
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "step %lld is beyond the leading axis (%lld)", (long long)k,
                          (long long)(t->rank ? t->dims[0] : 0));
    KILN_TRY(kiln_tensor_create(t->dtype, t->rank - 1, t->dims + 1, out));
    size_t bytes = kiln_tensor_nbytes(*out);
    memcpy((*out)->data, (const char *)t->data + bytes * (size_t)k, bytes);
    return KILN_STATUS_OK;
}

kiln_status cli_tensor_stack(kiln_tensor_t *const *ts, int64_t n, kiln_tensor_t **out) {
    if (n < 1 || ts[0]->rank >= KILN_MAX_RANK)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "cannot stack %lld tensors of rank %d", (long long)n, n ? ts[0]->rank : 0);
    int64_t dims[KILN_MAX_RANK];
    dims[0] = n;
    memcpy(dims + 1, ts[0]->dims, sizeof(int64_t) * (size_t)ts[0]->rank);
    for (int64_t k = 1; k < n; k++)
        if (ts[k]->dtype != ts[0]->dtype || ts[k]->rank != ts[0]->rank ||
            memcmp(ts[k]->dims, ts[0]->dims, sizeof(int64_t) * (size_t)ts[0]->rank)) {
            char a[128], b[128];
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "cannot stack steps of different shapes: step 0 is %s, step %lld is %s",
                              kiln_tensor_describe(ts[0], a, sizeof a), (long long)k, kiln_tensor_describe(ts[k], b, sizeof b));
        }
    KILN_TRY(kiln_tensor_create(ts[0]->dtype, ts[0]->rank + 1, dims, out));
    size_t bytes = kiln_tensor_nbytes(ts[0]);
    for (int64_t k = 0; k < n; k++) memcpy((char *)(*out)->data + bytes * (size_t)k, ts[k]->data, bytes);
    return KILN_STATUS_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static kiln_status open_dir(const char *path, cli_data *d) {
    DIR *dir = opendir(path);
    if (!dir) return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot open the folder", path);
    struct dirent *ent;
    kiln_status s = KILN_STATUS_OK;
    int cap = 0;
    while ((ent = readdir(dir))) {
        if (ent->d_name[0] == '.' || !(ends_with(ent->d_name, ".npy") || ends_with(ent->d_name, ".npz"))) continue;
        if (d->n_files == cap) {
            cap = cap ? cap * 2 : 16;
            char **nf = realloc(d->files, sizeof *nf * (size_t)cap);
            if (!nf) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); break; }
            d->files = nf;
        }
        size_t n = strlen(path) + strlen(ent->d_name) + 2;
        char *f = kiln_malloc(n);
        if (!f) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); break; }
        snprintf(f, n, "%s/%s", path, ent->d_name);
        d->files[d->n_files++] = f;
    }
    closedir(dir);
    if (s) return s;
    if (!d->n_files) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: the folder holds no .npy or .npz file", path);
    qsort(d->files, (size_t)d->n_files, sizeof *d->files, cmp_str);
    return KILN_STATUS_OK;
}

kiln_status cli_data_open(const char *path, cli_data *d) {
    memset(d, 0, sizeof *d);
    struct stat st;
    if (stat(path, &st)) return kiln_error(KILN_STATUS_IO_ERROR, "%s: no such file or folder", path);
    d->path = kiln_strdup(path);
    if (!d->path) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status s;
    if (S_ISDIR(st.st_mode)) {
        d->dir = true;
        s = open_dir(path, d);
    } else {
        kiln_named_tensor *items = NULL;
        int n = 0;
        s = kiln_npz_read(path, &items, &n);
        if (s == KILN_STATUS_OK) {
            d->arrays = kiln_calloc((size_t)(n ? n : 1), sizeof *d->arrays);
            if (!d->arrays) {
                kiln_named_tensors_free(items, n);
                s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
            } else {
                for (int k = 0; k < n; k++) d->arrays[k] = (struct cli_data_array){items[k].name, items[k].t};
                d->n_arrays = n;
                free(items);
            }
        }
    }
    if (s) cli_data_close(d);
    return s;
}

void cli_data_close(cli_data *d) {
    for (int k = 0; k < d->n_arrays; k++) {
        free(d->arrays[k].name);
        kiln_tensor_destroy(d->arrays[k].t);
    }
    free(d->arrays);
    for (int k = 0; k < d->n_files; k++) free(d->files[k]);
    free(d->files);
    free(d->path);
    memset(d, 0, sizeof *d);
}

kiln_status cli_data_steps(const cli_data *d, cli_rank_fn rank_of, void *user, int64_t *steps) {
    *steps = 0;
    if (d->dir) {
        *steps = d->n_files;
        return KILN_STATUS_OK;
    }
    const char *first = NULL;
    for (int k = 0; k < d->n_arrays; k++) {
        int rank = rank_of(d->arrays[k].name, user);
        const kiln_tensor *t = d->arrays[k].t;
        if (rank < 0 || t->rank != rank + 1) continue;
        if (first && t->dims[0] != *steps)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: '%s' has %lld steps but '%s' has %lld", d->path, first,
                              (long long)*steps, d->arrays[k].name, (long long)t->dims[0]);
        first = d->arrays[k].name;
        *steps = t->dims[0];
    }
    return KILN_STATUS_OK;
}

/* Reads the folder's file for `step` and takes `name` from it. */
static kiln_status dir_get(const cli_data *d, const char *name, bool only_input, int64_t step, kiln_tensor_t **out) {
    if (step >= d->n_files)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: step %lld asked for but the folder holds %d files (one per step)",
                          d->path, (long long)step, d->n_files);
    const char *f = d->files[step];
    if (ends_with(f, ".npy")) {
        if (!only_input)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: an .npy file feeds a model's only input, and this model has several: use .npz files keyed by input name", f);
        return kiln_npy_read(f, out);
    }
    kiln_named_tensor *items = NULL;
    int n = 0;
    KILN_TRY(kiln_npz_read(f, &items, &n));
    for (int k = 0; k < n; k++)
        if (strcmp(items[k].name, name) == 0) {
            *out = items[k].t;
            items[k].t = NULL;
        }
    kiln_named_tensors_free(items, n);
    return KILN_STATUS_OK;
}

kiln_status cli_data_get(const cli_data *d, const char *name, int rank, bool stepped_hint, bool only_input, int64_t step,
                         kiln_tensor_t **out) {
    *out = NULL;
    if (d->dir) return dir_get(d, name, only_input, step, out);
    for (int k = 0; k < d->n_arrays; k++) {
        if (strcmp(d->arrays[k].name, name)) continue;
        const kiln_tensor *t = d->arrays[k].t;
        bool stepped = rank >= 0 ? t->rank == rank + 1 : stepped_hint;
        if (!stepped) return kiln_tensor_clone(t, out);
        if (t->rank < 1 || step >= t->dims[0])
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: '%s' holds %lld steps, step %lld asked for", d->path, name,
                              (long long)(t->rank ? t->dims[0] : 0), (long long)step);
        return cli_tensor_slice(t, step, out);
    }
    return KILN_STATUS_OK;
}
