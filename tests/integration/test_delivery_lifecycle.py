#!/usr/bin/env python3
"""Delivery across the daemon's life: SIGTERM in the middle of a burst, and a
queue that survives a lost snapshot. Messages older than notify.max_age are
in test_delivery_max_age.py (about 65 s of waiting, run beside this file)."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (SCALE, DeliveryTest, deadline_wait, main,  # noqa: E402
                     message_text, project)

BASE = [project('0-1', 'DEV', 'Development'), project('0-2', 'OPS', 'Ops')]


def new_projects(*nums):
    return [project('0-%d' % n, 'N%d' % n, 'Nw%d' % n) for n in nums]


def names(recs):
    return [list(dict.fromkeys(re.findall(r'\bNw\d+\b', message_text(r))))
            for r in recs]


class Sigterm(DeliveryTest):

    def test_sigterm_during_a_burst_then_restart_delivers_the_rest(self):
        rx = self.rx
        self.use_sinks(rx.slack_sink(), rx.hookshot_sink(), rx.matrix_sink(),
                       digest_threshold=50, shutdown_grace=10)
        self.quiet_baseline(BASE)
        nums = list(range(10, 18))
        self.fake.set_projects(BASE + new_projects(*nums))
        rx.fault('hookshot', 'slow', delay=2)   # a request is in flight at TERM
        daemon = self.start_daemon()
        deadline_wait(lambda: len(rx.accepted('slack')) >= 2, 20,
                      what='the burst to start')
        t0 = time.monotonic()
        result = daemon.stop(signal.SIGTERM, timeout=20)
        took = time.monotonic() - t0
        self.assert_ok(result)
        self.check(took <= (10 + 3) * SCALE,
                   'exit within shutdown_grace (took %.1fs)' % took, result)
        slack_then = len(rx.accepted('slack'))
        self.check(slack_then < len(nums),
                   'SIGTERM came mid-burst (slack had %d)' % slack_then, result)
        rx.clear_faults()
        want = [['Nw%d' % n] for n in nums]
        self.daemon_until(lambda: all(len(rx.accepted(r)) >= len(nums)
                                      for r in ('slack', 'hookshot', 'matrix')),
                          timeout=40, what='the rest after restart')
        # The daemon has exited: once the receivers handled all it sent, nothing more can
        # show up (an unwanted extra message included).
        rx.settle()
        for r in ('slack', 'hookshot', 'matrix'):
            self.assertEqual(names(rx.accepted(r)), want,
                             '%s: all, in order, once' % r)
        self.assertEqual(rx.received('matrix')['duplicates'], [])


class LostSnapshot(DeliveryTest):

    def test_queued_messages_survive_a_lost_snapshot(self):
        # Messages wait for a sink that is down; then the snapshot is lost. Nothing queued is
        # dropped, and the baseline that follows announces nothing again.
        rx = self.rx
        self.use_sinks(rx.matrix_sink())
        self.quiet_baseline(BASE)
        nums = [20, 21, 22]
        self.fake.set_projects(BASE + new_projects(*nums))
        rx.fault('matrix', '500')
        self.assert_ok(self.bridge.once())
        self.assertEqual(rx.accepted('matrix'), [])
        os.remove(self.bridge.snapshot_path)
        rx.clear_faults()
        result = self.daemon_until(lambda: len(rx.accepted('matrix')) >= len(nums),
                                   timeout=40, what='the queued messages after the loss')
        self.check('still queued: kept' in result.stderr, 'no word about the kept queue',
                   result)
        # The harness's first_run is "announce": a lost state must not count as a first run.
        # The daemon has exited: once the receivers handled all it sent, nothing more can
        # show up.
        rx.settle()
        got = rx.accepted('matrix')
        # The three changes, once each and in order; besides them only the new baseline's
        # "now tracking" notice (the projects themselves are not announced again).
        self.assertEqual([n for n in names(got) if n], [['Nw%d' % n] for n in nums])
        others = [message_text(r) for r in got if not re.search(r'\bNw\d+\b', message_text(r))]
        self.check(all('tracking' in t.lower() for t in others), repr(others))


if __name__ == '__main__':
    main()
