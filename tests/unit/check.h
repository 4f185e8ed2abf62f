/* check.h — the C unit tests' counters and CHECK: a failed condition is printed with its file
 * and line and counted; the test ends by printing "N passed, N failed". */
#ifndef KILN_TESTS_CHECK_H
#define KILN_TESTS_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) passed++;                                                                        \
        else {                                                                                     \
            failed++;                                                                              \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                \
        }                                                                                          \
    } while (0)

#endif /* KILN_TESTS_CHECK_H */
