/* Unit tests for project lists and the diff with its guards (bridge/project.c). */
#include "project.h"
#include "test.h"

static void add(struct project_list *l, const char *id, const char *key, const char *name,
                int archived)
{
    struct project p = {
        .id = id, .short_name = key, .name = name, .archived = (signed char)archived};
    CHECK_INT(project_list_add(l, &p), 0);
}

static struct diff_opts opts(int confirmations, int limit)
{
    return (struct diff_opts){
        .removal_confirmations = confirmations, .mass_removal_limit = limit, .now = 1000};
}

/* Diffs saved against fetched; fetched is finished here. The caller frees both and d. */
static void run_diff(const struct project_list *saved, struct project_list *fetched,
                     struct diff_opts o, struct diff *d)
{
    project_list_finish(fetched);
    CHECK_INT(project_diff(saved, fetched, &o, d), 0);
}

/* Replaces saved by d->next, as the daemon does after a successful commit. */
static void adopt_next(struct project_list *saved, struct diff *d)
{
    project_list_fini(saved);
    *saved = d->next;
    project_list_init(&d->next);
    diff_fini(d);
}

static void test_id_order(void)
{
    CHECK(project_id_cmp("0-2", "0-10") < 0);
    CHECK(project_id_cmp("0-10", "0-2") > 0);
    CHECK(project_id_cmp("0-10", "0-10") == 0);
    CHECK(project_id_cmp("1-0", "0-99") > 0);
    CHECK(project_id_cmp("0-02", "0-2") != 0);
    CHECK(project_id_cmp("0-02", "0-2") == -project_id_cmp("0-2", "0-02"));
    CHECK(project_id_cmp("ABC", "ABD") < 0);
    CHECK(project_id_cmp("AB", "ABC") < 0);
    CHECK(project_id_cmp("", "A") < 0);
}

static void test_finish_dedups_keeping_first(void)
{
    struct project_list l = {0};
    add(&l, "0-10", "TEN", "first", TRI_NO);
    add(&l, "0-2", "TWO", "two", TRI_NO);
    add(&l, "0-10", "TEN", "second", TRI_NO);
    CHECK_INT(project_list_finish(&l), 1);
    CHECK_INT(l.n, 2);
    CHECK_STR(l.v[0].id, "0-2");
    CHECK_STR(l.v[1].name, "first");
    CHECK(project_list_find(&l, "0-10") == &l.v[1]);
    CHECK(project_list_find(&l, "0-3") == NULL);
    project_list_fini(&l);
}

static void test_every_change_kind(void)
{
    struct project_list saved = {0}, fetched = {0};
    struct diff d;

    add(&saved, "0-1", "DEV", "Development", TRI_NO);
    add(&saved, "0-2", "DOCS", "Docs", TRI_NO);
    add(&saved, "0-3", "OPS", "Operations", TRI_YES);
    add(&saved, "0-4", "WEB", "Web", TRI_NO);
    add(&saved, "0-5", "OLD", "Old", TRI_NO);
    project_list_finish(&saved);
    saved.v[4].missing = 1; /* 0-5 was already missing once */

    add(&fetched, "0-1", "DEV", "Development", TRI_NO);    /* unchanged */
    add(&fetched, "0-2", "DOC", "Documentation", TRI_YES); /* renamed + archived */
    add(&fetched, "0-3", "OPS", "Operations", TRI_NO);     /* unarchived */
    add(&fetched, "0-4", "WEB", "Web", TRI_NO);
    add(&fetched, "0-10", "NEW", "New", TRI_NO); /* created */
    run_diff(&saved, &fetched, opts(2, 10), &d);

    CHECK_INT(d.n_changes, 5);
    CHECK_INT(d.changes[0].kind, CHANGE_RENAMED);
    CHECK_STR(d.changes[0].before->short_name, "DOCS");
    CHECK_STR(d.changes[0].after->short_name, "DOC");
    CHECK_STR(d.changes[0].after->name, "Documentation");
    CHECK_INT(d.changes[1].kind, CHANGE_ARCHIVED);
    CHECK_STR(d.changes[1].after->id, "0-2");
    CHECK_INT(d.changes[2].kind, CHANGE_UNARCHIVED);
    CHECK_STR(d.changes[2].after->id, "0-3");
    CHECK_INT(d.changes[3].kind, CHANGE_REMOVED);
    CHECK_STR(d.changes[3].before->id, "0-5");
    CHECK(d.changes[3].after == NULL);
    CHECK_INT(d.changes[4].kind, CHANGE_CREATED);
    CHECK(d.changes[4].before == NULL);
    CHECK_STR(d.changes[4].after->id, "0-10");
    CHECK_INT(d.changes[4].after->first_seen, 1000);
    CHECK_INT(d.next.n, 5);
    CHECK(project_list_find(&d.next, "0-5") == NULL);
    diff_fini(&d);
    project_list_fini(&fetched);
    project_list_fini(&saved);
}

static void test_legacy_key_rename_is_remove_and_create(void)
{
    /* The legacy API keys on the short name: a rename there cannot be told from remove+create. */
    struct project_list saved = {0}, fetched = {0};
    struct diff d;
    add(&saved, "DEV", "DEV", "Dev", TRI_UNKNOWN);
    add(&saved, "A", "A", "a", TRI_UNKNOWN);
    add(&saved, "B", "B", "b", TRI_UNKNOWN);
    project_list_finish(&saved);
    add(&fetched, "DEVX", "DEVX", "Dev", TRI_UNKNOWN);
    add(&fetched, "A", "A", "a", TRI_UNKNOWN);
    add(&fetched, "B", "B", "b", TRI_UNKNOWN);
    run_diff(&saved, &fetched, opts(1, 10), &d);
    CHECK_INT(d.n_changes, 2);
    CHECK_INT(d.changes[0].kind, CHANGE_REMOVED);
    CHECK_STR(d.changes[0].before->id, "DEV");
    CHECK_INT(d.changes[1].kind, CHANGE_CREATED);
    CHECK_STR(d.changes[1].after->id, "DEVX");
    diff_fini(&d);
    project_list_fini(&fetched);
    project_list_fini(&saved);
}

static void test_unknown_fields_are_not_changes(void)
{
    struct project_list saved = {0}, fetched = {0};
    struct diff d;
    add(&saved, "0-1", "DEV", "Dev", TRI_YES);
    project_list_finish(&saved);
    add(&fetched, "0-1", "DEV", NULL, TRI_UNKNOWN); /* a low-privilege view: no archived, no name */
    run_diff(&saved, &fetched, opts(2, 10), &d);
    CHECK_INT(d.n_changes, 0);
    CHECK_INT(d.next.v[0].archived, TRI_YES); /* the last known value stands */
    CHECK_STR(d.next.v[0].name, "Dev");
    diff_fini(&d);
    project_list_fini(&fetched);
    project_list_fini(&saved);
}

static void test_removal_needs_confirmations(void)
{
    struct project_list saved = {0}, fetched;
    struct diff d;
    for (int i = 0; i < 6; i++) {
        char id[8];
        snprintf(id, sizeof(id), "0-%d", i);
        add(&saved, id, id, id, TRI_NO);
    }
    project_list_finish(&saved);

    for (int poll = 1; poll <= 3; poll++) {
        project_list_init(&fetched);
        for (int i = 0; i < 5; i++) { /* 0-5 is gone */
            char id[8];
            snprintf(id, sizeof(id), "0-%d", i);
            add(&fetched, id, id, id, TRI_NO);
        }
        run_diff(&saved, &fetched, opts(3, 10), &d);
        if (poll < 3) {
            CHECK_INT(d.n_changes, 0);
            CHECK_INT(d.n_pending, 1);
            CHECK_INT(project_list_find(&d.next, "0-5")->missing, poll);
        } else {
            CHECK_INT(d.n_changes, 1);
            CHECK_INT(d.changes[0].kind, CHANGE_REMOVED);
            CHECK_INT(d.n_pending, 0);
            CHECK(project_list_find(&d.next, "0-5") == NULL);
        }
        project_list_fini(&fetched);
        adopt_next(&saved, &d);
    }
    project_list_fini(&saved);
}

static void test_reappearing_before_confirmation_is_silent(void)
{
    struct project_list saved = {0}, fetched = {0};
    struct diff d;
    add(&saved, "0-1", "A", "a", TRI_NO);
    add(&saved, "0-2", "B", "b", TRI_NO);
    project_list_finish(&saved);
    saved.v[1].missing = 1;
    add(&fetched, "0-1", "A", "a", TRI_NO);
    add(&fetched, "0-2", "B", "b", TRI_NO);
    run_diff(&saved, &fetched, opts(2, 10), &d);
    CHECK_INT(d.n_changes, 0);
    CHECK_INT(d.n_reappeared, 1);
    CHECK_INT(d.next.v[1].missing, 0);
    diff_fini(&d);
    project_list_fini(&fetched);
    project_list_fini(&saved);
}

static void make_list(struct project_list *l, int from, int to)
{
    project_list_init(l);
    for (int i = from; i < to; i++) {
        char id[16];
        snprintf(id, sizeof(id), "0-%d", i);
        add(l, id, id, id, TRI_NO);
    }
    project_list_finish(l);
}

static void test_mass_removal_over_limit_is_held(void)
{
    struct project_list saved, fetched;
    struct diff d;
    make_list(&saved, 0, 40);
    make_list(&fetched, 0, 28); /* 12 vanish, limit 10 */
    CHECK_INT(project_diff(&saved, &fetched, &(struct diff_opts){1, 10, 0, 5}, &d), 0);
    CHECK_INT(d.n_changes, 0);
    CHECK_INT(d.n_held_new, 12);
    CHECK_INT(d.n_held, 12);
    CHECK_INT(d.next.n, 40);
    project_list_fini(&fetched);
    adopt_next(&saved, &d);

    /* Still missing next poll: stays held, no second alert. */
    make_list(&fetched, 0, 28);
    CHECK_INT(project_diff(&saved, &fetched, &(struct diff_opts){1, 10, 0, 5}, &d), 0);
    CHECK_INT(d.n_changes, 0);
    CHECK_INT(d.n_held_new, 0);
    CHECK_INT(d.n_held, 12);
    project_list_fini(&fetched);
    adopt_next(&saved, &d);

    /* The operator accepts: all twelve are reported removed, once. */
    make_list(&fetched, 0, 28);
    CHECK_INT(project_diff(&saved, &fetched, &(struct diff_opts){1, 10, 1, 5}, &d), 0);
    CHECK_INT(d.n_changes, 12);
    for (size_t i = 0; i < d.n_changes; i++)
        CHECK_INT(d.changes[i].kind, CHANGE_REMOVED);
    CHECK_STR(d.changes[0].before->id, "0-28");
    CHECK_STR(d.changes[11].before->id, "0-39");
    CHECK_INT(d.n_held, 0);
    CHECK_INT(d.next.n, 28);
    project_list_fini(&fetched);
    adopt_next(&saved, &d);
    project_list_fini(&saved);
}

static void test_held_projects_that_return_are_released(void)
{
    struct project_list saved, fetched;
    struct diff d;
    make_list(&saved, 0, 4);
    make_list(&fetched, 0, 0); /* an empty answer: a role-less token */
    CHECK_INT(project_diff(&saved, &fetched, &(struct diff_opts){1, 10, 0, 5}, &d), 0);
    CHECK_INT(d.n_changes, 0);
    CHECK_INT(d.n_held_new, 4); /* over half the list */
    project_list_fini(&fetched);
    adopt_next(&saved, &d);

    make_list(&fetched, 0, 4);
    CHECK_INT(project_diff(&saved, &fetched, &(struct diff_opts){1, 10, 0, 5}, &d), 0);
    CHECK_INT(d.n_changes, 0);
    CHECK_INT(d.n_held, 0);
    CHECK_INT(d.n_reappeared, 4);
    project_list_fini(&fetched);
    adopt_next(&saved, &d);
    project_list_fini(&saved);
}

static void test_half_the_list_is_held_but_half_is_not(void)
{
    struct project_list saved, fetched;
    struct diff d;
    make_list(&saved, 0, 4);
    make_list(&fetched, 0, 2); /* exactly half: announced */
    CHECK_INT(project_diff(&saved, &fetched, &(struct diff_opts){1, 10, 0, 5}, &d), 0);
    CHECK_INT(d.n_changes, 2);
    CHECK_INT(d.n_held_new, 0);
    diff_fini(&d);
    project_list_fini(&fetched);

    make_list(&fetched, 0, 1); /* three of four: held */
    CHECK_INT(project_diff(&saved, &fetched, &(struct diff_opts){1, 10, 0, 5}, &d), 0);
    CHECK_INT(d.n_changes, 0);
    CHECK_INT(d.n_held_new, 3);
    diff_fini(&d);
    project_list_fini(&fetched);
    project_list_fini(&saved);
}

static void test_created_and_removed_in_one_poll_with_zero_limit(void)
{
    struct project_list saved, fetched;
    struct diff d;
    make_list(&saved, 0, 10);
    make_list(&fetched, 1, 11);
    /* mass_removal_limit = 0: every removal waits for the operator. */
    CHECK_INT(project_diff(&saved, &fetched, &(struct diff_opts){1, 0, 0, 5}, &d), 0);
    CHECK_INT(d.n_changes, 1);
    CHECK_INT(d.changes[0].kind, CHANGE_CREATED);
    CHECK_INT(d.n_held_new, 1);
    diff_fini(&d);
    project_list_fini(&fetched);
    project_list_fini(&saved);
}

static void test_ids_duplicate(void)
{
    const char *none[] = {"0-10", "0-2", "0-1", "0-02"};
    const char *two[] = {"0-1", "0-2", "0-3", "0-2"};
    const char *one[] = {"0-1"};

    CHECK(project_ids_duplicate(none, 4) == NULL); /* "0-02" and "0-2" are different ids */
    CHECK_STR(project_ids_duplicate(two, 4), "0-2");
    CHECK(project_ids_duplicate(one, 1) == NULL);
    CHECK(project_ids_duplicate(NULL, 0) == NULL);
}

/* A project's page: the id is one path segment whatever it holds; legacy links by short name. */
static void test_page_urls(void)
{
    struct project p = {.id = "0-7", .short_name = "GRP"};
    char *u = project_page_url("https://yt.example/youtrack", YOUTRACK_MODERN, &p);
    CHECK_STR(u, "https://yt.example/youtrack/projects/0-7");
    free(u);
    struct project q = {.id = "My Project/../x?y#z", .short_name = "My Project"};
    u = project_page_url("https://yt.example", YOUTRACK_LEGACY, &q);
    CHECK_STR(u, "https://yt.example/issues/My%20Project%2F..%2Fx%3Fy%23z");
    free(u);
    u = project_page_url(NULL, YOUTRACK_UNKNOWN, &p);
    CHECK_STR(u, "/projects/0-7");
    free(u);
}

int main(void)
{
    RUN(test_id_order);
    RUN(test_finish_dedups_keeping_first);
    RUN(test_every_change_kind);
    RUN(test_legacy_key_rename_is_remove_and_create);
    RUN(test_unknown_fields_are_not_changes);
    RUN(test_removal_needs_confirmations);
    RUN(test_reappearing_before_confirmation_is_silent);
    RUN(test_mass_removal_over_limit_is_held);
    RUN(test_held_projects_that_return_are_released);
    RUN(test_half_the_list_is_held_but_half_is_not);
    RUN(test_created_and_removed_in_one_poll_with_zero_limit);
    RUN(test_ids_duplicate);
    RUN(test_page_urls);
    return test_done();
}
