"""Shared plumbing for ytbridge's integration tests (standard library only).

Environment:
  YTBRIDGE_BIN        the daemon under test (required; tests are skipped without it)
  FAKE_YOUTRACK       the fake server (default: ../fakes/fake_youtrack.py)
  FAKE_RECEIVERS      the fake Slack/Matrix/webhook receivers
                      (default: ../fakes/fake_receivers.py)
  YTBRIDGE_WRAPPER    optional command prefix for the daemon,
                      e.g. "valgrind -q --error-exitcode=99"
  YTBRIDGE_WRAPPER_ONCE  when set, the prefix for one-shot polls (--once)
                      instead (may be empty: scripts/test.sh says why)
  YTBRIDGE_TIME_SCALE multiply every deadline by this (default 1; e.g. 10 under valgrind)

Every wait is a bounded poll with a deadline; every process started here is
killed in tearDown (and, as a last resort, at interpreter exit).
"""

import atexit
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.environ.get('FAKE_YOUTRACK') or os.path.join(HERE, '..', 'fakes',
                                                       'fake_youtrack.py')
FAKE_RECEIVERS = os.environ.get('FAKE_RECEIVERS') or os.path.join(
    HERE, '..', 'fakes', 'fake_receivers.py')
TOKEN = 'perm:test-token-not-real'
# Delivery secrets (sink URLs and tokens are secrets: never printed).
SLACK_HOOK = 'services/T000/B000/fakehooksecret0001'
MATRIX_TOKEN = 'syt_fake_token_not_real'
WEBHOOK_SECRET = 'fake-signing-secret'
HOOKSHOT_NAME = 'hs-fakehooksecret-hookshot'
SECRETS = (TOKEN, MATRIX_TOKEN, WEBHOOK_SECRET, 'fakehooksecret')
SCALE = float(os.environ.get('YTBRIDGE_TIME_SCALE') or 1)
EVENT_KINDS = {'project.created', 'project.removed', 'project.renamed',
               'project.archived', 'project.unarchived'}

_live = []  # every Popen started here, for the atexit safety net


def _reap_all():
    for proc in _live:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_reap_all)

# Never talk to the fake (or let the daemon talk to it) through a proxy.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PROXY_VARS = ('http_proxy', 'https_proxy', 'all_proxy', 'HTTP_PROXY',
               'HTTPS_PROXY', 'ALL_PROXY', 'no_proxy', 'NO_PROXY')


def redact(text):
    """Remove the test token and sink secrets from anything to be printed."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    text = (text or '').replace(TOKEN, '<TOKEN>')
    text = text.replace(MATRIX_TOKEN, '<MATRIX_TOKEN>')
    text = text.replace(WEBHOOK_SECRET, '<WEBHOOK_SECRET>')
    return re.sub(r'[\w-]*fakehooksecret[\w-]*', '<HOOK_SECRET>', text)


def deadline_wait(predicate, timeout, step=0.05, what='condition'):
    """Poll predicate() until it is truthy or timeout (scaled) passes."""
    end = time.monotonic() + timeout * SCALE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError('timed out after %.1fs waiting for %s'
                                 % (timeout * SCALE, what))
        time.sleep(step)


def natural_key(project_id):
    """'0-10' -> (0, 10): the order the daemon must announce in."""
    return tuple(int(x) if x.isdigit() else x
                 for x in re.split(r'(\d+)', project_id or '') if x != '')


def project(pid, short, name=None, archived=False, **extra):
    p = {'id': pid, 'shortName': short, 'name': name or short,
         'archived': archived, 'description': None,
         'leader': {'login': 'admin', 'name': 'Admin'}, 'template': False}
    p.update(extra)
    return p


def many_projects(n, start=1):
    return [project('0-%d' % i, 'P%d' % i, 'Project %d' % i)
            for i in range(start, start + n)]


DEFAULT_PROJECTS = [
    project('0-1', 'DEV', 'DEVELOPMENT'),
    project('0-2', 'DOCS', 'DOCS', description='Documentation', leader=None),
    project('0-0', 'DEMO', 'Демопроект'),
]


class _FakeProcess:
    """A fake server child process that prints PORT n, plus control calls."""

    def _spawn(self, argv):
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file,
                                     stdin=subprocess.DEVNULL)
        _live.append(self.proc)
        os.set_blocking(self.proc.stdout.fileno(), False)
        buf = b''

        def got_port():
            nonlocal buf
            chunk = self.proc.stdout.read()
            if chunk:
                buf += chunk
            if self.proc.poll() is not None and b'\n' not in buf:
                raise AssertionError('fake exited early:\n' + self.log())
            return b'\n' in buf

        deadline_wait(got_port, 15, what='the fake to print PORT')
        line = buf.split(b'\n', 1)[0].decode()
        m = re.fullmatch(r'PORT (\d+)', line.strip())
        if not m:
            raise AssertionError('fake printed %r, not PORT n' % line)
        self.port = int(m.group(1))
        self.url = 'http://127.0.0.1:%d' % self.port

    def _call(self, method, path, data=None):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            req.add_header('Content-Type', 'application/json')
        with _NO_PROXY.open(req, timeout=10 * SCALE) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def log(self):
        self.stderr_file.seek(0)
        return redact(self.stderr_file.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()
        self.stderr_file.close()


class FakeYouTrack(_FakeProcess):
    """The fake server as a child process, plus its control API."""

    def __init__(self, *args, projects=None):
        argv = [sys.executable, FAKE, '--port', '0', '--token', TOKEN]
        self._spawn(argv + list(args))
        if projects is not None:
            self.set_projects(projects)

    def set_projects(self, projects):
        self._call('PUT', '/_control/projects', list(projects))

    def projects(self):
        return self._call('GET', '/_control/projects')

    def fault(self, mode, count=None, path=None, **kw):
        data = {'mode': mode}
        if count is not None:
            data['count'] = count
        if path is not None:
            data['path'] = path
        data.update(kw)
        self._call('POST', '/_control/fault', data)

    def clear_fault(self):
        self._call('DELETE', '/_control/fault')

    def requests(self):
        return self._call('GET', '/_control/requests')

    def clear_requests(self):
        self._call('DELETE', '/_control/requests')


class Receivers(_FakeProcess):
    """tests/fakes/fake_receivers.py: fake Slack webhook, Matrix homeserver,
    signed webhooks and hookshot, plus helpers that build sink configs
    pointing at it (see Bridge: sinks=[...])."""

    def __init__(self, *args):
        """args: extra options, e.g. '--peer-pids' (records name the sender)."""
        self._spawn([sys.executable, FAKE_RECEIVERS, '--port', '0'] + list(args))

    # -- sink configurations (dicts for Bridge(sinks=[...])) ---------------

    def slack_sink(self, name='team', hook=SLACK_HOOK, **opts):
        return dict(name=name, type='slack',
                    webhook_url='%s/slack/%s' % (self.url, hook), **opts)

    def matrix_sink(self, name='room', room='#yt:localhost', **opts):
        return dict(name=name, type='matrix', homeserver=self.url, room=room,
                    access_token=MATRIX_TOKEN, **opts)

    def webhook_sink(self, name='ci', hook='ci', secret=WEBHOOK_SECRET, **opts):
        sink = dict(name=name, type='webhook',
                    url='%s/hook/%s' % (self.url, hook), **opts)
        if secret is not None:
            sink['secret'] = secret
            self.set_hook_secret(hook, secret)
        return sink

    def hookshot_sink(self, name='hs', hook=HOOKSHOT_NAME, **opts):
        return dict(name=name, type='hookshot',
                    url='%s/hookshot/%s' % (self.url, hook), **opts)

    # -- control API --------------------------------------------------------

    def fault(self, receiver, mode, count=None, path=None, **kw):
        """count=None: until cleared. path: a request-path prefix."""
        data = {'receiver': receiver, 'mode': str(mode)}
        if count is not None:
            data['count'] = count
        if path is not None:
            data['path'] = path
        data.update(kw)
        self._call('POST', '/_control/fault', data)

    def clear_faults(self, receiver=None):
        self._call('DELETE', '/_control/fault'
                   + ('?receiver=' + receiver if receiver else ''))

    def received(self, receiver, min_gap=0.95):
        """{"accepted", "rejected", "duplicates", "lookups",
        "pacing_violations", "attempt_pacing_violations"}; records have
        seq, t (monotonic), wall, path, headers, body, json, status, ...
        Secrets (hook URLs, tokens) are redacted, so records can be printed."""
        got = self._call('GET', '/_control/received?receiver=%s&min_gap=%s'
                         % (receiver, min_gap))
        return json.loads(redact(json.dumps(got)))

    def accepted(self, receiver):
        return self.received(receiver)['accepted']

    def reply_to(self, event_id):
        """The accepted Matrix message that replies to event_id (m.in_reply_to), or None."""
        for rec in self.accepted('matrix'):
            rel = (rec['json'] or {}).get('m.relates_to') or {}
            if (rel.get('m.in_reply_to') or {}).get('event_id') == event_id:
                return rec
        return None

    def notices(self, room):
        """Accepted Matrix messages in room that reply to nothing: notifications, not answers."""
        return [r for r in self.accepted('matrix') if r['room'] == room
                and not (r['json'] or {}).get('m.relates_to')]

    def clear_received(self, receiver=None):
        self._call('DELETE', '/_control/received'
                   + ('?receiver=' + receiver if receiver else ''))

    def set_matrix(self, **kw):
        """rooms=[...], aliases={...}, token=..., ratelimit={...}|None."""
        self._call('PUT', '/_control/matrix', kw)

    def matrix_chat(self, rooms=('!room1:localhost',), **opts):
        """A chat.matrix group pointing at this fake (Bridge(chat={'matrix':
        rx.matrix_chat()}))."""
        return dict(homeserver=self.url, access_token=MATRIX_TOKEN,
                    rooms=list(rooms), **opts)

    def queue_sync(self, *batches, reset=False):
        """Append /sync bodies (next_batch "s<N>" when absent)."""
        self._call('PUT', '/_control/matrix_sync',
                   {'batches': list(batches), 'reset': reset})

    def matrix_membership(self, room, membership, sender='@admin:localhost', sync=True,
                          **kw):
        """The bot kicked ("leave"), banned, invited or put back ("join") in
        room, as a room admin would; sync=False: /sync does not tell."""
        return self._call('POST', '/_control/matrix_membership',
                          dict(kw, room=room, membership=membership, sender=sender,
                               sync=sync))

    def sync_stream(self):
        """{"head", "queued", "served"} of the fake /sync."""
        return self._call('GET', '/_control/matrix_sync')

    def set_hook_secret(self, name, secret):
        self._call('PUT', '/_control/hook', {'name': name, 'secret': secret})

    def settle(self, timeout=5):
        """Wait until every connection made to the receivers before this call
        has been handled and closed. After the daemon has exited, this is the
        moment nothing more from it can show up (no sleep needed)."""
        wait = timeout * SCALE
        got = self._call('GET', '/_control/settle?timeout=%s' % wait)
        if not got['ok']:
            raise AssertionError('receivers still busy with %d connection(s) after %.1fs'
                                 % (got['busy'], wait))

    def wait_accepted(self, receiver, n, timeout=30, what=None):
        """Wait until `receiver` has accepted at least n messages."""
        got = []

        def enough():
            got[:] = self.accepted(receiver)
            return len(got) >= n
        deadline_wait(enough, timeout, step=0.1,
                      what=what or '%d messages at %s (have %d)'
                      % (n, receiver, len(got)))
        return list(got)


class Result:
    def __init__(self, rc, stdout, stderr, argv):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.argv = argv

    @property
    def lines(self):
        return [ln for ln in self.stdout.splitlines() if ln.strip()]

    @property
    def messages(self):
        """stdout parsed as one JSON object per line (fails on other lines)."""
        out = []
        for ln in self.lines:
            try:
                obj = json.loads(ln)
            except ValueError:
                raise AssertionError('stdout line is not JSON: %r\n%s'
                                     % (redact(ln), self.describe()))
            if not isinstance(obj, dict):
                raise AssertionError('stdout line is not a JSON object: %r'
                                     % redact(ln))
            out.append(obj)
        return out

    @property
    def events(self):
        return [m for m in self.messages if m.get('event') in EVENT_KINDS]

    def describe(self):
        return ('command: %s\nexit code: %s\n--- stdout ---\n%s\n'
                '--- stderr ---\n%s' % (
                    ' '.join(shlex.quote(a) for a in self.argv[-6:]), self.rc,
                    redact(self.stdout), redact(self.stderr)[-6000:]))


def libconfig_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')
    if isinstance(value, (list, tuple)):
        return '[%s]' % ', '.join(libconfig_value(v) for v in value)
    raise TypeError(value)


def libconfig_group(name, group, indent=''):
    """('chat', {'matrix': {'rooms': [...]}}) -> 'chat: { matrix: { ... }; };'
    (nested dicts become groups)."""
    inner = indent + '  '
    lines = ['%s%s: {' % (indent, name)]
    for key, value in group.items():
        if isinstance(value, dict):
            lines.append(libconfig_group(key, value, inner))
        else:
            lines.append('%s%s = %s;' % (inner, key, libconfig_value(value)))
    lines.append('%s};' % indent)
    return '\n'.join(lines)


def libconfig_sink(sink):
    """{'name': 'x', 'type': 'slack', ...} -> '{ name = "x"; ... }'."""
    keys = ['name', 'type'] + [k for k in sink if k not in ('name', 'type')]
    return '{ %s }' % ' '.join('%s = %s;' % (k, libconfig_value(sink[k]))
                               for k in keys if k in sink)


STDOUT_SINK = {'name': 'out', 'type': 'stdout', 'format': 'json'}
NOTIFY_EXTRAS = ('digest_threshold', 'max_age', 'shutdown_grace')


class Bridge:
    """One state directory + config file, and the daemon runs against it."""

    def __init__(self, tmp, fake_url, **overrides):
        self.tmp = tmp
        self.state_dir = os.path.join(tmp, 'state')
        self.config_path = os.path.join(tmp, 'ytbridge.conf')
        self.snapshot_path = os.path.join(self.state_dir, 'snapshot.json')
        self.settings = {
            'url': fake_url, 'token': TOKEN, 'api': 'auto',
            'poll_interval': 10, 'page_size': 2, 'timeout': 5,
            'first_run': 'announce', 'removal_confirmations': 2,
            'mass_removal_limit': 10, 'sink_format': 'json',
            # One message per change unless a test is about digests.
            'digest_threshold': 1000,
            'log_level': 'debug',
        }
        self.settings.update(overrides)
        os.makedirs(self.state_dir, exist_ok=True)
        self.write_config()

    def configure(self, **overrides):
        self.settings.update(overrides)
        self.write_config()

    def config_text(self):
        s = self.settings
        yt = ['url = %s;' % libconfig_value(s['url'])]
        if s.get('token') is not None:
            yt.append('token = %s;' % libconfig_value(s['token']))
        for key in ('api', 'poll_interval', 'page_size', 'timeout'):
            yt.append('%s = %s;' % (key, libconfig_value(s[key])))
        lines = [
            'youtrack: {',
            *('  ' + x for x in yt),
            '};',
            'state_dir = %s;' % libconfig_value(self.state_dir),
            'notify: {',
            '  first_run = %s;' % libconfig_value(s['first_run']),
            '  removal_confirmations = %d;' % s['removal_confirmations'],
            '  mass_removal_limit = %d;' % s['mass_removal_limit'],
            *('  %s = %s;' % (k, libconfig_value(s[k]))
              for k in NOTIFY_EXTRAS if s.get(k) is not None),
            '};',
        ]
        if s.get('sinks') is None:
            lines.append('sinks = ( { name = "out"; type = "stdout"; '
                         'format = %s; } );' % libconfig_value(s['sink_format']))
        else:
            lines.append('sinks = (\n%s\n);' % ',\n'.join(
                '  ' + libconfig_sink(x) for x in s['sinks']))
        # Port 0: the kernel picks one, so daemons of parallel tests never
        # collide; the daemon logs the port it got.
        lines.append('http: { listen = %s; };'
                     % libconfig_value(s.get('http_listen', '127.0.0.1:0')))
        lines.append('log: { level = %s; };' % libconfig_value(s['log_level']))
        if s.get('chat'):
            lines.append(libconfig_group('chat', s['chat']))
        if s.get('cluster'):
            # Issue 12: cluster: { etcd = [...]; prefix = "..."; lease_ttl = n;
            # member = "..."; user = "..."; password_file = "..."; };
            lines.append(libconfig_group('cluster', s['cluster']))
        return '\n'.join(lines) + '\n'

    def write_config(self, text=None):
        with open(self.config_path, 'w', encoding='utf-8') as f:
            f.write(self.config_text() if text is None else text)

    def argv(self, *args, config=True):
        key = 'YTBRIDGE_WRAPPER'
        if '--once' in args and 'YTBRIDGE_WRAPPER_ONCE' in os.environ:
            key = 'YTBRIDGE_WRAPPER_ONCE'
        wrapper = shlex.split(os.environ.get(key, ''))
        argv = wrapper + [os.environ['YTBRIDGE_BIN']]
        if os.geteuid() == 0:
            # The daemon refuses root without it; CI runs as root.
            argv.append('--allow-root')
        if config:
            argv += ['-c', self.config_path]
        return argv + list(args)

    def env(self, extra=None, drop=()):
        env = {k: v for k, v in os.environ.items()
               if k not in _PROXY_VARS and not k.startswith('YTBRIDGE_')}
        # keep the sanitizer settings meson passes; drop other YTBRIDGE_* so
        # a developer's own environment cannot change the outcome.
        env['no_proxy'] = '*'
        env['LC_ALL'] = env.get('LC_ALL', 'C.UTF-8')
        for key in drop:
            env.pop(key, None)
        env.update(extra or {})
        return env

    def run(self, *args, timeout=60, env=None, config=True):
        """Run the daemon to completion (e.g. with --once); bounded."""
        argv = self.argv(*args, config=config)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=self.env(env))
        _live.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout * SCALE)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError('daemon did not finish within %ss:\n%s' % (
                timeout * SCALE, Result(None, out.decode('utf-8', 'replace'),
                                        err.decode('utf-8', 'replace'),
                                        argv).describe()))
        return Result(proc.returncode, out.decode('utf-8', 'replace'),
                      err.decode('utf-8', 'replace'), argv)

    def once(self, *args, **kw):
        return self.run('--once', *args, **kw)

    def start(self, *args, env=None):
        """Start the daemon in the background; returns a Daemon."""
        return Daemon(self.argv(*args), self.env(env), self.tmp)

    def snapshot_bytes(self):
        try:
            with open(self.snapshot_path, 'rb') as f:
                return f.read()
        except FileNotFoundError:
            return None

    def snapshot(self):
        raw = self.snapshot_bytes()
        return None if raw is None else json.loads(raw)

    def state_listing(self):
        """Name -> bytes of every regular file in the state dir (lock excluded)."""
        out = {}
        if os.path.isdir(self.state_dir):
            for name in sorted(os.listdir(self.state_dir)):
                path = os.path.join(self.state_dir, name)
                if name != 'lock' and os.path.isfile(path):
                    with open(path, 'rb') as f:
                        out[name] = f.read()
        return out


class Daemon:
    """A long-running ytbridge with stdout/stderr going to files."""

    def __init__(self, argv, env, tmp):
        self.argv = argv
        n = len([x for x in os.listdir(tmp) if x.startswith('daemon-')])
        self.out_path = os.path.join(tmp, 'daemon-%d.out' % n)
        self.err_path = os.path.join(tmp, 'daemon-%d.err' % n)
        with open(self.out_path, 'wb') as out, open(self.err_path, 'wb') as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=env)
        _live.append(self.proc)

    def _read(self, path):
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def result(self):
        return Result(self.proc.poll(), self._read(self.out_path),
                      self._read(self.err_path), self.argv)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signal the daemon and wait (bounded); returns its Result."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError('daemon ignored signal %d:\n%s'
                                     % (sig, self.result().describe()))
        return self.result()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def rich_text(block):
    """What a reader sees of a Slack rich_text block (doc/slack.md): the texts
    of its text and link elements (an unlabelled link shows its URL), emoji as
    :name:; sections, lists, quotes and preformatted parts one after another."""
    out = []

    def walk(elements):
        for el in elements or []:
            if not isinstance(el, dict):
                continue
            kind = el.get('type')
            if kind == 'text' and isinstance(el.get('text'), str):
                out.append(el['text'])
            elif kind == 'link':
                out.append(el.get('text') or el.get('url') or '')
            elif kind == 'emoji' and isinstance(el.get('name'), str):
                out.append(':%s:' % el['name'])
            elif isinstance(el.get('elements'), list):
                walk(el['elements'])

    walk(block.get('elements'))
    return ''.join(out)


_UNSAFE = re.compile('[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]')
_URL_OK = re.compile(r'^https?://[!#-&(-;=?-\[\]_a-z~]+$')


def slack_body_problem(j, answer=False):
    """None when j is a Slack body as the bridge must send it (tests/slack_check.h
    has the same rules for the unit tests), else the first problem found:
    exactly {text, mrkdwn: false, blocks, unfurl_links: false, unfurl_media:
    false} (an answer: {response_type: ephemeral, text, mrkdwn: false,
    blocks}); an entity-escaped fallback text of 1..4000 characters; 1..50
    rich_text blocks of one rich_text_section each, holding only text (style
    bold/code only), link (safe http(s) URL, no style) and emoji elements, no
    unsafe character but a newline, 1..3000 visible characters per block."""
    keys = ({'response_type', 'text', 'mrkdwn', 'blocks'} if answer else
            {'text', 'mrkdwn', 'blocks', 'unfurl_links', 'unfurl_media'})
    if not isinstance(j, dict) or set(j) != keys:
        return 'top-level keys %r' % (sorted(j) if isinstance(j, dict) else j)
    if j['mrkdwn'] is not False:
        return 'the fallback is not sent with "mrkdwn": false'
    if answer and j['response_type'] != 'ephemeral':
        return 'not ephemeral'
    if not answer and (j['unfurl_links'] is not False or j['unfurl_media'] is not False):
        return 'unfurling is on'
    text = j['text']
    if (not isinstance(text, str) or not 1 <= len(text) <= 4000 or '<' in text or '>' in text
            or re.search(r'&(?!amp;|lt;|gt;)', text) or _UNSAFE.search(text)):
        return 'fallback text %r' % (text,)
    blocks = j['blocks']
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return 'not 1..50 blocks'
    for block in blocks:
        if (not isinstance(block, dict) or set(block) != {'type', 'elements'}
                or block['type'] != 'rich_text' or not isinstance(block['elements'], list)
                or len(block['elements']) != 1):
            return 'not a rich_text block: %r' % (block,)
        sec = block['elements'][0]
        if (not isinstance(sec, dict) or set(sec) != {'type', 'elements'}
                or sec['type'] != 'rich_text_section' or not isinstance(sec['elements'], list)
                or not sec['elements']):
            return 'not one non-empty rich_text_section: %r' % (block,)
        visible = 0
        for el in sec['elements']:
            kind = el.get('type') if isinstance(el, dict) else None
            if kind == 'text':
                style = el.get('style', {'bold': True})
                if (not set(el) <= {'type', 'text', 'style'} or not isinstance(el.get('text'), str)
                        or not el['text'] or _UNSAFE.search(el['text'])
                        or not isinstance(style, dict) or not style
                        or not set(style) <= {'bold', 'code'}
                        or any(v is not True for v in style.values())):
                    return 'text element %r' % (el,)
                visible += len(el['text'])
            elif kind == 'link':
                label = el.get('text')
                if (not set(el) <= {'type', 'url', 'text'} or not isinstance(el.get('url'), str)
                        or not _URL_OK.match(el['url'])
                        or (label is not None and (not isinstance(label, str) or not label
                                                   or _UNSAFE.search(label) or '\n' in label))):
                    return 'link element %r' % (el,)
                visible += len(label or el['url'])
            elif kind == 'emoji':
                if set(el) != {'type', 'name'} or not re.match(r'^[a-z0-9_+-]+$',
                                                             str(el['name'])):
                    return 'emoji element %r' % (el,)
                visible += len(el['name']) + 2
            else:
                return 'an element the bridge never sends: %r' % (el,)
        if not 1 <= visible <= 3000:
            return 'a block of %d visible characters' % visible
    return None


def slack_literal(j, kind, text):
    """How many unstyled elements of kind ('text' or 'link') in Slack body j's
    blocks show exactly text."""
    return sum(1 for block in j.get('blocks') or []
               for sec in block.get('elements') or []
               for el in sec.get('elements') or []
               if el.get('type') == kind and el.get('text') == text and 'style' not in el)


def message_text(rec):
    """Everything human-readable in one received message, for matching:
    Slack text + block texts (rich_text as a reader sees it), Matrix body,
    hookshot text, webhook JSON."""
    j = rec.get('json')
    if not isinstance(j, dict):
        return rec.get('body') or ''
    parts = []
    for key in ('text', 'body'):
        if isinstance(j.get(key), str):
            parts.append(j[key])
    for block in j.get('blocks') or []:
        if not isinstance(block, dict):
            continue
        if block.get('type') == 'rich_text':
            parts.append(rich_text(block))
            continue
        for obj in [block.get('text')] + list(block.get('fields') or []) \
                + list(block.get('elements') or []):
            if isinstance(obj, dict) and isinstance(obj.get('text'), str):
                parts.append(obj['text'])
    if not parts:
        parts.append(json.dumps(j, ensure_ascii=False))
    return '\n'.join(parts)


def need_binary():
    bin_path = os.environ.get('YTBRIDGE_BIN')
    if not bin_path:
        raise unittest.SkipTest('YTBRIDGE_BIN is not set')
    if not os.access(bin_path, os.X_OK):
        raise RuntimeError('YTBRIDGE_BIN=%s is not executable' % bin_path)


class BridgeTest(unittest.TestCase):
    """Base class: a fresh fake + temp dir per test, everything torn down."""

    fake_args = ()
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        need_binary()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='ytbridge-it-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.fake = self.start_fake(*self.fake_args)
        self.bridge = Bridge(self.tmp, self.fake.url)

    def start_fake(self, *args, projects=None):
        fake = FakeYouTrack(*args, projects=projects)
        self.addCleanup(fake.stop)
        return fake

    def start_daemon(self, *args, env=None, bridge=None):
        daemon = (bridge or self.bridge).start(*args, env=env)
        self.addCleanup(daemon.kill)
        return daemon

    def fail_with(self, msg, result=None):
        text = msg
        if result is not None:
            text += '\n' + result.describe()
        text += '\n--- fake log (tail) ---\n' + self.fake.log()[-3000:]
        self.fail(redact(text))

    # -- assertions ----------------------------------------------------------

    def check(self, cond, msg, result=None):
        if not cond:
            self.fail_with(msg, result)

    def assert_ok(self, result, rc=0):
        self.check(result.rc == rc, 'expected exit code %d' % rc, result)
        self.assert_no_token(result)
        return result

    def assert_no_token(self, result):
        # Checked without ever printing it.
        for secret in SECRETS:
            self.check(secret not in result.stdout
                       and secret not in result.stderr,
                       'a secret appears in the daemon output (redacted here)',
                       result)

    def events_summary(self, result):
        return [(e['event'], e['project'].get('id'),
                 e['project'].get('shortName'), e['project'].get('name'))
                for e in result.events]

    def assert_events(self, result, expected):
        """expected: [(event, id, shortName, name), ...] in announce order."""
        got = self.events_summary(result)
        if got != expected:
            self.fail_with('announced events differ:\n  expected %r\n  got      %r'
                           % (expected, got), result)

    def assert_quiet(self, result):
        self.check(result.lines == [], 'expected nothing on stdout', result)

    def assert_poll_failed(self, result, classes, before):
        """The contract for a failed poll: rc 1, silence, state unchanged."""
        self.check(result.rc == 1, 'a failed poll with --once must exit 1',
                   result)
        # Nothing about projects; an auth failure raises exactly one operator
        # alert, through the outbox (whose journal is empty again afterwards).
        alerts = [m for m in result.messages if m.get('event') == 'alert'
                  and m.get('kind') == 'youtrack_auth']
        self.check(len(result.lines) == len(alerts),
                   'expected nothing on stdout but an auth alert', result)
        self.check(not alerts or ('auth' in classes and len(alerts) == 1),
                   'an alert for a failure that is not about credentials',
                   result)

        def settled(listing):
            return {k: v for k, v in listing.items()
                    if not (k == 'outbox.jsonl' and v == b'')}
        self.check(settled(self.bridge.state_listing()) == settled(before),
                   'the state directory changed after a failed poll', result)
        self.assert_no_token(result)
        pattern = re.compile(r'\b(%s)\b' % '|'.join(classes), re.I)
        hit = [ln for ln in result.stderr.splitlines()
               if pattern.search(ln) and re.search(r'error|fail', ln, re.I)]
        self.check(hit, 'stderr names no error class among %r' % (classes,),
                   result)

    def baseline(self, projects=None, **settings):
        """Establish a snapshot of `projects` quietly, restore settings."""
        if projects is not None:
            self.fake.set_projects(projects)
        saved = dict(self.bridge.settings)
        self.bridge.configure(first_run='baseline', **settings)
        result = self.bridge.once()
        self.assert_ok(result)
        self.check([m.get('event') for m in result.messages] == ['baseline'],
                   'expected exactly one baseline message', result)
        self.bridge.settings = saved
        self.bridge.write_config()
        return result


class DeliveryTest(BridgeTest):
    """BridgeTest plus fake receivers (self.rx) and sink helpers."""

    def setUp(self):
        super().setUp()
        self.rx = Receivers()
        self.addCleanup(self.rx.stop)
        self.bridge.configure(removal_confirmations=1)

    def fail_with(self, msg, result=None):
        msg += '\n--- receivers log (tail) ---\n' + self.rx.log()[-2000:]
        super().fail_with(msg, result)

    def use_sinks(self, *sinks, **settings):
        self.bridge.configure(sinks=list(sinks), **settings)

    def quiet_baseline(self, projects):
        """Snapshot `projects` with a stdout-only config: no sink sees it."""
        sinks = self.bridge.settings.get('sinks')
        self.bridge.settings['sinks'] = None
        try:
            self.baseline(projects)
        finally:
            self.bridge.configure(sinks=sinks)

    def deliver_once(self, timeout=60):
        """One --once run (poll, commit, deliver what is due); rc 0."""
        return self.assert_ok(self.bridge.once(timeout=timeout))

    def daemon_until(self, predicate, timeout=30, what='delivery'):
        """Run the daemon until predicate() holds, then SIGTERM it (rc 0)."""
        daemon = self.start_daemon()
        try:
            deadline_wait(predicate, timeout, step=0.1, what=what)
        except AssertionError as e:
            self.fail_with(str(e), daemon.stop(timeout=20))
        return self.assert_ok(daemon.stop(timeout=20))

    def texts(self, receiver):
        return [message_text(r) for r in self.rx.accepted(receiver)]


def main():
    """unittest.main(): exits 1 on failure, 77 (meson's "skipped") when
    YTBRIDGE_BIN is not set."""
    if not os.environ.get('YTBRIDGE_BIN'):
        sys.stderr.write('YTBRIDGE_BIN is not set; skipping\n')
        sys.exit(77)
    unittest.main(verbosity=2)
