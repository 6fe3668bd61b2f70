#!/usr/bin/env python3
"""Crash safety: SIGKILL the daemon at many points while it delivers a burst
of changes to Slack, Matrix, a signed webhook and hookshot, restart it each
time, let it finish, and check what every receiver got:

- Matrix: every message exactly once (txnId reuse + the fake's Synapse-like
  dedup), in order;
- webhook: every message under exactly one delivery id; re-sends only of an
  id already pending, with the identical body, at most one per kill;
- Slack and hookshot (no idempotency key): every message at least once, at
  most one duplicate per kill, first deliveries in order.

CRASH_SEED=n reproduces a run; CRASH_KILLS=n changes the number of kills."""

import collections
import os
import random
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DeliveryTest, deadline_wait, main,  # noqa: E402
                     message_text, natural_key, project)

KILLS = int(os.environ.get('CRASH_KILLS') or 15)
BASE = [project('0-1', 'DEV', 'Development'), project('0-2', 'OPS', 'Ops')]
CHAT = ('slack', 'matrix', 'hookshot')


def phase_a():
    return {'0-%d' % i: ('C%d' % i, 'Kc%d' % i) for i in range(11, 21)}


def phase_b():
    p = phase_a()
    for i in range(11, 16):
        p['0-%d' % i] = ('C%d' % i, 'Kr%d' % i)
    for i in range(21, 25):
        p['0-%d' % i] = ('C%d' % i, 'Kc%d' % i)
    return p


def phase_c():
    p = phase_b()
    for i in range(16, 22):
        p['0-%d' % i] = ('C%d' % i, 'Ks%d' % i)
    return p


def as_projects(phase):
    return BASE + [project(pid, short, name)
                   for pid, (short, name) in phase.items()]


def expected_keys(phases):
    """The messages, in delivery order: a key is the set of K-names in it."""
    out = []
    prev = {}
    for phase in phases:
        for pid in sorted(phase, key=natural_key):
            old = prev.get(pid)
            if old is None:
                out.append(frozenset([phase[pid][1]]))
            elif old[1] != phase[pid][1]:
                out.append(frozenset([old[1], phase[pid][1]]))
        prev = phase
    return out


def key_of(text):
    return frozenset(re.findall(r'\bK[crs]\d+\b', text))


def hook_key(rec):
    j = rec['json'] or {}
    names = [(j.get('project') or {}).get('name'),
             (j.get('previous') or {}).get('name')]
    return frozenset(n for n in names if n)


def first_occurrences(keys):
    seen = set()
    out = []
    for k in keys:
        if k not in seen:
            seen.add(k)
            out.append(k)
    return out


class Crash(DeliveryTest):

    def test_sigkill_at_many_points_loses_nothing_doubles_nothing(self):
        seed = int(os.environ.get('CRASH_SEED') or random.randrange(1 << 30))
        sys.stderr.write('\nCRASH_SEED=%d\n' % seed)
        rng = random.Random(seed)
        rx = self.rx
        self.use_sinks(rx.slack_sink(), rx.matrix_sink(), rx.webhook_sink(),
                       rx.hookshot_sink(), digest_threshold=100)
        self.quiet_baseline(BASE)
        for r, delay in (('slack', 0.1), ('matrix', 0.25), ('hook', 0.25),
                         ('hookshot', 0.25)):
            rx.fault(r, 'slow', delay=delay)
        phases = {0: phase_a(), KILLS // 3: phase_b(), 2 * KILLS // 3: phase_c()}
        want = expected_keys([phases[k] for k in sorted(phases)])

        for run in range(KILLS):
            committed = None
            if run in phases:
                self.fake.set_projects(as_projects(phases[run]))
                committed = self.bridge.snapshot_bytes()
            daemon = self.start_daemon()
            if committed is not None:
                # make the phase's changes one poll, whatever the kill timing
                deadline_wait(lambda: self.bridge.snapshot_bytes() != committed,
                              15, what='the poll of a new phase to commit')
            if run % 2:
                # right after a receiver accepted something: the Slack window
                before = sum(len(rx.accepted(r)) for r in ('slack', 'hookshot'))
                end = time.monotonic() + 3
                while time.monotonic() < end and daemon.proc.poll() is None:
                    if sum(len(rx.accepted(r))
                           for r in ('slack', 'hookshot')) > before:
                        break
                    time.sleep(0.01)
                time.sleep(rng.uniform(0, 0.05))
            else:
                time.sleep(rng.uniform(0, 2.0))
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(10)
            self.check(daemon.proc.returncode == -signal.SIGKILL,
                       'run %d ended before the kill (rc %s)'
                       % (run, daemon.proc.returncode), daemon.result())

        rx.clear_faults()

        def complete():
            return (all(set(want) <= {key_of(message_text(m))
                                      for m in rx.accepted(r)} for r in CHAT)
                    and set(want) <= {hook_key(m) for m in rx.accepted('hook')})
        self.daemon_until(complete, timeout=150,
                          what='every message at every receiver')
        rx.settle()     # the daemon has exited: everything it sent is recorded

        report = []
        for r in CHAT:
            keys = [key_of(message_text(m)) for m in rx.accepted(r)]
            counts = collections.Counter(keys)
            extra = sum(c - 1 for c in counts.values())
            report.append('%s: %d messages, %d duplicates'
                          % (r, len(keys), extra))
            self.assertEqual(set(keys), set(want), '%s: unexpected messages' % r)
            self.assertEqual(first_occurrences(keys), want, '%s: order' % r)
            if r == 'matrix':
                self.assertEqual(extra, 0, 'matrix: exactly once')
            else:
                self.assertLessEqual(extra, KILLS,
                                     '%s: at most one duplicate per kill' % r)
        hooks = rx.accepted('hook')
        by_id = collections.defaultdict(list)
        for h in hooks:
            self.assertIs(h['signature_valid'], True)
            by_id[h['delivery']].append(h)
        for did, copies in by_id.items():
            self.assertEqual(len({c['body'] for c in copies}), 1,
                             'delivery %s re-sent with another body' % did)
        id_keys = [hook_key(c[0]) for c in by_id.values()]
        self.assertEqual(sorted(map(sorted, id_keys)), sorted(map(sorted, want)),
                         'webhook: one delivery id per message')
        self.assertEqual(first_occurrences([hook_key(h) for h in hooks]), want,
                         'webhook: order')
        extra = len(hooks) - len(by_id)
        self.assertLessEqual(extra, KILLS, 'webhook: re-sends per kill')
        report.append('hook: %d deliveries, %d re-sends' % (len(hooks), extra))
        sys.stderr.write('%d kills, %d messages per sink; %s\n'
                         % (KILLS, len(want), '; '.join(report)))


if __name__ == '__main__':
    main()
