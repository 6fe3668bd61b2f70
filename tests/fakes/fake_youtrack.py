#!/usr/bin/env python3
"""A fake YouTrack server for ytbridge's integration tests and demo mode.

It speaks the wire format of doc/youtrack.md, recorded in tests/data/youtrack/:
``GET /api/admin/projects`` with ``fields``/``$top``/``$skip`` (unpaged lists
capped at 42), ``GET /api/users/me``, the exact error bodies, chunked and
optionally gzip-encoded 200 answers, and with ``--legacy`` the 2017.x
``/rest/admin/project`` and ``/rest/project/all`` resources instead of /api.

Tests steer it through an unauthenticated control API:

  PUT    /_control/projects   JSON array of projects: replace the list
  GET    /_control/projects   the current list
  POST   /_control/fault      {"mode": M, "count": n, "path": prefix, "delay": s}
                               (echo_* modes also take "forms", see echo_forms())
  DELETE /_control/fault      clear the fault
  PUT    /_control/user       {"login": "...", "fullName": "..."}
  GET    /_control/requests   requests seen so far (method, path, query, headers,
                               t: time.monotonic() at arrival; with --peer-pids
                               also pid: the process that sent it, peer_pid.py)
  DELETE /_control/requests   forget them

A project is a dict {id, shortName, name, archived, description,
leader: {login, name} | null, template}. Standard library only.
"""

import argparse
import base64
import gzip
import json
import random
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import quoteattr

# Byte-exact bodies from the fixtures (INDEX.md gives their sources).
BODY_401_NO_HEADER = (b'{"error":"Unauthorized",'
                      b'"error_description":"You are not logged in."}')
BODY_401_INVALID = b'{"error":"Unauthorized","error_description":"Invalid token"}'
BODY_400_FIELDS = (b'{"error":"bad_request",'
                   b'"error_description":"Query string has invalid syntax"}')
BODY_500_TOP = (b'{"error":"server_error",'
                b'"error_description":"HTTP 404 Not Found"}')
BODY_404 = b'{"error":"Not Found","error_description":"HTTP 404 Not Found"}'
BODY_403 = b'{"error":"Forbidden","error_description":"HTTP 403 Forbidden"}'
BODY_500 = (b'{"error":"server_error",'
            b'"error_description":"Internal Server Error"}')
BODY_502 = (b'<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n'
            b'<center><h1>502 Bad Gateway</h1></center>\r\n'
            b'<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n')
BODY_429 = (b'<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n'
            b'<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n'
            b'<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n')
BODY_LOGIN = (b'<!doctype html><html lang="en"><head><meta charset="utf-8">'
              b'<title>Log in to YouTrack</title></head><body>'
              b'<form method="post" action="/hub/api/rest/oauth2/auth">'
              b'<input name="username"><input name="password" type="password">'
              b'</form></body></html>')
BODY_LEGACY_404 = (b'<html><head><title>Error 404 Not Found</title></head>'
                   b'<body><h2>HTTP ERROR 404</h2><p>Problem accessing /api/. '
                   b'Reason:<pre>    Not Found</pre></p></body></html>')

# Headers of every recorded YouTrack 2026.1 response.
COMMON_HEADERS = [
    ('Access-Control-Expose-Headers', 'Location, X-Version'),
    ('Cache-Control', 'no-cache, no-store, no-transform, must-revalidate'),
    ('Content-Security-Policy', "frame-ancestors 'self';"),
    ('Referrer-Policy', 'same-origin'),
    ('X-Content-Type-Options', 'nosniff'),
    ('X-Frame-Options', 'SAMEORIGIN'),
    ('X-Xss-Protection', '1; mode=block'),
]
JSON_TYPE = 'application/json;charset=utf-8'
HTML_TYPE = 'text/html;charset=utf-8'

DEFAULT_PROJECTS = [
    {'id': '0-1', 'shortName': 'DEV', 'name': 'DEVELOPMENT', 'archived': False,
     'description': None, 'leader': {'login': 'admin', 'name': 'Admin'},
     'template': False},
    {'id': '0-2', 'shortName': 'DOCS', 'name': 'DOCS', 'archived': False,
     'description': 'Documentation', 'leader': None, 'template': False},
    {'id': '0-0', 'shortName': 'DEMO', 'name': 'Демопроект', 'archived': False,
     'description': None, 'leader': {'login': 'admin', 'name': 'Admin'},
     'template': False},
]

PROJECT_KEYS = ('id', 'shortName', 'name', 'archived', 'description',
                'leader', 'template')
USER_KEYS = ('login', 'name', 'fullName', 'id')
FAULT_MODES = {
    '500', '502', '429', '401', '403', 'html200', 'redirect', 'redirect_same',
    'nonjson', 'truncate', 'truncate_json', 'shape', 'badtype', 'slow',
    'disconnect', 'page2_500', 'oversize', 'hide_archived', 'empty', 'guest',
    'shift', 'echo_401', 'echo_500', 'echo_redirect',
}
# A hostile or debugging server that repeats the Authorization header it got, in the ways
# such text is encoded in the wild (echo_forms()).
ECHO_FORMS = ('raw', 'pct', 'pct_lower', 'plus', 'b64', 'basic', 'b64url')
UNPAGED_CAP = 42


def log(msg):
    sys.stderr.write('fake_youtrack: %s\n' % msg)
    sys.stderr.flush()


class FieldsError(ValueError):
    pass


def echo_forms(auth, forms):
    """The Authorization header value `auth` (or its token) spelled each way in
    forms: raw, pct (percent-encoded), pct_lower (%xx), plus (form encoding),
    b64 (the token), basic (HTTP Basic of user:token), b64url ("x" + token)."""
    token = auth.partition(' ')[2]
    pct = urllib.parse.quote(auth, safe='')
    out = []
    for form in forms:
        if form == 'raw':
            out.append(auth)
        elif form == 'pct':
            out.append(pct)
        elif form == 'pct_lower':
            out.append(''.join(c.lower() if i and pct[i - 1] == '%' or
                               i > 1 and pct[i - 2] == '%' else c
                               for i, c in enumerate(pct)))
        elif form == 'plus':
            out.append(urllib.parse.quote_plus(auth))
        elif form == 'b64':
            out.append(base64.b64encode(token.encode()).decode())
        elif form == 'basic':
            out.append('Basic ' + base64.b64encode(
                ('ytbridge-bot:' + token).encode()).decode())
        elif form == 'b64url':
            out.append(base64.urlsafe_b64encode(
                ('x' + token).encode()).decode())
    return out


def parse_fields(text):
    """'id,leader(login,name)' -> {'id': None, 'leader': {'login': None, ...}}.

    Keeps the request order; raises FieldsError on unbalanced parentheses.
    """
    pos = 0

    def parse_list(depth):
        nonlocal pos
        out = {}
        name = ''
        while pos < len(text):
            c = text[pos]
            pos += 1
            if c == ',':
                if name.strip():
                    out.setdefault(name.strip(), None)
                name = ''
            elif c == '(':
                sub = parse_list(depth + 1)
                key = name.strip()
                if not key:
                    raise FieldsError('( without a name')
                out[key] = sub
                name = ''
            elif c == ')':
                if depth == 0:
                    raise FieldsError('unbalanced )')
                if name.strip():
                    out.setdefault(name.strip(), None)
                return out
            else:
                name += c
        if depth != 0:
            raise FieldsError('unbalanced (')
        if name.strip():
            out.setdefault(name.strip(), None)
        return out

    return parse_list(0)


def render_user(user, sub):
    if user is None:
        return None
    out = {}
    for key in (sub or {}):
        if key in USER_KEYS and key in user:
            out[key] = user[key]
    out['$type'] = 'User'
    return out


def render_project(project, fields, hide_archived=False):
    out = {}
    if fields is None:
        fields = {'id': None}
    for key, sub in fields.items():
        if key not in PROJECT_KEYS or key not in project:
            continue
        if key == 'archived' and hide_archived:
            continue
        if key == 'leader':
            out[key] = render_user(project[key], sub)
        else:
            out[key] = project[key]
    out['$type'] = 'Project'
    return out


def dumps(value):
    return json.dumps(value, ensure_ascii=False,
                      separators=(',', ':')).encode('utf-8')


def query_int(query, name):
    """Return (present, value); value is None when not numeric."""
    if name not in query:
        return False, None
    raw = query[name][-1]
    try:
        return True, int(raw.strip())
    except ValueError:
        return True, None


class State:
    """Everything the handlers share; guarded by one lock."""

    def __init__(self, token, projects, login, legacy):
        self.lock = threading.Lock()
        self.token = token
        self.projects = projects
        self.login = login
        self.full_name = 'ytbridge service account'
        self.legacy = legacy
        self.fault = None
        self.requests = []
        self.peer_pids = False

    def take_fault(self, path, skip):
        """The fault that applies to this request, counting it down."""
        with self.lock:
            fault = self.fault
            if fault is None:
                return None
            prefix = fault.get('path')
            if prefix and not path.startswith(prefix):
                return None
            if fault['mode'] == 'page2_500' and not skip:
                return None
            if fault['mode'] == 'shift' and not skip:
                return None
            if fault.get('count') is not None:
                fault['count'] -= 1
                if fault['count'] <= 0:
                    self.fault = None
            return dict(fault)


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'YouTrack'
    sys_version = ''
    # One write per answer (the handler flushes after each request; a fault that cuts
    # an answer flushes first, see drop_connection()), and TCP_NODELAY: unbuffered,
    # an answer went out as headers, chunks and the last chunk in separate small
    # writes, and on a kept-alive connection Nagle's algorithm held the last one back
    # until the client's delayed ACK, about 40 ms on every page after the first.
    wbufsize = 1 << 20
    disable_nagle_algorithm = True

    # -- plumbing -----------------------------------------------------------

    @property
    def state(self):
        return self.server.state

    def version_string(self):
        return 'YouTrack'

    def log_message(self, fmt, *args):
        log('%s %s' % (self.address_string(), fmt % args))

    def send_headers(self, status, ctype, extra=(), server='YouTrack'):
        self.send_response_only(status)
        self.send_header('Date', self.date_time_string())
        self.send_header('Server', server)
        if server == 'YouTrack':
            for name, value in COMMON_HEADERS:
                self.send_header(name, value)
        if ctype:
            self.send_header('Content-Type', ctype)
        for name, value in extra:
            self.send_header(name, value)

    def send_fixed(self, status, body, ctype=JSON_TYPE, extra=(),
                   server='YouTrack'):
        """An answer with Content-Length, like YouTrack's errors."""
        self.log_request(status, len(body))
        self.send_headers(status, ctype, extra, server)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def wants_gzip(self):
        accept = self.headers.get('Accept-Encoding', '')
        return any(part.split(';')[0].strip().lower() in ('gzip', 'x-gzip')
                   for part in accept.split(','))

    def start_chunked(self, status, ctype, extra=(), use_gzip=False):
        self.log_request(status)
        hdrs = list(extra)
        if use_gzip:
            hdrs.append(('Content-Encoding', 'gzip'))
        hdrs.append(('Transfer-Encoding', 'chunked'))
        self.send_headers(status, ctype, hdrs)
        self.end_headers()

    def write_chunk(self, data):
        if data:
            self.wfile.write(b'%x\r\n' % len(data) + data + b'\r\n')

    def end_chunked(self):
        self.wfile.write(b'0\r\n\r\n')

    def send_ok(self, body, ctype=JSON_TYPE, login=None, chunked=True):
        """A 200 like YouTrack's: chunked, gzip when asked, X-Youtrack-User."""
        extra = [('Vary', 'Accept-Encoding, User-Agent'),
                 ('X-Youtrack-User', login or self.state.login)]
        use_gzip = self.wants_gzip()
        if use_gzip:
            body = gzip.compress(body)
        if not chunked:
            if use_gzip:
                extra.append(('Content-Encoding', 'gzip'))
            self.send_fixed(200, body, ctype, extra)
            return
        self.start_chunked(200, ctype, extra, use_gzip)
        for i in range(0, len(body), 8192):
            self.write_chunk(body[i:i + 8192])
        self.end_chunked()

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

    def read_body(self):
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length else b''

    # -- dispatch -----------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        try:
            if path.startswith('/_control/'):
                self.control(path)
                return
            self.record(path, url.query)
            self.serve(path, url.query)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            log('client went away during %s %s' % (self.command, path))

    def record(self, path, query):
        headers = {}
        for name, value in self.headers.items():
            headers[name] = value
        rec = {'method': self.command, 'path': path, 'query': query,
               'headers': headers, 't': time.monotonic()}
        if self.state.peer_pids:
            rec['pid'] = self.peer_pid()
        with self.state.lock:
            self.state.requests.append(rec)

    def peer_pid(self):
        """The sending process (looked up once per connection)."""
        if not hasattr(self, '_peer_pid'):
            from peer_pid import peer_pid
            self._peer_pid = peer_pid(self.connection)
        return self._peer_pid

    # -- the control API ----------------------------------------------------

    def control(self, path):
        body = self.read_body()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            self.send_fixed(400, b'{"error":"bad json"}')
            return
        st = self.state
        method = self.command
        if path == '/_control/projects' and method == 'GET':
            with st.lock:
                out = dumps(st.projects)
            self.send_fixed(200, out)
        elif path == '/_control/projects' and method == 'PUT':
            if not isinstance(data, list):
                self.send_fixed(400, b'{"error":"want a JSON array"}')
                return
            with st.lock:
                st.projects = data
            log('control: %d projects' % len(data))
            self.send_fixed(204, b'')
        elif path == '/_control/fault' and method == 'POST':
            if (not isinstance(data, dict)
                    or str(data.get('mode')) not in FAULT_MODES):
                self.send_fixed(400, b'{"error":"unknown fault mode"}')
                return
            fault = dict(data)
            fault['mode'] = str(data['mode'])
            with st.lock:
                st.fault = fault
            log('control: fault %s' % json.dumps(fault))
            self.send_fixed(204, b'')
        elif path == '/_control/fault' and method == 'DELETE':
            with st.lock:
                st.fault = None
            log('control: fault cleared')
            self.send_fixed(204, b'')
        elif path == '/_control/user' and method == 'PUT':
            with st.lock:
                st.login = data.get('login', st.login)
                st.full_name = data.get('fullName', st.full_name)
            self.send_fixed(204, b'')
        elif path == '/_control/requests' and method == 'GET':
            with st.lock:
                out = dumps(st.requests)
            self.send_fixed(200, out)
        elif path == '/_control/requests' and method == 'DELETE':
            with st.lock:
                st.requests = []
            self.send_fixed(204, b'')
        else:
            self.send_fixed(404, b'{"error":"no such control resource"}')

    # -- YouTrack -----------------------------------------------------------

    def authorized(self):
        """Send the 401 YouTrack would and return False, or return True."""
        auth = self.headers.get('Authorization')
        if auth is None:
            self.send_fixed(401, BODY_401_NO_HEADER)
            return False
        scheme, _, value = auth.partition(' ')
        if scheme.lower() != 'bearer' or value.strip() != self.state.token:
            self.send_fixed(401, BODY_401_INVALID)
            return False
        return True

    def serve(self, path, query_string):
        st = self.state
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        is_api = path == '/api' or path.startswith('/api/')
        is_rest = path == '/rest' or path.startswith('/rest/')
        if st.legacy and is_api:
            self.send_fixed(404, BODY_LEGACY_404, HTML_TYPE)
            return
        if not st.legacy and not is_api:
            self.send_fixed(404, BODY_404, extra=[('X-Youtrack-User',
                                                   st.login)])
            return
        if self.command not in ('GET', 'HEAD'):
            self.send_fixed(405, b'{"error":"Method Not Allowed",'
                            b'"error_description":"HTTP 405 Method Not Allowed"}')
            return
        skip_present, skip = query_int(query, '$skip')
        fault = st.take_fault(path, skip_present and skip not in (None, 0))
        if fault and self.apply_fault(fault, query_string):
            return
        if not self.authorized():
            return
        mode = fault['mode'] if fault else None
        login = 'guest' if mode == 'guest' else None
        if not st.legacy and path == '/api/admin/projects':
            self.api_projects(query, mode, login)
        elif not st.legacy and path == '/api/users/me':
            self.api_me(query, login)
        elif st.legacy and is_rest and path.rstrip('/') == '/rest/admin/project':
            self.legacy_refs()
        elif st.legacy and path == '/rest/project/all':
            self.legacy_all()
        elif st.legacy:
            self.send_fixed(404, BODY_LEGACY_404, HTML_TYPE)
        else:
            self.send_fixed(404, BODY_404,
                            extra=[('X-Youtrack-User', login or st.login)])

    def apply_fault(self, fault, query_string):
        """Answer with the fault; return False when the normal answer should
        follow (modifiers such as hide_archived, guest, slow)."""
        mode = fault['mode']
        if mode == 'slow':
            time.sleep(float(fault.get('delay', 5)))
            return False
        if mode in ('hide_archived', 'guest', 'empty', 'shift', 'badtype',
                    'shape', 'oversize', 'truncate', 'truncate_json'):
            return False  # shaped inside the normal answer, after auth
        if mode in ('500', 'page2_500'):
            self.send_fixed(500, BODY_500)
        elif mode == '502':
            self.send_fixed(502, BODY_502, 'text/html', server='nginx/1.22.1')
        elif mode == '429':
            self.send_fixed(429, BODY_429, 'text/html',
                            extra=[('Retry-After', '7')], server='nginx/1.22.1')
        elif mode == '401':
            self.send_fixed(401, BODY_401_INVALID)
        elif mode == '403':
            self.send_fixed(403, BODY_403)
        elif mode == 'html200':
            self.send_fixed(200, BODY_LOGIN, HTML_TYPE, server='nginx/1.22.1')
        elif mode == 'redirect':
            target = ('https://sso.example.invalid/hub/login?redirect_uri=' +
                      urllib.parse.quote(self.path, safe=''))
            self.send_fixed(302, b'', None, extra=[('Location', target)],
                            server='nginx/1.22.1')
        elif mode == 'redirect_same':
            host = self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]
            self.send_fixed(302, b'', None,
                            extra=[('Location', 'http://%s%s' % (host, self.path))])
        elif mode in ('echo_401', 'echo_500'):
            forms = echo_forms(self.headers.get('Authorization') or '',
                               fault.get('forms') or ['raw'])
            body = dumps({'error': 'debug', 'error_description':
                          'got ' + ' '.join(forms)})
            self.send_fixed(401 if mode == 'echo_401' else 500, body)
        elif mode == 'echo_redirect':
            forms = echo_forms(self.headers.get('Authorization') or '',
                               fault.get('forms') or ['pct'])
            target = ('https://sso.example.invalid/login?' +
                      '&'.join('t%d=%s' % (i, f) for i, f in enumerate(forms)))
            self.send_fixed(302, b'', None, extra=[('Location', target)],
                            server='nginx/1.22.1')
        elif mode == 'nonjson':
            self.send_ok(b'not json')
        elif mode == 'disconnect':
            self.drop_connection()
        else:
            return False
        return True

    def api_projects(self, query, mode, login):
        st = self.state
        try:
            fields = parse_fields(query['fields'][-1]) if 'fields' in query else None
        except FieldsError:
            self.send_fixed(400, BODY_400_FIELDS)
            return
        top_present, top = query_int(query, '$top')
        skip_present, skip = query_int(query, '$skip')
        if (top_present and top is None) or (skip_present and skip is None):
            self.send_fixed(500, BODY_500_TOP)
            return
        with st.lock:
            projects = list(st.projects)
        skip = max(skip or 0, 0)
        if mode == 'shift' and skip > 0:
            skip -= 1   # a project was created in front since the last page
        if mode == 'empty':
            projects = []
        if not top_present:
            top = UNPAGED_CAP
        if mode == 'oversize':
            self.stream_oversize(fields, login)
            return
        page = projects[skip:] if top < 0 else projects[skip:skip + top]
        items = [render_project(p, fields, mode == 'hide_archived') for p in page]
        if mode == 'badtype':
            items = [dict({'id': 5}, **{k: v for k, v in item.items() if k != 'id'})
                     for item in items] or [{'id': 5, '$type': 'Project'}]
        if mode == 'shape':
            body = b'{"projects":[]}'
        else:
            body = dumps(items)
        if mode == 'truncate_json':
            body = body[:max(len(body) // 2, 1)]
        if mode == 'truncate':
            self.start_chunked(200, JSON_TYPE, [
                ('Vary', 'Accept-Encoding, User-Agent'),
                ('X-Youtrack-User', login or st.login)])
            self.write_chunk(body[:max(len(body) // 2, 1)])
            self.drop_connection()
            return
        self.send_ok(body, login=login)

    def stream_oversize(self, fields, login):
        """About 80 MB of valid JSON, streamed without building it."""
        self.start_chunked(200, JSON_TYPE, [
            ('Vary', 'Accept-Encoding, User-Agent'),
            ('X-Youtrack-User', login or self.state.login)])
        filler = 'x' * 900
        self.write_chunk(b'[')
        n = 0
        total = 0
        while total < 80 * 1024 * 1024:
            batch = []
            for _ in range(64):
                proj = {'id': '9-%d' % n, 'shortName': 'J%d' % n,
                        'name': 'junk %d' % n, 'archived': False,
                        'description': filler, 'leader': None,
                        'template': False}
                batch.append(dumps(render_project(proj, fields)))
                n += 1
            data = (b',' if total else b'') + b','.join(batch)
            self.write_chunk(data)
            total += len(data)
        self.write_chunk(b']')
        self.end_chunked()

    def api_me(self, query, login):
        st = self.state
        me = {'login': login or st.login, 'fullName': st.full_name,
              'id': '1-1'}
        try:
            fields = parse_fields(query['fields'][-1]) if 'fields' in query else {'id': None}
        except FieldsError:
            self.send_fixed(400, BODY_400_FIELDS)
            return
        out = {k: me[k] for k in fields if k in me}
        out['$type'] = 'Me'
        self.send_ok(dumps(out), login=login)

    def legacy_base(self):
        host = self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]
        return 'http://%s' % host

    def legacy_json(self):
        return 'application/json' in self.headers.get('Accept', '')

    def legacy_refs(self):
        with self.state.lock:
            projects = list(self.state.projects)
        base = self.legacy_base() + '/rest/admin/project/'
        if self.legacy_json():
            body = dumps([{'id': p['shortName'], 'url': base + p['shortName']}
                          for p in projects])
            self.send_legacy(body, JSON_TYPE)
        else:
            refs = ''.join('<project id=%s url=%s/>' % (
                quoteattr(p['shortName']), quoteattr(base + p['shortName']))
                for p in projects)
            body = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                    '<projectRefs>%s</projectRefs>' % refs).encode('utf-8')
            self.send_legacy(body, 'application/xml;charset=UTF-8')

    def legacy_all(self):
        with self.state.lock:
            projects = list(self.state.projects)
        if self.legacy_json():
            body = dumps([{'name': p['name'], 'shortName': p['shortName']}
                          for p in projects])
            self.send_legacy(body, JSON_TYPE)
        else:
            items = ''.join('<project name=%s shortName=%s/>' % (
                quoteattr(p['name']), quoteattr(p['shortName']))
                for p in projects)
            body = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                    '<projects>%s</projects>' % items).encode('utf-8')
            self.send_legacy(body, 'application/xml;charset=UTF-8')

    def send_legacy(self, body, ctype):
        # 2017.x servers answered small bodies with Content-Length; keep the
        # gzip behaviour of the modern API.
        self.send_ok(body, ctype, chunked=False)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


# -- demo mode --------------------------------------------------------------

DEMO_PROJECTS = [
    ('0-1', 'DEV', 'Development'), ('0-2', 'DOCS', 'Documentation'),
    ('0-3', 'OPS', 'Operations'), ('0-4', 'WEB', 'Website'),
    ('0-5', 'MOB', 'Mobile app'), ('0-6', 'SUP', 'Customer support'),
    ('0-7', 'DATA', 'Data platform'), ('0-8', 'SEC', 'Security'),
]
DEMO_NEW = [
    ('INFRA', 'Infrastructure'), ('QA', 'Quality assurance'),
    ('DES', 'Design system'), ('BILL', 'Billing'), ('HR', 'People team'),
    ('API', 'Public API'), ('ML', 'Machine learning'), ('LEGAL', 'Legal'),
    ('DEMO', 'Демопроект'), ('MKT', 'Marketing <launch> & "PR"'),
]


def demo_projects():
    return [{'id': i, 'shortName': s, 'name': n, 'archived': False,
             'description': None, 'leader': {'login': 'admin', 'name': 'Admin'},
             'template': False} for i, s, n in DEMO_PROJECTS]


def demo_loop(state, interval, seed, stop):
    rng = random.Random(seed)
    next_id = 1 + max(int(p['id'].split('-')[1]) for p in state.projects)
    while not stop.wait(interval):
        with state.lock:
            projects = [dict(p) for p in state.projects]
            live = [p for p in projects if not p['archived']]
            archived = [p for p in projects if p['archived']]
            weights = {'create': 3, 'rename': 3, 'archive': 2}
            if archived:
                weights['unarchive'] = 3
            if len(projects) > 6:
                weights['remove'] = 1
            if len(projects) < 6:
                weights = {'create': 1}
            action = rng.choices(list(weights), list(weights.values()))[0]
            if action == 'create' or not live and action in ('rename', 'archive'):
                used = {p['shortName'] for p in projects}
                free = [x for x in DEMO_NEW if x[0] not in used]
                short, name = rng.choice(free) if free else (
                    'P%d' % next_id, 'Project %d' % next_id)
                proj = {'id': '0-%d' % next_id, 'shortName': short,
                        'name': name, 'archived': False, 'description': None,
                        'leader': None, 'template': False}
                next_id += 1
                projects.append(proj)
                what = 'created %s (%s) %s' % (name, short, proj['id'])
            elif action == 'rename':
                proj = rng.choice(live)
                old = proj['name']
                proj['name'] = old + ' (renamed)' if '(renamed)' not in old \
                    else old.replace(' (renamed)', '')
                what = 'renamed %s: %r -> %r' % (proj['id'], old, proj['name'])
            elif action == 'archive':
                proj = rng.choice(live)
                proj['archived'] = True
                what = 'archived %s (%s)' % (proj['name'], proj['id'])
            elif action == 'unarchive':
                proj = rng.choice(archived)
                proj['archived'] = False
                what = 'unarchived %s (%s)' % (proj['name'], proj['id'])
            else:
                proj = rng.choice(projects)
                projects.remove(proj)
                what = 'removed %s (%s)' % (proj['name'], proj['id'])
            projects.sort(key=lambda p: p['name'].lower())
            state.projects = projects
        log('demo: ' + what)


# -- main -------------------------------------------------------------------

def load_projects(path):
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise SystemExit('%s: want a JSON array of projects' % path)
    return data


def main(argv=None):
    ap = argparse.ArgumentParser(description='A fake YouTrack server.')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--bind', default='127.0.0.1')
    ap.add_argument('--token', default='perm:test-token-not-real')
    ap.add_argument('--projects', metavar='FILE.json')
    ap.add_argument('--user', default='ytbridge-bot',
                    help='login reported in X-Youtrack-User and /api/users/me')
    ap.add_argument('--legacy', action='store_true',
                    help='act as a 2017.x server: /rest only, /api is 404')
    ap.add_argument('--demo', action='store_true',
                    help='change the project list every --demo-interval s')
    ap.add_argument('--demo-interval', type=float, default=8.0)
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--peer-pids', action='store_true',
                    help='record the pid of the process that sent each request')
    args = ap.parse_args(argv)

    if args.projects:
        projects = load_projects(args.projects)
    elif args.demo:
        projects = demo_projects()
    else:
        projects = [dict(p) for p in DEFAULT_PROJECTS]
    state = State(args.token, projects, args.user, args.legacy)
    state.peer_pids = args.peer_pids

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = Server((args.bind, args.port), Handler)
    server.state = state
    stop = threading.Event()
    if args.demo:
        threading.Thread(target=demo_loop, daemon=True,
                         args=(state, args.demo_interval, args.seed, stop)).start()
    sys.stdout.write('PORT %d\n' % server.server_address[1])
    sys.stdout.flush()
    log('listening on http://%s:%d/%s%s' % (
        args.bind, server.server_address[1],
        ' (legacy 2017.x)' if args.legacy else '',
        ' (demo)' if args.demo else ''))
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
        log('stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
