#!/usr/bin/env python3
"""Delivery to Slack, Matrix, signed webhooks and hookshot: routing, message
shapes, digests, the first-run baseline, pacing, ordering and isolation.

Runs the real daemon against tests/fakes/fake_youtrack.py and
tests/fakes/fake_receivers.py; every wait is bounded."""

import hashlib
import hmac
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (STDOUT_SINK, WEBHOOK_SECRET, DeliveryTest,  # noqa: E402
                     deadline_wait, main, message_text, project, slack_body_problem,
                     slack_literal)

BASE = [
    project('0-1', 'DEV', 'Development'),
    project('0-2', 'OPS', 'Operations'),
    project('0-3', 'DEVX', 'Experiments'),
    project('0-4', 'WEB', 'Website'),
]
HOSTILE = '<!channel> @here @everyone @room <b>x</b> <https://evil|click> & co'
RFC3339 = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$')


def created(n, start=10, prefix='Nw'):
    """n new projects with unique, greppable names Nw10, Nw11, ..."""
    return [project('0-%d' % i, 'N%d' % i, '%s%d' % (prefix, i))
            for i in range(start, start + n)]


def tokens(text, pattern=r'\bNw\d+\b'):
    """The distinct Nw<n> names in text, in order of appearance."""
    return list(dict.fromkeys(re.findall(pattern, text)))


class Routing(DeliveryTest):

    def test_events_and_project_globs_route_per_sink(self):
        rx = self.rx
        self.use_sinks(
            STDOUT_SINK,
            rx.slack_sink(events=['created', 'renamed'],
                          projects=['dev*', '!DEVX']),
            rx.matrix_sink(projects=['OPS']),
            rx.webhook_sink(events=['archived']),
            rx.hookshot_sink(),
            digest_threshold=50)
        self.quiet_baseline(BASE)
        self.fake.set_projects([
            project('0-1', 'DEV', 'Development two'),      # renamed
            project('0-2', 'OPS', 'Operations', archived=True),
            project('0-3', 'DEVX', 'Experiments two'),    # renamed, excluded
            project('0-4', 'WEB', 'Website two'),          # renamed
            project('0-5', 'DEVNEW', 'Brand new'),         # created
        ])
        result = self.deliver_once()
        self.check(len(result.events) == 5, 'stdout sink: every change',
                   result)
        slack = self.texts('slack')
        self.check(len(slack) == 2, 'slack wants created+renamed of dev* '
                   'minus DEVX: 2 messages, got %r' % slack, result)
        self.assertIn('Development two', slack[0])
        self.assertIn('Brand new', slack[1])
        matrix = self.texts('matrix')
        self.check(len(matrix) == 1 and 'OPS' in matrix[0],
                   'matrix wants OPS only, got %r' % matrix, result)
        hooks = self.rx.accepted('hook')
        self.check([h['event'] for h in hooks] == ['project.archived'],
                   'webhook wants archived only, got %r'
                   % [h['event'] for h in hooks], result)
        self.assertEqual(hooks[0]['json']['project']['shortName'], 'OPS')
        self.check(len(self.rx.accepted('hookshot')) == 5,
                   'hookshot wants everything', result)
        # nothing left: a second run sends nothing more
        self.deliver_once()
        self.assertEqual([len(self.rx.accepted(r)) for r in
                          ('slack', 'matrix', 'hook', 'hookshot')],
                         [2, 1, 1, 5])


class Shapes(DeliveryTest):

    def setUp(self):
        super().setUp()
        rx = self.rx
        self.use_sinks(rx.slack_sink(), rx.matrix_sink(), rx.webhook_sink(),
                       rx.hookshot_sink(), digest_threshold=50)
        self.quiet_baseline(BASE)
        self.fake.set_projects([project('0-1', 'DEV', 'Development two')]
                               + BASE[1:] + [project('0-7', 'EVIL', HOSTILE)])
        self.result = self.deliver_once()

    def test_slack_body(self):
        got = self.rx.accepted('slack')
        self.check(len(got) == 2, 'two slack messages', self.result)
        for rec in got:
            j = rec['json']
            self.assertTrue(rec['headers'].get('Content-Type', '')
                            .startswith('application/json'))
            self.assertIsInstance(j.get('text'), str)
            self.assertTrue(j['text'])
            self.assertIs(j.get('unfurl_links'), False)
            self.assertIs(j.get('unfurl_media'), False)
            self.assertNotIn('link_names', j)
            self.assertIs(j.get('mrkdwn'), False)
            self.assertIsNone(slack_body_problem(j), j)
        # The hostile name: in the blocks the literal label of its link (rich_text
        # text is never parsed: no mention, no markup); in the fallback, which
        # Slack would parse, entity-escaped.
        evil = got[1]['json']
        self.assertEqual(slack_literal(evil, 'link', HOSTILE), 1, evil)
        fallback = evil['text']
        for raw in ('<!channel>', '<b>', '<https://evil', ' & '):
            self.assertNotIn(raw, fallback)
        self.assertIn('&lt;!channel&gt;', fallback)
        self.assertIn('&amp;', fallback)
        self.assertIn(HOSTILE, message_text(got[1]))

    def test_matrix_content_and_alias(self):
        got = self.rx.received('matrix')
        acc = got['accepted']
        self.check(len(acc) == 2, 'two matrix messages', self.result)
        lookups = [x for x in got['lookups'] if x.get('alias')]
        self.assertEqual([x['alias'] for x in lookups], ['#yt:localhost'],
                         'the alias is resolved once per run')
        for rec in acc:
            self.assertEqual(rec['room'], '!room1:localhost')
            self.assertEqual(rec['event_type'], 'm.room.message')
            self.assertIn('/rooms/%21room1%3Alocalhost/send/', rec['raw_path'])
            c = rec['json']
            self.assertEqual(c['msgtype'], 'm.notice')
            self.assertEqual(c['format'], 'org.matrix.custom.html')
            self.assertIsInstance(c['body'], str)
            self.assertIsInstance(c['formatted_body'], str)
            self.assertEqual(c['m.mentions'], {})
        self.assertEqual(len({r['txn_id'] for r in acc}), 2)
        evil = acc[1]['json']
        self.assertIn(HOSTILE, evil['body'])  # plain text: literal
        html = evil['formatted_body']
        self.assertNotIn('<!channel>', html)
        self.assertNotIn('<b>x', html)
        self.assertIn('&lt;b&gt;x&lt;/b&gt;', html)

    def test_webhook_body_headers_signature(self):
        got = self.rx.accepted('hook')
        self.check(len(got) == 2, 'two webhook deliveries', self.result)
        ids = set()
        for rec in got:
            j, h = rec['json'], rec['headers']
            self.assertIs(rec['signature_valid'], True)
            want = 'sha256=' + hmac.new(WEBHOOK_SECRET.encode(),
                                        rec['body'].encode('utf-8'),
                                        hashlib.sha256).hexdigest()
            self.assertEqual(h.get('X-Ytbridge-Signature-256'), want)
            self.assertTrue(h.get('Content-Type', '')
                            .startswith('application/json'))
            self.assertEqual(h.get('X-Ytbridge-Event'), j['event'])
            self.assertEqual(h.get('X-Ytbridge-Delivery'), j['id'])
            self.assertRegex(j['occurred_at'], RFC3339)
            self.assertEqual(j['youtrack'], self.fake.url)
            ids.add(j['id'])
        self.assertEqual(len(ids), 2)
        ren, new = got[0]['json'], got[1]['json']
        self.assertEqual(ren['event'], 'project.renamed')
        self.assertEqual(ren['project']['name'], 'Development two')
        self.assertEqual(ren['previous']['name'], 'Development')
        self.assertEqual(new['event'], 'project.created')
        self.assertEqual(new['project']['name'], HOSTILE)

    def test_hookshot_body(self):
        got = self.rx.accepted('hookshot')
        self.check(len(got) == 2, 'two hookshot messages', self.result)
        for rec in got:
            self.assertIs(rec['shape_ok'], True, rec['json'])
        evil = got[1]['json']
        self.assertIn(HOSTILE, evil['text'])
        self.assertNotIn('<b>x', evil['html'])
        self.assertIn('&lt;b&gt;x&lt;/b&gt;', evil['html'])


class Digest(DeliveryTest):

    def test_over_threshold_one_digest_per_sink_webhooks_get_all(self):
        rx = self.rx
        self.use_sinks(STDOUT_SINK, rx.slack_sink(), rx.matrix_sink(),
                       rx.webhook_sink(), rx.hookshot_sink(),
                       digest_threshold=3)
        self.quiet_baseline(BASE)
        new = created(6)
        self.fake.set_projects(BASE + new)
        result = self.deliver_once()
        self.check(len(result.lines) == 1, 'stdout: one digest line', result)
        names = ['Nw%d' % i for i in range(10, 16)]
        for r in ('slack', 'matrix', 'hookshot'):
            texts = self.texts(r)
            self.check(len(texts) == 1, '%s: one digest, got %d'
                       % (r, len(texts)), result)
            missing = [n for n in names if n not in texts[0]]
            self.check(not missing, '%s digest lacks %r' % (r, missing), result)
        hooks = rx.accepted('hook')
        self.check(sorted(h['json']['project']['name'] for h in hooks)
                   == sorted(names), 'webhook: one delivery per change',
                   result)

    def test_at_threshold_no_digest(self):
        rx = self.rx
        self.use_sinks(rx.matrix_sink(), digest_threshold=3)
        self.quiet_baseline(BASE)
        self.fake.set_projects(BASE + created(3))
        self.deliver_once()
        self.assertEqual(len(rx.accepted('matrix')), 3)


class FirstRun(DeliveryTest):

    def test_baseline_message_per_sink(self):
        rx = self.rx
        self.fake.set_projects(BASE)
        self.use_sinks(STDOUT_SINK, rx.slack_sink(), rx.matrix_sink(),
                       rx.webhook_sink(), rx.hookshot_sink(),
                       first_run='baseline')
        result = self.deliver_once()
        self.check([m.get('event') for m in result.messages] == ['baseline'],
                   'stdout: one baseline message', result)
        for r in ('slack', 'matrix', 'hookshot'):
            texts = self.texts(r)
            self.check(len(texts) == 1 and re.search(r'\b4\b', texts[0]),
                       '%s: one "now tracking 4 projects", got %r' % (r, texts),
                       result)
        # Contract question: does a webhook get a "baseline" event? At most one.
        self.assertLessEqual(len(rx.accepted('hook')), 1)

    def test_announce_first_run_goes_to_sinks(self):
        self.fake.set_projects(BASE)
        self.use_sinks(self.rx.matrix_sink(), first_run='announce',
                       digest_threshold=50)
        self.deliver_once()
        self.assertEqual(len(self.rx.accepted('matrix')), 4)


class PacingOrdering(DeliveryTest):

    def test_slack_burst_is_paced_one_per_second(self):
        self.use_sinks(self.rx.slack_sink(), digest_threshold=50)
        self.quiet_baseline(BASE)
        self.fake.set_projects(BASE + created(5))
        result = self.deliver_once()
        got = self.rx.received('slack')
        self.check(len(got['accepted']) == 5, '5 slack posts', result)
        self.check(not got['pacing_violations']
                   and not got['attempt_pacing_violations'],
                   'posts closer than 1 s: %r' % got['pacing_violations'],
                   result)
        ts = [r['t'] for r in got['accepted']]
        self.assertGreaterEqual(ts[-1] - ts[0], 4 * 0.95)
        self.assertEqual([tokens(message_text(r)) for r in got['accepted']],
                         [['Nw%d' % i] for i in range(10, 15)])

    def test_order_per_sink_survives_retries(self):
        rx = self.rx
        self.use_sinks(rx.slack_sink(), rx.matrix_sink(), rx.webhook_sink(),
                       rx.hookshot_sink(), digest_threshold=50)
        self.quiet_baseline(BASE)
        self.fake.set_projects(BASE + created(6))
        # the head message of three sinks fails once and must not be overtaken
        rx.fault('hook', 500, count=1)
        rx.fault('matrix', '500', count=1)
        rx.fault('hookshot', 502, count=1)
        want = [['Nw%d' % i] for i in range(10, 16)]
        self.daemon_until(lambda: all(len(rx.accepted(r)) >= 6 for r in
                                      ('slack', 'matrix', 'hook', 'hookshot')),
                          timeout=60, what='6 messages at every receiver')
        for r in ('slack', 'matrix', 'hookshot', 'hook'):
            got = [tokens(t) for t in self.texts(r)]
            self.assertEqual(got, want, r)

    def test_slow_sink_does_not_hold_back_others(self):
        rx = self.rx
        self.use_sinks(rx.slack_sink(), rx.hookshot_sink(), rx.webhook_sink(),
                       digest_threshold=50)
        self.quiet_baseline(BASE)
        self.fake.set_projects(BASE + created(3))
        rx.fault('hookshot', 'slow', delay=6)   # every request takes 6 s
        rx.fault('hook', 429, count=1, retry_after=30)  # head waits 30 s
        daemon = self.start_daemon()
        start = time.monotonic()
        deadline_wait(lambda: len(rx.accepted('slack')) >= 3, 15,
                      what='slack to finish while the other sinks are slow')
        elapsed = time.monotonic() - start
        self.check(len(rx.accepted('hookshot')) < 3,
                   'hookshot should still be busy (took %.1fs)' % elapsed,
                   daemon.result())
        self.check(len(rx.accepted('hook')) == 0,
                   'webhook is waiting out Retry-After: 30', daemon.result())
        self.assert_ok(daemon.stop(timeout=20))


if __name__ == '__main__':
    main()
