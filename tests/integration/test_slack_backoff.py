#!/usr/bin/env python3
"""Slack Socket Mode: failures and their back-off (see test_slack_chat.py for the
fake and the base class). too_many_websockets, sockets closed before their
hello, a hello that never comes, open errors, refused upgrades and 429s are
retried with growing pauses, never in a hot loop and never with more than two
sockets; link_disabled and a refused token stop the reconnect loop and alert."""

import json
import os
import sys
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SCALE, deadline_wait, main  # noqa: E402
from test_slack_chat import SlackTest  # noqa: E402


class TestConnection(SlackTest):

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
                try:
                    self.slack._call('POST', '/_control/close', {'conn': conn, 'code': 1011})
                except urllib.error.HTTPError as e:
                    # 409: the socket went between state() and close (the daemon dropped it
                    # for want of a hello): that attempt failed all the same.
                    if e.code != 409:
                        raise
            time.sleep(0.05)
        calls = self.slack.state()['open_calls']
        self.check(len(calls) <= 5, '%d connection opens in 8 s' % len(calls))
        self.slack.behaviour(hello='immediate')
        self.wait_sockets(1, timeout=90)
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


if __name__ == '__main__':
    main()
