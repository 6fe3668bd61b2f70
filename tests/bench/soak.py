#!/usr/bin/env python3
"""Soak check for the ytbridge daemon (run by hand; not part of the suite).

    python3 tests/bench/soak.py [--minutes 10] [--projects 10000]

Runs the real daemon (YTBRIDGE_BIN, default build/bridge/ytbridge) against
tests/fakes/fake_youtrack.py holding 10,000 projects (page_size 500,
poll_interval 10 s, the minimum). One project changes every 3 s through the
fake's control API while a client scrapes /metrics 10 times a second. At the
end the load stops for a 30 s idle window (no scrapes, no changes; the daemon
still polls) in which context switches are counted.

Reports RSS (VmRSS) after the first poll, at the end of minute 1 and at the
end, the peak (VmHWM), CPU time (utime+stime), idle wake-ups per second
(voluntary + involuntary context switches of all the daemon's threads), the
number of polls, changes and scrapes, and the mean poll duration (20 pages;
ytbridge_poll_duration_seconds). Exits 1 if RSS grew by more than
10% + 2 MiB between the end of minute 1 and the end, or if anything failed
(the daemon died, polls failed, scrapes failed, changes went unannounced).
Bounded: it stops by itself after --minutes (plus start-up).
"""

import argparse
import os
import re
import signal
import sys
import tempfile
import shutil
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))

os.environ.setdefault('YTBRIDGE_BIN',
                      os.path.join(ROOT, 'build', 'bridge', 'ytbridge'))

from harness import Bridge, FakeYouTrack, project, redact  # noqa: E402

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CLK_TCK = os.sysconf('SC_CLK_TCK')
IDLE_WINDOW = 30.0
CHANGE_EVERY = 3.0
SCRAPE_HZ = 10.0


def proc_status(pid):
    out = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _, value = line.partition(':')
            out[key] = value.strip()
    return out


def kib(status, key):
    return int(status[key].split()[0])


def rss_kib(pid):
    return kib(proc_status(pid), 'VmRSS')


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def ctx_switches(pid):
    """(voluntary, involuntary) summed over every thread of pid."""
    vol = invol = 0
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/status' % (pid, tid)) as f:
                text = f.read()
        except FileNotFoundError:
            continue
        vol += int(re.search(r'^voluntary_ctxt_switches:\s*(\d+)', text,
                             re.M).group(1))
        invol += int(re.search(r'^nonvoluntary_ctxt_switches:\s*(\d+)', text,
                               re.M).group(1))
    return vol, invol


def sample(text, name, labels=''):
    m = re.search(r'^%s%s (\S+)$' % (re.escape(name), re.escape(labels)),
                  text, re.M)
    return float(m.group(1)) if m else 0.0


class Soak:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix='ytbridge-soak-')
        self.errors = []
        self.scrapes = 0
        self.scrape_errors = 0
        self.changes_made = 0
        self.last_metrics = ''
        self.scraping = threading.Event()
        self.changing = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.projects = [project('0-%d' % i, 'P%d' % i, 'Project %d' % i)
                         for i in range(1, args.projects + 1)]

    # -- set-up -------------------------------------------------------------

    def start(self):
        self.fake = FakeYouTrack(projects=self.projects)
        self.bridge = Bridge(self.tmp, self.fake.url, page_size=500,
                             poll_interval=10, timeout=30,
                             first_run='baseline', sink_format='text',
                             log_level='info')
        self.daemon = self.bridge.start()
        self.pid = self.daemon.proc.pid
        end = time.monotonic() + 20
        port = None
        while port is None and time.monotonic() < end:
            if self.daemon.proc.poll() is not None:
                raise SystemExit('daemon exited:\n'
                                 + self.daemon.result().describe())
            m = re.search(r'httpd: listening on 127\.0\.0\.1:(\d+)',
                          self.daemon.result().stderr)
            if m:
                port = int(m.group(1))
            time.sleep(0.05)
        if port is None:
            raise SystemExit('no httpd port in the daemon log')
        self.base = 'http://127.0.0.1:%d' % port

    def get(self, path, timeout=5):
        with NO_PROXY.open(self.base + path, timeout=timeout) as resp:
            return resp.status, resp.read().decode('utf-8', 'replace')

    def metrics(self):
        return self.get('/metrics')[1]

    # -- load ---------------------------------------------------------------

    def scraper(self):
        period = 1.0 / SCRAPE_HZ
        nxt = time.monotonic()
        while not self.stopping.is_set():
            if not self.scraping.is_set():
                self.scraping.wait(0.2)
                nxt = time.monotonic()
                continue
            try:
                status, body = self.get('/metrics')
                if status != 200 or 'ytbridge_polls_total' not in body:
                    raise ValueError('status %d' % status)
                with self.lock:
                    self.scrapes += 1
                    self.last_metrics = body
            except Exception as e:  # noqa: BLE001 - counted, reported
                with self.lock:
                    self.scrape_errors += 1
                    if self.scrape_errors <= 5:
                        self.errors.append('scrape: %s' % e)
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.monotonic()

    def changer(self):
        i = 0
        while not self.stopping.is_set():
            if not self.changing.is_set():
                self.changing.wait(0.2)
                continue
            idx = (i * 7919) % len(self.projects)   # spread over all pages
            p = dict(self.projects[idx])
            p['name'] = 'Project %s r%d' % (p['id'], i)
            self.projects[idx] = p
            try:
                self.fake.set_projects(self.projects)
                with self.lock:
                    self.changes_made += 1
            except Exception as e:  # noqa: BLE001
                self.errors.append('change: %s' % e)
            i += 1
            if i % 50 == 0:
                try:
                    self.fake.clear_requests()   # keep the fake's log small
                except Exception:  # noqa: BLE001
                    pass
            self.stopping.wait(CHANGE_EVERY)

    def alive(self):
        if self.daemon.proc.poll() is not None:
            raise SystemExit('the daemon exited (rc %s):\n%s' % (
                self.daemon.proc.returncode,
                redact(self.daemon.result().stderr[-4000:])))

    def run(self):
        a = self.args
        t_start = time.monotonic()
        self.start()
        # After the first complete poll.
        end = time.monotonic() + 120
        while sample(self.metrics(), 'ytbridge_polls_total',
                     '{result="ok"}') < 1:
            self.alive()
            if time.monotonic() > end:
                raise SystemExit('no successful poll within 120 s')
            time.sleep(0.2)
        t0 = time.monotonic()
        rss_start = rss_kib(self.pid)
        cpu_start = cpu_seconds(self.pid)
        print('first poll after %.1f s; RSS %d KiB' % (t0 - t_start, rss_start),
              flush=True)

        threads = [threading.Thread(target=self.scraper, daemon=True),
                   threading.Thread(target=self.changer, daemon=True)]
        for t in threads:
            t.start()
        self.scraping.set()
        self.changing.set()
        load_end = t0 + max(60.0, a.minutes * 60 - IDLE_WINDOW)
        rss_min1 = None
        rss_samples = []
        next_report = t0 + 60
        while time.monotonic() < load_end:
            self.alive()
            time.sleep(min(1.0, max(0.0, load_end - time.monotonic())))
            now = time.monotonic()
            if now >= next_report:
                rss = rss_kib(self.pid)
                rss_samples.append(rss)
                if rss_min1 is None:
                    rss_min1 = rss
                with self.lock:
                    m = self.last_metrics
                print('minute %2d: RSS %6d KiB  CPU %.1f s  polls ok %d  '
                      'scrapes %d  changes %d' % (
                          round((now - t0) / 60), rss,
                          cpu_seconds(self.pid) - cpu_start,
                          sample(m, 'ytbridge_polls_total', '{result="ok"}'),
                          self.scrapes, self.changes_made), flush=True)
                next_report += 60
        if rss_min1 is None:
            rss_min1 = rss_kib(self.pid)

        # Idle window: no scrapes, no changes; the daemon keeps polling.
        self.scraping.clear()
        self.changing.clear()
        time.sleep(3)   # let the last change's poll/delivery settle
        v0, i0 = ctx_switches(self.pid)
        c0 = cpu_seconds(self.pid)
        w0 = time.monotonic()
        time.sleep(IDLE_WINDOW)
        v1, i1 = ctx_switches(self.pid)
        c1 = cpu_seconds(self.pid)
        window = time.monotonic() - w0
        self.alive()

        st = proc_status(self.pid)
        rss_end, hwm = kib(st, 'VmRSS'), kib(st, 'VmHWM')
        cpu_end = cpu_seconds(self.pid)
        threads_n = int(st['Threads'])
        m = self.metrics()
        self.stopping.set()
        for t in threads:
            t.join(10)
        elapsed = time.monotonic() - t0
        result = self.daemon.stop(signal.SIGTERM, timeout=30)

        polls_ok = sample(m, 'ytbridge_polls_total', '{result="ok"}')
        polls_all = sum(float(x) for x in re.findall(
            r'^ytbridge_polls_total\{[^}]*\} (\S+)$', m, re.M))
        changes = sum(float(x) for x in re.findall(
            r'^ytbridge_changes_total\{[^}]*\} (\S+)$', m, re.M))
        announced = len([ln for ln in result.stdout.splitlines()
                         if ln.startswith('project renamed:')])
        limit = rss_min1 * 1.10 + 2048
        grew = rss_end > limit

        print()
        print('ytbridge soak: %d projects, page_size 500, poll_interval 10 s, '
              'a change every %.0f s, /metrics at %.0f Hz' % (
                  len(self.projects), CHANGE_EVERY, SCRAPE_HZ))
        print('  duration         %.1f min after the first poll '
              '(first poll took %.1f s)' % (elapsed / 60, t0 - t_start))
        print('  RSS              start %d KiB, minute 1 %d KiB, end %d KiB '
              '(limit %d KiB), peak VmHWM %d KiB' % (
                  rss_start, rss_min1, rss_end, limit, hwm))
        print('  RSS per minute   %s' % ' '.join(str(x) for x in rss_samples))
        print('  CPU              %.1f s (%.2f%% of one core); idle window '
              '%.2f s' % (cpu_end - cpu_start,
                          100 * (cpu_end - cpu_start) / elapsed, c1 - c0))
        print('  idle wake-ups    %.2f/s (%d voluntary + %d involuntary '
              'context switches in %.0f s, %d threads)' % (
                  ((v1 - v0) + (i1 - i0)) / window, v1 - v0, i1 - i0,
                  window, threads_n))
        print('  polls            %d ok, %d total; %.3f s each on average' % (
            polls_ok, polls_all,
            sample(m, 'ytbridge_poll_duration_seconds_sum')
            / max(1.0, sample(m, 'ytbridge_poll_duration_seconds_count'))))
        print('  changes          %d made, %d counted, %d announced' % (
            self.changes_made, changes, announced))
        print('  scrapes          %d (%d failed)' % (self.scrapes,
                                                      self.scrape_errors))
        print('  daemon exit      %s' % result.rc)
        fails = list(self.errors)
        if grew:
            fails.append('RSS grew from %d to %d KiB (limit %d)'
                         % (rss_min1, rss_end, limit))
        if result.rc != 0:
            fails.append('daemon exit code %s' % result.rc)
        if polls_all != polls_ok:
            fails.append('%d polls failed' % (polls_all - polls_ok))
        if self.scrape_errors:
            fails.append('%d scrapes failed' % self.scrape_errors)
        if announced < self.changes_made * 0.9:
            fails.append('only %d of %d changes announced'
                         % (announced, self.changes_made))
        for f in fails:
            print('FAIL: %s' % f)
        print('RESULT: %s' % ('FAIL' if fails else 'PASS'))
        return 1 if fails else 0

    def cleanup(self):
        self.stopping.set()
        for obj in ('daemon', 'fake'):
            x = getattr(self, obj, None)
            if x is not None:
                try:
                    x.kill() if obj == 'daemon' else x.stop()
                except Exception:  # noqa: BLE001
                    pass
        shutil.rmtree(self.tmp, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--minutes', type=float, default=10.0)
    ap.add_argument('--projects', type=int, default=10000)
    args = ap.parse_args()
    soak = Soak(args)
    try:
        return soak.run()
    finally:
        soak.cleanup()


if __name__ == '__main__':
    sys.exit(main())
