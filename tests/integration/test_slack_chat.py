#!/usr/bin/env python3
"""`/youtrack` over Slack Socket Mode, against tests/fakes/fake_slack.py (the
Web API method apps.connections.open plus a hand-written RFC 6455 server).

What is asserted is what a Slack user and an operator see: every slash command
is acknowledged within a bound with the right answer in the ack's payload;
retries of one envelope are acknowledged but answered once; a refresh is
make-before-break with no envelope lost; a hundred forced reconnects leave
one socket and no leaked descriptor; a close frame Slack never answers costs
about a second; link_disabled and a refused token stop the reconnect loop and
alert; the bridge never holds more than two sockets; a flood of commands is
acked within Slack's window and answered only within the rate limits."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (SCALE, BridgeTest, _FakeProcess, deadline_wait,  # noqa: E402
                     libconfig_value, main, project)
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
        # Hostile names are escaped for mrkdwn exactly like notifications.
        text = json.dumps(payload, ensure_ascii=False)
        self.check('&lt;&amp;&gt;' in text and '<&>' not in text, text)
        self.assert_answer(self.slack.envelope(text='projects web'), 'Website')
        self.assert_answer(self.slack.envelope(text='project OPS'), 'Operations')
        self.assert_answer(self.slack.envelope(text='status'), 'Last successful poll')
        self.assert_answer(self.slack.envelope(text='changes'), 'Created')
        self.assert_answer(self.slack.envelope(text='nonsense'), 'projects')
        lat = sorted(self.slack.envelope(text='projects')['ack_latency_ms']
                     for _ in range(20))
        self.check(lat[-1] <= ACK_BOUND_MS, 'slowest ack %.1f ms' % lat[-1])
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


class TestConnection(SlackTest):

    def test_refresh_is_make_before_break(self):
        daemon = self.start()
        old = self.slack.open_ids()[0]
        self.slack.behaviour(hello={'delay': 1.0})
        self.slack.disconnect('refresh_requested', conn=old)
        # While the new socket waits for its hello, the old one still answers. Each envelope
        # goes to the old socket while it is open, else to the new one: the fake picks
        # atomically (fallback), as Slack does, so the old socket closing between a look at
        # the state and the send cannot make the test address a closed socket.
        sent = 0
        t_end = time.monotonic() + 2.5 * SCALE
        while time.monotonic() < t_end:
            r = self.slack.envelope(conn=old, fallback='newest', text='projects')
            if r['ack'] is None and r['conn'] == old:
                # It crossed our close frame (sent once the new socket said hello): unacked,
                # so Slack redelivers it, as a retry, on the new socket, where it is answered.
                self.wait_sockets(1)
                r = self.slack.envelope(conn=self.slack.open_ids()[0], text='projects',
                                        envelope_id=r['envelope_id'], retry_attempt=1)
            self.assert_answer(r, 'Development')
            sent += 1
            # Pacing, not a wait for a condition: envelopes keep coming before, during and
            # after the 1 s hello delay of the refresh, which is the window under test.
            time.sleep(0.05)
        self.check(sent >= 10, 'only %d envelopes sent' % sent)
        self.wait_sockets(1)
        st = self.slack.state()
        self.check(st['max_open'] <= 2, 'held %d sockets' % st['max_open'])
        rec = {c['id']: c for c in st['connections']}
        self.assertEqual(rec[old]['closed_by'], 'client_close_frame')
        new = self.slack.open_ids()[0]
        self.check(new != old, 'still on the old socket')
        # The old socket went only after the new one said hello.
        self.check(rec[old]['client_close_at'] >= rec[new]['hello_at'],
                   'the old socket was closed before the new one was up')
        self.stop_clean(daemon)

    def test_hundred_reconnects_leak_nothing(self):
        daemon = self.start()
        fds = len(os.listdir('/proc/%d/fd' % daemon.proc.pid))
        # Slack's routine reasons are followed at once; the kills count as failures and back off
        # (1 s, 2 s, 4 s, 8 s), which the deadline allows for.
        reasons = ['refresh_requested', 'warning']
        for i in range(100):
            cur = self.slack.open_ids()[0]
            if i % 25 == 24:
                self.slack._call('POST', '/_control/kill', {'conn': cur})
            else:
                self.slack.disconnect(reasons[i % len(reasons)], conn=cur)
            deadline_wait(lambda: self.slack.replaced([cur]), 20 * SCALE,
                          what='reconnect %d' % i)
        st = self.slack.state()
        self.check(st['max_open'] <= 2, 'held %d sockets' % st['max_open'])
        self.assertEqual(len(st['open']), 1)
        self.check(not st['rejected_upgrades'], repr(st['rejected_upgrades']))
        self.check(len(st['connections']) >= 101, '%d sockets' % len(st['connections']))
        # The last close waits at most ~1 s for Slack's answer; a leak never goes away.
        fd_dir = '/proc/%d/fd' % daemon.proc.pid
        after = [None]

        def released():
            after[0] = len(os.listdir(fd_dir))
            return after[0] <= fds + 2
        try:
            deadline_wait(released, 3, what='the closed sockets\' descriptors released')
        except AssertionError:
            pass    # reported below, with the numbers
        self.check(after[0] <= fds + 2, 'descriptors %d -> %d' % (fds, after[0]))
        self.assert_answer(self.slack.envelope(text='projects'), 'Development')
        self.stop_clean(daemon)

    def test_too_many_websockets_backs_off(self):
        # Slack keeps saying too_many_websockets to every new socket (another replica, or
        # sockets leaked by someone else): the bridge renews with growing pauses, never in a
        # hot loop, and never holds more than two sockets.
        daemon = self.start()
        self.slack.behaviour(max_connections=1)
        self.slack.disconnect('refresh_requested')
        # The behaviour under test is a rate over a window of the daemon's clock (its back-off
        # of 1, 2, 4, 8 s): the window must pass; its timers do not slow down with SCALE.
        time.sleep(15)
        st = self.slack.state()
        self.check(len(st['open_calls']) <= 7, '%d connection opens in 15 s'
                   % len(st['open_calls']))
        self.check(st['max_open'] <= 2, 'held %d sockets' % st['max_open'])
        gaps = [b['t'] - a['t'] for a, b in zip(st['open_calls'][1:], st['open_calls'][2:])]
        self.check(gaps == sorted(gaps) or max(gaps) >= 2.0,
                   'pauses do not grow: %r' % gaps)
        # Once Slack relents, one socket again.
        self.slack.behaviour(max_connections=10)
        self.wait_sockets(1, timeout=90)
        self.assert_answer(self.slack.envelope(text='projects'), 'Development')
        self.stop_clean(daemon)

    def test_close_before_hello_backs_off(self):
        self.slack.behaviour(hello='never')
        self.write_config()
        daemon = self.start_ops()
        deadline_wait(lambda: self.slack.state()['open'], 10 * SCALE, what='a socket')
        # Slack closes each socket before its hello: each is a failed attempt. A rate over a
        # window of the daemon's back-off (not scaled: its timers are the wall clock).
        t_end = time.monotonic() + 8
        while time.monotonic() < t_end:
            for conn in self.slack.state()['open']:
                self.slack._call('POST', '/_control/close', {'conn': conn, 'code': 1011})
            time.sleep(0.05)
        calls = self.slack.state()['open_calls']
        self.check(len(calls) <= 5, '%d connection opens in 8 s' % len(calls))
        self.slack.behaviour(hello='immediate')
        self.wait_sockets(1, timeout=90)
        self.stop_clean(daemon)

    def test_reloads_reconnect_and_leak_nothing(self):
        daemon = self.start()

        def rss_kib():
            with open('/proc/%d/status' % daemon.proc.pid) as f:
                return int(next(l for l in f if l.startswith('VmRSS:')).split()[1])
        for i in range(25):
            if i == 5:
                before = rss_kib()
            cur = self.slack.open_ids()
            daemon.proc.send_signal(signal.SIGHUP)
            deadline_wait(lambda: self.slack.replaced(cur), 20 * SCALE,
                          what='the socket after reload %d' % i)
            self.assert_answer(self.slack.envelope(text='projects'), 'Development')
        grown = rss_kib() - before
        with open('/proc/%d/maps' % daemon.proc.pid) as f:
            instrumented = 'libasan' in f.read() or os.environ.get('YTBRIDGE_WRAPPER')
        if not instrumented:  # ASan's quarantine and valgrind's own heap grow by design
            # Measured: 24-36 KiB; a websocket context per reload would add about 600 KiB.
            self.check(grown < 256, 'RSS grew %d KiB over 20 reloads' % grown)
        st = self.slack.state()
        self.check(st['max_open'] <= 2, 'held %d sockets' % st['max_open'])
        self.stop_clean(daemon)

    def test_unanswered_close_is_dropped_after_a_second(self):
        daemon = self.start()
        old = self.slack.open_ids()[0]
        self.slack.behaviour(answer_close=False)
        self.slack.disconnect('refresh_requested', conn=old)
        deadline_wait(lambda: {c['id']: c for c in self.slack.state()['connections']}
                      [old].get('closed_at'), 10 * SCALE, what='the old socket dropped')
        rec = {c['id']: c for c in self.slack.state()['connections']}[old]
        self.assertEqual(rec['closed_by'], 'client_close_frame')
        waited = rec['closed_at'] - rec['client_close_at']
        self.check(0.5 <= waited <= 2.5 * SCALE, 'dropped %.2f s after the close' % waited)
        self.stop_clean(daemon)

    def test_silent_socket_is_replaced(self):
        daemon = self.start()
        old = self.slack.open_ids()[0]
        self.slack._call('PUT', '/_control/connection', {'conn': old, 'autopong': False})
        deadline_wait(lambda: old not in self.slack.state()['open'], 45 * SCALE,
                      what='the silent socket dropped')
        rec = {c['id']: c for c in self.slack.state()['connections']}[old]
        self.check(rec['pings_received'] >= 1, 'the bridge never pinged')
        self.wait_sockets(1)
        self.assert_answer(self.slack.envelope(text='projects'), 'Development')
        self.stop_clean(daemon)

    def test_no_hello_means_retry_with_backoff(self):
        self.slack.behaviour(hello='never')
        self.write_config()
        daemon = self.start_ops()
        deadline_wait(lambda: len(self.slack.state()['open_calls']) >= 2, 40 * SCALE,
                      what='a second connection attempt')
        calls = self.slack.state()['open_calls']
        # The next attempt only after the 10 s hello timeout: never a hot loop.
        gap = calls[1]['t'] - calls[0]['t']
        self.check(gap >= 9.5, 'second attempt after %.2f s' % gap)
        st = self.slack.state()
        self.check(st['max_open'] <= 1, 'held %d sockets' % st['max_open'])
        status, _, body = self.request('GET', '/readyz')
        self.assertEqual(status, 503)
        self.check('not connected' in json.loads(body)['checks']['slack'], body)
        self.slack.behaviour(hello='immediate')
        self.wait_sockets(1, timeout=70)
        self.assert_answer(self.slack.envelope(text='projects'), 'Development')
        self.stop_clean(daemon)

    def test_open_errors_upgrade_refusals_and_rate_limits(self):
        self.slack._call('PUT', '/_control/open_script', {'answers': [
            {'status': 200, 'body': {'ok': False, 'error': 'fatal_error'}},
            {'status': 429, 'retry_after': 3},
            {'status': 500, 'body': '<html>oops</html>'},
        ]})
        self.slack._call('PUT', '/_control/refuse_upgrade', {'count': 2, 'status': 409})
        self.write_config()
        daemon = self.start_ops()
        self.wait_sockets(1, timeout=90)
        st = self.slack.state()
        calls = st['open_calls']
        self.check(len(calls) >= 6, repr(calls))
        gap = calls[2]['t'] - calls[1]['t']
        self.check(gap >= 2.9, 'Retry-After 3 s honoured only %.2f s' % gap)
        # A refused upgrade spends its ticket: every retry asked for a new URL.
        self.check(all(r['reason'] == 'refused' for r in st['rejected_upgrades']),
                   repr(st['rejected_upgrades']))
        self.assert_answer(self.slack.envelope(text='projects'), 'Development')
        self.stop_clean(daemon)

    def test_refused_token_stops_and_alerts(self):
        self.write_config(app_token='xapp-test-wrong-token')
        daemon = self.start_ops()
        deadline_wait(lambda: self.slack.state()['open_calls'], 10 * SCALE,
                      what='apps.connections.open')
        # "Nothing happens": no retry within a window that a retry with the usual back-off
        # (at most 1 s, then 2 s) would fall into.
        time.sleep(4)
        self.assertEqual(len(self.slack.state()['open_calls']), 1)
        status, _, body = self.request('GET', '/readyz')
        self.assertEqual(status, 503)
        self.check('invalid_auth' in json.loads(body)['checks']['slack'], body)
        result = daemon.stop()
        self.check('xapp-test-wrong-token' not in result.stderr + result.stdout,
                   'the app token appears in the output')
        alerts = [m for m in result.messages if m.get('event') == 'alert']
        self.check(any('invalid_auth' in json.dumps(m) for m in alerts), result.stdout)

    def test_link_disabled_backs_off_and_alerts(self):
        daemon = self.start()
        self.slack.disconnect('link_disabled')
        deadline_wait(lambda: not self.slack.state()['open'], 5 * SCALE,
                      what='the socket closed')
        before = len(self.slack.state()['open_calls'])
        # "Nothing happens": no reconnection within a window that an immediate one, or one
        # with the usual back-off (1, 2 s), would fall into.
        time.sleep(6)
        self.assertEqual(len(self.slack.state()['open_calls']), before,
                         'reconnected right after link_disabled')
        status, _, body = self.request('GET', '/readyz')
        self.assertEqual(status, 503)
        self.check('link_disabled' in json.loads(body)['checks']['slack'], body)
        status, _, metrics = self.request('GET', '/metrics')
        self.check('ytbridge_slack_disconnects_total{reason="link_disabled"} 1' in metrics,
                   metrics)
        result = self.stop_clean(daemon)
        alerts = [m for m in result.messages if m.get('event') == 'alert']
        self.check(any('link_disabled' in json.dumps(m) for m in alerts), result.stdout)


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
