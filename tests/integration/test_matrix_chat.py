#!/usr/bin/env python3
"""Matrix chat commands: the real daemon long-polls the fake homeserver's
/sync (tests/fakes/fake_receivers.py) and answers `!youtrack ...` with
m.notice replies (README "Matrix commands"; doc/matrix.md §4-7).

Every case is a list of /sync batches in the shapes of the recorded answers
in tests/data/matrix/ (events with event_id, sender, origin_server_ts,
content, unsigned) and the replies, joins and leaves the fake must then have
seen.
"""

import json
import os
import re
import stat
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DEFAULT_PROJECTS, SCALE, DeliveryTest,  # noqa: E402
                     deadline_wait, main)

LISTEN_RE = re.compile(r'httpd: listening on 127\.0\.0\.1:(\d+) '
                       r'\(/healthz, /readyz, /metrics\)')
BOT = '@bot:localhost'
ROOM = '!room1:localhost'
ROOM2 = '!room2:localhost'
SYNC_PATH = '/_matrix/client/v3/sync'
_ts = [1700000000000]


def message(event_id, body, sender='@alice:localhost', msgtype='m.text',
            **content):
    """An m.room.message timeline event as /sync returns it (no room_id)."""
    _ts[0] += 1000
    c = {'msgtype': msgtype, 'body': body}
    c.update(content)
    return {'type': 'm.room.message', 'event_id': event_id, 'sender': sender,
            'origin_server_ts': _ts[0], 'unsigned': {'age': 120},
            'content': c}


def member(user, membership, sender=None, **unsigned):
    """An m.room.member timeline event (state_key: the member; a join is
    sent by the joining user itself)."""
    _ts[0] += 1000
    u = {'age': 90}
    u.update(unsigned)
    return {'type': 'm.room.member', 'event_id': '$mem%d' % _ts[0],
            'sender': sender or user, 'state_key': user,
            'origin_server_ts': _ts[0], 'unsigned': u,
            'content': {'membership': membership, 'displayname': 'x'}}


def joined(room, *events, limited=False):
    return {'rooms': {'join': {room: {'timeline': {
        'events': list(events), 'limited': limited,
        'prev_batch': 't%d' % _ts[0]}}}}}


def invite(inviter, bot=BOT):
    """An invite_state as in go-neb's sync-invite fixture."""
    return {'invite_state': {'events': [
        {'type': 'm.room.name', 'sender': inviter, 'state_key': '',
         'content': {'name': 'Somewhere'}},
        {'type': 'm.room.member', 'sender': inviter, 'state_key': bot,
         'content': {'membership': 'invite'}, 'origin_server_ts': _ts[0],
         'unsigned': {'age': 100}, 'event_id': '$inv%d' % _ts[0]}]}}


class MatrixChatTest(DeliveryTest):

    def setUp(self):
        super().setUp()
        self.baseline(DEFAULT_PROJECTS)
        self.use_chat()

    def use_chat(self, **opts):
        self.bridge.configure(chat={'matrix': self.rx.matrix_chat(**opts)})

    # -- helpers -------------------------------------------------------------

    def start(self):
        daemon = self.start_daemon()
        self.daemon = daemon
        return daemon

    def stop(self):
        result = self.daemon.stop(timeout=20)
        self.assert_ok(result)
        return result

    def syncs(self):
        return self.rx.received('matrix')['syncs']

    def replies(self):
        return self.rx.accepted('matrix')

    def wait(self, predicate, what, timeout=20):
        try:
            return deadline_wait(predicate, timeout, step=0.05, what=what)
        except AssertionError as e:
            self.fail_with(str(e), self.daemon.result())

    def wait_polling(self, since=None):
        """Until the daemon holds a /sync (with since, if given) after the
        newest batch served: everything before it has been handled."""
        def held():
            head = self.rx.sync_stream()['head']
            want = since or head
            return [s for s in self.syncs()
                    if s['since'] == want and s['since'] == head
                    and s['status'] is None] and want
        return self.wait(held, 'a /sync long-poll after the last batch')

    def wait_replies(self, n):
        got = []

        def enough():
            got[:] = self.replies()
            return len(got) >= n
        self.wait(enough, '%d replies (have %d)' % (n, len(got)))
        return list(got)

    def port(self):
        found = []

        def listening():
            m = LISTEN_RE.search(self.daemon.result().stderr)
            if m:
                found.append(int(m.group(1)))
            return m
        self.wait(listening, 'the httpd listening line')
        return found[0]

    def readyz(self):
        req = urllib.request.Request('http://127.0.0.1:%d/readyz'
                                     % self.port())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=5 * SCALE) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def check_reply(self, rec, room, event_id):
        self.assertEqual(rec['room'], room)
        self.assertEqual(rec['event_type'], 'm.room.message')
        self.assertTrue(re.fullmatch(r'r-[0-9a-f]{32}', rec['txn_id']),
                        rec['txn_id'])
        j = rec['json']
        self.assertEqual(j['msgtype'], 'm.notice')
        self.assertEqual(j['m.mentions'], {})
        self.assertEqual(j['format'], 'org.matrix.custom.html')
        self.assertIsInstance(j['formatted_body'], str)
        self.assertTrue(j['body'])
        self.assertEqual(j['m.relates_to'],
                         {'m.in_reply_to': {'event_id': event_id}})
        return j

    # -- cases ---------------------------------------------------------------

    def test_backlog_skipped_then_commands_answered(self):
        # History the first sync returns: never answered.
        self.rx.queue_sync(joined(ROOM, message('$old', '!youtrack projects')))
        self.start()
        self.wait_polling('s1')
        first = self.syncs()[0]
        self.assertIsNone(first['since'])
        self.assertEqual(first['timeout'], 0)
        self.assertEqual(first['set_presence'], 'offline')
        flt = first['filter']
        # m.room.member for the bot's own join (sent by the bot, so no
        # not_senders); only the configured rooms, so that other rooms
        # cannot swell the answer.
        self.assertEqual(flt['room']['timeline']['types'],
                         ['m.room.message', 'm.room.encrypted',
                          'm.room.member'])
        self.assertNotIn('not_senders', flt['room']['timeline'])
        self.assertEqual(flt['room']['timeline']['rooms'], [ROOM])
        self.assertEqual(flt['room']['timeline']['limit'], 50)
        self.assertEqual(flt['room']['state'],
                         {'types': ['m.room.encryption'], 'rooms': [ROOM]})
        self.assertNotIn('rooms', flt['room'])  # invites still come
        self.assertEqual(flt['presence'], {'not_types': ['*']})
        self.assertEqual(flt['room']['ephemeral'], {'not_types': ['*']})
        held = [s for s in self.syncs() if s['since'] == 's1'][0]
        self.assertEqual(held['timeout'], 30000)
        for s in self.syncs():
            # The token travels in the header only (doc/matrix.md §1).
            self.assertEqual(s['headers'].get('Authorization'),
                             'Bearer <MATRIX_TOKEN>')
            self.assertNotIn('access_token', s['raw_path'])
        self.assertEqual(self.replies(), [])

        self.rx.queue_sync(joined(ROOM, message('$cmd1',
                                                '!youtrack projects')))
        rec = self.wait_replies(1)[0]
        j = self.check_reply(rec, ROOM, '$cmd1')
        for word in ('DEV', 'DEVELOPMENT', 'DOCS', 'Демопроект'):
            self.assertIn(word, j['body'])
            self.assertIn(word, j['formatted_body'])

        self.rx.queue_sync(joined(ROOM, message('$cmd2',
                                                '!youtrack project DOCS')))
        rec = self.wait_replies(2)[1]
        j = self.check_reply(rec, ROOM, '$cmd2')
        self.assertIn('Documentation', j['body'])
        self.wait_polling()
        status, doc = self.readyz()
        self.assertEqual(doc['checks'].get('matrix'), 'ok', doc)
        result = self.stop()
        self.assertEqual(len(self.replies()), 2)
        self.assertEqual(self.rx.received('matrix')['duplicates'], [])
        self.assertNotIn('"$old"', json.dumps(self.replies()))
        self.assertIn('first /sync: 1 earlier command not answered',
                      result.stderr)

    def test_own_messages_notices_and_edits_ignored(self):
        self.rx.set_matrix(echo=True)  # our replies come back in /sync
        self.start()
        self.wait_polling('s0')
        self.rx.queue_sync(joined(
            ROOM,
            message('$own', '!youtrack help', sender=BOT),
            message('$notice', '!youtrack help', sender='@other-bot:localhost',
                    msgtype='m.notice'),
            message('$edit', '* !youtrack status',
                    **{'m.new_content': {'msgtype': 'm.text',
                                         'body': '!youtrack status'},
                       'm.relates_to': {'rel_type': 'm.replace',
                                        'event_id': '$earlier'}}),
            message('$word', '!youtrackfoo status'),
            message('$emote', '!youtrack help', msgtype='m.emote'),
            message('$quoted', '> <@bob:localhost> how?\n\n!youtrack status',
                    **{'m.relates_to': {'m.in_reply_to':
                                        {'event_id': '$q'}}}),
        ))
        rec = self.wait_replies(1)[0]
        self.check_reply(rec, ROOM, '$quoted')
        # The reply's echo (sender = the bot, an m.notice) is served and
        # passed over; then nothing more is sent.
        self.wait(lambda: self.rx.sync_stream()['served'] == ['s1', 's2'],
                  'the echo to be served')
        self.wait_polling('s2')
        self.stop()
        self.assertEqual(len(self.replies()), 1)
        self.assertEqual(self.rx.received('matrix')['duplicates'], [])

    def test_flood_is_limited_and_stale_commands_dropped(self):
        self.use_chat(commands_per_user=3, commands_per_second=100)
        self.start()
        self.wait_polling('s0')
        # A command sent ten minutes ago (the homeserver's age) is not answered:
        # the answer would arrive long after anyone waited for it.
        old = message('$stale', '!youtrack status')
        old['unsigned']['age'] = 10 * 60 * 1000
        flood = [message('$f%d-%d' % (u, i), '!youtrack projects',
                         sender='@flood%d:localhost' % u)
                 for i in range(40) for u in range(3)]
        self.rx.queue_sync(joined(ROOM, old, *flood))
        self.wait_polling('s1')
        self.wait_replies(12)

        def drained():
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open('http://127.0.0.1:%d/metrics' % self.port(),
                             timeout=5 * SCALE) as resp:
                text = resp.read().decode()
            return re.search(r'^ytbridge_outbox_depth\{sink="chat:%s",[^}]*\} 0$' % re.escape(ROOM),
                             text, re.M)
        self.wait(drained, 'the replies delivered')
        got = self.replies()
        # Each sender: its 3 commands, then one "slow down", then silence.
        answered = [r for r in got if 'Slow down' not in r['json']['body']]
        told = [r for r in got if 'Slow down' in r['json']['body']]
        self.assertEqual(len(answered), 9, [r['json']['body'][:60] for r in got])
        self.assertEqual(len(told), 3, [r['json']['body'][:60] for r in got])
        replied_to = {r['json']['m.relates_to']['m.in_reply_to']['event_id'] for r in got}
        self.assertNotIn('$stale', replied_to)
        for u in range(3):
            self.assertEqual({'$f%d-%d' % (u, i) for i in range(4)},
                             {e for e in replied_to if e.startswith('$f%d-' % u)})
        self.assertIn('not answered', self.daemon.result().stderr)
        self.stop()

    def test_next_batch_survives_a_restart(self):
        self.start()
        self.wait_polling('s0')
        self.rx.queue_sync(joined(ROOM, message('$c1', '!youtrack status')))
        self.wait_replies(1)
        self.wait_polling('s1')
        self.stop()
        path = os.path.join(self.bridge.state_dir, 'matrix-sync.json')
        with open(path, encoding='utf-8') as f:
            saved = json.load(f)
        self.assertEqual(saved, {'homeserver': self.rx.url, 'user_id': BOT,
                                 'next_batch': 's1'})
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

        self.rx.clear_received('matrix')
        self.start()
        self.wait(lambda: self.syncs(), 'a /sync after the restart')
        first = self.syncs()[0]
        # No first sync again: it resumes where it stopped, and the fake
        # would replay $c1 to an older token.
        self.assertEqual(first['since'], 's1')
        self.assertEqual(first['timeout'], 30000)
        self.rx.queue_sync(joined(ROOM, message('$c2', '!youtrack help')))
        rec = self.wait_replies(1)[0]
        self.check_reply(rec, ROOM, '$c2')
        self.wait_polling('s2')
        self.stop()
        self.assertEqual(len(self.replies()), 1)
        self.assertEqual(self.rx.received('matrix')['duplicates'], [])
        self.assertFalse(any(s['replayed'] for s in self.syncs()))
        with open(path, encoding='utf-8') as f:
            self.assertEqual(json.load(f)['next_batch'], 's2')

    def test_saved_position_of_another_account_is_ignored(self):
        path = os.path.join(self.bridge.state_dir, 'matrix-sync.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump({'homeserver': self.rx.url, 'user_id': '@other:localhost',
                       'next_batch': 's7'}, f)
        self.rx.queue_sync(joined(ROOM, message('$old', '!youtrack help')))
        self.start()
        self.wait_polling('s1')
        self.assertIsNone(self.syncs()[0]['since'])
        self.stop()
        self.assertEqual(self.replies(), [])

    def test_allowed_users_and_invites(self):
        self.use_chat(rooms=[ROOM, ROOM2], allowed_users=['@alice:localhost'])
        self.start()
        self.wait_polling('s0')
        self.rx.queue_sync({'rooms': {'invite': {
            ROOM2: invite('@eve:localhost'),            # configured room
            '!elsewhere:localhost': invite('@eve:localhost'),
            '!alices:localhost': invite('@alice:localhost'),  # allowed user
        }}})

        def memberships():
            got = self.rx.received('matrix')['memberships']
            return got if len(got) >= 3 else None
        got = self.wait(memberships, 'a join or leave for each invite')
        self.assertEqual(sorted((m['action'], m['room']) for m in got),
                         [('join', '!alices:localhost'), ('join', ROOM2),
                          ('leave', '!elsewhere:localhost')])
        for m in got:
            self.assertEqual(m['json'], {})
            self.assertEqual(m['status'], 200)
        joins = [m for m in got if m['action'] == 'join']
        self.assertIn('/join/%21', joins[0]['raw_path'])  # percent-encoded

        # Now in ROOM2: a command there is answered there; Mallory's is
        # refused; a room not configured is not answered even if joined.
        self.rx.queue_sync(
            joined(ROOM2, message('$a', '!youtrack status')),
            joined(ROOM, message('$m', '!youtrack status',
                                 sender='@mallory:localhost')),
            joined('!alices:localhost', message('$x', '!youtrack help')))
        got = self.wait_replies(2)
        by_event = {r['json']['m.relates_to']['m.in_reply_to']['event_id']: r
                    for r in got}
        self.check_reply(by_event['$a'], ROOM2, '$a')
        j = self.check_reply(by_event['$m'], ROOM, '$m')
        self.assertEqual(j['body'], 'Sorry, you cannot use this command here.')
        self.wait_polling('s4')
        result = self.stop()
        self.assertEqual(len(self.replies()), 2)
        self.assertIn('invited to !elsewhere:localhost by @eve:localhost: '
                      'refused', result.stderr)

    def test_history_before_own_join_not_answered(self):
        # Invited to a configured room: after the join, Synapse's next
        # /sync brings the room's recent timeline ("limited"), with
        # messages from before the join (history visibility "shared").
        self.use_chat(rooms=[ROOM, ROOM2])
        self.start()
        self.wait_polling('s0')
        self.rx.queue_sync({'rooms': {'invite': {
            ROOM2: invite('@alice:localhost')}}})
        self.wait(lambda: self.rx.received('matrix')['memberships'],
                  'the join')
        self.rx.queue_sync(joined(
            ROOM2,
            message('$old', '!youtrack status'),             # days ago
            member('@carol:localhost', 'join'),             # not us
            message('$old2', '!youtrack help'),
            member(BOT, 'leave', sender='@alice:localhost'),  # kicked,
            member(BOT, 'invite', sender='@alice:localhost'),  # invited
            member(BOT, 'join'),                            # and back
            message('$new', '!youtrack help'),
            member('@dave:localhost', 'join'),
            message('$new2', '!youtrack status'),
            limited=True))
        got = self.wait_replies(2)
        self.wait_polling('s2')
        result = self.stop()
        self.assertEqual(len(self.replies()), 2)
        self.assertEqual(
            [r['json']['m.relates_to']['m.in_reply_to']['event_id']
             for r in got], ['$new', '$new2'])
        self.check_reply(got[0], ROOM2, '$new')
        self.assertIn('info matrix: joined %s: 2 earlier commands not '
                      'answered' % ROOM2, result.stderr)
        # The history before a join is no gap in what we read.
        self.assertNotIn('more new messages than one /sync returns',
                         result.stderr)

    def check_position_abandoned(self, mode):
        """A /sync that fails the same way for one since (mode: a fault of
        the fake) is tried 3 times, then the position is dropped: a fresh
        first sync (answers nothing), saved, and commands work again."""
        path = os.path.join(self.bridge.state_dir, 'matrix-sync.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump({'homeserver': self.rx.url, 'user_id': BOT,
                       'next_batch': 'gone'}, f)
        self.rx.fault('matrix', mode, path=SYNC_PATH, since='gone')
        # Sent while the position was bad: the fresh sync reads it as
        # history.
        self.rx.queue_sync(joined(ROOM, message('$gap', '!youtrack help')))
        self.start()
        fresh = self.wait(lambda: [s for s in self.syncs()
                                   if s['since'] is None],
                          'a /sync without since', timeout=60)[0]
        tries = [s for s in self.syncs() if s['since'] == 'gone']
        self.assertEqual(len(tries), 3, tries)
        self.assertLess(tries[-1]['seq'], fresh['seq'])
        # 2 s apart (waiting longer would not help), and the fresh sync at
        # once after the third.
        for a, b in zip(tries, tries[1:]):
            self.assertGreaterEqual(b['t'] - a['t'], 1.9)
            self.assertLess(b['t'] - a['t'], 4 * SCALE)
        self.assertLess(fresh['t'] - tries[-1]['t'], 2 * SCALE)
        self.assertEqual(fresh['timeout'], 0)
        self.wait_polling('s1')
        with open(path, encoding='utf-8') as f:
            self.assertEqual(json.load(f)['next_batch'], 's1')
        self.rx.queue_sync(joined(ROOM, message('$after', '!youtrack help')))
        self.check_reply(self.wait_replies(1)[0], ROOM, '$after')
        self.wait_polling('s2')
        result = self.stop()
        self.assertEqual(len(self.replies()), 1)
        self.assertEqual(len([s for s in self.syncs()
                              if s['since'] == 'gone']), 3)
        self.assertIn('error matrix: /sync: the saved position failed 3 '
                      'times in a row', result.stderr)
        self.assertIn('may go unanswered', result.stderr)
        self.assertIn('first /sync: 1 earlier command not answered',
                      result.stderr)

    def test_rejected_position_abandoned(self):
        # Synapse after a database restore, or a copied state directory.
        self.check_position_abandoned('invalid_stream_token')

    def test_oversized_sync_position_abandoned(self):
        # An answer over the 16 MiB cap, every time.
        self.check_position_abandoned('huge_sync')

    def test_encrypted_room_said_once(self):
        megolm = {'type': 'm.room.encrypted', 'event_id': '$enc',
                  'sender': '@alice:localhost', 'origin_server_ts': _ts[0],
                  'unsigned': {'age': 1234},
                  'content': {'algorithm': 'm.megolm.v1.aes-sha2',
                              'ciphertext': 'AwgAEnACgAkLmt6qF84IK++J7UDH2Za1',
                              'device_id': 'RJYKSTBOIE',
                              'sender_key': 'IlRMeOPX2e0MurIyfWEucYBRVOEEUMrO',
                              'session_id': 'X3lUlvLELLYxeTx4yOVu6UDpasGEVO0J'}}
        self.start()
        self.wait_polling('s0')
        self.rx.queue_sync(joined(ROOM, megolm), joined(ROOM, megolm))
        self.wait_polling('s2')
        result = self.stop()
        self.assertEqual(result.stderr.count('encrypted rooms are not '
                                             'supported'), 1, result.stderr)
        self.assertEqual(self.replies(), [])

    def test_rate_limited_sync_is_waited_out(self):
        self.rx.fault('matrix', '429_header', count=1, path=SYNC_PATH,
                      retry_after=2)
        self.start()
        self.wait_polling('s0')
        first, second = self.syncs()[:2]
        self.assertEqual(first['status'], 429)
        gap = second['t'] - first['t']
        # Retry-After, not the 5-15 s back-off of other failures.
        self.assertGreaterEqual(gap, 1.9)
        self.assertLess(gap, 4.5 * SCALE)
        # retry_after_ms without the header (doc/matrix.md §1).
        self.rx.fault('matrix', '429_body_only', count=1, path=SYNC_PATH,
                      retry_after=1.5)
        self.rx.queue_sync({})

        def retried():
            got = self.syncs()[2:]
            limited = [i for i, r in enumerate(got) if r['status'] == 429]
            return limited and len(got) > limited[0] + 1 and \
                got[limited[0]:limited[0] + 2]
        third, fourth = self.wait(retried, 'the /sync after the second 429')
        self.assertEqual(third['since'], 's1')
        self.assertEqual(fourth['since'], 's1')
        self.assertGreaterEqual(fourth['t'] - third['t'], 1.4)
        self.assertLess(fourth['t'] - third['t'], 4.5 * SCALE)
        self.rx.queue_sync(joined(ROOM, message('$after', '!youtrack help')))
        self.check_reply(self.wait_replies(1)[0], ROOM, '$after')
        self.stop()

    def test_refused_token_stops_sync_and_alerts(self):
        self.rx.fault('matrix', 'unknown_token', path=SYNC_PATH)
        self.start()

        def not_ready():
            status, doc = self.readyz()
            return status == 503 and 'M_UNKNOWN_TOKEN' in doc['checks'].get(
                'matrix', '') and doc
        doc = self.wait(not_ready, '/readyz to report the refused token')
        self.assertFalse(doc['ready'])

        def alerted():
            return [m for m in self.daemon.result().messages
                    if m.get('event') == 'alert'
                    and m.get('kind') == 'matrix_auth']
        alerts = self.wait(alerted, 'a matrix_auth alert')
        self.assertIn('M_UNKNOWN_TOKEN', json.dumps(alerts))
        self.rx.clear_faults('matrix')
        self.rx.queue_sync(joined(ROOM, message('$late', '!youtrack help')))
        # The youtrack check is fine: only the matrix one fails.
        self.wait(lambda: self.readyz()[1]['checks'].get('youtrack') == 'ok',
                  'a YouTrack poll')
        result = self.stop()
        self.assertIn('!youtrack commands are not answered until', result.stderr)
        self.assertEqual(len(self.syncs()), 1)  # no retry after the 401
        self.assertEqual(len([m for m in result.messages
                              if m.get('kind') == 'matrix_auth']), 1)
        self.assertEqual(self.replies(), [])


if __name__ == '__main__':
    main()
