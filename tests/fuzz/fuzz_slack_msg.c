/*
 * Fuzz harness: any bytes as one Socket Mode text message (what a websocket frame, reassembled,
 * hands to the client), and as the body of an apps.connections.open answer. The parses must
 * succeed or fail cleanly; a parsed envelope id must be short printable ASCII, a slash
 * command's fields must all be there, an envelope's ack must be JSON naming the same id, and an
 * open answer has a URL exactly when it says so; anything else aborts.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slack_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_open(const uint8_t *data, size_t size)
{
    struct slack_open o;
    int r = slack_msg_parse_open((const char *)data, size, &o);

    if (r != 0) {
        if (o.url || o.error[0])
            abort();
        return;
    }
    if ((o.kind == SLACK_OPEN_URL) != (o.url != NULL) || strlen(o.error) >= sizeof(o.error))
        abort();
    if ((o.kind == SLACK_OPEN_URL || o.kind == SLACK_OPEN_NO_URL) && o.error[0])
        abort();
    slack_msg_open_fini(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct slack_msg m;
    int r = slack_msg_parse((const char *)data, size, &m);

    check_open(data, size);
    if (r != 0)
        return 0;
    if (m.kind == SLACK_MSG_ENVELOPE) {
        size_t n = strlen(m.envelope_id);
        if (n == 0 || n > SLACK_ENVELOPE_ID_MAX)
            abort();
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)m.envelope_id[i];
            if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
                abort();
        }
        char *text = NULL;
        size_t len;
        if (slack_msg_ack(m.envelope_id, NULL, &text, &len) == 0) {
            json_t *j = json_loadb(text, len, 0, NULL);
            const char *id = json_string_value(json_object_get(j, "envelope_id"));
            if (!id || strcmp(id, m.envelope_id) != 0)
                abort();
            json_decref(j);
            free(text);
        }
    } else if (m.envelope_id[0] || m.is_slash_command) {
        abort();
    }
    if (m.is_slash_command &&
        (!m.command || !m.text || !m.user_id || !m.channel_id || !m.response_url))
        abort();
    if (strlen(m.reason) >= sizeof(m.reason) || strlen(m.type) >= sizeof(m.type))
        abort();
    slack_msg_fini(&m);
    return 0;
}
