#!/usr/bin/env python3
"""Polling the modern /api and announcing every kind of change."""

import copy
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_PROJECTS, TOKEN, BridgeTest, deadline_wait, main,  # noqa: E402
                     many_projects, natural_key, project)

FIELDS = {'id', 'shortName', 'name', 'archived', 'description',
          'leader(login,name)'}

BASE = [
    project('0-1', 'DEV', 'DEVELOPMENT'),
    project('0-2', 'DOCS', 'Docs'),
    project('0-9', 'OLD', 'Old stuff', archived=True),
    project('0-3', 'WEB', 'Website'),
]


def changed(base, pid, **attrs):
    out = copy.deepcopy(base)
    for p in out:
        if p['id'] == pid:
            p.update(attrs)
    return out


# name -> (new list, expected [(event, id, shortName, name, previous)]),
# previous = {key: old value} that must appear in "previous" (None: no check).
CHANGE_CASES = {
    'created': (
        BASE + [project('0-5', 'NEW', 'Brand new')],
        [('project.created', '0-5', 'NEW', 'Brand new', None)]),
    'renamed_name': (
        changed(BASE, '0-2', name='Documentation'),
        [('project.renamed', '0-2', 'DOCS', 'Documentation',
          {'name': 'Docs', 'shortName': 'DOCS'})]),
    'renamed_short_name': (
        changed(BASE, '0-2', shortName='DOC'),
        [('project.renamed', '0-2', 'DOC', 'Docs',
          {'name': 'Docs', 'shortName': 'DOCS'})]),
    'renamed_both': (
        changed(BASE, '0-1', shortName='ENG', name='Engineering'),
        [('project.renamed', '0-1', 'ENG', 'Engineering',
          {'name': 'DEVELOPMENT', 'shortName': 'DEV'})]),
    'archived': (
        changed(BASE, '0-3', archived=True),
        [('project.archived', '0-3', 'WEB', 'Website', {'archived': False})]),
    'unarchived': (
        changed(BASE, '0-9', archived=False),
        [('project.unarchived', '0-9', 'OLD', 'Old stuff',
          {'archived': True})]),
    'renamed_then_archived': (
        changed(BASE, '0-3', name='Web site', archived=True),
        [('project.renamed', '0-3', 'WEB', 'Web site', {'name': 'Website'}),
         ('project.archived', '0-3', 'WEB', 'Web site', {'archived': False})]),
    'renamed_then_unarchived': (
        changed(BASE, '0-9', shortName='LEGACY', archived=False),
        [('project.renamed', '0-9', 'LEGACY', 'Old stuff',
          {'shortName': 'OLD'}),
         ('project.unarchived', '0-9', 'LEGACY', 'Old stuff',
          {'archived': True})]),
    'several_sorted_by_id': (
        changed(changed(BASE, '0-9', archived=False), '0-2', name='D2')
        + [project('0-10', 'TEN', 'Ten'), project('0-4', 'FOUR', 'Four')],
        [('project.renamed', '0-2', 'DOCS', 'D2', {'name': 'Docs'}),
         ('project.created', '0-4', 'FOUR', 'Four', None),
         ('project.unarchived', '0-9', 'OLD', 'Old stuff', None),
         ('project.created', '0-10', 'TEN', 'Ten', None)]),
    'description_and_leader_are_not_events': (
        changed(BASE, '0-1', description='now described', leader=None),
        []),
    'reordered_list_is_not_a_change': (
        list(reversed(BASE)),
        []),
}


class FirstRun(BridgeTest):

    def test_announce_all_sorted_with_full_shape(self):
        result = self.assert_ok(self.bridge.once())
        self.assert_events(result, [
            ('project.created', '0-0', 'DEMO', 'Демопроект'),
            ('project.created', '0-1', 'DEV', 'DEVELOPMENT'),
            ('project.created', '0-2', 'DOCS', 'DOCS'),
        ])
        for ev in result.messages:
            p = ev['project']
            self.assertEqual(set(p), {'id', 'shortName', 'name', 'archived',
                                      'url'}, ev)
            self.assertIs(p['archived'], False)
            self.assertEqual(p['url'], self.fake.url + '/projects/' + p['id'])
            self.assertNotIn('previous', ev)
        snap = self.bridge.snapshot()
        self.assertIsInstance(snap, dict)
        self.assertEqual(snap.get('format'), 1)
        self.assertEqual(sorted(p['id'] for p in snap['projects']),
                         ['0-0', '0-1', '0-2'])

    def test_baseline_is_one_message_then_changes_flow(self):
        self.bridge.configure(first_run='baseline')
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(result.messages, [{'event': 'baseline', 'count': 3,
                           'youtrack': self.fake.url}])
        self.fake.set_projects(DEFAULT_PROJECTS
                               + [project('0-7', 'SEVEN', 'Seven')])
        result = self.assert_ok(self.bridge.once())
        self.assert_events(result, [('project.created', '0-7', 'SEVEN',
                                     'Seven')])

    def test_one_project_is_one_project_in_the_log(self):
        self.fake.set_projects([project('0-1', 'DEV', 'Development')])
        self.bridge.configure(first_run='baseline')
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(result.messages, [{'event': 'baseline', 'count': 1,
                                            'youtrack': self.fake.url}])
        self.check('now tracking 1 project (baseline' in result.stderr,
                   'no "now tracking 1 project" line', result)
        self.check('poll complete: 1 project, 1 request,' in result.stderr,
                   'no "poll complete: 1 project" line', result)
        result = self.assert_ok(self.bridge.once())
        self.check('loaded snapshot: 1 project from' in result.stderr,
                   'no "loaded snapshot: 1 project" line', result)
        self.check(' 1 projects' not in result.stderr, 'a "1 projects" line', result)

    def test_second_poll_without_changes_is_quiet(self):
        self.assert_ok(self.bridge.once())
        saved = self.bridge.snapshot_bytes()
        saved_at = self.bridge.snapshot()['saved_at']
        for _ in range(2):
            # saved_at has a 1 s resolution: from the next second on, a rewrite would carry
            # a new one (and so differ).
            deadline_wait(lambda: time.time() >= saved_at + 1, 2, what='the next second')
            self.assert_quiet(self.assert_ok(self.bridge.once()))
        # Nothing changed, so nothing was written (25 MB per poll at 100,000 projects).
        self.assertEqual(self.bridge.snapshot_bytes(), saved)
        # A change of a field that is never announced (the description) is remembered.
        self.fake.set_projects([dict(p, description='new words') if p['id'] == '0-1' else p
                                for p in DEFAULT_PROJECTS])
        self.assert_quiet(self.assert_ok(self.bridge.once()))
        self.assertNotEqual(self.bridge.snapshot_bytes(), saved)

    def test_natural_id_order(self):
        ids = ['0-10', '1-2', '0-2', '0-100', '0-9', '0-1']
        self.fake.set_projects([project(i, 'S' + i.replace('-', '_'))
                                for i in ids])
        result = self.assert_ok(self.bridge.once())
        got = [e['project']['id'] for e in result.events]
        self.assertEqual(got, sorted(ids, key=natural_key))
        self.assertEqual(got, ['0-1', '0-2', '0-9', '0-10', '0-100', '1-2'])

    def test_null_and_unicode_values_survive(self):
        weird = [project('0-1', 'ÄÖ', 'Проект <b>&"x"</b> \U0001F680',
                         description=None, leader=None)]
        self.fake.set_projects(weird)
        result = self.assert_ok(self.bridge.once())
        self.assert_events(result, [('project.created', '0-1', 'ÄÖ',
                                     'Проект <b>&"x"</b> \U0001F680')])


class Requests(BridgeTest):

    def api_requests(self):
        return [r for r in self.fake.requests()
                if r['path'] == '/api/admin/projects']

    def test_request_shape_and_paging(self):
        self.assert_ok(self.bridge.once())
        reqs = self.api_requests()
        self.assertTrue(reqs, 'no request to /api/admin/projects')
        skips = []
        for r in reqs:
            q = urllib.parse.parse_qs(r['query'], keep_blank_values=True)
            self.assertEqual(_split_fields(q['fields'][0]), FIELDS)
            self.assertEqual(q.get('$top'), ['2'])
            skips.append(int(q.get('$skip', ['0'])[0]))
            h = {k.lower(): v for k, v in r['headers'].items()}
            # compared, never printed
            self.assertTrue(h.get('authorization') == 'Bearer ' + TOKEN,
                            'Authorization is not "Bearer <token>"')
            self.assertIn('application/json', h.get('accept', ''))
            self.assertIn('gzip', h.get('accept-encoding', ''))
        # 3 projects, page size 2: a full page, then a short one; no more.
        self.assertEqual(skips, [0, 2])
        self.assertFalse([r for r in self.fake.requests()
                          if r['path'].startswith('/rest')],
                         'fell back to /rest although /api works')

    def test_exact_multiple_of_page_size_reads_the_empty_page(self):
        self.fake.set_projects(many_projects(4))
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(len(result.events), 4)
        skips = [int(urllib.parse.parse_qs(r['query']).get('$skip', ['0'])[0])
                 for r in self.api_requests()]
        self.assertEqual(skips, [0, 2, 4])

    def test_more_than_42_projects_are_all_seen(self):
        for page_size in (200, 7):
            with self.subTest(page_size=page_size):
                self.bridge.configure(page_size=page_size)
                self.fake.set_projects(many_projects(100))
                for name in os.listdir(self.bridge.state_dir):
                    os.unlink(os.path.join(self.bridge.state_dir, name))
                result = self.assert_ok(self.bridge.once())
                self.assertEqual(len(result.events), 100)
                self.assertEqual(len({e['project']['id']
                                      for e in result.events}), 100)

    def test_overlapping_pages_are_deduplicated(self):
        # Between pages a project appears in front, so each later page
        # repeats the last item of the previous one.
        self.fake.set_projects(many_projects(5))
        self.fake.fault('shift')
        result = self.assert_ok(self.bridge.once())
        ids = [e['project']['id'] for e in result.events]
        self.assertEqual(ids, ['0-1', '0-2', '0-3', '0-4', '0-5'])
        self.fake.clear_fault()
        self.assert_quiet(self.assert_ok(self.bridge.once()))


class Changes(BridgeTest):

    def test_change_cases(self):
        for name, (new_list, expected) in CHANGE_CASES.items():
            with self.subTest(case=name):
                for f in os.listdir(self.bridge.state_dir):
                    os.unlink(os.path.join(self.bridge.state_dir, f))
                self.baseline(BASE)
                self.fake.set_projects(new_list)
                result = self.assert_ok(self.bridge.once())
                self.assert_events(result, [e[:4] for e in expected])
                for ev, (_, pid, _, _, prev) in zip(result.events, expected):
                    self.assertEqual(ev['project']['url'],
                                     self.fake.url + '/projects/' + pid)
                    if ev['event'] == 'project.created':
                        self.assertNotIn('previous', ev)
                    else:
                        self.assertIn('previous', ev, ev)
                        self.assertEqual(ev['previous'].get('id'), pid)
                    for key, value in (prev or {}).items():
                        self.assertEqual(ev['previous'].get(key), value, ev)
                # the change was committed: the next poll is quiet
                self.assert_quiet(self.assert_ok(self.bridge.once()))

    def test_hidden_archived_is_unknown_not_false(self):
        self.baseline(BASE)
        # a low-privilege view: no "archived" key at all
        self.fake.fault('hide_archived')
        self.assert_quiet(self.assert_ok(self.bridge.once()))
        self.fake.set_projects(changed(BASE, '0-3', name='Web'))
        result = self.assert_ok(self.bridge.once())
        self.assert_events(result, [('project.renamed', '0-3', 'WEB', 'Web')])

    def test_hidden_archived_on_first_run_announces_null(self):
        self.fake.fault('hide_archived')
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(len(result.events), 3)
        for ev in result.events:
            self.assertIn('archived', ev['project'])
            self.assertIsNone(ev['project']['archived'])


class DryRun(BridgeTest):

    def test_dry_run_on_first_run_writes_nothing(self):
        result = self.assert_ok(self.bridge.run('--once', '--dry-run'))
        self.assertEqual(len(result.events), 3)
        self.assertEqual(self.bridge.state_listing(), {})
        # the real run still sees a first run
        self.assertEqual(len(self.assert_ok(self.bridge.once()).events), 3)

    def test_dry_run_leaves_snapshot_and_changes_pending(self):
        self.baseline(BASE)
        before = self.bridge.state_listing()
        self.fake.set_projects(changed(BASE, '0-1', name='Dev'))
        expected = [('project.renamed', '0-1', 'DEV', 'Dev')]
        for _ in range(2):
            result = self.assert_ok(self.bridge.run('--once', '--dry-run'))
            self.assert_events(result, expected)
            self.assertEqual(self.bridge.state_listing(), before)
        self.assert_events(self.assert_ok(self.bridge.once()), expected)
        self.assertNotEqual(self.bridge.state_listing(), before)


class Environment(BridgeTest):

    def test_token_from_environment_overrides_file(self):
        self.bridge.configure(token='perm:wrong-token-in-file')
        result = self.bridge.once(env={'YTBRIDGE_YOUTRACK_TOKEN': TOKEN})
        self.assert_ok(result)
        self.assertEqual(len(result.events), 3)

    def test_url_from_environment_overrides_file(self):
        self.bridge.configure(url='http://127.0.0.1:9')
        result = self.bridge.once(env={'YTBRIDGE_YOUTRACK_URL': self.fake.url})
        self.assert_ok(result)
        self.assertEqual(len(result.events), 3)
        self.assertEqual(result.events[0]['project']['url'],
                         self.fake.url + '/projects/0-0')

    def test_token_is_never_logged_at_debug_level(self):
        # success, auth failure and a protocol failure, all at debug level
        self.bridge.configure(log_level='debug')
        self.assert_no_token(self.bridge.once())
        self.fake.fault('401')
        self.assert_no_token(self.bridge.once())
        self.fake.fault('html200')
        self.assert_no_token(self.bridge.once())


def _split_fields(text):
    """'id,leader(name,login)' -> {'id', 'leader(login,name)'}: top-level
    names, sub-fields sorted, so any order and spacing compare equal."""
    out, depth, cur = set(), 0, ''
    for c in text + ',':
        if c == ',' and depth == 0:
            cur = cur.replace(' ', '')
            if '(' in cur:
                name, inner = cur.split('(', 1)
                subs = sorted(x for x in inner.rstrip(')').split(',') if x)
                cur = '%s(%s)' % (name, ','.join(subs))
            if cur:
                out.add(cur)
            cur = ''
            continue
        depth += (c == '(') - (c == ')')
        cur += c
    return out


if __name__ == '__main__':
    main()
