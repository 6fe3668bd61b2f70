/* Fuzz harness: the YouTrack project-list parsers (modern and legacy bodies) on any bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "project.h"
#include "youtrack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct project_list l;
    char err[256];
    const char *body = (const char *)data;

    project_list_init(&l);
    if (youtrack_parse_projects(body, size, &l, err, sizeof(err)) >= 0) {
        project_list_finish(&l);
        for (size_t i = 0; i < l.n; i++) {
            /* Every parsed project has an id; its link must be buildable. */
            if (!l.v[i].id)
                abort();
            free(project_page_url("https://yt.example", YOUTRACK_MODERN, &l.v[i]));
        }
    }
    project_list_fini(&l);

    project_list_init(&l);
    if (youtrack_parse_legacy_list(body, size, &l, err, sizeof(err)) >= 0) {
        project_list_finish(&l);
        youtrack_parse_legacy_names(body, size, &l, err, sizeof(err));
    }
    project_list_fini(&l);
    return 0;
}
