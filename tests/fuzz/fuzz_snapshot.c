/* Fuzz harness: the state directory's snapshot.json parser on any bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "state_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct snapshot s;
    char err[256];

    if (state_parse_snapshot((const char *)data, size, &s, err, sizeof(err)) == 0) {
        /* A parsed snapshot is a finished list: sorted, unique ids. */
        for (size_t i = 1; i < s.projects.n; i++) {
            if (project_id_cmp(s.projects.v[i - 1].id, s.projects.v[i].id) >= 0)
                abort();
        }
        snapshot_fini(&s);
    }
    return 0;
}
