/* test_rng.h — the C tests' deterministic random floats: xorshift64 over a caller-held state,
 * uniform in [-1, 1). */
#ifndef KILN_TESTS_RNG_H
#define KILN_TESTS_RNG_H

#include <stdint.h>

static inline float test_next_float(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

#endif /* KILN_TESTS_RNG_H */
