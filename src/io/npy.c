/* npy.c — NumPy .npy and .npz reading and writing (format and limits: npy.h).
 *
 * One reader serves three sources (memory, a FILE, an npz member opened with libzip): it reads
 * the fixed prefix, then the header (its length checked against what the source holds), parses
 * the header dict, checks the data size against what is left, and only then allocates the
 * tensor and reads the data straight into it. Zip archives are libzip's business entirely.
 * Tests: tests/unit/test_npy.c, tests/unit/test_npy_numpy.py. */
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64                               /* numpy's ARRAY_ALIGN */
#define NPY_GROWTH_AXIS_MAX_DIGITS 21              /* numpy >= 1.24 pads the header for this */
#define NPY_MAX_HEADER ((uint64_t)1 << 20)         /* numpy itself refuses > 10000 by default */
#define NPZ_MAX_MEMBER ((uint64_t)4 << 30)         /* largest npz member kiln will read */
#define NPZ_MAX_DEFLATE_RATIO 1100                 /* deflate cannot expand more than ~1032:1 */

static bool host_is_le(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* ---- dtypes ---- */

/* The numpy descr of a kiln dtype, without the byte-order character; NULL if none. */
static const char *npy_descr_of(kiln_dtype dt) {
    switch (dt) {
    case KILN_DTYPE_F16: return "f2";
    case KILN_DTYPE_F32: return "f4";
    case KILN_DTYPE_F64: return "f8";
    case KILN_DTYPE_I8: return "i1";
    case KILN_DTYPE_I16: return "i2";
    case KILN_DTYPE_I32: return "i4";
    case KILN_DTYPE_I64: return "i8";
    case KILN_DTYPE_U8: return "u1";
    case KILN_DTYPE_U16: return "u2";
    case KILN_DTYPE_U32: return "u4";
    case KILN_DTYPE_U64: return "u8";
    case KILN_DTYPE_BOOL: return "b1";
    case KILN_DTYPE_BF16: return "V2"; /* ml_dtypes' bfloat16 saves as '<V2' */
    default: return NULL;
    }
}

/* Maps a descr such as '<f4' to a kiln dtype and whether its bytes need swapping. */
static kiln_status npy_dtype_from_descr(const char *what, const char *descr, kiln_dtype *dt,
                                        bool *swap) {
    const char *p = descr;
    char order = '=';
    if (*p == '<' || *p == '>' || *p == '|' || *p == '=') order = *p++;
    char kind = *p ? *p++ : 0;
    int size = 0;
    const char *digits = p;
    while (*p >= '0' && *p <= '9' && size < 1000) size = size * 10 + (*p++ - '0');
    bool well_formed = p > digits && *p == 0;

    *dt = KILN_DTYPE_UNDEFINED;
    if (well_formed) {
        switch (kind) {
        case 'f': *dt = size == 2 ? KILN_DTYPE_F16 : size == 4 ? KILN_DTYPE_F32
                      : size == 8 ? KILN_DTYPE_F64 : KILN_DTYPE_UNDEFINED; break;
        case 'i': *dt = size == 1 ? KILN_DTYPE_I8 : size == 2 ? KILN_DTYPE_I16 : size == 4 ? KILN_DTYPE_I32
                      : size == 8 ? KILN_DTYPE_I64 : KILN_DTYPE_UNDEFINED; break;
        case 'u': *dt = size == 1 ? KILN_DTYPE_U8 : size == 2 ? KILN_DTYPE_U16 : size == 4 ? KILN_DTYPE_U32
                      : size == 8 ? KILN_DTYPE_U64 : KILN_DTYPE_UNDEFINED; break;
        case 'b': case '?': *dt = size == 1 ? KILN_DTYPE_BOOL : KILN_DTYPE_UNDEFINED; break;
        /* numpy has no bf16: ml_dtypes' bfloat16 arrays (what onnx uses) save as '<V2', and kiln
         * reads and writes bf16 that way. Other void sizes stay refused. */
        case 'V': *dt = size == 2 ? KILN_DTYPE_BF16 : KILN_DTYPE_UNDEFINED; break;
        default: break;
        }
    }
    if (*dt != KILN_DTYPE_UNDEFINED) {
        bool big = order == '>' || (order == '=' && !host_is_le());
        if (order == '|') big = !host_is_le(); /* "not applicable": native */
        *swap = size > 1 && big == host_is_le();
        return KILN_STATUS_OK;
    }
    const char *why;
    switch (kind) {
    case 'S': case 'a': case 'U': why = "string dtypes are not supported"; break;
    case 'O': why = "object arrays are not supported"; break;
    case 'V': why = "void/raw dtypes other than '<V2' (bf16 from ml_dtypes) are not supported"; break;
    case 'c': why = "complex dtypes are not supported"; break;
    case 'M': case 'm': why = "datetime dtypes are not supported"; break;
    default: why = "this dtype is not supported"; break;
    }
    return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: dtype '%s': %s", what, descr, why);
}

/* ---- the header dict: a Python literal such as
 *      {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          ---- */

typedef struct npy_header {
    kiln_dtype dtype;
    bool swap;    /* data is in the other byte order */
    bool fortran; /* data is column-major */
    int rank;
    int64_t dims[KILN_MAX_RANK];
} npy_header;

typedef struct hcur {
    const char *s, *p, *end;
    const char *what;
} hcur;

static void h_ws(hcur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static kiln_status h_bad(hcur *c, const char *expected) {
    char near[24];
    size_t k = 0;
    for (const char *q = c->p; q < c->end && k + 1 < sizeof near; q++)
        near[k++] = (*q >= 32 && *q < 127) ? *q : '?';
    near[k] = 0;
    return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                      "%s: malformed .npy header: expected %s at offset %td (near \"%s\")", c->what,
                      expected, c->p - c->s, near);
}

static bool h_eat(hcur *c, char ch) {
    h_ws(c);
    if (c->p < c->end && *c->p == ch) { c->p++; return true; }
    return false;
}

/* A quoted string into out (truncated to cap - 1 characters). */
static kiln_status h_string(hcur *c, char *out, size_t cap) {
    h_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return h_bad(c, "a quoted string");
    char q = *c->p++;
    size_t k = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' && c->p + 1 < c->end) c->p++;
        if (k + 1 < cap) out[k++] = *c->p;
        c->p++;
    }
    if (c->p >= c->end) return h_bad(c, "a closing quote");
    c->p++;
    out[k] = 0;
    return KILN_STATUS_OK;
}

static kiln_status h_bool(hcur *c, bool *v) {
    h_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && !memcmp(c->p, "True", 4)) { *v = true; c->p += 4; return KILN_STATUS_OK; }
    if (left >= 5 && !memcmp(c->p, "False", 5)) { *v = false; c->p += 5; return KILN_STATUS_OK; }
    return h_bad(c, "True or False");
}

/* "(2, 3)", "(3,)", "()"; a list or a bare integer is accepted too. Python 2 "3L" as well. */
static kiln_status h_shape(hcur *c, npy_header *h) {
    h_ws(c);
    char close = 0;
    if (c->p < c->end && (*c->p == '(' || *c->p == '[')) close = *c->p++ == '(' ? ')' : ']';
    h->rank = 0;
    for (;;) {
        h_ws(c);
        if (close && c->p < c->end && *c->p == close) { c->p++; break; }
        if (c->p < c->end && *c->p == '-')
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: .npy shape has a negative dimension",
                              c->what);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return h_bad(c, "a dimension");
        int64_t d = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            int digit = *c->p++ - '0';
            if (d > (INT64_MAX - digit) / 10)
                return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                                  "%s: .npy shape has a dimension that overflows int64", c->what);
            d = d * 10 + digit;
        }
        if (c->p < c->end && (*c->p == 'L' || *c->p == 'l')) c->p++;
        if (h->rank == KILN_MAX_RANK)
            return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: .npy shape has more than %d dimensions",
                              c->what, KILN_MAX_RANK);
        h->dims[h->rank++] = d;
        if (!close) break;
        if (h_eat(c, ',')) continue;
        if (h_eat(c, close)) break;
        return h_bad(c, "',' or the end of the shape");
    }
    return KILN_STATUS_OK;
}

/* Skips a value of a key kiln does not know: a string, a bracketed group, or a bare token. */
static kiln_status h_skip(hcur *c) {
    h_ws(c);
    int depth = 0;
    while (c->p < c->end) {
        char ch = *c->p;
        if (ch == '\'' || ch == '"') {
            char tmp[2];
            KILN_TRY(h_string(c, tmp, sizeof tmp));
            continue;
        }
        if (ch == '(' || ch == '[' || ch == '{') depth++;
        else if (ch == ')' || ch == ']' || ch == '}') {
            if (depth == 0) return KILN_STATUS_OK;
            depth--;
        } else if (ch == ',' && depth == 0) return KILN_STATUS_OK;
        c->p++;
    }
    return h_bad(c, "the end of a value");
}

static kiln_status npy_parse_header(const char *what, const char *text, size_t len, npy_header *h) {
    hcur c = {text, text, text + len, what};
    bool have_descr = false, have_fortran = false, have_shape = false;
    char descr[64] = "";
    if (!h_eat(&c, '{')) return h_bad(&c, "'{'");
    for (;;) {
        if (h_eat(&c, '}')) break;
        char key[32];
        KILN_TRY(h_string(&c, key, sizeof key));
        if (!h_eat(&c, ':')) return h_bad(&c, "':'");
        if (!strcmp(key, "descr")) {
            h_ws(&c);
            if (c.p < c.end && *c.p == '[')
                return kiln_error(KILN_STATUS_UNSUPPORTED,
                                  "%s: structured dtypes (a list of fields) are not supported", what);
            KILN_TRY(h_string(&c, descr, sizeof descr));
            have_descr = true;
        } else if (!strcmp(key, "fortran_order")) {
            KILN_TRY(h_bool(&c, &h->fortran));
            have_fortran = true;
        } else if (!strcmp(key, "shape")) {
            KILN_TRY(h_shape(&c, h));
            have_shape = true;
        } else {
            KILN_TRY(h_skip(&c)); /* numpy refuses extra keys; kiln ignores them */
        }
        if (h_eat(&c, ',')) continue;
        if (h_eat(&c, '}')) break;
        return h_bad(&c, "',' or '}'");
    }
    h_ws(&c);
    if (c.p != c.end) return h_bad(&c, "only padding after the header dict");
    const char *missing = !have_descr ? "descr" : !have_fortran ? "fortran_order" : !have_shape ? "shape" : NULL;
    if (missing)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: .npy header has no '%s' key", what, missing);
    return npy_dtype_from_descr(what, descr, &h->dtype, &h->swap);
}

/* ---- byte sources ---- */

typedef enum { SRC_MEM, SRC_FILE, SRC_ZIP } src_kind;

typedef struct npy_src {
    src_kind kind;
    const char *what;  /* names the source in errors */
    uint64_t size;     /* bytes the source holds; UINT64_MAX if not known */
    uint64_t pos;
    const unsigned char *mem;
    FILE *fp;
    zip_file_t *zf;
} npy_src;

static kiln_status src_truncated(npy_src *s, const char *part, uint64_t n) {
    if (s->size == UINT64_MAX)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: truncated: %s needs %llu bytes at offset %llu",
                          s->what, part, (unsigned long long)n, (unsigned long long)s->pos);
    return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                      "%s: truncated: %s needs %llu bytes at offset %llu but the %s holds %llu bytes",
                      s->what, part, (unsigned long long)n, (unsigned long long)s->pos,
                      s->kind == SRC_ZIP ? "member" : s->kind == SRC_FILE ? "file" : "buffer",
                      (unsigned long long)s->size);
}

static kiln_status zip_file_failure(npy_src *s) {
    zip_error_t *e = zip_file_get_error(s->zf);
    int sys = zip_error_code_zip(e) == ZIP_ER_READ || zip_error_code_zip(e) == ZIP_ER_SEEK;
    return kiln_error(sys ? KILN_STATUS_IO_ERROR : KILN_STATUS_INVALID_ARGUMENT, "%s: %s", s->what,
                      zip_error_strerror(e));
}

/* Reads exactly n bytes (the `part` of the file, for messages). */
static kiln_status src_read(npy_src *s, void *dst, uint64_t n, const char *part) {
    if (s->size != UINT64_MAX && n > s->size - s->pos) return src_truncated(s, part, n);
    uint64_t got = 0;
    switch (s->kind) {
    case SRC_MEM:
        if (n) memcpy(dst, s->mem + s->pos, (size_t)n);
        got = n;
        break;
    case SRC_FILE:
        got = fread(dst, 1, (size_t)n, s->fp);
        if (got < n && ferror(s->fp))
            return kiln_error(KILN_STATUS_IO_ERROR, "%s: read error: %s", s->what, strerror(errno));
        break;
    case SRC_ZIP:
        while (got < n) {
            zip_int64_t r = zip_fread(s->zf, (unsigned char *)dst + got, n - got);
            if (r < 0) return zip_file_failure(s);
            if (r == 0) break;
            got += (uint64_t)r;
        }
        break;
    }
    if (got < n) {
        s->size = s->pos + got; /* what the source really held */
        return src_truncated(s, part, n);
    }
    s->pos += n;
    return KILN_STATUS_OK;
}

/* An npz member: reads what follows the array to the end, so libzip checks the CRC. */
static kiln_status src_finish(npy_src *s) {
    if (s->kind != SRC_ZIP) return KILN_STATUS_OK;
    unsigned char scratch[4096];
    for (;;) {
        zip_int64_t r = zip_fread(s->zf, scratch, sizeof scratch);
        if (r < 0) return zip_file_failure(s);
        if (r == 0) return KILN_STATUS_OK;
        s->pos += (uint64_t)r;
        if (s->pos > s->size)
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: member is longer than its declared %llu bytes",
                              s->what, (unsigned long long)s->size);
    }
}

/* ---- reading ---- */

static uint32_t le_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void byteswap(void *data, int64_t count, size_t esize) {
    unsigned char *p = data;
    for (int64_t i = 0; i < count; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Column-major src into row-major dst, both of shape dims. */
static void fortran_to_c(const unsigned char *src, unsigned char *dst, int rank, const int64_t *dims,
                         int64_t count, size_t esize) {
    int64_t fstride[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, off = 0;
    int64_t stride = 1;
    for (int k = 0; k < rank; k++) {
        fstride[k] = stride;
        stride *= dims[k];
    }
    for (int64_t i = 0; i < count; i++) {
        memcpy(dst + (size_t)i * esize, src + (size_t)off * esize, esize);
        for (int k = rank - 1; k >= 0; k--) { /* next row-major index */
            off += fstride[k];
            if (++idx[k] < dims[k]) break;
            off -= fstride[k] * dims[k];
            idx[k] = 0;
        }
    }
}

static kiln_status npy_read_src(npy_src *s, kiln_tensor **out) {
    *out = NULL;
    unsigned char pre[12];
    if (s->size != UINT64_MAX && s->size < 10)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: %llu bytes is too short for an .npy file",
                          s->what, (unsigned long long)s->size);
    KILN_TRY(src_read(s, pre, 10, "the .npy prefix"));
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN)) {
        if (!memcmp(pre, "PK\x03\x04", 4))
            return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                              "%s: is a zip archive (an .npz?), not an .npy file", s->what);
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: not an .npy file (bad magic)", s->what);
    }
    int major = pre[6], minor = pre[7];
    uint64_t hlen;
    if (major == 1 && minor == 0) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
    } else if ((major == 2 || major == 3) && minor == 0) {
        KILN_TRY(src_read(s, pre + 10, 2, "the .npy prefix"));
        hlen = le_u32(pre + 8);
    } else {
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: .npy format version %d.%d is not supported", s->what,
                          major, minor);
    }
    if (hlen > NPY_MAX_HEADER)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: .npy header length %llu is implausible",
                          s->what, (unsigned long long)hlen);
    if (s->size != UINT64_MAX && hlen > s->size - s->pos)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                          "%s: .npy header length %llu is past the end (%llu bytes)", s->what,
                          (unsigned long long)hlen, (unsigned long long)s->size);
    char *text = kiln_malloc((size_t)hlen + 1);
    if (!text) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory for the header", s->what);
    kiln_status st = src_read(s, text, hlen, "the .npy header");
    npy_header h = {0};
    if (!st) st = npy_parse_header(s->what, text, (size_t)hlen, &h);
    free(text);
    if (st) return st;

    char dbuf[200];
    int64_t count = kiln_shape_count(h.rank, h.dims);
    if (count < 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: .npy shape %s has too many elements", s->what,
                          kiln_dims_str(h.rank, h.dims, dbuf, sizeof dbuf));
    size_t esize = kiln_dtype_size(h.dtype), bytes;
    uint64_t left = s->size - s->pos; /* huge when the size is not known */
    if ((uint64_t)count > left / esize) /* checked before anything is allocated */
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                          "%s: truncated: %s%s needs %llu x %zu bytes of data but %llu remain", s->what,
                          kiln_dtype_name(h.dtype), kiln_dims_str(h.rank, h.dims, dbuf, sizeof dbuf),
                          (unsigned long long)count, esize, (unsigned long long)left);
    st = kiln_checked_bytes(count, esize, &bytes);
    if (st) return kiln_error_prefix(st, "%s: shape %s", s->what, kiln_dims_str(h.rank, h.dims, dbuf, sizeof dbuf));

    kiln_tensor *t = kiln_calloc(1, sizeof *t);
    if (!t) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", s->what);
    st = kiln_tensor_alloc(t, h.dtype, h.rank, h.dims);
    if (st) {
        free(t);
        return kiln_error_prefix(st, "%s", s->what);
    }
    bool transpose = h.fortran && h.rank > 1 && count > 1;
    void *tmp = NULL;
    if (transpose && !(tmp = kiln_malloc(bytes)))
        st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory for a %zu-byte transpose", s->what, bytes);
    if (!st) st = src_read(s, transpose ? tmp : t->data, bytes, "the array data");
    if (!st && transpose) fortran_to_c(tmp, t->data, h.rank, h.dims, count, esize);
    free(tmp);
    if (!st && h.swap) byteswap(t->data, count, esize);
    if (!st) st = src_finish(s);
    if (st) {
        kiln_tensor_release(t);
        free(t);
        return st;
    }
    *out = t;
    return KILN_STATUS_OK;
}

kiln_status kiln_npy_parse(const void *buf, size_t size, const char *what, kiln_tensor **out) {
    if (!out) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_npy_parse: NULL out");
    *out = NULL;
    if (!what) what = "<buffer>";
    if (!buf && size) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: NULL buffer", what);
    npy_src s = {.kind = SRC_MEM, .what = what, .size = size, .mem = buf};
    return npy_read_src(&s, out);
}

kiln_status kiln_npy_read(const char *path, kiln_tensor **out) {
    if (!out || !path) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_npy_read: NULL argument");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || S_ISDIR(sb.st_mode)) {
        fclose(fp);
        return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot read: %s", path,
                          S_ISDIR(sb.st_mode) ? "is a directory" : strerror(errno));
    }
    npy_src s = {.kind = SRC_FILE, .what = path, .fp = fp,
                 .size = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : UINT64_MAX};
    kiln_status st = npy_read_src(&s, out);
    fclose(fp);
    return st;
}

static char *str_printf(const char *fmt, const char *a, const char *b) {
    size_t n = strlen(fmt) + strlen(a) + strlen(b) + 1;
    char *s = kiln_malloc(n);
    if (s) snprintf(s, n, fmt, a, b);
    return s;
}

void kiln_named_tensors_free(kiln_named_tensor *items, int n) {
    if (!items) return;
    for (int i = 0; i < n; i++) {
        free(items[i].name);
        if (items[i].t) {
            kiln_tensor_release(items[i].t);
            free(items[i].t);
        }
    }
    free(items);
}

/* Reads member i of za into a new item; skipped (*item->name stays NULL) for directories. */
static kiln_status npz_read_member(const char *path, zip_t *za, zip_uint64_t i, kiln_named_tensor *item) {
    zip_stat_t zs;
    if (zip_stat_index(za, i, 0, &zs) != 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: member %llu: %s", path, (unsigned long long)i,
                          zip_strerror(za));
    const char *name = (zs.valid & ZIP_STAT_NAME) && zs.name ? zs.name : "";
    size_t nlen = strlen(name);
    if (nlen && name[nlen - 1] == '/') return KILN_STATUS_OK; /* a directory entry */
    char *what = str_printf("%s: member '%s'", path, name);
    if (!what) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    kiln_status st = KILN_STATUS_OK;
    uint64_t size = zs.size, csize = zs.comp_size;
    if (!(zs.valid & ZIP_STAT_SIZE) || !(zs.valid & ZIP_STAT_COMP_SIZE) || !(zs.valid & ZIP_STAT_COMP_METHOD))
        st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: sizes are not known", what);
    else if ((zs.valid & ZIP_STAT_ENCRYPTION_METHOD) && zs.encryption_method != ZIP_EM_NONE)
        st = kiln_error(KILN_STATUS_UNSUPPORTED, "%s: encrypted members are not supported", what);
    else if (!zip_compression_method_supported(zs.comp_method, 0))
        st = kiln_error(KILN_STATUS_UNSUPPORTED, "%s: zip compression method %d is not supported", what,
                        (int)zs.comp_method);
    else if (size > NPZ_MAX_MEMBER)
        st = kiln_error(KILN_STATUS_UNSUPPORTED, "%s: %llu bytes is above kiln's %llu-byte limit for an npz member",
                        what, (unsigned long long)size, (unsigned long long)NPZ_MAX_MEMBER);
    else if ((zs.comp_method == ZIP_CM_STORE && size != csize) ||
             (zs.comp_method == ZIP_CM_DEFLATE && size / NPZ_MAX_DEFLATE_RATIO > csize + 64))
        st = kiln_error(KILN_STATUS_INVALID_ARGUMENT,
                        "%s: declares %llu bytes from %llu compressed bytes, which cannot be", what,
                        (unsigned long long)size, (unsigned long long)csize);
    zip_file_t *zf = NULL;
    if (!st && !(zf = zip_fopen_index(za, i, 0)))
        st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: cannot open: %s", what, zip_strerror(za));
    if (!st) {
        npy_src s = {.kind = SRC_ZIP, .what = what, .size = size, .zf = zf};
        st = npy_read_src(&s, &item->t);
    }
    if (zf) zip_fclose(zf);
    free(what);
    if (st) return st;
    if (nlen >= 4 && !strcmp(name + nlen - 4, ".npy")) nlen -= 4;
    if (!(item->name = kiln_malloc(nlen + 1))) {
        kiln_tensor_release(item->t);
        free(item->t);
        item->t = NULL;
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    memcpy(item->name, name, nlen);
    item->name[nlen] = 0;
    return KILN_STATUS_OK;
}

kiln_status kiln_npz_read(const char *path, kiln_named_tensor **items, int *n) {
    if (!path || !items || !n) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_npz_read: NULL argument");
    *items = NULL;
    *n = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return kiln_error(KILN_STATUS_IO_ERROR, "%s: is a directory", path);
    if (S_ISREG(sb.st_mode) && sb.st_size == 0) /* libzip would open it as a new, empty archive */
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: empty file, not an .npz archive", path);
    int zerr = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY, &zerr);
    if (!za) {
        zip_error_t e;
        zip_error_init_with_code(&e, zerr);
        bool io = zerr == ZIP_ER_OPEN || zerr == ZIP_ER_READ || zerr == ZIP_ER_SEEK || zerr == ZIP_ER_NOENT;
        kiln_status st = kiln_error(io ? KILN_STATUS_IO_ERROR : KILN_STATUS_INVALID_ARGUMENT,
                                    "%s: cannot open as an .npz (zip) archive: %s", path, zip_error_strerror(&e));
        zip_error_fini(&e);
        return st;
    }
    zip_int64_t nent = zip_get_num_entries(za, 0);
    kiln_status st = KILN_STATUS_OK;
    if (nent < 0 || nent > INT32_MAX)
        st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: bad number of zip entries", path);
    kiln_named_tensor *arr = NULL;
    int count = 0;
    if (!st && !(arr = kiln_calloc((size_t)nent, sizeof *arr)))
        st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory for %lld entries", path, (long long)nent);
    for (zip_int64_t i = 0; !st && i < nent; i++) {
        st = npz_read_member(path, za, (zip_uint64_t)i, &arr[count]);
        if (!st && arr[count].t) count++;
    }
    zip_discard(za);
    if (st) {
        kiln_named_tensors_free(arr, count);
        return st;
    }
    *items = arr;
    *n = count;
    return KILN_STATUS_OK;
}

/* ---- writing ---- */

/* The .npy prefix and header of t into hdr (malloc'ed), as numpy's format.write_array writes it. */
static kiln_status npy_make_header(const kiln_tensor *t, const char *what, unsigned char **hdr, size_t *hlen,
                                   size_t *data_bytes) {
    *hdr = NULL;
    const char *d = npy_descr_of(t->dtype);
    if (!d)
        return kiln_error(KILN_STATUS_UNSUPPORTED, "%s: dtype %s has no .npy equivalent", what,
                          kiln_dtype_name(t->dtype));
    if (t->rank < 0 || t->rank > KILN_MAX_RANK)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: bad rank %d", what, t->rank);
    int64_t count = kiln_shape_count(t->rank, t->dims);
    if (count < 0)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: the tensor's shape is not known", what);
    kiln_status st = kiln_checked_bytes(count, kiln_dtype_size(t->dtype), data_bytes);
    if (st) return kiln_error_prefix(st, "%s", what);
    if (!t->data && *data_bytes)
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: the tensor has no data", what);

    char dict[512];
    size_t k = 0;
    char order = kiln_dtype_size(t->dtype) == 1 ? '|' : host_is_le() ? '<' : '>';
    k += (size_t)snprintf(dict + k, sizeof dict - k, "{'descr': '%c%s', 'fortran_order': False, 'shape': (",
                          order, d);
    for (int i = 0; i < t->rank; i++)
        k += (size_t)snprintf(dict + k, sizeof dict - k, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
    k += (size_t)snprintf(dict + k, sizeof dict - k, "%s), }", t->rank == 1 ? "," : "");
    if (t->rank > 0) { /* numpy >= 1.24 leaves room for axis 0 to grow to 21 digits */
        char first[32];
        int digits = snprintf(first, sizeof first, "%lld", (long long)t->dims[0]);
        for (int i = digits; i < NPY_GROWTH_AXIS_MAX_DIGITS; i++) dict[k++] = ' ';
    }
    KILN_ASSERT(k < sizeof dict);

    size_t text = k + 1; /* + '\n' */
    size_t prefix = NPY_MAGIC_LEN + 2 + 2;
    size_t pad = NPY_ALIGN - (prefix + text) % NPY_ALIGN;
    int major = 1;
    if (text + pad > 0xffff) { /* version 2.0: a 4-byte length */
        major = 2;
        prefix = NPY_MAGIC_LEN + 2 + 4;
        pad = NPY_ALIGN - (prefix + text) % NPY_ALIGN;
    }
    size_t body = text + pad, total = prefix + body;
    unsigned char *h = kiln_malloc(total);
    if (!h) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", what);
    memcpy(h, NPY_MAGIC, NPY_MAGIC_LEN);
    h[6] = (unsigned char)major;
    h[7] = 0;
    for (size_t i = 0; i < prefix - 8; i++) h[8 + i] = (unsigned char)(body >> (8 * i));
    memcpy(h + prefix, dict, k);
    memset(h + prefix + k, ' ', pad);
    h[total - 1] = '\n';
    *hdr = h;
    *hlen = total;
    return KILN_STATUS_OK;
}

kiln_status kiln_npy_serialize(const kiln_tensor *t, void **buf, size_t *size) {
    if (!t || !buf || !size) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_npy_serialize: NULL argument");
    *buf = NULL;
    *size = 0;
    unsigned char *hdr;
    size_t hlen, bytes;
    KILN_TRY(npy_make_header(t, "kiln_npy_serialize", &hdr, &hlen, &bytes));
    unsigned char *out = realloc(hdr, hlen + bytes);
    if (!out) {
        free(hdr);
        return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "kiln_npy_serialize: cannot allocate %zu bytes", hlen + bytes);
    }
    if (bytes) memcpy(out + hlen, t->data, bytes);
    *buf = out;
    *size = hlen + bytes;
    return KILN_STATUS_OK;
}

/* A fresh name beside path for a temporary file: "path.tmp<pid>.<n>". */
static char *temp_name(const char *path) {
    static atomic_uint counter;
    size_t n = strlen(path) + 48;
    char *s = kiln_malloc(n);
    if (s) snprintf(s, n, "%s.tmp%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    return s;
}

/* Writes a then b to a temporary file beside path and renames it over path. */
static kiln_status write_file_atomic(const char *path, const void *a, size_t na, const void *b, size_t nb) {
    char *tmp = NULL;
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        free(tmp);
        if (!(tmp = temp_name(path))) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        kiln_status st = kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot create a temporary file: %s", path,
                                    strerror(errno));
        free(tmp);
        return st;
    }
    FILE *fp = fdopen(fd, "wb");
    kiln_status st = KILN_STATUS_OK;
    if (!fp) {
        close(fd);
        st = kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot write: %s", tmp, strerror(errno));
    } else {
        bool ok = fwrite(a, 1, na, fp) == na && (nb == 0 || fwrite(b, 1, nb, fp) == nb);
        int err = errno;
        if (fclose(fp) != 0 && ok) {
            ok = false;
            err = errno;
        }
        if (!ok) st = kiln_error(KILN_STATUS_IO_ERROR, "%s: write failed: %s", path, strerror(err));
    }
    if (!st && rename(tmp, path) != 0)
        st = kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot rename the temporary file over it: %s", path,
                        strerror(errno));
    if (st) unlink(tmp);
    free(tmp);
    return st;
}

kiln_status kiln_npy_write(const char *path, const kiln_tensor *t) {
    if (!path || !t) return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_npy_write: NULL argument");
    unsigned char *hdr;
    size_t hlen, bytes;
    KILN_TRY(npy_make_header(t, path, &hdr, &hlen, &bytes));
    kiln_status st = write_file_atomic(path, hdr, hlen, t->data, bytes);
    free(hdr);
    return st;
}

kiln_status kiln_npz_write(const char *path, const kiln_named_tensor *items, int n, bool compress) {
    if (!path || n < 0 || (n > 0 && !items))
        return kiln_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_npz_write: NULL argument or negative count");
    if (n == 0) { /* libzip writes no file for an empty archive: this is the one numpy writes */
        static const unsigned char eocd[22] = {'P', 'K', 5, 6};
        return write_file_atomic(path, eocd, sizeof eocd, NULL, 0);
    }
    unsigned char **hdrs = kiln_calloc((size_t)n, sizeof *hdrs);
    if (!hdrs) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    kiln_status st = KILN_STATUS_OK;
    zip_t *za = NULL;
    char *tmp = NULL; /* the name is ours once zip_open(ZIP_EXCL) has succeeded */
    for (int tries = 0; tries < 100 && !za; tries++) {
        free(tmp);
        if (!(tmp = temp_name(path))) break;
        int zerr = 0;
        za = zip_open(tmp, ZIP_CREATE | ZIP_EXCL, &zerr);
        if (!za && zerr != ZIP_ER_EXISTS) {
            zip_error_t e;
            zip_error_init_with_code(&e, zerr);
            st = kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot create a temporary archive: %s", path,
                            zip_error_strerror(&e));
            zip_error_fini(&e);
            break;
        }
    }
    if (!za && !st) st = kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot create a temporary archive", path);
    bool own_tmp = za != NULL;

    for (int i = 0; !st && i < n; i++) {
        const char *name = items[i].name;
        if (!name || !*name) {
            st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: item %d has no name", path, i);
            break;
        }
        char *member = str_printf("%s%s", name, ".npy");
        char *what = str_printf("%s: member '%s'", path, member ? member : name);
        size_t hlen = 0, bytes = 0;
        if (!member || !what) st = kiln_error(KILN_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
        else if (!items[i].t) st = kiln_error(KILN_STATUS_INVALID_ARGUMENT, "%s: NULL tensor", what);
        else st = npy_make_header(items[i].t, what, &hdrs[i], &hlen, &bytes);
        if (!st) {
            /* Zero-copy: the header and the tensor's own data, alive until zip_close. */
            zip_buffer_fragment_t frags[2] = {{hdrs[i], hlen}, {items[i].t->data, bytes}};
            zip_source_t *src = zip_source_buffer_fragment(za, frags, bytes ? 2 : 1, 0);
            zip_int64_t idx = -1;
            if (!src || (idx = zip_file_add(za, member, src, ZIP_FL_ENC_UTF_8)) < 0) {
                bool dup = zip_error_code_zip(zip_get_error(za)) == ZIP_ER_EXISTS;
                st = kiln_error(dup ? KILN_STATUS_INVALID_ARGUMENT : KILN_STATUS_IO_ERROR, "%s: %s", what,
                                dup ? "the name is used twice" : zip_strerror(za));
                if (src) zip_source_free(src);
            } else if (zip_set_file_compression(za, (zip_uint64_t)idx, compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0)) {
                st = kiln_error(KILN_STATUS_IO_ERROR, "%s: %s", what, zip_strerror(za));
            }
        }
        free(member);
        free(what);
    }
    if (!st && zip_close(za) != 0) {
        st = kiln_error(KILN_STATUS_IO_ERROR, "%s: writing the archive failed: %s", path, zip_strerror(za));
        zip_discard(za);
    } else if (st && za) {
        zip_discard(za);
    }
    if (!st && rename(tmp, path) != 0)
        st = kiln_error(KILN_STATUS_IO_ERROR, "%s: cannot rename the temporary archive over it: %s", path,
                        strerror(errno));
    if (st && own_tmp) unlink(tmp);
    for (int i = 0; i < n; i++) free(hdrs[i]);
    free(hdrs);
    free(tmp);
    return st;
}
