#!/usr/bin/env python3
"""A hostile or broken YouTrack: answers that contradict themselves (one id
twice in a page, one legacy short name twice) fail the poll and announce
nothing; a server that echoes our Authorization header back (raw,
percent-encoded, base64'd, in a redirect Location) gets the token into none of
the daemon's outputs: stderr, stdout, /readyz, /metrics, the youtrack_auth
alert a sink receives, the chat `status` answer."""

import base64
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (TOKEN, BridgeTest, DeliveryTest,  # noqa: E402
                     deadline_wait, main, project)
from test_ops import OpsMixin, value_of  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'fakes'))
from fake_youtrack import ECHO_FORMS  # noqa: E402

BASE = [project('0-1', 'DEV', 'Development'), project('0-2', 'OPS', 'Ops')]
ROOM = '!room1:localhost'


def token_traces():
    """Every way the token could show: itself, percent-encoded, and the
    middle of each base64 run that encodes it (at each byte alignment, either
    alphabet) -- the ends of a run mix in neighbouring bytes."""
    pct = urllib.parse.quote(TOKEN, safe='')
    traces = {TOKEN, pct, pct.lower(), TOKEN.split(':', 1)[1]}
    raw = TOKEN.encode()
    for skip in range(3):
        whole = (len(raw) - skip) // 3 * 3
        core = base64.b64encode(raw[skip:skip + whole]).decode()
        traces.add(core[2:-2])
        traces.add(core.replace('+', '-').replace('/', '_')[2:-2])
    return sorted(traces)


TRACES = token_traces()


def leaks(text):
    """Which traces text holds (by index, so a failure message never prints
    the token)."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    return [i for i, t in enumerate(TRACES) if t in text]


class DuplicateIds(BridgeTest):

    def test_conflicting_duplicate_ids_fail_the_poll_in_either_order(self):
        self.baseline(BASE)
        a = project('0-1', 'DEV', 'Development')
        b = project('0-1', 'DEVX', 'Something else')
        # page_size 2 puts both copies of 0-1 in the first page; a server
        # alternating their order made the kept one flip: a rename each poll.
        for order in ([a, b, BASE[1]], [b, a, BASE[1]]):
            self.fake.set_projects(order)
            before = self.bridge.state_listing()
            result = self.bridge.once()
            self.assert_poll_failed(result, ['protocol'], before)
            self.check('two projects with the id "0-1"' in result.stderr,
                       'stderr does not say which id repeats', result)
        # A sane answer again: nothing had changed.
        self.fake.set_projects(BASE)
        result = self.assert_ok(self.bridge.once())
        self.assert_events(result, [])


class LegacyDuplicateShortNames(BridgeTest):
    fake_args = ('--legacy',)

    def test_a_repeated_short_name_fails_the_poll(self):
        self.baseline(BASE)
        self.fake.set_projects(BASE + [project('0-9', 'DEV', 'Impostor')])
        before = self.bridge.state_listing()
        result = self.bridge.once()
        self.assert_poll_failed(result, ['protocol'], before)
        self.check('two projects with the short name "DEV"' in result.stderr,
                   'stderr does not say which short name repeats', result)


class DuplicateIdsCounted(OpsMixin, BridgeTest):

    def test_the_failed_poll_is_counted(self):
        self.baseline(BASE)
        self.fake.set_projects([BASE[0], project('0-1', 'DEVX', 'Other')])
        self.start_ops()
        self.wait_metric(lambda f: (value_of(f, 'ytbridge_polls_total',
                                             result='protocol') or 0) >= 1,
                         timeout=15, what='a failed poll counted as protocol')
        status, doc = self.ready()
        self.assertEqual(status, 503)
        self.assertRegex(doc['checks']['youtrack'], r'^protocol: ')
        result = self.stop_clean()
        self.assert_events(result, [])


class EchoedToken(OpsMixin, DeliveryTest):

    def assert_no_trace(self, text, what, result=None):
        hit = leaks(text)
        self.check(not hit, 'the token (traces %r) appears in %s' % (hit, what),
                   result)

    def test_no_log_line_repeats_an_echoed_token(self):
        cases = [('echo_401', [f]) for f in ECHO_FORMS]
        cases += [('echo_500', ['pct', 'basic', 'b64url']),
                  ('echo_redirect', ['pct', 'pct_lower', 'b64']),
                  ('echo_redirect', ['plus'])]
        for mode, forms in cases:
            with self.subTest(mode=mode, forms=forms):
                self.fake.fault(mode, forms=forms)
                result = self.bridge.once()
                self.check(result.rc == 1, 'the poll must fail', result)
                self.assert_no_trace(result.stderr, 'stderr (%s %s)'
                                     % (mode, forms), result)
                self.assert_no_trace(result.stdout, 'stdout', result)
                self.check('[REDACTED]' in result.stderr,
                           'the echo was not even seen', result)

    def raw_received(self, receiver):
        """The receiver's records as they arrived (harness.received()
        redacts the raw token, which would hide exactly what we look for)."""
        return json.dumps(self.rx._call(
            'GET', '/_control/received?receiver=%s&min_gap=0' % receiver))

    def test_readyz_metrics_alert_and_chat_status_stay_clean(self):
        self.use_sinks(self.rx.webhook_sink(name='ci'))
        self.quiet_baseline(BASE)
        self.bridge.configure(chat={'matrix': self.rx.matrix_chat()})
        self.rx.queue_sync({'rooms': {'join': {ROOM: {'timeline': {
            'events': [], 'limited': False, 'prev_batch': 't0'}}}}})
        self.fake.fault('echo_401', forms=['raw', 'pct', 'basic'])
        self.start_ops()
        doc = self.wait_ready(503, lambda d: d['checks']['youtrack'].startswith(
            'auth:'), timeout=20, what='the auth failure in /readyz')
        self.assert_no_trace(json.dumps(doc), '/readyz')
        self.assertIn('[REDACTED]', doc['checks']['youtrack'])
        self.assert_no_trace(self.request('GET', '/metrics')[2], '/metrics')

        def alert():
            got = json.loads(self.raw_received('hook'))['accepted']
            return [r for r in got if 'youtrack_auth' in json.dumps(r)]
        try:
            deadline_wait(alert, 20, what='the youtrack_auth alert')
        except AssertionError as e:
            self.fail_with(str(e), self.daemon.result())
        self.assert_no_trace(self.raw_received('hook'), 'the alert')

        self.rx.queue_sync({'rooms': {'join': {ROOM: {'timeline': {
            'events': [{'type': 'm.room.message', 'event_id': '$st',
                        'sender': '@alice:localhost',
                        'origin_server_ts': 1700000009000,
                        'unsigned': {'age': 10},
                        'content': {'msgtype': 'm.text',
                                    'body': '!youtrack status'}}],
            'limited': False, 'prev_batch': 't1'}}}}})

        def status_reply():
            got = json.loads(self.raw_received('matrix'))['accepted']
            return [r for r in got if 'Last error' in json.dumps(r)]
        try:
            deadline_wait(status_reply, 20, what='the status answer')
        except AssertionError as e:
            self.fail_with(str(e), self.daemon.result())
        self.assertIn('[REDACTED]', json.dumps(status_reply()))
        self.assert_no_trace(self.raw_received('matrix'), 'the chat answer')
        result = self.daemon.stop(timeout=20)
        self.assert_no_trace(result.stderr, 'stderr', result)
        self.assert_no_trace(result.stdout, 'stdout', result)


if __name__ == '__main__':
    main()
