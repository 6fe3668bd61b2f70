/*
 * Fuzz harness: slack_api_parse() on any answer. The first byte picks the call: bit 0 the
 * method (0 auth.test, 1 conversations.info; bit 6 set: chat.postMessage), bits 1-3 the HTTP
 * status (see status[]), bit 4 a transport failure instead of an answer, bit 5 a Retry-After of
 * 30 s; the rest is the body.
 * The result must be one of the enum's, every string printable ASCII within its field, the
 * fields of another method or of a failure empty, and retry_after set only for a retry;
 * anything else aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "slack_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == size)
        abort(); /* not terminated within its field */
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long status[] = {200, 400, 401, 403, 404, 429, 500, 503};
    struct slack_api_answer a;
    struct http_response res = {0};
    enum slack_api_method method;
    char *body;

    if (size == 0)
        return 0;
    method = data[0] & 0x40 ? SLACK_API_CHAT_POST_MESSAGE
             : data[0] & 1  ? SLACK_API_CONVERSATIONS_INFO
                            : SLACK_API_AUTH_TEST;
    body = malloc(size);
    if (!body)
        return 0;
    memcpy(body, data + 1, size - 1);
    body[size - 1] = '\0';
    res.result = data[0] & 0x10 ? HTTP_ERR_TIMEOUT : HTTP_DONE;
    res.status = res.result == HTTP_DONE ? status[(data[0] >> 1) & 7] : 0;
    res.body = res.result == HTTP_DONE ? body : "";
    res.body_len = res.result == HTTP_DONE ? size - 1 : 0;
    res.error = res.result == HTTP_DONE ? NULL : "timed out";
    res.retry_after = data[0] & 0x20 ? 30 : -1;

    memset(&a, 0x5a, sizeof(a)); /* the parser must set every field */
    slack_api_parse(method, &res, &a);
    if ((unsigned)a.result > SLACK_API_ERROR)
        abort();
    check_string(a.error, sizeof(a.error));
    check_string(a.user_id, sizeof(a.user_id));
    check_string(a.user, sizeof(a.user));
    check_string(a.team, sizeof(a.team));
    if ((a.result == SLACK_API_OK) != (a.error[0] == '\0'))
        abort();
    if (a.retry_after != -1 && (a.result != SLACK_API_RETRY || a.retry_after != res.retry_after))
        abort();
    if ((a.is_member != 0 && a.is_member != 1) || (a.is_archived != 0 && a.is_archived != 1))
        abort();
    if ((a.is_member || a.is_archived) &&
        (a.result != SLACK_API_OK || method != SLACK_API_CONVERSATIONS_INFO))
        abort();
    if ((a.user_id[0] || a.user[0] || a.team[0]) &&
        (a.result != SLACK_API_OK || method != SLACK_API_AUTH_TEST))
        abort();
    free(body);
    return 0;
}
