/*
 * Fuzz harness: etcd's answers as the client reads them (bridge/etcd.h), on any bytes. The
 * first byte picks the HTTP status the body came with; the rest goes through etcd_answer(),
 * then, when that took it as etcd's JSON, through every answer piece (header revision, kvs of a
 * range and of a txn's responses, the lease fields, "succeeded"). The same bytes are also read
 * as base64: whatever decodes must encode and decode back to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void kvs(const json_t *range)
{
    struct etcd_kv *v = NULL;
    size_t n = 0;

    if (etcd_kvs(range, &v, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!v[i].key || !v[i].value || v[i].key[v[i].key_len] || v[i].value[v[i].value_len])
            abort();
    }
    etcd_kvs_free(v, n);
}

static void answer(long status, const char *body, size_t len)
{
    struct etcd_reply r;
    enum etcd_verdict v = etcd_answer(status, body, len, &r);

    if (v != ETCD_VERDICT_DONE && v != ETCD_VERDICT_NEXT && v != ETCD_VERDICT_REAUTH)
        abort();
    if (!memchr(r.message, '\0', sizeof(r.message)) || (r.error == 0) != (r.body != NULL))
        abort();
    if (r.body) {
        const json_t *responses = json_object_get(r.body, "responses");
        kvs(r.body);
        for (size_t i = 0; i < json_array_size(responses); i++)
            kvs(json_object_get(json_array_get(responses, i), "response_range"));
        (void)etcd_int(json_object_get(r.body, "result"), "TTL");
        (void)etcd_int(r.body, "ID");
        (void)etcd_txn_succeeded(r.body);
    }
    etcd_reply_fini(&r);
}

static void base64(const char *s, size_t len)
{
    char *raw = NULL, *again = NULL, *enc;
    size_t n = 0, m = 0;

    if (etcd_unbase64(s, len, &raw, &n) != 0)
        return;
    enc = etcd_base64(raw, n);
    if (!enc || strlen(enc) != len || etcd_unbase64(enc, strlen(enc), &again, &m) != 0 || m != n ||
        memcmp(raw, again, n) != 0)
        abort();
    free(raw);
    free(again);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long status[] = {200, 400, 401, 404, 412, 429, 500, 503};

    if (size == 0)
        return 0;
    answer(status[data[0] % 8], (const char *)data + 1, size - 1);
    base64((const char *)data + 1, size - 1);
    return 0;
}
