#!/usr/bin/env python3
"""A failing or misbehaving server never produces an announcement.

Each case: a snapshot exists, the fake's list has changed so that a complete
poll WOULD announce something, then the fault is injected.  The daemon run
with --once must exit 1, print nothing on stdout, leave the state directory
byte-identical and log an error naming the class.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_PROJECTS, BridgeTest, deadline_wait,  # noqa: E402
                     main, many_projects, project)

PROJECTS = '/api/admin/projects'

# mode -> (fault options, acceptable error classes, config overrides)
FAULTS = {
    '500': ({}, ['server'], {}),
    '502': ({}, ['server'], {}),
    '429': ({}, ['server', 'network'], {}),
    '401': ({}, ['auth'], {}),
    '403': ({}, ['auth'], {}),
    'html200': ({}, ['protocol', 'auth'], {}),
    'redirect': ({}, ['protocol', 'auth', 'network'], {}),
    'redirect_same': ({}, ['protocol', 'network'], {}),  # endless loop
    'nonjson': ({}, ['protocol'], {}),
    'truncate': ({}, ['network', 'protocol'], {}),
    'truncate_json': ({}, ['protocol'], {}),
    'shape': ({}, ['protocol'], {}),
    'badtype': ({}, ['protocol'], {}),
    'slow': ({'delay': 6}, ['network'], {'timeout': 1}),
    'disconnect': ({}, ['network'], {}),
    'page2_500': ({}, ['server'], {}),
    # 64 MiB (the default max_body) must arrive before the timeout: on a busy machine
    # (tests in parallel, sanitizers, valgrind) 5 s were once not enough (a network error).
    'oversize': ({}, ['protocol'], {'page_size': 10000, 'timeout': 60}),
    'guest': ({}, ['auth'], {}),
}

# The list the fake serves during the fault: compared with DEFAULT_PROJECTS
# 0-1 is renamed and archived, 0-2 is gone (not yet confirmed: no event),
# 0-5 is new.
CHANGED = [
    project('0-1', 'DEV', 'Development renamed', archived=True),
    project('0-0', 'DEMO', 'Демопроект'),
    project('0-5', 'NEW', 'New'),
]


def closed_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FailedPolls(BridgeTest):

    def test_every_fault_fails_the_whole_poll(self):
        for mode, (opts, classes, conf) in FAULTS.items():
            with self.subTest(fault=mode):
                for f in os.listdir(self.bridge.state_dir):
                    os.unlink(os.path.join(self.bridge.state_dir, f))
                self.bridge.configure(page_size=2, timeout=5)
                self.fake.clear_fault()
                self.baseline(DEFAULT_PROJECTS)
                self.fake.set_projects(CHANGED)
                self.bridge.configure(**conf)
                before = self.bridge.state_listing()
                self.fake.fault(mode, **opts)
                result = self.bridge.once(timeout=90)
                self.assert_poll_failed(result, classes, before)
                # and once the server behaves, the changes do come through
                self.fake.clear_fault()
                self.bridge.configure(page_size=2, timeout=5)
                result = self.assert_ok(self.bridge.once())
                self.assertEqual(
                    [(e['event'], e['project']['id']) for e in result.events],
                    [('project.renamed', '0-1'),
                     ('project.archived', '0-1'),
                     ('project.created', '0-5')])

    def test_failure_on_first_run_creates_no_snapshot(self):
        for mode in ('500', '401', 'nonjson'):
            with self.subTest(fault=mode):
                self.fake.fault(mode)
                result = self.bridge.once()
                self.assert_poll_failed(
                    result, {'500': ['server'], '401': ['auth'],
                             'nonjson': ['protocol']}[mode], {})
                self.assertIsNone(self.bridge.snapshot_bytes())

    def test_connection_refused(self):
        self.baseline(DEFAULT_PROJECTS)
        before = self.bridge.state_listing()
        self.bridge.configure(url='http://127.0.0.1:%d' % closed_port())
        self.assert_poll_failed(self.bridge.once(), ['network'], before)

    def test_wrong_token_is_an_auth_error_naming_the_reason(self):
        self.baseline(DEFAULT_PROJECTS)
        before = self.bridge.state_listing()
        self.bridge.configure(token='perm:not-the-right-one')
        result = self.bridge.once()
        self.assert_poll_failed(result, ['auth'], before)
        self.assertIn('Invalid token', result.stderr)

    def test_same_host_redirect_once_is_followed(self):
        self.baseline(DEFAULT_PROJECTS)
        self.fake.set_projects(CHANGED)
        self.fake.fault('redirect_same', count=1, path=PROJECTS)
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(len(result.events), 3)

    def test_retry_after_a_transient_error_within_one_poll_is_fine(self):
        # With a 500 for the first page only, a daemon may either fail the
        # poll (exit 1, nothing announced) or retry and succeed; it must not
        # announce anything partial.
        self.baseline(DEFAULT_PROJECTS)
        self.fake.set_projects(CHANGED)
        self.fake.fault('500', count=1, path=PROJECTS)
        result = self.bridge.once()
        self.assert_no_token(result)
        if result.rc == 0:
            self.assertEqual(len(result.events), 3)
        else:
            self.assertEqual(result.rc, 1)
            self.assert_quiet(result)


class RepeatedFailures(BridgeTest):

    def alerts(self, daemon, kind):
        return [m for m in daemon.result().messages
                if m.get('event') == 'alert' and m.get('kind') == kind]

    def test_repeated_protocol_failures_raise_one_alert_and_resolve_it(self):
        # A server whose answers cannot be read fails every poll, rightly;
        # after 3 in a row the operator hears of it once, like a refused
        # token, and hears again once polls work.
        self.baseline(DEFAULT_PROJECTS)
        self.fake.fault('nonjson')
        self.fake.clear_requests()
        daemon = self.start_daemon()

        def polls():
            return len([r for r in self.fake.requests()
                        if r['path'] == PROJECTS])
        try:
            deadline_wait(lambda: self.alerts(daemon, 'youtrack_protocol'),
                          30, step=0.1, what='a youtrack_protocol alert')
            self.check(polls() >= 3, 'alerted before 3 failed polls',
                       daemon.result())
            n = polls()
            deadline_wait(lambda: polls() >= n + 1, 30, step=0.1,
                          what='one more failed poll')
            self.fake.clear_fault()
            deadline_wait(lambda: self.alerts(daemon, 'youtrack_protocol_ok'),
                          30, step=0.1, what='the alert to be resolved')
        except AssertionError as e:
            self.fail_with(str(e), daemon.stop())
        result = self.assert_ok(daemon.stop())
        self.assertEqual(len(self.alerts(daemon, 'youtrack_protocol')), 1)
        self.assertEqual(len(self.alerts(daemon, 'youtrack_protocol_ok')), 1)
        self.assertEqual(result.events, [])


class FailuresAndRemovals(BridgeTest):

    def test_failed_poll_neither_confirms_nor_resets_a_removal(self):
        self.baseline(DEFAULT_PROJECTS)
        without_docs = [p for p in DEFAULT_PROJECTS if p['id'] != '0-2']
        self.fake.set_projects(without_docs)
        self.assert_quiet(self.assert_ok(self.bridge.once()))   # missing 1
        for mode in ('500', 'truncate_json', 'disconnect'):
            self.fake.fault(mode)
            before = self.bridge.state_listing()
            result = self.bridge.once()
            self.check(result.rc == 1, 'poll should fail', result)
            self.assert_quiet(result)
            self.assertEqual(self.bridge.state_listing(), before)
        self.fake.clear_fault()
        result = self.assert_ok(self.bridge.once())             # missing 2
        self.assert_events(result, [('project.removed', '0-2', 'DOCS',
                                     'DOCS')])

    def test_fault_on_a_later_page_does_not_remove_its_projects(self):
        projects = many_projects(6)
        self.baseline(projects)
        self.fake.fault('page2_500')
        for _ in range(3):
            result = self.bridge.once()
            self.check(result.rc == 1, 'poll should fail', result)
            self.assert_quiet(result)
        self.fake.clear_fault()
        self.assert_quiet(self.assert_ok(self.bridge.once()))

    def test_empty_list_is_a_complete_poll_but_held_as_mass_removal(self):
        # A role-less token sees 200 []: complete, but never "all deleted".
        self.baseline(DEFAULT_PROJECTS)
        self.fake.fault('empty')
        self.assert_quiet(self.assert_ok(self.bridge.once()))
        result = self.assert_ok(self.bridge.once())
        self.assertEqual([m['event'] for m in result.messages], ['alert'])
        self.assertEqual(result.messages[0]['count'], 3)


if __name__ == '__main__':
    main()
