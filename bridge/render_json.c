/*
 * The JSON targets of render(): stdout's json lines and the generic webhook's body (README.md,
 * "The generic webhook"). Untrusted text goes into JSON strings only through jstr(), which keeps
 * what jansson would refuse (invalid UTF-8) as U+FFFD; jansson does all the escaping.
 */
#include "render_json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8.h"

/* Changes a JSON digest (stdout json, webhook) lists; "omitted" counts the rest. A bound keeps a
 * mass change (a million projects) from becoming one line of hundreds of MB: at most ~300 KB. */
#define JSON_DIGEST_MAX 1000

char *render_json_dump(json_t *o, int err)
{
    char *s = NULL;
    if (o && !err)
        s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* ---- JSON helpers ---- */

/* A JSON string of untrusted text, null for NULL; NULL on ENOMEM. */
static json_t *jstr(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    if (j)
        return j;
    /* jansson refuses invalid UTF-8: keep what can be kept. */
    char *fixed = utf8_repair(s, strlen(s));
    if (!fixed)
        return NULL;
    j = json_string(fixed);
    free(fixed);
    return j;
}

/* Sets o[key] = v, stealing v; a NULL v or o records ENOMEM in *err. */
static void jset(int *err, json_t *o, const char *key, json_t *v)
{
    if (!v || !o || json_object_set_new(o, key, v) != 0)
        *err = 1;
}

static json_t *jtri(signed char t)
{
    return t == TRI_UNKNOWN ? json_null() : json_boolean(t == TRI_YES);
}

/* ---- RENDER_JSON (stdout) ---- */

/* {"id","shortName","name","archived","url"}: the stdout shape integration tests read. */
static json_t *stdout_project(int *err, const struct message *m, const struct project *p)
{
    json_t *o = json_object();
    char *url = project_page_url(m->service_url, m->flavour, p);
    jset(err, o, "id", jstr(p->id));
    jset(err, o, "shortName", jstr(p->short_name));
    jset(err, o, "name", jstr(p->name));
    jset(err, o, "archived", jtri(p->archived));
    jset(err, o, "url", url ? jstr(url) : NULL);
    free(url);
    return o;
}

/* How many changes a JSON digest lists (JSON_DIGEST_MAX). */
static size_t digest_listed_json(const struct message *m)
{
    return m->n_changes < JSON_DIGEST_MAX ? m->n_changes : JSON_DIGEST_MAX;
}

static json_t *stdout_change(int *err, const struct message *m, const struct change *c)
{
    json_t *o = json_object();
    jset(err, o, "event", json_string(message_event_name(&(struct message){.change = c})));
    jset(err, o, "project", stdout_project(err, m, c->after ? c->after : c->before));
    if (c->before)
        jset(err, o, "previous", stdout_project(err, m, c->before));
    return o;
}

char *render_json_stdout(const struct message *m)
{
    json_t *o = json_object();
    int err = 0;

    switch (m->kind) {
    case MESSAGE_BASELINE:
        jset(&err, o, "event", json_string("baseline"));
        jset(&err, o, "count", json_integer((json_int_t)m->count));
        jset(&err, o, "youtrack", jstr(m->service_url));
        break;
    case MESSAGE_ALERT:
        jset(&err, o, "event", json_string("alert"));
        jset(&err, o, "kind", jstr(m->alert));
        jset(&err, o, "count", json_integer((json_int_t)m->count));
        jset(&err, o, "message", jstr(m->text));
        break;
    case MESSAGE_CHANGE:
        json_decref(o);
        o = stdout_change(&err, m, m->change);
        break;
    case MESSAGE_DIGEST: {
        json_t *a = json_array();
        size_t listed = digest_listed_json(m);
        jset(&err, o, "event", json_string("digest"));
        jset(&err, o, "count", json_integer((json_int_t)m->n_changes));
        for (size_t i = 0; i < listed && !err; i++)
            if (json_array_append_new(a, stdout_change(&err, m, m->digest[i])) != 0)
                err = 1;
        jset(&err, o, "changes", a);
        jset(&err, o, "omitted", json_integer((json_int_t)(m->n_changes - listed)));
        break;
    }
    }
    return render_json_dump(o, err);
}

/* ---- RENDER_WEBHOOK ---- */

static json_t *webhook_project(int *err, const struct message *m, const struct project *p)
{
    json_t *o = json_object();
    char *url = project_page_url(m->service_url, m->flavour, p);
    jset(err, o, "id", jstr(p->id));
    jset(err, o, "shortName", jstr(p->short_name));
    jset(err, o, "name", jstr(p->name));
    jset(err, o, "archived", jtri(p->archived));
    jset(err, o, "description", jstr(p->description));
    if (p->leader_login || p->leader_name) {
        json_t *l = json_object();
        jset(err, l, "login", jstr(p->leader_login));
        jset(err, l, "name", jstr(p->leader_name));
        jset(err, o, "leader", l);
    } else {
        jset(err, o, "leader", json_null());
    }
    jset(err, o, "url", url ? jstr(url) : NULL);
    free(url);
    return o;
}

/* Into o: "project" (the current values; the last known ones for a removal) and "previous"
 * (the values before a rename, archive or unarchive). */
static void webhook_change(int *err, json_t *o, const struct message *m, const struct change *c)
{
    if (c->after) {
        jset(err, o, "project", webhook_project(err, m, c->after));
        if (c->before)
            jset(err, o, "previous", webhook_project(err, m, c->before));
    } else if (c->before) {
        jset(err, o, "project", webhook_project(err, m, c->before));
    }
}

char *render_json_webhook(const struct message *m)
{
    json_t *o = json_object();
    int err = 0;
    char when[32];
    struct tm tm;
    time_t t = (time_t)m->occurred_at;

    jset(&err, o, "id", jstr(m->id));
    jset(&err, o, "event", json_string(message_event_name(m)));
    if (gmtime_r(&t, &tm) && strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0)
        jset(&err, o, "occurred_at", json_string(when));
    else
        jset(&err, o, "occurred_at", json_null());
    jset(&err, o, "youtrack", jstr(m->service_url));

    switch (m->kind) {
    case MESSAGE_CHANGE:
        webhook_change(&err, o, m, m->change);
        break;
    case MESSAGE_DIGEST: {
        json_t *a = json_array();
        size_t listed = digest_listed_json(m);
        jset(&err, o, "count", json_integer((json_int_t)m->n_changes));
        jset(&err, o, "omitted", json_integer((json_int_t)(m->n_changes - listed)));
        for (size_t i = 0; i < listed && !err; i++) {
            const struct change *c = m->digest[i];
            json_t *e = json_object();
            jset(&err, e, "event", json_string(message_event_name(&(struct message){.change = c})));
            webhook_change(&err, e, m, c);
            if (json_array_append_new(a, e) != 0)
                err = 1;
        }
        jset(&err, o, "changes", a);
        break;
    }
    case MESSAGE_BASELINE:
        jset(&err, o, "count", json_integer((json_int_t)m->count));
        break;
    case MESSAGE_ALERT:
        jset(&err, o, "kind", jstr(m->alert));
        jset(&err, o, "count", json_integer((json_int_t)m->count));
        jset(&err, o, "message", jstr(m->text));
        break;
    }
    return render_json_dump(o, err);
}
