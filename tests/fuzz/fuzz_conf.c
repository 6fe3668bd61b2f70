/*
 * libFuzzer harness for the configuration parser: the input is a whole configuration file.
 * Secrets registered while loading are forgotten after each input so that memory does not grow
 * across runs; the environment overrides are cleared once so that every input is judged alone.
 */
#include <stdint.h>
#include <stdlib.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    struct conf_diags diags = {0};
    struct conf *conf = NULL;
    char line[1200];

    if (!ready) {
        unsetenv("YTBRIDGE_YOUTRACK_URL");
        unsetenv("YTBRIDGE_YOUTRACK_TOKEN");
        log_setup(LOGL_ERR, LOG_FORMAT_TEXT); /* the token file mode warning is noise here */
        ready = 1;
    }
    conf_load_buffer((const char *)data, size, "fuzz.conf", &conf, &diags);
    for (size_t i = 0; i < diags.n; i++)
        conf_diag_format(&diags.v[i], line, sizeof(line));
    conf_free(conf);
    conf_diags_fini(&diags);
    log_clear_secrets();
    return 0;
}
