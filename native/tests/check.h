/*
 * check.h — the assertions of the C test programs: no framework, just CHECK/CHECK_EQ
 * that print file:line and the failed expression, mark the test failed and end it.
 *
 * A program may define CHECK_ON_FAIL() before including this file to print more
 * context on a failure (the book tests dump the engine's last output).
 */
#ifndef TRADSYS_TESTS_CHECK_H
#define TRADSYS_TESTS_CHECK_H

#include <stdio.h>

#ifndef CHECK_ON_FAIL
#define CHECK_ON_FAIL() ((void)0)
#endif

static int g_test_failed;

#define CHECK(expr)                                                                        \
    do {                                                                                   \
        if (!(expr)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);       \
            CHECK_ON_FAIL();                                                               \
            g_test_failed = 1;                                                             \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#define CHECK_EQ(actual, expected)                                                         \
    do {                                                                                   \
        long long a_ = (long long)(actual), e_ = (long long)(expected);                    \
        if (a_ != e_) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (got %lld / 0x%llx, want %lld)\n", \
                    __FILE__, __LINE__, #actual, #expected, a_, (unsigned long long)a_, e_); \
            CHECK_ON_FAIL();                                                               \
            g_test_failed = 1;                                                             \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#endif /* TRADSYS_TESTS_CHECK_H */
