/* test_cpu_state.c — the fast CPU kernels' per-context state across runs whose shapes change:
 * builds MODEL (its first input's leading dim dynamic) with one profile of batch 1..5, then on
 * ONE context runs batches 2, 5, 1, 3, 5, 2 with fresh random data each time. Every run must
 * give bitwise the outputs of a fresh context on the same inputs (state rebuilt when shapes
 * change, kept when they do not), and agree with a context made under KILN_CPU_REF=1 (the
 * reference kernels) to a normalised error of 1e-5.
 * usage: test_cpu_state MODEL.onnx. Ends with "N passed, N failed". */
#include "kiln.h"
#include "test_rng.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float next_float(void) { return test_next_float(&rng); }

/* Runs c on x, returning output 0 (NULL on failure, the error printed). */
static kiln_tensor_t *run(kiln_context_t *c, const char *name, kiln_tensor_t *x) {
    kiln_tensor_t *out[1] = {NULL};
    if (kiln_context_run_tensors(c, 1, &name, &x, 1, out) != KILN_STATUS_OK) {
        printf("FAIL run: %s\n", kiln_last_error());
        return NULL;
    }
    return out[0];
}

static double norm_err(kiln_tensor_t *a, kiln_tensor_t *b) {
    const float *p = kiln_tensor_data(a), *q = kiln_tensor_data(b);
    double err = 0, scale = 0;
    for (int64_t i = 0; i < kiln_tensor_count(b); i++) {
        err = fmax(err, fabs((double)p[i] - q[i]));
        scale = fmax(scale, fabs((double)q[i]));
    }
    return scale > 0 ? err / scale : err;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
        return 2;
    }
    int passed = 0, failed = 0;
    kiln_model_t *m;
    kiln_builder_t *b;
    kiln_engine_t *e;
    int prof;
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK], mn[KILN_MAX_RANK], mx[KILN_MAX_RANK];
    if (kiln_model_load(argv[1], &m) || kiln_builder_create(&b) || kiln_builder_add_profile(b, &prof) ||
        kiln_model_input_info(m, 0, &dt, &rank, dims)) {
        printf("FAIL load: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    const char *name = kiln_model_input_name(m, 0);
    memcpy(mn, dims, sizeof dims);
    memcpy(mx, dims, sizeof dims);
    mn[0] = 1, dims[0] = 2, mx[0] = 5;
    if (kiln_builder_set_profile_shape(b, prof, name, rank, mn, dims, mx) || kiln_builder_build(b, m, &e)) {
        printf("FAIL build: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    kiln_context_t *fast, *ref;
    setenv("KILN_CPU_REF", "1", 1);
    kiln_status s = kiln_context_create(e, &ref);
    unsetenv("KILN_CPU_REF");
    if (s || kiln_context_create(e, &fast)) {
        printf("FAIL context: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    static const int64_t batches[] = {2, 5, 1, 3, 5, 2};
    for (size_t r = 0; r < sizeof batches / sizeof *batches; r++) {
        dims[0] = batches[r];
        kiln_tensor_t *x;
        kiln_context_t *fresh;
        if (kiln_tensor_create(KILN_DTYPE_F32, rank, dims, &x) || kiln_context_create(e, &fresh)) {
            printf("FAIL setup: %s\n", kiln_last_error());
            failed++;
            continue;
        }
        float *p = kiln_tensor_data(x);
        for (int64_t i = 0; i < kiln_tensor_count(x); i++) p[i] = next_float();
        kiln_tensor_t *y = run(fast, name, x), *y_fresh = run(fresh, name, x), *y_ref = run(ref, name, x);
        bool ok = y && y_fresh && y_ref && kiln_tensor_nbytes(y) == kiln_tensor_nbytes(y_fresh);
        if (ok && memcmp(kiln_tensor_data(y), kiln_tensor_data(y_fresh), kiln_tensor_nbytes(y)) != 0) {
            printf("FAIL batch %lld (run %zu): the reused context differs from a fresh one\n", (long long)batches[r], r);
            ok = false;
        }
        double err = ok ? norm_err(y, y_ref) : 0;
        if (ok && !(err <= 1e-5)) {
            printf("FAIL batch %lld (run %zu): normalised error %.3g against the reference kernels\n", (long long)batches[r], r, err);
            ok = false;
        }
        if (ok) passed++;
        else failed++;
        kiln_tensor_destroy(y);
        kiln_tensor_destroy(y_fresh);
        kiln_tensor_destroy(y_ref);
        kiln_tensor_destroy(x);
        kiln_context_destroy(fresh);
    }
    kiln_context_destroy(fast);
    kiln_context_destroy(ref);
    kiln_engine_destroy(e);
    kiln_builder_destroy(b);
    kiln_model_destroy(m);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
