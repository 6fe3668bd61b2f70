#!/usr/bin/env python3
"""A state directory that runs out of space (issue "Hostile input and faults").

The state directory is a small tmpfs mounted by the test, filled up to a
chosen number of free bytes, so that a commit fails with ENOSPC at a chosen
point. Needs root (mount); otherwise every test is skipped with the reason
and the file exits 77 (meson's "skipped").

- A failed commit takes its journal lines back, burns its generation, and
  names the real reason; after the disk has room again every message is
  delivered once, under one delivery id, even across a restart.
- Repeated failed commits back off like failed polls and never grow the
  journal.
"""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DeliveryTest, deadline_wait, many_projects,  # noqa: E402
                     need_binary, project)

PAGE = os.sysconf('SC_PAGE_SIZE')
PROJECTS = '/api/admin/projects'


def tmpfs_unavailable():
    """None when a tmpfs can be mounted here, else why not."""
    if os.geteuid() != 0:
        return 'not root: cannot mount a tmpfs to fill up'
    if not shutil.which('mount') or not shutil.which('umount'):
        return 'mount/umount not found'
    probe = tempfile.mkdtemp(prefix='ytbridge-tmpfs-probe-')
    try:
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs',
                            probe], capture_output=True, text=True)
        if r.returncode != 0:
            return 'cannot mount a tmpfs: %s' % r.stderr.strip()
        subprocess.run(['umount', probe], check=True)
        return None
    finally:
        os.rmdir(probe)


class FullDisk(DeliveryTest):

    @classmethod
    def setUpClass(cls):
        need_binary()
        why = tmpfs_unavailable()
        if why:
            raise unittest.SkipTest(why)

    def setUp(self):
        super().setUp()
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0700',
                        'tmpfs', self.bridge.state_dir], check=True)
        # Registered before any daemon, so it runs after they are killed.
        self.addCleanup(subprocess.run, ['umount', '-l', self.bridge.state_dir])
        self.filler = os.path.join(self.bridge.state_dir, 'filler')

    # -- helpers ----------------------------------------------------------

    def path(self, name):
        return os.path.join(self.bridge.state_dir, name)

    def size(self, name):
        try:
            return os.path.getsize(self.path(name))
        except FileNotFoundError:
            return 0

    def fill(self, leave_pages=0):
        """Fill the tmpfs up, then give back leave_pages pages."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunk = b'\0' * PAGE
            while True:
                os.write(fd, chunk)
        except OSError:
            pass
        finally:
            os.close(fd)
        size = os.path.getsize(self.filler)
        os.truncate(self.filler, size - size % PAGE - leave_pages * PAGE)

    def polls(self):
        """Polls since the last clear_requests() (one page each here)."""
        return [r for r in self.fake.requests() if r['path'] == PROJECTS]

    def wait_log(self, daemon, pattern, timeout=30, count=1):
        def seen():
            return len(re.findall(pattern, daemon.result().stderr)) >= count
        try:
            deadline_wait(seen, timeout, step=0.1, what=repr(pattern))
        except AssertionError as e:
            self.fail_with(str(e), daemon.stop())

    def journal_adds(self):
        out = []
        try:
            with open(self.path('outbox.jsonl'), 'rb') as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get('op') == 'add':
                        out.append(rec)
        except FileNotFoundError:
            pass
        return out

    # -- the tests ----------------------------------------------------------

    def test_failed_commit_is_taken_back_and_never_sent_twice(self):
        """The 'aborted' lines meant to cancel a failed batch need room too;
        when they cannot be written either, the old code left the batch in
        the journal, reused its generation (so its ids) and after a restart
        delivered every message twice under one delivery id."""
        rx = self.rx
        hook = rx.webhook_sink()
        base = many_projects(60)
        new = [project('0-9%d' % i, 'NEW%d' % i, 'New %d' % i)
               for i in range(3)]
        self.use_sinks(hook, page_size=1000, digest_threshold=100)
        self.quiet_baseline(base)

        # The size of the batch's "add" lines, measured on a copy: same
        # snapshot (epoch, generation), same sink, same changes.
        calib = tempfile.mkdtemp(prefix='ytbridge-calib-', dir=self.tmp)
        calib_state = os.path.join(calib, 'state')
        os.makedirs(calib_state)
        shutil.copy(self.bridge.snapshot_path, calib_state)
        with open(self.bridge.config_path) as f:
            text = f.read().replace(self.bridge.state_dir, calib_state)
        calib_conf = os.path.join(calib, 'ytbridge.conf')
        with open(calib_conf, 'w') as f:
            f.write(text)
        rx.fault('hook', 500)
        self.fake.set_projects(base + new)
        argv = self.bridge.argv('--once', config=False) + ['-c', calib_conf]
        r = subprocess.run(argv, env=self.bridge.env(), capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode()[-3000:])
        batch = os.path.getsize(os.path.join(calib_state, 'outbox.jsonl'))
        self.assertGreater(batch, 0)
        self.fake.set_projects(base)

        daemon = self.start_daemon()
        self.wait_log(daemon, r'no change; the snapshot is not rewritten')
        # Room for the batch's lines and 10 bytes more: not for one
        # "aborted" line (about 60 bytes each), nor for the snapshot.
        pad = PAGE - (batch + 10)
        self.assertGreater(pad, 100, 'batch too big for the test (%d)' % batch)
        head, tail = b'{"op":"done","id":"', b'","result":"pad"}\n'
        line = head + b'pad' + tail
        with open(self.path('outbox.jsonl'), 'ab') as f:
            f.write(line * (pad // len(line) - 1))
            rest = pad - (pad // len(line) - 1) * len(line)
            f.write(head + b'p' * (rest - len(head) - len(tail)) + tail)
        self.assertEqual(self.size('outbox.jsonl'), pad)
        self.fill()
        self.fake.set_projects(base + new)
        self.wait_log(daemon, r'nothing announced', timeout=30)
        os.unlink(self.filler)

        def committed():
            snap = self.bridge.snapshot() or {}
            return {p['id'] for p in snap.get('projects', [])} >= \
                {p['id'] for p in new}
        deadline_wait(committed, 30, what='the retry to commit')
        result = daemon.stop()
        self.check(result.rc == 0, 'SIGTERM must end the daemon with 0', result)
        self.check('No space left on device' in result.stderr,
                   'the failed commit must name the reason', result)
        self.check(not re.search(r'state: ;', result.stderr),
                   'an empty error message', result)

        adds = self.journal_adds()
        ids = collections.Counter(a['id'] for a in adds)
        self.check(all(n == 1 for n in ids.values()),
                   'the journal holds an id twice: %r' % ids, result)
        self.assertEqual(len(adds), 3, adds)
        snap_gen = self.bridge.snapshot()['generation']
        self.check(all(a['gen'] == snap_gen for a in adds),
                   'queued lines of another generation than the commit',
                   result)
        self.check(snap_gen > 2, 'the failed commit\'s generation (2) was '
                   'reused: %d' % snap_gen, result)

        # After a restart: every message exactly once, one delivery id each.
        rx.clear_faults()
        rx.clear_received()
        self.daemon_until(lambda: len(rx.accepted('hook')) >= 3, timeout=30)
        rx.settle()     # the daemon has exited: everything it sent is recorded
        hooks = rx.accepted('hook')
        by_id = collections.Counter(h['delivery'] for h in hooks)
        self.assertEqual(len(hooks), 3, 'deliveries: %r' % by_id)
        self.assertEqual(sorted(by_id.values()), [1, 1, 1])

    def test_failed_commits_back_off_and_never_grow_the_journal(self):
        """Old code: a retry every 2 s for ever, each one appending the batch
        and its cancellation to the journal."""
        base = many_projects(400)   # a snapshot past the 64 KiB write buffer
        self.bridge.configure(page_size=1000)
        self.baseline(base)
        daemon = self.start_daemon()
        self.wait_log(daemon, r'no change; the snapshot is not rewritten')
        self.fill(leave_pages=8)     # room for journal lines, not a snapshot
        before = self.size('outbox.jsonl')
        self.fake.clear_requests()
        self.fake.set_projects(base + many_projects(10, start=1000))
        self.wait_log(daemon, r'nothing announced', timeout=30)
        start = time.monotonic()
        # The behaviour under test is a rate over a window of the daemon's clock (its
        # back-off of 2, 4, 8 s): the window must pass, and is not scaled.
        time.sleep(11)
        # At 2, 4, 8 s (+-20%) after the first failure: at most 4 polls in
        # 11 s; a retry every 2 s makes 5 or more.
        polls = len(self.polls())
        grown = self.size('outbox.jsonl')
        os.unlink(self.filler)
        result = daemon.stop()
        self.check(polls >= 3, 'expected retries, got %d polls in %.0f s'
                   % (polls, time.monotonic() - start), result)
        self.check(polls <= 4, '%d polls in 11 s: commit failures do not back '
                   'off' % polls, result)
        self.check(grown <= before, 'the journal grew from %d to %d bytes '
                   'with batches that never committed' % (before, grown),
                   result)
        self.check('No space left on device' in result.stderr,
                   'the failed commit must name the reason', result)
        self.check(not re.search(r'state: ;', result.stderr),
                   'an empty error message', result)
        sys.stderr.write('\n%d polls in 11 s after the first failed commit; '
                         'journal %d -> %d bytes\n' % (polls, before, grown))


def main():
    if not os.environ.get('YTBRIDGE_BIN'):
        sys.stderr.write('YTBRIDGE_BIN is not set; skipping\n')
        sys.exit(77)
    why = tmpfs_unavailable()
    if why:
        sys.stderr.write('skipping: %s\n' % why)
        sys.exit(77)
    unittest.main(verbosity=2)


if __name__ == '__main__':
    main()
