/* test_engine_threads.c — many contexts on one engine, at once: builds an engine from MODEL
 * (static input shapes), runs it once on one context for reference outputs, then runs THREADS
 * threads, each with its own context, RUNS times each, and checks every output is bitwise
 * equal to the reference. Also checks that an engine saved and loaded gives the same bytes.
 * usage: test_engine_threads MODEL.onnx [THREADS] [RUNS]. Ends with "N passed, N failed". */
#include "kiln.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    const kiln_engine_t *e;
    int n_in, n_out, runs;
    const char **names;
    kiln_tensor_t **inputs;
    kiln_tensor_t **ref;
    int mismatches, failures;
} job;

static void *worker(void *arg) {
    job *j = arg;
    kiln_context_t *c;
    if (kiln_context_create(j->e, &c) != KILN_STATUS_OK) {
        j->failures++;
        return NULL;
    }
    kiln_tensor_t *outs[64];
    for (int r = 0; r < j->runs; r++) {
        if (kiln_context_run_tensors(c, j->n_in, j->names, j->inputs, j->n_out, outs) != KILN_STATUS_OK) {
            j->failures++;
            continue;
        }
        for (int k = 0; k < j->n_out; k++) {
            if (kiln_tensor_nbytes(outs[k]) != kiln_tensor_nbytes(j->ref[k]) ||
                memcmp(kiln_tensor_data(outs[k]), kiln_tensor_data(j->ref[k]), kiln_tensor_nbytes(outs[k])) != 0)
                j->mismatches++;
            kiln_tensor_destroy(outs[k]);
        }
    }
    kiln_context_destroy(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.onnx [THREADS] [RUNS]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 4, runs = argc > 3 ? atoi(argv[3]) : 5;
    int passed = 0, failed = 0;
    kiln_model_t *m;
    kiln_builder_t *b;
    kiln_engine_t *e;
    if (kiln_model_load(argv[1], &m) || kiln_builder_create(&b)) {
        printf("FAIL load: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    /* dynamic dims run at 1 (a fixed profile) */
    int prof;
    kiln_builder_add_profile(b, &prof);
    for (int i = 0; i < kiln_model_num_inputs(m); i++) {
        kiln_dtype dt;
        int rank;
        int64_t dims[KILN_MAX_RANK];
        kiln_model_input_info(m, i, &dt, &rank, dims);
        for (int k = 0; k < rank; k++)
            if (dims[k] < 0) dims[k] = 1;
        kiln_builder_set_profile_shape(b, prof, kiln_model_input_name(m, i), rank, dims, dims, dims);
    }
    if (kiln_builder_build(b, m, &e)) {
        printf("FAIL build: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    int n_in = kiln_engine_num_inputs(e), n_out = kiln_engine_num_outputs(e);
    const char **names = calloc((size_t)n_in, sizeof *names);
    kiln_tensor_t **inputs = calloc((size_t)n_in, sizeof *inputs);
    kiln_tensor_t *ref[64];
    uint64_t state = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < n_in; i++) {
        kiln_dtype dt;
        int rank;
        int64_t dims[KILN_MAX_RANK];
        int64_t mn[KILN_MAX_RANK], mx[KILN_MAX_RANK];
        kiln_engine_input_info(e, i, &dt, &rank, dims);
        kiln_engine_profile_shape(e, 0, i, &rank, mn, dims, mx);
        names[i] = kiln_engine_input_name(e, i);
        kiln_tensor_create(dt, rank, dims, &inputs[i]);
        if (dt == KILN_DTYPE_F32) {
            float *p = kiln_tensor_data(inputs[i]);
            for (int64_t k = 0; k < kiln_tensor_count(inputs[i]); k++) {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                p[k] = (float)((double)(state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
            }
        }
    }
    kiln_context_t *c;
    if (kiln_context_create(e, &c) || kiln_context_run_tensors(c, n_in, names, inputs, n_out, ref)) {
        printf("FAIL reference run: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    kiln_context_destroy(c);
    passed++;

    pthread_t tid[64];
    job jobs[64];
    if (threads > 64) threads = 64;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){e, n_in, n_out, runs, names, inputs, ref, 0, 0};
        pthread_create(&tid[t], NULL, worker, &jobs[t]);
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (jobs[t].mismatches || jobs[t].failures) {
            printf("FAIL thread %d: %d mismatching outputs, %d failed runs\n", t, jobs[t].mismatches, jobs[t].failures);
            failed++;
        } else passed++;
    }

    /* save, load, run again: the same outputs */
    const char *path = "test_engine_threads.kiln";
    kiln_engine_t *e2;
    kiln_tensor_t *outs[64];
    if (kiln_engine_save(e, path) || kiln_engine_load(path, &e2) || kiln_context_create(e2, &c) ||
        kiln_context_run_tensors(c, n_in, names, inputs, n_out, outs)) {
        printf("FAIL save/load: %s\n", kiln_last_error());
        failed++;
    } else {
        bool same = true;
        for (int k = 0; k < n_out; k++) {
            same &= kiln_tensor_nbytes(outs[k]) == kiln_tensor_nbytes(ref[k]) &&
                    memcmp(kiln_tensor_data(outs[k]), kiln_tensor_data(ref[k]), kiln_tensor_nbytes(ref[k])) == 0;
            kiln_tensor_destroy(outs[k]);
        }
        if (same) passed++;
        else {
            printf("FAIL loaded engine gives different outputs\n");
            failed++;
        }
        kiln_context_destroy(c);
        kiln_engine_destroy(e2);
    }
    remove(path);
    for (int k = 0; k < n_out; k++) kiln_tensor_destroy(ref[k]);
    for (int i = 0; i < n_in; i++) kiln_tensor_destroy(inputs[i]);
    free(inputs);
    free(names);
    kiln_engine_destroy(e);
    kiln_builder_destroy(b);
    kiln_model_destroy(m);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
