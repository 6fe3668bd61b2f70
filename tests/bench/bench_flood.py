#!/usr/bin/env python3
"""Command-flood benchmark (run by hand; not part of the suite).

    python3 tests/bench/bench_flood.py [--commands 10000] [--users 8]
        [--projects 2000] [--per-user 10] [--per-second 10]

Runs the real daemon (YTBRIDGE_BIN, default build/bridge/ytbridge) against
tests/fakes/fake_youtrack.py holding --projects projects and
tests/fakes/fake_slack.py. After the first poll it writes --commands
`/youtrack projects` envelopes back to back on the one Socket Mode socket,
users taking turns, with the chat rate limits set to --per-user (commands a
minute per user) and --per-second (in all). Prints how many were answered,
told to slow down and acked empty, the ack latency (p50/p99/max, from the
envelope written to the ack read), and the daemon's RSS idle, at its peak and
5 s after the flood. --per-user 10000 --per-second 1000 is "no limits".
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
os.environ.setdefault('YTBRIDGE_BIN', os.path.join(ROOT, 'build', 'bridge', 'ytbridge'))

from harness import Bridge, FakeYouTrack, deadline_wait, many_projects  # noqa: E402
from test_slack_chat import APP_TOKEN, FakeSlack  # noqa: E402

sys.path.insert(0, HERE)
from bench_slack import pct, status_kib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--commands', type=int, default=10000)
    ap.add_argument('--users', type=int, default=8)
    ap.add_argument('--projects', type=int, default=2000)
    ap.add_argument('--per-user', type=int, default=10)
    ap.add_argument('--per-second', type=int, default=10)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix='ytbridge-bench-')
    yt = FakeYouTrack(projects=many_projects(args.projects))
    slack = FakeSlack()
    daemon = None
    try:
        bridge = Bridge(tmp, yt.url, page_size=1000, first_run='baseline', log_level='warning')
        bridge.write_config(bridge.config_text()
                            + 'chat: { slack: { app_token = "%s"; api_url = "%s/api"; '
                            'commands_per_user = %d; commands_per_second = %d; }; };\n'
                            % (APP_TOKEN, slack.url, args.per_user, args.per_second))
        daemon = bridge.start()
        deadline_wait(lambda: bridge.snapshot() is not None, 120, what='the first poll')
        deadline_wait(lambda: slack.state()['open'], 30, what='the socket')
        slack.envelope(text='status', user_id='U0WARMUP', wait_ack=5)
        idle = status_kib(daemon.proc.pid, 'VmRSS')
        users = ['U0FLOOD%d' % i for i in range(args.users)]
        t0 = time.monotonic()
        req = urllib.request.Request(
            slack.url + '/_control/flood', method='POST',
            data=json.dumps({'count': args.commands, 'users': users, 'text': 'projects',
                             'wait_ack': 300}).encode(),
            headers={'Content-Type': 'application/json'})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                req, timeout=330) as resp:
            res = json.loads(resp.read())
        wall = time.monotonic() - t0
        results = res['results']
        hwm = status_kib(daemon.proc.pid, 'VmHWM')
        time.sleep(5)
        after = status_kib(daemon.proc.pid, 'VmRSS')
        lat = sorted(r['ack_latency_ms'] for r in results if r['ack_latency_ms'] is not None)
        told = sum(1 for r in results if r['text'] and 'Slow down' in r['text'])
        empty = sum(1 for r in results if r['ack_latency_ms'] is not None and not r['text'])
        acked = len(lat)
        print('%d commands from %d users, %d projects, limits %d/min per user and %d/s: '
              '%.1f s' % (args.commands, args.users, args.projects, args.per_user,
                          args.per_second, wall))
        print('acked %d: answered %d, told to slow down %d, acked empty %d; unacked %d'
              % (acked, acked - told - empty, told, empty, len(results) - acked))
        if lat:
            print('ack latency (ms): p50 %.1f  p99 %.1f  max %.1f'
                  % (pct(lat, 50), pct(lat, 99), lat[-1]))
        print('daemon RSS: idle %.1f MiB, peak %.1f MiB, 5 s after %.1f MiB'
              % (idle / 1024, hwm / 1024, after / 1024))
        return 0 if acked == len(results) else 1
    finally:
        if daemon:
            daemon.stop()
        slack.stop()
        yt.stop()
        shutil.rmtree(tmp, True)


if __name__ == '__main__':
    sys.exit(main())
