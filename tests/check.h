/*
 * check.h - the tiny test framework of dsv4's C tests.
 *
 *   CHECK(cond, fmt, ...)   one assertion; counted, reported on failure
 *   TEST(name) { ... }      a test function; run it with RUN(name)
 *   return check_summary(); at the end of main: prints "N passed, N failed"
 *
 * Every CHECK counts as one test result, so the totals reflect what was
 * actually verified.  tests/run.sh adds up the summaries of all programs.
 */
#ifndef DSV4_CHECK_H
#define DSV4_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed;
static const char *check_current = "";

#define CHECK(cond, ...) do { \
    if (cond) { check_passed++; } else { \
        check_failed++; \
        fprintf(stderr, "FAIL %s (%s:%d): ", check_current, __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define TEST(name) static void name(void)
#define RUN(name) do { check_current = #name; int f0_ = check_failed; name(); \
    fprintf(stderr, "%s %s\n", check_failed == f0_ ? "ok  " : "FAIL", #name); } while (0)

static inline int check_summary(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

/* Path of a fixture under tests/data, relative to the repository root
 * (tests are run from there). */
#define DATA(p) "tests/data/" p
#endif
