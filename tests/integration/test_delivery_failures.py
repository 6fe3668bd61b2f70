#!/usr/bin/env python3
"""Delivery failure classes: retry (429 with its delay, 5xx, network), dead
letter (payload bugs, webhook 4xx, M_TOO_LARGE) and broken sinks (kept
queue, alert through the other sinks, resume after a fix + restart)."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (STDOUT_SINK, Bridge, DeliveryTest, main,  # noqa: E402
                     message_text, project)

BASE = [project('0-1', 'DEV', 'Development'), project('0-2', 'OPS', 'Ops')]
DEAD = re.compile(r'dead', re.I)


def new_projects(*nums):
    return [project('0-%d' % n, 'N%d' % n, 'Nw%d' % n) for n in nums]


def names(recs):
    return [list(dict.fromkeys(re.findall(r'\bNw\d+\b', message_text(r))))
            for r in recs]


class Base(DeliveryTest):

    def setup_sinks(self, *sinks, projects=BASE, **settings):
        settings.setdefault('digest_threshold', 50)
        self.use_sinks(*sinks, **settings)
        self.quiet_baseline(projects)

    def change(self, *nums):
        self.fake.set_projects(BASE + new_projects(*nums))

    def assert_retry_waited(self, receiver, seconds, key):
        got = self.rx.received(receiver)
        acc, rej = got['accepted'], got['rejected']
        self.assertEqual(len(acc), 1, acc)
        self.assertEqual(len(rej), 1, rej)
        self.assertEqual(key(rej[0]), key(acc[0]), 'the retry is the same message')
        gap = acc[0]['t'] - rej[0]['t']
        self.assertGreaterEqual(gap, seconds - 0.1,
                                'retried %.2fs after a %ss delay' % (gap, seconds))
        self.assertLess(gap, seconds + 20, 'retry came much too late')

    def alerts(self, result):
        return [m for m in result.messages if m.get('event') == 'alert']


class Slack(Base):

    def test_429_waits_retry_after(self):
        self.setup_sinks(self.rx.slack_sink())
        self.change(10)
        self.rx.fault('slack', 429, count=1, retry_after=3)
        self.daemon_until(lambda: self.rx.accepted('slack'), 30)
        self.assert_retry_waited('slack', 3, lambda r: r['body'])

    def test_5xx_and_network_errors_are_retried(self):
        self.setup_sinks(self.rx.slack_sink())
        self.change(10)
        self.rx.fault('slack', 500, count=2)
        self.daemon_until(lambda: len(self.rx.accepted('slack')) >= 1, 40)
        self.change(10, 11)
        self.rx.fault('slack', 'disconnect', count=1)
        self.daemon_until(lambda: len(self.rx.accepted('slack')) >= 2, 40)
        got = self.rx.received('slack')
        self.assertEqual(names(got['accepted']), [['Nw10'], ['Nw11']])
        self.assertEqual([r['reason'] for r in got['rejected']],
                         ['500', '500', 'disconnect'])
        self.assertEqual(names(got['rejected']), [['Nw10'], ['Nw10'], ['Nw11']])

    def test_payload_bugs_are_dead_lettered_and_the_queue_moves_on(self):
        self.setup_sinks(self.rx.slack_sink())
        n = 10
        for mode in ('invalid_payload', 'invalid_blocks', 'no_text'):
            with self.subTest(mode=mode):
                self.rx.clear_received()
                n += 2
                self.change(*range(10, n))
                self.rx.fault('slack', mode, count=1)
                result = self.deliver_once()
                got = self.rx.received('slack')
                self.check(names(got['rejected']) == [['Nw%d' % (n - 2)]]
                           and names(got['accepted']) == [['Nw%d' % (n - 1)]],
                           '%s: head dead-lettered, next delivered: %r / %r'
                           % (mode, names(got['rejected']),
                              names(got['accepted'])), result)
                self.check(DEAD.search(result.stderr),
                           'a dead letter is logged', result)
                self.deliver_once()   # never retried
                self.assertEqual(len(self.rx.received('slack')['rejected']), 1)

    def test_no_service_breaks_the_sink_keeps_the_queue_and_alerts(self):
        rx = self.rx
        self.setup_sinks(STDOUT_SINK, rx.slack_sink(), rx.matrix_sink())
        self.change(10, 11, 12)
        rx.fault('slack', 'no_service')
        result = self.deliver_once()
        got = rx.received('slack')
        self.check(len(got['rejected']) == 1 and not got['accepted'],
                   'one attempt, then nothing more to a broken sink: %d'
                   % len(got['rejected']), result)
        alerts = self.alerts(result)
        self.check([a.get('kind') for a in alerts] == ['sink_broken'],
                   'one sink_broken alert on the json stdout sink', result)
        self.assertIn('team', str(alerts[0]), 'the alert names the sink')
        matrix = self.texts('matrix')
        self.check(len(matrix) == 4 and any('team' in t for t in matrix[3:]),
                   'matrix: 3 changes + the alert naming the sink: %r' % matrix,
                   result)
        self.assertEqual(names(rx.accepted('matrix'))[:3],
                         [['Nw10'], ['Nw11'], ['Nw12']])
        # fixed: a restart delivers the kept queue in order, alerts nobody
        rx.clear_faults()
        result = self.deliver_once()
        self.check(names(rx.accepted('slack')) == [['Nw10'], ['Nw11'], ['Nw12']],
                   'kept queue delivered in order: %r'
                   % names(rx.accepted('slack')), result)

    def test_every_broken_class_stops_sending(self):
        cases = [('no_active_hooks', {}), ('invalid_token', {}),
                 ('channel_is_archived', {}), ('channel_not_found', {}),
                 ('action_prohibited', {}), ('team_disabled', {}),
                 ('channel_is_archived', {'status': 410, 'body': 'gone'}),
                 ('channel_not_found', {'status': 404, 'body': 'Not Found'}),
                 ('action_prohibited', {'status': 403, 'body': 'forbidden'})]
        for i, (mode, kw) in enumerate(cases):
            with self.subTest(mode=mode, **kw):
                self.rx.clear_received()
                self.rx.clear_faults()
                tmp = os.path.join(self.tmp, 'case%d' % i)
                os.makedirs(tmp)
                self.bridge = Bridge(tmp, self.fake.url,
                                     **dict(self.bridge.settings))
                self.setup_sinks(STDOUT_SINK, self.rx.slack_sink())
                self.change(10, 11)
                self.rx.fault('slack', mode, **kw)
                result = self.deliver_once()
                got = self.rx.received('slack')
                self.check(len(got['rejected']) == 1 and not got['accepted'],
                           '%s %r: one attempt only, got %d'
                           % (mode, kw, len(got['rejected'])), result)
                self.check([a.get('kind') for a in self.alerts(result)]
                           == ['sink_broken'], 'sink_broken alert', result)


class Matrix(Base):

    def test_txn_id_reused_across_5xx(self):
        self.setup_sinks(self.rx.matrix_sink())
        self.change(10)
        self.rx.fault('matrix', '500', count=1)
        self.daemon_until(lambda: len(self.rx.accepted('matrix')) >= 1, 30)
        self.change(10, 11)
        self.rx.fault('matrix', '502_html', count=1)
        self.daemon_until(lambda: len(self.rx.accepted('matrix')) >= 2, 30)
        got = self.rx.received('matrix')
        acc, rej = got['accepted'], got['rejected']
        self.assertEqual([r['reason'] for r in rej], ['M_UNKNOWN', '502_html'])
        self.assertEqual([r['txn_id'] for r in rej],
                         [r['txn_id'] for r in acc])
        self.assertEqual(names(acc), [['Nw10'], ['Nw11']])

    def test_exactly_once_when_the_answer_is_lost(self):
        self.setup_sinks(self.rx.matrix_sink())
        self.change(10, 11)
        self.rx.fault('matrix', 'ok_then_disconnect', count=1)
        self.daemon_until(lambda: len(self.rx.accepted('matrix')) >= 2, 30)
        got = self.rx.received('matrix')
        self.assertEqual(names(got['accepted']), [['Nw10'], ['Nw11']])
        dups = got['duplicates']
        self.assertGreaterEqual(len(dups), 1, 'the lost answer was retried')
        self.assertEqual({d['txn_id'] for d in dups},
                         {got['accepted'][0]['txn_id']})
        self.assertEqual({d['event_id'] for d in dups},
                         {got['accepted'][0]['event_id']})

    def test_429_with_header_and_body_only(self):
        self.setup_sinks(self.rx.matrix_sink())
        for i, mode in enumerate(('429_header', '429_body_only')):
            with self.subTest(mode=mode):
                self.rx.clear_received()
                self.change(*range(10, 11 + i))
                self.rx.fault('matrix', mode, count=1, retry_after=3)
                self.daemon_until(lambda: self.rx.accepted('matrix'), 30)
                self.assert_retry_waited('matrix', 3, lambda r: r['txn_id'])

    def test_forbidden_breaks_the_sink_until_fixed(self):
        rx = self.rx
        self.setup_sinks(STDOUT_SINK, rx.matrix_sink(), rx.hookshot_sink())
        rx.set_matrix(rooms=[])
        self.change(10, 11)
        result = self.deliver_once()
        got = rx.received('matrix')
        self.check(len(got['rejected']) == 1 and not got['accepted'],
                   'one M_FORBIDDEN, then nothing', result)
        self.check([a.get('kind') for a in self.alerts(result)]
                   == ['sink_broken'], 'sink_broken alert', result)
        self.check(len(rx.accepted('hookshot')) == 3,
                   'hookshot: 2 changes + the alert', result)
        rx.set_matrix(rooms=['!room1:localhost'])
        result = self.deliver_once()
        self.check(names(rx.accepted('matrix')) == [['Nw10'], ['Nw11']],
                   'kept queue delivered in order', result)

    def test_unknown_token_breaks_the_sink(self):
        rx = self.rx
        self.setup_sinks(STDOUT_SINK, rx.matrix_sink())
        rx.fault('matrix', 'unknown_token')
        self.change(10, 11)
        result = self.deliver_once()
        got = rx.received('matrix')
        self.check(len(got['rejected']) == 1 and not got['accepted'],
                   'one M_UNKNOWN_TOKEN, then nothing', result)
        self.check([a.get('kind') for a in self.alerts(result)]
                   == ['sink_broken'], 'sink_broken alert', result)

    def test_too_large_is_dead_lettered(self):
        self.setup_sinks(self.rx.matrix_sink())
        self.rx.fault('matrix', 'too_large', count=1)
        self.change(10, 11)
        result = self.deliver_once()
        got = self.rx.received('matrix')
        self.check(names(got['rejected']) == [['Nw10']]
                   and names(got['accepted']) == [['Nw11']],
                   'head dead-lettered, next delivered', result)
        self.check(DEAD.search(result.stderr), 'a dead letter is logged', result)

    def test_long_name_fits_the_event_limit(self):
        self.setup_sinks(self.rx.matrix_sink())
        self.fake.set_projects(BASE + [project('0-10', 'LONG', 'Ж' * 40000)])
        result = self.deliver_once()
        got = self.rx.received('matrix')
        self.check(len(got['accepted']) == 1 and not got['rejected'],
                   'a 80 kB name is shortened, not rejected', result)


class Webhook(Base):

    def ids(self, recs):
        return [r['delivery'] for r in recs]

    def test_4xx_is_dead_lettered(self):
        self.setup_sinks(self.rx.webhook_sink())
        n = 10
        for status in (400, 410, 422):
            with self.subTest(status=status):
                self.rx.clear_received()
                n += 2
                self.change(*range(10, n))
                self.rx.fault('hook', status, count=1)
                result = self.deliver_once()
                got = self.rx.received('hook')
                self.check(len(got['rejected']) == 1
                           and len(got['accepted']) == 1
                           and got['rejected'][0]['delivery']
                           != got['accepted'][0]['delivery'],
                           'head dead-lettered, next delivered', result)
                self.deliver_once()
                self.assertEqual(len(self.rx.received('hook')['rejected']), 1)

    def test_5xx_and_429_retry_with_the_same_delivery_id(self):
        self.setup_sinks(self.rx.webhook_sink())
        self.change(10)
        self.rx.fault('hook', 500, count=2)
        self.daemon_until(lambda: self.rx.accepted('hook'), 40)
        got = self.rx.received('hook')
        self.assertEqual(self.ids(got['rejected']),
                         [got['accepted'][0]['delivery']] * 2)
        self.rx.clear_received()
        self.change(10, 11)
        self.rx.fault('hook', 429, count=1, retry_after=3)
        self.daemon_until(lambda: self.rx.accepted('hook'), 30)
        self.assert_retry_waited('hook', 3, lambda r: r['delivery'])

    def test_lost_answer_is_resent_with_the_same_id_and_body(self):
        self.setup_sinks(self.rx.webhook_sink())
        self.change(10)
        self.rx.fault('hook', 'ok_then_disconnect', count=1)
        self.daemon_until(lambda: len(self.rx.accepted('hook')) >= 2, 30)
        acc = self.rx.accepted('hook')
        self.assertEqual(len({r['delivery'] for r in acc}), 1)
        self.assertEqual(len({r['body'] for r in acc}), 1)
        self.assertTrue(all(r['signature_valid'] for r in acc))


class Hookshot(Base):

    def test_5xx_retried_4xx_dead_lettered(self):
        self.setup_sinks(self.rx.hookshot_sink())
        self.change(10, 11)
        self.rx.fault('hookshot', 500, count=1)
        self.daemon_until(lambda: len(self.rx.accepted('hookshot')) >= 2, 30)
        self.assertEqual(names(self.rx.accepted('hookshot')),
                         [['Nw10'], ['Nw11']])
        self.rx.clear_received()
        self.change(10, 11, 12, 13)
        self.rx.fault('hookshot', 400, count=1)
        self.deliver_once()
        got = self.rx.received('hookshot')
        self.assertEqual(names(got['rejected']), [['Nw12']])
        self.assertEqual(names(got['accepted']), [['Nw13']])


if __name__ == '__main__':
    main()
