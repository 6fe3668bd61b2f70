#!/usr/bin/env python3
"""State directory: snapshot, lock, corrupt snapshots, removal guards."""

import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_PROJECTS, BridgeTest, deadline_wait,  # noqa: E402
                     main, many_projects)


def alert_text(n):
    return ("%d project%s disappeared from the service account's view at "
            "once; holding back" % (n, '' if n == 1 else 's'))


# name -> (tracked, removed at once, limit, held?)
MASS_CASES = {
    'over_limit_under_half': (25, 11, 10, True),
    'at_limit_under_half': (25, 10, 10, False),
    'over_half_under_limit': (6, 4, 10, True),
    'exactly_half': (6, 3, 10, False),
    'all_of_them': (3, 3, 10, True),
    'the_only_one': (1, 1, 10, True),
}

CORRUPT_SNAPSHOTS = {
    'garbage': b'\x00\xff garbage \x17',
    'empty_file': b'',
    'truncated_json': b'{"format":1,"projects":[{"id":"0-1","shortN',
    'wrong_shape': b'[1,2,3]',
}


def drop_ids(projects, ids):
    return [p for p in projects if p['id'] not in ids]


class Snapshot(BridgeTest):

    def test_snapshot_survives_restarts(self):
        self.assert_ok(self.bridge.once())
        snap = self.bridge.snapshot()
        self.assertEqual(snap['format'], 1)
        self.assertIsInstance(snap['projects'], list)
        names = {p.get('id'): p.get('name') for p in snap['projects']}
        self.assertEqual(names, {'0-0': 'Демопроект', '0-1': 'DEVELOPMENT',
                                 '0-2': 'DOCS'})
        for _ in range(2):
            self.assert_quiet(self.assert_ok(self.bridge.once()))
        # other state files (an outbox journal) may exist; temporaries not
        leftovers = [n for n in os.listdir(self.bridge.state_dir)
                     if (n.startswith('snapshot.json') and n != 'snapshot.json')
                     or 'tmp' in n.lower() or n.endswith('~')]
        self.assertEqual(leftovers, [], 'temporary files left behind')

    def test_corrupt_snapshot_is_moved_aside_and_baselined(self):
        self.bridge.configure(first_run='baseline')
        for name, junk in CORRUPT_SNAPSHOTS.items():
            with self.subTest(snapshot=name):
                for f in os.listdir(self.bridge.state_dir):
                    os.unlink(os.path.join(self.bridge.state_dir, f))
                with open(self.bridge.snapshot_path, 'wb') as f:
                    f.write(junk)
                result = self.assert_ok(self.bridge.once())
                self.assertEqual(result.messages,
                                 [{'event': 'baseline', 'count': 3,
                           'youtrack': self.fake.url}])
                aside = [n for n in os.listdir(self.bridge.state_dir)
                         if n.startswith('snapshot.json.corrupt-')]
                self.check(len(aside) == 1, 'corrupt file not moved aside',
                           result)
                with open(os.path.join(self.bridge.state_dir, aside[0]),
                          'rb') as f:
                    self.assertEqual(f.read(), junk)
                self.check('corrupt' in result.stderr.lower(),
                           'no warning about the corrupt snapshot', result)
                self.assertEqual(self.bridge.snapshot()['format'], 1)
                self.assert_quiet(self.assert_ok(self.bridge.once()))


class Lock(BridgeTest):

    def test_second_instance_is_refused_and_first_stops_cleanly(self):
        first = self.start_daemon()
        deadline_wait(lambda: (self.bridge.snapshot_bytes() is not None
                               or first.proc.poll() is not None),
                      20, what='the first daemon to write snapshot.json')
        self.check(first.proc.poll() is None, 'first daemon exited',
                   first.result())
        second = self.bridge.once(timeout=30)
        self.check(second.rc == 1, 'second instance must exit 1', second)
        self.check('already' in second.stderr.lower(),
                   'second instance must say the state dir is already in use',
                   second)
        self.assert_quiet(second)
        result = first.stop()
        self.check(result.rc == 0, 'SIGTERM must end the daemon with 0',
                   result)
        self.assertEqual(len(result.events), 3)
        self.assert_no_token(result)
        # once the first is gone the lock is free again
        self.assert_quiet(self.assert_ok(self.bridge.once()))

    def test_deleted_lock_file_does_not_let_a_second_instance_in(self):
        # The lock is on the directory, not on a file anyone can unlink.
        first = self.start_daemon()
        deadline_wait(lambda: (self.bridge.snapshot_bytes() is not None
                               or first.proc.poll() is not None),
                      20, what='the first daemon to write snapshot.json')
        lock = os.path.join(self.bridge.state_dir, 'lock')
        if os.path.exists(lock):
            os.unlink(lock)
        second = self.bridge.once(timeout=30)
        self.check(second.rc == 1, 'second instance must exit 1 after the '
                   'lock file was deleted', second)
        self.check('already' in second.stderr.lower(),
                   'second instance must say the state dir is already in use',
                   second)
        self.assert_quiet(second)
        result = first.stop()
        self.check(result.rc == 0, 'SIGTERM must end the daemon with 0',
                   result)
        self.assertEqual(len(result.events), 3)

    def test_state_directory_deleted_while_running_stops_the_daemon(self):
        # Deleted (rm -rf) or replaced by another directory: the daemon says
        # so once and exits non-zero for its supervisor, within one poll
        # interval, instead of failing every commit for ever.
        for how in ('deleted', 'replaced'):
            with self.subTest(how=how):
                if os.path.isdir(self.bridge.state_dir):
                    shutil.rmtree(self.bridge.state_dir)
                os.makedirs(self.bridge.state_dir)
                daemon = self.start_daemon()
                deadline_wait(lambda: (self.bridge.snapshot_bytes() is not None
                                       or daemon.proc.poll() is not None),
                              20, what='the daemon to write snapshot.json')
                if how == 'deleted':
                    shutil.rmtree(self.bridge.state_dir)
                else:
                    os.rename(self.bridge.state_dir, self.bridge.state_dir
                              + '.old')
                    os.makedirs(self.bridge.state_dir)
                    self.addCleanup(shutil.rmtree,
                                    self.bridge.state_dir + '.old', True)
                # a change to commit, as an operator would have
                self.fake.set_projects(DEFAULT_PROJECTS + many_projects(
                    1, start=50 if how == 'deleted' else 60))
                try:
                    deadline_wait(lambda: daemon.proc.poll() is not None, 25,
                                  step=0.1, what='the daemon to stop')
                except AssertionError as e:
                    self.fail_with(str(e), daemon.stop())
                result = daemon.result()
                self.check(result.rc == 1, 'expected exit code 1', result)
                lines = [ln for ln in result.stderr.splitlines()
                         if 'state directory' in ln and ' error ' in ln]
                self.check(len(lines) == 1 and how in lines[0],
                           'expected one clear error about the state '
                           'directory being %s' % how, result)
                self.assert_no_token(result)

    def test_sigint_also_stops_cleanly(self):
        daemon = self.start_daemon()
        deadline_wait(lambda: (self.bridge.snapshot_bytes() is not None
                               or daemon.proc.poll() is not None),
                      20, what='the daemon to write snapshot.json')
        result = daemon.stop(signal.SIGINT)
        self.check(result.rc == 0, 'SIGINT must end the daemon with 0',
                   result)


class Removal(BridgeTest):

    def test_removal_needs_two_consecutive_complete_polls(self):
        self.baseline(DEFAULT_PROJECTS)
        self.fake.set_projects(drop_ids(DEFAULT_PROJECTS, {'0-1'}))
        self.assert_quiet(self.assert_ok(self.bridge.once()))
        result = self.assert_ok(self.bridge.once())
        self.assert_events(result, [('project.removed', '0-1', 'DEV',
                                     'DEVELOPMENT')])
        ev = result.events[0]
        self.assertEqual(ev['project']['url'],
                         self.fake.url + '/projects/0-1')
        self.assertIn('previous', ev)
        self.assert_quiet(self.assert_ok(self.bridge.once()))

    def test_reappearing_before_confirmation_is_silent_and_resets(self):
        self.baseline(DEFAULT_PROJECTS)
        without = drop_ids(DEFAULT_PROJECTS, {'0-1'})
        self.fake.set_projects(without)
        self.assert_quiet(self.assert_ok(self.bridge.once()))      # missing 1
        self.fake.set_projects(DEFAULT_PROJECTS)
        self.assert_quiet(self.assert_ok(self.bridge.once()))      # back
        self.fake.set_projects(without)
        self.assert_quiet(self.assert_ok(self.bridge.once()))      # missing 1
        result = self.assert_ok(self.bridge.once())                # missing 2
        self.assertEqual([e['event'] for e in result.events],
                         ['project.removed'])

    def test_one_confirmation_removes_at_once(self):
        self.bridge.configure(removal_confirmations=1)
        self.baseline(DEFAULT_PROJECTS)
        self.fake.set_projects(drop_ids(DEFAULT_PROJECTS, {'0-2'}))
        result = self.assert_ok(self.bridge.once())
        self.assert_events(result, [('project.removed', '0-2', 'DOCS',
                                     'DOCS')])

    def test_removed_and_created_in_one_poll_sorted(self):
        self.bridge.configure(removal_confirmations=1)
        self.baseline(DEFAULT_PROJECTS)
        new = drop_ids(DEFAULT_PROJECTS, {'0-2'}) + many_projects(1, 3)
        self.fake.set_projects(new)
        result = self.assert_ok(self.bridge.once())
        self.assert_events(result, [
            ('project.removed', '0-2', 'DOCS', 'DOCS'),
            ('project.created', '0-3', 'P3', 'Project 3')])

    def test_dry_run_does_not_advance_confirmation(self):
        self.baseline(DEFAULT_PROJECTS)
        self.fake.set_projects(drop_ids(DEFAULT_PROJECTS, {'0-1'}))
        self.assert_quiet(self.assert_ok(self.bridge.once()))      # missing 1
        before = self.bridge.state_listing()
        result = self.assert_ok(self.bridge.run('--once', '--dry-run'))
        self.assertEqual([e['event'] for e in result.events],
                         ['project.removed'])
        self.assertEqual(self.bridge.state_listing(), before)
        result = self.assert_ok(self.bridge.once())
        self.assertEqual([e['event'] for e in result.events],
                         ['project.removed'])


class MassRemoval(BridgeTest):

    def run_case(self, tracked, removed, limit, held):
        projects = many_projects(tracked)
        gone = {p['id'] for p in projects[:removed]}
        self.bridge.configure(mass_removal_limit=limit)
        self.baseline(projects)
        self.fake.set_projects(drop_ids(projects, gone))
        self.assert_quiet(self.assert_ok(self.bridge.once()))
        result = self.assert_ok(self.bridge.once())
        if not held:
            self.assertEqual(sorted(e['project']['id'] for e in result.events),
                             sorted(gone))
            self.assertEqual({e['event'] for e in result.events},
                             {'project.removed'})
            return
        self.assertEqual(result.messages, [{
            'event': 'alert', 'kind': 'removals_held', 'count': removed,
            'message': alert_text(removed)}])
        for _ in range(2):
            self.assert_quiet(self.assert_ok(self.bridge.once()))
        result = self.assert_ok(self.bridge.once('--accept-removals'))
        self.assertEqual([e['event'] for e in result.events],
                         ['project.removed'] * removed)
        self.assertEqual(sorted(e['project']['id'] for e in result.events),
                         sorted(gone))
        self.assertEqual(len(result.messages), removed)
        self.assert_quiet(self.assert_ok(self.bridge.once()))

    def test_mass_removal_cases(self):
        for name, case in MASS_CASES.items():
            with self.subTest(case=name):
                for f in os.listdir(self.bridge.state_dir):
                    os.unlink(os.path.join(self.bridge.state_dir, f))
                self.run_case(*case)

    def test_held_projects_that_come_back_are_silent(self):
        projects = many_projects(25)
        self.baseline(projects)
        self.fake.set_projects(projects[11:])
        self.assert_quiet(self.assert_ok(self.bridge.once()))
        result = self.assert_ok(self.bridge.once())
        self.assertEqual([m['event'] for m in result.messages], ['alert'])
        self.fake.set_projects(projects)
        self.assert_quiet(self.assert_ok(self.bridge.once()))
        self.assert_quiet(self.assert_ok(self.bridge.once('--accept-removals')))

    def test_accept_removals_without_a_hold_changes_nothing(self):
        self.baseline(DEFAULT_PROJECTS)
        self.assert_quiet(self.assert_ok(self.bridge.once('--accept-removals')))


if __name__ == '__main__':
    main()
