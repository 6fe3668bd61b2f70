#!/usr/bin/env python3
"""Chat subscriptions in a bridge group (issues 12 and 13) against a real
three-member etcd: three replicas with chat.slack (Socket Mode and a bot
token) and chat.matrix. A Slack channel and a Matrix room subscribe through
the leader (only the leader holds chat connections); the leader is SIGKILLed;
the new leader reads the subscriptions from etcd
(<prefix>/subscriptions/<sha256>), answers `subscriptions` with them and posts
the next matching change to the channel (chat.postMessage) and the room
exactly once each. The standbys hold no Socket Mode socket and make no Matrix
request, before the kill and after it: they answer no command.

Slack posts are told apart by time (the fake Slack does not record the
sender), Matrix requests by process (fake_receivers.py --peer-pids)."""

import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster_harness import (NAMES, POLL_INTERVAL, TTL_WAIT, ClusterTest,  # noqa: E402
                             Projects, key_of)
from etcd_cluster import main  # noqa: E402
from harness import message_text  # noqa: E402
from test_matrix_chat import joined, message  # noqa: E402
from test_slack_chat import APP_TOKEN  # noqa: E402
from test_subscriptions import (BOT_TOKEN, CH1, MANAGER, MX_MANAGER, ROOM1,  # noqa: E402
                                ROOM2, SlackWeb, kinds_named)

PATTERN = 'N*'      # Projects.create() makes short names N1, N2, ...


def sub_key(target):
    """doc/etcd.md: the key of a channel's subscription record."""
    return hashlib.sha256(target.encode('utf-8')).hexdigest()


class SubscriptionFailover(ClusterTest):

    def setUp(self):
        super().setUp()
        self.slack = SlackWeb()
        self.addCleanup(self.slack.stop)
        self.rx.set_matrix(rooms=[ROOM1, ROOM2])
        self.n_cmd = 0

    def fail_with(self, msg, result=None):
        msg += '\n--- fake slack log (tail) ---\n' + self.slack.log()[-2000:]
        super().fail_with(msg, result)

    def chat(self):
        return {'slack': {'app_token': APP_TOKEN, 'api_url': self.slack.url + '/api',
                          'bot_token': BOT_TOKEN, 'manage_users': [MANAGER],
                          'commands_per_user': 10000, 'commands_per_second': 1000},
                'matrix': self.rx.matrix_chat(rooms=(ROOM1, ROOM2), manage_users=[MX_MANAGER])}

    # -- chat ----------------------------------------------------------------

    def wait_chat(self, g, lead, old_sockets=()):
        """The leader's Socket Mode socket said hello (one open, none of
        old_sockets) and its /sync long-poll runs; returns the socket's id."""
        def socket_up():
            ids = self.slack.open_ids()
            return (len(ids) == 1 and len(self.slack.state()['open']) == 1
                    and ids[0] not in old_sockets and ids)
        ids = self.wait(socket_up, TTL_WAIT + 20, 'the Socket Mode socket of %s' % lead)
        self.wait(lambda: any(s['since'] is not None and s['status'] is None
                              and g.who(s.get('pid')) == lead
                              for s in self.rx.received('matrix')['syncs']),
                  20, 'the /sync long-poll of %s after its first sync' % lead)
        return ids[0]

    def slack_cmd(self, text, channel=CH1):
        """(the ack payload as JSON text, the socket id the ack came on)."""
        r = self.slack.envelope(text=text, channel_id=channel, user_id=MANAGER)
        self.check(r['ack'] is not None, 'no ack for /youtrack %s: %r' % (text, r))
        payload = r['ack'].get('payload')
        self.check(isinstance(payload, dict) and payload,
                   'no answer in the ack of /youtrack %s: %r' % (text, r['ack']))
        return json.dumps(payload, ensure_ascii=False), r['ack_conn']

    def matrix_cmd(self, g, text, room=ROOM2):
        """(the body of the m.notice reply to `!youtrack text`, the replica
        that sent it)."""
        self.n_cmd += 1
        eid = '$clsubcmd%d' % self.n_cmd
        self.rx.queue_sync(joined(room, message(eid, '!youtrack ' + text, sender=MX_MANAGER)))

        rec = self.wait(lambda: self.rx.reply_to(eid), 20, 'the reply to !youtrack %s' % text)
        self.check(rec['room'] == room, 'the reply went to %s, not %s' % (rec['room'], room))
        return message_text(rec), g.who(rec.get('pid'))

    def assert_has(self, text, *needles):
        for needle in needles:
            self.check(needle in text, '%r not in the answer %s' % (needle, text))

    def notices(self, room, key):
        """Notifications (no command replies) the fake homeserver accepted in room."""
        return [r for r in self.rx.notices(room) if key_of(message_text(r)) == key]

    # -- standbys ------------------------------------------------------------

    def assert_standby_silent(self, g, lead):
        """No live replica but the leader holds a Socket Mode socket, got an
        envelope or asked Matrix anything (its /sync included): a standby
        answers no command. The fakes' records are the proof (the Slack fake
        never saw two sockets open at once; no Matrix request came from a
        standby); a standby's /metrics, which has no Slack or Matrix families
        while it runs no chat client, must not say otherwise."""
        self.check(g[lead].metric('ytbridge_slack_connected') == 1,
                   'the leader %s has no Socket Mode connection' % lead)
        for r in g.live():
            if r.name == lead:
                continue
            m = r.metrics()
            sockets = sum(v for n, labels, v in m.get('ytbridge_slack_sockets', {})
                          .get('samples', []))
            envelopes = sum(v for n, labels, v in m.get('ytbridge_slack_envelopes_total', {})
                            .get('samples', []))
            syncs = sum(v for n, labels, v in m.get('ytbridge_matrix_syncs_total', {})
                        .get('samples', []))
            self.check(sockets == 0 and envelopes == 0 and syncs == 0,
                       'standby %s: %d Socket Mode sockets, %d envelopes, %d /syncs'
                       % (r.name, sockets, envelopes, syncs))
        by_standby = [(round(t, 2), who, kind, rec.get('path'))
                      for t, who, rcv, kind, rec in g.posts(receivers=('matrix',))
                      if who not in (lead, '?') and g[who].alive()]
        self.check(not by_standby, 'Matrix requests of a standby: %r' % by_standby[:10])
        self.check(self.slack.state()['max_open'] <= 1, 'more than one Socket Mode socket '
                   'at a time: %r' % self.slack.state()['max_open'])

    # -- the test ------------------------------------------------------------

    def test_subscriptions_survive_a_leader_kill(self):
        p = Projects()
        g = self.group(projects=p, chat=self.chat())
        g.start()
        l1 = self.wait_leader(g)
        g.wait_baseline(l1)
        sock1 = self.wait_chat(g, l1)

        text, conn = self.slack_cmd('subscribe %s events=created' % PATTERN)
        self.assert_has(text, 'Subscribed', PATTERN)
        self.check(conn == sock1, 'the subscribe was answered on socket %s, not the '
                   'leader\'s %s' % (conn, sock1))
        text, who = self.matrix_cmd(g, 'subscribe %s events=created' % PATTERN)
        self.assert_has(text, 'Subscribed', PATTERN)
        self.check(who == l1, 'the Matrix subscribe was answered by %s, not the leader %s'
                   % (who, l1))
        for target in ('slack:' + CH1, 'matrix:' + ROOM2):
            key = '%s/subscriptions/%s' % (g.prefix, sub_key(target))
            self.check(self.etcd.get(key) is not None, 'no %s in etcd for %s after the '
                       'answer; keys: %r' % (key, target, self.etcd.keys(g.prefix + '/')))
        self.assert_standby_silent(g, l1)

        t_kill = g[l1].kill()
        l2 = self.wait_leader(g, names=[n for n in NAMES if n != l1],
                              what='a new leader after killing %s' % l1)
        t_l2 = time.monotonic()
        sock2 = self.wait_chat(g, l2, old_sockets=(sock1,))

        text, conn = self.slack_cmd('subscriptions')
        self.assert_has(text, PATTERN)
        self.check(kinds_named(text) == {'created'}, 'the new leader lists the kinds %r: %s'
                   % (kinds_named(text), text))
        self.check(conn == sock2, '`subscriptions` was answered on socket %s, not the new '
                   'leader\'s %s' % (conn, sock2))
        text, who = self.matrix_cmd(g, 'subscriptions')
        self.assert_has(text, PATTERN)
        self.check(kinds_named(text) == {'created'}, 'the new leader lists the kinds %r: %s'
                   % (kinds_named(text), text))
        self.check(who == l2, 'the Matrix `subscriptions` was answered by %s, not the new '
                   'leader %s' % (who, l2))

        t_set = time.monotonic()
        self.fake.set_projects(p.create(1).list())                      # Kc1, short N1
        key = p.expected[-1]
        self.wait(lambda: ([x for x in self.slack.posts(CH1) if key_of(message_text(x)) == key]
                           and self.notices(ROOM2, key)),
                  POLL_INTERVAL + 20, 'the new leader to post the change to %s and %s'
                  % (CH1, ROOM2))
        # One more whole poll of the new leader: a second post would have come by then.
        t_done = time.monotonic()
        self.wait(lambda: any(who == l2 and t > t_done for t, who in g.poll_starts()),
                  POLL_INTERVAL + 10, 'one more poll of the new leader')
        self.wait(lambda: all(g[l2].metric('ytbridge_subscription_queue_depth', platform=plat)
                              == 0 for plat in ('slack', 'matrix')),
                  10, 'the subscription queues of the new leader to be empty')

        posts = self.slack.posts(CH1)
        self.check([key_of(message_text(x)) for x in posts] == [key],
                   'slack: %s got %r, not the change once' % (
                       CH1, [message_text(x)[:80] for x in posts]))
        self.check(posts[0]['t'] > t_set and posts[0]['json'].get('channel') == CH1,
                   'slack: the post %r' % posts[0])
        mx = self.notices(ROOM2, key)
        self.check(len(mx) == 1, 'matrix: %s got the change %d times' % (ROOM2, len(mx)))
        self.check(g.who(mx[0].get('pid')) == l2, 'matrix: the change was sent by %s, not the '
                   'new leader %s' % (g.who(mx[0].get('pid')), l2))
        others = [message_text(r)[:80] for r in self.rx.notices(ROOM2)
                  if key_of(message_text(r)) != key]
        self.check(not others, 'matrix: %s got other notices: %r' % (ROOM2, others))
        dups = [r for r in self.rx.received('matrix')['duplicates'] if r.get('room') == ROOM2]
        self.check(not dups, 'matrix: %d re-sends to %s with no crash around the delivery'
                   % (len(dups), ROOM2))
        delivered = {plat: g[l2].metric('ytbridge_subscription_deliveries_total',
                                        platform=plat, result='delivered')
                     for plat in ('slack', 'matrix')}
        self.check(delivered == {'slack': 1, 'matrix': 1}, 'the new leader counts %r '
                   'subscription deliveries' % delivered)
        self.assert_standby_silent(g, l2)
        sys.stderr.write('\n%s -> %s: agreed %.2f s after the kill; the change posted '
                         '%.2f s after it was made\n'
                         % (l1, l2, t_l2 - t_kill, posts[0]['t'] - t_set))


if __name__ == '__main__':
    main()
