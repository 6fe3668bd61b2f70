/*
 * Temporary files and directories for the C tests: under $TMPDIR (else /tmp), made with
 * mkdtemp()/mkstemp() from a template, and removed without a shell, so any path works.
 */
#ifndef YTB_TEST_TMPDIR_H
#define YTB_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define TEST_PATH_MAX 256 /* a temporary directory's path; paths below it get some room more */

/* "$TMPDIR/name-XXXXXX" (else /tmp) into buf, for mkdtemp() or mkstemp(); exits when it does
 * not fit. */
static inline char *test_tmp_template(char *buf, size_t len, const char *name)
{
    const char *t = getenv("TMPDIR");
    int n = snprintf(buf, len, "%s/%s-XXXXXX", t && *t ? t : "/tmp", name);

    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "the temporary path for %s does not fit: TMPDIR is too long\n", name);
        exit(1);
    }
    return buf;
}

/* A new private directory from test_tmp_template() in buf; exits when it cannot be made. */
static inline char *test_tmpdir(char *buf, size_t len, const char *name)
{
    if (!mkdtemp(test_tmp_template(buf, len, name))) {
        perror(buf);
        exit(1);
    }
    return buf;
}

static inline int test_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

/* Removes path and everything below it. 0, or -1 (errno set). */
static inline int test_rmtree(const char *path)
{
    return nftw(path, test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
