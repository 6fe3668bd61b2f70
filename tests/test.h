/*
 * A tiny test harness (seatd's test.h): each check prints file:line and the failed expression,
 * and the test executable exits non-zero at the end if any check failed.
 *
 *   static void test_something(void) { CHECK(x == 1); CHECK_STR(a, "b"); }
 *   int main(void) { RUN(test_something); return test_done(); }
 */
#ifndef YTB_TEST_H
#define YTB_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpdir.h"

static int test_failures;
static int test_checks;

#define CHECK(expr)                                                                  \
    do {                                                                             \
        test_checks++;                                                               \
        if (!(expr)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
            test_failures++;                                                         \
        }                                                                            \
    } while (0)

#define CHECK_INT(a, b)                                                                           \
    do {                                                                                          \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                     \
        test_checks++;                                                                            \
        if (va_ != vb_) {                                                                         \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, \
                    va_, vb_);                                                                    \
            test_failures++;                                                                      \
        }                                                                                         \
    } while (0)

#define CHECK_STR(a, b)                                                                           \
    do {                                                                                          \
        const char *sa_ = (a), *sb_ = (b);                                                        \
        test_checks++;                                                                            \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                              \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, \
                    #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                              \
            test_failures++;                                                                      \
        }                                                                                         \
    } while (0)

#define RUN(fn)                                                                      \
    do {                                                                             \
        int before_ = test_failures;                                                 \
        fn();                                                                        \
        fprintf(stderr, "%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

#ifdef TEST_DATA_DIR
/* TEST_DATA_DIR/dir/name, NUL-terminated (caller frees), its size in *len; exits if unreadable. */
static inline char *test_data(const char *dir, const char *name, size_t *len)
{
    char path[512];
    FILE *f;
    char *buf;
    long n;

    snprintf(path, sizeof(path), "%s/%s/%s", TEST_DATA_DIR, dir, name);
    f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}
#endif

static inline int test_done(void)
{
    fprintf(stderr, "%d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

#endif
