/*
 * libFuzzer harness for the configuration parser: the input is a whole configuration file.
 * conf_load_buffer() is pure, so every input is judged alone whatever the environment holds.
 * A configuration that loads is resolved too, with a fake environment of fixed values, when it
 * names no file (a fuzzed path must not make the harness read this machine's files). Secrets
 * registered by conf_resolve() are forgotten after each input so that memory does not grow
 * across runs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every variable is set: URLs where the name asks for one, a token elsewhere. */
static const char *fake_get(void *ctx, const char *name)
{
    (void)ctx;
    if (strcmp(name, "YTBRIDGE_YOUTRACK_URL") == 0)
        return "https://yt.example.com/";
    if (strstr(name, "URL"))
        return "https://hooks.example.com/services/T0/B0/fuzz";
    return "xapp-fuzz-not-a-secret";
}

/* Whether conf_resolve() would read a file of this machine. */
static int names_a_file(const struct conf *conf)
{
    if (conf->youtrack.ca_file || conf->cluster.ca_file || conf->cluster.cert_file ||
        conf->cluster.key_file)
        return 1;
    for (size_t i = 0; i < conf->n_secrets; i++) {
        if (conf->secrets[i].from == CONF_SECRET_FILE)
            return 1;
    }
    return 0;
}

static void diags_format(const struct conf_diags *diags)
{
    char line[1200];

    for (size_t i = 0; i < diags->n; i++)
        conf_diag_format(&diags->v[i], line, sizeof(line));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct conf_env env = {.get = fake_get};
    struct conf_diags diags = {0};
    struct conf *conf = NULL;

    conf_load_buffer((const char *)data, size, "fuzz.conf", &conf, &diags);
    diags_format(&diags);
    if (conf && !names_a_file(conf)) {
        conf_resolve(conf, &env, &diags);
        diags_format(&diags);
    }
    conf_free(conf);
    conf_diags_fini(&diags);
    log_clear_secrets();
    return 0;
}
