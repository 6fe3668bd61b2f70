/*
 * Slack's messages to the Socket Mode client, parsed (see slack_msg.h; doc/slack.md "Socket
 * Mode"). Pure: jansson in, plain structs out. Every field is optional and of any type on the
 * wire: a missing or mistyped one reads as absent, never as an error, except the envelope id,
 * which is echoed verbatim in the ack and so must be something we are willing to send back.
 */
#include "slack_msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jwrite.h"
#include "strbuf.h"
#include "utf8.h"

static const char *jstr(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* Copies v into buf, cut to fit (on a UTF-8 boundary). */
static void copy_cut(char *buf, size_t size, const char *v)
{
    size_t n = utf8_cut(v, strlen(v), size - 1);
    memcpy(buf, v, n);
    buf[n] = '\0';
}

static int envelope_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > SLACK_ENVELOPE_ID_MAX)
        return 0;
    for (; *id; id++) {
        if ((unsigned char)*id <= 0x20 || (unsigned char)*id >= 0x7f || *id == '"' || *id == '\\')
            return 0;
    }
    return 1;
}

/* The fields of a slash command's payload (doc/slack.md, "Socket Mode", envelopes). */
static int slash_command(const json_t *payload, struct slack_msg *out)
{
    out->is_slash_command = 1;
    out->command = strdup(jstr(payload, "command"));
    out->text = strdup(jstr(payload, "text"));
    out->user_id = strdup(jstr(payload, "user_id"));
    out->channel_id = strdup(jstr(payload, "channel_id"));
    out->response_url = strdup(jstr(payload, "response_url"));
    if (!out->command || !out->text || !out->user_id || !out->channel_id || !out->response_url)
        return -ENOMEM;
    return 0;
}

int slack_msg_parse(const char *buf, size_t len, struct slack_msg *out)
{
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *id, *payload;
    int r = 0;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root)) {
        json_decref(root);
        return -EINVAL;
    }
    copy_cut(out->type, sizeof(out->type), jstr(root, "type"));
    id = json_object_get(root, "envelope_id");
    if (strcmp(out->type, "hello") == 0) {
        out->kind = SLACK_MSG_HELLO;
        out->num_connections = json_integer_value(json_object_get(root, "num_connections"));
    } else if (strcmp(out->type, "disconnect") == 0) {
        out->kind = SLACK_MSG_DISCONNECT;
        copy_cut(out->reason, sizeof(out->reason), jstr(root, "reason"));
    } else if (json_is_string(id)) {
        if (!envelope_id_ok(json_string_value(id))) {
            r = -EINVAL;
            goto out;
        }
        out->kind = SLACK_MSG_ENVELOPE;
        snprintf(out->envelope_id, sizeof(out->envelope_id), "%s", json_string_value(id));
        out->accepts_response_payload =
            json_is_true(json_object_get(root, "accepts_response_payload"));
        out->retry_attempt = json_integer_value(json_object_get(root, "retry_attempt"));
        payload = json_object_get(root, "payload");
        if (strcmp(out->type, "slash_commands") == 0 && json_is_object(payload))
            r = slash_command(payload, out);
    }
out:
    json_decref(root);
    if (r)
        slack_msg_fini(out);
    return r;
}

void slack_msg_fini(struct slack_msg *m)
{
    free(m->command);
    free(m->text);
    free(m->user_id);
    free(m->channel_id);
    free(m->response_url);
    m->command = m->text = m->user_id = m->channel_id = m->response_url = NULL;
    m->is_slash_command = 0;
}

/* Written directly (jwrite.h), not through jansson and a format: the payload is a whole
 * answer (about 20 KB for `projects`), copied once, straight into the frame that carries it. */
void slack_msg_ack_put(struct strbuf *b, const char *id, const char *payload)
{
    strbuf_puts(b, "{\"envelope_id\":");
    jwrite_string(b, id, strlen(id));
    if (payload) {
        strbuf_puts(b, ",\"payload\":");
        strbuf_puts(b, payload);
    }
    strbuf_puts(b, "}");
}

int slack_msg_ack(const char *id, const char *payload, char **out, size_t *len)
{
    struct strbuf b = {0};

    slack_msg_ack_put(&b, id, payload);
    *len = b.n;
    *out = strbuf_take(&b);
    if (!*out) {
        *len = 0;
        return -ENOMEM;
    }
    return 0;
}

/*
 * Errors that say the app token or its team cannot open connections at all (doc/slack.md,
 * "apps.connections.open"): waiting does not change them, a person has to.
 */
static int token_error(const char *error)
{
    static const char *const refused[] = {
        "invalid_auth",           "not_authed",    "account_inactive",
        "user_removed_from_team", "team_disabled", "missing_args",
        "forbidden_team",         "token_revoked", "not_allowed_token_type"};

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (strcmp(error, refused[i]) == 0)
            return 1;
    }
    return 0;
}

int slack_msg_parse_open(const char *body, size_t len, struct slack_open *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *url;
    int r = 0;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root)) {
        json_decref(root);
        return -EINVAL;
    }
    if (!json_is_true(json_object_get(root, "ok"))) {
        /* Compared whole, then cut: a long error never matches a token error by its prefix. */
        const char *error = jstr(root, "error");
        out->kind = token_error(error) ? SLACK_OPEN_REFUSED : SLACK_OPEN_ERROR;
        copy_cut(out->error, sizeof(out->error), error);
        goto out;
    }
    url = json_string_value(json_object_get(root, "url"));
    if (!url) {
        out->kind = SLACK_OPEN_NO_URL;
        goto out;
    }
    out->kind = SLACK_OPEN_URL;
    out->url = strdup(url);
    if (!out->url)
        r = -ENOMEM;
out:
    json_decref(root);
    if (r)
        slack_msg_open_fini(out);
    return r;
}

void slack_msg_open_fini(struct slack_open *o)
{
    free(o->url);
    memset(o, 0, sizeof(*o));
}
