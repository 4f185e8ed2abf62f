/* test_npy.c — unit tests for src/io/npy.c: every dtype round-trips through .npy and .npz
 * (stored and deflated), hand-built headers (v2.0, v3.0, Fortran order, big-endian, odd
 * spacing) load, and hostile input (every truncation, bad magic, absurd dims, short data,
 * refused dtypes, damaged archives) fails with a status and a message instead of crashing.
 * Prints one line per check; exits non-zero if any fails. Files go to a fresh dir under /tmp. */
#include "io/npy.h"

#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int n_pass, n_fail;
static char dir[64];

static void check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    va_end(ap);
    if (!ok) printf("   [last error: %s]", kiln_last_error());
    printf("\n");
    if (ok) n_pass++;
    else n_fail++;
}

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void free_tensor(kiln_tensor *t) {
    if (!t) return;
    kiln_tensor_release(t);
    free(t);
}

static const kiln_dtype all_dtypes[] = {
    KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16, KILN_DTYPE_I8,  KILN_DTYPE_U8,  KILN_DTYPE_I16,
    KILN_DTYPE_U16, KILN_DTYPE_I32, KILN_DTYPE_U32, KILN_DTYPE_I64, KILN_DTYPE_U64, KILN_DTYPE_BOOL,
};
#define N_DTYPES ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))

/* A heap tensor with a byte pattern that depends on seed (bools stay 0/1). */
static kiln_tensor *make_tensor(kiln_dtype dt, int rank, const int64_t *dims, unsigned seed) {
    kiln_tensor *t = calloc(1, sizeof *t);
    if (kiln_tensor_alloc(t, dt, rank, dims)) {
        free(t);
        return NULL;
    }
    unsigned char *p = t->data;
    size_t n = kiln_tensor_bytes(t);
    for (size_t i = 0; i < n; i++) p[i] = dt == KILN_DTYPE_BOOL ? (i * 7 + seed) % 3 == 0 : (unsigned char)(i * 31 + seed * 17 + 5);
    return t;
}

static bool same(const kiln_tensor *a, const kiln_tensor *b) {
    if (!a || !b || a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    size_t n = kiln_tensor_bytes(a);
    return n == 0 || !memcmp(a->data, b->data, n);
}

static bool contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* A .npy file from a header dict text and raw data, with the given version (1, 2 or 3). */
static size_t build_npy(unsigned char *out, int major, const char *dict, const void *data, size_t nd) {
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major;
    out[7] = 0;
    size_t body = dl + 1;
    for (size_t i = 0; i < pre - 8; i++) out[8 + i] = (unsigned char)(body >> (8 * i));
    memcpy(out + pre, dict, dl);
    out[pre + dl] = '\n';
    if (nd) memcpy(out + pre + body, data, nd);
    return pre + body + nd;
}

static kiln_status parse_dict(const char *dict, const void *data, size_t nd, kiln_tensor **out) {
    static unsigned char buf[1 << 16];
    size_t n = build_npy(buf, 1, dict, data, nd);
    return kiln_npy_parse(buf, n, "hand.npy", out);
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static unsigned char *slurp(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static void test_roundtrip_npy(void) {
    const int64_t shapes[][3] = {{2, 3, 5}, {7, 0, 0}, {0, 4, 0}};
    const int ranks[] = {3, 1, 2};
    for (int d = 0; d < N_DTYPES; d++) {
        for (int s = 0; s < 3; s++) {
            kiln_dtype dt = all_dtypes[d];
            kiln_tensor *t = make_tensor(dt, ranks[s], shapes[s], (unsigned)d);
            void *buf = NULL;
            size_t size = 0;
            kiln_tensor *back = NULL;
            kiln_status st = kiln_npy_serialize(t, &buf, &size);
            bool aligned = st == KILN_STATUS_OK && (size - kiln_tensor_bytes(t)) % 64 == 0;
            if (!st) st = kiln_npy_parse(buf, size, "mem", &back);
            char desc[64];
            check(!st && aligned && same(t, back), "serialize/parse %s (data 64-aligned)",
                  kiln_tensor_describe(t, desc, sizeof desc));
            free(buf);
            free_tensor(back);
            back = NULL;
            const char *p = tmp_path("rt.npy");
            st = kiln_npy_write(p, t);
            if (!st) st = kiln_npy_read(p, &back);
            check(!st && same(t, back), "write/read file %s", desc);
            free_tensor(back);
            free_tensor(t);
        }
    }
    /* rank 0 and rank 8 */
    int64_t d8[8] = {1, 2, 1, 3, 1, 2, 1, 2};
    for (int r = 0; r <= 8; r += 8) {
        kiln_tensor *t = make_tensor(KILN_DTYPE_F64, r, d8, 3), *back = NULL;
        void *buf;
        size_t size;
        kiln_status st = kiln_npy_serialize(t, &buf, &size);
        if (!st) st = kiln_npy_parse(buf, size, "mem", &back);
        check(!st && same(t, back) && back->rank == r, "rank %d round-trips", r);
        if (!st && r == 0) check(memmem(buf, size, "'shape': ()", 11) != NULL, "rank 0 header says shape ()");
        if (!st) free(buf);
        free_tensor(back);
        free_tensor(t);
    }
    /* the header numpy would write, byte for byte */
    int64_t d3[1] = {3};
    kiln_tensor *t = make_tensor(KILN_DTYPE_F32, 1, d3, 1);
    void *buf;
    size_t size;
    kiln_npy_serialize(t, &buf, &size);
    static const char want[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
    check(size == 128 + 12 && !memcmp(buf, want, sizeof want - 1) && ((char *)buf)[127] == '\n',
          "header of f32[3] is numpy's (v1.0, 128 bytes, '\\n' last)");
    free(buf);
    free_tensor(t);
}

static void test_roundtrip_npz(void) {
    for (int compress = 0; compress <= 1; compress++) {
        kiln_named_tensor items[N_DTYPES + 2];
        char names[N_DTYPES + 2][32];
        int n = 0;
        for (int d = 0; d < N_DTYPES; d++) {
            int64_t dims[2] = {3 + d, 4};
            snprintf(names[n], sizeof names[n], "t%02d_%s", d, kiln_dtype_name(all_dtypes[d]));
            items[n].name = names[n];
            items[n].t = make_tensor(all_dtypes[d], 2, dims, (unsigned)(d + compress));
            n++;
        }
        int64_t z[2] = {0, 5};
        snprintf(names[n], sizeof names[n], "empty");
        items[n].name = names[n];
        items[n].t = make_tensor(KILN_DTYPE_F32, 2, z, 0);
        n++;
        snprintf(names[n], sizeof names[n], "scalar");
        items[n].name = names[n];
        items[n].t = make_tensor(KILN_DTYPE_I64, 0, z, 9);
        n++;

        const char *p = tmp_path(compress ? "rt_z.npz" : "rt.npz");
        kiln_status st = kiln_npz_write(p, items, n, compress);
        check(!st, "npz_write %d tensors (%s)", n, compress ? "deflated" : "stored");
        kiln_named_tensor *got = NULL;
        int ng = 0;
        if (!st) st = kiln_npz_read(p, &got, &ng);
        check(!st && ng == n, "npz_read gives %d members (%s)", ng, compress ? "deflated" : "stored");
        for (int i = 0; !st && i < n && i < ng; i++) {
            char desc[64];
            check(!strcmp(got[i].name, items[i].name) && same(items[i].t, got[i].t),
                  "npz member %d '%s' %s equal (%s)", i, got[i].name,
                  kiln_tensor_describe(got[i].t, desc, sizeof desc), compress ? "deflated" : "stored");
        }
        kiln_named_tensors_free(got, ng);
        /* stored archives are bigger than deflated ones for this patterned data */
        if (compress) check(file_size(tmp_path("rt_z.npz")) < file_size(tmp_path("rt.npz")),
                            "deflated archive is smaller than the stored one");
        for (int i = 0; i < n; i++) free_tensor(items[i].t);
    }
    /* an empty archive */
    const char *p = tmp_path("empty.npz");
    kiln_named_tensor *got = (kiln_named_tensor *)1;
    int ng = -1;
    kiln_status st = kiln_npz_write(p, NULL, 0, false);
    if (!st) st = kiln_npz_read(p, &got, &ng);
    check(!st && ng == 0, "empty npz round-trips (%ld bytes)", file_size(p));
    kiln_named_tensors_free(got, ng);
}

static void test_hand_built(void) {
    unsigned char buf[4096];
    int32_t v[6] = {1, 2, 3, 4, 5, 6};
    kiln_tensor *t = NULL;
    for (int major = 2; major <= 3; major++) {
        size_t n = build_npy(buf, major, "{'shape': (2, 3), 'fortran_order': False, 'descr': '<i4'}", v, sizeof v);
        kiln_status st = kiln_npy_parse(buf, n, "v2.npy", &t);
        check(!st && t->dtype == KILN_DTYPE_I32 && t->rank == 2 && t->dims[0] == 2 && t->dims[1] == 3 &&
                  !memcmp(t->data, v, sizeof v),
              "version %d.0 header, keys out of order", major);
        free_tensor(t);
        t = NULL;
    }
    /* the same through a file */
    size_t n = build_npy(buf, 2, "{'descr':'<i4','fortran_order':False,'shape':(6,),}", v, sizeof v);
    spit(tmp_path("v2.npy"), buf, n);
    kiln_status st = kiln_npy_read(tmp_path("v2.npy"), &t);
    check(!st && t->rank == 1 && t->dims[0] == 6 && !memcmp(t->data, v, sizeof v), "v2.0 file, no spaces");
    free_tensor(t);
    t = NULL;

    st = parse_dict("  {  \"descr\" : \"<i4\" ,\n 'shape' : ( 6 , ) , 'fortran_order' : False , }   ", v, sizeof v, &t);
    check(!st && t->rank == 1 && t->dims[0] == 6, "spaces, double quotes, trailing commas");
    free_tensor(t);
    t = NULL;

    st = parse_dict("{'descr': '<i4', 'fortran_order': False, 'shape': (2L, 3L), }", v, sizeof v, &t);
    check(!st && t->rank == 2 && t->dims[1] == 3, "Python 2 long dims (2L, 3L)");
    free_tensor(t);
    t = NULL;

    /* Fortran order: column-major (2, 3) holding 1..6 is [[1,3,5],[2,4,6]] */
    st = parse_dict("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", v, sizeof v, &t);
    int32_t want_f[6] = {1, 3, 5, 2, 4, 6};
    check(!st && !memcmp(t->data, want_f, sizeof want_f), "fortran_order True is transposed to C order");
    free_tensor(t);
    t = NULL;
    int16_t v24[24];
    for (int i = 0; i < 24; i++) v24[i] = (int16_t)i;
    st = parse_dict("{'descr': '<i2', 'fortran_order': True, 'shape': (2, 3, 4), }", v24, sizeof v24, &t);
    bool ok = !st;
    for (int a = 0; ok && a < 2; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 4; c++)
                ok = ok && ((int16_t *)t->data)[(a * 3 + b) * 4 + c] == a + 2 * b + 6 * c;
    check(ok, "fortran_order True, rank 3");
    free_tensor(t);
    t = NULL;

    /* big-endian is byte-swapped */
    unsigned char be[8] = {0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78};
    st = parse_dict("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", be, sizeof be, &t);
    check(!st && ((int32_t *)t->data)[0] == 1 && ((int32_t *)t->data)[1] == 0x12345678, "'>i4' is byte-swapped");
    free_tensor(t);
    t = NULL;
    uint16_t h = kiln_f32_to_f16(1.5f);
    unsigned char beh[2] = {(unsigned char)(h >> 8), (unsigned char)h};
    st = parse_dict("{'descr': '>f2', 'fortran_order': False, 'shape': (), }", beh, 2, &t);
    check(!st && t->rank == 0 && kiln_f16_to_f32(*(uint16_t *)t->data) == 1.5f, "'>f2' scalar");
    free_tensor(t);
    t = NULL;
    st = parse_dict("{'descr': '=u2', 'fortran_order': False, 'shape': (3,), }", v, 6, &t);
    check(!st && t->dtype == KILN_DTYPE_U16 && !memcmp(t->data, v, 6), "'=u2' is native");
    free_tensor(t);
    t = NULL;
    st = parse_dict("{'descr': '|b1', 'fortran_order': False, 'shape': (2, 1), 'extra': [1, (2, 3)]}", "\1\0", 2, &t);
    check(!st && t->dtype == KILN_DTYPE_BOOL, "'|b1' and an unknown key are accepted");
    free_tensor(t);
    t = NULL;
    /* bytes after the data are ignored, as numpy does */
    st = parse_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", "abcdef", 6, &t);
    check(!st && t->dims[0] == 2 && !memcmp(t->data, "ab", 2), "trailing bytes after the data are ignored");
    free_tensor(t);
}

/* Expects failure with status want (or any failure if want < 0) and a message with `needle`. */
static void expect_fail(kiln_status st, int want, const char *needle, const char *what) {
    bool ok = st != KILN_STATUS_OK && (want < 0 || (int)st == want) && (!needle || contains(kiln_last_error(), needle));
    check(ok, "%s -> %s: %s", what, kiln_status_name(st), kiln_last_error());
}

static void test_hostile(void) {
    kiln_tensor *t = NULL;
    /* every truncation of a valid file */
    int64_t dims[2] = {3, 5};
    kiln_tensor *src = make_tensor(KILN_DTYPE_F32, 2, dims, 1);
    void *buf;
    size_t size;
    kiln_npy_serialize(src, &buf, &size);
    int bad = 0;
    for (size_t n = 0; n < size; n++) {
        kiln_status st = kiln_npy_parse(buf, n, "cut.npy", &t);
        if (st == KILN_STATUS_OK || t || !contains(kiln_last_error(), "cut.npy")) bad++;
        free_tensor(t);
        t = NULL;
    }
    check(bad == 0, "all %zu truncations of a %zu-byte file fail with a message naming it", size, size);
    spit(tmp_path("cut.npy"), buf, size - 1);
    expect_fail(kiln_npy_read(tmp_path("cut.npy"), &t), KILN_STATUS_INVALID_ARGUMENT, "cut.npy: truncated",
                "file one byte short");
    free(buf);
    free_tensor(src);

    unsigned char junk[128] = "\x93NUMPZ\x01\x00";
    expect_fail(kiln_npy_parse(junk, sizeof junk, "magic.npy", &t), KILN_STATUS_INVALID_ARGUMENT, "bad magic", "bad magic");
    expect_fail(kiln_npy_parse(NULL, 0, "nothing.npy", &t), KILN_STATUS_INVALID_ARGUMENT, "too short", "empty buffer");
    memcpy(junk, "PK\x03\x04", 4);
    expect_fail(kiln_npy_parse(junk, sizeof junk, "z.npy", &t), KILN_STATUS_INVALID_ARGUMENT, "zip", "an npz given as npy");
    memcpy(junk, "\x93NUMPY\x04\x00", 8);
    expect_fail(kiln_npy_parse(junk, sizeof junk, "v4.npy", &t), KILN_STATUS_UNSUPPORTED, "version 4.0", "version 4.0");
    memcpy(junk, "\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12);
    expect_fail(kiln_npy_parse(junk, sizeof junk, "hl.npy", &t), KILN_STATUS_INVALID_ARGUMENT, "header length", "v2 header length 2 GiB");
    memcpy(junk, "\x93NUMPY\x01\x00\x00\x10", 10);
    expect_fail(kiln_npy_parse(junk, sizeof junk, "hl.npy", &t), KILN_STATUS_INVALID_ARGUMENT, "past the end", "header length past the end");

    expect_fail(parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }", NULL, 0, &t),
                -1, "hand.npy", "absurd dims (1<<40, 1<<40)");
    expect_fail(parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }", NULL, 0, &t),
                KILN_STATUS_INVALID_ARGUMENT, "hand.npy: truncated", "dims (1<<40,) f32 with no data");
    expect_fail(parse_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }", NULL, 0, &t),
                KILN_STATUS_INVALID_ARGUMENT, "overflows", "dim above int64");
    expect_fail(parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }", "0123456789", 10, &t),
                KILN_STATUS_INVALID_ARGUMENT, "needs 16 x 4 bytes of data but 10 remain", "data section too short");
    expect_fail(parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", "0123", 4, &t),
                KILN_STATUS_UNSUPPORTED, "more than 8 dimensions", "rank 9");
    expect_fail(parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", NULL, 0, &t),
                KILN_STATUS_INVALID_ARGUMENT, "negative", "negative dim");
    expect_fail(parse_dict("{'descr': '|V3', 'fortran_order': False, 'shape': (1,), }", "abc", 3, &t),
                KILN_STATUS_UNSUPPORTED, "'|V3'", "'|V3' (only '<V2', ml_dtypes' bf16, is read)");
    expect_fail(parse_dict("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", "abcdefghijkl", 12, &t),
                KILN_STATUS_UNSUPPORTED, "'<U3'", "'<U3' unicode");
    expect_fail(parse_dict("{'descr': '|S3', 'fortran_order': False, 'shape': (1,), }", "abc", 3, &t),
                KILN_STATUS_UNSUPPORTED, "'|S3'", "'|S3' bytes");
    expect_fail(parse_dict("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "abcdefgh", 8, &t),
                KILN_STATUS_UNSUPPORTED, "'|O'", "'|O' object");
    expect_fail(parse_dict("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", "abcdefgh", 8, &t),
                KILN_STATUS_UNSUPPORTED, "'<c8'", "'<c8' complex");
    expect_fail(parse_dict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "abcd", 4, &t),
                KILN_STATUS_UNSUPPORTED, "structured", "structured dtype");
    expect_fail(parse_dict("{'descr': '<f4', 'shape': (1,), }", "abcd", 4, &t),
                KILN_STATUS_INVALID_ARGUMENT, "'fortran_order'", "missing key");
    expect_fail(parse_dict("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", "abcd", 4, &t),
                KILN_STATUS_INVALID_ARGUMENT, "True or False", "bad bool");
    expect_fail(parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (1 2), }", "abcd", 4, &t),
                KILN_STATUS_INVALID_ARGUMENT, "malformed", "shape without commas");
    expect_fail(parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } junk", "abcd", 4, &t),
                KILN_STATUS_INVALID_ARGUMENT, "malformed", "junk after the dict");
    expect_fail(parse_dict("{'descr: '<f4', 'fortran_order': False, 'shape': (1,)", "abcd", 4, &t),
                KILN_STATUS_INVALID_ARGUMENT, "malformed", "unbalanced quotes");
    expect_fail(parse_dict("", NULL, 0, &t), KILN_STATUS_INVALID_ARGUMENT, "malformed", "empty header");
    check(t == NULL, "no tensor is left behind on failure");

    expect_fail(kiln_npy_read(tmp_path("does_not_exist.npy"), &t), KILN_STATUS_IO_ERROR, "does_not_exist.npy", "missing file");
    expect_fail(kiln_npy_read(dir, &t), KILN_STATUS_IO_ERROR, NULL, "a directory");
}

static void test_hostile_npz(void) {
    kiln_named_tensor *got = NULL;
    int ng = 0;
    expect_fail(kiln_npz_read(tmp_path("nope.npz"), &got, &ng), KILN_STATUS_IO_ERROR, "nope.npz", "missing npz");
    spit(tmp_path("junk.npz"), "this is not a zip archive at all, not even close......", 54);
    expect_fail(kiln_npz_read(tmp_path("junk.npz"), &got, &ng), KILN_STATUS_INVALID_ARGUMENT, "junk.npz", "junk npz");

    int64_t dims[1] = {100};
    kiln_named_tensor items[2] = {{"a", make_tensor(KILN_DTYPE_I32, 1, dims, 1)},
                                  {"b", make_tensor(KILN_DTYPE_U8, 1, dims, 2)}};
    for (int compress = 0; compress <= 1; compress++) {
        const char *p = tmp_path("good.npz");
        kiln_npz_write(p, items, 2, compress);
        size_t n;
        unsigned char *z = slurp(p, &n);
        int bad = 0, crashes = 0;
        for (size_t cut = 0; cut < n; cut++) {
            spit(tmp_path("cut.npz"), z, cut);
            kiln_status st = kiln_npz_read(tmp_path("cut.npz"), &got, &ng);
            if (st == KILN_STATUS_OK) bad++;
            else if (got || ng) crashes++;
            kiln_named_tensors_free(got, ng);
        }
        check(bad == 0 && crashes == 0, "all %zu truncations of a %s npz fail cleanly", n, compress ? "deflated" : "stored");

        /* flip every byte of the member data in turn: the CRC or the header check catches it */
        int accepted_wrong = 0;
        for (size_t i = 30; i < n; i++) {
            unsigned char *y = malloc(n);
            memcpy(y, z, n);
            y[i] ^= 0x5a;
            spit(tmp_path("flip.npz"), y, n);
            free(y);
            kiln_status st = kiln_npz_read(tmp_path("flip.npz"), &got, &ng);
            if (!st && ng == 2 && (!same(got[0].t, items[0].t) || !same(got[1].t, items[1].t))) accepted_wrong++;
            kiln_named_tensors_free(got, ng);
        }
        check(accepted_wrong == 0, "no single-byte corruption of a %s npz yields wrong data", compress ? "deflated" : "stored");

        if (!compress) {
            /* a dtype that cannot be: the message names file and member */
            unsigned char *y = malloc(n);
            memcpy(y, z, n);
            unsigned char *hit = memmem(y, n, "'<i4'", 5);
            if (hit) memcpy(hit, "'<U4'", 5);
            spit(tmp_path("u4.npz"), y, n);
            expect_fail(kiln_npz_read(tmp_path("u4.npz"), &got, &ng), KILN_STATUS_UNSUPPORTED,
                        "u4.npz: member 'a.npy': dtype '<U4'", "npz member with '<U4'");
            /* central directory claims a huge uncompressed size */
            memcpy(y, z, n);
            unsigned char *cd = memmem(y, n, "PK\x01\x02", 4);
            if (cd) memcpy(cd + 24, "\xf0\xff\xff\x7f", 4);
            spit(tmp_path("huge.npz"), y, n);
            expect_fail(kiln_npz_read(tmp_path("huge.npz"), &got, &ng), -1, "huge.npz", "member declaring 2 GiB");
            free(y);
        }
        free(z);
    }

    /* failed writes leave the old file intact */
    const char *p = tmp_path("keep.npz");
    kiln_npz_write(p, items, 2, false);
    long before = file_size(p);
    kiln_named_tensor dup[2] = {{"a", items[0].t}, {"a", items[1].t}};
    expect_fail(kiln_npz_write(p, dup, 2, false), KILN_STATUS_INVALID_ARGUMENT, "'a.npy'", "duplicate names");
    kiln_tensor bf = {.dtype = KILN_DTYPE_BF16, .rank = 1, .dims = {2}, .data = "abcd"};
    kiln_named_tensor noname[1] = {{"", items[0].t}};
    expect_fail(kiln_npz_write(p, noname, 1, true), KILN_STATUS_INVALID_ARGUMENT, "no name", "empty name");
    /* bf16 goes out as '<V2' (ml_dtypes' bfloat16) and comes back as bf16, bits intact */
    check(kiln_npy_write(tmp_path("bf.npy"), &bf) == KILN_STATUS_OK, "bf16 written as '<V2'");
    kiln_tensor *bf_back = NULL;
    check(kiln_npy_read(tmp_path("bf.npy"), &bf_back) == KILN_STATUS_OK && bf_back->dtype == KILN_DTYPE_BF16 &&
              memcmp(bf_back->data, "abcd", 4) == 0, "bf16 read back from '<V2'");
    if (bf_back) { kiln_tensor_release(bf_back); free(bf_back); }
    expect_fail(kiln_npz_write("/nonexistent_dir_kiln/x.npz", items, 2, false), KILN_STATUS_IO_ERROR, "x.npz", "npz in a missing dir");
    got = NULL;
    kiln_status st = kiln_npz_read(p, &got, &ng);
    check(!st && ng == 2 && file_size(p) == before && same(got[0].t, items[0].t),
          "the archive is intact after failed writes");
    kiln_named_tensors_free(got, ng);
    for (int i = 0; i < 2; i++) free_tensor(items[i].t);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/kiln_test_npy.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_roundtrip_npy();
    test_roundtrip_npz();
    test_hand_built();
    test_hostile();
    test_hostile_npz();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -c tmp > /dev/null", dir);
    check(system(cmd) != 0, "no temporary files are left in %s", dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
