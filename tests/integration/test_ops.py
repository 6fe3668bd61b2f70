#!/usr/bin/env python3
"""Operating the daemon: /healthz, /readyz and /metrics over real HTTP (each
endpoint, each readiness state, the metrics exposition parsed strictly line by
line), misbehaving HTTP clients, secrets kept out of every body and log,
SIGHUP with a good and a bad file, and SIGTERM in the middle of a burst.

Polls are at least 10 s apart (the minimum poll_interval), so every wait for
"the next poll" is bounded at about 25 s."""

import http.client
import json
import math
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (SCALE, SECRETS, SLACK_HOOK, BridgeTest,  # noqa: E402
                     DeliveryTest, deadline_wait, main, message_text, project,
                     redact)

BASE = [project('0-1', 'DEV', 'Development'), project('0-2', 'OPS', 'Ops')]
# Everything that must never show up in an endpoint body or in a log.
ALL_SECRETS = tuple(SECRETS) + (SLACK_HOOK, 'services/T000')
LISTEN_RE = re.compile(r'httpd: listening on 127\.0\.0\.1:(\d+) '
                       r'\(/healthz, /readyz, /metrics\)')
NEXT_POLL = 25      # s: one poll interval (10 s) plus a generous margin


def new_projects(*nums):
    return [project('0-%d' % n, 'N%d' % n, 'Nw%d' % n) for n in nums]


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- a strict reader for the Prometheus text format (version 0.0.4) ----------

METRIC_NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*\Z')
LABEL_AT = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
NAME_AT = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
TYPES = ('counter', 'gauge', 'histogram', 'summary', 'untyped')


class FormatError(AssertionError):
    pass


def _parse_float(text, where):
    if text in ('+Inf', 'Inf'):
        return math.inf
    if text == '-Inf':
        return -math.inf
    if text == 'NaN':
        return math.nan
    if not re.fullmatch(r'[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?', text):
        raise FormatError('%s: %r is not a float' % (where, text))
    return float(text)


def _parse_labels(text, pos, where):
    """text[pos] == '{'; returns (labels dict, position after '}')."""
    labels = {}
    pos += 1
    while True:
        if pos < len(text) and text[pos] == '}':
            return labels, pos + 1
        m = LABEL_AT.match(text, pos)
        if not m:
            raise FormatError('%s: bad label name at %r' % (where, text[pos:]))
        name = m.group(0)
        if name.startswith('__'):
            raise FormatError('%s: reserved label name %r' % (where, name))
        pos = m.end()
        if text[pos:pos + 2] != '="':
            raise FormatError('%s: expected =" after label %s' % (where, name))
        pos += 2
        value = []
        while True:
            if pos >= len(text):
                raise FormatError('%s: unterminated label value' % where)
            c = text[pos]
            if c == '\\':
                nxt = text[pos + 1:pos + 2]
                if nxt not in ('\\', '"', 'n'):
                    raise FormatError('%s: bad escape \\%s in a label value'
                                      % (where, nxt))
                value.append('\n' if nxt == 'n' else nxt)
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == '\n':
                raise FormatError('%s: raw newline in a label value' % where)
            else:
                value.append(c)
                pos += 1
        if name in labels:
            raise FormatError('%s: label %s given twice' % (where, name))
        labels[name] = ''.join(value)
        if text[pos:pos + 1] == ',':
            pos += 1
        elif text[pos:pos + 1] != '}':
            raise FormatError('%s: expected , or } after label %s'
                              % (where, name))


def parse_exposition(text):
    """Parse the whole body; raise FormatError at the first violation.

    Returns {family: {'type', 'help', 'samples': [(name, labels, value)]}}."""
    if not text.endswith('\n'):
        raise FormatError('the exposition does not end with a newline')
    families = {}
    order = []          # families in order of their first line
    current = None      # the family whose lines we are in
    series = set()

    def family_of(sample_name):
        for suffix in ('_bucket', '_sum', '_count'):
            base = sample_name[:-len(suffix)]
            if (sample_name.endswith(suffix) and base in families
                    and families[base]['type'] in ('histogram', 'summary')):
                return base
        return sample_name

    def enter(name, where):
        nonlocal current
        if name != current:
            if name in families and families[name]['closed']:
                raise FormatError('%s: lines of family %s are not grouped '
                                  'together' % (where, name))
            if current is not None:
                families[current]['closed'] = True
            current = name
        if name not in families:
            families[name] = {'type': None, 'help': None, 'samples': [],
                              'closed': False}
            order.append(name)
        return families[name]

    for n, line in enumerate(text.split('\n')[:-1], 1):
        where = 'line %d (%r)' % (n, line[:120])
        if line == '':
            raise FormatError('%s: empty line' % where)
        if line != line.strip(' \t') and not line.startswith('#'):
            raise FormatError('%s: leading or trailing blanks' % where)
        if line.startswith('#'):
            parts = line.split(' ', 3)
            if len(parts) >= 3 and parts[1] in ('HELP', 'TYPE'):
                kind, name = parts[1], parts[2]
                rest = parts[3] if len(parts) > 3 else ''
                if not METRIC_NAME.match(name):
                    raise FormatError('%s: bad metric name' % where)
                fam = enter(name, where)
                if fam['samples']:
                    raise FormatError('%s: %s after samples of %s'
                                      % (where, kind, name))
                if kind == 'TYPE':
                    if fam['type'] is not None:
                        raise FormatError('%s: second TYPE' % where)
                    if rest not in TYPES:
                        raise FormatError('%s: unknown type' % where)
                    fam['type'] = rest
                else:
                    if fam['help'] is not None:
                        raise FormatError('%s: second HELP' % where)
                    if re.search(r'\\[^\\n]|\\$', rest):
                        raise FormatError('%s: bad escape in HELP' % where)
                    if not rest.strip():
                        raise FormatError('%s: empty HELP' % where)
                    fam['help'] = rest
            continue    # other comments are allowed
        m = NAME_AT.match(line)
        if not m:
            raise FormatError('%s: no metric name' % where)
        name = m.group(0)
        pos = m.end()
        labels = {}
        if line[pos:pos + 1] == '{':
            labels, pos = _parse_labels(line, pos, where)
        if line[pos:pos + 1] != ' ':
            raise FormatError('%s: expected one space before the value'
                              % where)
        fields = line[pos + 1:].split(' ')
        if len(fields) not in (1, 2) or '' in fields:
            raise FormatError('%s: expected "value [timestamp]"' % where)
        value = _parse_float(fields[0], where)
        if len(fields) == 2 and not re.fullmatch(r'-?\d+', fields[1]):
            raise FormatError('%s: bad timestamp' % where)
        fam_name = family_of(name)
        fam = enter(fam_name, where)
        if fam['type'] is None or fam['help'] is None:
            raise FormatError('%s: sample before its # HELP and # TYPE lines'
                              % where)
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            raise FormatError('%s: duplicate series' % where)
        series.add(key)
        fam['samples'].append((name, labels, value))

    for name in order:
        fam = families[name]
        where = 'family %s' % name
        if fam['type'] is None:
            raise FormatError('%s: no TYPE line' % where)
        if fam['type'] == 'counter':
            if not name.endswith('_total'):
                raise FormatError('%s: a counter whose name does not end in '
                                  '_total' % where)
            for s in fam['samples']:
                if not (s[2] >= 0 and s[2] == int(s[2])):
                    raise FormatError('%s: counter value %r' % (where, s[2]))
        elif name.endswith('_total'):
            raise FormatError('%s: _total on a %s' % (where, fam['type']))
        if fam['type'] == 'histogram':
            _check_histogram(name, fam['samples'])
        else:
            for s in fam['samples']:
                if s[0] != name:
                    raise FormatError('%s: sample %s' % (where, s[0]))
    return families


def _check_histogram(name, samples):
    groups = {}
    for sname, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != 'le'))
        g = groups.setdefault(rest, {'buckets': [], 'sum': None,
                                     'count': None})
        if sname == name + '_bucket':
            if 'le' not in labels:
                raise FormatError('%s_bucket without le' % name)
            g['buckets'].append((_parse_float(labels['le'], 'le'), value))
        elif sname == name + '_sum':
            g['sum'] = value
        elif sname == name + '_count':
            g['count'] = value
        else:
            raise FormatError('histogram %s: stray sample %s' % (name, sname))
    if not groups:
        raise FormatError('histogram %s: no samples' % name)
    for g in groups.values():
        les = [b[0] for b in g['buckets']]
        if les != sorted(les) or len(set(les)) != len(les):
            raise FormatError('histogram %s: buckets not in increasing le '
                              'order: %r' % (name, les))
        if not les or les[-1] != math.inf:
            raise FormatError('histogram %s: no le="+Inf" bucket' % name)
        counts = [b[1] for b in g['buckets']]
        if any(b < a for a, b in zip(counts, counts[1:])):
            raise FormatError('histogram %s: buckets not cumulative: %r'
                              % (name, counts))
        if g['count'] is None or g['sum'] is None:
            raise FormatError('histogram %s: _sum or _count missing' % name)
        if counts[-1] != g['count']:
            raise FormatError('histogram %s: +Inf bucket %r != _count %r'
                              % (name, counts[-1], g['count']))
        if g['sum'] < 0:
            raise FormatError('histogram %s: negative _sum' % name)


def value_of(families, name, **labels):
    """The value of one series (None when absent)."""
    fam = families.get(name)
    for suffix in ('_bucket', '_sum', '_count'):
        if fam is None and name.endswith(suffix):
            fam = families.get(name[:-len(suffix)])
    for sname, slabels, value in (fam or {}).get('samples', []):
        if sname == name and slabels == labels:
            return value
    return None


def accepted_by(pid, clients):
    """True when process pid holds the server end of every client socket (it
    accepted them; a connection still in the listen queue has no inode yet)."""
    def hexaddr(addr):
        return '%08X:%04X' % (int.from_bytes(socket.inet_aton(addr[0]), 'little'), addr[1])
    want = {(hexaddr(c.getpeername()), hexaddr(c.getsockname())) for c in clients}
    inodes = {}
    with open('/proc/net/tcp') as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) in want and fields[9] != '0':
                inodes[(fields[1], fields[2])] = fields[9]
    if len(inodes) != len(want):
        return False
    held = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            held.add(os.readlink('/proc/%d/fd/%s' % (pid, fd)))
        except OSError:
            pass
    return all('socket:[%s]' % i in held for i in inodes.values())


class ParserSelfTest(BridgeTest):
    """The parser above rejects what it must (no daemon needed)."""

    @classmethod
    def setUpClass(cls):
        pass

    def setUp(self):
        pass

    GOOD = ('# HELP a_total A.\n# TYPE a_total counter\n'
            'a_total{x="q\\"\\\\\\n"} 1\n'
            '# HELP h H.\n# TYPE h histogram\n'
            'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n')

    def test_parser_accepts_good_and_rejects_bad(self):
        fams = parse_exposition(self.GOOD)
        self.assertEqual(value_of(fams, 'a_total', x='q"\\\n'), 1)
        bad = [
            self.GOOD.replace('h_count 2', 'h_count 3'),       # +Inf != count
            self.GOOD.replace('h_bucket{le="1"} 1', 'h_bucket{le="1"} 3'),
            self.GOOD.replace('a_total{', 'a{').replace('a_total A', 'a A')
            .replace('a_total counter', 'a counter'),          # no _total
            self.GOOD.replace('\\"', '\\t'),                  # bad escape
            self.GOOD.replace(' 1\n#', ' one\n#', 1),          # not a float
            self.GOOD + 'a_total{x="q\\"\\\\\\n"} 2\n',        # duplicate
            self.GOOD.replace('# TYPE a_total counter\n', ''),  # no TYPE
            self.GOOD[:-1],                                     # no final \n
            self.GOOD.replace('a_total{x', '1a{x'),            # bad name
        ]
        for text in bad:
            with self.assertRaises(FormatError, msg=text):
                parse_exposition(text)


# -- the daemon's HTTP side -------------------------------------------------

class OpsMixin:
    """HTTP helpers; every body fetched is checked for secrets."""

    def port_of(self, daemon, timeout=15):
        found = []

        def listening():
            if daemon.proc.poll() is not None:
                self.fail_with('the daemon exited', daemon.result())
            m = LISTEN_RE.search(daemon.result().stderr)
            if m:
                found.append(int(m.group(1)))
            return m
        try:
            deadline_wait(listening, timeout, what='the httpd listening line')
        except AssertionError as e:
            self.fail_with(str(e), daemon.result())
        return found[0]

    def start_ops(self, **kw):
        daemon = self.start_daemon(**kw)
        self.port = self.port_of(daemon)
        self.daemon = daemon
        return daemon

    def request(self, method, path, port=None, headers=None, body=None,
                timeout=5):
        """(status, {lower-case header: value}, body text)."""
        conn = http.client.HTTPConnection('127.0.0.1', port or self.port,
                                          timeout=timeout * SCALE)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            status = resp.status
        finally:
            conn.close()
        text = data.decode('utf-8')
        self.assert_clean(text, '%s %s' % (method, path))
        return status, hdrs, text

    def assert_clean(self, text, what):
        for secret in ALL_SECRETS:
            if secret in text:
                self.fail_with('a secret appears in the body of %s '
                               '(redacted): %s' % (what, redact(text)[:2000]))

    def ready(self):
        """(status, parsed JSON body) of GET /readyz."""
        status, hdrs, text = self.request('GET', '/readyz')
        self.assertIn(status, (200, 503), text)
        self.assertTrue(hdrs.get('content-type', '').startswith(
            'application/json'), hdrs)
        doc = json.loads(text)
        self.assertEqual(set(doc), {'ready', 'checks'}, text)
        self.assertIs(doc['ready'], status == 200, text)
        self.assertIsInstance(doc['checks'], dict)
        for k, v in doc['checks'].items():
            self.assertIsInstance(v, str, text)
            if v == 'ok':
                continue
            if k == 'youtrack' or k.startswith('sink:'):
                self.assertTrue(status == 503, 'a failed check with 200: '
                                + text)
        return status, doc

    def wait_ready(self, want_status, check=None, timeout=NEXT_POLL,
                   what='readiness'):
        """Wait for /readyz == want_status and check(doc) (if given)."""
        last = []

        def good():
            status, doc = self.ready()
            last[:] = [status, doc]
            return status == want_status and (check is None or check(doc))
        try:
            deadline_wait(good, timeout, step=0.2, what=what)
        except AssertionError as e:
            self.fail_with('%s; last /readyz: %r' % (e, last),
                           self.daemon.result())
        return last[1]

    def metrics(self):
        status, hdrs, text = self.request('GET', '/metrics')
        self.assertEqual(status, 200, text)
        self.assertEqual(
            hdrs.get('content-type', '').replace(' ', ''),
            'text/plain;version=0.0.4;charset=utf-8', hdrs)
        try:
            return parse_exposition(text)
        except FormatError as e:
            self.fail_with('/metrics breaks the text format: %s\n%s'
                           % (e, text[:4000]))

    def wait_metric(self, pred, timeout=NEXT_POLL, what='a metric'):
        got = []

        def ok():
            fams = self.metrics()
            got[:] = [fams]
            return pred(fams)
        try:
            deadline_wait(ok, timeout, step=0.2, what=what)
        except AssertionError as e:
            self.fail_with(str(e), self.daemon.result())
        return got[0]

    def raw_exchange(self, data, read_for=2.0):
        """Send bytes on a fresh connection; return what comes back until
        the peer closes or read_for seconds pass."""
        s = socket.create_connection(('127.0.0.1', self.port), timeout=5)
        out = b''
        try:
            s.sendall(data)
            end = time.monotonic() + read_for * SCALE
            s.settimeout(0.2)
            while time.monotonic() < end:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            s.close()
        return out

    def stop_clean(self, daemon=None):
        result = (daemon or self.daemon).stop(timeout=20)
        self.assert_ok(result)
        for secret in ALL_SECRETS:
            self.check(secret not in result.stderr
                       and secret not in result.stdout,
                       'a secret appears in the daemon output', result)
        return result


class Endpoints(OpsMixin, BridgeTest):

    def setUp(self):
        super().setUp()
        self.start_ops()
        self.wait_ready(200, what='the first poll')

    def test_each_endpoint(self):
        status, hdrs, body = self.request('GET', '/healthz')
        self.assertEqual((status, body), (200, 'ok\n'))
        self.assertTrue(hdrs['content-type'].startswith('text/plain'), hdrs)
        self.assertEqual(hdrs.get('content-length'), '3', hdrs)

        status, doc = self.ready()
        self.assertEqual(status, 200)
        self.assertEqual(doc, {'ready': True,
                               'checks': {'youtrack': 'ok', 'sink:out': 'ok'}})

        fams = self.metrics()
        for name, typ in [
                ('ytbridge_build_info', 'gauge'),
                ('ytbridge_start_time_seconds', 'gauge'),
                ('ytbridge_polls_total', 'counter'),
                ('ytbridge_poll_duration_seconds', 'histogram'),
                ('ytbridge_last_successful_poll_timestamp_seconds', 'gauge'),
                ('ytbridge_projects', 'gauge'),
                ('ytbridge_changes_total', 'counter'),
                ('ytbridge_deliveries_total', 'counter'),
                ('ytbridge_dead_letters_total', 'counter'),
                ('ytbridge_outbox_depth', 'gauge'),
                ('ytbridge_sink_broken', 'gauge')]:
            self.assertIn(name, fams)
            self.assertEqual(fams[name]['type'], typ, name)
        self.assertEqual(len(fams['ytbridge_build_info']['samples']), 1)
        self.assertEqual(fams['ytbridge_build_info']['samples'][0][2], 1)
        self.assertIn('version', fams['ytbridge_build_info']['samples'][0][1])
        now = time.time()
        start = value_of(fams, 'ytbridge_start_time_seconds')
        self.assertTrue(now - 60 < start <= now + 1, start)
        last = value_of(fams, 'ytbridge_last_successful_poll_timestamp_seconds')
        self.assertTrue(start - 1 <= last <= now + 1, (start, last))
        self.assertEqual(value_of(fams, 'ytbridge_projects'), 3)
        self.assertGreaterEqual(
            value_of(fams, 'ytbridge_polls_total', result='ok'), 1)
        for result in ('auth', 'network'):
            self.assertEqual(
                value_of(fams, 'ytbridge_polls_total', result=result), 0)
        self.assertEqual(value_of(fams, 'ytbridge_outbox_depth', sink='out',
                                  type='stdout'), 0)
        self.assertEqual(value_of(fams, 'ytbridge_sink_broken', sink='out'), 0)

        # HEAD: the GET's status and headers, no body.
        raw = self.raw_exchange(b'HEAD /healthz HTTP/1.1\r\nHost: x\r\n'
                                b'Connection: close\r\n\r\n', read_for=1.5)
        head, sep, rest = raw.partition(b'\r\n\r\n')
        self.assertTrue(sep and head.startswith(b'HTTP/1.1 200'), raw)
        self.assertEqual(rest, b'', 'HEAD /healthz sent a body')
        for path in ('/readyz', '/metrics'):
            status, _, body = self.request('HEAD', path)
            self.assertEqual((status, body), (200, ''), path)

        for path in ('/', '/nope', '/healthz/x', '/metricsx', '/readyz?x',
                     '/HEALTHZ', '/%2e%2e/etc/passwd'):
            status, _, _ = self.request('GET', path)
            if path == '/readyz?x':     # a query string names the same path
                self.assertIn(status, (200, 404), path)
                continue
            self.assertEqual(status, 404, path)

        for method, path, body in [
                ('POST', '/healthz', b''), ('POST', '/healthz', b'x=1'),
                ('PUT', '/readyz', b'{}'), ('DELETE', '/metrics', b''),
                ('PATCH', '/healthz', b'x'), ('OPTIONS', '/healthz', b''),
                ('POST', '/metrics', b'a' * 5000), ('POST', '/nope', b'')]:
            self.expect_405(method, path, body)
        status, _, body = self.request('GET', '/healthz')
        self.assertEqual((status, body), (200, 'ok\n'))
        self.stop_clean()

    def expect_405(self, method, path, body):
        """A complete 405 answer (status, headers, the whole body) within
        3 s, for a request that has a Content-Length."""
        raw = self.raw_exchange(
            b'%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n'
            b'Connection: close\r\n\r\n%s'
            % (method.encode(), path.encode(), len(body), body), read_for=3)
        head, _, rest = raw.partition(b'\r\n\r\n')
        what = '%s %s with a %d-byte body' % (method, path, len(body))
        self.assertRegex(head, rb'^HTTP/1\.1 405 ', what)
        m = re.search(rb'(?im)^content-length: *(\d+)', head)
        self.assertTrue(m, what + ': no Content-Length')
        self.assertEqual(len(rest), int(m.group(1)),
                         '%s: the answer announces %s body bytes and sends '
                         '%d (%r) in 3 s' % (what, m.group(1).decode(),
                                             len(rest), rest[:80]))

    def test_huge_headers_are_refused_without_harm(self):
        for big in (b'X-Big: ' + b'a' * 3000 + b'\r\n',
                    b''.join(b'X-H%d: %s\r\n' % (i, b'b' * 100)
                             for i in range(40)),
                    b'Cookie: ' + b'c' * 20000 + b'\r\n'):
            raw = self.raw_exchange(b'GET /healthz HTTP/1.1\r\nHost: x\r\n'
                                    + big + b'\r\n', read_for=2)
            self.assertFalse(raw.startswith(b'HTTP/1.1 200'),
                             'a request with %d bytes of headers was served'
                             % len(big))
            if raw:
                self.assertRegex(raw[:12], rb'^HTTP/1\.[01] [45]\d\d')
        # A URL over 2 KB as well.
        raw = self.raw_exchange(b'GET /healthz?' + b'q' * 4000
                                + b' HTTP/1.1\r\nHost: x\r\n\r\n', read_for=2)
        self.assertFalse(raw.startswith(b'HTTP/1.1 200'), raw[:200])
        self.assertIsNone(self.daemon.proc.poll(), 'the daemon died')
        status, _, body = self.request('GET', '/healthz')
        self.assertEqual((status, body), (200, 'ok\n'))
        self.assertEqual(self.ready()[0], 200)
        self.stop_clean()

    def test_silent_and_partial_clients_do_not_block_others(self):
        idle = [socket.create_connection(('127.0.0.1', self.port), timeout=5)
                for _ in range(3)]
        partial = socket.create_connection(('127.0.0.1', self.port),
                                           timeout=5)
        partial.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\n')   # unfinished
        try:
            # The daemon holds all four (accepted), so they could block the others.
            deadline_wait(lambda: accepted_by(self.daemon.proc.pid, idle + [partial]), 5,
                          what='the daemon to accept the idle and partial clients')
            for _ in range(3):
                t0 = time.monotonic()
                status, _, body = self.request('GET', '/healthz', timeout=1)
                took = time.monotonic() - t0
                self.assertEqual((status, body), (200, 'ok\n'))
                self.assertLess(took, 1.0 * SCALE)
            t0 = time.monotonic()
            self.assertEqual(self.metrics()['ytbridge_projects']['samples'][0][2],
                             3)
            self.assertLess(time.monotonic() - t0, 1.0 * SCALE)
            # Keep-alive: two requests on one connection.
            conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                              timeout=2 * SCALE)
            for _ in range(2):
                conn.request('GET', '/healthz')
                resp = conn.getresponse()
                self.assertEqual((resp.status, resp.read()), (200, b'ok\n'))
            conn.close()
        finally:
            for s in idle + [partial]:
                s.close()
        self.assertIsNone(self.daemon.proc.poll())
        self.stop_clean()


class Readiness(OpsMixin, BridgeTest):

    def test_not_ready_before_the_first_poll(self):
        self.fake.fault('slow', delay=3)
        self.start_ops()
        status, doc = self.ready()
        self.assertEqual(status, 503, doc)
        self.assertEqual(doc['checks']['youtrack'], 'no complete poll yet')
        self.assertEqual(doc['checks']['sink:out'], 'ok')
        status, _, body = self.request('GET', '/healthz')
        self.assertEqual((status, body), (200, 'ok\n'))
        fams = self.metrics()
        self.assertEqual(
            value_of(fams, 'ytbridge_last_successful_poll_timestamp_seconds'),
            0)
        self.fake.clear_fault()
        self.wait_ready(200, what='ready after the slow first poll')
        self.stop_clean()

    def test_youtrack_unreachable_is_a_network_failure(self):
        self.bridge.configure(url='http://127.0.0.1:%d' % closed_port())
        self.start_ops()
        doc = self.wait_ready(
            503, lambda d: d['checks']['youtrack'] != 'no complete poll yet',
            timeout=15, what='the first poll to fail')
        self.assertRegex(doc['checks']['youtrack'], r'^network\b', doc)
        self.assertEqual(doc['checks']['sink:out'], 'ok')
        fams = self.metrics()
        self.assertGreaterEqual(
            value_of(fams, 'ytbridge_polls_total', result='network'), 1)
        self.assertEqual(value_of(fams, 'ytbridge_polls_total', result='ok'), 0)
        self.assertEqual(self.request('GET', '/healthz')[0], 200)
        self.stop_clean()

    def test_auth_failure_then_recovery_after_the_next_poll(self):
        self.fake.fault('401')
        self.start_ops()
        doc = self.wait_ready(
            503, lambda d: d['checks']['youtrack'] != 'no complete poll yet',
            timeout=15, what='the first poll to fail')
        self.assertRegex(doc['checks']['youtrack'], r'^auth\b', doc)
        self.assertIn('401', doc['checks']['youtrack'])
        self.assertGreaterEqual(value_of(self.metrics(), 'ytbridge_polls_total',
                                         result='auth'), 1)
        self.fake.clear_fault()
        t0 = time.monotonic()
        doc = self.wait_ready(200, what='recovery after the fault cleared')
        self.assertEqual(doc['checks']['youtrack'], 'ok')
        self.assertLess(time.monotonic() - t0, NEXT_POLL * SCALE)
        fams = self.metrics()
        self.assertGreaterEqual(
            value_of(fams, 'ytbridge_polls_total', result='ok'), 1)
        self.assertGreater(
            value_of(fams, 'ytbridge_last_successful_poll_timestamp_seconds'),
            0)
        self.stop_clean()


class SinkReadiness(OpsMixin, DeliveryTest):

    def test_broken_sink_not_ready_then_fixed_by_a_reload(self):
        rx = self.rx
        self.use_sinks(rx.slack_sink(name='team-1.slack'),
                       dict(name='out', type='stdout', format='json'))
        self.quiet_baseline(BASE)
        self.fake.set_projects(BASE + new_projects(10, 11))
        rx.fault('slack', 'no_service')
        self.start_ops()
        doc = self.wait_ready(
            503, lambda d: d['checks'].get('sink:team-1.slack', 'ok') != 'ok',
            what='the sink to be marked broken')
        self.assertEqual(doc['checks']['youtrack'], 'ok', doc)
        self.assertEqual(doc['checks']['sink:out'], 'ok', doc)
        self.assertRegex(doc['checks']['sink:team-1.slack'], r'^broken: ', doc)
        self.assertIn('no_service', doc['checks']['sink:team-1.slack'])
        fams = self.metrics()
        self.assertEqual(value_of(fams, 'ytbridge_sink_broken',
                                  sink='team-1.slack'), 1)
        self.assertEqual(value_of(fams, 'ytbridge_sink_broken', sink='out'), 0)
        self.assertEqual(value_of(fams, 'ytbridge_outbox_depth',
                                  sink='team-1.slack', type='slack'), 2)
        self.assertEqual(value_of(fams, 'ytbridge_changes_total',
                                  kind='created'), 2)
        self.assertEqual(self.request('GET', '/healthz')[0], 200)
        # Fixed webhook + SIGHUP (same file): the restart retries the queue.
        rx.clear_faults()
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_ready(200, lambda d: d['checks'].get('sink:team-1.slack')
                        == 'ok', timeout=15, what='the sink to recover')
        rx.wait_accepted('slack', 2, timeout=15)
        self.wait_metric(
            lambda f: value_of(f, 'ytbridge_outbox_depth', sink='team-1.slack',
                               type='slack') == 0
            and value_of(f, 'ytbridge_deliveries_total', sink='team-1.slack',
                         result='delivered') == 2,
            timeout=10, what='the queue to drain')
        self.stop_clean()


class Metrics(OpsMixin, DeliveryTest):

    def test_values_move_with_polls_changes_and_deliveries(self):
        rx = self.rx
        self.use_sinks(rx.matrix_sink(), rx.webhook_sink(name='ci-hook'))
        self.quiet_baseline(BASE)
        self.start_ops()
        self.wait_ready(200, what='the first poll')
        f0 = self.metrics()
        polls0 = value_of(f0, 'ytbridge_polls_total', result='ok')
        self.assertGreaterEqual(polls0, 1)
        self.assertEqual(value_of(f0, 'ytbridge_projects'), 2)
        self.assertEqual(value_of(f0, 'ytbridge_changes_total',
                                  kind='created'), 0)
        for sink, typ in (('room', 'matrix'), ('ci-hook', 'webhook')):
            self.assertEqual(value_of(f0, 'ytbridge_outbox_depth', sink=sink,
                                      type=typ), 0)
        hist = f0['ytbridge_poll_duration_seconds']['samples']
        self.assertEqual(value_of(f0, 'ytbridge_poll_duration_seconds_count'),
                         sum(value_of(f0, 'ytbridge_polls_total', result=r)
                             for r in ('ok', 'auth', 'network', 'server',
                                       'protocol')), hist)

        # A change, with the webhook slow: it sits in the outbox meanwhile.
        rx.fault('hook', 'slow', delay=4)
        self.fake.set_projects(BASE + new_projects(10))
        f1 = self.wait_metric(
            lambda f: value_of(f, 'ytbridge_changes_total', kind='created')
            == 1, what='the change to be counted')
        self.assertGreater(value_of(f1, 'ytbridge_polls_total', result='ok'),
                           polls0)
        self.assertEqual(value_of(f1, 'ytbridge_projects'), 3)
        self.wait_metric(
            lambda f: value_of(f, 'ytbridge_outbox_depth', sink='ci-hook',
                               type='webhook') == 1
            and value_of(f, 'ytbridge_deliveries_total', sink='room',
                         result='delivered') == 1,
            timeout=10, what='matrix delivered while the webhook is slow')
        rx.wait_accepted('hook', 1, timeout=15)
        f2 = self.wait_metric(
            lambda f: value_of(f, 'ytbridge_outbox_depth', sink='ci-hook',
                               type='webhook') == 0
            and value_of(f, 'ytbridge_deliveries_total', sink='ci-hook',
                         result='delivered') == 1,
            timeout=10, what='the webhook delivery to be counted')
        self.assertEqual(value_of(f2, 'ytbridge_dead_letters_total',
                                  sink='ci-hook'), 0)
        # Counters never go backwards between scrapes.
        for fam in ('ytbridge_polls_total', 'ytbridge_changes_total',
                    'ytbridge_deliveries_total'):
            for name, labels, v in f0[fam]['samples']:
                self.assertGreaterEqual(value_of(f2, name, **labels), v)
        self.stop_clean()


class Secrets(OpsMixin, DeliveryTest):

    def test_no_secret_in_any_body_or_log_while_everything_fails(self):
        rx = self.rx
        self.use_sinks(rx.slack_sink(), rx.matrix_sink(), rx.webhook_sink(),
                       rx.hookshot_sink())
        self.quiet_baseline(BASE)
        self.fake.set_projects(BASE + new_projects(10))
        rx.fault('slack', 'no_service')
        rx.fault('matrix', 'unknown_token')
        rx.fault('hook', '500')
        rx.fault('hookshot', '404')
        self.start_ops()
        self.wait_ready(
            503, lambda d: d['checks'].get('sink:team', 'ok') != 'ok'
            and d['checks'].get('sink:room', 'ok') != 'ok',
            what='the slack and matrix sinks to be broken')
        self.fake.fault('401')
        self.wait_ready(503, lambda d: d['checks']['youtrack'].startswith(
            'auth'), what='the next poll to fail with 401')
        # request() checks every body; stop_clean() checks stderr/stdout.
        for path in ('/healthz', '/readyz', '/metrics', '/nope'):
            self.request('GET', path)
        self.stop_clean()


class Reload(OpsMixin, BridgeTest):

    def stderr(self):
        return self.daemon.result().stderr

    def wait_log(self, pattern, what, timeout=15):
        try:
            return deadline_wait(lambda: re.search(pattern, self.stderr()),
                                 timeout, what=what)
        except AssertionError as e:
            self.fail_with(str(e), self.daemon.result())

    def test_sighup_with_a_good_file_applies_it(self):
        self.baseline(BASE)
        self.start_ops()
        self.wait_ready(200, what='the first poll')
        f0 = self.metrics()
        start0 = value_of(f0, 'ytbridge_start_time_seconds')
        polls0 = value_of(f0, 'ytbridge_polls_total', result='ok')
        self.fake.set_projects(BASE + new_projects(10))
        self.bridge.configure(poll_interval=11, sinks=[
            dict(name='out', type='stdout', format='json'),
            dict(name='second', type='stdout', format='json')])
        # The start time has a 1 s resolution: from the next second on, a start time
        # taken again at the reload would differ.
        deadline_wait(lambda: time.time() >= start0 + 1, 2, what='the next second')
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_log(r'reload: new configuration in effect', 'the reload')
        # Same listen address: same port, still answering.
        doc = self.wait_ready(200, lambda d: 'sink:second' in d['checks'],
                              timeout=15, what='the new sink in /readyz')
        self.assertEqual(doc['checks'], {'youtrack': 'ok', 'sink:out': 'ok',
                                         'sink:second': 'ok'})
        # The new configuration's first poll announces to both sinks.
        deadline_wait(lambda: len([m for m in self.daemon.result().messages
                                   if m.get('event') == 'project.created'])
                      >= 2, 15, what='the change on both stdout sinks')
        f1 = self.metrics()
        self.assertEqual(value_of(f1, 'ytbridge_outbox_depth', sink='second',
                                  type='stdout'), 0)
        self.assertGreaterEqual(
            value_of(f1, 'ytbridge_polls_total', result='ok'), polls0,
            'counters must not restart at a reload')
        result = self.stop_clean()
        created = [m for m in result.messages
                   if m.get('event') == 'project.created']
        self.assertEqual(len(created), 2, 'once per stdout sink')
        self.assertEqual(value_of(f1, 'ytbridge_start_time_seconds'), start0,
                         'ytbridge_start_time_seconds is the process start '
                         'and must not move at a reload')

    def test_sighup_with_a_bad_file_keeps_running(self):
        self.start_ops()
        self.wait_ready(200, what='the first poll')
        good = self.bridge.config_text()
        lines = good.split('\n')
        # An unknown key (a typo) and a value of the wrong type.
        lines.insert(2, '  pol_interval = 30;')
        at = [i for i, ln in enumerate(lines) if 'page_size' in ln][0]
        lines[at] = '  page_size = "many";'
        self.assertEqual(lines[2:3], ['  pol_interval = 30;'])
        self.bridge.write_config('\n'.join(lines))
        self.daemon.proc.send_signal(signal.SIGHUP)
        path = re.escape(self.bridge.config_path)
        self.wait_log(r'reload: %s has 2 problems; keeping the running '
                      r'configuration' % path, 'the refused reload')
        self.wait_log(r'reload: %s:3: .*pol_interval' % path, 'line 3')
        self.wait_log(r'reload: %s:%d: .*page_size' % (path, at + 1),
                      'the page_size line')
        self.assertNotIn('new configuration in effect', self.stderr())
        self.assertIsNone(self.daemon.proc.poll(), 'the daemon exited')
        self.assertEqual(self.request('GET', '/healthz')[0], 200)
        self.assertEqual(self.ready()[0], 200)
        self.metrics()
        # A valid file again: the next SIGHUP applies it.
        self.bridge.write_config(good)
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_log(r'reload: new configuration in effect', 'the reload')
        self.wait_ready(200, timeout=15, what='ready after the reload')
        self.stop_clean()


class Sigterm(OpsMixin, DeliveryTest):

    def test_sigterm_mid_burst_exits_0_and_keeps_the_queue(self):
        rx = self.rx
        nums = list(range(10, 18))
        grace = 4
        self.use_sinks(rx.matrix_sink(), rx.webhook_sink(),
                       digest_threshold=50, shutdown_grace=grace)
        self.quiet_baseline(BASE)
        self.fake.set_projects(BASE + new_projects(*nums))
        # Both sinks slow: requests in flight at TERM, backlogs behind them.
        rx.fault('hook', 'slow', delay=2)
        rx.fault('matrix', 'slow', delay=1.5)
        self.start_ops()
        deadline_wait(lambda: len(rx.accepted('matrix')) >= 2, 20,
                      what='the burst to start')
        fams = self.metrics()
        depth = value_of(fams, 'ytbridge_outbox_depth', sink='ci',
                         type='webhook')
        self.assertGreaterEqual(depth, 1, 'the slow sink has a backlog')
        t0 = time.monotonic()
        self.daemon.proc.send_signal(signal.SIGTERM)
        deadline_wait(lambda: 'SIGTERM: shutting down' in self.daemon.result().stderr, 5,
                      what='the first SIGTERM handled')
        # A second SIGTERM during the grace (an impatient supervisor) changes nothing.
        result = self.daemon.stop(signal.SIGTERM, timeout=grace + 10)
        took = time.monotonic() - t0
        self.assert_ok(result)
        self.check('SIGTERM: already shutting down' in result.stderr,
                   'the second SIGTERM was not handled', result)
        self.check(took <= (grace + 3) * SCALE,
                   'exit within shutdown_grace (took %.1fs)' % took, result)
        then = {r: len(rx.accepted(r)) for r in ('matrix', 'hook')}
        self.check(max(then.values()) < len(nums),
                   'SIGTERM came mid-burst (%r)' % then, result)
        rx.clear_faults()
        restarted = self.start_ops()
        try:
            deadline_wait(lambda: len(rx.accepted('matrix')) >= len(nums)
                          and len({r['delivery'] for r in rx.accepted('hook')})
                          >= len(nums), 40, step=0.2,
                          what='the rest after the restart')
        except AssertionError as e:
            self.fail_with(str(e), restarted.result())
        # Room for an unwanted extra message: wait until nothing is queued for either sink
        # (so nothing more is due), stop, and let the receivers handle all that was sent.
        deadline_wait(lambda: all(value_of(self.metrics(), 'ytbridge_outbox_depth', sink=s,
                                           type=t) == 0
                                  for s, t in (('room', 'matrix'), ('ci', 'webhook'))),
                      10, step=0.2, what='empty outboxes after the restart')
        self.stop_clean(restarted)
        rx.settle()
        want = ['Nw%d' % n for n in nums]
        got = [re.findall(r'\bNw\d+\b', message_text(r))
               for r in rx.accepted('matrix')]
        self.assertEqual(got, [[w] for w in want], 'matrix: all, in order, '
                         'exactly once')
        self.assertEqual(rx.received('matrix')['duplicates'], [])
        by_id = {}
        for r in rx.accepted('hook'):
            by_id.setdefault(r['delivery'], set()).update(
                re.findall(r'\bNw\d+\b', message_text(r)))
        self.assertTrue(all(len(v) == 1 for v in by_id.values()), by_id)
        per_project = sorted(n for v in by_id.values() for n in v)
        self.assertEqual(per_project, sorted(want),
                         'webhook: one delivery id per change')


if __name__ == '__main__':
    main()
