#!/usr/bin/env python3
"""Self-test of fake_receivers.py's Matrix membership control and of the Block
Kit check the two Slack fakes share (meson test "fake_receivers_selftest";
standard library only). Prints PASS/FAIL per check; exit status 0 only when
everything passed.

    python3 tests/fakes/test_fake_receivers.py [-v]
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, 'fake_receivers.py')
TOKEN = 'syt_fake_token_not_real'
BOT = '@bot:localhost'
ROOM = '!room1:localhost'
MX = '/_matrix/client/v3'
VERBOSE = '-v' in sys.argv
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.path.insert(0, HERE)
from slack_blocks import slack_blocks_ok  # noqa: E402


class Fake:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, FAKE, '--port', '0'],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        assert line.startswith('PORT '), line
        self.url = 'http://127.0.0.1:%d' % int(line.split()[1])
        self.stderr = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode('utf-8', 'replace'))

    def call(self, method, path, data=None, token=None):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if token:
            req.add_header('Authorization', 'Bearer ' + token)
        if body is not None:
            req.add_header('Content-Type', 'application/json')
        try:
            with NO_PROXY.open(req, timeout=15) as resp:
                status, out = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, out = e.code, e.read()
        try:
            return status, (json.loads(out) if out else None)
        except ValueError:
            return status, out.decode('utf-8', 'replace')

    def send(self, room, txn):
        return self.call('PUT', '%s/rooms/%s/send/m.room.message/%s'
                         % (MX, urllib.parse.quote(room, safe=''), txn),
                         {'msgtype': 'm.notice', 'body': 'x'}, TOKEN)

    def sync(self, since):
        q = '?timeout=0' + ('&since=' + since if since else '')
        return self.call('GET', MX + '/sync' + q, token=TOKEN)[1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


def t_kick_ban_invite_join(f):
    first = f.sync(None)
    since = first['next_batch']
    assert f.send(ROOM, 't1')[0] == 200
    st, got = f.call('POST', '/_control/matrix_membership',
                     {'room': ROOM, 'membership': 'leave', 'sender': '@admin:localhost',
                      'reason': 'bye'})
    assert st == 200 and got['event_id'].startswith('$'), got
    batch = f.sync(since)
    since = batch['next_batch']
    ev = batch['rooms']['leave'][ROOM]['timeline']['events'][0]
    assert ev['type'] == 'm.room.member' and ev['state_key'] == BOT, ev
    assert ev['sender'] == '@admin:localhost' and ev['content'] == {
        'membership': 'leave', 'reason': 'bye'}, ev
    st, err = f.send(ROOM, 't2')
    assert st == 403 and err == {'errcode': 'M_FORBIDDEN',
                                 'error': 'User %s not in room %s' % (BOT, ROOM)}, (st, err)
    # Invited back: the bot joins, sends work again.
    f.call('POST', '/_control/matrix_membership', {'room': ROOM, 'membership': 'invite'})
    batch = f.sync(since)
    since = batch['next_batch']
    inv = batch['rooms']['invite'][ROOM]['invite_state']['events']
    assert any(e['type'] == 'm.room.member' and e['state_key'] == BOT
               and e['content']['membership'] == 'invite' for e in inv), inv
    assert f.call('POST', '%s/join/%s' % (MX, urllib.parse.quote(ROOM, safe='')), {},
                  TOKEN)[0] == 200
    assert f.send(ROOM, 't3')[0] == 200
    # Banned: no send, no join until invited again.
    f.call('POST', '/_control/matrix_membership', {'room': ROOM, 'membership': 'ban'})
    batch = f.sync(since)
    since = batch['next_batch']
    assert batch['rooms']['leave'][ROOM]['timeline']['events'][0]['content'][
        'membership'] == 'ban'
    assert f.send(ROOM, 't4')[0] == 403
    assert f.call('POST', '%s/join/%s' % (MX, urllib.parse.quote(ROOM, safe='')), {},
                  TOKEN)[0] == 403
    # Forced back in (join), and a silent kick (no /sync batch).
    f.call('POST', '/_control/matrix_membership', {'room': ROOM, 'membership': 'join'})
    batch = f.sync(since)
    since = batch['next_batch']
    ev = batch['rooms']['join'][ROOM]['timeline']['events'][0]
    assert ev['sender'] == BOT and ev['content']['membership'] == 'join', ev
    assert f.send(ROOM, 't5')[0] == 200
    f.call('POST', '/_control/matrix_membership', {'room': ROOM, 'membership': 'leave',
                                                   'sync': False})
    assert f.sync(since) == {'next_batch': since, 'rooms': {}}
    assert f.send(ROOM, 't6')[0] == 403
    st, got = f.call('GET', '/_control/received?receiver=matrix')
    actions = [m['action'] for m in got['memberships']]
    assert actions == ['control_leave', 'control_invite', 'join', 'control_ban', 'join',
                       'control_join', 'control_leave'], actions
    assert f.call('POST', '/_control/matrix_membership', {'room': ROOM,
                                                          'membership': 'knock'})[0] == 400
    f.call('PUT', '/_control/matrix', {'rooms': [ROOM]})


def t_shared_block_check(f):
    ok = [{'type': 'rich_text', 'elements': [{'type': 'rich_text_section',
                                              'elements': [{'type': 'text', 'text': 'a'}]}]}]
    assert slack_blocks_ok(ok) and slack_blocks_ok(None)
    assert not slack_blocks_ok(ok * 51)
    assert not slack_blocks_ok([{'type': 'section', 'text': {'type': 'mrkdwn', 'text': ''}}])
    assert not slack_blocks_ok([{'type': 'rich_text', 'elements': []}])
    # The webhook fake uses the same check.
    st, body = f.call('POST', '/slack/services/T/B/x', {'text': 'x', 'blocks': ok * 51})
    assert (st, body) == (400, 'invalid_blocks'), (st, body)
    assert f.call('POST', '/slack/services/T/B/x', {'text': 'x', 'blocks': ok}) == (200, 'ok')


CHECKS = [t_kick_ban_invite_join, t_shared_block_check]


def main():
    fake = Fake()
    failed = 0
    try:
        for check in CHECKS:
            t0 = time.monotonic()
            try:
                check(fake)
                print('PASS %s (%.2fs)' % (check.__name__, time.monotonic() - t0))
            except Exception:
                failed += 1
                print('FAIL %s' % check.__name__)
                traceback.print_exc()
            sys.stdout.flush()
    finally:
        rc = fake.stop()
        if rc != 0:
            failed += 1
            print('FAIL sigterm: rc %s' % rc)
        if failed or VERBOSE:
            sys.stdout.write(''.join(fake.stderr))
    print('%s: %d failed' % ('FAIL' if failed else 'PASS', failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
