#!/usr/bin/env python3
"""Fake Slack for ytbridge's Socket Mode tests: the Web API method
apps.connections.open, the Socket Mode websocket, a response_url
receiver and the bot-token Web API (chat.postMessage, auth.test,
conversations.info), all on ONE port (standard library only: asyncio streams and a
hand-written RFC 6455 server side).

Wire formats follow doc/slack.md ("Socket Mode") and the recorded shapes in
tests/data/slack/ and tests/fuzz/corpus/slack_msg/ (hello: slack-go; slash
command envelope: the Socket Mode docs; disconnect: the docs, host
"wss-111.slack.com"; apps.connections.open: the docs, `/` escaped as `\\/`).

  POST /api/apps.connections.open
        Authorization: Bearer <token> (default xapp-test-fake-app-token). 200
        {"ok":true,"url":"ws:\\/\\/127.0.0.1:PORT\\/link\\/?ticket=N"} with a
        fresh single-use ticket; no header -> 200 {"ok":false,"error":
        "not_authed"}, another token -> "invalid_auth", not POST ->
        "insecure_request". A scripted answer (open_script) replaces one call.
  GET  /link/?ticket=N[&debug_reconnects=true]   (also /link?ticket=N)
        websocket upgrade. Unknown or already used ticket -> HTTP 401, no
        upgrade (rejection reason "reused_ticket"); a bad handshake -> 400
        ("bad_handshake"); an upgrade on another path -> 404 ("bad_path").
        No subprotocol and no extension is ever accepted (neither header is
        sent back). Then, per socket:
          hello (slack-go shape, num_connections = open sockets) at once,
          after a delay, or never; pongs to client pings; optional server
          pings ("Ping from applink-fake"); echoes a client close frame and
          closes TCP (or, answer_close=false, never answers and never closes).
        Client frames must be masked, RSV bits 0, control frames <= 125 bytes
        and unfragmented, text valid UTF-8: a violation is recorded in
        protocol_errors and the fake closes with 1002 (1007 for bad UTF-8).
  POST /api/chat.postMessage | auth.test | conversations.info
        the bot-token Web API (Authorization: Bearer <bot token>, default
        xoxb-test-fake-bot-token, --bot-token); arguments from the query, a
        form or a JSON body; errors are HTTP 200 {"ok":false,"error":E}:
        not_authed / invalid_auth (token), channel_not_found (channel absent,
        exists false, or private and the bot no member), is_archived,
        not_in_channel, no_text, invalid_blocks (slack_blocks.py, the rules
        fake_receivers.py applies to webhooks). chat.postMessage answers
        {"ok":true,"channel","ts","message"} and is paced per channel: a token
        bucket of web_api.burst posts (default 1) refilled one per min_gap s
        (default 1.0); an empty bucket -> 429 + Retry-After (web_api.
        retry_after, 1) + {"ok":false,"error":"ratelimited"}. Any post less
        than min_gap s after the channel's previous accepted post is recorded
        in pacing_violations (rejected or not). auth.test -> {"ok":true,"url":
        "https://fake.slack.com/","team":"Fake Team","user":"ytbridge",
        "team_id":"T0FAKE","user_id":"U0BOT","bot_id":"B0BOT"};
        conversations.info -> {"ok":true,"channel":{"id","name","is_channel":
        true,"is_private","is_archived","is_member"}}.
  POST /commands/<anything>
        the default response_url of the envelopes sent by the fake; records the
        JSON, answers 200 {"ok":true}; from the 6th post to one URL 404
        {"ok":false,"error":"used_url"} (Slack allows 5 uses; that error's
        exact wire form is a guess).

Control API (unauthenticated, JSON in and out; "conn" omitted = the newest
open socket that got hello and is not closing; "conn" with "fallback":
"newest" = that socket while it is open, else the newest as above, chosen
atomically, as Slack sends to whichever of an app's sockets is open):

  GET|PUT /_control/behaviour  merges {"hello": "immediate"|"never"|
                          {"delay": s}, "autopong": true, "answer_close": true,
                          "server_ping_interval": s|null, "token": "xapp-...",
                          "max_connections": 10, "escape_slashes": true,
                          "ensure_ascii": true, "redeliver": true}.
                          redeliver: an envelope sent by POST /_control/envelope
                          (not binary) that was not acked when its socket went
                          away is sent again, right after the next hello (or at
                          once to another open socket), with retry_attempt + 1
                          and retry_reason "timeout", at most 3 times, as
                          Slack retries; such sends are in "envelopes" with
                          "redelivered": true.
                          Sockets read autopong/answer_close/server_ping_interval
                          live (a change applies to open sockets at once); hello
                          and max_connections are looked at on upgrade.
                          max_connections: an upgrade that makes more than this
                          many sockets open gets {"type":"disconnect","reason":
                          "too_many_websockets"} right after its hello.
                          escape_slashes / ensure_ascii: the JSON the socket
                          sends writes `/` as `\\/` and non-ASCII as `\\uXXXX`
                          (surrogate pairs beyond U+FFFF): the same JSON value,
                          in the style of the escaped apps.connections.open
                          reply; false/false sends plain UTF-8 JSON.
  PUT  /_control/connection    {"conn": id, "autopong"|"answer_close"|
                          "server_ping_interval": ...} per-socket overrides.
  GET|PUT /_control/open_script  {"answers": [item, ...]} replaces the queue;
                          each apps.connections.open call consumes one item
                          (before any auth check), then normal answers resume.
                          item: {"status": 200, "body": {...} | "text"} or
                          {"status": 429, "retry_after": n} (429 + Retry-After,
                          body {"ok":false,"error":"ratelimited"}); optional
                          "retry_after" on any status, "delay": s before answering.
  PUT  /_control/refuse_upgrade  {"count": n, "status": 409}: the next n
                          upgrade requests get that status instead of 101 (a
                          valid ticket is consumed all the same).
  GET|PUT /_control/channels  {"C0123": {"exists": true, "member": true,
                          "archived": false, "name": "...", "private": false}
                          | null (forget it), ...} merged; a channel never
                          named takes web_api.unknown_channel.
  GET|PUT|DELETE /_control/api_faults  [{"method": "chat.postMessage"|
                          "auth.test"|"conversations.info", "channel": id
                          (optional), "status": 200, "error": "...", "retry_after":
                          n, "count": n (omit: until cleared), "delay": s,
                          "body": {...}|"html"}] replaces the list (PUT) or
                          clears it (DELETE); a call takes the first match
                          before any other check (auth included). Status 429 ->
                          Retry-After (default 1), error "ratelimited".
  PUT  /_control/bot_token {"token": "xoxb-..."} the token the Web API accepts.
  GET|PUT /_control/web_api {"min_gap": 1.0, "burst": 1, "retry_after": 1,
                          "unknown_channel": {"exists": true, "member": true,
                          "archived": false}} merged.
  GET  /_control/state    {"open_calls": [{t, result, status, ticket, scripted,
                          auth}], "connections": [records], "open": [ids],
                          "max_open": n, "rejected_upgrades": [{t, reason
                          ("reused_ticket"|"refused"|"bad_handshake"|
                          "bad_path"), status, ticket, ticket_known, path,
                          detail}], "envelopes":
                          [{envelope_id, conn, type, sent_at}], "acks": [...],
                          "responses": [response_url posts], "posts": [accepted
                          chat.postMessage: {t, wall, channel, ts, peer,
                          content_type, body, json}], "api_calls": [every Web API
                          call but apps.connections.open: {t, wall, method,
                          http_method, channel, auth, auth_ok, peer, status,
                          result, scripted}], "pacing_violations": [{channel, t,
                          gap, rejected}], "channels", "api_faults", "web_api",
                          "behaviour": {...},
                          "now": monotonic}
  DELETE /_control/state  forget open_calls, closed sockets' records, rejected
                          upgrades, envelopes (and what awaits redelivery),
                          acks, responses, posts, api_calls,
                          pacing_violations; max_open := the number open now. Open sockets keep their records; ids
                          and tickets keep counting.
  POST /_control/envelope {"conn", "type": "slash_commands", "payload": {...}
                          (default: the docs' slash command with command
                          "/youtrack", overridable by top-level "text",
                          "user_id", "channel_id", "command", "response_url"),
                          "envelope_id" (default uuid4), "retry_attempt",
                          "retry_reason" (sent only when given), "user_name",
                          "channel_name",
                          "accepts_response_payload": true, "wait_ack": 5 (s; 0 =
                          do not wait), "fragment": 1 (number of frames),
                          "interleave_ping": false (a ping between fragments),
                          "binary": false}
                          -> {"envelope_id", "conn", "sent_at", "delivered",
                              "size", "ack": json|null, "ack_conn",
                              "ack_latency_ms": float|null}; the ack
                          is the first client text frame after sent_at, on ANY
                          socket, whose JSON has this envelope_id.
  GET  /_control/acks[?envelope_id=E]  every ack: {envelope_id, conn, t, json,
                          known (envelope was sent by the fake), latency_ms}
  POST /_control/disconnect {"conn", "reason": "warning"|"refresh_requested"|
                          "link_disabled"|"too_many_websockets"|any,
                          "then_close_after": s|null, "close_code": null}
                          sends {"type":"disconnect","reason":R,"debug_info":
                          {"host":"wss-111.slack.com"}}; then_close_after: drop
                          TCP that much later (with a close frame first when
                          close_code is given), like Slack ~10 s after "warning".
  POST /_control/raw      {"conn", "text": "..."} one text frame, or {"conn",
                          "bytes_hex": "...", "opcode": n, "fin": true}
  POST /_control/oversize {"conn", "size": n, "wait_ack": 0} a text frame of
                          exactly n bytes: a valid events_api envelope padded
                          with spaces inside a string -> like envelope
  POST /_control/close    {"conn", "code": 1000, "reason": "", "wait": 2}
                          server-initiated close handshake; TCP is dropped when
                          the client answers or after "wait" s.
  POST /_control/kill     {"conn", "rst": false} drop the TCP connection at once
                          (no close frame; rst: send a TCP RST).
  GET  /_control/wait_open?count=n&timeout=s  wait until exactly n sockets are
                          open and all of them got hello -> state plus "ok":
                          true|false (false on timeout; status is 200 either
                          way). Keep timeout below the caller's HTTP timeout.

Connection record: {id, ticket, path, headers, opened_at, hello_sent,
hello_at, closed_at, closed_by ("client_close_frame" | "client_tcp" |
"server" | null while open), close_code/close_reason (from the client's close
frame), client_close_at, server_close_code, server_close_at, pings_received,
ping_payloads (last 20), pongs_received, pings_sent, texts ([{t, json, text}],
text cut at 2000 chars), binary_frames, frames_after_close, protocol_errors,
disconnects_sent ([{t, reason}]), too_many, open, closing}.

On SIGTERM every open socket is dropped (closed_by "server") and pending
wait_ack calls are cut off. Every t is time.monotonic() (comparable with the
test process on Linux).
Start: `fake_slack.py --port 0 [--token T]`; the first stdout line is
"PORT n" (harness._FakeProcess); SIGTERM or SIGINT stop it.
"""

import argparse
import asyncio
import base64
import binascii
import copy
import hashlib
import json
import signal
import socket
import struct
import sys
import time
import traceback
import urllib.parse
import uuid

from slack_blocks import slack_blocks_ok  # shared with fake_receivers.py (webhooks)

DEFAULT_TOKEN = 'xapp-test-fake-app-token'
DEFAULT_BOT_TOKEN = 'xoxb-test-fake-bot-token'
WS_GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
MAX_MESSAGE = 16 * 1024 * 1024      # client messages above this: close 1009
MAX_HTTP_BODY = 4 * 1024 * 1024
SERVER_PING_PAYLOAD = b'Ping from applink-fake'
DISCONNECT_HOST = 'wss-111.slack.com'
CLOSE_WAIT = 2.0   # s to wait for the client's close reply to a server close
TEXT_RECORD_MAX = 2000
RESPONSE_URL_USES = 5
REDELIVERIES = 3    # Slack retries an unacknowledged delivery three times

DEFAULT_BEHAVIOUR = {
    'hello': 'immediate',
    'autopong': True,
    'answer_close': True,
    'server_ping_interval': None,
    'token': DEFAULT_TOKEN,
    'max_connections': 10,
    'escape_slashes': True,
    'ensure_ascii': True,
    'redeliver': True,
}
LIVE_SETTINGS = ('autopong', 'answer_close', 'server_ping_interval')

# fixtures/slack/envelope_slash_commands__docs.slack.dev_apis_events-api_using-socket-mode.json
# ("command" "/randorilke" -> "/youtrack"; response_url is pointed at this
# fake, same path shape, so a client that POSTs to it stays on localhost).
SLASH_PAYLOAD = {
    'token': 'bHKJ2n9AW6Ju3MjciOHfbA1b',
    'team_id': 'T123ABC456',
    'team_domain': 'maria',
    'channel_id': 'C123ABC456',
    'channel_name': 'general',
    'user_id': 'U123ABC456',
    'user_name': 'rainer',
    'command': '/youtrack',
    'text': '',
    'response_url': None,   # filled in per envelope
    'trigger_id': '37053613634.26768298162.440952c06ef4de2653466a48fe495f93',
}
RESPONSE_URL_PATH = '/commands/T0SNL8S4S/37053613554/YMB2ZESDLNjNLqSFZ1quhNAh'

REASONS = {200: 'OK', 101: 'Switching Protocols', 400: 'Bad Request',
           401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
           405: 'Method Not Allowed', 408: 'Request Timeout',
           409: 'Conflict', 413: 'Payload Too Large', 426: 'Upgrade Required',
           429: 'Too Many Requests', 500: 'Internal Server Error',
           502: 'Bad Gateway', 503: 'Service Unavailable'}


def log(msg):
    sys.stderr.write('fake_slack: %s\n' % msg)
    sys.stderr.flush()


def now():
    return time.monotonic()


def dumps(value, escape_slashes=False, ensure_ascii=False):
    text = json.dumps(value, ensure_ascii=ensure_ascii, separators=(',', ':'))
    if escape_slashes:
        text = text.replace('/', '\\/')
    return text.encode('utf-8')


# -- HTTP/1.1 -------------------------------------------------------------------

class BadRequest(Exception):
    pass


class Request:
    """One parsed HTTP/1.1 request (headers keyed in lower case)."""

    def __init__(self, method, target, version, headers, body=b''):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.peer = None
        split = urllib.parse.urlsplit(target)
        self.path = split.path
        self.query = urllib.parse.parse_qs(split.query, keep_blank_values=True)

    def header(self, name, default=''):
        return self.headers.get(name.lower(), default)

    def tokens(self, name):
        return {t.strip().lower() for t in self.header(name).split(',') if t.strip()}

    def json(self):
        if not self.body:
            return {}
        return json.loads(self.body.decode('utf-8'))

    def keep_alive(self):
        conn = self.tokens('connection')
        if self.version == 'HTTP/1.0':
            return 'keep-alive' in conn
        return 'close' not in conn


async def read_request(reader, writer):
    """The next request on a connection, or None at a clean EOF."""
    try:
        head = await reader.readuntil(b'\r\n\r\n')
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise BadRequest('truncated request head')
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest('request head too large')
    lines = head.decode('latin-1').split('\r\n')
    parts = lines[0].split(' ')
    if len(parts) != 3 or not parts[2].startswith('HTTP/1.'):
        raise BadRequest('bad request line')
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(':')
        if not sep:
            raise BadRequest('bad header line')
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + ', ' + value if name in headers else value
    req = Request(parts[0], parts[1], parts[2], headers)
    peer = writer.get_extra_info('peername')
    req.peer = '%s:%s' % peer[:2] if peer else None
    if req.header('expect').lower() == '100-continue':
        writer.write(b'HTTP/1.1 100 Continue\r\n\r\n')
    if 'chunked' in req.tokens('transfer-encoding'):
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b'\r\n')
            try:
                size = int(size_line.split(b';')[0].strip(), 16)
            except ValueError:
                raise BadRequest('bad chunk size')
            if size == 0:
                while (await reader.readuntil(b'\r\n')) != b'\r\n':
                    pass   # trailers
                break
            if len(body) + size > MAX_HTTP_BODY:
                raise BadRequest('body too large')
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        req.body = bytes(body)
    else:
        try:
            length = int(req.header('content-length') or 0)
        except ValueError:
            raise BadRequest('bad content-length')
        if length > MAX_HTTP_BODY:
            raise BadRequest('body too large')
        if length:
            req.body = await reader.readexactly(length)
    return req


def http_response(status, body=b'', ctype='application/json; charset=utf-8',
                  headers=(), keep_alive=True):
    if isinstance(body, str):
        body = body.encode('utf-8')
    out = ['HTTP/1.1 %d %s' % (status, REASONS.get(status, 'Status'))]
    if ctype and body:
        out.append('Content-Type: %s' % ctype)
    out.extend('%s: %s' % (k, v) for k, v in headers)
    out.append('Content-Length: %d' % len(body))
    out.append('Connection: %s' % ('keep-alive' if keep_alive else 'close'))
    return ('\r\n'.join(out) + '\r\n\r\n').encode('latin-1') + body


class Reply:
    """What a route returns: status, body (dict/list -> JSON), headers."""

    def __init__(self, status, body=None, headers=(), ctype=None, close=False):
        self.status = status
        self.body = body
        self.headers = list(headers)
        self.ctype = ctype
        self.close = close

    def encode(self, keep_alive, escape_slashes=False):
        body = self.body
        ctype = self.ctype
        if isinstance(body, (dict, list)):
            body = dumps(body, escape_slashes)
            ctype = ctype or 'application/json; charset=utf-8'
        elif body is None:
            body = b''
        return http_response(self.status, body, ctype or 'text/plain; charset=utf-8',
                             self.headers, keep_alive and not self.close)


def json_reply(status, obj):
    return Reply(status, obj)


def error_reply(status, message):
    return Reply(status, {'error': message})


# -- RFC 6455 framing ---------------------------------------------------------------

class ProtocolError(Exception):
    def __init__(self, message, code=1002):
        super().__init__(message)
        self.code = code


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode('latin-1') + WS_GUID).digest()).decode()


def encode_frame(opcode, payload=b'', fin=True):
    """A server frame (never masked)."""
    head = bytearray([(0x80 if fin else 0) | (opcode & 0x0F)])
    n = len(payload)
    if n < 126:
        head.append(n)
    elif n < 65536:
        head.append(126)
        head += struct.pack('!H', n)
    else:
        head.append(127)
        head += struct.pack('!Q', n)
    return bytes(head) + payload


def apply_mask(data, mask):
    if not data:
        return data
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, 'big') ^ int.from_bytes(key, 'big')).to_bytes(n, 'big')


async def read_frame(reader):
    """(fin, opcode, payload) of the next client frame; checks RFC 6455 §5."""
    b0, b1 = await reader.readexactly(2)
    fin = bool(b0 & 0x80)
    if b0 & 0x70:
        raise ProtocolError('RSV bits set (0x%02x) without a negotiated extension' % b0)
    opcode = b0 & 0x0F
    if opcode not in DATA_OPCODES + CONTROL_OPCODES:
        raise ProtocolError('reserved opcode 0x%x' % opcode)
    masked = bool(b1 & 0x80)
    length = b1 & 0x7F
    if length == 126:
        length, = struct.unpack('!H', await reader.readexactly(2))
    elif length == 127:
        length, = struct.unpack('!Q', await reader.readexactly(8))
        if length >> 63:
            raise ProtocolError('64-bit length with the top bit set')
    if opcode in CONTROL_OPCODES:
        if length > 125:
            raise ProtocolError('control frame of %d bytes' % length)
        if not fin:
            raise ProtocolError('fragmented control frame')
    if not masked:
        raise ProtocolError('unmasked client frame (opcode 0x%x)' % opcode)
    if length > MAX_MESSAGE:
        raise ProtocolError('frame of %d bytes' % length, 1009)
    mask = await reader.readexactly(4)
    payload = apply_mask(await reader.readexactly(length), mask)
    return fin, opcode, payload


# -- one websocket ----------------------------------------------------------------------

class Conn:
    """A Socket Mode websocket: its stream, settings and record."""

    def __init__(self, fake, cid, ticket, req, writer):
        self.fake = fake
        self.id = cid
        self.ticket = ticket
        self.writer = writer
        self.overrides = {}
        self.settings_changed = asyncio.Event()
        self.tasks = set()
        self.open = True
        self.client_closed = False     # got the client's close frame
        self.server_closed = False     # sent a close frame
        self.rec = {
            'id': cid, 'ticket': ticket, 'path': req.target,
            'headers': {k: v for k, v in req.headers.items()
                        if k not in ('authorization',)},
            'opened_at': now(), 'hello_sent': False, 'hello_at': None,
            'closed_at': None, 'closed_by': None,
            'close_code': None, 'close_reason': None, 'client_close_at': None,
            'server_close_code': None, 'server_close_at': None,
            'pings_received': 0, 'ping_payloads': [], 'pongs_received': 0,
            'pings_sent': 0, 'texts': [], 'binary_frames': 0,
            'frames_after_close': 0, 'protocol_errors': [],
            'disconnects_sent': [], 'too_many': False,
        }

    def setting(self, key):
        if key in self.overrides:
            return self.overrides[key]
        return self.fake.behaviour[key]

    @property
    def closing(self):
        return self.client_closed or self.server_closed

    def record(self):
        rec = dict(self.rec)
        rec['open'] = self.open
        rec['closing'] = self.closing
        rec['overrides'] = dict(self.overrides)
        return rec

    def spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- sending --

    def send_raw(self, data):
        if not self.open or self.writer.is_closing():
            return False
        self.writer.write(data)
        return True

    def send(self, opcode, payload=b'', fin=True):
        return self.send_raw(encode_frame(opcode, payload, fin))

    def send_json(self, obj):
        return self.send(OP_TEXT, self.fake.encode_json(obj))

    async def drain(self, timeout=5.0):
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
            return True
        except (ConnectionError, asyncio.TimeoutError, OSError):
            return False

    def send_close(self, code=1000, reason=''):
        if self.server_closed:
            return False
        self.server_closed = True
        self.rec['server_close_code'] = code
        self.rec['server_close_at'] = now()
        payload = b'' if code is None else struct.pack('!H', code) + reason.encode('utf-8')
        return self.send(OP_CLOSE, payload)

    def abort(self, rst=False):
        """Drop TCP now (the fake closed the connection)."""
        if self.rec['closed_by'] is None:
            self.rec['closed_by'] = 'server'
        if rst:
            sock = self.writer.get_extra_info('socket')
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack('ii', 1, 0))
                except OSError:
                    pass
        self.writer.transport.abort()

    def close_tcp(self):
        """Close TCP gracefully (flush what is queued, then FIN)."""
        self.writer.close()

    # -- background jobs --

    async def hello_job(self, mode, too_many):
        if isinstance(mode, dict):
            await asyncio.sleep(float(mode.get('delay', 0)))
            mode = 'immediate'
        if mode == 'immediate' and self.open and not self.closing:
            self.send_json(self.fake.hello(self))
            self.rec['hello_sent'] = True
            self.rec['hello_at'] = now()
            self.fake.changed()
            self.fake.redeliver(self)
        if too_many and self.open and not self.closing:
            self.fake.send_disconnect(self, 'too_many_websockets')

    async def ping_job(self):
        while self.open:
            interval = self.setting('server_ping_interval')
            self.settings_changed.clear()
            if not interval or self.closing:
                await self.settings_changed.wait()
                continue
            try:
                await asyncio.wait_for(self.settings_changed.wait(), float(interval))
                continue          # settings changed: start over
            except asyncio.TimeoutError:
                pass
            if self.open and not self.closing:
                self.send(OP_PING, SERVER_PING_PAYLOAD)
                self.rec['pings_sent'] += 1

    async def close_later(self, delay, code=None):
        await asyncio.sleep(delay)
        if not self.open:
            return
        if code is not None:
            self.send_close(int(code))
            await self.drain(2)
        self.abort()

    async def drop_after_close_wait(self, wait):
        await asyncio.sleep(wait)
        if self.open:
            self.abort()


# -- Web API with the bot token ------------------------------------------------------

# chat.postMessage / auth.test / conversations.info as docs.slack.dev documents them
# (reference/methods/*): errors are HTTP 200 {"ok": false, "error": ...}, a rate limit is
# HTTP 429 + Retry-After + {"ok": false, "error": "ratelimited"}.
DEFAULT_WEB_API = {
    'min_gap': 1.0,        # s: Slack's "1 message per second per channel"
    'burst': 1,            # posts a channel may take back to back (a token bucket)
    'retry_after': 1,      # the Retry-After of a pacing 429
    'unknown_channel': {'exists': True, 'member': True, 'archived': False},
}
AUTH_TEST_BODY = {'ok': True, 'url': 'https://fake.slack.com/', 'team': 'Fake Team',
                  'user': 'ytbridge', 'team_id': 'T0FAKE', 'user_id': 'U0BOT',
                  'bot_id': 'B0BOT'}
WEB_METHODS = ('chat.postMessage', 'auth.test', 'conversations.info')


class WebApiMixin:
    """The bot-token Web API (part of FakeSlack: same loop, no locking)."""

    def web_init(self, bot_token):
        self.bot_token = bot_token
        self.web = copy.deepcopy(DEFAULT_WEB_API)
        self.channels = {}           # id -> {"exists", "member", "archived", "name", "private"}
        self.api_faults = []
        self.posts = []
        self.api_calls = []
        self.pacing_violations = []
        self.buckets = {}            # channel -> [level, t of the last update, t of last accepted]
        self.ts_seq = 0

    def web_reset(self):
        self.posts.clear()
        self.api_calls.clear()
        self.pacing_violations.clear()

    def web_state(self):
        return {'posts': list(self.posts), 'api_calls': list(self.api_calls),
                'pacing_violations': list(self.pacing_violations),
                'channels': copy.deepcopy(self.channels), 'api_faults': list(self.api_faults),
                'web_api': copy.deepcopy(self.web)}

    def channel(self, cid):
        info = dict(self.web['unknown_channel'])
        info.update(self.channels.get(cid, {}))
        info.setdefault('name', 'chan-' + cid.lower())
        info.setdefault('private', False)
        return info

    @staticmethod
    def web_args(req):
        """The call's arguments: query string, then a form or JSON body."""
        args = {k: v[-1] for k, v in req.query.items()}
        ctype = req.header('content-type').split(';')[0].strip().lower()
        if req.body:
            if ctype == 'application/json':
                try:
                    parsed = json.loads(req.body.decode('utf-8'))
                except (ValueError, UnicodeDecodeError):
                    return args, 'invalid_json'
                if not isinstance(parsed, dict):
                    return args, 'json_not_object'
                args.update(parsed)
            elif ctype in ('application/x-www-form-urlencoded', ''):
                form = urllib.parse.parse_qs(req.body.decode('utf-8', 'replace'),
                                             keep_blank_values=True)
                args.update({k: v[-1] for k, v in form.items()})
            else:
                return args, 'invalid_form_data'
        return args, None

    def take_api_fault(self, method, channel):
        for fault in self.api_faults:
            if fault.get('method', method) != method:
                continue
            if fault.get('channel') is not None and fault['channel'] != channel:
                continue
            if fault.get('count') is not None:
                fault['count'] -= 1
                if fault['count'] <= 0:
                    self.api_faults.remove(fault)
            return dict(fault)
        return None

    async def web_api(self, req, method):
        t = now()
        auth = req.header('authorization')
        if not auth:
            auth_state = 'missing'
        elif auth == 'Bearer ' + self.bot_token:
            auth_state = 'ok'
        else:
            auth_state = 'wrong'
        args, bad_body = self.web_args(req)
        channel = args.get('channel')
        channel = channel if isinstance(channel, str) else None
        peer = req.peer
        call = {'t': t, 'wall': time.time(), 'method': method, 'http_method': req.method,
                'channel': channel, 'auth': auth_state, 'auth_ok': auth_state == 'ok',
                'peer': peer, 'status': 200, 'result': None, 'scripted': False}
        self.api_calls.append(call)

        def answer(status, body, headers=()):
            call['status'] = status
            call['result'] = 'ok' if isinstance(body, dict) and body.get('ok') else (
                body.get('error') if isinstance(body, dict) else 'http_%d' % status)
            if isinstance(body, str):
                return Reply(status, body, headers, ctype='text/html; charset=utf-8')
            return Reply(status, body, headers)

        fault = self.take_api_fault(method, channel)
        if fault is not None:
            call['scripted'] = True
            if fault.get('delay'):
                await asyncio.sleep(float(fault['delay']))
            status = int(fault.get('status') or (429 if fault.get('error') == 'ratelimited'
                                                 else 200))
            headers = []
            if status == 429 or fault.get('retry_after') is not None:
                headers.append(('Retry-After', str(fault.get('retry_after', 1))))
            body = fault.get('body')
            if body is None:
                error = fault.get('error') or ('ratelimited' if status == 429 else
                                               'internal_error' if status >= 500 else
                                               'fatal_error')
                body = {'ok': False, 'error': error}
                if error == 'missing_scope':
                    body.update(needed='chat:write', provided='commands')
            return answer(status, body, headers)
        if auth_state != 'ok':
            return answer(200, {'ok': False, 'error': 'not_authed' if auth_state == 'missing'
                                else 'invalid_auth'})
        if bad_body:
            return answer(200, {'ok': False, 'error': bad_body})
        if method == 'auth.test':
            return answer(200, dict(AUTH_TEST_BODY))
        if method == 'conversations.info':
            if req.method not in ('GET', 'POST'):
                return answer(200, {'ok': False, 'error': 'method_not_supported'})
            info = self.channel(channel) if channel else None
            if info is None or not info['exists'] or (info['private'] and not info['member']):
                return answer(200, {'ok': False, 'error': 'channel_not_found'})
            return answer(200, {'ok': True, 'channel': {
                'id': channel, 'name': info['name'], 'is_channel': True,
                'is_private': bool(info['private']), 'is_archived': bool(info['archived']),
                'is_member': bool(info['member'])}})
        # chat.postMessage
        if req.method != 'POST':
            return answer(200, {'ok': False, 'error': 'invalid_request_data'})
        info = self.channel(channel) if channel else None
        if info is None or not info['exists'] or (info['private'] and not info['member']):
            return answer(200, {'ok': False, 'error': 'channel_not_found'})
        if info['archived']:
            return answer(200, {'ok': False, 'error': 'is_archived'})
        if not info['member']:
            return answer(200, {'ok': False, 'error': 'not_in_channel'})
        blocks = args.get('blocks')
        if isinstance(blocks, str):   # a form post carries blocks as JSON text
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return answer(200, {'ok': False, 'error': 'invalid_blocks_format'})
        if not args.get('text') and not blocks:
            return answer(200, {'ok': False, 'error': 'no_text'})
        if not slack_blocks_ok(blocks):
            return answer(200, {'ok': False, 'error': 'invalid_blocks'})
        # Per-channel pacing: a token bucket of `burst` posts refilled one per min_gap s.
        gap = float(self.web['min_gap'])
        burst = max(1, int(self.web['burst']))
        level, last, last_ok = self.buckets.get(channel, [float(burst), t, None])
        level = min(float(burst), level + ((t - last) / gap if gap > 0 else burst))
        if last_ok is not None and t - last_ok < gap:
            self.pacing_violations.append({'channel': channel, 't': t, 'gap': t - last_ok,
                                           'rejected': level < 1})
        if level < 1:
            self.buckets[channel] = [level, t, last_ok]
            return answer(429, {'ok': False, 'error': 'ratelimited'},
                          [('Retry-After', str(self.web['retry_after']))])
        self.buckets[channel] = [level - 1, t, t]
        self.ts_seq += 1
        ts = '%d.%06d' % (1700000000 + self.ts_seq // 1000000, self.ts_seq % 1000000)
        message = {'type': 'message', 'subtype': 'bot_message', 'text': args.get('text', ''),
                   'user': AUTH_TEST_BODY['user_id'], 'bot_id': AUTH_TEST_BODY['bot_id'],
                   'ts': ts}
        if blocks:
            message['blocks'] = blocks
        self.posts.append({'t': t, 'wall': call['wall'], 'channel': channel, 'ts': ts,
                           'peer': peer, 'content_type': req.header('content-type'),
                           'body': req.body.decode('utf-8', 'replace'), 'json': args})
        return answer(200, {'ok': True, 'channel': channel, 'ts': ts, 'message': message})

    def web_control(self, name, m, body):
        """PUT /_control/channels, api_faults, bot_token, web_api; None if not ours."""
        if name == 'channels':
            if m == 'PUT':
                for cid, info in body.items():
                    if info is None:
                        self.channels.pop(cid, None)
                        continue
                    if not isinstance(info, dict) or not set(info) <= {
                            'exists', 'member', 'archived', 'name', 'private'}:
                        raise ControlError(400, 'channel %s: exists, member, archived, name, '
                                           'private' % cid)
                    self.channels.setdefault(cid, {}).update(info)
            elif m != 'GET':
                raise ControlError(405, 'GET or PUT')
            return json_reply(200, self.channels)
        if name == 'api_faults':
            if m == 'PUT':
                faults = body.get('faults') if isinstance(body, dict) else body
                if not isinstance(faults, list) or not all(
                        isinstance(f, dict) and f.get('method', 'chat.postMessage')
                        in WEB_METHODS for f in faults):
                    raise ControlError(400, 'a list of {"method": %s, ...}'
                                       % '|'.join(WEB_METHODS))
                self.api_faults = [dict(f) for f in faults]
            elif m == 'DELETE':
                self.api_faults = []
            elif m != 'GET':
                raise ControlError(405, 'GET, PUT or DELETE')
            return json_reply(200, self.api_faults)
        if name == 'bot_token':
            if m == 'PUT':
                if not isinstance(body.get('token'), str):
                    raise ControlError(400, '{"token": "xoxb-..."}')
                self.bot_token = body['token']
            return json_reply(200, {'ok': True})
        if name == 'web_api':
            if m == 'PUT':
                for key, value in body.items():
                    if key not in DEFAULT_WEB_API:
                        raise ControlError(400, 'web_api keys: %s' % ', '.join(DEFAULT_WEB_API))
                    if key == 'unknown_channel':
                        if not isinstance(value, dict):
                            raise ControlError(400, 'unknown_channel: an object')
                        self.web[key].update(value)
                    else:
                        self.web[key] = value
            return json_reply(200, self.web)
        return None


# -- the fake ---------------------------------------------------------------------------

class FakeSlack(WebApiMixin):
    """The whole fake: HTTP routing, tickets, sockets, records, control API.

    Everything runs on one asyncio loop, so no locking is needed; a control
    call may act on any socket because all writers live on that loop."""

    def __init__(self, bind, token, bot_token=None):
        self.bind = bind
        # the host put in URLs handed out (ws:// and response_url)
        self.host = '127.0.0.1' if bind in ('0.0.0.0', '', '::') else bind
        self.port = None
        self.behaviour = dict(DEFAULT_BEHAVIOUR, token=token)
        self.web_init(bot_token or DEFAULT_BOT_TOKEN)
        self.next_conn = 1
        self.next_ticket = 1
        self.tickets = {}            # ticket -> used?
        self.open_script = []
        self.refuse = {'count': 0, 'status': 409}
        self.conns = {}              # id -> Conn, every socket since the last reset + open ones
        self.open_ids = []           # in opening order
        self.max_open = 0
        self.open_calls = []
        self.rejected = []
        self.envelopes = {}          # envelope_id -> latest sent record
        self.envelope_log = []
        self.acks = []
        self.ack_waiters = {}        # envelope_id -> [(sent_at, future)]
        self.pending = {}            # envelope_id -> unacked envelope (for redelivery)
        self.responses = []
        self.response_uses = {}
        self.response_seq = 0
        self.clients = set()         # every TCP connection's writer
        self.handlers = set()        # their handler tasks
        self.stopping = False
        self._changed = asyncio.Event()

    # -- bookkeeping --

    def changed(self):
        self._changed.set()
        self._changed = asyncio.Event()

    def open_conns(self):
        return [self.conns[i] for i in self.open_ids]

    def newest_ready(self):
        for conn in reversed(self.open_conns()):
            if conn.rec['hello_sent'] and not conn.closing:
                return conn
        return None

    def pick(self, body):
        """The socket a control call addresses (or raise ControlError)."""
        cid = body.get('conn')
        if cid is None:
            conn = self.newest_ready()
            if conn is None:
                raise ControlError(409, 'no open socket has got hello')
            return conn
        conn = self.conns.get(int(cid))
        if conn is None or not conn.open:
            if body.get('fallback') == 'newest':
                return self.pick({})
            raise ControlError(409, 'socket %s is not open' % cid)
        return conn

    def state(self):
        return {
            'open_calls': list(self.open_calls),
            'connections': [c.record() for c in self.conns.values()],
            'open': list(self.open_ids),
            'max_open': self.max_open,
            'rejected_upgrades': list(self.rejected),
            'envelopes': list(self.envelope_log),
            'acks': list(self.acks),
            'responses': list(self.responses),
            **self.web_state(),
            'behaviour': dict(self.behaviour),
            'now': now(),
        }

    def reset(self):
        self.web_reset()
        self.pending.clear()
        self.open_calls.clear()
        self.rejected.clear()
        self.envelope_log.clear()
        self.envelopes.clear()
        self.acks.clear()
        self.responses.clear()
        self.conns = {i: self.conns[i] for i in self.open_ids}
        self.max_open = len(self.open_ids)

    def ws_url(self, ticket):
        return 'ws://%s:%d/link/?ticket=%s' % (self.host, self.port, ticket)

    def response_url(self):
        self.response_seq += 1
        return 'http://%s:%d%s-%d' % (self.host, self.port, RESPONSE_URL_PATH,
                                      self.response_seq)

    def hello(self, conn):
        # fixtures/slack/hello__slack-go_slack__socketmode_socketmode_test.go.json
        return {'type': 'hello', 'num_connections': len(self.open_ids),
                'debug_info': {'host': 'applink-fake-%d' % conn.id,
                               'build_number': 10,
                               'approximate_connection_time': 18060},
                'connection_info': {'app_id': 'A01K58AR4RF'}}

    def encode_json(self, obj):
        """JSON as the socket sends it (Slack style: `\\/`, `\\uXXXX`)."""
        return dumps(obj, self.behaviour['escape_slashes'], self.behaviour['ensure_ascii'])

    def send_disconnect(self, conn, reason):
        # fixtures/slack/disconnect_*__docs...json
        conn.rec['disconnects_sent'].append({'t': now(), 'reason': reason})
        return conn.send_json({'type': 'disconnect', 'reason': reason,
                               'debug_info': {'host': DISCONNECT_HOST}})

    # -- TCP connections --

    async def handle_client(self, reader, writer):
        if self.stopping:
            writer.transport.abort()
            return
        self.clients.add(writer)
        self.handlers.add(asyncio.current_task())
        try:
            while True:
                try:
                    req = await read_request(reader, writer)
                except BadRequest as e:
                    writer.write(http_response(400, dumps({'error': str(e)}),
                                               keep_alive=False))
                    break
                if req is None:
                    break
                if 'websocket' in req.tokens('upgrade'):
                    if req.method == 'GET' and req.path.rstrip('/') == '/link':
                        await self.upgrade(req, reader, writer)
                    else:
                        self.reject(req, 'bad_path', 404, None,
                                    detail='%s %s' % (req.method, req.target))
                        writer.write(http_response(404, 'no websocket at this path',
                                                   'text/plain', keep_alive=False))
                    break
                reply = await self.route(req)
                keep = req.keep_alive() and not reply.close
                escape = req.path.startswith('/api/')
                writer.write(reply.encode(keep, escape))
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        except asyncio.CancelledError:
            pass    # asyncio.run() tidying up: end normally (3.11 streams
                    # would log a cancelled connection handler as an error)
        except Exception as e:          # a bug in the fake: say so, keep serving
            log('internal error: %r\n%s' % (e, traceback.format_exc()))
        finally:
            self.clients.discard(writer)
            self.handlers.discard(asyncio.current_task())
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (Exception, asyncio.CancelledError):
                pass

    async def route(self, req):
        path = req.path
        try:
            if path.startswith('/_control/'):
                try:
                    body = req.json() if req.method in ('PUT', 'POST') else {}
                except ValueError:
                    return error_reply(400, 'body is not JSON')
                if not isinstance(body, dict) and not (
                        isinstance(body, list) and path == '/_control/api_faults'):
                    return error_reply(400, 'body must be a JSON object')
                return await self.control(req, path[len('/_control/'):], body)
            if path[len('/api/'):] in WEB_METHODS:
                return await self.web_api(req, path[len('/api/'):])
            if path == '/api/apps.connections.open':
                return await self.apps_connections_open(req)
            if path.startswith('/commands/'):
                return self.response_post(req)
            if path.rstrip('/') == '/link':
                self.reject(req, 'bad_handshake', 400, None, detail='not a websocket upgrade')
                return Reply(400, 'not a websocket upgrade', close=True)
            return error_reply(404, 'no route %s %s' % (req.method, path))
        except ControlError as e:
            return error_reply(e.status, str(e))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return error_reply(400, 'bad control request: %r' % e)

    # -- Web API --

    async def apps_connections_open(self, req):
        t = now()
        auth = req.header('authorization')
        token = self.behaviour['token']
        if not auth:
            auth_state = 'missing'
        elif auth == 'Bearer ' + token:
            auth_state = 'ok'
        else:
            auth_state = 'wrong'
        call = {'t': t, 'method': req.method, 'auth': auth_state,
                'scripted': False, 'ticket': None}
        self.open_calls.append(call)
        if self.open_script:
            item = self.open_script.pop(0)
            call['scripted'] = True
            if item.get('delay'):
                await asyncio.sleep(float(item['delay']))
            status = int(item.get('status', 200))
            body = item.get('body')
            headers = []
            if status == 429:
                headers.append(('Retry-After', str(item.get('retry_after', 30))))
                if body is None:
                    body = {'ok': False, 'error': 'ratelimited'}
            elif item.get('retry_after') is not None:
                headers.append(('Retry-After', str(item['retry_after'])))
            if body is None:
                body = {'ok': status == 200}
            call['status'] = status
            if isinstance(body, dict):
                call['result'] = 'ok' if body.get('ok') else str(body.get('error', 'not_ok'))
            else:
                call['result'] = 'http_%d' % status
            if isinstance(body, str):
                return Reply(status, body, headers, ctype='text/html; charset=utf-8')
            return Reply(status, body, headers)
        call['status'] = 200
        if req.method != 'POST':
            error = 'insecure_request'
        elif auth_state == 'missing':
            error = 'not_authed'
        elif auth_state == 'wrong':
            error = 'invalid_auth'
        else:
            error = None
        if error:
            call['result'] = error
            return json_reply(200, {'ok': False, 'error': error})
        ticket = str(self.next_ticket)
        self.next_ticket += 1
        self.tickets[ticket] = False
        call['result'] = 'ok'
        call['ticket'] = ticket
        return json_reply(200, {'ok': True, 'url': self.ws_url(ticket)})

    def response_post(self, req):
        url_path = req.path
        uses = self.response_uses.get(url_path, 0) + 1
        self.response_uses[url_path] = uses
        try:
            parsed = json.loads(req.body.decode('utf-8')) if req.body else None
        except ValueError:
            parsed = None
        accepted = req.method == 'POST' and uses <= RESPONSE_URL_USES
        self.responses.append({'t': now(), 'path': url_path, 'method': req.method,
                               'content_type': req.header('content-type'),
                               'body': req.body.decode('utf-8', 'replace'),
                               'json': parsed, 'use': uses, 'accepted': accepted})
        if not accepted:
            return json_reply(404, {'ok': False, 'error': 'used_url'})
        return json_reply(200, {'ok': True})

    # -- websocket upgrade --

    def reject(self, req, reason, status, ticket, detail=None, ticket_known=None):
        rec = {'t': now(), 'reason': reason, 'status': status, 'ticket': ticket,
               'ticket_known': ticket_known, 'path': req.target}
        if detail:
            rec['detail'] = detail
        self.rejected.append(rec)
        log('upgrade rejected: %s (%d)' % (reason, status))

    async def upgrade(self, req, reader, writer):
        ticket = (req.query.get('ticket') or [None])[0]
        key = req.header('sec-websocket-key')
        problem = None
        try:
            key_ok = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            key_ok = False
        if req.version != 'HTTP/1.1':
            problem = 'not HTTP/1.1'
        elif 'upgrade' not in req.tokens('connection'):
            problem = 'Connection header lacks "upgrade"'
        elif req.header('sec-websocket-version') != '13':
            problem = 'Sec-WebSocket-Version is not 13'
        elif not key_ok:
            problem = 'bad Sec-WebSocket-Key'
        if problem:
            self.reject(req, 'bad_handshake', 400, ticket, detail=problem)
            extra = [('Sec-WebSocket-Version', '13')] if 'Version' in problem else []
            writer.write(http_response(426 if extra else 400, problem, 'text/plain',
                                       extra, keep_alive=False))
            await writer.drain()
            return
        known = ticket in self.tickets
        if self.refuse['count'] > 0:
            self.refuse['count'] -= 1
            status = int(self.refuse['status'])
            if known:
                self.tickets[ticket] = True
            self.reject(req, 'refused', status, ticket, ticket_known=known)
            writer.write(http_response(status, REASONS.get(status, 'refused'),
                                       'text/plain', keep_alive=False))
            await writer.drain()
            return
        if not known or self.tickets[ticket]:
            self.reject(req, 'reused_ticket', 401, ticket, ticket_known=known)
            writer.write(http_response(401, 'Unauthorized', 'text/plain', keep_alive=False))
            await writer.drain()
            return
        self.tickets[ticket] = True
        writer.write(('HTTP/1.1 101 Switching Protocols\r\n'
                      'Upgrade: websocket\r\n'
                      'Connection: Upgrade\r\n'
                      'Sec-WebSocket-Accept: %s\r\n\r\n' % accept_key(key)).encode())
        cid = self.next_conn
        self.next_conn += 1
        conn = Conn(self, cid, ticket, req, writer)
        self.conns[cid] = conn
        self.open_ids.append(cid)
        self.max_open = max(self.max_open, len(self.open_ids))
        too_many = len(self.open_ids) > int(self.behaviour['max_connections'])
        conn.rec['too_many'] = too_many
        log('socket %d open (ticket %s, %d open)' % (cid, ticket, len(self.open_ids)))
        self.changed()
        hello = self.behaviour['hello']
        try:
            if hello != 'never' or too_many:
                if hello == 'immediate' or hello == 'never':
                    await conn.hello_job(hello, too_many)   # before any frame is read
                else:
                    conn.spawn(conn.hello_job(hello, too_many))
            conn.spawn(conn.ping_job())
            await self.serve_socket(conn, reader)
        finally:
            conn.open = False
            if conn.rec['closed_by'] is None:
                conn.rec['closed_by'] = ('client_close_frame' if conn.client_closed
                                         else 'client_tcp')
            conn.rec['closed_at'] = now()
            if cid in self.open_ids:
                self.open_ids.remove(cid)
            for task in list(conn.tasks):
                task.cancel()
            conn.settings_changed.set()
            log('socket %d closed by %s (%d open)' % (cid, conn.rec['closed_by'],
                                                        len(self.open_ids)))
            self.changed()
            if not self.stopping:
                target = self.newest_ready()
                if target is not None:
                    self.redeliver(target)

    async def serve_socket(self, conn, reader):
        """Read client frames until the socket is gone."""
        message = None       # [opcode, bytearray] of a fragmented message
        rec = conn.rec
        while True:
            try:
                fin, opcode, payload = await read_frame(reader)
            except ProtocolError as e:
                self.protocol_error(conn, str(e), e.code)
                await self.discard_until_eof(conn, reader)
                return
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return
            if conn.client_closed:
                rec['frames_after_close'] += 1
                continue
            if opcode == OP_PING:
                rec['pings_received'] += 1
                rec['ping_payloads'] = (rec['ping_payloads']
                                        + [payload.decode('utf-8', 'replace')])[-20:]
                if conn.setting('autopong') and not conn.server_closed:
                    conn.send(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                rec['pongs_received'] += 1
                continue
            if opcode == OP_CLOSE:
                await self.client_close(conn, payload)
                if conn.setting('answer_close') or conn.server_closed:
                    conn.close_tcp()
                    return
                continue     # never answer, never close: the client must drop TCP
            # data frames
            if opcode == OP_CONT:
                if message is None:
                    self.protocol_error(conn, 'continuation frame without a message')
                    await self.discard_until_eof(conn, reader)
                    return
                message[1] += payload
            else:
                if message is not None:
                    self.protocol_error(conn, 'new data frame inside a fragmented message')
                    await self.discard_until_eof(conn, reader)
                    return
                message = [opcode, bytearray(payload)]
            if len(message[1]) > MAX_MESSAGE:
                self.protocol_error(conn, 'message over %d bytes' % MAX_MESSAGE, 1009)
                await self.discard_until_eof(conn, reader)
                return
            if not fin:
                continue
            op, data = message[0], bytes(message[1])
            message = None
            if op == OP_BINARY:
                rec['binary_frames'] += 1
                continue
            try:
                text = data.decode('utf-8')
            except UnicodeDecodeError:
                self.protocol_error(conn, 'text message is not UTF-8', 1007)
                await self.discard_until_eof(conn, reader)
                return
            self.client_text(conn, text)

    def protocol_error(self, conn, message, code=1002):
        """Record a client protocol violation and start closing (RFC 6455 §7.4.1)."""
        conn.rec['protocol_errors'].append(message)
        log('socket %d: protocol error: %s' % (conn.id, message))
        conn.rec['closed_by'] = conn.rec['closed_by'] or 'server'
        conn.send_close(code, message[:100])
        conn.spawn(conn.drop_after_close_wait(CLOSE_WAIT))

    async def discard_until_eof(self, conn, reader):
        """After the fake sent a close: wait for the client's close (or EOF)."""
        while conn.open:
            try:
                _, opcode, payload = await read_frame(reader)
            except (ProtocolError, asyncio.IncompleteReadError, ConnectionError, OSError):
                return
            if opcode == OP_CLOSE:
                await self.client_close(conn, payload)
                conn.close_tcp()
                return

    async def client_close(self, conn, payload):
        rec = conn.rec
        conn.client_closed = True
        rec['client_close_at'] = now()
        code = None
        reason = ''
        if len(payload) >= 2:
            code, = struct.unpack('!H', payload[:2])
            reason = payload[2:].decode('utf-8', 'replace')
        elif len(payload) == 1:
            rec['protocol_errors'].append('close frame with a 1-byte payload')
        if code is not None and not (1000 <= code <= 1003 or 1007 <= code <= 1014
                                     or 3000 <= code <= 4999):
            rec['protocol_errors'].append('invalid close code %d' % code)
        rec['close_code'] = code
        rec['close_reason'] = reason
        if rec['closed_by'] is None and not conn.server_closed:
            rec['closed_by'] = 'client_close_frame'
        if conn.server_closed:
            return           # the client answered our close
        if conn.setting('answer_close'):
            conn.send_close(code if code is not None else None,
                            '' if code is None else reason)
            await conn.drain(2)
        self.changed()

    def client_text(self, conn, text):
        t = now()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        conn.rec['texts'].append({'t': t, 'json': parsed,
                                  'text': text[:TEXT_RECORD_MAX]})
        if isinstance(parsed, dict) and isinstance(parsed.get('envelope_id'), str):
            eid = parsed['envelope_id']
            sent = self.envelopes.get(eid)
            ack = {'envelope_id': eid, 'conn': conn.id, 't': t, 'json': parsed,
                   'known': sent is not None,
                   'latency_ms': (t - sent['sent_at']) * 1000.0 if sent else None}
            self.acks.append(ack)
            self.pending.pop(eid, None)
            for sent_at, fut in self.ack_waiters.pop(eid, []):
                if not fut.done():
                    fut.set_result(ack)

    # -- control API --

    async def control(self, req, name, body):
        m = req.method
        if name in ('channels', 'api_faults', 'bot_token', 'web_api'):
            return self.web_control(name, m, body)
        if name == 'behaviour':
            if m == 'PUT':
                self.put_behaviour(body)
            elif m != 'GET':
                raise ControlError(405, 'GET or PUT')
            return json_reply(200, dict(self.behaviour))
        if name == 'connection' and m == 'PUT':
            conn = self.conns.get(int(body.get('conn', 0)))
            if conn is None:
                raise ControlError(404, 'no socket %s' % body.get('conn'))
            for key, value in body.items():
                if key == 'conn':
                    continue
                if key not in LIVE_SETTINGS:
                    raise ControlError(400, 'per-socket settings: %s' % ', '.join(LIVE_SETTINGS))
                conn.overrides[key] = self.check_setting(key, value)
            conn.settings_changed.set()
            return json_reply(200, conn.record())
        if name == 'open_script':
            if m == 'PUT':
                answers = body.get('answers')
                if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
                    raise ControlError(400, '"answers" must be a list of objects')
                self.open_script = [dict(a) for a in answers]
            return json_reply(200, {'answers': self.open_script})
        if name == 'refuse_upgrade':
            if m == 'PUT':
                self.refuse = {'count': int(body.get('count', 1)),
                               'status': int(body.get('status', 409))}
            return json_reply(200, dict(self.refuse))
        if name == 'state':
            if m == 'DELETE':
                self.reset()
                return json_reply(200, {'ok': True})
            return json_reply(200, self.state())
        if name == 'acks':
            eid = (req.query.get('envelope_id') or [None])[0]
            return json_reply(200, [a for a in self.acks
                                    if eid is None or a['envelope_id'] == eid])
        if name == 'wait_open':
            return await self.wait_open(req)
        if m != 'POST':
            raise ControlError(404 if name not in POST_CONTROLS else 405,
                               'no control %s %s' % (m, name))
        if name == 'envelope':
            return await self.post_envelope(body)
        if name == 'flood':
            return await self.post_flood(body)
        if name == 'disconnect':
            return await self.post_disconnect(body)
        if name == 'raw':
            return await self.post_raw(body)
        if name == 'oversize':
            return await self.post_oversize(body)
        if name == 'close':
            conn = self.pick(body)
            conn.rec['closed_by'] = conn.rec['closed_by'] or 'server'
            conn.send_close(int(body.get('code', 1000)), str(body.get('reason', '')))
            conn.spawn(conn.drop_after_close_wait(float(body.get('wait', CLOSE_WAIT))))
            await conn.drain(2)
            return json_reply(200, {'conn': conn.id})
        if name == 'kill':
            conn = self.pick(body)
            conn.abort(bool(body.get('rst')))
            return json_reply(200, {'conn': conn.id})
        raise ControlError(404, 'no control %s' % name)

    @staticmethod
    def check_setting(key, value):
        if key == 'hello':
            if value in ('immediate', 'never'):
                return value
            if isinstance(value, dict) and isinstance(value.get('delay'), (int, float)):
                return {'delay': float(value['delay'])}
            raise ControlError(400, 'hello: "immediate", "never" or {"delay": s}')
        if key in ('autopong', 'answer_close', 'escape_slashes', 'ensure_ascii', 'redeliver'):
            if not isinstance(value, bool):
                raise ControlError(400, '%s must be true or false' % key)
            return value
        if key == 'server_ping_interval':
            if value is None:
                return None
            if not isinstance(value, (int, float)) or value <= 0:
                raise ControlError(400, 'server_ping_interval: seconds > 0 or null')
            return float(value)
        if key == 'token':
            if not isinstance(value, str):
                raise ControlError(400, 'token must be a string')
            return value
        if key == 'max_connections':
            if not isinstance(value, int) or value < 0:
                raise ControlError(400, 'max_connections must be an integer >= 0')
            return value
        raise ControlError(400, 'unknown behaviour key %r' % key)

    def put_behaviour(self, body):
        checked = {k: self.check_setting(k, v) for k, v in body.items()}
        self.behaviour.update(checked)
        for conn in self.open_conns():
            conn.settings_changed.set()

    async def wait_open(self, req):
        count = int((req.query.get('count') or ['1'])[0])
        timeout = float((req.query.get('timeout') or ['5'])[0])
        deadline = now() + timeout
        while True:
            event = self._changed
            conns = self.open_conns()
            ok = len(conns) == count and all(c.rec['hello_sent'] for c in conns)
            left = deadline - now()
            if ok or left <= 0:
                return json_reply(200, dict(self.state(), ok=ok))
            try:
                await asyncio.wait_for(event.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def send_message(self, conn, data, opcode=OP_TEXT, fragments=1,
                           interleave_ping=False):
        """Send one message, split in `fragments` frames; False if gone."""
        fragments = max(1, min(int(fragments), max(1, len(data))))
        step = -(-len(data) // fragments) if data else 0
        ok = True
        for i in range(fragments):
            chunk = data[i * step:(i + 1) * step] if step else b''
            first, last = i == 0, i == fragments - 1
            ok = conn.send(opcode if first else OP_CONT, chunk, fin=last) and ok
            if interleave_ping and not last:
                ok = conn.send(OP_PING, b'interleaved') and ok
                conn.rec['pings_sent'] += 1
        return ok and await conn.drain()

    async def send_envelope(self, conn, envelope, body):
        eid = envelope['envelope_id']
        wait = float(body.get('wait_ack', 5))
        fut = None
        if wait > 0:
            fut = asyncio.get_running_loop().create_future()
            self.ack_waiters.setdefault(eid, []).append((now(), fut))
        data = self.encode_json(envelope)
        sent_at = now()
        sent = {'envelope_id': eid, 'conn': conn.id, 'type': envelope.get('type'),
                'sent_at': sent_at, 'size': len(data)}
        self.envelopes[eid] = sent
        self.envelope_log.append(sent)
        delivered = await self.send_message(
            conn, data, OP_BINARY if body.get('binary') else OP_TEXT,
            body.get('fragment', 1), bool(body.get('interleave_ping')))
        result = {'envelope_id': eid, 'conn': conn.id, 'sent_at': sent_at,
                  'delivered': delivered, 'size': len(data), 'ack': None,
                  'ack_conn': None, 'ack_latency_ms': None}
        if fut is not None:
            try:
                ack = await asyncio.wait_for(fut, wait)
                if ack is not None:      # None: the fake is stopping
                    result.update(ack=ack['json'], ack_conn=ack['conn'],
                                  ack_latency_ms=(ack['t'] - sent_at) * 1000.0)
            except asyncio.TimeoutError:
                waiters = self.ack_waiters.get(eid, [])
                waiters[:] = [w for w in waiters if w[1] is not fut]
                if not waiters:
                    self.ack_waiters.pop(eid, None)
        return json_reply(200, result)

    async def post_envelope(self, body):
        conn = self.pick(body)
        etype = body.get('type', 'slash_commands')
        if 'payload' in body:
            payload = body['payload']
        elif etype == 'slash_commands':
            payload = copy.deepcopy(SLASH_PAYLOAD)
            payload['response_url'] = self.response_url()
            for key in ('text', 'user_id', 'channel_id', 'command', 'response_url',
                        'user_name', 'channel_name'):
                if key in body:
                    payload[key] = body[key]
        else:
            payload = {}
        envelope = {'payload': payload,
                    'envelope_id': str(body.get('envelope_id') or uuid.uuid4()),
                    'type': etype,
                    'accepts_response_payload': body.get('accepts_response_payload', True)}
        for key in ('retry_attempt', 'retry_reason'):
            if key in body:
                envelope[key] = body[key]
        if not body.get('binary'):
            self.pending[envelope['envelope_id']] = {'envelope': envelope, 'conn': conn.id,
                                                     'redeliveries': 0}
        return await self.send_envelope(conn, envelope, body)

    def redeliver(self, conn):
        """Send conn every envelope not acked whose socket is gone, as Slack does
        (retry_attempt + 1, retry_reason "timeout"; at most REDELIVERIES times)."""
        if not self.behaviour['redeliver'] or not conn.open or conn.closing:
            return
        for eid, item in list(self.pending.items()):
            old = self.conns.get(item['conn'])
            if old is not None and old.open:
                continue
            if item['redeliveries'] >= REDELIVERIES:
                del self.pending[eid]
                continue
            item['redeliveries'] += 1
            envelope = dict(item['envelope'])
            envelope['retry_attempt'] = int(envelope.get('retry_attempt') or 0) + 1
            envelope['retry_reason'] = 'timeout'
            item['envelope'] = envelope
            item['conn'] = conn.id
            data = self.encode_json(envelope)
            sent = {'envelope_id': eid, 'conn': conn.id, 'type': envelope.get('type'),
                    'sent_at': now(), 'size': len(data), 'redelivered': True,
                    'retry_attempt': envelope['retry_attempt']}
            self.envelopes[eid] = sent
            self.envelope_log.append(sent)
            conn.send(OP_TEXT, data)
            log('socket %d: envelope %s redelivered (retry_attempt %d)'
                % (conn.id, eid, envelope['retry_attempt']))

    async def post_flood(self, body):
        """`count` slash commands written back to back on one socket (users
        taking turns from `users`, each `text`), as a script or a crowd would;
        waits up to `wait_ack` s for every ack. Answers one result per
        envelope: user, ack latency (ms, None without an ack) and the ack's
        payload as JSON text (None for an empty ack)."""
        conn = self.pick(body)
        users = list(body.get('users') or ['U0FLOOD1'])
        count = int(body.get('count', 100))
        wait = float(body.get('wait_ack', 10))
        loop = asyncio.get_running_loop()
        pending = []
        for i in range(count):
            payload = copy.deepcopy(SLASH_PAYLOAD)
            payload['response_url'] = self.response_url()
            payload['text'] = str(body.get('text', 'projects'))
            payload['user_id'] = users[i % len(users)]
            eid = 'flood-%d-%s' % (i, uuid.uuid4().hex[:8])
            envelope = {'payload': payload, 'envelope_id': eid, 'type': 'slash_commands',
                        'accepts_response_payload': True}
            fut = loop.create_future()
            self.ack_waiters.setdefault(eid, []).append((now(), fut))
            data = self.encode_json(envelope)
            sent_at = now()
            self.envelopes[eid] = {'envelope_id': eid, 'conn': conn.id,
                                   'type': 'slash_commands', 'sent_at': sent_at,
                                   'size': len(data)}
            conn.send(OP_TEXT, data)
            pending.append((payload['user_id'], eid, sent_at, fut))
        await conn.drain(wait)
        results = []
        end = loop.time() + wait
        for user, eid, sent_at, fut in pending:
            ack = None
            try:
                ack = await asyncio.wait_for(fut, max(0.01, end - loop.time()))
            except asyncio.TimeoutError:
                self.ack_waiters.pop(eid, None)
            text = None
            if ack is not None and ack['json'].get('payload'):
                text = json.dumps(ack['json']['payload'], ensure_ascii=False)
            results.append({'user': user, 'envelope_id': eid,
                            'ack_latency_ms': None if ack is None
                            else (ack['t'] - sent_at) * 1000.0,
                            'text': text})
        return json_reply(200, {'results': results})

    async def post_oversize(self, body):
        conn = self.pick(body)
        size = int(body.get('size', 0))
        eid = str(body.get('envelope_id') or uuid.uuid4())
        envelope = {'payload': {'type': 'fake_oversize', 'pad': ''},
                    'envelope_id': eid, 'type': 'events_api',
                    'accepts_response_payload': False,
                    'retry_attempt': 0, 'retry_reason': ''}
        base = len(self.encode_json(envelope))
        if size < base:
            raise ControlError(400, 'size must be >= %d' % base)
        envelope['payload']['pad'] = ' ' * (size - base)
        body = dict(body, wait_ack=body.get('wait_ack', 0))
        return await self.send_envelope(conn, envelope, body)

    async def post_disconnect(self, body):
        conn = self.pick(body)
        reason = str(body.get('reason', 'refresh_requested'))
        self.send_disconnect(conn, reason)
        delivered = await conn.drain()
        after = body.get('then_close_after')
        if after is not None:
            conn.spawn(conn.close_later(float(after), body.get('close_code')))
        return json_reply(200, {'conn': conn.id, 'reason': reason, 't': now(),
                                'delivered': delivered})

    async def post_raw(self, body):
        conn = self.pick(body)
        if 'text' in body:
            ok = conn.send(OP_TEXT, str(body['text']).encode('utf-8'))
        elif 'bytes_hex' in body:
            try:
                data = bytes.fromhex(body['bytes_hex'])
            except ValueError:
                raise ControlError(400, 'bytes_hex is not hex')
            ok = conn.send(int(body.get('opcode', OP_BINARY)), data,
                           fin=bool(body.get('fin', True)))
        else:
            raise ControlError(400, 'need "text" or "bytes_hex"')
        ok = ok and await conn.drain()
        return json_reply(200, {'conn': conn.id, 'delivered': ok, 't': now()})

    # -- life cycle --

    async def serve(self, port, stop):
        server = await asyncio.start_server(self.handle_client, self.bind, port,
                                            limit=256 * 1024)
        self.port = server.sockets[0].getsockname()[1]
        sys.stdout.write('PORT %d\n' % self.port)
        sys.stdout.flush()
        log('listening on http://%s:%d/' % (self.bind, self.port))
        await stop.wait()
        # Orderly stop: no new connections, drop every TCP connection, answer
        # pending wait_ack calls with "no ack", let every handler finish.
        server.close()
        self.stopping = True
        for waiters in self.ack_waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        for conn in self.open_conns():
            conn.rec['closed_by'] = conn.rec['closed_by'] or 'server'
        for writer in list(self.clients):
            writer.transport.abort()
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=3)
        await server.wait_closed()
        log('stopped')


POST_CONTROLS = ('envelope', 'flood', 'disconnect', 'raw', 'oversize', 'close', 'kill')


class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


async def amain(args):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fake = FakeSlack(args.bind, args.token, args.bot_token)
    await fake.serve(args.port, stop)


def main(argv=None):
    ap = argparse.ArgumentParser(description='Fake Slack Socket Mode server.')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--bind', default='127.0.0.1')
    ap.add_argument('--bot-token', default=DEFAULT_BOT_TOKEN,
                    help='bot token the Web API methods accept')
    ap.add_argument('--token', default=DEFAULT_TOKEN,
                    help='app-level token apps.connections.open accepts')
    args = ap.parse_args(argv)
    asyncio.run(amain(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
