/* calib_data.c — calibration data sources: an .npz of stacked samples, a folder of .npy/.npz
 * files, a folder of images (stb_image + torchvision-style preprocessing). calib_data.h states
 * the rules; this file implements them. */
#include "quant/calib_data.h"

#include "io/npy.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#ifdef KILN_HAVE_STB
#include <stb/stb_image.h>
#endif

#define MAX_IMAGE_SIDE 65536
#define MAX_WALK_DEPTH 32

/* ---- small helpers -------------------------------------------------------------------------- */

typedef struct strvec {
    char **v;
    int64_t n, cap;
} strvec;

static kiln_status strvec_push(strvec *s, char *str) {
    if (!str) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, sizeof *v * (size_t)cap);
        if (!v) {
            free(str);
            return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return KILN_STATUS_OK;
}

static void strvec_free(strvec *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    *s = (strvec){0};
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join_path(const char *dir, const char *name) {
    size_t nd = strlen(dir), nn = strlen(name);
    while (nd > 1 && dir[nd - 1] == '/') nd--;
    char *p = malloc(nd + nn + 2);
    if (!p) return NULL;
    memcpy(p, dir, nd);
    p[nd] = '/';
    memcpy(p + nd + 1, name, nn + 1);
    return p;
}

static bool has_ext(const char *name, const char *ext) {
    size_t n = strlen(name), e = strlen(ext);
    return n > e && strcasecmp(name + n - e, ext) == 0;
}

#ifdef KILN_HAVE_STB
static bool is_image_name(const char *name) {
    return has_ext(name, ".jpg") || has_ext(name, ".jpeg") || has_ext(name, ".png") || has_ext(name, ".bmp");
}
#endif

/* Sorted names of a directory's entries, without "." / ".." / dot-names. */
static kiln_status list_dir(const char *dir, strvec *names) {
    DIR *d = opendir(dir);
    if (!d) return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *e;
    kiln_status s = KILN_STATUS_OK;
    errno = 0;
    while (s == KILN_STATUS_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        s = strvec_push(names, kiln_strdup(e->d_name));
    }
    if (s == KILN_STATUS_OK && errno) s = kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot read directory: %s", dir, strerror(errno));
    closedir(d);
    if (s == KILN_STATUS_OK && names->n > 1) qsort(names->v, (size_t)names->n, sizeof *names->v, cmp_str);
    return s;
}

/* Files of dir accepted by keep(); recursively (each level sorted) when recurse. */
static kiln_status collect_files(const char *dir, bool recurse, bool (*keep)(const char *), int depth, strvec *out) {
    strvec names = {0};
    kiln_status s = list_dir(dir, &names);
    for (int64_t i = 0; s == KILN_STATUS_OK && i < names.n; i++) {
        char *p = join_path(dir, names.v[i]);
        if (!p) { s = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory"); break; }
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p); /* a dangling link or a file that vanished: not data */
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (recurse) {
                if (depth >= MAX_WALK_DEPTH) s = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: directories nested deeper than %d levels", p, MAX_WALK_DEPTH);
                else s = collect_files(p, recurse, keep, depth + 1, out);
            }
            free(p);
        } else if (S_ISREG(st.st_mode) && keep(names.v[i])) {
            s = strvec_push(out, p);
        } else {
            free(p);
        }
    }
    strvec_free(&names);
    return s;
}

static bool is_array_name(const char *name) { return has_ext(name, ".npy") || has_ext(name, ".npz"); }

/* ---- the source ----------------------------------------------------------------------------- */

struct kiln_calib_source {
    kiln_calib_source_kind kind;
    const kiln_graph *g;
    char *path;
    int64_t batch, n_batches, n_samples, available;
    int64_t max_samples; /* 0: all */
    bool *fed;      /* per graph input: the data feeds it */
    /* npz */
    kiln_named_tensor *items;
    int n_items;
    int *item_of;   /* per graph input: index into items, or -1 */
    char **ignored; /* NULL-terminated */
    /* dir, images */
    strvec files;
    int only_input; /* the model's one required input (images, .npy files), or -1 */
    kiln_calib_preprocess pp;
    int channels;
    /* the current batch */
    kiln_tensor *cur;      /* g->n_inputs */
    kiln_tensor **cur_ptr; /* g->n_inputs: &cur[i] or NULL */
};

static const kiln_value *input_value(const kiln_graph *g, int i) { return &g->values[g->inputs[i]]; }
static bool input_required(const kiln_graph *g, int i) { return !(input_value(g, i)->flags & KILN_VALUE_CONST); }

/* A model dims string with symbol names: [N,3,224,224]. */
static const char *model_dims(const kiln_graph *g, const kiln_value *v, char *buf, size_t n) {
    if (v->type.rank < 0) {
        snprintf(buf, n, "(rank unknown)");
        return buf;
    }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < v->type.rank && k < n; i++) {
        int64_t d = v->type.dims[i];
        const char *sep = i ? "," : "";
        if (d >= 0) k += (size_t)snprintf(buf + k, n - k, "%s%lld", sep, (long long)d);
        else if (d <= -2 && -2 - d < g->n_symbols) k += (size_t)snprintf(buf + k, n - k, "%s%s", sep, g->symbols[-2 - d]);
        else k += (size_t)snprintf(buf + k, n - k, "%s?", sep);
    }
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static const char *dims_of(int rank, const int64_t *dims, char *buf, size_t n) { return kiln_dims_str(rank, dims, buf, n); }

/* Whether batch units of rank ru are stacked (true) or concatenated (false) for input i. */
static kiln_status unit_layout(const kiln_calib_source *s, int i, const kiln_tensor *u, const char *what, bool *stack) {
    const kiln_value *v = input_value(s->g, i);
    int R = v->type.rank;
    if (R < 0 || u->rank == R - 1) {
        *stack = true;
        return KILN_STATUS_OK;
    }
    if (u->rank == R && R >= 1) {
        *stack = false;
        return KILN_STATUS_OK;
    }
    char a[200], b[200];
    return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                      "%s: a sample has shape %s (rank %d), the model's input '%s' is %s (rank %d): a sample must "
                      "have rank %d (one sample, stacked into batches) or %d (a batch, concatenated)",
                      what, dims_of(u->rank, u->dims, a, sizeof a), u->rank, v->name, model_dims(s->g, v, b, sizeof b), R,
                      R - 1, R);
}

static kiln_status check_dtype_g(const kiln_graph *g, int i, kiln_dtype dt, const char *what) {
    const kiln_value *v = input_value(g, i);
    if (v->type.dtype != KILN_DTYPE_UNDEFINED && dt != v->type.dtype)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: the data is %s, the model's input '%s' is %s", what,
                          kiln_dtype_name(dt), v->name, kiln_dtype_name(v->type.dtype));
    return KILN_STATUS_OK;
}

static kiln_status check_dtype(const kiln_calib_source *s, int i, kiln_dtype dt, const char *what) {
    return check_dtype_g(s->g, i, dt, what);
}

/* Joins n units (same dtype; stacked or concatenated along axis 0) into out. whats[k] names
 * unit k in messages. */
static kiln_status join_units(const kiln_calib_source *s, int i, const kiln_tensor *units, const char *const *whats,
                              int64_t n, kiln_tensor *out) {
    bool stack;
    KILN_TRY(check_dtype(s, i, units[0].dtype, whats[0]));
    KILN_TRY(unit_layout(s, i, &units[0], whats[0], &stack));
    const kiln_tensor *u0 = &units[0];
    int64_t dim0 = 0;
    for (int64_t k = 0; k < n; k++) {
        const kiln_tensor *u = &units[k];
        if (k) KILN_TRY(check_dtype(s, i, u->dtype, whats[k]));
        bool same = u->rank == u0->rank;
        for (int d = stack ? 0 : 1; same && d < u->rank; d++) same = u->dims[d] == u0->dims[d];
        if (!same) {
            char a[200], b[200];
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                              "%s: a sample has shape %s but %s has %s: the samples of one batch must agree%s", whats[k],
                              dims_of(u->rank, u->dims, a, sizeof a), whats[0], dims_of(u0->rank, u0->dims, b, sizeof b),
                              stack ? "" : " but for dim 0");
        }
        if (!stack) dim0 += u->dims[0];
    }
    int64_t dims[KILN_MAX_RANK];
    int rank;
    if (stack) {
        if (u0->rank + 1 > KILN_MAX_RANK)
            return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: a batch of rank %d exceeds kiln's %d", whats[0], u0->rank + 1, KILN_MAX_RANK);
        rank = u0->rank + 1;
        dims[0] = n;
        memcpy(dims + 1, u0->dims, sizeof(int64_t) * (size_t)u0->rank);
    } else {
        rank = u0->rank;
        memcpy(dims, u0->dims, sizeof(int64_t) * (size_t)rank);
        dims[0] = dim0;
    }
    KILN_TRY(kiln_tensor_alloc(out, u0->dtype, rank, dims));
    char *dst = out->data;
    for (int64_t k = 0; k < n; k++) {
        size_t b = kiln_tensor_bytes(&units[k]);
        if (b) memcpy(dst, units[k].data, b);
        dst += b;
    }
    return KILN_STATUS_OK;
}

/* Checks batch t of input i against the model: rank, fixed dims, symbols (sym: per graph symbol,
 * -1 until seen in this batch). */
static kiln_status check_batch_g(const kiln_graph *g, int i, const kiln_tensor *t, int64_t n_units, const char *what,
                                 int64_t *sym) {
    const kiln_value *v = input_value(g, i);
    if (v->type.rank < 0) return KILN_STATUS_OK;
    char a[200], b[200];
    bool ok = t->rank == v->type.rank;
    int bad = -1;
    for (int d = 0; ok && d < t->rank; d++) {
        int64_t m = v->type.dims[d];
        if (m >= 0 && m != t->dims[d]) {
            ok = false;
            bad = d;
        } else if (m <= -2 && -2 - m < g->n_symbols) {
            int64_t k = -2 - m;
            if (sym[k] >= 0 && sym[k] != t->dims[d])
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                                  "%s: dim %d of the model's input '%s' (symbol '%s') is %lld in this batch, but %lld for "
                                  "another input of the same batch",
                                  what, d, v->name, g->symbols[k], (long long)t->dims[d], (long long)sym[k]);
            sym[k] = t->dims[d];
        }
    }
    if (ok) return KILN_STATUS_OK;
    /* Only the batch dim is off: say which batch size would fit. */
    char hint[160] = "";
    bool only_dim0 = bad == 0 && t->rank == v->type.rank;
    for (int d = 1; only_dim0 && d < t->rank; d++)
        if (v->type.dims[d] >= 0 && v->type.dims[d] != t->dims[d]) only_dim0 = false;
    int64_t per_unit = n_units > 0 && t->dims[0] % n_units == 0 ? t->dims[0] / n_units : 0;
    if (only_dim0 && per_unit > 0 && v->type.dims[0] % per_unit == 0)
        snprintf(hint, sizeof hint, " (a batch of %lld sample(s) would fit)", (long long)(v->type.dims[0] / per_unit));
    return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: %lld sample(s) make a batch of shape %s, the model's input '%s' is %s%s",
                      what, (long long)n_units, dims_of(t->rank, t->dims, a, sizeof a), v->name, model_dims(g, v, b, sizeof b),
                      hint);
}

static kiln_status check_batch(const kiln_calib_source *s, int i, const kiln_tensor *t, int64_t n_units, const char *what,
                               int64_t *sym) {
    return check_batch_g(s->g, i, t, n_units, what, sym);
}

kiln_status kiln_calib_check_batch(const kiln_graph *g, kiln_tensor *const *inputs, const char *what) {
    if (!g || !inputs || !what) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_check_batch: NULL argument");
    int64_t *sym = kiln_malloc(sizeof(int64_t) * (size_t)(g->n_symbols ? g->n_symbols : 1));
    if (!sym) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; k < g->n_symbols; k++) sym[k] = -1;
    kiln_status st = KILN_STATUS_OK;
    for (int i = 0; st == KILN_STATUS_OK && i < g->n_inputs; i++) {
        const kiln_value *v = input_value(g, i);
        char msg[600];
        snprintf(msg, sizeof msg, "%s: input '%s'", what, v->name);
        const kiln_tensor *t = inputs[i];
        if (!t) {
            if (input_required(g, i)) st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no tensor given", msg);
            continue;
        }
        if (!t->data && kiln_shape_count(t->rank, t->dims) > 0)
            st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: the tensor has no data", msg);
        if (st == KILN_STATUS_OK) st = check_dtype_g(g, i, t->dtype, msg);
        if (st == KILN_STATUS_OK) st = check_batch_g(g, i, t, t->rank > 0 ? t->dims[0] : 1, msg, sym);
    }
    free(sym);
    return st;
}

/* Counts batches from the available units. */
static kiln_status plan_batches(kiln_calib_source *s, int64_t max_samples) {
    const kiln_graph *g = s->g;
    int64_t n = s->available;
    if (max_samples > 0 && max_samples < n) n = max_samples;
    if (n == 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no samples", s->path);
    bool partial_ok = true;
    int fixed_input = -1;
    for (int i = 0; i < g->n_inputs; i++) {
        if (!s->fed[i]) continue;
        const kiln_value *v = input_value(g, i);
        if (v->type.rank == 0 || (v->type.rank > 0 && v->type.dims[0] >= 0)) {
            partial_ok = false;
            if (fixed_input < 0) fixed_input = i;
        }
    }
    int64_t full = n / s->batch, rem = n % s->batch;
    s->n_batches = full + (rem && partial_ok ? 1 : 0);
    s->n_samples = full * s->batch + (partial_ok ? rem : 0);
    if (s->n_batches == 0) {
        const kiln_value *v = input_value(g, fixed_input);
        char b[200];
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                          "%s: %lld sample(s) are fewer than one batch of %lld, and the model's input '%s' (%s) has a fixed "
                          "batch dim",
                          s->path, (long long)n, (long long)s->batch, v->name, model_dims(g, v, b, sizeof b));
    }
    return KILN_STATUS_OK;
}

static int find_item(const kiln_named_tensor *items, int n, const char *name) {
    for (int k = 0; k < n; k++)
        if (strcmp(items[k].name, name) == 0) return k;
    return -1;
}

/* "a, b, c" of the items' names into buf. */
static const char *item_names(const kiln_named_tensor *items, int n, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s'%s'", i ? ", " : "", items[i].name);
    if (n == 0) snprintf(buf, cap, "no arrays");
    return buf;
}

static const char *input_names(const kiln_graph *g, bool required_only, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    int c = 0;
    for (int i = 0; i < g->n_inputs && k < cap; i++)
        if (!required_only || input_required(g, i))
            k += (size_t)snprintf(buf + k, cap - k, "%s'%s'", c++ ? ", " : "", input_value(g, i)->name);
    return buf;
}

/* ---- npz ---------------------------------------------------------------------------------- */

static kiln_status open_npz(kiln_calib_source *s) {
    const kiln_graph *g = s->g;
    KILN_TRY(kiln_npz_read(s->path, &s->items, &s->n_items));
    s->item_of = kiln_malloc(sizeof(int) * (size_t)(g->n_inputs ? g->n_inputs : 1));
    s->ignored = kiln_calloc((size_t)s->n_items + 1, sizeof(char *));
    if (!s->item_of || !s->ignored) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    int first = -1;
    for (int i = 0; i < g->n_inputs; i++) {
        const kiln_value *v = input_value(g, i);
        int k = find_item(s->items, s->n_items, v->name);
        s->item_of[i] = k;
        if (k < 0) {
            if (!input_required(g, i)) continue;
            char names[600];
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no array for the model's input '%s' (the file has %s)", s->path,
                              v->name, item_names(s->items, s->n_items, names, sizeof names));
        }
        s->fed[i] = true;
        const kiln_tensor *t = s->items[k].t;
        char what[600];
        snprintf(what, sizeof what, "%s: array '%s'", s->path, v->name);
        if (t->rank == 0)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: is a scalar; the samples must be stacked on a leading axis",
                              what);
        KILN_TRY(check_dtype(s, i, t->dtype, what));
        kiln_tensor unit = {.dtype = t->dtype, .rank = t->rank - 1};
        memcpy(unit.dims, t->dims + 1, sizeof(int64_t) * (size_t)unit.rank);
        bool stack;
        KILN_TRY(unit_layout(s, i, &unit, what, &stack));
        if (first < 0) {
            first = i;
            s->available = t->dims[0];
        } else if (t->dims[0] != s->available) {
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                              "%s: array '%s' holds %lld samples (its leading dim), array '%s' holds %lld: every input needs "
                              "the same number",
                              s->path, v->name, (long long)t->dims[0], input_value(g, first)->name, (long long)s->available);
        }
    }
    if (first < 0) {
        char names[600], ins[600];
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no array names a model input (the file has %s; the model's inputs: %s)",
                          s->path, item_names(s->items, s->n_items, names, sizeof names),
                          g->n_inputs ? input_names(g, false, ins, sizeof ins) : "none");
    }
    int n_ign = 0;
    for (int k = 0; k < s->n_items; k++) {
        bool used = false;
        for (int i = 0; i < g->n_inputs; i++) used |= s->item_of[i] == k;
        if (!used) s->ignored[n_ign++] = s->items[k].name;
    }
    return KILN_STATUS_OK;
}

static kiln_status batch_npz(kiln_calib_source *s, int64_t k0, int64_t n, int64_t *sym) {
    const kiln_graph *g = s->g;
    kiln_tensor *units = kiln_calloc((size_t)n, sizeof *units);
    const char **whats = kiln_calloc((size_t)n, sizeof *whats);
    kiln_status st = KILN_STATUS_OK;
    if (!units || !whats) st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; st == KILN_STATUS_OK && i < g->n_inputs; i++) {
        if (!s->fed[i]) continue;
        const kiln_tensor *t = s->items[s->item_of[i]].t;
        char what[600];
        snprintf(what, sizeof what, "%s: array '%s'", s->path, input_value(g, i)->name);
        size_t unit_bytes = t->dims[0] ? kiln_tensor_bytes(t) / (size_t)t->dims[0] : 0;
        for (int64_t k = 0; k < n; k++) {
            units[k] = (kiln_tensor){.dtype = t->dtype, .rank = t->rank - 1, .data = (char *)t->data + (size_t)(k0 + k) * unit_bytes};
            memcpy(units[k].dims, t->dims + 1, sizeof(int64_t) * (size_t)(t->rank - 1));
            whats[k] = what;
        }
        st = join_units(s, i, units, whats, n, &s->cur[i]);
        if (st == KILN_STATUS_OK) st = check_batch(s, i, &s->cur[i], n, what, sym);
    }
    free(units);
    free(whats);
    return st;
}

/* ---- a folder of .npy / .npz ---------------------------------------------------------------- */

static int required_count(const kiln_graph *g, int *only) {
    int c = 0;
    *only = -1;
    for (int i = 0; i < g->n_inputs; i++)
        if (input_required(g, i)) {
            c++;
            *only = i;
        }
    if (c != 1) *only = -1;
    return c;
}

/* Reads one file of a dir source into per-input units (tensors owned by *items / *single). */
static kiln_status read_unit_file(kiln_calib_source *s, const char *path, kiln_tensor **single, kiln_named_tensor **items,
                                  int *n_items) {
    *single = NULL;
    *items = NULL;
    *n_items = 0;
    if (has_ext(path, ".npy")) {
        if (s->only_input < 0) {
            char ins[600];
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                              "%s: an .npy file feeds a model with one required input, this one has %d (%s): use .npz files "
                              "with one array per input name",
                              path, required_count(s->g, &(int){0}), input_names(s->g, true, ins, sizeof ins));
        }
        return kiln_npy_read(path, single);
    }
    return kiln_npz_read(path, items, n_items);
}

static void free_unit_file(kiln_tensor *single, kiln_named_tensor *items, int n_items) {
    kiln_tensor_destroy(single);
    kiln_named_tensors_free(items, n_items);
}

static kiln_status open_dir(kiln_calib_source *s) {
    const kiln_graph *g = s->g;
    KILN_TRY(collect_files(s->path, false, is_array_name, 0, &s->files));
    if (s->files.n == 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no .npy or .npz files in the directory", s->path);
    s->available = s->files.n;
    required_count(g, &s->only_input);
    /* The first file decides which optional inputs are fed. */
    kiln_tensor *single;
    kiln_named_tensor *items;
    int n_items;
    KILN_TRY(read_unit_file(s, s->files.v[0], &single, &items, &n_items));
    kiln_status st = KILN_STATUS_OK;
    if (single) {
        s->fed[s->only_input] = true;
    } else {
        for (int i = 0; i < g->n_inputs; i++)
            s->fed[i] = find_item(items, n_items, input_value(g, i)->name) >= 0;
        for (int i = 0; st == KILN_STATUS_OK && i < g->n_inputs; i++)
            if (!s->fed[i] && input_required(g, i)) {
                char names[600];
                st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no array for the model's input '%s' (the file has %s)",
                                s->files.v[0], input_value(g, i)->name, item_names(items, n_items, names, sizeof names));
            }
    }
    if (st == KILN_STATUS_OK && g->n_inputs == 0)
        st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the model has no inputs: there is nothing to calibrate with");
    free_unit_file(single, items, n_items);
    return st;
}

static kiln_status batch_dir(kiln_calib_source *s, int64_t k0, int64_t n, int64_t *sym) {
    const kiln_graph *g = s->g;
    kiln_tensor **singles = kiln_calloc((size_t)n, sizeof *singles);
    kiln_named_tensor **items = kiln_calloc((size_t)n, sizeof *items);
    int *n_items = kiln_calloc((size_t)n, sizeof *n_items);
    kiln_tensor *units = kiln_calloc((size_t)n, sizeof *units);
    const char **whats = kiln_calloc((size_t)n, sizeof *whats);
    char (*msg)[700] = kiln_calloc((size_t)n, sizeof *msg);
    kiln_status st = KILN_STATUS_OK;
    if (!singles || !items || !n_items || !units || !whats || !msg) st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t k = 0; st == KILN_STATUS_OK && k < n; k++)
        st = read_unit_file(s, s->files.v[k0 + k], &singles[k], &items[k], &n_items[k]);
    for (int i = 0; st == KILN_STATUS_OK && i < g->n_inputs; i++) {
        if (!s->fed[i]) continue;
        const kiln_value *v = input_value(g, i);
        for (int64_t k = 0; st == KILN_STATUS_OK && k < n; k++) {
            const char *f = s->files.v[k0 + k];
            if (singles[k]) {
                if (i != s->only_input) {
                    st = kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                                    "%s: an .npy file gives only the model's input '%s', but '%s' is fed by the other files",
                                    f, input_value(g, s->only_input)->name, v->name);
                    break;
                }
                units[k] = *singles[k];
                snprintf(msg[k], sizeof msg[k], "%s", f);
            } else {
                int j = find_item(items[k], n_items[k], v->name);
                if (j < 0) {
                    char names[600];
                    st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no array for the model's input '%s' (the file has %s)", f,
                                    v->name, item_names(items[k], n_items[k], names, sizeof names));
                    break;
                }
                units[k] = *items[k][j].t;
                snprintf(msg[k], sizeof msg[k], "%s: array '%s'", f, v->name);
            }
            whats[k] = msg[k];
        }
        if (st == KILN_STATUS_OK) st = join_units(s, i, units, whats, n, &s->cur[i]);
        if (st == KILN_STATUS_OK) st = check_batch(s, i, &s->cur[i], n, whats[0], sym);
    }
    for (int64_t k = 0; singles && items && n_items && k < n; k++) free_unit_file(singles[k], items[k], n_items[k]);
    free(singles);
    free(items);
    free(n_items);
    free(units);
    free(whats);
    free(msg);
    return st;
}

/* ---- images --------------------------------------------------------------------------------- */

void kiln_calib_preprocess_default(kiln_calib_preprocess *pp) {
    *pp = (kiln_calib_preprocess){.scale = 255.0f};
    for (int c = 0; c < 4; c++) {
        pp->mean[c] = 0.0f;
        pp->std[c] = 1.0f;
    }
}

static bool parse_int(const char *s, const char **end, int *out) {
    if (!isdigit((unsigned char)*s)) return false;
    errno = 0;
    char *e;
    long v = strtol(s, &e, 10);
    if (errno || v <= 0 || v > MAX_IMAGE_SIDE) return false;
    *out = (int)v;
    *end = e;
    return true;
}

static kiln_status parse_size(const char *spec, const char *key, const char *val, int *h, int *w) {
    const char *e;
    if (!parse_int(val, &e, h)) goto bad;
    if (*e == 0) {
        *w = 0;
        return KILN_STATUS_OK;
    }
    if (*e != 'x' && *e != 'X') goto bad;
    if (!parse_int(e + 1, &e, w) || *e) goto bad;
    return KILN_STATUS_OK;
bad:
    return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess spec '%s': %s=%s: expected N or HxW with sides 1..%d", spec, key,
                      val, MAX_IMAGE_SIDE);
}

static kiln_status parse_floats(const char *spec, const char *key, const char *val, float *out, int *n, bool positive) {
    *n = 0;
    const char *p = val;
    for (;;) {
        if (*n == 4) goto bad;
        errno = 0;
        char *e;
        double v = strtod(p, &e);
        if (e == p || errno || !isfinite(v) || (float)v != (float)v || !isfinite((float)v) || (positive && !((float)v > 0)))
            goto bad;
        out[(*n)++] = (float)v;
        if (*e == 0) return KILN_STATUS_OK;
        if (*e != ':') goto bad;
        p = e + 1;
    }
bad:
    return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess spec '%s': %s=%s: expected 1 to 4 %snumbers separated by ':'",
                      spec, key, val, positive ? "positive " : "");
}

kiln_status kiln_calib_preprocess_parse(const char *spec, kiln_calib_preprocess *pp) {
    if (!spec || !pp) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_preprocess_parse: NULL argument");
    char *copy = kiln_strdup(spec);
    if (!copy) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    kiln_status st = KILN_STATUS_OK;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && st == KILN_STATUS_OK; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok)) tok++;
        if (!*tok) continue;
        char *eq = strchr(tok, '=');
        if (!eq) {
            st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess spec '%s': '%s' is not KEY=VALUE", spec, tok);
            break;
        }
        *eq = 0;
        const char *key = tok, *val = eq + 1;
        if (strcmp(key, "resize") == 0) {
            st = parse_size(spec, key, val, &pp->resize_h, &pp->resize_w);
        } else if (strcmp(key, "crop") == 0) {
            st = parse_size(spec, key, val, &pp->crop_h, &pp->crop_w);
            if (st == KILN_STATUS_OK && pp->crop_w == 0) pp->crop_w = pp->crop_h;
        } else if (strcmp(key, "mean") == 0) {
            st = parse_floats(spec, key, val, pp->mean, &pp->n_mean, false);
        } else if (strcmp(key, "std") == 0) {
            st = parse_floats(spec, key, val, pp->std, &pp->n_std, true);
        } else if (strcmp(key, "scale") == 0) {
            float v[4];
            int n;
            st = parse_floats(spec, key, val, v, &n, true);
            if (st == KILN_STATUS_OK && n != 1)
                st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess spec '%s': scale=%s: expected one positive number", spec, val);
            if (st == KILN_STATUS_OK) pp->scale = v[0];
        } else if (strcmp(key, "layout") == 0) {
            if (strcasecmp(val, "nchw") == 0) pp->nhwc = false;
            else if (strcasecmp(val, "nhwc") == 0) pp->nhwc = true;
            else st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess spec '%s': layout=%s: expected nchw or nhwc", spec, val);
        } else if (strcmp(key, "order") == 0) {
            if (strcasecmp(val, "rgb") == 0) pp->bgr = false;
            else if (strcasecmp(val, "bgr") == 0) pp->bgr = true;
            else st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess spec '%s': order=%s: expected rgb or bgr", spec, val);
        } else {
            st = kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                            "preprocess spec '%s': unknown key '%s' (known: resize, crop, mean, std, scale, layout, order)", spec,
                            key);
        }
    }
    free(copy);
    return st;
}

static kiln_status open_images(kiln_calib_source *s) {
#ifndef KILN_HAVE_STB
    return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: image calibration data needs stb_image, and kiln was built without it "
                                               "(install libstb-dev and rebuild)", s->path);
#else
    const kiln_graph *g = s->g;
    int n_req = required_count(g, &s->only_input);
    if (s->only_input < 0) {
        char ins[600];
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                          "%s: images feed a model with one required input, this one has %d%s%s%s", s->path, n_req,
                          n_req ? " (" : "", n_req ? input_names(g, true, ins, sizeof ins) : "", n_req ? ")" : "");
    }
    int i = s->only_input;
    const kiln_value *v = input_value(g, i);
    char b[200];
    if (v->type.dtype != KILN_DTYPE_UNDEFINED && !kiln_dtype_is_float(v->type.dtype))
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: the model's input '%s' is %s: images feed float inputs", s->path, v->name,
                          kiln_dtype_name(v->type.dtype));
    int R = v->type.rank;
    if (R >= 0 && R != 3 && R != 4)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: the model's input '%s' is %s: images feed inputs of rank 4 (or 3)",
                          s->path, v->name, model_dims(g, v, b, sizeof b));
    if (!(s->pp.scale > 0) || !isfinite(s->pp.scale))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess: scale %g must be positive", (double)s->pp.scale);
    if (s->pp.n_mean == 0) s->pp.mean[0] = 0.0f;
    if (s->pp.n_std == 0) s->pp.std[0] = 1.0f;
    s->channels = 3;
    if (R >= 3) {
        int cd = s->pp.nhwc ? R - 1 : R - 3;
        int64_t c = v->type.dims[cd];
        if (c >= 0) {
            if (c != 1 && c != 3 && c != 4)
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                                  "%s: the model's input '%s' is %s: its channel dim (%s layout) is %lld, images give 1, 3 or 4",
                                  s->path, v->name, model_dims(g, v, b, sizeof b), s->pp.nhwc ? "nhwc" : "nchw", (long long)c);
            s->channels = (int)c;
        }
    }
    if (s->pp.n_mean > 1 && s->pp.n_mean != s->channels)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess: mean has %d values, the model's input '%s' has %d channel(s)",
                          s->pp.n_mean, v->name, s->channels);
    if (s->pp.n_std > 1 && s->pp.n_std != s->channels)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess: std has %d values, the model's input '%s' has %d channel(s)",
                          s->pp.n_std, v->name, s->channels);
    for (int c = 1; c < 4; c++) {
        if (s->pp.n_mean <= 1) s->pp.mean[c] = s->pp.mean[0];
        if (s->pp.n_std <= 1) s->pp.std[c] = s->pp.std[0];
    }
    for (int c = 0; c < 4; c++)
        if (!(s->pp.std[c] > 0) || !isfinite(s->pp.std[c]) || !isfinite(s->pp.mean[c]))
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "preprocess: std must be positive and mean finite");
    s->fed[i] = true;
    KILN_TRY(collect_files(s->path, true, is_image_name, 0, &s->files));
    if (s->files.n == 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no images (.jpg, .jpeg, .png, .bmp) in the directory or below", s->path);
    /* Headers only: a file that is not an image is named before anything runs. */
    for (int64_t k = 0; k < s->files.n && (s->max_samples <= 0 || k < s->max_samples); k++) {
        int w, h, comp;
        if (!stbi_info(s->files.v[k], &w, &h, &comp)) {
            const char *why = stbi_failure_reason();
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: not a readable image: %s", s->files.v[k], why ? why : "unknown format");
        }
    }
    s->available = s->files.n;
    return KILN_STATUS_OK;
#endif
}

#ifdef KILN_HAVE_STB
/* PIL's resampling coefficients (Resample.c precompute_coeffs) for the bilinear (triangle) filter:
 * output pixel x reads in[lo[x] .. lo[x] + cnt[x]) with weights w[x * ksize + j]. */
typedef struct coeffs {
    int ksize;
    int *lo, *cnt;
    double *w;
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->lo);
    free(c->cnt);
    free(c->w);
}

static kiln_status coeffs_make(int in_size, int out_size, coeffs *c) {
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->lo = kiln_malloc(sizeof(int) * (size_t)out_size);
    c->cnt = kiln_malloc(sizeof(int) * (size_t)out_size);
    c->w = kiln_calloc((size_t)out_size * (size_t)c->ksize, sizeof(double));
    if (!c->lo || !c->cnt || !c->w) {
        coeffs_free(c);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    double ss = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > c->ksize) xmax = c->ksize;
        double *k = &c->w[(size_t)xx * (size_t)c->ksize], ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            double t = fabs((x + xmin - center + 0.5) * ss);
            double w = t < 1.0 ? 1.0 - t : 0.0;
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        c->lo[xx] = xmin;
        c->cnt[xx] = xmax;
    }
    return KILN_STATUS_OK;
}

/* Resizes an interleaved float image [h][w][C] to [oh][ow][C]: horizontal pass, then vertical. */
static kiln_status resize_image(const float *in, int h, int w, int C, int oh, int ow, float **out) {
    *out = NULL;
    coeffs cx = {0}, cy = {0};
    float *tmp = NULL, *res = NULL;
    kiln_status st = coeffs_make(w, ow, &cx);
    if (st == KILN_STATUS_OK) st = coeffs_make(h, oh, &cy);
    if (st == KILN_STATUS_OK) {
        tmp = kiln_malloc(sizeof(float) * (size_t)h * (size_t)ow * (size_t)C);
        res = kiln_malloc(sizeof(float) * (size_t)oh * (size_t)ow * (size_t)C);
        if (!tmp || !res) st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    if (st == KILN_STATUS_OK) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < ow; x++)
                for (int c = 0; c < C; c++) {
                    const double *k = &cx.w[(size_t)x * (size_t)cx.ksize];
                    double acc = 0.0;
                    for (int j = 0; j < cx.cnt[x]; j++) acc += in[((size_t)y * (size_t)w + (size_t)(cx.lo[x] + j)) * (size_t)C + (size_t)c] * k[j];
                    tmp[((size_t)y * (size_t)ow + (size_t)x) * (size_t)C + (size_t)c] = (float)acc;
                }
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                for (int c = 0; c < C; c++) {
                    const double *k = &cy.w[(size_t)y * (size_t)cy.ksize];
                    double acc = 0.0;
                    for (int j = 0; j < cy.cnt[y]; j++) acc += tmp[((size_t)(cy.lo[y] + j) * (size_t)ow + (size_t)x) * (size_t)C + (size_t)c] * k[j];
                    res[((size_t)y * (size_t)ow + (size_t)x) * (size_t)C + (size_t)c] = (float)acc;
                }
        *out = res;
        res = NULL;
    }
    coeffs_free(&cx);
    coeffs_free(&cy);
    free(tmp);
    free(res);
    return st;
}

/* Decodes and preprocesses one image into unit (a tensor owning its data). */
static kiln_status load_image(const kiln_calib_source *s, const char *path, kiln_tensor *unit) {
    const kiln_value *v = input_value(s->g, s->only_input);
    const kiln_calib_preprocess *pp = &s->pp;
    int C = s->channels, w, h, comp;
    unsigned char *px = stbi_load(path, &w, &h, &comp, C);
    if (!px) {
        const char *why = stbi_failure_reason();
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: cannot decode the image: %s", path, why ? why : "unknown error");
    }
    kiln_status st = KILN_STATUS_OK;
    size_t n = (size_t)w * (size_t)h * (size_t)C;
    float *img = kiln_malloc(sizeof(float) * n);
    if (!img) st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory for a %dx%d image", path, w, h);
    for (size_t k = 0; img && k < n; k++) img[k] = px[k];
    stbi_image_free(px);
    /* 1. resize */
    int rh = h, rw = w;
    if (st == KILN_STATUS_OK && pp->resize_h > 0) {
        if (pp->resize_w > 0) {
            rh = pp->resize_h;
            rw = pp->resize_w;
        } else if (w <= h) {
            rw = pp->resize_h;
            rh = (int)((double)pp->resize_h * h / w);
        } else {
            rh = pp->resize_h;
            rw = (int)((double)pp->resize_h * w / h);
        }
        if (rh < 1) rh = 1;
        if (rw < 1) rw = 1;
        if (rh != h || rw != w) {
            float *r;
            st = resize_image(img, h, w, C, rh, rw, &r);
            free(img);
            img = r;
        }
    }
    /* 2. center crop */
    int oh = rh, ow = rw, top = 0, left = 0;
    if (st == KILN_STATUS_OK && pp->crop_h > 0) {
        if (pp->crop_h > rh || pp->crop_w > rw)
            st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: the image is %dx%d (HxW)%s, smaller than the crop %dx%d", path, rh,
                            rw, (rh != h || rw != w) ? " after resizing" : "", pp->crop_h, pp->crop_w);
        oh = pp->crop_h;
        ow = pp->crop_w;
        top = (int)rint((rh - oh) / 2.0);
        left = (int)rint((rw - ow) / 2.0);
    }
    /* 3. normalise, 4. lay out */
    kiln_dtype dt = v->type.dtype == KILN_DTYPE_UNDEFINED ? KILN_DTYPE_F32 : v->type.dtype;
    if (st == KILN_STATUS_OK) {
        int64_t dims[3];
        if (pp->nhwc) {
            dims[0] = oh; dims[1] = ow; dims[2] = C;
        } else {
            dims[0] = C; dims[1] = oh; dims[2] = ow;
        }
        st = kiln_tensor_alloc(unit, dt, 3, dims);
    }
    if (st == KILN_STATUS_OK) {
        float scale = pp->scale;
        for (int c = 0; c < C; c++) {
            int src_c = c;
            if (pp->bgr && C >= 3) src_c = c == 0 ? 2 : c == 2 ? 0 : c;
            float mean = pp->mean[c], sd = pp->std[c];
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    float val = img[((size_t)(y + top) * (size_t)rw + (size_t)(x + left)) * (size_t)C + (size_t)src_c];
                    float r = (val / scale - mean) / sd;
                    int64_t idx = pp->nhwc ? ((int64_t)y * ow + x) * C + c : ((int64_t)c * oh + y) * ow + x;
                    if (dt == KILN_DTYPE_F32) ((float *)unit->data)[idx] = r;
                    else kiln_store_f64(dt, unit->data, idx, (double)r);
                }
        }
    }
    free(img);
    if (st != KILN_STATUS_OK) kiln_tensor_release(unit);
    return st;
}
#endif

static kiln_status batch_images(kiln_calib_source *s, int64_t k0, int64_t n, int64_t *sym) {
#ifndef KILN_HAVE_STB
    return kiln_error(KILN_STATUS_UNSUPPORTED, "kiln was built without stb_image");
#else
    kiln_tensor *units = kiln_calloc((size_t)n, sizeof *units);
    const char **whats = kiln_calloc((size_t)n, sizeof *whats);
    kiln_status st = KILN_STATUS_OK;
    if (!units || !whats) st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t k = 0; st == KILN_STATUS_OK && k < n; k++) {
        whats[k] = s->files.v[k0 + k];
        st = load_image(s, whats[k], &units[k]);
    }
    if (st == KILN_STATUS_OK) st = join_units(s, s->only_input, units, whats, n, &s->cur[s->only_input]);
    if (st == KILN_STATUS_OK) st = check_batch(s, s->only_input, &s->cur[s->only_input], n, whats[0], sym);
    for (int64_t k = 0; units && k < n; k++) kiln_tensor_release(&units[k]);
    free(units);
    free(whats);
    return st;
#endif
}

/* ---- the public functions ------------------------------------------------------------------- */

const char *kiln_calib_source_kind_name(kiln_calib_source_kind k) {
    switch (k) {
    case KILN_CALIB_SOURCE_NPZ: return "npz";
    case KILN_CALIB_SOURCE_DIR: return "dir";
    case KILN_CALIB_SOURCE_IMAGES: return "images";
    }
    return "unknown";
}

kiln_status kiln_calib_source_open(kiln_calib_source_kind kind, const kiln_model *m, const char *path,
                                   const kiln_calib_source_options *opt, kiln_calib_source **out) {
    if (!m || !m->graph || !path || !out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_source_open: NULL argument");
    *out = NULL;
    kiln_calib_source_options o = opt ? *opt : (kiln_calib_source_options){0};
    if (o.batch < 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration batch size %lld: must be at least 1", (long long)o.batch);
    if (o.max_samples < 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration sample limit %lld: must be at least 1", (long long)o.max_samples);
    const kiln_graph *g = m->graph;
    if (g->n_inputs == 0) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "the model has no inputs: there is nothing to calibrate with");
    kiln_calib_source *s = kiln_calloc(1, sizeof *s);
    if (!s) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    s->kind = kind;
    s->g = g;
    s->batch = o.batch ? o.batch : 1;
    s->max_samples = o.max_samples;
    s->only_input = -1;
    s->path = kiln_strdup(path);
    s->fed = kiln_calloc((size_t)g->n_inputs, sizeof *s->fed);
    s->cur = kiln_calloc((size_t)g->n_inputs, sizeof *s->cur);
    s->cur_ptr = kiln_calloc((size_t)g->n_inputs, sizeof *s->cur_ptr);
    kiln_calib_preprocess_default(&s->pp);
    if (o.preprocess) s->pp = *o.preprocess;
    kiln_status st = KILN_STATUS_OK;
    if (!s->path || !s->fed || !s->cur || !s->cur_ptr) st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    else if (kind == KILN_CALIB_SOURCE_NPZ) st = open_npz(s);
    else if (kind == KILN_CALIB_SOURCE_DIR) st = open_dir(s);
    else if (kind == KILN_CALIB_SOURCE_IMAGES) st = open_images(s);
    else st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "unknown calibration source kind %d", (int)kind);
    if (st == KILN_STATUS_OK) st = plan_batches(s, o.max_samples);
    if (st != KILN_STATUS_OK) {
        kiln_calib_source_destroy(s);
        return st;
    }
    *out = s;
    return KILN_STATUS_OK;
}

static void release_current(kiln_calib_source *s) {
    for (int i = 0; s->cur && i < s->g->n_inputs; i++) {
        kiln_tensor_release(&s->cur[i]);
        s->cur_ptr[i] = NULL;
    }
}

void kiln_calib_source_destroy(kiln_calib_source *s) {
    if (!s) return;
    if (s->cur_ptr) release_current(s);
    free(s->cur);
    free(s->cur_ptr);
    free(s->fed);
    kiln_named_tensors_free(s->items, s->n_items);
    free(s->item_of);
    free(s->ignored); /* the names belong to items */
    strvec_free(&s->files);
    free(s->path);
    free(s);
}

kiln_calib_source_kind kiln_calib_source_kind_of(const kiln_calib_source *s) { return s->kind; }
const char *kiln_calib_source_path(const kiln_calib_source *s) { return s->path; }
int64_t kiln_calib_source_batch_size(const kiln_calib_source *s) { return s->batch; }
int64_t kiln_calib_source_num_batches(const kiln_calib_source *s) { return s->n_batches; }
int64_t kiln_calib_source_num_samples(const kiln_calib_source *s) { return s->n_samples; }
int64_t kiln_calib_source_available(const kiln_calib_source *s) { return s->available; }

const char *const *kiln_calib_source_ignored(const kiln_calib_source *s) {
    static const char *const none[1] = {NULL};
    return s->ignored ? (const char *const *)s->ignored : none;
}

kiln_status kiln_calib_source_batch(kiln_calib_source *s, int64_t b, kiln_tensor *const **inputs) {
    if (!s || !inputs) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_source_batch: NULL argument");
    *inputs = NULL;
    if (b < 0 || b >= s->n_batches)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration batch %lld out of range (%lld batches)", (long long)b,
                          (long long)s->n_batches);
    release_current(s);
    int64_t k0 = b * s->batch, k1 = k0 + s->batch;
    if (k1 > s->n_samples) k1 = s->n_samples;
    const kiln_graph *g = s->g;
    int64_t *sym = kiln_malloc(sizeof(int64_t) * (size_t)(g->n_symbols ? g->n_symbols : 1));
    if (!sym) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; k < g->n_symbols; k++) sym[k] = -1;
    kiln_status st;
    if (s->kind == KILN_CALIB_SOURCE_NPZ) st = batch_npz(s, k0, k1 - k0, sym);
    else if (s->kind == KILN_CALIB_SOURCE_DIR) st = batch_dir(s, k0, k1 - k0, sym);
    else st = batch_images(s, k0, k1 - k0, sym);
    free(sym);
    if (st != KILN_STATUS_OK) {
        release_current(s);
        return st;
    }
    for (int i = 0; i < g->n_inputs; i++) s->cur_ptr[i] = s->fed[i] ? &s->cur[i] : NULL;
    *inputs = s->cur_ptr;
    return KILN_STATUS_OK;
}
