/* test_enqueue.c — kiln_context_enqueue, kiln_context_synchronize and kiln_context_set_cuda_stream.
 * Builds MODEL (one float input, one float output: examples/tiny_cnn.onnx; a dynamic dim is fixed
 * at 3) for DEVICE, then on one context enqueues runs on several inputs, each into its own bound output
 * buffer, and checks every output bitwise against kiln_context_run's on a second context:
 * - waiting with kiln_context_synchronize, and (GPU) with cudaStreamSynchronize on a stream the
 *   test created and gave the context (the caller's stream), with CUDA graphs on and off;
 * - back-to-back enqueues without a wait in between (each run waits for the one before);
 * - kiln_context_last_timing after an enqueue (it waits for the run);
 * - kiln_context_tensor_shape of the output before any run (inferred from the input shape);
 * - CPU: kiln_context_set_cuda_stream is refused as UNSUPPORTED, enqueue runs synchronously.
 * usage: test_enqueue MODEL.onnx cpu|cuda. Ends with "N passed, N failed". The cuda variant is
 * built only with the CUDA backend and needs a GPU (scripts/gpu_check.sh runs it). */
#include "kiln.h"
#include "test_rng.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KILN_TEST_CUDA
#include <cuda_runtime.h>
#endif

#define RUNS 4

static int passed, failed;

static void check(bool ok, const char *what) {
    if (ok) passed++;
    else failed++;
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, ok ? "" : ": ", ok ? "" : kiln_last_error());
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static float next_float(void) { return test_next_float(&rng); }

static size_t count_of(int rank, const int64_t *dims) {
    size_t n = 1;
    for (int k = 0; k < rank; k++) n *= (size_t)dims[k];
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[2], "cpu") != 0 && strcmp(argv[2], "cuda") != 0)) {
        fprintf(stderr, "usage: %s MODEL.onnx cpu|cuda\n", argv[0]);
        return 2;
    }
    bool gpu = strcmp(argv[2], "cuda") == 0;
    kiln_model_t *m = NULL;
    kiln_builder_t *b = NULL;
    kiln_engine_t *e = NULL;
    kiln_dtype mdt;
    int mrank, prof;
    int64_t mdims[KILN_MAX_RANK];
    bool built = !kiln_model_load(argv[1], &m) && !kiln_builder_create(&b) &&
                 !kiln_builder_set_device(b, gpu ? KILN_DEVICE_CUDA : KILN_DEVICE_CPU) && !kiln_model_input_info(m, 0, &mdt, &mrank, mdims);
    if (built) {
        for (int k = 0; k < mrank; k++)
            if (mdims[k] < 0) mdims[k] = 3; /* a dynamic dim (the batch) fixed at 3 */
        built = !kiln_builder_add_profile(b, &prof) &&
                !kiln_builder_set_profile_shape(b, prof, kiln_model_input_name(m, 0), mrank, mdims, mdims, mdims) &&
                !kiln_builder_build(b, m, &e);
    }
    if (!built) {
        printf("FAIL build: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    kiln_builder_destroy(b);
    kiln_model_destroy(m);
    const char *in_name = kiln_engine_input_name(e, 0), *out_name = kiln_engine_output_name(e, 0);
    int in_rank = mrank;
    int64_t in_dims[KILN_MAX_RANK];
    memcpy(in_dims, mdims, sizeof in_dims);
    size_t n_in = count_of(in_rank, in_dims), n_out = 0;
    /* the output's shape before any run: inferred from the input's (to size buffers for enqueue) */
    kiln_context_t *pre = NULL;
    int pre_rank = -1;
    int64_t pre_dims[KILN_MAX_RANK];
    bool inferred = !kiln_context_create(e, &pre) && !kiln_context_set_input_shape(pre, in_name, in_rank, in_dims) &&
                    !kiln_context_tensor_shape(pre, out_name, &pre_rank, pre_dims);
    kiln_context_destroy(pre);
    /* the output's size: from one run (an engine may still describe it with symbolic dims) */
    kiln_context_t *probe = NULL;
    kiln_tensor_t *px = NULL, *py[1] = {NULL};
    if (!kiln_tensor_create(KILN_DTYPE_F32, in_rank, in_dims, &px) && !kiln_context_create(e, &probe) &&
        !kiln_context_run_tensors(probe, 1, &in_name, &px, 1, py))
        n_out = (size_t)kiln_tensor_count(py[0]);
    kiln_tensor_destroy(px);
    kiln_tensor_destroy(py[0]);
    kiln_context_destroy(probe);
    if (!n_out) {
        printf("FAIL a first run: %s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    check(inferred && pre_rank >= 1 && pre_dims[0] == in_dims[0] && count_of(pre_rank, pre_dims) == n_out,
          "an output's shape before the first run, inferred from the input's");
    float *x[RUNS], *want[RUNS], *got[RUNS];
    for (int r = 0; r < RUNS; r++) {
        x[r] = malloc(n_in * sizeof(float));
        want[r] = calloc(n_out, sizeof(float));
        got[r] = calloc(n_out, sizeof(float));
        for (size_t i = 0; i < n_in; i++) x[r][i] = next_float();
    }

    /* the expected outputs: kiln_context_run on a context of its own */
    kiln_context_t *ref = NULL, *c = NULL;
    bool ok = kiln_context_create(e, &ref) == KILN_STATUS_OK;
    for (int r = 0; ok && r < RUNS; r++)
        ok = !kiln_context_set_input_shape(ref, in_name, in_rank, in_dims) &&
             !kiln_context_set_tensor_address(ref, in_name, x[r], n_in * sizeof(float)) &&
             !kiln_context_set_tensor_address(ref, out_name, want[r], n_out * sizeof(float)) && !kiln_context_run(ref);
    check(ok, "kiln_context_run gives the expected outputs");
    kiln_context_destroy(ref);
    if (!ok || kiln_context_create(e, &c)) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }

#ifdef KILN_TEST_CUDA
    cudaStream_t stream = NULL;
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess, "a stream of the caller's");
    check(kiln_context_set_cuda_stream(c, stream) == KILN_STATUS_OK, "kiln_context_set_cuda_stream");
#else
    check(kiln_context_set_cuda_stream(c, NULL) == KILN_STATUS_UNSUPPORTED, "a CPU context refuses a CUDA stream");
#endif

    /* mode 0: wait with kiln_context_synchronize after each; mode 1: enqueue all, wait once;
     * modes 2, 3: the same with CUDA graphs (GPU only); mode 4: the caller syncs the stream */
    int modes = gpu ? 5 : 2;
    for (int mode = 0; mode < modes; mode++) {
        if (gpu) kiln_context_set_cuda_graph(c, mode == 2 || mode == 3);
        for (int r = 0; r < RUNS; r++) memset(got[r], 0xFF, n_out * sizeof(float));
        bool fine = true;
        for (int r = 0; fine && r < RUNS; r++) {
            fine = !kiln_context_set_input_shape(c, in_name, in_rank, in_dims) &&
                   !kiln_context_set_tensor_address(c, in_name, x[r], n_in * sizeof(float)) &&
                   !kiln_context_set_tensor_address(c, out_name, got[r], n_out * sizeof(float)) && !kiln_context_enqueue(c);
            if (fine && (mode == 0 || mode == 2)) fine = !kiln_context_synchronize(c);
        }
#ifdef KILN_TEST_CUDA
        if (fine && mode == 4) fine = cudaStreamSynchronize(stream) == cudaSuccess;
#endif
        if (fine && mode != 4) fine = !kiln_context_synchronize(c);
        bool same = fine;
        for (int r = 0; same && r < RUNS; r++) same = memcmp(got[r], want[r], n_out * sizeof(float)) == 0;
        char what[96];
        static const char *names[] = {"synchronize after each", "enqueue all, synchronize once", "CUDA graph, synchronize after each",
                                      "CUDA graph, enqueue all", "caller's cudaStreamSynchronize"};
        snprintf(what, sizeof what, "enqueue (%s): %d runs equal kiln_context_run's", names[mode], RUNS);
        check(same, what);
    }
    kiln_run_timing t;
    check(!kiln_context_set_tensor_address(c, in_name, x[0], n_in * sizeof(float)) && !kiln_context_enqueue(c) &&
              !kiln_context_last_timing(c, &t) && t.device == (gpu ? KILN_DEVICE_CUDA : KILN_DEVICE_CPU) && t.compute_ms > 0,
          "kiln_context_last_timing after an enqueue");
#ifdef KILN_TEST_CUDA
    check(!kiln_context_set_cuda_stream(c, NULL) && !kiln_context_run(c) &&
              memcmp(got[RUNS - 1], want[0], n_out * sizeof(float)) == 0,
          "back on the context's own stream");
#endif
    kiln_context_destroy(c);
#ifdef KILN_TEST_CUDA
    cudaStreamDestroy(stream);
#endif
    kiln_engine_destroy(e);
    for (int r = 0; r < RUNS; r++) {
        free(x[r]);
        free(want[r]);
        free(got[r]);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
