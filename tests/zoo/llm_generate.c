/* llm_generate.c — greedy text generation with a KV-cache decoder engine, through the C API only:
 * what a server does with an engine built from zoo/models/qwen3_decoder.onnx. One context; the
 * prompt runs on the prefill profile (past length 0: empty past tensors), then each new token on
 * the decode profile with the previous step's present_* outputs bound as the past_* inputs.
 *
 * The engine's inputs: input_ids [B,S] int64, position_ids [B,S] int64, and past_<kind>_<i>
 * [B, kv_heads, P, head_dim] f32 whose outputs are present_<kind>_<i> [B, kv_heads, P+S, head_dim];
 * logits [B,S,vocab] f32. B must be 1. Layers and sizes are read from the engine.
 *
 * usage: llm_generate ENGINE.kiln PROMPT STEPS [PREFILL_PROFILE DECODE_PROFILE]
 *        PROMPT is comma-separated token ids ("3,141,59"); profiles default to 0 and 1.
 * Prints one line per generated token, "<token id> <its logit>", and exits 0; on an error, one
 * line "llm_generate: <what>: <kiln_last_error()>" on stderr and exit 1.
 * Tested by tests/zoo/test_llm_generate.py against the same loop in ONNX Runtime. */
#include "kiln.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROMPT 256
#define MAX_CACHE 128 /* past_* inputs: 2 per layer */

static void die(const char *what) {
    fprintf(stderr, "llm_generate: %s: %s\n", what, kiln_last_error());
    exit(1);
}

static void check(kiln_status s, const char *what) {
    if (s != KILN_STATUS_OK) die(what);
}

/* The KV cache: for each past_* input, two buffers used in turn (one is read as the past while
 * the engine writes the present into the other, so inputs and outputs never alias). */
typedef struct cache {
    int n;                        /* number of past_* inputs */
    const char *past[MAX_CACHE];  /* input names */
    char present[MAX_CACHE][128]; /* the matching output names */
    float *buf[MAX_CACHE][2];     /* (1, kv_heads, max_len, head_dim) each, f32 */
    int cur;                      /* buf[i][cur] holds the past */
    int64_t kv_heads, head_dim, max_len;
} cache;

static void cache_init(cache *kc, const kiln_engine_t *e, int decode_profile) {
    memset(kc, 0, sizeof *kc);
    for (int i = 0; i < kiln_engine_num_inputs(e); i++) {
        const char *name = kiln_engine_input_name(e, i);
        if (strncmp(name, "past_", 5) != 0) continue;
        if (kc->n == MAX_CACHE) die("too many past_* inputs");
        int rank;
        int64_t mn[KILN_MAX_RANK], opt[KILN_MAX_RANK], mx[KILN_MAX_RANK];
        check(kiln_engine_profile_shape(e, decode_profile, i, &rank, mn, opt, mx), name);
        if (rank != 4) die("a past_* input is not 4-d");
        kc->kv_heads = mx[1], kc->head_dim = mx[3];
        if (kc->max_len == 0 || mx[2] + 1 < kc->max_len) kc->max_len = mx[2] + 1; /* past + the new token */
        kc->past[kc->n] = name;
        snprintf(kc->present[kc->n], sizeof kc->present[0], "present_%s", name + 5);
        size_t elems = (size_t)(kc->kv_heads * kc->max_len * kc->head_dim);
        for (int k = 0; k < 2; k++)
            if (!(kc->buf[kc->n][k] = calloc(elems, sizeof(float)))) die("out of memory");
        kc->n++;
    }
    if (kc->n == 0) die("the engine has no past_* inputs");
}

/* Binds past (length p) and present (length p + s) for one step. */
static void cache_bind(const cache *kc, kiln_context_t *c, int64_t p, int64_t s) {
    size_t bytes = (size_t)(kc->kv_heads * kc->max_len * kc->head_dim) * sizeof(float);
    for (int i = 0; i < kc->n; i++) {
        int64_t dims[4] = {1, kc->kv_heads, p, kc->head_dim};
        check(kiln_context_set_input_shape(c, kc->past[i], 4, dims), kc->past[i]);
        check(kiln_context_set_tensor_address(c, kc->past[i], kc->buf[i][kc->cur], bytes), kc->past[i]);
        check(kiln_context_set_tensor_address(c, kc->present[i], kc->buf[i][!kc->cur], bytes), kc->present[i]);
    }
}

/* After a step, checks each present has length p + s; it becomes the next step's past. */
static void cache_advance(cache *kc, const kiln_context_t *c, int64_t total) {
    for (int i = 0; i < kc->n; i++) {
        int rank;
        int64_t dims[KILN_MAX_RANK];
        check(kiln_context_tensor_shape(c, kc->present[i], &rank, dims), kc->present[i]);
        if (rank != 4 || dims[2] != total) {
            fprintf(stderr, "llm_generate: output '%s' has length %lld, expected %lld\n", kc->present[i],
                    (long long)dims[2], (long long)total);
            exit(1);
        }
    }
    kc->cur = !kc->cur;
}

static int parse_prompt(const char *s, int64_t *ids) {
    int n = 0;
    for (char *end; *s; s = *end ? end + 1 : end) {
        if (n == MAX_PROMPT) return -1;
        ids[n++] = strtoll(s, &end, 10);
        if (end == s || (*end && *end != ',')) return -1;
    }
    return n;
}

/* The index of the largest of n values (the first on ties, as numpy's argmax). */
static int64_t argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: llm_generate ENGINE.kiln PROMPT STEPS [PREFILL_PROFILE DECODE_PROFILE]\n");
        return 2;
    }
    int64_t ids[MAX_PROMPT], pos[MAX_PROMPT];
    int n_prompt = parse_prompt(argv[2], ids), steps = atoi(argv[3]);
    int prefill = argc == 6 ? atoi(argv[4]) : 0, decode = argc == 6 ? atoi(argv[5]) : 1;
    if (n_prompt <= 0 || steps <= 0) {
        fprintf(stderr, "llm_generate: PROMPT must be 1 to %d comma-separated token ids and STEPS > 0\n", MAX_PROMPT);
        return 2;
    }
    kiln_engine_t *e;
    kiln_context_t *c;
    check(kiln_engine_load(argv[1], &e), argv[1]);
    check(kiln_context_create(e, &c), "context");
    cache kc;
    cache_init(&kc, e, decode);
    int rank;
    int64_t ldims[KILN_MAX_RANK];
    kiln_dtype dt;
    int li = -1;
    for (int j = 0; j < kiln_engine_num_outputs(e); j++)
        if (strcmp(kiln_engine_output_name(e, j), "logits") == 0) li = j;
    if (li < 0) die("the engine has no output named 'logits'");
    check(kiln_engine_output_info(e, li, &dt, &rank, ldims), "logits");
    int64_t vocab = ldims[rank - 1];
    float *logits = malloc(sizeof(float) * (size_t)(vocab * MAX_PROMPT));
    if (!logits) die("out of memory");

    int64_t p = 0, s = n_prompt; /* past length, new tokens this step */
    for (int i = 0; i < n_prompt; i++) pos[i] = i;
    for (int step = 0; step < steps; step++) {
        int64_t sd[2] = {1, s};
        check(kiln_context_set_profile(c, step == 0 ? prefill : decode), "set profile");
        check(kiln_context_set_input_shape(c, "input_ids", 2, sd), "input_ids");
        check(kiln_context_set_input_shape(c, "position_ids", 2, sd), "position_ids");
        check(kiln_context_set_tensor_address(c, "input_ids", ids, sizeof(int64_t) * (size_t)s), "input_ids");
        check(kiln_context_set_tensor_address(c, "position_ids", pos, sizeof(int64_t) * (size_t)s), "position_ids");
        check(kiln_context_set_tensor_address(c, "logits", logits, sizeof(float) * (size_t)(vocab * s)), "logits");
        cache_bind(&kc, c, p, s);
        check(kiln_context_run(c), "run");
        cache_advance(&kc, c, p + s);
        const float *last = logits + (s - 1) * vocab;
        int64_t tok = argmax(last, vocab);
        printf("%lld %.7g\n", (long long)tok, last[tok]);
        p += s, s = 1;
        ids[0] = tok, pos[0] = p;
    }
    for (int i = 0; i < kc.n; i++) free(kc.buf[i][0]), free(kc.buf[i][1]);
    free(logits);
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    return 0;
}
