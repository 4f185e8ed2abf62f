/* cache.c — reading and writing INT8 calibration caches (TensorRT's text format, kiln's header
 * with a model fingerprint), and FNV-1a. Format in cache.h. Tested by tests/unit/test_quant.c. */
#include "quant/cache.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

uint64_t kiln_fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void kiln_calib_entries_free(kiln_calib_entry *entries, int64_t n) {
    if (!entries) return;
    for (int64_t i = 0; i < n; i++) free(entries[i].name);
    free(entries);
}

/* ---- writing ---- */

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static kiln_status check_algorithm(const char *algorithm) {
    if (!algorithm || !*algorithm)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration cache: empty algorithm name");
    for (const char *c = algorithm; *c; c++)
        if (*c == '-' || isspace((unsigned char)*c) || iscntrl((unsigned char)*c))
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                              "calibration cache: algorithm name '%s' holds '-', a space or a control character",
                              algorithm);
    return KILN_STATUS_OK;
}

kiln_status kiln_calib_cache_format(const char *what, const char *algorithm, uint64_t fingerprint,
                                    const char *const *names, const float *scales, int64_t n, char **text, size_t *size) {
    if (!what || !text || !size || n < 0 || (n > 0 && (!names || !scales)))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_cache_format: NULL argument or negative count");
    *text = NULL;
    *size = 0;
    const char *path = what;
    KILN_TRY(check_algorithm(algorithm));
    for (int64_t i = 0; i < n; i++) {
        if (!names[i] || !*names[i])
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration cache %s: entry %lld has an empty name", path,
                              (long long)i);
        if (strpbrk(names[i], "\r\n"))
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration cache %s: tensor name '%s' holds a line break",
                              path, names[i]);
        if (!isfinite(scales[i]) || scales[i] < 0)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "calibration cache %s: tensor '%s' has scale %g", path,
                              names[i], (double)scales[i]);
    }
    size_t cap = strlen(algorithm) + 80;
    for (int64_t i = 0; i < n; i++) cap += strlen(names[i]) + 12;
    char *buf = kiln_malloc(cap);
    if (!buf) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "calibration cache %s: out of memory", what);
    size_t k = (size_t)snprintf(buf, cap, "KILN-%s-%s fingerprint=%016llx\n", KILN_VERSION_STRING, algorithm,
                                (unsigned long long)fingerprint);
    for (int64_t i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s: %08x\n", names[i], (unsigned)float_bits(scales[i]));
    if (k >= cap) {
        free(buf);
        return kiln_error(KILN_STATUS_INTERNAL, "calibration cache %s: text longer than planned", what);
    }
    *text = buf;
    *size = k;
    return KILN_STATUS_OK;
}

kiln_status kiln_calib_cache_write(const char *path, const char *algorithm, uint64_t fingerprint,
                                   const char *const *names, const float *scales, int64_t n) {
    if (!path) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_cache_write: NULL path");
    char *text;
    size_t size;
    KILN_TRY(kiln_calib_cache_format(path, algorithm, fingerprint, names, scales, n, &text, &size));

    static atomic_uint seq;
    char *tmp = NULL;
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        free(tmp);
        size_t len = strlen(path) + 64;
        if (!(tmp = kiln_malloc(len))) {
            free(text);
            return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
        }
        snprintf(tmp, len, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&seq, 1u));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        kiln_status st = kiln_error(KILN_STATUS_IO_ERROR, "calibration cache %s: cannot create a temporary file: %s",
                                    path, strerror(errno));
        free(tmp);
        free(text);
        return st;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int err = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        free(text);
        return kiln_error(KILN_STATUS_IO_ERROR, "calibration cache %s: cannot write: %s", path, strerror(err));
    }
    bool ok = fwrite(text, 1, size, f) == size;
    free(text);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        err = errno;
    }
    kiln_status st = KILN_STATUS_OK;
    if (!ok) {
        unlink(tmp);
        st = kiln_error(KILN_STATUS_IO_ERROR, "calibration cache %s: cannot write: %s", path, strerror(err));
    }
    free(tmp);
    return st;
}

/* ---- reading ---- */

static kiln_status read_file(const char *path, char **out, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_STATUS_IO_ERROR, "calibration cache %s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = kiln_malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *grown = cap < ((size_t)1 << 32) ? realloc(buf, cap * 2 + 1) : NULL;
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    bool bad = !buf || ferror(f);
    int err = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return buf ? kiln_error(KILN_STATUS_IO_ERROR, "calibration cache %s: read failed: %s", path, strerror(err))
                   : kiln_error(KILN_STATUS_OUT_OF_MEMORY, "calibration cache %s: out of memory (or over 4 GiB)", path);
    }
    buf[n] = 0;
    *out = buf;
    *size = n;
    return KILN_STATUS_OK;
}

/* n hex digits at s into *v; false if any is not a hex digit. */
static bool parse_hex(const char *s, int n, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < n; i++) {
        int c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return false;
        x = x << 4 | (uint64_t)d;
    }
    *v = x;
    return true;
}

static bool all_digits(const char *s, size_t n) {
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

/* Parses the header line; sets *algorithm (malloc'ed) and *has_fp / *fp. */
static kiln_status parse_header(const char *path, const char *line, char **algorithm, bool *has_fp, uint64_t *fp) {
    const char *sp = strchr(line, ' ');
    size_t tok = sp ? (size_t)(sp - line) : strlen(line);
    const char *dash = NULL;
    for (const char *c = line; c < line + tok; c++)
        if (*c == '-') dash = c;
    bool trt = tok > 4 && strncmp(line, "TRT-", 4) == 0, kiln = tok > 5 && strncmp(line, "KILN-", 5) == 0;
    size_t prefix = trt ? 4 : 5;
    if (!(trt || kiln) || !dash || dash < line + prefix || dash + 1 == line + tok ||
        (trt && !all_digits(line + 4, (size_t)(dash - line - 4))))
        return kiln_error(KILN_STATUS_INVALID_MODEL,
                          "%s:1: header '%.80s' is not 'TRT-<version>-<algorithm>' or "
                          "'KILN-<version>-<algorithm> fingerprint=<16 hex digits>'", path, line);
    *has_fp = false;
    if (sp) {
        const char *f = sp + 1;
        if (strncmp(f, "fingerprint=", 12) != 0 || strlen(f + 12) != 16 || !parse_hex(f + 12, 16, fp))
            return kiln_error(KILN_STATUS_INVALID_MODEL, "%s:1: after the header's first word, expected "
                              "'fingerprint=<16 hex digits>', found '%.80s'", path, f);
        *has_fp = true;
    } else if (kiln) {
        return kiln_error(KILN_STATUS_INVALID_MODEL, "%s:1: kiln cache header '%.80s' lacks 'fingerprint=<16 hex digits>'",
                          path, line);
    }
    size_t alen = (size_t)(line + tok - dash - 1);
    if (!(*algorithm = kiln_malloc(alen + 1))) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    memcpy(*algorithm, dash + 1, alen);
    (*algorithm)[alen] = 0;
    return KILN_STATUS_OK;
}

typedef struct {
    const char *name;
    int64_t line;
} name_line;

static int cmp_name_line(const void *a, const void *b) {
    const name_line *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* A tensor named twice is refused (naming both lines). */
static kiln_status check_duplicates(const char *path, const kiln_calib_entry *e, const int64_t *lines, int64_t n) {
    if (n < 2) return KILN_STATUS_OK;
    name_line *v = kiln_malloc((size_t)n * sizeof *v);
    if (!v) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    for (int64_t i = 0; i < n; i++) v[i] = (name_line){e[i].name, lines[i]};
    qsort(v, (size_t)n, sizeof *v, cmp_name_line);
    kiln_status st = KILN_STATUS_OK;
    for (int64_t i = 1; i < n && !st; i++)
        if (strcmp(v[i - 1].name, v[i].name) == 0)
            st = kiln_error(KILN_STATUS_INVALID_MODEL, "%s:%lld: tensor '%s' already has a scale on line %lld", path,
                            (long long)v[i].line, v[i].name, (long long)v[i - 1].line);
    free(v);
    return st;
}

/* Parses text (size bytes, NUL-terminated at text[size]; modified in place, freed here). */
static kiln_status parse_cache(const char *path, char *text, size_t size, uint64_t expected_fingerprint,
                               kiln_calib_entry **entries, int64_t *n, char **algorithm, bool *fingerprint_checked) {
    if (memchr(text, 0, size)) {
        free(text);
        return kiln_error(KILN_STATUS_INVALID_MODEL, "calibration cache %s holds a NUL byte: not a text cache", path);
    }

    /* split into lines in place, dropping "\r" before "\n" */
    int64_t nlines = 0;
    for (size_t i = 0; i < size; i++) nlines += text[i] == '\n';
    nlines++;
    char **line = kiln_malloc((size_t)nlines * sizeof *line);
    kiln_calib_entry *e = kiln_calloc((size_t)nlines, sizeof *e);
    int64_t *where = kiln_malloc((size_t)nlines * sizeof *where);
    char *alg = NULL;
    int64_t count = 0;
    kiln_status st = KILN_STATUS_OK;
    if (!line || !e || !where) {
        st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "calibration cache %s: out of memory", path);
        goto done;
    }
    {
        int64_t k = 0;
        for (char *p = text;; k++) {
            line[k] = p;
            char *nl = strchr(p, '\n');
            if (nl) *nl = 0;
            size_t len = strlen(p);
            if (len && p[len - 1] == '\r') p[len - 1] = 0;
            if (!nl) break;
            p = nl + 1;
        }
        nlines = k + 1;
    }
    if (size == 0 || !*line[0]) {
        st = kiln_error(KILN_STATUS_INVALID_MODEL, "%s:1: empty first line, expected a calibration cache header", path);
        goto done;
    }
    bool has_fp = false;
    uint64_t fp = 0;
    if ((st = parse_header(path, line[0], &alg, &has_fp, &fp))) goto done;
    if (has_fp && fp != expected_fingerprint) {
        st = kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                        "calibration cache %s was made for another model: its fingerprint is %016llx, this model's is "
                        "%016llx (recalibrate, or delete the cache)", path, (unsigned long long)fp,
                        (unsigned long long)expected_fingerprint);
        goto done;
    }
    for (int64_t k = 1; k < nlines; k++) {
        const char *s = line[k];
        if (!*s) continue;
        const char *sep = NULL;
        for (const char *c = s; (c = strstr(c, ": ")); c++) sep = c;
        uint64_t bits;
        if (!sep || sep == s || strlen(sep + 2) != 8 || !parse_hex(sep + 2, 8, &bits)) {
            st = kiln_error(KILN_STATUS_INVALID_MODEL, "%s:%lld: expected '<tensor name>: <8 hex digits>', found '%.80s'",
                            path, (long long)(k + 1), s);
            goto done;
        }
        uint32_t b32 = (uint32_t)bits;
        float scale;
        memcpy(&scale, &b32, sizeof scale);
        size_t nlen = (size_t)(sep - s);
        if (!isfinite(scale) || scale < 0) {
            st = kiln_error(KILN_STATUS_INVALID_MODEL, "%s:%lld: tensor '%.*s' has scale %g (bits %s)", path,
                            (long long)(k + 1), (int)(nlen > 200 ? 200 : nlen), s, (double)scale, sep + 2);
            goto done;
        }
        if (!(e[count].name = kiln_malloc(nlen + 1))) {
            st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "calibration cache %s: out of memory", path);
            goto done;
        }
        memcpy(e[count].name, s, nlen);
        e[count].name[nlen] = 0;
        e[count].scale = scale;
        where[count++] = k + 1;
    }
    if ((st = check_duplicates(path, e, where, count))) goto done;
    *entries = e;
    *n = count;
    *algorithm = alg;
    *fingerprint_checked = has_fp;
    e = NULL;
    alg = NULL;
done:
    kiln_calib_entries_free(e, count);
    free(alg);
    free(where);
    free(line);
    free(text);
    return st;
}

static kiln_status check_read_args(kiln_calib_entry **entries, int64_t *n, char **algorithm, bool *fingerprint_checked) {
    if (!entries || !n || !algorithm || !fingerprint_checked)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_cache_read: NULL argument");
    *entries = NULL;
    *n = 0;
    *algorithm = NULL;
    *fingerprint_checked = false;
    return KILN_STATUS_OK;
}

kiln_status kiln_calib_cache_read(const char *path, uint64_t expected_fingerprint, kiln_calib_entry **entries,
                                  int64_t *n, char **algorithm, bool *fingerprint_checked) {
    if (!path) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_cache_read: NULL path");
    KILN_TRY(check_read_args(entries, n, algorithm, fingerprint_checked));
    char *text = NULL;
    size_t size = 0;
    KILN_TRY(read_file(path, &text, &size));
    return parse_cache(path, text, size, expected_fingerprint, entries, n, algorithm, fingerprint_checked);
}

kiln_status kiln_calib_cache_parse(const char *what, const void *data, size_t size, uint64_t expected_fingerprint,
                                   kiln_calib_entry **entries, int64_t *n, char **algorithm, bool *fingerprint_checked) {
    if (!what || (!data && size)) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_calib_cache_parse: NULL argument");
    KILN_TRY(check_read_args(entries, n, algorithm, fingerprint_checked));
    char *text = kiln_malloc(size + 1);
    if (!text) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "calibration cache %s: out of memory", what);
    if (size) memcpy(text, data, size);
    text[size] = 0;
    return parse_cache(what, text, size, expected_fingerprint, entries, n, algorithm, fingerprint_checked);
}
