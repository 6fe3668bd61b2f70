#!/usr/bin/env python3
"""Delivery to subscribed chat channels (issue 13): a subscribed Slack channel
gets chat.postMessage (with the bot token) carrying what a configured Slack
webhook sink gets for the same change, a subscribed Matrix room the m.notice a
configured Matrix sink gets; only changes first seen after the subscription;
digests; Slack's per-channel pacing and 429s; suspension when the channel or
room is gone (an alert, "suspended", `subscribe` resumes); a refused bot token
holds every Slack subscription with one alert. Shared base: test_subscriptions.py."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SCALE, main, message_text, project  # noqa: E402
from test_subscriptions import (BASE, CH1, CH2, CH3, ROOM1, ROOM2, SubsTest,  # noqa: E402
                                kinds_named)


def created(names, start=10):
    return [project('0-%d' % (start + i), 'N%d' % (start + i), name)
            for i, name in enumerate(names)]


class Delivery(SubsTest):

    def test_same_message_as_a_configured_sink_and_only_later_changes(self):
        self.start()
        # A change seen before the subscription is never sent to it.
        self.change(BASE + created(['Before sub']), 'Before sub')
        self.subscribe_slack(CH1)
        self.assert_has(self.matrix_cmd('subscribe'), 'Subscribed')
        self.change(BASE + created(['Before sub', 'After sub']), 'After sub')
        self.wait(lambda: self.slack.posts(CH1) and self.rx.notices(ROOM2),
                  'the subscribed channel and room to get the change')
        posts = self.slack.posts(CH1)
        self.assertEqual(len(posts), 1, [message_text(p) for p in posts])
        sink = [m for m in self.rx.accepted('slack') if 'After sub' in message_text(m)]
        self.assertEqual(len(sink), 1)
        got, want = posts[0]['json'], sink[0]['json']
        self.assertEqual(got['channel'], CH1)
        self.assertEqual(got['blocks'], want['blocks'])
        self.assertEqual(got['text'], want['text'])
        self.assertNotIn('Before sub', message_text(posts[0]))
        mx = self.rx.notices(ROOM2)
        self.assertEqual(len(mx), 1, [message_text(r) for r in mx])
        conf = [r for r in self.rx.notices(ROOM1) if 'After sub' in message_text(r)]
        self.assertEqual(len(conf), 1)
        self.assertEqual(mx[0]['json'], conf[0]['json'])
        self.assertEqual(mx[0]['json']['msgtype'], 'm.notice')
        self.stop()

    def test_patterns_and_kinds_route(self):
        self.start()
        self.subscribe_slack(CH1, args='DEV* events=renamed')
        self.subscribe_slack(CH2, args='OPS')
        self.change([project('0-1', 'DEV', 'Development two'),
                     project('0-2', 'OPS', 'Operations', archived=True),
                     project('0-3', 'WEB', 'Website'),
                     project('0-9', 'DEVNEW', 'Brand new')], 'Brand new')
        self.wait(lambda: self.slack.posts(CH1) and self.slack.posts(CH2),
                  'posts to both channels')
        one = [message_text(p) for p in self.slack.posts(CH1)]
        self.assertEqual(len(one), 1, one)          # the rename, not the new DEVNEW
        self.assertIn('Development two', one[0])
        two = [message_text(p) for p in self.slack.posts(CH2)]
        self.assertEqual(len(two), 1, two)
        self.assertIn('OPS', two[0])
        self.stop()

    def test_digest_above_the_threshold(self):
        self.configure(digest_threshold=3)
        self.start()
        self.subscribe_slack(CH1)
        self.assert_has(self.matrix_cmd('subscribe'), 'Subscribed')
        names = ['Dg%d' % i for i in range(5)]
        self.fake.set_projects(BASE + created(names))
        self.wait(lambda: self.rx.accepted('slack') and self.slack.posts(CH1)
                  and self.rx.notices(ROOM2), 'the digests')
        conf = self.rx.accepted('slack')
        self.assertEqual(len(conf), 1, 'the configured sink got one digest')
        posts = self.slack.posts(CH1)
        self.assertEqual(len(posts), 1, [message_text(p) for p in posts])
        self.assertEqual(posts[0]['json']['blocks'], conf[0]['json']['blocks'])
        for n in names:
            self.assertIn(n, message_text(posts[0]))
        self.assertEqual(len(self.rx.notices(ROOM2)), 1)
        self.stop()


class Pacing(SubsTest):

    def test_one_post_per_second_per_channel_and_429_delays_one_channel(self):
        self.start()
        self.subscribe_slack(CH1, CH2, CH3)
        names = ['Pc%d' % i for i in range(6)]
        self.fake.set_projects(BASE + created(names))
        self.wait(lambda: all(len(self.slack.posts(c)) == 6 for c in (CH1, CH2, CH3)),
                  '6 posts in each channel', timeout=40)
        st = self.slack.state()
        self.assertEqual(st['pacing_violations'], [])
        for c in (CH1, CH2, CH3):
            texts = [message_text(p) for p in self.slack.posts(c)]
            self.assertEqual([n for t in texts for n in names if n in t], names, 'order')
        # A 429 with Retry-After on CH1 delays CH1 only. The others need two more seconds for
        # their three posts (one per second, counted from each answer): Retry-After leaves them
        # room to spare on a busy machine.
        self.slack.api_faults({'method': 'chat.postMessage', 'channel': CH1, 'status': 429,
                               'retry_after': 8, 'count': 1})
        more = ['Rl%d' % i for i in range(3)]
        self.fake.set_projects(BASE + created(names + more))
        self.wait(lambda: all(len(self.slack.posts(c)) == 9 for c in (CH1, CH2, CH3)),
                  '3 more posts in each channel', timeout=60)
        limited = [c for c in self.slack.calls(channel=CH1) if c['status'] == 429]
        self.assertEqual(len(limited), 1, limited)
        t429 = limited[0]['t']
        one = [p['t'] for p in self.slack.posts(CH1) if p['t'] > t429]
        self.assertEqual(len(one), 3)
        self.assertGreaterEqual(one[0] - t429, 7.9, 'CH1 waited Retry-After')
        for c in (CH2, CH3):
            last = max(p['t'] for p in self.slack.posts(c))
            self.assertLess(last, one[0], '%s was not held by the 429 on CH1' % c)
        self.assertEqual(self.slack.state()['pacing_violations'], [])
        self.stop()


class Suspension(SubsTest):

    def assert_suspended_alert(self, target):
        self.wait(lambda: [a for a in self.alerts() if target in str(a)],
                  'an alert naming %s' % target)

    def test_slack_channel_gone_suspends(self):
        self.start()
        cases = {CH1: {'archived': True}, CH2: {'member': False}, CH3: {'exists': False}}
        self.subscribe_slack(*cases)
        self.slack.channels(**cases)
        self.change(BASE + created(['Gone one']), 'Gone one')
        errors = {CH1: 'is_archived', CH2: 'not_in_channel', CH3: 'channel_not_found'}
        for ch, error in errors.items():
            self.wait(lambda: [c for c in self.slack.calls(channel=ch) if c['result'] == error],
                      'the %s answer' % error)
            self.assert_suspended_alert(ch)
        n_calls = len(self.slack.calls())
        # Nothing more is posted to them.
        self.change(BASE + created(['Gone one', 'Gone two']), 'Gone two')
        self.assertEqual(len(self.slack.calls()), n_calls, self.slack.calls()[n_calls:])
        self.assertEqual(self.slack.posts(), [])
        text = self.slack_cmd('subscriptions', channel=CH2)
        self.assert_has(text, 'suspended')
        self.assert_has(self.slack_cmd('subscriptions all', channel='C0ELSEWHERE'),
                        'suspended', CH1, CH2, CH3)
        # The bot is invited back: `subscribe` resumes, later changes arrive.
        self.slack.channels(**{CH2: {'member': True}})
        self.assert_has(self.slack_cmd('subscribe', channel=CH2), 'Subscribed')
        self.assert_lacks(self.slack_cmd('subscriptions', channel=CH2), 'suspended')
        self.change(BASE + created(['Gone one', 'Gone two', 'Back three']), 'Back three')
        self.wait(lambda: [p for p in self.slack.posts(CH2)
                           if 'Back three' in message_text(p)], 'the post after resuming')
        self.assertEqual(len(self.slack.posts(CH2)), 1, 'nothing older was sent on resuming')
        self.assertEqual(self.slack.posts(CH1) + self.slack.posts(CH3), [])
        self.stop()

    def test_matrix_kick_seen_in_sync_suspends(self):
        self.start()
        self.assert_has(self.matrix_cmd('subscribe'), 'Subscribed')
        self.rx.matrix_membership(ROOM2, 'leave', reason='no bots here')
        self.wait(lambda: self.rx.sync_stream()['queued'] == 0, 'the kick read from /sync')
        self.assert_suspended_alert(ROOM2)
        self.change(BASE + created(['Kicked one']), 'Kicked one')
        self.wait(lambda: [r for r in self.rx.accepted('matrix') if r['room'] == ROOM1
                           and 'Kicked one' in message_text(r)], 'the configured room')
        self.assertEqual([r for r in self.rx.received('matrix')['rejected']
                          if r.get('room') == ROOM2], [], 'no send to a room the bot left')
        self.assert_has(self.matrix_cmd('subscriptions all', room=ROOM1), 'suspended', ROOM2)
        # invited back: the bot joins (ROOM2 is in chat.matrix.rooms); subscribe resumes
        self.rx.matrix_membership(ROOM2, 'invite')
        self.wait(lambda: [m for m in self.rx.received('matrix')['memberships']
                           if m.get('action') == 'join' and m.get('room_id') == ROOM2],
                  'the bot to join again')
        self.assert_has(self.matrix_cmd('subscribe'), 'Subscribed')
        self.change(BASE + created(['Kicked one', 'Back two']), 'Back two')
        self.wait(lambda: [r for r in self.rx.notices(ROOM2) if 'Back two' in message_text(r)],
                  'the notice after resuming')
        self.assertEqual(len(self.rx.notices(ROOM2)), 1, 'nothing older was sent on resuming')
        self.stop()

    def test_matrix_forbidden_on_send_suspends(self):
        self.start()
        self.assert_has(self.matrix_cmd('subscribe'), 'Subscribed')
        self.rx.matrix_membership(ROOM2, 'leave', sync=False)
        self.change(BASE + created(['Silent kick']), 'Silent kick')
        self.wait(lambda: [r for r in self.rx.received('matrix')['rejected']
                           if r.get('room') == ROOM2 and r.get('status') == 403],
                  'the refused send')
        self.assert_suspended_alert(ROOM2)
        n = len([r for r in self.rx.received('matrix')['rejected'] if r.get('room') == ROOM2])
        self.change(BASE + created(['Silent kick', 'Silent two']), 'Silent two')
        self.assertEqual(len([r for r in self.rx.received('matrix')['rejected']
                              if r.get('room') == ROOM2]), n, 'no more sends to the room')
        self.assert_has(self.matrix_cmd('subscriptions all', room=ROOM1), 'suspended')
        self.stop()


class BotToken(SubsTest):

    def test_refused_token_holds_every_channel_with_one_alert(self):
        self.start()
        self.subscribe_slack(CH1, CH2, CH3)
        self.change(BASE + created(['Tok one']), 'Tok one')
        self.wait(lambda: all(self.slack.posts(c) for c in (CH1, CH2, CH3)), 'first posts')
        alerts_before = len(self.alerts())
        self.slack.bot_token('xoxb-rotated-elsewhere')   # ours is refused now
        self.change(BASE + created(['Tok one', 'Tok two']), 'Tok two')
        self.wait(lambda: len(self.alerts()) > alerts_before, 'the alert')
        # Posts already on their way when the first refusal came are answered too (refused):
        # the count is taken once no call has come for a while (pacing is 1 s per channel).
        seen = [len(self.slack.calls()), time.monotonic()]

        def quiet():
            n = len(self.slack.calls())
            if n != seen[0]:
                seen[:] = [n, time.monotonic()]
            return time.monotonic() - seen[1] >= 2 * SCALE
        self.wait(quiet, 'the posts in flight to be answered')
        refused = [c for c in self.slack.calls() if c['result'] == 'invalid_auth']
        self.assertGreaterEqual(len(refused), 1)
        self.assertLessEqual(len(refused), 3, 'at most the posts already in flight')
        n_calls = len(self.slack.calls())
        self.change(BASE + created(['Tok one', 'Tok two', 'Tok three']), 'Tok three')
        self.assertEqual(len(self.slack.calls()), n_calls, 'posting stopped: every channel held')
        new = self.alerts()[alerts_before:]
        self.assertEqual(len(new), 1, new)
        # Nothing lost: with the token accepted again (a restart rather than the hourly
        # probe), every held message goes out, in order.
        self.slack.bot_token('xoxb-test-fake-bot-token')
        self.stop()
        self.start()
        for c in (CH1, CH2, CH3):
            self.wait(lambda: {'Tok two', 'Tok three'} <= {
                n for p in self.slack.posts(c) for n in ('Tok two', 'Tok three')
                if n in message_text(p)}, 'the held messages in %s' % c, timeout=30)
            texts = [message_text(p) for p in self.slack.posts(c)]
            order = [n for t in texts for n in ('Tok one', 'Tok two', 'Tok three') if n in t]
            self.assertEqual(order, ['Tok one', 'Tok two', 'Tok three'], texts)
        self.stop()


if __name__ == '__main__':
    main()
