/* random.c — reference kernels of RandomNormal(Like), RandomUniform(Like), Bernoulli and
 * Multinomial (https://onnx.ai/onnx/operators/onnx__RandomNormal.html and siblings).
 *
 * The generator is xoshiro256** (Blackman and Vigna, https://prng.di.unimi.it/), its 256-bit
 * state filled by splitmix64 from a 64-bit seed:
 *   - with the seed attribute: the IEEE-754 bits of the float seed, so a seeded node gives the
 *     same values on every run and every machine;
 *   - without it: the clock mixed with a process-wide counter, so runs differ.
 * Uniform doubles in [0, 1) take the top 53 bits; normals use Box-Muller on two uniforms;
 * Bernoulli outputs 1 where uniform < p; Multinomial inverts the cumulative distribution of
 * softmax(input row). Values are computed in double and rounded on store.
 * These draws cannot equal numpy's, so test_bernoulli* fail on values (shapes and dtypes match). */
#include "../../ops/seq_internal.h"

#include <stdatomic.h>
#include <time.h>

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_init(rng *r, const seq_random_params *p) {
    static atomic_uint_fast64_t counter;
    uint64_t seed;
    if (p->has_seed) {
        uint32_t bits;
        memcpy(&bits, &p->seed, sizeof bits);
        seed = bits;
    } else {
        struct timespec ts;
        timespec_get(&ts, TIME_UTC);
        seed = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ (atomic_fetch_add(&counter, 1) << 32);
    }
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static double rng_normal(rng *r) {
    double u1 = 1.0 - rng_uniform(r), u2 = rng_uniform(r); /* u1 in (0, 1] */
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static kiln_status multinomial(const kiln_node *node, const seq_random_params *p, rng *r, const kiln_tensor *x,
                               kiln_tensor *y) {
    int64_t batch = x->dims[0], classes = x->dims[1];
    if (classes == 0 && p->sample_size > 0)
        return kiln_node_error(node, KILN_STATUS_INVALID_ARGUMENT, "input has no classes to sample from");
    double *cdf = kiln_malloc(sizeof(double) * (size_t)(classes ? classes : 1));
    if (!cdf) return kiln_error(KILN_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t b = 0; b < batch; b++) {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t c = 0; c < classes; c++) mx = fmax(mx, kiln_load_f64(x->dtype, x->data, b * classes + c));
        for (int64_t c = 0; c < classes; c++) {
            sum += exp(kiln_load_f64(x->dtype, x->data, b * classes + c) - mx);
            cdf[c] = sum;
        }
        for (int64_t k = 0; k < p->sample_size; k++) {
            double u = rng_uniform(r) * sum;
            int64_t c = 0;
            while (c < classes - 1 && !(u < cdf[c])) c++;
            kiln_store_i64(y->dtype, y->data, b * p->sample_size + k, c);
        }
    }
    free(cdf);
    return KILN_STATUS_OK;
}

kiln_status kiln_ref_random(const kiln_node *node, kiln_tensor *const *in, kiln_tensor *out) {
    const seq_random_params *p = node->params;
    rng r;
    rng_init(&r, p);
    kiln_tensor *y = &out[0];
    if (node->op == KILN_OP_Multinomial) return multinomial(node, p, &r, in[0], y);
    int64_t n = kiln_shape_count(y->rank, y->dims);
    for (int64_t i = 0; i < n; i++) {
        double v;
        switch (node->op) {
        case KILN_OP_RandomNormal:
        case KILN_OP_RandomNormalLike: v = p->mean + p->scale * rng_normal(&r); break;
        case KILN_OP_RandomUniform:
        case KILN_OP_RandomUniformLike: v = p->low + (p->high - p->low) * rng_uniform(&r); break;
        default: v = rng_uniform(&r) < kiln_load_f64(in[0]->dtype, in[0]->data, i) ? 1.0 : 0.0; break;
        }
        kiln_store_f64(y->dtype, y->data, i, v);
    }
    return KILN_STATUS_OK;
}
