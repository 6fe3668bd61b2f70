#!/usr/bin/env python3
"""`/youtrack` over Slack Socket Mode, against tests/fakes/fake_slack.py (the
Web API method apps.connections.open plus a hand-written RFC 6455 server).

What is asserted is what a Slack user and an operator see: every slash command
is acknowledged within a bound with the right answer in the ack's payload;
retries of one envelope are acknowledged but answered once; a flood of commands
is acked within Slack's window and answered only within the rate limits.
The socket's life is in test_slack_socket.py, its back-off in
test_slack_backoff.py (FakeSlack and SlackTest are shared from here; three
files so that meson runs their waits side by side)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (SCALE, BridgeTest, _FakeProcess, deadline_wait,  # noqa: E402
                     libconfig_value, main, project, slack_body_problem, slack_literal)
from test_ops import OpsMixin  # noqa: E402

FAKE_SLACK = os.environ.get('FAKE_SLACK') or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', 'fakes', 'fake_slack.py')
APP_TOKEN = 'xapp-test-fake-app-token'
PROJECTS = [project('0-1', 'DEV', 'Development'),
            project('0-2', 'OPS', 'Operations <&> "quoted"', archived=True),
            project('0-3', 'WEB', 'Website')]
ACK_BOUND_MS = 500 * SCALE  # Slack's deadline is 3000 ms; answers are local


class FakeSlack(_FakeProcess):
    def __init__(self):
        self._spawn([sys.executable, FAKE_SLACK, '--port', '0'])

    def state(self):
        return self._call('GET', '/_control/state')

    def envelope(self, **kw):
        kw.setdefault('wait_ack', 5 * SCALE)
        return self._call('POST', '/_control/envelope', kw)

    def behaviour(self, **kw):
        return self._call('PUT', '/_control/behaviour', kw)

    def flood(self, **kw):
        kw.setdefault('wait_ack', 8 * SCALE)
        return self._call('POST', '/_control/flood', kw)['results']

    def disconnect(self, reason, **kw):
        kw['reason'] = reason
        return self._call('POST', '/_control/disconnect', kw)

    def open_ids(self):
        """Sockets open and said hello, not closing."""
        st = self.state()
        hello = {c['id'] for c in st['connections'] if c.get('hello_sent')}
        return [i for i in st['open'] if i in hello]

    def replaced(self, old):
        """One socket is open, said hello, and is not one of old (one state read)."""
        st = self.state()
        hello = {c['id'] for c in st['connections'] if c.get('hello_sent')}
        return len(st['open']) == 1 and st['open'][0] in hello and st['open'][0] not in old


class SlackTest(OpsMixin, BridgeTest):

    def setUp(self):
        super().setUp()
        self.fake.set_projects(PROJECTS)
        self.slack = FakeSlack()
        self.addCleanup(self.slack.stop)
        # The rate limits out of the way, but in TestFlood: these tests send
        # commands faster than a person would.
        self.chat = {'app_token': APP_TOKEN,
                     'api_url': self.slack.url + '/api',
                     'commands_per_user': 10000, 'commands_per_second': 1000}

    def write_config(self, **chat):
        settings = dict(self.chat, **chat)
        body = ' '.join('%s = %s;' % (k, libconfig_value(v))
                        for k, v in settings.items())
        self.bridge.write_config(self.bridge.config_text()
                                 + 'chat: { slack: { %s }; };\n' % body)

    def start(self, **chat):
        """The daemon, after its first poll (answers come from the snapshot)
        and with one socket up."""
        self.write_config(**chat)
        daemon = self.start_ops()
        deadline_wait(lambda: len(daemon.result().messages) >= len(PROJECTS),
                      15 * SCALE, what='the first poll announced')
        self.wait_sockets(1)
        return daemon

    def wait_sockets(self, n, timeout=15):
        deadline_wait(lambda: len(self.slack.open_ids()) == n
                      and len(self.slack.state()['open']) == n, timeout * SCALE,
                      what='%d Socket Mode socket(s)' % n)

    def assert_answer(self, r, *needles):
        self.check(r['ack'] is not None, 'no ack for envelope %r' % (r,))
        self.check(r['ack_latency_ms'] <= ACK_BOUND_MS,
                   'ack after %.1f ms' % r['ack_latency_ms'])
        payload = r['ack'].get('payload')
        self.check(isinstance(payload, dict), 'ack without payload: %r' % r['ack'])
        self.assertEqual(payload.get('response_type'), 'ephemeral')
        problem = slack_body_problem(payload, answer=True)
        self.check(problem is None, '%s in %r' % (problem, payload))
        text = json.dumps(payload, ensure_ascii=False)
        for needle in needles:
            self.check(needle in text, '%r not in the answer %s' % (needle, text))
        return payload

    def stop_clean(self, daemon):
        result = daemon.stop()
        self.assert_no_token(result)
        self.check(APP_TOKEN not in result.stderr and APP_TOKEN not in result.stdout,
                   'the app token appears in the daemon output', result)
        return result


class TestCommands(SlackTest):

    def test_answers_in_the_ack(self):
        daemon = self.start()
        r = self.slack.envelope(text='projects')
        payload = self.assert_answer(r, 'DEV', 'Development', 'WEB')
        # Hostile names as in notifications (assert_answer() checked the shape):
        # in the blocks the literal label of their link, in the fallback (here
        # only `project`'s) entity-escaped.
        for p in (payload, self.assert_answer(self.slack.envelope(text='project OPS'))):
            self.check(slack_literal(p, 'link', 'Operations <&> "quoted"') == 1, repr(p))
            self.check('<&>' not in p['text'], p['text'])
        self.check('Operations &lt;&amp;&gt; "quoted"' in p['text'], p['text'])
        self.assert_answer(self.slack.envelope(text='projects web'), 'Website')
        self.assert_answer(self.slack.envelope(text='project OPS'), 'Operations')
        self.assert_answer(self.slack.envelope(text='status'), 'Last successful poll')
        self.assert_answer(self.slack.envelope(text='changes'), 'Created')
        self.assert_answer(self.slack.envelope(text='nonsense'), 'projects')
        lat = sorted(self.slack.envelope(text='projects')['ack_latency_ms']
                     for _ in range(20))
        self.check(lat[-1] <= ACK_BOUND_MS, 'slowest ack %.1f ms' % lat[-1])
        self.stop_clean(daemon)

    def test_answers_follow_each_snapshot(self):
        # Answers come from an index of the snapshot that is built anew at each
        # commit (never patched): a project created or renamed in YouTrack is in
        # the answers once the poll that saw it has been committed (its message
        # is delivered after the commit), found by a filter in any case.
        daemon = self.start()
        self.assert_answer(self.slack.envelope(text='projects'), '3 projects', 'Website')
        self.assert_answer(self.slack.envelope(text='projects über'), 'No project matches')
        self.fake.set_projects(PROJECTS[:2] + [project('0-3', 'WEB', 'ÜBERBLICK'),
                                               project('0-4', 'STR', 'Straße')])
        deadline_wait(lambda: len(daemon.result().events) >= len(PROJECTS) + 2,
                      30 * SCALE, what='the second poll announced')
        payload = self.assert_answer(self.slack.envelope(text='projects'), '4 projects',
                                     'ÜBERBLICK', 'Straße')
        self.check('Website' not in json.dumps(payload, ensure_ascii=False), payload)
        self.assert_answer(self.slack.envelope(text='projects über'), '1 project',
                           'ÜBERBLICK')
        self.assert_answer(self.slack.envelope(text='projects STRASSE'), 'Straße')
        self.assert_answer(self.slack.envelope(text='project str'), 'Straße')
        self.assert_answer(self.slack.envelope(text='status'), '4')
        self.stop_clean(daemon)

    def test_retries_are_acked_but_answered_once(self):
        daemon = self.start()
        for attempt in range(3):
            r = self.slack.envelope(text='projects', envelope_id='env-dup-1',
                                    retry_attempt=attempt,
                                    retry_reason='timeout' if attempt else None)
            self.check(r['ack'] is not None, 'retry %d not acked' % attempt)
        acks = [a for a in self.slack.state()['acks']
                if a['envelope_id'] == 'env-dup-1']
        self.assertEqual(len(acks), 3)
        answered = [a for a in acks if a['json'].get('payload')]
        self.assertEqual(len(answered), 1, 'answered %d times' % len(answered))
        self.stop_clean(daemon)

    def test_refusals_and_odd_frames(self):
        daemon = self.start(allowed_users=['UALLOWED1'], allowed_channels=[])
        self.assert_answer(self.slack.envelope(text='projects', user_id='UOTHER1'),
                           'cannot use this command')
        self.assert_answer(self.slack.envelope(text='projects', user_id='UALLOWED1'),
                           'Development')
        # Another command of the same app gets a polite refusal, not data.
        self.assert_answer(self.slack.envelope(text='projects', user_id='UALLOWED1',
                                               command='/other'), 'only its own')
        # A fragmented envelope is reassembled; a binary one is ignored.
        self.assert_answer(self.slack.envelope(text='projects', user_id='UALLOWED1',
                                               fragment=4), 'Development')
        r = self.slack.envelope(text='projects', user_id='UALLOWED1', binary=True,
                                wait_ack=1)
        self.assertIsNone(r['ack'])
        # Garbage and unknown types change nothing; events are acked bare.
        self.slack._call('POST', '/_control/raw', {'text': '{not json'})
        self.slack._call('POST', '/_control/raw', {'text': '{"type":"surprise"}'})
        r = self.slack.envelope(type='events_api', payload={'event': {'type': 'x'}})
        self.assertEqual(r['ack'], {'envelope_id': r['envelope_id']})
        # Over the size cap: dropped, the socket lives on.
        self.slack._call('POST', '/_control/oversize', {'size': 2 * 1024 * 1024,
                                                        'wait_ack': 1})
        self.assert_answer(self.slack.envelope(text='projects', user_id='UALLOWED1'),
                           'Development')
        self.assertEqual(len(self.slack.state()['open']), 1)
        self.stop_clean(daemon)

    def test_response_url_when_the_ack_cannot_carry_it(self):
        daemon = self.start()
        r = self.slack.envelope(text='projects', accepts_response_payload=False)
        self.assertEqual(r['ack'], {'envelope_id': r['envelope_id']})
        deadline_wait(lambda: self.slack.state()['responses'], 5 * SCALE,
                      what='the answer posted to response_url')
        posted = self.slack.state()['responses'][0]
        self.check('Development' in json.dumps(posted), repr(posted))
        self.stop_clean(daemon)


    def test_response_url_loopback_is_decided_by_address(self):
        # The rule of bridge/url.c: localhost is loopback; a URL whose userinfo
        # starts like 127.0.0.1 goes to the host after the '@' and is not.
        daemon = self.start()
        port = int(self.slack.url.rsplit(':', 1)[1])
        r = self.slack.envelope(text='projects', accepts_response_payload=False,
                                response_url='http://localhost:%d/commands/by-name' % port)
        self.assertEqual(r['ack'], {'envelope_id': r['envelope_id']})
        deadline_wait(lambda: self.slack.state()['responses'], 5 * SCALE,
                      what='the answer posted to a http://localhost response_url')
        self.slack.envelope(text='projects', accepts_response_payload=False,
                            response_url='http://127.0.0.1:%d@127.example.net/x' % port)
        deadline_wait(lambda: 'response_url is neither https:// nor a loopback'
                      in daemon.result().stderr, 5 * SCALE,
                      what='the non-loopback response_url refused')
        self.assertEqual(len(self.slack.state()['responses']), 1)
        self.stop_clean(daemon)

def rss_of(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


class TestFlood(SlackTest):

    def test_flood_is_limited_and_acked_in_time(self):
        # 5 commands a minute per user, 10 a second in all (a burst of 20).
        daemon = self.start(commands_per_user=5, commands_per_second=10)
        self.assert_answer(self.slack.envelope(text='status', user_id='U0WARMUP'),
                           'Last successful poll')
        idle = rss_of(daemon.proc.pid)
        users = ['U0FLOOD%d' % i for i in range(8)]
        t0 = time.monotonic()
        results = self.slack.flood(count=2000, users=users, text='projects')
        elapsed = time.monotonic() - t0
        self.assertEqual(len(results), 2000)
        missing = [r for r in results if r['ack_latency_ms'] is None]
        self.check(not missing, '%d envelopes never acked' % len(missing))
        slowest = max(r['ack_latency_ms'] or 0 for r in results)
        # Slack gives up on an ack after 3 s; the bound leaves room for the fake.
        self.check(slowest <= 3000 * SCALE, 'slowest ack %.0f ms' % slowest)
        answered = [r for r in results if r['text'] and 'Development' in r['text']]
        told = [r for r in results if r['text'] and 'Slow down' in r['text']]
        empty = [r for r in results if r['ack_latency_ms'] is not None and not r['text']]
        # Each user: its burst, plus one per 12 s that passed; told to slow down once per
        # stretch of refusals (so never more often than it was answered after one).
        per_user_cap = 5 + int(elapsed / 12) + 1
        for u in users:
            mine = [r for r in results if r['user'] == u]
            n_answered = sum(1 for r in mine if r in answered)
            n_told = sum(1 for r in mine if r in told)
            self.check(n_answered <= per_user_cap,
                       '%s answered %d times (cap %d)' % (u, n_answered, per_user_cap))
            self.check(1 <= n_told <= n_answered + 1, '%s told %d times' % (u, n_told))
        self.check(len(answered) + len(told) + len(empty) == 2000 - len(missing),
                   'acks of another kind: %r' % [r for r in results if r['text']
                                                 and r not in answered and r not in told][:3])
        self.check(len(empty) >= 1900, 'only %d refusals were silent' % len(empty))
        # Everybody else is answered again as soon as the global budget refills (2 s).
        deadline_wait(lambda: 'Development' in json.dumps(
            self.slack.envelope(text='projects', user_id='U0LATER1')['ack'] or {}),
            10 * SCALE, step=0.5, what='an answer to another user after the flood')
        with open('/proc/%d/maps' % daemon.proc.pid) as f:
            instrumented = 'libasan' in f.read() or os.environ.get('YTBRIDGE_WRAPPER')
        if not instrumented:
            grown = rss_of(daemon.proc.pid) - idle
            self.check(grown < 4096, 'RSS grew %d KiB over the flood' % grown)
        limited = {tuple(sorted(labels.items())): value for _, labels, value in
                   self.metrics()['ytbridge_commands_limited_total']['samples']}
        self.check(limited.get((('platform', 'slack'),), 0) >= len(told) + len(empty),
                   'ytbridge_commands_limited_total: %r' % limited)
        self.stop_clean(daemon)


if __name__ == '__main__':
    main()
