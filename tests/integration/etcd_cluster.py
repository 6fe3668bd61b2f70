"""A real etcd cluster for the integration tests (standard library only).

EtcdCluster starts N etcd members (the `etcd` binary, Debian's etcd-server) on
127.0.0.1 with free client and peer ports and temporary data directories, and
talks to them through the v3 JSON gateway (POST /v3/..., keys and values
base64) for the tests' assertions. Members can be killed (SIGKILL), stopped
(SIGTERM), paused and restarted on their data directory; close() stops them
all, and the harness' atexit safety net kills any left over.

Environment:
  ETCD_BIN   the etcd binary (default: `etcd` on PATH); the tests are skipped
             when there is none

The members run with a short heartbeat (50 ms) and election timeout (500 ms),
so a lost member or quorum is noticed within about a second, and with etcd's
default request limits (--max-request-bytes is never raised: the daemon must
live with 1.5 MiB per request).
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

import harness
from harness import SCALE, deadline_wait, redact

ETCD_BIN = os.environ.get('ETCD_BIN') or shutil.which('etcd')
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def need_etcd():
    """unittest.SkipTest (meson: skipped) when no etcd binary is installed."""
    if not ETCD_BIN or not os.access(ETCD_BIN, os.X_OK):
        raise unittest.SkipTest('etcd is not installed (Debian: etcd-server)')


def main():
    """harness.main(), except that without etcd the run is reported to meson
    as skipped (exit 77) once the tests that need no etcd have passed."""
    if ETCD_BIN and os.access(ETCD_BIN, os.X_OK):
        harness.main()
    if not os.environ.get('YTBRIDGE_BIN'):
        sys.stderr.write('YTBRIDGE_BIN is not set; skipping\n')
        sys.exit(77)
    prog = unittest.main(verbosity=2, exit=False)
    sys.exit(77 if prog.result.wasSuccessful() else 1)


def b64(data):
    if isinstance(data, str):
        data = data.encode('utf-8')
    return base64.b64encode(data).decode('ascii')


def unb64(text):
    return base64.b64decode(text or '')


def prefix_end(prefix):
    """etcd's range_end for "every key that starts with prefix"."""
    raw = bytearray(prefix.encode('utf-8') if isinstance(prefix, str) else prefix)
    while raw:
        if raw[-1] < 0xff:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b'\0'


def free_ports(n):
    """n distinct loopback ports the kernel just handed out (all bound at
    once, then released: the caller retries when one is taken meanwhile)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdError(Exception):
    """An etcd answer that is not a success (status and body kept)."""

    def __init__(self, status, body, endpoint):
        super().__init__('%s: HTTP %s %s' % (endpoint, status, redact(body)[:300]))
        self.status = status
        self.body = body
        self.endpoint = endpoint


class Member:
    def __init__(self, index, name, client_port, peer_port, data_dir, log_path):
        self.index = index
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc = None
        self.down = False       # stopped or killed on purpose

    @property
    def client_url(self):
        return 'http://127.0.0.1:%d' % self.client_port

    @property
    def peer_url(self):
        return 'http://127.0.0.1:%d' % self.peer_port

    def running(self):
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    """n etcd members on loopback. Use as:

        cluster = EtcdCluster(tmp)      # started; every member healthy
        self.addCleanup(cluster.close)
    """

    START_ATTEMPTS = 4

    def __init__(self, tmp=None, n=3, start=True):
        need_etcd()
        self.own_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix='ytbridge-etcd-')
        self.n = n
        self.members = []
        self.token = 'ytbridge-test-' + uuid.uuid4().hex
        self.auth = None        # (user, password) once enable_auth() ran
        self._auth_token = None
        if start:
            self.start()

    # -- life cycle ------------------------------------------------------

    def _argv(self, m):
        initial = ','.join('%s=%s' % (x.name, x.peer_url) for x in self.members)
        return [ETCD_BIN,
                '--name', m.name,
                '--data-dir', m.data_dir,
                '--listen-client-urls', m.client_url,
                '--advertise-client-urls', m.client_url,
                '--listen-peer-urls', m.peer_url,
                '--initial-advertise-peer-urls', m.peer_url,
                '--initial-cluster', initial,
                '--initial-cluster-state', 'new',
                '--initial-cluster-token', self.token,
                '--auto-compaction-mode=revision',
                '--auto-compaction-retention=1000',
                '--heartbeat-interval', '50',
                '--election-timeout', '500',
                '--logger', 'zap', '--log-outputs', 'stderr',
                '--log-level', 'info']

    def _env(self):
        # An operator's ETCD_* variables (etcd reads every flag from them) or a
        # proxy must not change what runs here.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('ETCD') and k.lower() not in
               ('http_proxy', 'https_proxy', 'all_proxy', 'no_proxy')}
        env['no_proxy'] = '*'
        return env

    def _spawn(self, m):
        log = open(m.log_path, 'ab')
        try:
            m.proc = subprocess.Popen(self._argv(m), stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, env=self._env())
        finally:
            log.close()
        harness._live.append(m.proc)

    def _bind_failed(self, m):
        return m.proc.poll() is not None and b'address already in use' in self._log_bytes(m)

    def start(self):
        """Start every member on fresh ports and wait until each is healthy;
        a port taken between picking and binding makes it start over."""
        for attempt in range(self.START_ATTEMPTS):
            ports = free_ports(2 * self.n)
            base = os.path.join(self.tmp, 'etcd-try%d' % attempt)
            os.makedirs(base)
            self.members = [
                Member(i, 'm%d' % i, ports[2 * i], ports[2 * i + 1],
                       os.path.join(base, 'm%d.data' % i),
                       os.path.join(base, 'm%d.log' % i))
                for i in range(self.n)]
            for m in self.members:
                self._spawn(m)
            try:
                self.wait_healthy(timeout=30)
                return self
            except AssertionError:
                collided = any(self._bind_failed(m) for m in self.members)
                if not collided or attempt == self.START_ATTEMPTS - 1:
                    msg = self.describe()
                    self._kill_all()
                    raise AssertionError('etcd cluster did not become healthy\n' + msg)
                self._kill_all()
        raise AssertionError('unreachable')

    def _kill_all(self):
        for m in self.members:
            if m.running():
                m.proc.kill()
            if m.proc is not None:
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass

    def close(self):
        """Stop every member (SIGKILL: nothing of theirs is kept)."""
        for m in self.members:
            if m.running():
                # SIGCONT first: a member paused by a test ignores nothing else.
                m.proc.send_signal(signal.SIGCONT)
        self._kill_all()
        if self.own_tmp:
            shutil.rmtree(self.tmp, True)

    def kill(self, i):
        """SIGKILL member i and wait for it to be gone (its data stays)."""
        m = self.members[i]
        m.down = True
        if m.running():
            m.proc.kill()
            m.proc.wait(10)

    def stop(self, i, timeout=15):
        """SIGTERM member i (a clean stop) and wait; its data stays."""
        m = self.members[i]
        m.down = True
        if m.running():
            m.proc.send_signal(signal.SIGCONT)
            m.proc.terminate()
            try:
                m.proc.wait(timeout * SCALE)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(10)

    def pause(self, i):
        self.members[i].proc.send_signal(signal.SIGSTOP)

    def resume(self, i):
        self.members[i].proc.send_signal(signal.SIGCONT)

    def restart(self, i, wait=True):
        """Start member i again on its data directory and ports (stopping it
        first if it still runs). wait: until it answers /health true, which
        needs a quorum with it."""
        m = self.members[i]
        self.stop(i)
        m.down = False
        for attempt in range(20):
            self._spawn(m)
            # Listening is all one member can do alone: healthy needs a quorum.
            deadline_wait(lambda: m.proc.poll() is not None or self.member_listening(i),
                          15, step=0.05, what='etcd member %s to listen' % m.name)
            if m.running() or not self._bind_failed(m):
                break
            # Its port was taken while it was down: wait for it to come free.
            time.sleep(0.5)
        if wait:
            self.wait_member_healthy(i)
        return m

    def running(self):
        return [m.index for m in self.members if m.running()]

    # -- what the bridges get --------------------------------------------

    def endpoints(self):
        """Every member's client URL (the bridges' cluster.etcd list)."""
        return [m.client_url for m in self.members]

    def endpoint(self, i):
        return self.members[i].client_url

    # -- health ----------------------------------------------------------

    def member_listening(self, i):
        try:
            socket.create_connection(('127.0.0.1', self.members[i].client_port), 1).close()
            return True
        except OSError:
            return False

    def member_health(self, i, timeout=2):
        """(HTTP status, body dict) of member i's /health, or (None, error)."""
        try:
            status, body = self._http('GET', self.members[i].client_url + '/health',
                                      None, timeout)
            return status, json.loads(body)
        except (OSError, ValueError) as e:
            return None, str(e)

    def member_healthy(self, i):
        status, body = self.member_health(i)
        return status == 200 and isinstance(body, dict) and body.get('health') == 'true'

    def wait_member_healthy(self, i, timeout=30):
        try:
            deadline_wait(lambda: self.member_healthy(i), timeout, step=0.1,
                          what='etcd member %s healthy' % self.members[i].name)
        except AssertionError as e:
            raise AssertionError('%s\n%s' % (e, self.describe()))

    def wait_healthy(self, timeout=30):
        """Every running member answers /health with {"health": "true"}."""
        def all_healthy():
            for m in self.members:
                if not m.down and m.proc is not None and m.proc.poll() is not None:
                    raise AssertionError('etcd member %s exited (rc %s)'
                                         % (m.name, m.proc.returncode))
            return all(self.member_healthy(m.index) for m in self.members
                       if m.running())
        deadline_wait(all_healthy, timeout, step=0.1, what='every etcd member healthy')

    def has_quorum(self):
        return any(self.member_healthy(i) for i in self.running())

    # -- the JSON gateway ------------------------------------------------

    def _http(self, method, url, data, timeout):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            req.add_header('Content-Type', 'application/json')
        if self._auth_token:
            req.add_header('Authorization', self._auth_token)
        try:
            with _NO_PROXY.open(req, timeout=timeout * SCALE) as resp:
                return resp.status, resp.read().decode('utf-8', 'replace')
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode('utf-8', 'replace')

    def call(self, path, data, member=None, timeout=5, auth=True):
        """POST data to path on member (default: the first running member
        that answers); the answer's JSON. EtcdError on an error answer,
        OSError when no member answered."""
        order = [member] if member is not None else self.running()
        last = None
        for i in order:
            try:
                status, text = self._http('POST', self.members[i].client_url + path, data,
                                          timeout)
            except OSError as e:
                last = e
                continue
            if status == 401 and auth and self.auth and 'token' in text:
                self._authenticate(i)
                status, text = self._http('POST', self.members[i].client_url + path,
                                          data, timeout)
            if status != 200:
                raise EtcdError(status, text, self.members[i].name)
            return json.loads(text)
        raise last or OSError('no etcd member is running')

    def _authenticate(self, i):
        user, password = self.auth
        self._auth_token = None
        got = self.call('/v3/auth/authenticate', {'name': user, 'password': password},
                        member=i, auth=False)
        self._auth_token = got['token']

    def put(self, key, value, lease=None):
        data = {'key': b64(key), 'value': b64(value)}
        if lease:
            data['lease'] = str(lease)
        return self.call('/v3/kv/put', data)

    def range(self, key, end=None, keys_only=False, serializable=False, member=None,
              timeout=5):
        data = {'key': b64(key)}
        if end is not None:
            data['range_end'] = b64(end)
        if keys_only:
            data['keys_only'] = True
        if serializable:
            data['serializable'] = True
        return self.call('/v3/kv/range', data, member=member, timeout=timeout)

    def get(self, key, **kw):
        """The value of key (bytes), or None when absent."""
        kvs = self.range(key, **kw).get('kvs') or []
        return unb64(kvs[0].get('value')) if kvs else None

    def get_kv(self, key, **kw):
        """{key, value (bytes), lease (int), create_revision, mod_revision} or None."""
        kvs = self.range(key, **kw).get('kvs') or []
        if not kvs:
            return None
        kv = kvs[0]
        return {'key': unb64(kv['key']).decode('utf-8', 'replace'),
                'value': unb64(kv.get('value')), 'lease': int(kv.get('lease') or 0),
                'create_revision': int(kv.get('create_revision') or 0),
                'mod_revision': int(kv.get('mod_revision') or 0)}

    def keys(self, prefix, **kw):
        """Every key under prefix, decoded, in etcd's (byte) order."""
        got = self.range(prefix, prefix_end(prefix), keys_only=True, **kw)
        return [unb64(kv['key']).decode('utf-8', 'replace') for kv in got.get('kvs') or []]

    def items(self, prefix, **kw):
        """{key: value bytes} of every key under prefix."""
        got = self.range(prefix, prefix_end(prefix), **kw)
        return {unb64(kv['key']).decode('utf-8', 'replace'): unb64(kv.get('value'))
                for kv in got.get('kvs') or []}

    def delete_prefix(self, prefix):
        return self.call('/v3/kv/deleterange', {'key': b64(prefix),
                                                'range_end': b64(prefix_end(prefix))})

    def lease_ttl(self, lease):
        """Seconds left on a lease (-1: it does not exist any more)."""
        got = self.call('/v3/lease/timetolive', {'ID': str(lease)})
        return int(got.get('TTL', -1))

    def revision(self):
        return int(self.call('/v3/kv/range', {'key': b64('\0'), 'limit': 1})
                   ['header']['revision'])

    def status(self, i, timeout=5):
        """/v3/maintenance/status of member i (dbSize, leader, raftIndex...)."""
        return self.call('/v3/maintenance/status', {}, member=i, timeout=timeout)

    def db_size(self, i=None):
        """The backend size in bytes of member i (default: the largest)."""
        members = [i] if i is not None else self.running()
        return max(int(self.status(x).get('dbSize') or 0) for x in members)

    def leader_member(self):
        """The index of the raft leader among the running members, or None."""
        ids, leaders = {}, set()
        for i in self.running():
            try:
                st = self.status(i, timeout=2)
            except (OSError, EtcdError):
                continue
            ids[int(st['header']['member_id'])] = i
            leaders.add(int(st.get('leader') or 0))
        found = [ids[x] for x in leaders if x in ids]
        return found[0] if len(found) == 1 else None

    def metrics_text(self, i):
        status, text = self._http('GET', self.members[i].client_url + '/metrics', None, 5)
        if status != 200:
            raise EtcdError(status, text, self.members[i].name)
        return text

    def metric(self, i, name):
        """The sum over every series of metric name on member i's /metrics."""
        total = 0.0
        for line in self.metrics_text(i).splitlines():
            if line.startswith(name + ' ') or line.startswith(name + '{'):
                total += float(line.rsplit(' ', 1)[1])
        return total

    def metric_all(self, name):
        """metric() summed over every running member."""
        return sum(self.metric(i, name) for i in self.running())

    # -- authentication --------------------------------------------------

    def enable_auth(self, user, password):
        """Create user with the root role and switch authentication on
        (etcd wants a root user first); later calls authenticate as user."""
        if user != 'root':
            self.call('/v3/auth/user/add', {'name': 'root', 'password': password})
            self.call('/v3/auth/user/grant', {'user': 'root', 'role': 'root'})
        self.call('/v3/auth/user/add', {'name': user, 'password': password})
        self.call('/v3/auth/user/grant', {'user': user, 'role': 'root'})
        self.call('/v3/auth/enable', {})
        self.auth = (user, password)
        self._authenticate(self.running()[0])

    # -- diagnostics -----------------------------------------------------

    def _log_bytes(self, m):
        try:
            with open(m.log_path, 'rb') as f:
                return f.read()
        except OSError:
            return b''

    def log(self, i, tail=3000):
        return redact(self._log_bytes(self.members[i]))[-tail:]

    def describe(self, tail=1500):
        out = []
        for m in self.members:
            state = ('running' if m.running() else
                     'not started' if m.proc is None else 'exited %s' % m.proc.returncode)
            out.append('--- etcd %s (%s, client %d, peer %d) ---\n%s'
                       % (m.name, state, m.client_port, m.peer_port,
                          self.log(m.index, tail)))
        return '\n'.join(out)
