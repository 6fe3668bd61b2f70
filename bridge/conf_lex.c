/*
 * The pre-scan of a configuration text before libconfig sees it: libconfig 1.5 silently wraps
 * integers that overflow (4294967356 reads as 60), follows @include to any file (/dev/zero
 * would hang), recurses on nesting and leaks a string where no value may start. Pure: the text
 * in, diagnostics out.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "conf_loader.h"

static int is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '*';
}

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static int is_xdigit(char ch)
{
    return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/*
 * Lexes one number starting at s (libconfig's integer, integer64, hex, hex64 and float forms)
 * and returns its length; sets *bad when it is an integer libconfig would silently wrap.
 */
static size_t number_scan(const char *s, int *bad)
{
    size_t i = 0, digits, l = 0;
    char buf[32];

    *bad = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && is_xdigit(s[2])) {
        size_t sig = 0;
        unsigned long long v = 0;
        i = 2;
        while (s[i] == '0')
            i++;
        for (; is_xdigit(s[i]); i++) {
            sig++;
            if (sig <= 16)
                v = v * 16 +
                    (unsigned long long)(is_digit(s[i]) ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10);
        }
        while (s[i + l] == 'L' && l < 2)
            l++;
        *bad = sig > 16 || (l == 0 && v > INT_MAX);
        return i + l;
    }
    if (s[i] == '+' || s[i] == '-')
        i++;
    digits = i;
    while (is_digit(s[i]))
        i++;
    digits = i - digits;
    if (s[i] == '.' ||
        ((s[i] == 'e' || s[i] == 'E') &&
         (is_digit(s[i + 1]) || ((s[i + 1] == '+' || s[i + 1] == '-') && is_digit(s[i + 2]))))) {
        if (s[i] == '.')
            for (i++; is_digit(s[i]); i++)
                ;
        if ((s[i] == 'e' || s[i] == 'E') &&
            (is_digit(s[i + 1]) || ((s[i + 1] == '+' || s[i + 1] == '-') && is_digit(s[i + 2])))) {
            i += 2;
            while (is_digit(s[i]))
                i++;
        }
        return i;
    }
    while (s[i + l] == 'L' && l < 2)
        l++;
    if (digits == 0)
        return i + l;
    if (i >= sizeof(buf)) {
        *bad = 1;
    } else {
        long long v;
        memcpy(buf, s, i);
        buf[i] = '\0';
        errno = 0;
        v = strtoll(buf, NULL, 10);
        *bad = errno == ERANGE || (l == 0 && (v < INT_MIN || v > INT_MAX));
    }
    return i + l;
}

/*
 * Refuses what libconfig would mishandle: @include, nesting deeper than CONF_MAX_DEPTH,
 * integers that overflow, and a string where no value may start (libconfig 1.5's parser leaks
 * the string on that syntax error; "" alone is enough). Strings and comments are skipped as
 * libconfig's scanner does. Returns 0 or -1 (reported).
 */
int prescan(struct loader *ld, const char *s, size_t len)
{
    char open[CONF_MAX_DEPTH + 1];
    size_t i = 0;
    int line = 1, depth = 0, value_ok = 0;

    while (i < len) {
        char ch = s[i];
        if (ch == '\n') {
            line++;
            i++;
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v') {
            i++;
            continue;
        }
        if (ch == '"') {
            if (!value_ok) {
                diag_add(ld, line, "syntax error");
                return -1;
            }
            for (i++; i < len && s[i] != '"'; i++) {
                if (s[i] == '\\' && i + 1 < len)
                    i++;
                if (s[i] == '\n')
                    line++;
            }
            i++;
            continue; /* adjacent strings concatenate: a string may follow */
        }
        if (ch == '#' || (ch == '/' && s[i + 1] == '/')) {
            while (i < len && s[i] != '\n')
                i++;
            continue;
        }
        if (ch == '/' && s[i + 1] == '*') {
            for (i += 2; i < len && !(s[i] == '*' && s[i + 1] == '/'); i++) {
                if (s[i] == '\n')
                    line++;
            }
            i += 2;
            continue;
        }
        value_ok = 0;
        if (ch == '=' || ch == ':') {
            value_ok = 1;
            i++;
        } else if (ch == ',') {
            value_ok = depth > 0 && open[depth - 1] != '{';
            i++;
        } else if (ch == '@' && strncmp(s + i + 1, "include", 7) == 0) {
            diag_add(ld, line, "@include is not supported");
            return -1;
        } else if (ch == '{' || ch == '(' || ch == '[') {
            if (depth == CONF_MAX_DEPTH) {
                diag_add(ld, line, "nested deeper than %d levels", CONF_MAX_DEPTH);
                return -1;
            }
            open[depth++] = ch;
            value_ok = ch != '{';
            i++;
        } else if (ch == '}' || ch == ')' || ch == ']') {
            if (depth > 0)
                depth--;
            i++;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '*') {
            while (is_name_char(s[i]))
                i++;
        } else if (is_digit(ch) || ((ch == '-' || ch == '+' || ch == '.') &&
                                    (is_digit(s[i + 1]) || s[i + 1] == '.'))) {
            int bad;
            size_t n = number_scan(s + i, &bad);
            if (bad) {
                char shown[48];
                size_t k = n < 40 ? n : 40;
                memcpy(shown, s + i, k);
                strcpy(shown + k, n > k ? "..." : "");
                diag_add(ld, line, "integer %s is out of range", shown);
                return -1;
            }
            i += n ? n : 1;
        } else {
            i++;
        }
    }
    return 0;
}
