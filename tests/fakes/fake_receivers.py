#!/usr/bin/env python3
"""Fake delivery targets for ytbridge's integration tests: a Slack incoming
webhook, a Matrix homeserver, generic signed webhooks and matrix-hookshot
generic webhooks, all in one process (standard library only).

Wire formats follow doc/slack.md ("Incoming webhooks") and doc/matrix.md
§1-3:

  POST /slack/<hook path>        200 text/plain "ok"; errors are bare strings;
                                 400 invalid_blocks for blocks that break
                                 Block Kit's documented rules (doc/slack.md)
  PUT  /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}
                                 Bearer token, joined rooms, Synapse-like txnId
                                 dedup (failed requests are not cached), events
                                 over 65536 bytes -> 413 M_TOO_LARGE
  GET  /_matrix/client/v3/directory/room/{roomAlias}
  GET  /_matrix/client/v3/account/whoami
  GET  /_matrix/client/v3/sync   doc/matrix.md §4: answers queued batches (see
                                 PUT /_control/matrix_sync) in order; with
                                 nothing queued it holds the request up to
                                 `timeout` ms, then answers {"next_batch":
                                 since, "rooms": {}}. A `since` older than the
                                 newest token replays the batch served after
                                 it, as a homeserver would. Each request is
                                 recorded in "syncs" (since, timeout, filter,
                                 set_presence, served next_batch). The
                                 request's inline filter is applied as Synapse
                                 does (room.rooms/not_rooms; timeline and state
                                 types, not_types, senders, not_senders, rooms,
                                 not_rooms; "x*" wildcards), not limit.
  POST /_matrix/client/v3/join/{roomIdOrAlias}   {"room_id"}; joins the room
  POST /_matrix/client/v3/rooms/{roomId}/leave   {}; leaves it
                                 (both recorded in "memberships")
  POST /hook/<name>              records X-Ytbridge-* headers, checks
                                 X-Ytbridge-Signature-256 when a secret is set
  POST /hookshot/<name>          expects {"text": ..., "html": ...}

Control API (unauthenticated):

  POST   /_control/fault     {"receiver": "slack"|"matrix"|"hook"|"hookshot",
                              "mode": M, "count": n (omit: until cleared),
                              "path": request-path prefix (optional),
                              "retry_after": s, "delay": s, "status": code,
                              "body": text (Slack errors: replaces the body),
                              "since": token or null (matrix /sync only: the
                              fault applies to a /sync with that since, null
                              being the first sync)}
                             Matrix /sync modes also: "invalid_stream_token"
                             (400 M_UNKNOWN "Invalid stream token", as Synapse
                             answers a token it never issued) and "huge_sync"
                             (200 with a 17 MiB body).
                             A fault replaces an earlier one with the same
                             receiver and path; several may be active.
  DELETE /_control/fault     clear all faults (?receiver=R: only R's)
  GET    /_control/faults    the active faults
  GET    /_control/received?receiver=R[&min_gap=0.95]
                             {"accepted": [...], "rejected": [...],
                              "duplicates": [...] (matrix), "lookups": [...]
                              (matrix directory/whoami), "syncs": [...] and
                              "memberships": [...] (matrix), "pacing_violations":
                              [...] (accepted posts to one path closer than
                              min_gap s), "attempt_pacing_violations": [...]
                              (the same over every attempt)}
                             Without receiver: {R: that object, ...}.
  DELETE /_control/received  forget everything received (?receiver=R)
  PUT    /_control/matrix    {"rooms": [joined room ids], "aliases": {alias:
                              room id}, "token": "...", "user_id": "...",
                              "ratelimit": {"per_second": r, "burst": n} | null,
                              "forget_txns": true, "echo": bool (accepted
                              messages come back in the next /sync, sent by
                              user_id, with unsigned.transaction_id)}
  POST   /_control/matrix_membership {"room": id, "membership": "leave"|
                              "ban"|"invite"|"join", "sender": the admin
                              (default @admin:localhost), "reason": text,
                              "sync": true}
                             The bot's membership changes as a room admin
                             would change it: leave (a kick when sender is not
                             the bot) and ban take the room out of the joined
                             rooms (its /send then answers 403 M_FORBIDDEN
                             "User @bot:localhost not in room !x", as Synapse
                             does; a ban also makes /join answer 403) and queue
                             a /sync batch with rooms.leave.{room}.timeline
                             holding the m.room.member event (state_key the
                             bot); invite lifts a ban and queues rooms.invite
                             (the bot joins with POST /join); join puts the bot
                             back at once and queues its join event. "sync":
                             false changes the membership without telling /sync
                             (the bot finds out from a refused /send). Answers
                             {"event_id"}; recorded in "memberships" with action
                             "control_<membership>".
  PUT    /_control/matrix_sync {"batches": [sync bodies], "reset": bool}
                             Appends batches (after dropping the queue and
                             the served history with "reset"); a batch
                             without next_batch gets "s<N>".
  GET    /_control/matrix_sync {"head": newest token, "queued": n,
                              "served": [tokens in order]}
  PUT    /_control/hook      {"name": ..., "secret": "..." | null}
  GET    /_control/settle?timeout=s  wait (up to s, default 5) until every
                             connection accepted before this one has been
                             handled and closed -> {"ok": bool, "busy": n}.
                             Once the daemon has exited, its connections were
                             all accepted before the caller's (one listen
                             queue, in order), so ok means every request it
                             sent is recorded: nothing more can show up.

Every record has seq (global arrival order), t (time.monotonic() at arrival,
comparable with the test process on Linux), wall (time.time()), method, path
(decoded), raw_path, headers, body (text) and json (parsed or null); with
--peer-pids also pid, the process that sent it (peer_pid.py).
"""

import argparse
import hashlib
import hmac
import json
import math
import secrets
import select
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slack_blocks import slack_blocks_ok  # shared with fake_slack.py (chat.postMessage)

RECEIVERS = ('slack', 'matrix', 'hook', 'hookshot')

# fixtures/slack/webhook_500_html_error_body__python-slack-sdk_tests_slack_sdk_webhook_mock_web_api_server.py.html
SLACK_500_HTML = (
    b'<!DOCTYPE html>\n'
    b'<html lang="en">\n'
    b'<head>\n'
    b'\t<meta charset="utf-8">\n'
    b'\t<title>Server Error | Slack</title>\n'
    b'\t<meta name="author" content="Slack">\n'
    b'\t<style></style>\n'
    b'</head>\n'
    b'<body>\n'
    b'\t<nav class="top persistent">\n'
    b'\t\t<a href="https://status.slack.com/" class="logo" data-qa="logo"></a>\n'
    b'\t</nav>\n'
    b'\t<div id="page">\n'
    b'\t\t<div id="page_contents">\n'
    b'\t\t\t<h1>\n'
    b'\t\t\t\t<svg width="30px" height="27px" viewBox="0 0 60 54" class="warning_icon"><path d="" fill="#D94827"/></svg>\n'
    b'\t\t\t\tServer Error\n'
    b'\t\t\t</h1>\n'
    b'\t\t\t<div class="card">\n'
    b'\t\t\t\t<p>It seems like there\xe2\x80\x99s a problem connecting to our servers, and we\xe2\x80\x99re investigating the issue.</p>\n'
    b'\t\t\t\t<p>Please <a href="https://status.slack.com/">check our Status page for updates</a>.</p>\n'
    b'\t\t\t</div>\n'
    b'\t\t</div>\n'
    b'\t</div>\n'
    b'\t<script type="text/javascript">\n'
    b'\t\tif (window.desktop) {\n'
    b"\t\t\tdocument.documentElement.className = 'desktop';\n"
    b'\t\t}\n'
    b'\n'
    b'\t\tvar FIVE_MINS = 5 * 60 * 1000;\n'
    b'\t\tvar TEN_MINS = 10 * 60 * 1000;\n'
    b'\n'
    b'\t\tfunction randomBetween(min, max) {\n'
    b'\t\t\treturn Math.floor(Math.random() * (max - (min + 1))) + min;\n'
    b'\t\t}\n'
    b'\n'
    b'\t\twindow.setTimeout(function () {\n'
    b'\t\t\twindow.location.reload(true);\n'
    b'\t\t}, randomBetween(FIVE_MINS, TEN_MINS));\n'
    b'\t</script>\n'
    b'</body>\n'
    b'</html>')

NGINX_502 = (b'<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n'
             b'<center><h1>502 Bad Gateway</h1></center>\r\n'
             b'<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n')

# Slack webhook error strings -> default HTTP status (doc/slack.md; the ones
# the changelog does not give are guesses, overridable with "status").
SLACK_ERRORS = {
    'invalid_payload': 400, 'invalid_blocks': 400, 'no_text': 400,
    'user_not_found': 400, 'too_many_attachments': 400,
    'no_service': 404, 'no_service_id': 400, 'no_team': 400,
    'no_active_hooks': 403, 'invalid_token': 403,
    'channel_is_archived': 410, 'channel_not_found': 404,
    'action_prohibited': 403, 'team_disabled': 403,
    'posting_to_general_channel_denied': 403, 'rollup_error': 500,
}
# Common modes: "slow" (answer normally after "delay" s, default 2),
# "disconnect" (read the request, close without answering, record nothing
# as accepted), "ok_then_disconnect" (accept and record the message, then
# close without answering: the sender cannot know it arrived).
COMMON_MODES = {'slow', 'disconnect', 'ok_then_disconnect'}
SLACK_MODES = set(SLACK_ERRORS) | {'429', '500'} | COMMON_MODES
MATRIX_MODES = {'429_header', '429_body_only', '500', '502_html', 'forbidden',
                'unknown_token', 'too_large', 'invalid_stream_token',
                'huge_sync'} | COMMON_MODES
HUGE_SYNC_BYTES = 17 * 1024 * 1024  # over ytbridge's 16 MiB /sync cap
SYNC_TIMEOUT_MAX = 60.0  # s a /sync is ever held, whatever it asks for
HOOK_MODES = COMMON_MODES  # plus any HTTP status code as a string

MATRIX_PREFIX = '/_matrix/client/v3'
NOT_SYNC = object()  # take_fault(): the request is no /sync
MAX_EVENT = 65536
EVENT_OVERHEAD = 400  # what a homeserver adds around the content (approx.)


def log(msg):
    sys.stderr.write('fake_receivers: %s\n' % msg)
    sys.stderr.flush()


def dumps(value):
    return json.dumps(value, ensure_ascii=False,
                      separators=(',', ':')).encode('utf-8')


def valid_mode(receiver, mode):
    if receiver == 'slack':
        return mode in SLACK_MODES
    if receiver == 'matrix':
        return mode in MATRIX_MODES
    if receiver in ('hook', 'hookshot'):
        return mode in HOOK_MODES or (mode.isdigit() and 200 <= int(mode) < 600)
    return False


def pacing(records, min_gap):
    """Pairs of consecutive records to one path closer than min_gap s."""
    last = {}
    out = []
    for rec in sorted(records, key=lambda r: r['seq']):
        prev = last.get(rec['path'])
        if prev is not None and rec['t'] - prev['t'] < min_gap:
            out.append({'path': rec['path'], 'gap': rec['t'] - prev['t'],
                        'seq': [prev['seq'], rec['seq']]})
        last[rec['path']] = rec
    return out


def _matches(flt, key, value, wildcard=False):
    """Synapse's Filter._check_fields for one field (synapse/api/
    filtering.py): not_<key> rejects, <key> (when present) must match."""
    def match(v):
        if wildcard and isinstance(v, str) and v.endswith('*'):
            return isinstance(value, str) and value.startswith(v[:-1])
        return value == v
    if any(match(v) for v in flt.get('not_' + key, [])):
        return False
    allowed = flt.get(key)
    return allowed is None or any(match(v) for v in allowed)


def _event_passes(flt, room, ev):
    if not isinstance(ev, dict):
        return True
    return (_matches(flt, 'rooms', room)
            and _matches(flt, 'senders', ev.get('sender'))
            and _matches(flt, 'types', ev.get('type'), wildcard=True))


def apply_sync_filter(body, flt):
    """body as a homeserver would answer it under the inline filter flt
    (room-level parts only; limit is not applied)."""
    room_flt = flt.get('room') if isinstance(flt, dict) else None
    if not isinstance(room_flt, dict) or not isinstance(body.get('rooms'),
                                                        dict):
        return body
    out = dict(body)
    out['rooms'] = {}
    for section, rooms in body['rooms'].items():
        if not isinstance(rooms, dict):
            out['rooms'][section] = rooms
            continue
        kept = {}
        for room, data in rooms.items():
            if not _matches(room_flt, 'rooms', room):
                continue
            if section == 'invite' or not isinstance(data, dict):
                kept[room] = data
                continue
            data = dict(data)
            for part in ('timeline', 'state'):
                sub = room_flt.get(part)
                block = data.get(part)
                if isinstance(sub, dict) and isinstance(block, dict) and \
                        isinstance(block.get('events'), list):
                    block = dict(block)
                    block['events'] = [ev for ev in block['events']
                                       if _event_passes(sub, room, ev)]
                    data[part] = block
            kept[room] = data
        out['rooms'][section] = kept
    return out


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.faults = []
        self.received = {r: self.empty_log() for r in RECEIVERS}
        self.hook_secrets = {}
        self.matrix_token = 'syt_fake_token_not_real'
        self.matrix_user = '@bot:localhost'
        self.rooms = {'!room1:localhost'}
        self.banned = set()  # rooms the bot is banned from: /join answers 403
        self.aliases = {'#yt:localhost': '!room1:localhost'}
        self.txns = {}  # (room, txnId) -> event_id, successes only
        self.ratelimit = None  # {"per_second": r, "burst": n}
        self.bucket = [0.0, time.monotonic()]  # level, last update
        # /sync: batches not yet served, and the stream served so far as
        # [(since token, batch with next_batch)], oldest first.
        self.sync_cond = threading.Condition(self.lock)
        self.sync_queue = []
        self.sync_served = []
        self.sync_head = 's0'
        self.sync_n = 0
        self.echo = False
        self.peer_pids = False

    @staticmethod
    def empty_log():
        return {'accepted': [], 'rejected': [], 'duplicates': [],
                'lookups': [], 'syncs': [], 'memberships': []}

    def next_seq(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def take_fault(self, receiver, path, since=NOT_SYNC):
        """since: the since of a Matrix /sync (None: the first); faults
        with a "since" key match only a /sync with that since."""
        with self.lock:
            for fault in self.faults:
                if fault['receiver'] != receiver:
                    continue
                prefix = fault.get('path')
                if prefix and not path.startswith(prefix):
                    continue
                if 'since' in fault and (since is NOT_SYNC
                                         or fault['since'] != since):
                    continue
                if fault.get('count') is not None:
                    fault['count'] -= 1
                    if fault['count'] <= 0:
                        self.faults.remove(fault)
                return dict(fault)
        return None

    def add(self, receiver, kind, rec):
        with self.lock:
            self.received[receiver][kind].append(rec)

    def queue_sync(self, batches):
        """Append sync bodies (caller holds the lock)."""
        for batch in batches:
            batch = dict(batch)
            if 'next_batch' not in batch:
                self.sync_n += 1
                batch['next_batch'] = 's%d' % self.sync_n
            batch.setdefault('rooms', {})
            self.sync_queue.append(batch)
        self.sync_cond.notify_all()

    def next_sync(self, since, timeout, gone):
        """The body for a /sync with since (None: the first) held at most
        timeout s; (body, replayed), or (None, False) when gone() says the
        client hung up meanwhile (its batch stays queued for the next)."""
        end = time.monotonic() + timeout
        with self.lock:
            if since is not None and since != self.sync_head:
                for before, batch in self.sync_served:
                    if before == since:
                        return batch, True
            while not self.sync_queue and time.monotonic() < end:
                self.sync_cond.wait(min(0.2, end - time.monotonic()))
                if gone():
                    return None, False
            if not self.sync_queue:
                return {'next_batch': since or self.sync_head, 'rooms': {}}, False
            batch = self.sync_queue.pop(0)
            self.sync_served.append((self.sync_head, batch))
            self.sync_head = batch['next_batch']
            return batch, False

    def ratelimited(self):
        """Synapse-like leaky bucket; returns seconds to wait or 0."""
        with self.lock:
            rl = self.ratelimit
            if not rl:
                return 0
            now = time.monotonic()
            rate = float(rl.get('per_second', 0.2))
            burst = float(rl.get('burst', 10))
            level = max(0.0, self.bucket[0] - (now - self.bucket[1]) * rate)
            self.bucket = [level, now]
            if level + 1 > burst:
                return (level + 1 - burst) / rate if rate > 0 else 60
            self.bucket[0] = level + 1
            return 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'fake-receivers'
    sys_version = ''

    @property
    def state(self):
        return self.server.state

    def log_message(self, fmt, *args):
        # Never log request paths: they carry the webhook secrets.
        pass

    # -- plumbing -------------------------------------------------------------

    def send_fixed(self, status, body, ctype='application/json', extra=()):
        if isinstance(body, str):
            body = body.encode('utf-8')
        self.send_response_only(status)
        self.send_header('Date', self.date_time_string())
        self.send_header('Server', 'fake-receivers')
        if ctype:
            self.send_header('Content-Type', ctype)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj, extra=()):
        self.send_fixed(status, dumps(obj), 'application/json', extra)

    def drop_connection(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def client_gone(self):
        """True when the client closed its end (a held /sync)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b''
        except OSError:
            return True

    def read_body(self):
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length else b''

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        self.t_arrival = time.monotonic()
        self.wall_arrival = time.time()
        url = urllib.parse.urlsplit(self.path)
        self.raw_path = url.path
        path = url.path
        try:
            if path.startswith('/_control/'):
                self.control(path, url.query)
            elif path.startswith('/slack/'):
                self.slack(path)
            elif path.startswith(MATRIX_PREFIX + '/'):
                self.matrix(path)
            elif path.startswith('/hook/'):
                self.hook(path, 'hook')
            elif path.startswith('/hookshot/'):
                self.hook(path, 'hookshot')
            else:
                self.read_body()
                self.send_fixed(404, 'not found', 'text/plain')
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def record(self, path, body):
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = {'seq': self.state.next_seq(), 't': self.t_arrival,
               'wall': self.wall_arrival, 'method': self.command,
               'path': path, 'raw_path': self.raw_path,
               'headers': dict(self.headers.items()),
               'body': body.decode('utf-8', 'replace'), 'json': parsed}
        if self.state.peer_pids:
            rec['pid'] = self.peer_pid()
        return rec

    def peer_pid(self):
        """The sending process (looked up once per connection)."""
        if not hasattr(self, '_peer_pid'):
            from peer_pid import peer_pid
            self._peer_pid = peer_pid(self.connection)
        return self._peer_pid

    def pre_fault(self, fault):
        """Apply delay/disconnect; True when the request is finished."""
        if fault is None:
            return False
        if fault.get('delay'):
            time.sleep(float(fault['delay']))
        if fault['mode'] == 'disconnect':
            self.drop_connection()
            return True
        return False

    # -- Slack ----------------------------------------------------------------

    def slack(self, path):
        body = self.read_body()
        rec = self.record(path, body)
        if self.command != 'POST':
            self.send_fixed(405, 'invalid_method', 'text/html')
            return
        fault = self.state.take_fault('slack', path)
        if fault and fault['mode'] == 'slow' and not fault.get('delay'):
            fault['delay'] = 2
        if self.pre_fault(fault):
            rec.update(status=None, reason='disconnect')
            self.state.add('slack', 'rejected', rec)
            return
        mode = fault['mode'] if fault else None
        if mode in (None, 'slow', 'ok_then_disconnect'):
            ctype = (self.headers.get('Content-Type') or '').split(';')[0]
            if rec['json'] is None or ctype.strip().lower() != 'application/json':
                status, text = 400, 'invalid_payload'
            elif not isinstance(rec['json'], dict) or (
                    not rec['json'].get('text') and not rec['json'].get('blocks')):
                status, text = 400, 'no_text'
            elif not slack_blocks_ok(rec['json'].get('blocks')):
                status, text = 400, 'invalid_blocks'
            else:
                rec['status'] = 200
                self.state.add('slack', 'accepted', rec)
                if mode == 'ok_then_disconnect':
                    rec['dropped_answer'] = True
                    self.drop_connection()
                    return
                self.send_fixed(200, 'ok', 'text/plain;charset=utf-8')
                return
            rec.update(status=status, reason=text)
            self.state.add('slack', 'rejected', rec)
            self.send_fixed(status, text, 'text/html')
            return
        extra = ()
        if mode == '429':
            status, text, ctype = 429, 'rate_limited', 'text/plain'
            extra = [('Retry-After', str(fault.get('retry_after', 1)))]
        elif mode == '500':
            status, text, ctype = 500, SLACK_500_HTML, 'text/html; charset=utf-8'
        else:
            status, text, ctype = SLACK_ERRORS[mode], mode, 'text/html'
        status = int(fault.get('status') or status)
        if fault.get('body') is not None:
            text = fault['body']
        rec.update(status=status, reason=mode)
        self.state.add('slack', 'rejected', rec)
        self.send_fixed(status, text, ctype, extra)

    # -- Matrix ---------------------------------------------------------------

    def matrix_error(self, status, errcode, error, rec=None, extra=(), **more):
        obj = {'errcode': errcode, 'error': error}
        obj.update(more)
        if rec is not None:
            rec.update(status=status, reason=errcode)
            self.state.add('matrix', 'rejected', rec)
        self.send_json(status, obj, extra)

    def matrix(self, path):
        body = self.read_body()
        parts = [urllib.parse.unquote(p)
                 for p in path[len(MATRIX_PREFIX) + 1:].split('/')]
        decoded = MATRIX_PREFIX + '/' + '/'.join(parts)
        rec = self.record(decoded, body)
        st = self.state
        auth = self.headers.get('Authorization')
        if auth is None:
            self.matrix_error(401, 'M_MISSING_TOKEN', 'Missing access token',
                              rec)
            return
        if auth != 'Bearer ' + st.matrix_token:
            self.matrix_error(401, 'M_UNKNOWN_TOKEN',
                              'Unrecognised access token', rec,
                              soft_logout=False)
            return
        if self.command == 'GET' and parts == ['account', 'whoami']:
            st.add('matrix', 'lookups', rec)
            self.send_json(200, {'user_id': st.matrix_user,
                                 'device_id': 'DEV1', 'is_guest': False})
            return
        if self.command == 'GET' and len(parts) == 3 and \
                parts[:2] == ['directory', 'room']:
            alias = parts[2]
            rec['alias'] = alias
            st.add('matrix', 'lookups', rec)
            with st.lock:
                room = st.aliases.get(alias)
            if not alias.startswith('#') or ':' not in alias:
                self.matrix_error(400, 'M_INVALID_PARAM', 'Room alias invalid')
            elif room is None:
                self.matrix_error(404, 'M_NOT_FOUND',
                                  'Room alias %s not found' % alias)
            else:
                self.send_json(200, {'room_id': room,
                                     'servers': ['localhost']})
            return
        if self.command == 'GET' and len(parts) == 3 and \
                parts[0] == 'rooms' and parts[2] == 'joined_members':
            # Membership check (ytbridge --doctor): only members may ask.
            st.add('matrix', 'lookups', rec)
            with st.lock:
                joined = parts[1] in st.rooms
            if joined:
                self.send_json(200, {'joined': {st.matrix_user: {
                    'display_name': 'bot', 'avatar_url': None}}})
            else:
                self.matrix_error(403, 'M_FORBIDDEN', 'User %s not in room %s'
                                  % (st.matrix_user, parts[1]))
            return
        if self.command == 'GET' and parts == ['sync']:
            self.matrix_sync(rec, decoded)
            return
        if (len(parts) == 2 and parts[0] == 'join') or \
                (len(parts) == 3 and parts[0] == 'rooms' and parts[2] == 'leave'):
            self.matrix_membership(rec, decoded, parts)
            return
        if not (len(parts) == 5 and parts[0] == 'rooms'
                and parts[2] == 'send'):
            self.matrix_error(404, 'M_UNRECOGNIZED', 'Unrecognized request',
                              rec)
            return
        if self.command != 'PUT':
            self.matrix_error(405, 'M_UNRECOGNIZED', 'Unrecognized request',
                              rec)
            return
        room, etype, txn = parts[1], parts[3], parts[4]
        rec.update(room=room, event_type=etype, txn_id=txn)
        fault = st.take_fault('matrix', decoded)
        if fault and fault['mode'] == 'slow' and not fault.get('delay'):
            fault['delay'] = 2
        if self.pre_fault(fault):
            rec.update(status=None, reason='disconnect')
            st.add('matrix', 'rejected', rec)
            return
        mode = fault['mode'] if fault else None
        if self.matrix_fault(fault, rec):
            return
        with st.lock:
            joined = room in st.rooms
        if mode == 'forbidden' or not joined:
            self.matrix_error(403, 'M_FORBIDDEN', 'User %s not in room %s'
                              % (st.matrix_user, room), rec)
            return
        if len(body) + EVENT_OVERHEAD > MAX_EVENT:
            self.matrix_error(413, 'M_TOO_LARGE', 'Event too large', rec)
            return
        if not isinstance(rec['json'], dict):
            self.matrix_error(400, 'M_NOT_JSON', 'Content not JSON.', rec)
            return
        content = rec['json']
        if not isinstance(content.get('msgtype'), str) or \
                not isinstance(content.get('body'), str):
            self.matrix_error(400, 'M_BAD_JSON', 'Missing msgtype or body', rec)
            return
        wait = st.ratelimited()
        if wait:
            ms = int(wait * 1000) + 1
            self.matrix_error(429, 'M_LIMIT_EXCEEDED', 'Too Many Requests',
                              rec, [('Retry-After', str(-(-ms // 1000)))],
                              retry_after_ms=ms)
            return
        with st.lock:
            event_id = st.txns.get((room, txn))
            dup = event_id is not None
            if not dup:
                event_id = '$' + secrets.token_urlsafe(18)
                st.txns[(room, txn)] = event_id
            rec.update(status=200, event_id=event_id)
            st.received['matrix']['duplicates' if dup else 'accepted'].append(rec)
            if st.echo and not dup:
                # The homeserver hands our own message back in /sync.
                st.queue_sync([{'rooms': {'join': {room: {'timeline': {
                    'events': [{'type': etype, 'event_id': event_id,
                                'sender': st.matrix_user,
                                'origin_server_ts': int(time.time() * 1000),
                                'content': content,
                                'unsigned': {'age': 0,
                                             'transaction_id': txn}}],
                    'limited': False}}}}}])
        if mode == 'ok_then_disconnect':
            rec['dropped_answer'] = True
            self.drop_connection()
            return
        self.send_json(200, {'event_id': event_id})

    def matrix_fault(self, fault, rec):
        """Answer an error fault (429, 5xx, 401, 413, 400); True when
        answered."""
        mode = fault['mode'] if fault else None
        retry = float(fault.get('retry_after', 1)) if fault else 1
        if mode == '429_header':
            self.matrix_error(429, 'M_LIMIT_EXCEEDED', 'Too Many Requests',
                              rec, [('Retry-After',
                                     '%d' % math.ceil(retry))],
                              retry_after_ms=int(retry * 1000))
        elif mode == '429_body_only':
            self.matrix_error(429, 'M_LIMIT_EXCEEDED', 'Too Many Requests',
                              rec, retry_after_ms=int(retry * 1000))
        elif mode == '500':
            self.matrix_error(500, 'M_UNKNOWN', 'Internal server error', rec)
        elif mode == '502_html':
            if rec is not None:
                rec.update(status=502, reason='502_html')
                self.state.add('matrix', 'rejected', rec)
            self.send_fixed(502, NGINX_502, 'text/html')
        elif mode == 'unknown_token':
            self.matrix_error(401, 'M_UNKNOWN_TOKEN',
                              'Unrecognised access token', rec,
                              soft_logout=False)
        elif mode == 'too_large':
            self.matrix_error(413, 'M_TOO_LARGE', 'Event too large', rec)
        elif mode == 'invalid_stream_token':
            # Synapse, for a /sync since it never issued (a restored
            # database, a copied state directory): SynapseError(400,
            # "Invalid stream token"), errcode M_UNKNOWN.
            self.matrix_error(400, 'M_UNKNOWN', 'Invalid stream token', rec)
        else:
            return False
        return True

    def matrix_sync(self, rec, decoded):
        """GET /sync (doc/matrix.md §4); faults apply with path
        /_matrix/client/v3/sync."""
        st = self.state
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        since = q.get('since', [None])[-1]
        try:
            timeout_ms = int(q.get('timeout', ['0'])[-1])
        except ValueError:
            timeout_ms = 0
        raw_filter = q.get('filter', [None])[-1]
        try:
            flt = json.loads(raw_filter) if raw_filter else None
        except ValueError:
            flt = None
        # Every key is there before the record is visible: it is read while
        # this request is still held.
        rec.update(since=since, timeout=timeout_ms, filter=flt,
                   raw_filter=raw_filter,
                   set_presence=q.get('set_presence', [None])[-1],
                   status=None, next_batch=None, replayed=None, empty=None,
                   reason=None)
        st.add('matrix', 'syncs', rec)
        fault = st.take_fault('matrix', decoded, since=since)
        if fault and fault['mode'] == 'slow' and not fault.get('delay'):
            fault['delay'] = 2
        if self.pre_fault(fault):
            rec.update(status=None, reason='disconnect')
            return
        if fault and fault['mode'] == 'forbidden':
            self.matrix_error(403, 'M_FORBIDDEN', 'Forbidden', rec)
            return
        if fault and fault['mode'] == 'huge_sync':
            with st.lock:
                rec.update(status=200, reason='huge_sync')
            pad = HUGE_SYNC_BYTES
            self.send_fixed(200, b'{"next_batch":"huge","rooms":{},"pad":"'
                            + b'x' * pad + b'"}')
            return
        if self.matrix_fault(fault, rec):
            return
        body, replayed = st.next_sync(
            since, min(max(timeout_ms, 0) / 1000.0, SYNC_TIMEOUT_MAX),
            self.client_gone)
        if body is None:
            with st.lock:
                rec.update(reason='client gone')
            self.close_connection = True
            return
        body = apply_sync_filter(body, flt)
        with st.lock:
            rec.update(status=200, next_batch=body['next_batch'],
                       replayed=replayed, empty=not body.get('rooms'))
        if fault and fault['mode'] == 'ok_then_disconnect':
            rec['dropped_answer'] = True
            self.drop_connection()
            return
        self.send_json(200, body)

    def matrix_membership(self, rec, decoded, parts):
        """POST /join/{roomIdOrAlias} and /rooms/{roomId}/leave (body {})."""
        st = self.state
        join = parts[0] == 'join'
        room = parts[1]
        rec.update(action='join' if join else 'leave', room=room)
        if self.command != 'POST':
            self.matrix_error(405, 'M_UNRECOGNIZED', 'Unrecognized request',
                              rec)
            return
        if not isinstance(rec['json'], dict):
            self.matrix_error(400, 'M_NOT_JSON', 'Content not JSON.', rec)
            return
        fault = st.take_fault('matrix', decoded)
        if self.pre_fault(fault):
            rec.update(status=None, reason='disconnect')
            st.add('matrix', 'memberships', rec)
            return
        if fault and fault['mode'] == 'forbidden':
            rec['status'] = 403
            st.add('matrix', 'memberships', rec)
            self.matrix_error(403, 'M_FORBIDDEN',
                              'You are not invited to this room.')
            return
        if fault and fault['mode'] in MATRIX_MODES - COMMON_MODES - {
                'huge_sync'}:
            rec['status'] = 'fault'
            st.add('matrix', 'memberships', rec)
            self.matrix_fault(fault, None)
            return
        with st.lock:
            room_id = st.aliases.get(room, room) if join else room
            banned = join and room_id in st.banned
        if banned:
            rec['status'] = 403
            st.add('matrix', 'memberships', rec)
            self.matrix_error(403, 'M_FORBIDDEN', 'You are banned from this room')
            return
        with st.lock:
            if join:
                st.rooms.add(room_id)
            else:
                st.rooms.discard(room_id)
            rec.update(status=200, room_id=room_id)
            st.received['matrix']['memberships'].append(rec)
        self.send_json(200, {'room_id': room_id} if join else {})

    # -- generic webhooks and hookshot ----------------------------------------

    def hook(self, path, receiver):
        body = self.read_body()
        name = path.split('/', 2)[2]
        rec = self.record(path, body)
        rec['name'] = name
        st = self.state
        if receiver == 'hook':
            with st.lock:
                secret = st.hook_secrets.get(name)
            rec['event'] = self.headers.get('X-Ytbridge-Event')
            rec['delivery'] = self.headers.get('X-Ytbridge-Delivery')
            sig = self.headers.get('X-Ytbridge-Signature-256')
            if secret is None:
                rec['signature_valid'] = None
            else:
                want = 'sha256=' + hmac.new(secret.encode('utf-8'), body,
                                            hashlib.sha256).hexdigest()
                rec['signature_valid'] = bool(sig) and hmac.compare_digest(
                    sig, want)
        else:
            j = rec['json']
            rec['shape_ok'] = (isinstance(j, dict)
                               and isinstance(j.get('text'), str)
                               and isinstance(j.get('html'), str))
        if self.command != 'POST':
            rec.update(status=405, reason='method')
            st.add(receiver, 'rejected', rec)
            self.send_fixed(405, 'method not allowed', 'text/plain')
            return
        fault = st.take_fault(receiver, path)
        if fault and fault['mode'] == 'slow' and not fault.get('delay'):
            fault['delay'] = 2
        if self.pre_fault(fault):
            rec.update(status=None, reason='disconnect')
            st.add(receiver, 'rejected', rec)
            return
        mode = fault['mode'] if fault else 'slow'
        status = int(mode) if mode.isdigit() else 200
        rec['status'] = status
        extra = []
        if status == 429:
            extra.append(('Retry-After', str(fault.get('retry_after', 1))))
        if 200 <= status < 300:
            st.add(receiver, 'accepted', rec)
        else:
            rec['reason'] = mode
            st.add(receiver, 'rejected', rec)
        if mode == 'ok_then_disconnect':
            rec['dropped_answer'] = True
            self.drop_connection()
            return
        if status == 204:
            self.send_fixed(204, b'', None)
        elif receiver == 'hookshot':
            self.send_json(status, {'ok': True} if status < 300 else
                           {'ok': False, 'error': 'fault %s' % mode}, extra)
        else:
            self.send_json(status, {'ok': status < 300}, extra)

    # -- control --------------------------------------------------------------

    def control_membership(self, data):
        """POST /_control/matrix_membership: the bot's membership of a room
        changes as a room admin would change it (doc/matrix.md §9, §11)."""
        if not isinstance(data, dict) or not isinstance(data.get('room'), str) or \
                data.get('membership') not in ('leave', 'ban', 'invite', 'join'):
            self.send_json(400, {'error': 'want {"room": id, "membership": '
                                          '"leave"|"ban"|"invite"|"join"}'})
            return
        st = self.state
        room = data['room']
        membership = data['membership']
        sender = data.get('sender') or '@admin:localhost'
        with st.lock:
            st.sync_n += 1
            event_id = '$membership%d' % st.sync_n
            content = {'membership': membership}
            if data.get('reason'):
                content['reason'] = str(data['reason'])
            event = {'type': 'm.room.member', 'event_id': event_id, 'sender': sender,
                     'state_key': st.matrix_user, 'content': content,
                     'origin_server_ts': int(time.time() * 1000),
                     'unsigned': {'age': 10}}
            if membership in ('leave', 'ban'):
                st.rooms.discard(room)
                if membership == 'ban':
                    st.banned.add(room)
                section = {'leave': {room: {'state': {'events': []}, 'timeline': {
                    'events': [event], 'limited': False}}}}
            elif membership == 'invite':
                st.banned.discard(room)  # an unban, then the invite
                section = {'invite': {room: {'invite_state': {'events': [
                    {'type': 'm.room.name', 'sender': sender, 'state_key': '',
                     'content': {'name': data.get('name') or room}},
                    dict(event, unsigned={'age': 10})]}}}}
            else:
                st.banned.discard(room)
                st.rooms.add(room)
                event['sender'] = st.matrix_user  # a join is sent by the joiner
                section = {'join': {room: {'timeline': {'events': [event],
                                                        'limited': False}}}}
            rec = {'seq': 0, 't': time.monotonic(), 'wall': time.time(),
                   'action': 'control_' + membership, 'room': room, 'sender': sender,
                   'status': None, 'event_id': event_id}
            st.received['matrix']['memberships'].append(rec)
            if data.get('sync', True):
                st.queue_sync([{'rooms': section}])
        self.send_json(200, {'event_id': event_id})

    def control(self, path, query):
        body = self.read_body()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            self.send_json(400, {'error': 'bad json'})
            return
        q = urllib.parse.parse_qs(query)
        receiver = q.get('receiver', [None])[-1]
        if receiver is not None and receiver not in RECEIVERS:
            self.send_json(400, {'error': 'unknown receiver'})
            return
        st = self.state
        m = self.command
        if path == '/_control/fault' and m == 'POST':
            if not isinstance(data, dict) or data.get('receiver') not in RECEIVERS \
                    or not valid_mode(data['receiver'], str(data.get('mode'))):
                self.send_json(400, {'error': 'unknown receiver or mode'})
                return
            fault = dict(data)
            fault['mode'] = str(data['mode'])
            with st.lock:
                st.faults = [f for f in st.faults
                             if (f['receiver'], f.get('path')) !=
                             (fault['receiver'], fault.get('path'))]
                st.faults.append(fault)
            log('fault %s %s count=%s' % (fault['receiver'], fault['mode'],
                                          fault.get('count')))
            self.send_fixed(204, b'', None)
        elif path == '/_control/fault' and m == 'DELETE':
            with st.lock:
                st.faults = [f for f in st.faults
                             if receiver is not None and f['receiver'] != receiver]
            self.send_fixed(204, b'', None)
        elif path == '/_control/faults' and m == 'GET':
            with st.lock:
                out = dumps(st.faults)
            self.send_fixed(200, out)
        elif path == '/_control/received' and m == 'GET':
            try:
                gap = float(q.get('min_gap', ['0.95'])[-1])
            except ValueError:
                gap = 0.95
            with st.lock:
                snap = {r: {k: list(v) for k, v in st.received[r].items()}
                        for r in RECEIVERS}
            for r in RECEIVERS:
                snap[r]['pacing_violations'] = pacing(snap[r]['accepted'], gap)
                snap[r]['attempt_pacing_violations'] = pacing(
                    snap[r]['accepted'] + snap[r]['rejected']
                    + snap[r]['duplicates'], gap)
            self.send_fixed(200, dumps(snap[receiver] if receiver else snap))
        elif path == '/_control/received' and m == 'DELETE':
            with st.lock:
                for r in RECEIVERS:
                    if receiver is None or r == receiver:
                        st.received[r] = st.empty_log()
            self.send_fixed(204, b'', None)
        elif path == '/_control/matrix' and m == 'PUT':
            if not isinstance(data, dict):
                self.send_json(400, {'error': 'want an object'})
                return
            with st.lock:
                if 'rooms' in data:
                    st.rooms = set(data['rooms'])
                if 'aliases' in data:
                    st.aliases = dict(data['aliases'])
                if 'token' in data:
                    st.matrix_token = data['token']
                if 'user_id' in data:
                    st.matrix_user = data['user_id']
                if 'ratelimit' in data:
                    st.ratelimit = data['ratelimit']
                    st.bucket = [0.0, time.monotonic()]
                if data.get('forget_txns'):
                    st.txns = {}
                if 'echo' in data:
                    st.echo = bool(data['echo'])
            self.send_fixed(204, b'', None)
        elif path == '/_control/matrix_sync' and m == 'PUT':
            if not isinstance(data, dict) or not isinstance(
                    data.get('batches', []), list) or not all(
                    isinstance(b, dict) for b in data.get('batches', [])):
                self.send_json(400, {'error': 'want {"batches": [objects]}'})
                return
            with st.lock:
                if data.get('reset'):
                    st.sync_queue = []
                    st.sync_served = []
                st.queue_sync(data.get('batches', []))
            self.send_fixed(204, b'', None)
        elif path == '/_control/matrix_membership' and m == 'POST':
            self.control_membership(data)
        elif path == '/_control/matrix_sync' and m == 'GET':
            with st.lock:
                out = {'head': st.sync_head, 'queued': len(st.sync_queue),
                       'served': [b['next_batch'] for _, b in st.sync_served]}
            self.send_json(200, out)
        elif path == '/_control/settle' and m == 'GET':
            timeout = float(q.get('timeout', ['5'])[-1])
            srv = self.server
            with srv.busy_cond:
                # This connection counts itself until its handler returns.
                ok = srv.busy_cond.wait_for(lambda: srv.busy <= 1, timeout)
                busy = srv.busy - 1
            self.send_json(200, {'ok': bool(ok), 'busy': busy})
        elif path == '/_control/hook' and m == 'PUT':
            if not isinstance(data, dict) or not isinstance(data.get('name'), str):
                self.send_json(400, {'error': 'want {"name":..., "secret":...}'})
                return
            with st.lock:
                if data.get('secret') is None:
                    st.hook_secrets.pop(data['name'], None)
                else:
                    st.hook_secrets[data['name']] = str(data['secret'])
            self.send_fixed(204, b'', None)
        else:
            self.send_json(404, {'error': 'no such control resource'})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        # Connections accepted and not yet closed (for /_control/settle): counted in the
        # accepting thread, so a connection is busy from its accept on.
        self.busy = 0
        self.busy_cond = threading.Condition()

    def process_request(self, request, client_address):
        with self.busy_cond:
            self.busy += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self):
        with self.busy_cond:
            self.busy -= 1
            self.busy_cond.notify_all()

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description='Fake Slack/Matrix/webhook receivers.')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--bind', default='127.0.0.1')
    ap.add_argument('--peer-pids', action='store_true',
                    help='record the pid of the process that sent each request')
    args = ap.parse_args(argv)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = Server((args.bind, args.port), Handler)
    server.state = State()
    server.state.peer_pids = args.peer_pids
    sys.stdout.write('PORT %d\n' % server.server_address[1])
    sys.stdout.flush()
    log('listening on http://%s:%d/' % (args.bind, server.server_address[1]))
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        log('stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
