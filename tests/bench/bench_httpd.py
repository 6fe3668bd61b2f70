#!/usr/bin/env python3
"""Figures for doc/httpd.md, run by hand (loopback only, bounded):

  YTBRIDGE_BIN=build/bridge/ytbridge python3 tests/bench/bench_httpd.py

Starts the daemon against the fake YouTrack and prints: idle VmRSS after the
first poll, the wall time of N sequential GET /healthz (a new connection each,
as probes do, and N on one keep-alive connection), VmRSS after, and what a
pipelined GET + POST-with-body in one write does (answers, CPU share over the
next 2 s, whether SIGTERM still ends the process within 5 s)."""

import http.client
import os
import re
import signal
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))

from harness import Bridge, FakeYouTrack, deadline_wait  # noqa: E402
from test_ops import LISTEN_RE  # noqa: E402

N = int(os.environ.get('BENCH_N', '2000'))


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return None


def cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main():
    tmp = tempfile.mkdtemp(prefix='ytbridge-bench-')
    fake = FakeYouTrack()
    bridge = Bridge(tmp, fake.url, log_level='info')
    daemon = bridge.start()
    try:
        found = []

        def listening():
            m = LISTEN_RE.search(daemon.result().stderr)
            if m:
                found.append(int(m.group(1)))
            return m
        deadline_wait(listening, 15, what='the listening line')
        port = found[0]
        pid = daemon.proc.pid

        def ready():
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
            c.request('GET', '/readyz')
            status = c.getresponse().status
            c.close()
            return status == 200
        deadline_wait(ready, 30, step=0.2, what='the first poll')
        time.sleep(1)
        print('idle VmRSS: %d KiB' % rss_kib(pid))

        t0 = time.monotonic()
        for _ in range(N):
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
            c.request('GET', '/healthz')
            r = c.getresponse()
            assert r.status == 200 and r.read() == b'ok\n'
            c.close()
        took = time.monotonic() - t0
        print('%d x GET /healthz, new connection each: %.2f s (%.0f/s)'
              % (N, took, N / took))
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
        t0 = time.monotonic()
        for _ in range(N):
            c.request('GET', '/healthz')
            r = c.getresponse()
            assert r.status == 200 and r.read() == b'ok\n'
        took = time.monotonic() - t0
        c.close()
        print('%d x GET /healthz, one keep-alive connection: %.2f s (%.0f/s)'
              % (N, took, N / took))
        print('VmRSS after: %d KiB' % rss_kib(pid))

        s = socket.create_connection(('127.0.0.1', port), timeout=5)
        s.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'
                  b'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n'
                  b'\r\nhello')
        s.settimeout(2)
        got = b''
        end = time.monotonic() + 2
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
        lines = [m.decode() for m in re.findall(rb'HTTP/1\.[01] \d{3} [^\r]*', got)]
        print('pipelined GET + POST with a body: answers %s' % lines)
        c0, t0 = cpu_ticks(pid), time.monotonic()
        time.sleep(2)
        share = (cpu_ticks(pid) - c0) / os.sysconf('SC_CLK_TCK') / (
            time.monotonic() - t0)
        print('  CPU over the next 2 s: %.0f%%' % (100 * share))
        s.close()
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(5)
            print('  SIGTERM: exited %d' % daemon.proc.returncode)
        except Exception:
            print('  SIGTERM: still running after 5 s (killed)')
    finally:
        daemon.kill()
        fake.stop()


if __name__ == '__main__':
    main()
