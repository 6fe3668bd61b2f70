#!/usr/bin/env python3
"""Self-test of fake_slack.py (standard library only; meson test "fake_slack_selftest").

Starts the fake as `python3 fake_slack.py --port 0` like harness._FakeProcess
does and drives it with a tiny hand-written websocket client (handshake check,
masked frames, fragmentation, ping/pong, close). Prints PASS/FAIL per check;
the exit status is 0 only when everything passed.

    python3 tests/fakes/test_fake_slack.py [-v]
"""

import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, 'fake_slack.py')
TOKEN = 'xapp-test-fake-app-token'
GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
VERBOSE = '-v' in sys.argv
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Closed(Exception):
    """The server closed the TCP connection."""


class WSClient:
    """A minimal RFC 6455 client over a blocking socket."""

    def __init__(self, url, timeout=5.0):
        u = urllib.parse.urlsplit(url)
        assert u.scheme == 'ws', url
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        self.buf = b''
        target = u.path + ('?' + u.query if u.query else '')
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(('GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n'
                           'Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n'
                           'Sec-WebSocket-Version: 13\r\n'
                           'Sec-WebSocket-Protocol: not-offered-by-slack\r\n\r\n'
                           % (target, u.hostname, u.port, key)).encode())
        while b'\r\n\r\n' not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        self.status = int(lines[0].split(' ')[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(':')
            self.headers[k.strip().lower()] = v.strip()
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            assert self.headers.get('sec-websocket-accept') == want, self.headers
            assert self.headers.get('upgrade', '').lower() == 'websocket'
            assert 'sec-websocket-protocol' not in self.headers
        else:
            self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload=b'', fin=True, mask=True):
        if isinstance(payload, str):
            payload = payload.encode('utf-8')
        head = bytearray([(0x80 if fin else 0) | opcode])
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head.append(mbit | n)
        elif n < 65536:
            head.append(mbit | 126)
            head += struct.pack('!H', n)
        else:
            head.append(mbit | 127)
            head += struct.pack('!Q', n)
        if mask:
            key = os.urandom(4)
            head += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(head) + payload)

    def send_text(self, text):
        self.send_frame(OP_TEXT, text)

    def recv_frame(self, timeout=3.0):
        """(fin, opcode, payload, length_form); socket.timeout when idle."""
        self.sock.settimeout(timeout)
        b0, b1 = self._take(2)
        assert not b1 & 0x80, 'server frames must not be masked'
        n = b1 & 0x7F
        form = 7
        if n == 126:
            n, = struct.unpack('!H', self._take(2))
            form = 16
        elif n == 127:
            n, = struct.unpack('!Q', self._take(8))
            form = 64
        return bool(b0 & 0x80), b0 & 0x0F, self._take(n), form

    def recv_message(self, timeout=3.0, skip_pings=True):
        """(opcode, payload) of the next data message (reassembled) or of a
        close/pong frame; pings are answered (when skip_pings) and skipped."""
        parts = []
        first_op = None
        while True:
            fin, op, payload, _ = self.recv_frame(timeout)
            if op == OP_PING and skip_pings:
                self.send_frame(OP_PONG, payload)
                continue
            if op in (OP_CLOSE, OP_PONG, OP_PING):
                return op, payload
            if op != OP_CONT:
                first_op = op
            parts.append(payload)
            if fin:
                return first_op, b''.join(parts)

    def recv_json(self, timeout=3.0):
        op, payload = self.recv_message(timeout)
        assert op == OP_TEXT, (op, payload[:200])
        return json.loads(payload), payload

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Fake:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, FAKE, '--port', '0'],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        assert line.startswith('PORT '), line
        self.port = int(line.split()[1])
        self.url = 'http://127.0.0.1:%d' % self.port
        self.stderr = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode('utf-8', 'replace'))

    def call(self, method, path, data=None, headers=None, raw=False):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, method=method)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with NO_PROXY.open(req, timeout=15) as resp:
                status, hdrs, out = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            status, hdrs, out = e.code, dict(e.headers), e.read()
        if raw:
            return status, hdrs, out
        return json.loads(out) if out else None

    def open_url(self, token=TOKEN):
        st, _, body = self.call('POST', '/api/apps.connections.open', None,
                                {'Authorization': 'Bearer ' + token}, raw=True)
        got = json.loads(body)
        assert got['ok'], got
        return got['url']

    def connect(self, expect_hello=True):
        ws = WSClient(self.open_url())
        assert ws.status == 101, ws.status
        if expect_hello:
            hello, _ = ws.recv_json()
            assert hello['type'] == 'hello', hello
        return ws

    def state(self):
        return self.call('GET', '/_control/state')

    def conn(self, cid):
        return next(c for c in self.state()['connections'] if c['id'] == cid)

    def behaviour(self, **kw):
        return self.call('PUT', '/_control/behaviour', kw)

    def newest_id(self):
        return self.state()['open'][-1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


def wait_for(pred, timeout=5.0, step=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError('timed out')
        time.sleep(step)


def in_thread(fn, *args):
    box = {}

    def run():
        try:
            box['value'] = fn(*args)
        except BaseException as e:   # reported by the caller
            box['error'] = e
    t = threading.Thread(target=run)
    t.start()

    def join():
        t.join(20)
        if 'error' in box:
            raise box['error']
        return box['value']
    return join


# -- the checks -----------------------------------------------------------------------

def t_connections_open(f):
    st, _, body = f.call('POST', '/api/apps.connections.open', raw=True)
    assert st == 200 and json.loads(body) == {'ok': False, 'error': 'not_authed'}, body
    st, _, body = f.call('POST', '/api/apps.connections.open',
                         headers={'Authorization': 'Bearer xapp-test-wrong'}, raw=True)
    assert json.loads(body) == {'ok': False, 'error': 'invalid_auth'}, body
    st, hdrs, body = f.call('POST', '/api/apps.connections.open',
                            headers={'Authorization': 'Bearer ' + TOKEN}, raw=True)
    assert st == 200 and hdrs['Content-Type'].startswith('application/json')
    text = body.decode()
    assert text.startswith('{"ok":true,"url":"ws:\\/\\/127.0.0.1:%d\\/link\\/?ticket=' % f.port), text
    url = json.loads(text)['url']
    assert url.startswith('ws://127.0.0.1:%d/link/?ticket=' % f.port), url
    calls = f.state()['open_calls']
    assert [c['result'] for c in calls] == ['not_authed', 'invalid_auth', 'ok'], calls
    assert all(isinstance(c['t'], float) for c in calls)


def t_keepalive(f):
    """Several requests on one HTTP/1.1 connection (what libcurl does)."""
    c = http.client.HTTPConnection('127.0.0.1', f.port, timeout=5)
    for _ in range(3):
        c.request('POST', '/api/apps.connections.open', body=b'',
                  headers={'Authorization': 'Bearer ' + TOKEN,
                           'Content-Type': 'application/x-www-form-urlencoded'})
        r = c.getresponse()
        assert json.loads(r.read())['ok']
    c.request('GET', '/_control/behaviour')
    assert json.loads(c.getresponse().read())['token'] == TOKEN
    c.close()


def t_hello(f):
    ws = WSClient(f.open_url())
    assert ws.status == 101
    hello, raw = ws.recv_json()
    assert hello['type'] == 'hello' and hello['num_connections'] == 1, hello
    assert hello['connection_info']['app_id'] and hello['debug_info']['host'], hello
    cid = f.newest_id()
    rec = f.conn(cid)
    assert rec['hello_sent'] and rec['open'] and rec['path'].startswith('/link/?ticket=')
    ws.send_frame(OP_CLOSE, struct.pack('!H', 1000))
    op, payload = ws.recv_message()
    assert op == OP_CLOSE and payload[:2] == struct.pack('!H', 1000), (op, payload)
    try:
        ws.recv_frame(2)
        raise AssertionError('data after close')
    except Closed:
        pass
    ws.close()
    rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
    assert rec['closed_by'] == 'client_close_frame' and rec['close_code'] == 1000, rec
    assert rec['closed_at'] >= rec['opened_at']


def t_envelope_ack(f):
    ws = f.connect()
    cid = f.newest_id()
    join = in_thread(f.call, 'POST', '/_control/envelope',
                     {'text': 'projects', 'user_id': 'U999', 'wait_ack': 5})
    env, raw = ws.recv_json()
    assert env['type'] == 'slash_commands' and env['accepts_response_payload'] is True
    p = env['payload']
    assert p['command'] == '/youtrack' and p['text'] == 'projects' and p['user_id'] == 'U999'
    assert p['channel_id'] == 'C123ABC456' and p['trigger_id'] and p['team_id'] == 'T123ABC456'
    assert p['response_url'].startswith('http://127.0.0.1:%d/commands/' % f.port), p
    assert b'\\/' in raw, 'slashes are escaped like Slack does'
    assert 'retry_attempt' not in env
    time.sleep(0.05)
    ws.send_text(json.dumps({'envelope_id': env['envelope_id'],
                             'payload': {'response_type': 'ephemeral', 'text': 'ok'}}))
    res = join()
    assert res['envelope_id'] == env['envelope_id'] and res['conn'] == cid, res
    assert res['ack']['payload']['text'] == 'ok', res
    assert 50 <= res['ack_latency_ms'] < 3000, res
    acks = f.call('GET', '/_control/acks?envelope_id=' + env['envelope_id'])
    assert len(acks) == 1 and acks[0]['known'] and acks[0]['conn'] == cid, acks
    # the response_url works and is recorded
    st, _, body = f.call('POST', urllib.parse.urlsplit(p['response_url']).path,
                         {'response_type': 'ephemeral', 'text': 'later'}, raw=True)
    assert st == 200 and json.loads(body) == {'ok': True}
    resp = f.state()['responses'][-1]
    assert resp['json']['text'] == 'later' and resp['use'] == 1
    # no ack -> null after wait_ack; retry fields when given
    join = in_thread(f.call, 'POST', '/_control/envelope',
                     {'wait_ack': 0.3, 'retry_attempt': 1, 'retry_reason': 'timeout',
                      'envelope_id': 'fixed-1'})
    env, _ = ws.recv_json()
    assert env['retry_attempt'] == 1 and env['retry_reason'] == 'timeout'
    res = join()
    assert res['ack'] is None and res['ack_latency_ms'] is None, res
    ws.close()


def t_client_fragments_and_ping(f):
    ws = f.connect()
    cid = f.newest_id()
    res = f.call('POST', '/_control/envelope', {'wait_ack': 0})
    env, _ = ws.recv_json()
    assert res['ack'] is None
    ack = json.dumps({'envelope_id': env['envelope_id']}).encode()
    ws.send_frame(OP_TEXT, ack[:5], fin=False)
    ws.send_frame(OP_PING, b'mid-message', fin=True)   # control frame between fragments
    ws.send_frame(OP_CONT, ack[5:12], fin=False)
    ws.send_frame(OP_CONT, ack[12:], fin=True)
    fin, op, payload, _ = ws.recv_frame()
    assert op == OP_PONG and payload == b'mid-message', (op, payload)
    acks = wait_for(lambda: f.call('GET', '/_control/acks?envelope_id=' + env['envelope_id']))
    assert acks[0]['json'] == {'envelope_id': env['envelope_id']}
    # 16- and 64-bit lengths from the client
    ws.send_text(json.dumps({'pad': 'x' * 300}))
    ws.send_text(json.dumps({'pad': 'y' * 70000}))
    rec = wait_for(lambda: (lambda r: r if len(r['texts']) >= 3 else None)(f.conn(cid)))
    assert rec['texts'][1]['json']['pad'] == 'x' * 300
    assert rec['texts'][2]['json'] is not None and len(rec['texts'][2]['text']) == 2000
    assert rec['pings_received'] == 1 and rec['ping_payloads'] == ['mid-message']
    ws.close()


def t_server_fragments_binary_oversize(f):
    ws = f.connect()
    join = in_thread(f.call, 'POST', '/_control/envelope',
                     {'fragment': 4, 'interleave_ping': True, 'text': 'x' * 50})
    frames = []
    while True:
        fin, op, payload, _ = ws.recv_frame()
        frames.append(op)
        if op == OP_PING:
            ws.send_frame(OP_PONG, payload)
            continue
        if op == OP_TEXT:
            data = payload
        else:
            assert op == OP_CONT
            data += payload
        if fin:
            break
    assert frames == [OP_TEXT, OP_PING, OP_CONT, OP_PING, OP_CONT, OP_PING, OP_CONT], frames
    env = json.loads(data)
    ws.send_text(json.dumps({'envelope_id': env['envelope_id']}))
    assert join()['ack'] is not None
    # binary: a client must ignore it, so no ack
    join = in_thread(f.call, 'POST', '/_control/envelope', {'binary': True, 'wait_ack': 0.2})
    op, payload = ws.recv_message()
    assert op == OP_BINARY and json.loads(payload)['type'] == 'slash_commands'
    assert join()['ack'] is None
    # oversize: exact size, 64-bit length
    res = f.call('POST', '/_control/oversize', {'size': 100000})
    fin, op, payload, form = ws.recv_frame()
    assert op == OP_TEXT and len(payload) == 100000 and form == 64, (op, len(payload), form)
    assert json.loads(payload)['envelope_id'] == res['envelope_id']
    f.call('POST', '/_control/oversize', {'size': 1000})
    fin, op, payload, form = ws.recv_frame()
    assert len(payload) == 1000 and form == 16
    # raw frames
    f.call('POST', '/_control/raw', {'text': '{not json'})
    assert ws.recv_message() == (OP_TEXT, b'{not json')
    f.call('POST', '/_control/raw', {'text': '{"type":"brand_new_type"}'})
    assert ws.recv_json()[0] == {'type': 'brand_new_type'}
    f.call('POST', '/_control/raw', {'bytes_hex': '00ff', 'opcode': 2})
    assert ws.recv_message() == (OP_BINARY, b'\x00\xff')
    ws.close()


def t_ping_pong(f):
    ws = f.connect()
    cid = f.newest_id()
    ws.send_frame(OP_PING, b'client-1')
    fin, op, payload, _ = ws.recv_frame()
    assert (op, payload) == (OP_PONG, b'client-1')
    f.call('PUT', '/_control/connection', {'conn': cid, 'autopong': False})
    ws.send_frame(OP_PING, b'client-2')
    try:
        ws.recv_frame(0.5)
        raise AssertionError('pong despite autopong false')
    except socket.timeout:
        pass
    assert f.conn(cid)['pings_received'] == 2
    # server pings, live setting change
    f.behaviour(server_ping_interval=0.2)
    t0 = time.monotonic()
    fin, op, payload, _ = ws.recv_frame(2)
    assert op == OP_PING and payload == b'Ping from applink-fake', (op, payload)
    assert time.monotonic() - t0 < 1.0
    ws.send_frame(OP_PONG, payload)
    fin, op, payload, _ = ws.recv_frame(2)
    assert op == OP_PING
    f.behaviour(server_ping_interval=None)
    rec = wait_for(lambda: (lambda r: r if r['pongs_received'] >= 1 else None)(f.conn(cid)))
    assert rec['pings_sent'] >= 2
    try:
        while True:   # drain pings sent before the change, then silence
            fin, op, payload, _ = ws.recv_frame(0.5)
            assert op == OP_PING
    except socket.timeout:
        pass
    ws.close()


def t_close_unanswered(f):
    f.behaviour(answer_close=False)
    ws = f.connect()
    cid = f.newest_id()
    ws.send_frame(OP_CLOSE, struct.pack('!H', 1001) + b'going')
    try:
        ws.recv_frame(1.0)
        raise AssertionError('close answered despite answer_close false')
    except socket.timeout:
        pass
    st = f.state()
    assert cid in st['open'], st['open']
    rec = f.conn(cid)
    assert rec['closing'] and rec['close_code'] == 1001 and rec['close_reason'] == 'going'
    ws.close()   # the client must drop it itself
    rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
    assert rec['closed_by'] == 'client_close_frame' and rec['closed_at'], rec
    f.behaviour(answer_close=True)
    # plain TCP drop
    ws = f.connect()
    cid = f.newest_id()
    ws.close()
    rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
    assert rec['closed_by'] == 'client_tcp' and rec['close_code'] is None, rec


def t_server_close_and_kill(f):
    ws = f.connect()
    cid = f.newest_id()
    f.call('POST', '/_control/close', {'code': 1001, 'reason': 'bye'})
    op, payload = ws.recv_message()
    assert op == OP_CLOSE and payload == struct.pack('!H', 1001) + b'bye'
    ws.send_frame(OP_CLOSE, struct.pack('!H', 1001))
    try:
        ws.recv_frame(2)
        raise AssertionError('no EOF')
    except Closed:
        pass
    rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
    assert rec['closed_by'] == 'server' and rec['server_close_code'] == 1001
    ws.close()
    ws = f.connect()
    cid = f.newest_id()
    f.call('POST', '/_control/kill', {'conn': cid})
    try:
        ws.recv_frame(2)
        raise AssertionError('no EOF after kill')
    except (Closed, ConnectionResetError):
        pass
    rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
    assert rec['closed_by'] == 'server' and rec['server_close_code'] is None
    ws.close()


def t_unmasked_is_protocol_error(f):
    ws = f.connect()
    cid = f.newest_id()
    ws.send_frame(OP_TEXT, b'{"envelope_id":"x"}', mask=False)
    op, payload = ws.recv_message()
    assert op == OP_CLOSE and struct.unpack('!H', payload[:2])[0] == 1002, payload
    ws.send_frame(OP_CLOSE, struct.pack('!H', 1002))
    rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
    assert rec['protocol_errors'] and 'unmasked' in rec['protocol_errors'][0], rec
    assert rec['closed_by'] == 'server'
    ws.close()


def t_more_protocol_errors(f):
    cases = [
        (lambda ws: ws.send_frame(OP_TEXT, b'\xff\xfe'), 1007, 'UTF-8'),
        (lambda ws: ws.send_frame(OP_PING, b'p' * 126), 1002, 'control frame'),
        (lambda ws: ws.send_frame(OP_CONT, b'x'), 1002, 'continuation'),
        (lambda ws: (ws.send_frame(OP_TEXT, b'a', fin=False),
                     ws.send_frame(OP_TEXT, b'b')), 1002, 'inside a fragmented'),
        (lambda ws: ws.sock.sendall(b'\xc1\x80abcd'), 1002, 'RSV'),
    ]
    for act, code, words in cases:
        ws = f.connect()
        cid = f.newest_id()
        act(ws)
        op, payload = ws.recv_message()
        assert op == OP_CLOSE and struct.unpack('!H', payload[:2])[0] == code, payload
        ws.close()
        rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
        assert words in rec['protocol_errors'][0], rec['protocol_errors']
    # an invalid close code is recorded (and still answered)
    ws = f.connect()
    cid = f.newest_id()
    ws.send_frame(OP_CLOSE, struct.pack('!H', 1005))
    assert ws.recv_message()[0] == OP_CLOSE
    ws.close()
    rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
    assert rec['protocol_errors'] == ['invalid close code 1005'], rec


def t_json_style(f):
    ws = f.connect()
    join = in_thread(f.call, 'POST', '/_control/envelope',
                     {'text': 'Демо a/b 🎉', 'wait_ack': 0})
    env, raw = ws.recv_json()
    join()
    assert env['payload']['text'] == 'Демо a/b 🎉'
    assert b'\\u0414' in raw and b'\\ud83c\\udf89' in raw and b'a\\/b' in raw, raw
    f.behaviour(escape_slashes=False, ensure_ascii=False)
    join = in_thread(f.call, 'POST', '/_control/envelope', {'text': 'Демо a/b', 'wait_ack': 0})
    env, raw = ws.recv_json()
    join()
    assert 'Демо a/b'.encode() in raw, raw
    f.behaviour(escape_slashes=True, ensure_ascii=True)
    ws.close()
    # response_url: 5 uses
    path = urllib.parse.urlsplit(env['payload']['response_url']).path
    got = [f.call('POST', path, {'text': str(i)}, raw=True)[0] for i in range(6)]
    assert got == [200] * 5 + [404], got


def t_bad_upgrades(f):
    url = f.open_url()
    ws = WSClient(url.replace('/link/', '/elsewhere/'))
    assert ws.status == 404
    ws = WSClient(url.replace('/link/', '/link'))    # /link?ticket= works too
    assert ws.status == 101
    ws.recv_json()
    ws.close()
    rej = f.state()['rejected_upgrades'][-1]
    assert rej['reason'] == 'bad_path' and rej['status'] == 404, rej
    s = socket.create_connection(('127.0.0.1', f.port), timeout=5)
    s.sendall(b'GET /link/?ticket=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
              b'Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n'
              b'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n')
    head = s.recv(4096)
    s.close()
    assert head.startswith(b'HTTP/1.1 426') and b'Sec-WebSocket-Version: 13' in head, head
    assert f.state()['rejected_upgrades'][-1]['reason'] == 'bad_handshake'


def t_ticket_reuse(f):
    url = f.open_url()
    ws = WSClient(url)
    assert ws.status == 101
    ws.recv_json()
    again = WSClient(url)
    assert again.status == 401, again.status
    bad = WSClient(url.split('?')[0] + '?ticket=999999')
    assert bad.status == 401
    rej = f.state()['rejected_upgrades']
    assert [r['reason'] for r in rej[-2:]] == ['reused_ticket', 'reused_ticket'], rej
    assert rej[-2]['ticket_known'] is True and rej[-1]['ticket_known'] is False
    ws.close()


def t_open_script_and_refusal(f):
    f.call('PUT', '/_control/open_script', {'answers': [
        {'status': 200, 'body': {'ok': False, 'error': 'fatal_error'}},
        {'status': 429, 'retry_after': 7},
        {'status': 500, 'body': '<html>oops</html>'}]})
    hdr = {'Authorization': 'Bearer ' + TOKEN}
    st, _, body = f.call('POST', '/api/apps.connections.open', headers=hdr, raw=True)
    assert st == 200 and json.loads(body) == {'ok': False, 'error': 'fatal_error'}
    st, hdrs, body = f.call('POST', '/api/apps.connections.open', headers=hdr, raw=True)
    assert st == 429 and hdrs['Retry-After'] == '7', (st, hdrs)
    assert json.loads(body) == {'ok': False, 'error': 'ratelimited'}
    st, _, body = f.call('POST', '/api/apps.connections.open', headers=hdr, raw=True)
    assert st == 500 and body == b'<html>oops</html>'
    assert json.loads(f.call('POST', '/api/apps.connections.open', headers=hdr,
                             raw=True)[2])['ok']
    calls = f.state()['open_calls'][-4:]
    assert [c['result'] for c in calls] == ['fatal_error', 'ratelimited', 'http_500', 'ok']
    assert [c['scripted'] for c in calls] == [True, True, True, False]
    # refused upgrade, then a fresh URL works
    f.call('PUT', '/_control/refuse_upgrade', {'count': 1, 'status': 409})
    ws = WSClient(f.open_url())
    assert ws.status == 409
    ws = WSClient(f.open_url())
    assert ws.status == 101
    ws.recv_json()
    assert f.state()['rejected_upgrades'][-1]['reason'] == 'refused'
    ws.close()


def t_disconnect(f):
    ws = f.connect()
    cid = f.newest_id()
    t0 = time.monotonic()
    f.call('POST', '/_control/disconnect', {'reason': 'warning', 'then_close_after': 0.3})
    msg, _ = ws.recv_json()
    assert msg == {'type': 'disconnect', 'reason': 'warning',
                   'debug_info': {'host': 'wss-111.slack.com'}}, msg
    try:
        ws.recv_frame(3)
        raise AssertionError('not closed')
    except (Closed, ConnectionResetError):
        pass
    assert time.monotonic() - t0 >= 0.3
    rec = wait_for(lambda: (lambda r: r if not r['open'] else None)(f.conn(cid)))
    assert rec['closed_by'] == 'server' and rec['disconnects_sent'][0]['reason'] == 'warning'
    ws.close()


def t_hello_modes_and_max(f):
    f.behaviour(hello={'delay': 0.3})
    t0 = time.monotonic()
    ws = f.connect()
    assert time.monotonic() - t0 >= 0.3
    ws.close()
    f.behaviour(hello='never')
    ws = f.connect(expect_hello=False)
    try:
        ws.recv_frame(0.5)
        raise AssertionError('hello despite "never"')
    except socket.timeout:
        pass
    ws.close()
    f.behaviour(hello='immediate', max_connections=2)
    wait_for(lambda: f.state()['open'] == [])
    f.call('DELETE', '/_control/state')
    a, b = f.connect(), f.connect()
    c = WSClient(f.open_url())
    hello, _ = c.recv_json()
    assert hello['type'] == 'hello' and hello['num_connections'] == 3
    msg, _ = c.recv_json()
    assert msg['type'] == 'disconnect' and msg['reason'] == 'too_many_websockets'
    st = f.call('GET', '/_control/wait_open?count=3&timeout=2')
    assert st['ok'] and len(st['open']) == 3 and st['max_open'] == 3
    assert [x['too_many'] for x in st['connections']] == [False, False, True]
    for ws in (a, b, c):
        ws.close()
    st = f.call('GET', '/_control/wait_open?count=0&timeout=3')
    assert st['ok'] and st['max_open'] == 3
    st = f.call('GET', '/_control/wait_open?count=1&timeout=0.2')
    assert st['ok'] is False
    f.behaviour(max_connections=10)


def t_many_reconnects(f):
    def fds():
        return len(os.listdir('/proc/%d/fd' % f.proc.pid))
    f.call('DELETE', '/_control/state')
    before = fds()
    for i in range(150):
        ws = f.connect()
        if i % 3 == 0:
            ws.send_frame(OP_CLOSE, struct.pack('!H', 1000))
            ws.recv_message()
        elif i % 3 == 1:
            f.call('POST', '/_control/kill', {})
        ws.close()
    st = f.call('GET', '/_control/wait_open?count=0&timeout=5')
    assert st['ok'], st['open']
    assert len(st['connections']) == 150 and st['max_open'] <= 2, st['max_open']
    assert all(c['closed_at'] for c in st['connections'])
    wait_for(lambda: fds() <= before, timeout=5)


def t_state_reset(f):
    ws = f.connect()
    cid = f.newest_id()
    f.call('DELETE', '/_control/state')
    st = f.state()
    assert st['open_calls'] == [] and st['acks'] == [] and st['rejected_upgrades'] == []
    assert [c['id'] for c in st['connections']] == [cid] and st['max_open'] == 1
    ws.close()


def t_control_errors(f):
    wait_for(lambda: f.state()['open'] == [])
    st, _, body = f.call('POST', '/_control/envelope', {}, raw=True)
    assert st == 409, (st, body)
    st, _, _ = f.call('PUT', '/_control/behaviour', {'hello': 'sometimes'}, raw=True)
    assert st == 400
    st, _, _ = f.call('GET', '/_control/nothing', raw=True)
    assert st == 404


BOT = 'xoxb-test-fake-bot-token'
BLOCKS = [{'type': 'rich_text', 'elements': [{'type': 'rich_text_section',
                                              'elements': [{'type': 'text', 'text': 'hi'}]}]}]


def api(f, method, data=None, token=BOT, form=None, query='', http='POST'):
    """(status, headers, parsed body) of a Web API call."""
    headers = {}
    if token is not None:
        headers['Authorization'] = 'Bearer ' + token
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers['Content-Type'] = 'application/x-www-form-urlencoded'
    elif data is not None:
        body = json.dumps(data).encode()
        headers['Content-Type'] = 'application/json; charset=utf-8'
    req = urllib.request.Request(f.url + '/api/' + method + query, data=body, method=http,
                                 headers=headers)
    try:
        with NO_PROXY.open(req, timeout=15) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def t_web_api_auth_and_info(f):
    f.call('DELETE', '/_control/state')
    st, _, got = api(f, 'auth.test')
    assert st == 200 and got == {'ok': True, 'url': 'https://fake.slack.com/',
                                 'team': 'Fake Team', 'user': 'ytbridge', 'team_id': 'T0FAKE',
                                 'user_id': 'U0BOT', 'bot_id': 'B0BOT'}, got
    assert api(f, 'auth.test', token=None)[2] == {'ok': False, 'error': 'not_authed'}
    assert api(f, 'auth.test', token='xoxb-wrong')[2] == {'ok': False, 'error': 'invalid_auth'}
    f.call('PUT', '/_control/channels', {'C0GONE': {'exists': False},
                                         'C0OLD': {'archived': True, 'name': 'old'},
                                         'C0OUT': {'member': False},
                                         'G0PRIV': {'private': True, 'member': False}})
    st, _, got = api(f, 'conversations.info', query='?channel=C0NEW', http='GET')
    assert got == {'ok': True, 'channel': {'id': 'C0NEW', 'name': 'chan-c0new', 'is_channel': True,
                                           'is_private': False, 'is_archived': False,
                                           'is_member': True}}, got
    got = api(f, 'conversations.info', form={'channel': 'C0OLD'})[2]
    assert got['channel']['is_archived'] is True and got['channel']['name'] == 'old', got
    assert api(f, 'conversations.info', form={'channel': 'C0OUT'})[2]['channel']['is_member'] is False
    for cid in ('C0GONE', 'G0PRIV'):
        assert api(f, 'conversations.info', form={'channel': cid})[2] == {
            'ok': False, 'error': 'channel_not_found'}, cid
    assert api(f, 'conversations.info', form={'channel': 'C0NEW'}, token='x')[2]['error'] == \
        'invalid_auth'
    f.call('PUT', '/_control/api_faults', [{'method': 'conversations.info', 'channel': 'C0NEW',
                                            'error': 'missing_scope', 'count': 1}])
    got = api(f, 'conversations.info', form={'channel': 'C0NEW'})[2]
    assert got['ok'] is False and got['error'] == 'missing_scope', got
    assert api(f, 'conversations.info', form={'channel': 'C0NEW'})[2]['ok'] is True
    f.call('PUT', '/_control/web_api', {'unknown_channel': {'member': False}})
    assert api(f, 'conversations.info', form={'channel': 'C0ELSE'})[2]['channel']['is_member'] \
        is False
    f.call('PUT', '/_control/web_api', {'unknown_channel': {'member': True}})
    calls = f.state()['api_calls']
    assert [c['method'] for c in calls[:4]] == ['auth.test'] * 3 + ['conversations.info'], calls
    assert [c['auth_ok'] for c in calls[:3]] == [True, False, False], calls
    assert calls[3]['channel'] == 'C0NEW' and calls[3]['result'] == 'ok', calls[3]


def t_web_api_post_message(f):
    f.call('DELETE', '/_control/state')
    f.call('PUT', '/_control/channels', {'C0GONE': {'exists': False}, 'C0OLD': {'archived': True},
                                         'C0OUT': {'member': False}})
    st, hdrs, got = api(f, 'chat.postMessage', {'channel': 'C0A', 'text': 'hi', 'blocks': BLOCKS})
    assert st == 200 and got['ok'] is True and got['channel'] == 'C0A', got
    assert isinstance(got['ts'], str) and got['message']['blocks'] == BLOCKS, got
    for channel, error in (('C0GONE', 'channel_not_found'), ('C0OLD', 'is_archived'),
                           ('C0OUT', 'not_in_channel')):
        st, _, got = api(f, 'chat.postMessage', {'channel': channel, 'text': 'x'})
        assert st == 200 and got == {'ok': False, 'error': error}, (channel, got)
    assert api(f, 'chat.postMessage', {'channel': 'C0B', 'text': 'x'}, token='xoxb-no')[2] == {
        'ok': False, 'error': 'invalid_auth'}
    assert api(f, 'chat.postMessage', {'channel': 'C0B', 'text': 'x'}, token=None)[2] == {
        'ok': False, 'error': 'not_authed'}
    assert api(f, 'chat.postMessage', {'channel': 'C0B'})[2]['error'] == 'no_text'
    bad = [{'type': 'section', 'text': {'type': 'mrkdwn', 'text': ''}}]
    assert api(f, 'chat.postMessage', {'channel': 'C0B', 'text': 'x', 'blocks': bad})[2][
        'error'] == 'invalid_blocks'
    # Pacing: the second post to C0A within a second is refused, another channel is not.
    st, hdrs, got = api(f, 'chat.postMessage', {'channel': 'C0A', 'text': 'again'})
    assert st == 429 and hdrs['Retry-After'] == '1' and got == {'ok': False,
                                                              'error': 'ratelimited'}, got
    assert api(f, 'chat.postMessage', {'channel': 'C0C', 'text': 'other'})[2]['ok'] is True
    state = f.state()
    assert [p['channel'] for p in state['posts']] == ['C0A', 'C0C'], state['posts']
    post = state['posts'][0]
    assert post['json']['text'] == 'hi' and post['peer'].startswith('127.0.0.1:'), post
    assert len(state['pacing_violations']) == 1 and \
        state['pacing_violations'][0]['channel'] == 'C0A', state['pacing_violations']
    time.sleep(1.05)
    assert api(f, 'chat.postMessage', {'channel': 'C0A', 'text': 'later'})[2]['ok'] is True
    # A form post (blocks as JSON text) works as well.
    got = api(f, 'chat.postMessage', form={'channel': 'C0D', 'text': 'f',
                                           'blocks': json.dumps(BLOCKS)})[2]
    assert got['ok'] is True, got
    # Scripted faults: per channel, counted, with Retry-After and a delay.
    f.call('PUT', '/_control/api_faults', [{'method': 'chat.postMessage', 'channel': 'C0E',
                                            'status': 429, 'retry_after': 7, 'count': 1,
                                            'delay': 0.2}])
    t0 = time.monotonic()
    st, hdrs, got = api(f, 'chat.postMessage', {'channel': 'C0E', 'text': 'x'})
    assert st == 429 and hdrs['Retry-After'] == '7' and got['error'] == 'ratelimited'
    assert time.monotonic() - t0 >= 0.2
    assert api(f, 'chat.postMessage', {'channel': 'C0E', 'text': 'x'})[2]['ok'] is True
    f.call('PUT', '/_control/api_faults', [{'method': 'chat.postMessage',
                                            'error': 'token_revoked'}])
    assert api(f, 'chat.postMessage', {'channel': 'C0F', 'text': 'x'})[2]['error'] == 'token_revoked'
    assert api(f, 'chat.postMessage', {'channel': 'C0G', 'text': 'x'})[2]['error'] == 'token_revoked'
    f.call('DELETE', '/_control/api_faults')
    # Another bot token; burst allowance.
    f.call('PUT', '/_control/bot_token', {'token': 'xoxb-rotated'})
    assert api(f, 'chat.postMessage', {'channel': 'C0H', 'text': 'x'})[2]['error'] == 'invalid_auth'
    assert api(f, 'chat.postMessage', {'channel': 'C0H', 'text': 'x'}, token='xoxb-rotated')[2][
        'ok'] is True
    f.call('PUT', '/_control/bot_token', {'token': BOT})
    f.call('PUT', '/_control/web_api', {'burst': 3})
    oks = [api(f, 'chat.postMessage', {'channel': 'C0I', 'text': 'b'})[0] for _ in range(4)]
    assert oks == [200, 200, 200, 429], oks
    f.call('PUT', '/_control/web_api', {'burst': 1})
    st, _, _ = f.call('PUT', '/_control/web_api', {'nonsense': 1}, raw=True)
    assert st == 400
    st, _, _ = f.call('PUT', '/_control/api_faults', [{'method': 'chat.delete'}], raw=True)
    assert st == 400
    f.call('DELETE', '/_control/state')
    st = f.state()
    assert st['posts'] == [] and st['api_calls'] == [] and st['pacing_violations'] == []


def t_redelivery(f):
    f.behaviour(redeliver=True)
    try:
        f.call('DELETE', '/_control/state')
        ws = f.connect()
        r = f.call('POST', '/_control/envelope', {'text': 'subscribe', 'user_id': 'U0X',
                                                  'channel_id': 'C0X', 'wait_ack': 0,
                                                  'envelope_id': 'env-redeliver'})
        first = ws.recv_json()[0]
        assert first['envelope_id'] == 'env-redeliver' and 'retry_attempt' not in first, first
        assert first['payload']['user_id'] == 'U0X' and first['payload']['channel_id'] == 'C0X'
        ws.close()                       # never acked
        wait_for(lambda: f.state()['open'] == [])
        ws2 = f.connect()                # hello, then the same envelope again
        again = ws2.recv_json()[0]
        assert again['envelope_id'] == 'env-redeliver' and again['retry_attempt'] == 1, again
        assert again['retry_reason'] == 'timeout' and again['payload'] == first['payload']
        ws2.send_text(json.dumps({'envelope_id': 'env-redeliver'}))
        wait_for(lambda: f.call('GET', '/_control/acks?envelope_id=env-redeliver'))
        ws2.close()
        wait_for(lambda: f.state()['open'] == [])
        ws3 = f.connect()                # acked: nothing more
        try:
            extra = ws3.recv_message(timeout=0.3)
            raise AssertionError('redelivered after the ack: %r' % (extra,))
        except (socket.timeout, TimeoutError):
            pass
        ws3.close()
        log = f.state()['envelopes']
        assert [e.get('redelivered', False) for e in log] == [False, True], log
        assert r['envelope_id'] == 'env-redeliver'
    finally:
        f.behaviour(redeliver=False)
        wait_for(lambda: f.state()['open'] == [])


CHECKS = [t_connections_open, t_keepalive, t_hello, t_envelope_ack,
          t_client_fragments_and_ping, t_server_fragments_binary_oversize,
          t_ping_pong, t_close_unanswered, t_server_close_and_kill,
          t_unmasked_is_protocol_error, t_more_protocol_errors, t_json_style,
          t_bad_upgrades, t_ticket_reuse, t_open_script_and_refusal,
          t_disconnect, t_hello_modes_and_max, t_many_reconnects, t_state_reset,
          t_control_errors, t_web_api_auth_and_info, t_web_api_post_message,
          t_redelivery]


def main():
    fake = Fake()
    # The hand-written client acks nothing: no redelivery but in t_redelivery.
    fake.behaviour(redeliver=False)
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
        t0 = time.monotonic()
        rc = fake.stop()
        if rc != 0 or time.monotonic() - t0 > 5:
            failed += 1
            print('FAIL sigterm: rc %s' % rc)
        else:
            print('PASS sigterm')
        if failed or VERBOSE:
            time.sleep(0.1)
            sys.stdout.write(''.join(fake.stderr))
    print('%s: %d failed' % ('FAIL' if failed else 'PASS', failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
