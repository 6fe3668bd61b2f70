#!/usr/bin/env python3
"""contrib/prometheus and contrib/grafana: the alerting rules and the dashboard.

- MetricNames: every ytbridge_* name in the rules and in the dashboard's expressions is a
  family the daemon exports (bridge/metrics.c's family() calls; a histogram adds _bucket,
  _sum and _count), and the dashboard is JSON Grafana can import (panels with targets,
  templating, unique ids).
- Promtool: `promtool check rules` accepts the rules and `promtool test rules` passes the
  unit tests in ytbridge-rules.test.yml (each alert fires on its failure and not on the
  healthy series beside it). promtool comes from Debian's prometheus package
  (scripts/deps.sh).

Exits 77 (meson's "skipped") when every test it ran was skipped, e.g. Promtool without
promtool, so a missing tool never shows as a pass.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
PROM = os.path.join(SRC, 'contrib', 'prometheus')
RULES = os.path.join(PROM, 'ytbridge-rules.yml')
RULES_TEST = os.path.join(PROM, 'ytbridge-rules.test.yml')
DASHBOARD = os.path.join(SRC, 'contrib', 'grafana', 'ytbridge.json')
METRICS_C = os.path.join(SRC, 'bridge', 'metrics.c')

ALERTS = ('YtbridgeNoCompletePoll', 'YtbridgeTokenRefused', 'YtbridgeSinkBroken',
          'YtbridgeDeadLetters', 'YtbridgeOutboxGrowing', 'YtbridgeSlackDisconnected',
          'YtbridgeMatrixSyncStale', 'YtbridgeRestarting')


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def exported_names():
    """Every series name /metrics can carry, from metrics.c's family(f, NAME, TYPE, ...),
    render_histogram(f, NAME, ...) and render_counters(f, NAME, ...)."""
    names = set()
    text = read(METRICS_C)
    found = re.findall(r'family\(\s*f,\s*"(\w+)",\s*"(\w+)"', text)
    found += [(name, 'histogram')
              for name in re.findall(r'render_histogram\(\s*f,\s*"(\w+)"', text)]
    found += [(name, 'counter')
              for name in re.findall(r'render_counters\(\s*f,\s*"(\w+)"', text)]
    for name, kind in found:
        names.add(name)
        if kind in ('histogram', 'summary'):
            names |= {name + '_sum', name + '_count'}
        if kind == 'histogram':
            names.add(name + '_bucket')
    return names


def used_names(text):
    return set(re.findall(r'\bytbridge_\w+', text))


def rule_exprs():
    """[(alert, expr)] by text: no YAML library needed."""
    out, alert = [], None
    lines = read(RULES).splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'\s*- alert: (\w+)\s*$', line)
        if m:
            alert = m.group(1)
            continue
        m = re.match(r'(\s*)expr: (.*)$', line)
        if not m:
            continue
        expr = m.group(2).strip()
        if expr in ('|', '>', '|-', '>-'):
            body = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= len(m.group(1)):
                    break
                body.append(nxt.strip())
            expr = ' '.join(body).strip()
        out.append((alert, expr))
    return out


class MetricNames(unittest.TestCase):

    def setUp(self):
        self.exported = exported_names()
        # Guards the scan above: the fixed families are there, so a rename in metrics.c
        # that the regex misses shows up here rather than as a silent pass.
        for name in ('ytbridge_polls_total', 'ytbridge_sink_broken',
                     'ytbridge_poll_duration_seconds_bucket', 'ytbridge_slack_connected',
                     'ytbridge_matrix_last_sync_timestamp_seconds'):
            self.assertIn(name, self.exported)

    def test_rules_use_exported_metrics(self):
        exprs = rule_exprs()
        self.assertEqual(sorted(a for a, _ in exprs), sorted(ALERTS))
        for alert, expr in exprs:
            with self.subTest(alert=alert):
                used = used_names(expr)
                self.assertTrue(used, expr)
                self.assertFalse(used - self.exported,
                                 '%s: not exported by the daemon' % alert)
        # Annotations name metrics to look at: those must exist too.
        self.assertFalse(used_names(read(RULES)) - self.exported)

    def test_every_alert_says_what_to_do(self):
        text = read(RULES)
        for alert in ALERTS:
            start = text.index('- alert: %s\n' % alert)
            end = text.find('- alert:', start + 1)
            block = text[start:end if end > 0 else len(text)]
            with self.subTest(alert=alert):
                self.assertRegex(block, r'\n\s+summary: ')
                self.assertRegex(block, r'\n\s+description: ')
                self.assertRegex(block, r'\n\s+severity: (warning|critical)\n')
                # Each alert has a case in the unit tests.
                self.assertIn('alertname: %s\n' % alert, read(RULES_TEST))

    def test_dashboard(self):
        dash = json.loads(read(DASHBOARD))
        self.assertEqual(dash['uid'], 'ytbridge')
        self.assertIsInstance(dash['schemaVersion'], int)
        ids = [p['id'] for p in dash['panels']]
        self.assertEqual(len(ids), len(set(ids)), 'panel ids repeat')
        exprs = []
        for p in dash['panels']:
            if p['type'] == 'row':
                continue
            with self.subTest(panel=p['title']):
                self.assertTrue(p['targets'])
                self.assertIn('gridPos', p)
                for t in p['targets']:
                    self.assertIn('$instance', t['expr'])
                    exprs.append(t['expr'])
        for var in dash['templating']['list']:
            if var['type'] == 'query':
                exprs.append(var['definition'])
        exprs += [a['expr'] for a in dash['annotations']['list']]
        used = set()
        for expr in exprs:
            used |= used_names(expr)
        self.assertFalse(used - self.exported, 'the dashboard names metrics the daemon '
                         'does not export')
        # Every family the daemon exports has a panel.
        families = {n for n in self.exported
                    if not (n + '_bucket' in self.exported
                            or re.search(r'_(sum|count)$', n)
                            and n.rsplit('_', 1)[0] + '_bucket' in self.exported)}
        families.discard('ytbridge_build_info')  # the $instance variable's source
        self.assertFalse(families - used, 'exported but on no panel')


class Promtool(unittest.TestCase):

    def promtool(self, *args, cwd=None):
        tool = shutil.which('promtool')
        if not tool:
            self.skipTest('promtool is not installed (Debian package prometheus; '
                          'scripts/deps.sh installs it)')
        proc = subprocess.run([tool] + list(args), capture_output=True, text=True,
                              timeout=120, cwd=cwd)
        if proc.returncode != 0:
            self.fail('promtool %s (exit %d):\n%s%s' % (' '.join(args), proc.returncode,
                                                        proc.stdout, proc.stderr))
        return proc.stdout

    def test_check_rules(self):
        out = self.promtool('check', 'rules', RULES)
        self.assertIn('SUCCESS: %d rules found' % len(ALERTS), out)

    def test_rules_unit_tests(self):
        # rule_files in the test file are relative to it.
        self.promtool('test', 'rules', os.path.basename(RULES_TEST), cwd=PROM)


def main():
    prog = unittest.main(verbosity=2, exit=False)
    result = prog.result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.testsRun and len(result.skipped) == result.testsRun:
        sys.stderr.write('every test was skipped: %s\n' % result.skipped[0][1])
        sys.exit(77)
    sys.exit(0)


if __name__ == '__main__':
    main()
