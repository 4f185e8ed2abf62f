/* test_calibrator.c — INT8 calibration through the C API's kiln_calibrator callbacks (kiln.h):
 * the same samples given by get_batch and as an .npz file must give the same cache (bit for bit:
 * the same scales) and the same engine bytes; read_cache skips get_batch; write_cache receives the
 * cache; minmax's input scale equals max|x| / 127 computed here; and the failures: get_batch
 * failing, a batch of the wrong dtype or shape, no batches, a calibrator with data, a cache of
 * another model, bad arguments.
 * usage: test_calibrator MODEL.onnx (examples/tiny_cnn.onnx: one input "image" [N,3,32,32]).
 * Ends with "N passed, N failed"; exits 1 on failure. */
#include "io/npy.h"
#include "kiln.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed, failed;

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (cond) passed++;                                                                        \
        else {                                                                                     \
            failed++;                                                                              \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                \
            printf(__VA_ARGS__);                                                                   \
            printf(" (last error: %s)\n", kiln_last_error());                                      \
        }                                                                                          \
    } while (0)
#define CHECK(cond) CHECK_MSG(cond, "%s", "")

enum { SAMPLES = 12, BATCH = 4, C = 3, H = 32, W = 32, PER = C * H * W };

static float data[SAMPLES * PER]; /* (SAMPLES, 3, 32, 32) */
static char tmpdir[256];

/* ---- the application's side: a loader over data in batches of BATCH ---- */
typedef struct loader {
    int next, calls;
    int fail_at;            /* get_batch fails on this call (1-based; 0: never) */
    kiln_dtype dtype;       /* of the tensors it gives */
    int64_t h;              /* their height (W elsewhere) */
    kiln_tensor_t *cur;
    const void *cache;      /* what read_cache returns */
    size_t cache_size;
    char *written;          /* what write_cache received */
    size_t written_size;
} loader;

static int get_batch(void *user, int n, const char *const *names, kiln_tensor_t **tensors) {
    loader *l = user;
    l->calls++;
    if (l->fail_at && l->calls == l->fail_at) return -1;
    if (n != 1 || strcmp(names[0], "image") != 0 || tensors[0]) return -2;
    if (l->next >= SAMPLES) return 0;
    kiln_tensor_destroy(l->cur);
    l->cur = NULL;
    int64_t dims[4] = {BATCH, C, l->h, W};
    if (kiln_tensor_wrap(l->dtype, 4, dims, data + (size_t)l->next * PER, &l->cur) != KILN_STATUS_OK) return -3;
    tensors[0] = l->cur;
    l->next += BATCH;
    return 1;
}

static const void *read_cache(void *user, size_t *size) {
    loader *l = user;
    *size = l->cache_size;
    return l->cache;
}

static void write_cache(void *user, const void *bytes, size_t size) {
    loader *l = user;
    free(l->written);
    l->written = malloc(size + 1);
    memcpy(l->written, bytes, size);
    l->written[size] = 0;
    l->written_size = size;
}

static int64_t progress_done, progress_total;
static void progress(int64_t done, int64_t total, void *user) {
    (void)user;
    progress_done = done;
    progress_total = total;
}

static kiln_calibrator calibrator(loader *l, const char *method) {
    *l = (loader){.dtype = KILN_DTYPE_F32, .h = H};
    return (kiln_calibrator){.batch_size = BATCH, .num_batches = SAMPLES / BATCH, .method = method, .user = l,
                             .get_batch = get_batch, .read_cache = read_cache, .write_cache = write_cache};
}

/* ---- helpers ---- */
static char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *size = (size_t)n;
    return buf;
}

static bool same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_all(a, &na), *y = read_all(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* A builder for INT8 with one static profile of BATCH images. */
static kiln_builder_t *int8_builder(void) {
    kiln_builder_t *b;
    if (kiln_builder_create(&b)) return NULL;
    int p;
    int64_t dims[4] = {BATCH, C, H, W};
    kiln_builder_set_precisions(b, KILN_PRECISION_INT8);
    kiln_builder_add_profile(b, &p);
    kiln_builder_set_profile_shape(b, p, "image", 4, dims, dims, dims);
    return b;
}

/* Builds m with b and saves the engine to path; returns the build status. */
static kiln_status build_save(kiln_builder_t *b, const kiln_model_t *m, const char *path) {
    kiln_engine_t *e = NULL;
    kiln_status s = kiln_builder_build(b, m, &e);
    if (s == KILN_STATUS_OK) s = kiln_engine_save(e, path);
    kiln_engine_destroy(e);
    kiln_builder_destroy(b);
    return s;
}

/* The scale the cache text gives tensor name, or NaN. */
static float cache_scale(const char *text, const char *name) {
    char key[128];
    snprintf(key, sizeof key, "\n%s: ", name);
    const char *p = strstr(text, key);
    if (!p) return NAN;
    unsigned bits;
    if (sscanf(p + strlen(key), "%8x", &bits) != 1) return NAN;
    float f;
    uint32_t u = bits;
    memcpy(&f, &u, sizeof f);
    return f;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_calibrator MODEL.onnx\n");
        return 2;
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/kiln_test_calibrator_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    /* deterministic Laplace data: a long tail, so that the methods disagree */
    uint64_t st = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(st >> 11) * 0x1p-53;
        data[i] = (float)((u < 0.5 ? -1.0 : 1.0) * -log(1.0 - 2.0 * fabs(u - 0.5) + 1e-12)); /* Laplace(1) */
    }
    kiln_model_t *m;
    if (kiln_model_load(argv[1], &m)) {
        printf("FAIL: cannot load %s: %s\n", argv[1], kiln_last_error());
        return 1;
    }
    char npz[300], cache_a[300], eng_a[300], eng_b[300], eng_c[300], eng_x[300];
    snprintf(npz, sizeof npz, "%s/calib.npz", tmpdir);
    snprintf(cache_a, sizeof cache_a, "%s/a.cache", tmpdir);
    snprintf(eng_a, sizeof eng_a, "%s/a.kiln", tmpdir);
    snprintf(eng_b, sizeof eng_b, "%s/b.kiln", tmpdir);
    snprintf(eng_c, sizeof eng_c, "%s/c.kiln", tmpdir);
    snprintf(eng_x, sizeof eng_x, "%s/x.kiln", tmpdir);
    {
        kiln_tensor_t *all;
        int64_t dims[4] = {SAMPLES, C, H, W};
        kiln_tensor_wrap(KILN_DTYPE_F32, 4, dims, data, &all);
        kiln_named_tensor item = {.name = "image", .t = all};
        CHECK(kiln_npz_write(npz, &item, 1, false) == KILN_STATUS_OK);
        kiln_tensor_destroy(all);
    }

    /* A: the data as an .npz, in batches of BATCH, cache file written */
    kiln_builder_t *b = int8_builder();
    CHECK(kiln_builder_set_calibration(b, npz, "entropy", BATCH, 0, cache_a, NULL, NULL) == KILN_STATUS_OK);
    CHECK(build_save(b, m, eng_a) == KILN_STATUS_OK);
    size_t na;
    char *text_a = read_all(cache_a, &na);
    CHECK(text_a && strstr(text_a, "EntropyCalibration2"));

    /* B: the same batches through get_batch: the same cache text, the same engine */
    loader l;
    kiln_calibrator cal = calibrator(&l, NULL);
    b = int8_builder();
    CHECK(kiln_builder_set_calibration(b, NULL, NULL, 0, 0, NULL, progress, NULL) == KILN_STATUS_OK);
    CHECK(kiln_builder_set_calibrator(b, &cal) == KILN_STATUS_OK);
    CHECK(build_save(b, m, eng_b) == KILN_STATUS_OK);
    CHECK_MSG(l.calls == SAMPLES / BATCH + 1, "get_batch called %d times", l.calls);
    CHECK_MSG(progress_done == SAMPLES / BATCH && progress_total == SAMPLES / BATCH, "progress %lld/%lld",
              (long long)progress_done, (long long)progress_total);
    CHECK_MSG(text_a && l.written && l.written_size == na && memcmp(l.written, text_a, na) == 0,
              "write_cache got:\n%s\nthe npz build's cache file:\n%s", l.written ? l.written : "(nothing)",
              text_a ? text_a : "(none)");
    CHECK(same_file(eng_a, eng_b));

    /* C: read_cache gives that cache: get_batch is never called, the engine is the same */
    char *cached = l.written;
    size_t cached_size = l.written_size;
    kiln_tensor_destroy(l.cur);
    cal = calibrator(&l, NULL);
    l.cache = cached;
    l.cache_size = cached_size;
    b = int8_builder();
    CHECK(kiln_builder_set_calibrator(b, &cal) == KILN_STATUS_OK);
    CHECK(build_save(b, m, eng_c) == KILN_STATUS_OK);
    CHECK_MSG(l.calls == 0 && !l.written, "get_batch called %d times", l.calls);
    CHECK(same_file(eng_a, eng_c));

    /* minmax through the calibrator: the input's scale is max|x| / 127 of the data */
    cal = calibrator(&l, "minmax");
    b = int8_builder();
    CHECK(kiln_builder_set_calibrator(b, &cal) == KILN_STATUS_OK);
    CHECK(build_save(b, m, eng_x) == KILN_STATUS_OK);
    float amax = 0;
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) amax = fabsf(data[i]) > amax ? fabsf(data[i]) : amax;
    float want = (float)((double)amax / 127.0);
    CHECK_MSG(l.written && strstr(l.written, "MinMaxCalibration") && cache_scale(l.written, "image") == want,
              "image scale %g, want %g", l.written ? (double)cache_scale(l.written, "image") : -1.0, (double)want);
    const char *body_a = text_a ? strchr(text_a, '\n') : NULL, *body_m = l.written ? strchr(l.written, '\n') : NULL;
    CHECK_MSG(body_a && body_m && strcmp(body_a, body_m) != 0, "minmax and entropy gave the same scales:\n%s",
              body_m ? body_m : "(none)");
    free(l.written);
    kiln_tensor_destroy(l.cur);

    /* failures, each leaving a message */
    struct {
        const char *what;
        int fail_at;
        kiln_dtype dtype;
        int64_t h;
        bool with_data, empty, bad_cache, foreign_cache;
        kiln_status want;
        const char *msg;
    } bad[] = {
        {"get_batch fails", 2, KILN_DTYPE_F32, H, false, false, false, false, KILN_STATUS_RUNTIME_ERROR, "get_batch failed"},
        {"wrong dtype", 0, KILN_DTYPE_I32, H, false, false, false, false, KILN_STATUS_INVALID_ARGUMENT, "'image'"},
        {"wrong shape", 0, KILN_DTYPE_F32, H - 1, false, false, false, false, KILN_STATUS_INVALID_ARGUMENT, "'image'"},
        {"no batches", 0, KILN_DTYPE_F32, H, false, true, false, false, KILN_STATUS_INVALID_ARGUMENT, "no batches"},
        {"data and calibrator", 0, KILN_DTYPE_F32, H, true, false, false, false, KILN_STATUS_INVALID_ARGUMENT, "not both"},
        {"malformed cache", 0, KILN_DTYPE_F32, H, false, false, true, false, KILN_STATUS_INVALID_MODEL, "read_cache"},
        {"another model's cache", 0, KILN_DTYPE_F32, H, false, false, false, true, KILN_STATUS_INVALID_ARGUMENT, "fingerprint"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        cal = calibrator(&l, NULL);
        l.fail_at = bad[k].fail_at;
        l.dtype = bad[k].dtype;
        l.h = bad[k].h;
        if (bad[k].empty) l.next = SAMPLES;
        static const char garbage[] = "TRT-8601-EntropyCalibration2\nimage 3c000000\n";
        static const char foreign[] = "KILN-0.1.0-EntropyCalibration2 fingerprint=0123456789abcdef\nimage: 3c000000\n";
        if (bad[k].bad_cache) {
            l.cache = garbage;
            l.cache_size = sizeof garbage - 1;
        }
        if (bad[k].foreign_cache) {
            l.cache = foreign;
            l.cache_size = sizeof foreign - 1;
        }
        b = int8_builder();
        if (bad[k].with_data) kiln_builder_set_calibration(b, npz, NULL, 0, 0, NULL, NULL, NULL);
        kiln_builder_set_calibrator(b, &cal);
        kiln_status s = build_save(b, m, eng_x);
        CHECK_MSG(s == bad[k].want && strstr(kiln_last_error(), bad[k].msg), "%s: status %s, message '%s'", bad[k].what,
                  kiln_status_name(s), kiln_last_error());
        kiln_tensor_destroy(l.cur);
        free(l.written);
    }
    b = int8_builder();
    kiln_calibrator none = {0};
    CHECK(kiln_builder_set_calibrator(b, &none) == KILN_STATUS_INVALID_ARGUMENT);
    cal = calibrator(&l, "kl");
    CHECK(kiln_builder_set_calibrator(b, &cal) == KILN_STATUS_INVALID_ARGUMENT && strstr(kiln_last_error(), "entropy"));
    CHECK(kiln_builder_set_calibrator(b, NULL) == KILN_STATUS_OK);
    kiln_builder_destroy(b);

    free(cached);
    free(text_a);
    kiln_model_destroy(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
