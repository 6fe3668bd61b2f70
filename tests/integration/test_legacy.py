#!/usr/bin/env python3
"""The 2017.x /rest API: fallback from /api, keyed by shortName."""

import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_PROJECTS, TOKEN, BridgeTest, main,  # noqa: E402
                     project)


def legacy_summary(result):
    """Legacy projects have no database id: compare on shortName and name."""
    return [(e['event'], e['project'].get('shortName'),
             e['project'].get('name')) for e in result.events]


class Legacy(BridgeTest):
    fake_args = ('--legacy',)

    def paths(self):
        return [r['path'] for r in self.fake.requests()]

    def test_auto_falls_back_to_rest_and_reads_names(self):
        result = self.assert_ok(self.bridge.once())
        got = legacy_summary(result)
        self.assertEqual(sorted(got), sorted([
            ('project.created', 'DEV', 'DEVELOPMENT'),
            ('project.created', 'DOCS', 'DOCS'),
            ('project.created', 'DEMO', 'Демопроект')]))
        for ev in result.events:
            # no database id on 2017.x: the key is the short name (or null)
            self.assertIn(ev['project'].get('id'),
                          (ev['project']['shortName'], None))
            self.assertIsNone(ev['project'].get('archived'))
        paths = self.paths()
        self.assertEqual(paths[0], '/api/admin/projects')
        self.assertIn('/rest/admin/project', paths)
        for r in self.fake.requests():
            h = {k.lower(): v for k, v in r['headers'].items()}
            self.assertTrue(h.get('authorization') == 'Bearer ' + TOKEN,
                            'Authorization is not "Bearer <token>"')
            if r['path'].startswith('/rest/'):
                self.assertIn('application/json', h.get('accept', ''))
        names = [r for r in self.fake.requests()
                 if r['path'] == '/rest/project/all']
        self.assertTrue(names, 'names were not fetched from /rest/project/all')
        self.assertEqual(urllib.parse.parse_qs(names[0]['query'])
                         .get('verbose'), ['false'])
        self.assert_quiet(self.assert_ok(self.bridge.once()))

    def test_explicit_legacy_never_touches_api(self):
        self.bridge.configure(api='legacy')
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(len(result.events), 3)
        self.assertFalse([p for p in self.paths() if p.startswith('/api')])

    def test_explicit_api_against_old_server_fails(self):
        self.bridge.configure(api='api')
        result = self.bridge.once()
        self.assert_poll_failed(result, ['protocol', 'server', 'auth',
                                         'config', 'network'], {})
        self.assertFalse([p for p in self.paths() if p.startswith('/rest')])

    def test_short_name_change_is_removed_plus_created(self):
        self.bridge.configure(removal_confirmations=1)
        self.baseline(DEFAULT_PROJECTS)
        renamed = [dict(p) for p in DEFAULT_PROJECTS]
        renamed[0]['shortName'] = 'ENG'
        self.fake.set_projects(renamed)
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(sorted(legacy_summary(result)), [
            ('project.created', 'ENG', 'DEVELOPMENT'),
            ('project.removed', 'DEV', 'DEVELOPMENT')])

    def test_short_name_change_with_confirmations(self):
        self.baseline(DEFAULT_PROJECTS)
        renamed = [dict(p) for p in DEFAULT_PROJECTS]
        renamed[0]['shortName'] = 'ENG'
        self.fake.set_projects(renamed)
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(legacy_summary(result),
                         [('project.created', 'ENG', 'DEVELOPMENT')])
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(legacy_summary(result),
                         [('project.removed', 'DEV', 'DEVELOPMENT')])

    def test_name_change_is_a_rename(self):
        self.baseline(DEFAULT_PROJECTS)
        renamed = [dict(p) for p in DEFAULT_PROJECTS]
        renamed[1]['name'] = 'Documentation'
        self.fake.set_projects(renamed)
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(legacy_summary(result),
                         [('project.renamed', 'DOCS', 'Documentation')])
        self.assertEqual(result.events[0]['previous'].get('name'), 'DOCS')

    def test_legacy_wrong_token_is_auth_error(self):
        self.baseline(DEFAULT_PROJECTS)
        before = self.bridge.state_listing()
        self.bridge.configure(token='perm:not-the-right-one')
        self.assert_poll_failed(self.bridge.once(), ['auth'], before)

    def test_legacy_server_error_fails_poll(self):
        self.baseline(DEFAULT_PROJECTS)
        before = self.bridge.state_listing()
        self.fake.set_projects(DEFAULT_PROJECTS[:1]
                               + [project('0-7', 'NEW', 'New')])
        for mode, classes in (('500', ['server']), ('html200', ['protocol',
                                                                'auth'])):
            with self.subTest(fault=mode):
                self.fake.fault(mode, path='/rest/')
                self.assert_poll_failed(self.bridge.once(), classes, before)


class ModernServer(BridgeTest):

    def test_404_on_other_api_paths_does_not_trigger_fallback(self):
        # a modern server: /api works, so /rest is never asked
        self.assert_ok(self.bridge.once())
        self.assertFalse([r for r in self.fake.requests()
                          if r['path'].startswith('/rest')])


if __name__ == '__main__':
    main()
