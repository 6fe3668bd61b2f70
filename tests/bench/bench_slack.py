#!/usr/bin/env python3
"""Slash-command latency benchmark (run by hand; not part of the suite).

    python3 tests/bench/bench_slack.py [--commands 1000] [--projects 10000]

Runs the real daemon (YTBRIDGE_BIN, default build/bridge/ytbridge) against
tests/fakes/fake_youtrack.py holding --projects projects and
tests/fakes/fake_slack.py on loopback. After the first poll, it sends
--commands slash-command envelopes, one at a time, over the one Socket Mode
connection: a rotating mix of `projects`, `projects <filter>`, `project KEY`,
`changes 10`, `status` and `help`. The time of each is measured by the fake
from the envelope's last byte written to the ack's arrival (its own asyncio
overhead included). Prints p50/p90/p99/max overall and per command, and the
daemon's peak RSS (VmHWM) and RSS at the end.

Then the daemon's CPU per command: for each kind, --cpu-commands envelopes
one after another, and the daemon's user + system CPU over them (from
/proc/<pid>/stat, in clock ticks: 10 ms here, so the block is long enough for
a tick to be a few percent) divided by their number. That is everything the
daemon does for a command (the websocket frame, the JSON, the answer, the
ack), with its idle wake-ups in between (none between polls).

The rate limits are raised out of the way (commands_per_user = 10000,
commands_per_second = 1000), as a flood is bench_flood.py's job. Exits 1 if
any envelope got no ack, an ack without an answer, or a "slow down".
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
os.environ.setdefault('YTBRIDGE_BIN',
                      os.path.join(ROOT, 'build', 'bridge', 'ytbridge'))

from harness import Bridge, FakeYouTrack, deadline_wait, many_projects  # noqa: E402
from test_slack_chat import APP_TOKEN, FakeSlack  # noqa: E402


def status_kib(pid, field):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    """(utime, stime) of the process, in clock ticks (fields 14 and 15 of stat)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]), int(fields[12])


def answered(r):
    """An ack that carries an answer, and not the rate limit's."""
    payload = r['ack'] and r['ack'].get('payload')
    return bool(payload) and 'Slow down' not in str(payload)


def pct(sorted_values, p):
    if not sorted_values:
        return float('nan')
    k = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--commands', type=int, default=1000)
    ap.add_argument('--projects', type=int, default=10000)
    ap.add_argument('--cpu-commands', type=int, default=1000,
                    help='envelopes per command kind in the CPU phase (0: skip it)')
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix='ytbridge-bench-')
    yt = FakeYouTrack(projects=many_projects(args.projects))
    slack = FakeSlack()
    daemon = None
    try:
        bridge = Bridge(tmp, yt.url, page_size=1000, first_run='baseline',
                        log_level='warning')
        bridge.write_config(bridge.config_text()
                            + 'chat: { slack: { app_token = "%s"; api_url = "%s/api"; '
                            'commands_per_user = 10000; commands_per_second = 1000; }; };\n'
                            % (APP_TOKEN, slack.url))
        daemon = bridge.start()
        deadline_wait(lambda: bridge.snapshot() is not None, 120, what='the first poll')
        deadline_wait(lambda: slack.state()['open'], 30, what='the socket')
        time.sleep(0.5)
        sample = many_projects(args.projects)
        mix = [lambda i: 'projects',
               lambda i: 'projects %s' % sample[(i * 7919) % len(sample)]['name'][:4],
               lambda i: 'project %s' % sample[(i * 104729) % len(sample)]['shortName'],
               lambda i: 'changes 10',
               lambda i: 'status',
               lambda i: 'help']
        rss_idle = status_kib(daemon.proc.pid, 'VmRSS')
        lat = {}
        bad = 0
        t0 = time.monotonic()
        for i in range(args.commands):
            text = mix[i % len(mix)](i)
            r = slack.envelope(text=text, wait_ack=5)
            if not answered(r):
                bad += 1
                continue
            lat.setdefault(text.split()[0] + (' <arg>' if ' ' in text else ''), []).append(
                r['ack_latency_ms'])
        wall = time.monotonic() - t0
        hwm = status_kib(daemon.proc.pid, 'VmHWM')
        rss = status_kib(daemon.proc.pid, 'VmRSS')
        every = sorted(v for vs in lat.values() for v in vs)
        print('%d slash commands over one Socket Mode connection, %d projects, %.1f s'
              % (args.commands, args.projects, wall))
        print('envelope sent -> ack received (ms): p50 %.2f  p90 %.2f  p99 %.2f  max %.2f'
              % (pct(every, 50), pct(every, 90), pct(every, 99), every[-1] if every else 0))
        for name in sorted(lat):
            v = sorted(lat[name])
            print('  %-16s n=%4d  p50 %.2f  p99 %.2f  max %.2f'
                  % (name, len(v), pct(v, 50), pct(v, 99), v[-1]))
        print('daemon RSS: peak %.1f MiB; %.1f MiB connected and idle before the commands, '
              '%.1f MiB after them' % (hwm / 1024, rss_idle / 1024, rss / 1024))
        if args.cpu_commands > 0:
            tick = os.sysconf('SC_CLK_TCK')
            print('daemon CPU per command (user + system, %d envelopes each, tick %.0f ms):'
                  % (args.cpu_commands, 1000 / tick))
            for kind, make in (('projects', mix[0]), ('projects <arg>', mix[1]),
                               ('project <arg>', mix[2]), ('changes <arg>', mix[3]),
                               ('status', mix[4]), ('help', mix[5])):
                before = cpu_ticks(daemon.proc.pid)
                for i in range(args.cpu_commands):
                    if not answered(slack.envelope(text=make(i), wait_ack=5)):
                        bad += 1
                after = cpu_ticks(daemon.proc.pid)
                user, system = [(a - b) * 1000 / tick / args.cpu_commands
                                for a, b in zip(after, before)]
                print('  %-16s %.3f ms (user %.3f, system %.3f)'
                      % (kind, user + system, user, system))
        if bad:
            print('%d envelopes without an answer' % bad)
            return 1
        return 0
    finally:
        if daemon:
            daemon.stop()
        slack.stop()
        yt.stop()
        shutil.rmtree(tmp, True)


if __name__ == '__main__':
    sys.exit(main())
