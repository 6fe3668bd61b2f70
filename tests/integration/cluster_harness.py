"""Bridge groups for the cluster tests (issue 12; standard library only).

A Group is N replicas of one configuration (each with its own temporary
directory, state_dir and HTTP port 0; cluster.member names it) against one
EtcdCluster (etcd_cluster.py), one fake YouTrack and one set of fake
receivers. Both fakes run with --peer-pids, so every request they record names
the process that sent it and Group.who() says which replica that was: "only
the leader polls" and "no two replicas post" are checked on the fakes' own
logs.

What the tests rely on from the daemon (the interface of issue 12):
  - /readyz JSON: "cluster": {"role": "leader"|"standby"|"candidate",
    "member", "leader": name or null, "etcd": "ok" or an error text}; a
    standby that is connected to etcd and sees a live leader answers 200;
  - /metrics: ytbridge_cluster_leader (0/1), ytbridge_cluster_leader_changes_total,
    ytbridge_cluster_etcd_requests_total{result}, ytbridge_state_commit_seconds
    (a histogram);
  - log lines of module "cluster": "... leads now" on winning, "... leadership
    lost" on losing;
  - the leader key "<prefix>/leader" (bridge/state.h), held under a lease.

Messages are named by K-words: a project created as Kc<n>, one of the base
projects Ko<n> renamed to Kr<n>, or removed (its message names Ko<n>). The key
of a message is the set of K-words in it, so a key stands for one change
whatever the target's format.
"""

import collections
import http.client
import json
import os
import re
import shutil
import signal
import tempfile
import time
import uuid

from etcd_cluster import EtcdCluster, need_etcd
from harness import (SCALE, Bridge, BridgeTest, Receivers, deadline_wait, message_text,
                     need_binary, project, redact)
import test_ops

# Seconds; etcd's lease granularity is a second and keep-alives go out at a third
# of it. Under valgrind (YTBRIDGE_TIME_SCALE=10) a 2 s lease would expire while
# the daemon is merely slow, so it grows with the scale (the range is 2..60).
LEASE_TTL = max(2, min(60, int(round(2 * SCALE))))
# The same for waits, which deadline_wait() scales itself.
TTL_WAIT = LEASE_TTL / SCALE
POLL_INTERVAL = 10   # the configuration's minimum
# Member names no log line would contain by chance.
NAMES = ('alpha', 'bravo', 'charlie')
PAIR = NAMES[:2]
LISTEN_RE = re.compile(r'httpd: listening on 127\.0\.0\.1:(\d+) \(/healthz')
LEADS_RE = re.compile(r'^\S+ \w+ cluster: .*\bleads now\b.*$', re.M)
LOST_RE = re.compile(r'^\S+ \w+ cluster: .*\bleadership lost\b.*$', re.M)
PROJECT_PATHS = ('/api/admin/projects', '/rest/admin/project')
RECEIVERS = ('slack', 'matrix', 'hook')
KEY_RE = re.compile(r'\bK[corx]\d+\b')
FIRST_PAGE_RE = re.compile(r'(?:^|&)(?:%24|\$)skip=0(?:&|$)')


# The notice of a first run (first_run = "baseline": "Now tracking N projects on
# URL", a webhook event "baseline"): a group posts it once, when it starts; a new
# leader never again.
BASELINE = frozenset(['(baseline)'])
BASELINE_RE = re.compile(r'\b[Nn]ow tracking \d+ project')


def is_baseline(receiver, rec):
    if receiver == 'hook':
        return rec.get('event') == 'baseline'
    return bool(BASELINE_RE.search(message_text(rec)))


def key_of(text):
    return frozenset(KEY_RE.findall(text or ''))


def hook_key(rec):
    if rec.get('event') == 'baseline':
        return BASELINE
    j = rec.get('json') or {}
    names = [(j.get('project') or {}).get('name'), (j.get('previous') or {}).get('name')]
    return frozenset(n for n in names if n and KEY_RE.fullmatch(n))


def rec_key(receiver, rec):
    if receiver == 'hook':
        return hook_key(rec)
    return BASELINE if is_baseline(receiver, rec) else key_of(message_text(rec))


class Projects:
    """The fake's project list and the messages its changes must produce."""

    def __init__(self, n_base=8):
        self.n_base = n_base
        self.current = collections.OrderedDict(
            ('0-%d' % i, ('B%d' % i, 'Ko%d' % i)) for i in range(1, n_base + 1))
        self.expected = []      # one key per change, in the order made
        self.next_new = 1

    def base(self):
        return self.list()

    def list(self):
        return [project(pid, short, name) for pid, (short, name) in self.current.items()]

    def create(self, n=1):
        for _ in range(n):
            i = self.next_new
            self.next_new += 1
            # ids after every base project's (0-1 .. 0-n_base)
            self.current['0-%d' % (self.n_base + i)] = ('N%d' % i, 'Kc%d' % i)
            self.expected.append(frozenset(['Kc%d' % i]))
        return self

    def rename(self, i):
        pid = '0-%d' % i
        short, old = self.current[pid]
        assert old == 'Ko%d' % i, 'each base project changes once'
        self.current[pid] = (short, 'Kr%d' % i)
        self.expected.append(frozenset([old, 'Kr%d' % i]))
        return self

    def remove(self, i):
        pid = '0-%d' % i
        short, old = self.current.pop(pid)
        assert old == 'Ko%d' % i, 'each base project changes once'
        self.expected.append(frozenset([old]))
        return self


class Replica:
    def __init__(self, group, name, bridge, env):
        self.group = group
        self.name = name
        self.bridge = bridge
        self.env = env
        self.daemons = []
        self.paused = False

    @property
    def daemon(self):
        return self.daemons[-1] if self.daemons else None

    @property
    def pids(self):
        return {d.proc.pid for d in self.daemons}

    def start(self, *args):
        d = self.bridge.start(*args, env=self.env)
        self.group.register(d.kill)
        self.daemons.append(d)
        self.paused = False
        return d

    def alive(self):
        return self.daemon is not None and self.daemon.proc.poll() is None

    def stderr(self, all_runs=False):
        runs = self.daemons if all_runs else self.daemons[-1:]
        return ''.join(d.result().stderr for d in runs)

    def kill(self):
        """SIGKILL; returns the monotonic time just before the signal."""
        t = time.monotonic()
        self.daemon.proc.send_signal(signal.SIGKILL)
        self.daemon.proc.wait(10)
        self.paused = False
        return t

    def pause(self):
        t = time.monotonic()
        self.daemon.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        return t

    def resume(self):
        t = time.monotonic()
        self.daemon.proc.send_signal(signal.SIGCONT)
        self.paused = False
        return t

    def hup(self):
        self.daemon.proc.send_signal(signal.SIGHUP)

    # -- HTTP ------------------------------------------------------------

    def port(self, timeout=20):
        """The port of the running daemon's httpd (the last "listening on"
        line: a reload may move it)."""
        found = []

        def listening():
            if not self.alive():
                raise AssertionError('replica %s exited:\n%s'
                                     % (self.name, self.daemon.result().describe()))
            m = LISTEN_RE.findall(self.daemon.result().stderr)
            if m:
                found.append(int(m[-1]))
            return bool(m)
        deadline_wait(listening, timeout, what='replica %s listening' % self.name)
        return found[-1]

    def request(self, method, path, timeout=5):
        conn = http.client.HTTPConnection('127.0.0.1', self.port(), timeout=timeout * SCALE)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            status, text = resp.status, resp.read().decode('utf-8')
        finally:
            conn.close()
        self.group.assert_clean(text, '%s %s of replica %s' % (method, path, self.name))
        return status, text

    def readyz(self):
        """(status, parsed body) of GET /readyz."""
        status, text = self.request('GET', '/readyz')
        if status not in (200, 503):
            raise AssertionError('replica %s: /readyz answered %d: %s'
                                 % (self.name, status, text[:500]))
        return status, json.loads(text)

    def cluster(self):
        """(status, the "cluster" object of /readyz or None); (None, None) when
        the daemon does not answer."""
        try:
            status, doc = self.readyz()
        except (OSError, http.client.HTTPException, ValueError):
            return None, None
        return status, doc.get('cluster')

    def metrics(self):
        status, text = self.request('GET', '/metrics')
        if status != 200:
            raise AssertionError('replica %s: /metrics answered %d' % (self.name, status))
        return test_ops.parse_exposition(text)

    def metric(self, name, **labels):
        return test_ops.value_of(self.metrics(), name, **labels)


class Group:
    """Replicas named names (a, b, c) sharing one configuration; nothing is
    started until start()."""

    def __init__(self, tmp, etcd, fake, rx=None, names=NAMES, prefix=None,
                 lease_ttl=LEASE_TTL, register=None, member_from_env=(), secrets=(),
                 cluster_extra=None, **settings):
        self.tmp = tmp
        self.etcd = etcd
        self.fake = fake
        self.rx = rx
        self.prefix = prefix or '/ytbridge/test-' + uuid.uuid4().hex
        self.lease_ttl = lease_ttl
        self.register = register or (lambda fn: None)
        self.secrets = tuple(secrets)
        self.replicas = collections.OrderedDict()
        base = dict(first_run='baseline', removal_confirmations=1, poll_interval=POLL_INTERVAL,
                    page_size=50, digest_threshold=1000, log_level='debug')
        if rx is not None:
            base['sinks'] = [rx.slack_sink(), rx.matrix_sink(), rx.webhook_sink()]
        base.update(settings)
        for name in names:
            rtmp = os.path.join(tmp, 'replica-' + name)
            os.makedirs(rtmp)
            block = self.cluster_block(name, **(cluster_extra or {}))
            env = None
            if name in member_from_env:
                # cluster.member left out: $YTBRIDGE_MEMBER names the replica
                del block['member']
                env = {'YTBRIDGE_MEMBER': name}
            bridge = Bridge(rtmp, fake.url, cluster=block, **base)
            self.replicas[name] = Replica(self, name, bridge, env)

    def cluster_block(self, member, **extra):
        block = collections.OrderedDict(
            [('etcd', self.etcd.endpoints()), ('prefix', self.prefix),
             ('lease_ttl', self.lease_ttl), ('member', member)])
        block.update(extra)
        return block

    def __getitem__(self, name):
        return self.replicas[name]

    def names(self):
        return list(self.replicas)

    def start(self, *names):
        for name in names or self.names():
            self.replicas[name].start()
        for name in names or self.names():
            self.replicas[name].port()

    def live(self, names=None):
        return [r for n, r in self.replicas.items()
                if (names is None or n in names) and r.alive() and not r.paused]

    # -- attribution -----------------------------------------------------

    def who(self, pid):
        """The replica that ran as pid, or '?'."""
        for name, r in self.replicas.items():
            if pid in r.pids:
                return name
        return '?'

    def polls(self, since=None):
        """[(t, replica)] of every project-list request the fake saw."""
        return [(r['t'], self.who(r.get('pid'))) for r in self.fake.requests()
                if r['path'].startswith(PROJECT_PATHS) and (since is None or r['t'] >= since)]

    def poll_starts(self, since=None):
        """[(t, replica)] of the first request of every poll (page $skip=0)."""
        return [(r['t'], self.who(r.get('pid'))) for r in self.fake.requests()
                if (since is None or r['t'] >= since) and (
                    r['path'].startswith('/rest/admin/project') or (
                        r['path'].startswith('/api/admin/projects')
                        and FIRST_PAGE_RE.search(r['query'] or '')))]

    def youtrack_requests(self, since=None):
        return [(r['t'], self.who(r.get('pid')), r['path']) for r in self.fake.requests()
                if since is None or r['t'] >= since]

    def posts(self, receivers=RECEIVERS, since=None):
        """[(t, replica, receiver, kind, record)] of every request a receiver
        recorded: accepted, rejected and (Matrix) duplicates and lookups."""
        out = []
        for rcv in receivers:
            got = self.rx.received(rcv)
            for kind in ('accepted', 'rejected', 'duplicates', 'lookups', 'syncs',
                         'memberships'):
                for rec in got.get(kind) or []:
                    if since is None or rec['t'] >= since:
                        out.append((rec['t'], self.who(rec.get('pid')), rcv, kind, rec))
        out.sort(key=lambda x: x[0])
        return out

    # -- leadership ------------------------------------------------------

    def views(self, names=None):
        """{name: (status, cluster object)} of every live, running replica."""
        return {r.name: r.cluster() for r in self.live(names)}

    def agreed_leader(self, views):
        """The one leader every view agrees on, or None."""
        roles = {n: (v[1] or {}).get('role') for n, v in views.items()}
        leaders = [n for n, role in roles.items() if role == 'leader']
        if len(leaders) != 1:
            return None
        lead = leaders[0]
        for n, (status, c) in views.items():
            if status is None or not c or c.get('etcd') != 'ok' or c.get('member') != n:
                return None
            if c.get('leader') != lead:
                return None
            if n != lead and c.get('role') != 'standby':
                return None
        return lead

    def wait_leader(self, names=None, timeout=None, what=None):
        """Wait until the live replicas among names agree on one leader (the
        others standby, etcd ok); returns its name."""
        timeout = timeout or self.lease_ttl / SCALE + 15
        last = {}
        found = []

        def agreed():
            last.clear()
            last.update(self.views(names))
            lead = self.agreed_leader(last)
            if lead:
                found.append(lead)
            return lead is not None
        try:
            deadline_wait(agreed, timeout, step=0.1, what=what or 'one agreed leader')
        except AssertionError as e:
            raise AssertionError('%s; last views: %r' % (e, last))
        return found[-1]

    def wait_baseline(self, name=None, timeout=30):
        """The first poll of the group committed (name, or any replica when
        None, logged it) and its first-run notice delivered everywhere, so that
        a fault set next hits the messages of a change, not the notice."""
        who = [name] if name else self.names()
        deadline_wait(lambda: any('first run: now tracking' in self[n].stderr() for n in who),
                      timeout, step=0.1, what='the baseline poll of %s' % '/'.join(who))
        if self.rx is not None:
            self.wait_delivered([BASELINE], timeout=timeout, what='the first-run notice')

    # -- what the receivers got ------------------------------------------

    def keys_at(self, receiver, kind='accepted'):
        return [rec_key(receiver, rec) for rec in self.rx.received(receiver)[kind]]

    def wait_delivered(self, keys, receivers=RECEIVERS, timeout=60, what=None):
        keys = set(keys)
        missing = {}

        def done():
            missing.clear()
            for rcv in receivers:
                lack = keys - set(self.keys_at(rcv))
                if lack:
                    missing[rcv] = sorted(map(sorted, lack))
            return not missing
        try:
            deadline_wait(done, timeout, step=0.2, what=what or 'every message delivered')
        except AssertionError as e:
            raise AssertionError('%s; missing: %r' % (e, missing))

    def delivery_report(self, expected):
        """Per receiver: {'keys': Counter of accepted keys (hook: per delivery
        id; BASELINE for the first-run notice), 'baselines': n, 'resends': n,
        'unexpected': [...], 'missing': [...], 'duplicated': {...}}."""
        out = {}
        want = set(expected)
        for rcv in RECEIVERS:
            acc = self.rx.received(rcv)['accepted']
            if rcv == 'hook':
                by_id = collections.OrderedDict()
                for rec in acc:
                    by_id.setdefault(rec['delivery'], []).append(rec)
                counts = collections.Counter(hook_key(c[0]) for c in by_id.values())
                bodies_differ = [i for i, c in by_id.items() if len({x['body'] for x in c}) > 1]
                out[rcv] = {'keys': counts, 'resends': len(acc) - len(by_id),
                            'bodies_differ': bodies_differ}
            else:
                counts = collections.Counter(rec_key(rcv, rec) for rec in acc)
                out[rcv] = {'keys': counts}
            out[rcv]['baselines'] = counts.get(BASELINE, 0)
            out[rcv]['unexpected'] = sorted(map(sorted, set(counts) - want - {BASELINE}))
            out[rcv]['missing'] = sorted(map(sorted, want - set(counts)))
            out[rcv]['duplicated'] = {'+'.join(sorted(k)): c for k, c in counts.items()
                                      if c > 1 and k != BASELINE}
        return out

    # -- diagnostics -----------------------------------------------------

    def redact(self, text):
        text = redact(text)
        for s in self.secrets:
            text = text.replace(s, '<ETCD_PASSWORD>')
        return text

    def assert_clean(self, text, what):
        for s in tuple(test_ops.ALL_SECRETS) + self.secrets:
            if s in text:
                raise AssertionError('a secret appears in %s (redacted): %s'
                                     % (what, self.redact(text)[:2000]))

    def describe(self, tail=4000):
        out = []
        for name, r in self.replicas.items():
            for n, d in enumerate(r.daemons):
                res = d.result()
                # the tests' own /readyz and /metrics requests left out
                text = '\n'.join(ln for ln in res.stderr.splitlines()
                                 if ' debug httpd: ' not in ln)
                out.append('--- replica %s run %d (pid %d, rc %s) stderr tail ---\n%s'
                           % (name, n, d.proc.pid, res.rc, self.redact(text)[-tail:]))
        return '\n'.join(out)


class ClusterTest(BridgeTest):
    """A fresh three-member etcd, fake YouTrack and fake receivers (both
    recording who sent what) per test; groups of bridges made with group()."""

    etcd_members = 3

    @classmethod
    def setUpClass(cls):
        need_binary()
        need_etcd()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='ytbridge-cluster-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.etcd = EtcdCluster(os.path.join(self.tmp, 'etcd'), n=self.etcd_members)
        self.addCleanup(self.etcd.close)
        self.fake = self.start_fake('--peer-pids')
        self.rx = Receivers('--peer-pids')
        self.addCleanup(self.rx.stop)
        self.groups = []
        self.secrets = ()

    def group(self, names=NAMES, projects=None, **kw):
        """A Group against this test's etcd and fakes (started by the caller);
        projects: the fake's list (a Projects, or a list of projects)."""
        if projects is not None:
            self.fake.set_projects(projects.list() if isinstance(projects, Projects)
                                   else projects)
        kw.setdefault('rx', self.rx)
        os.makedirs(os.path.join(self.tmp, 'g%d' % len(self.groups)))
        g = Group(os.path.join(self.tmp, 'g%d' % len(self.groups)), self.etcd, self.fake,
                  names=names, register=self.addCleanup, secrets=self.secrets, **kw)
        self.groups.append(g)
        return g

    def fail_with(self, msg, result=None):
        text = msg
        if result is not None:
            text += '\n' + result.describe()
        for g in self.groups:
            text += '\n' + g.describe()
        text += '\n--- etcd ---\n' + self.etcd.describe(800)
        text += '\n--- fake YouTrack log (tail) ---\n' + self.fake.log()[-1500:]
        text += '\n--- receivers log (tail) ---\n' + self.rx.log()[-1500:]
        for s in self.secrets:
            text = text.replace(s, '<ETCD_PASSWORD>')
        self.fail(redact(text))

    def wait(self, predicate, timeout, what, step=0.1):
        """deadline_wait that fails the test with every log attached."""
        try:
            return deadline_wait(predicate, timeout, step=step, what=what)
        except AssertionError as e:
            self.fail_with(str(e))

    def wait_leader(self, group, names=None, what=None):
        try:
            return group.wait_leader(names, what=what)
        except AssertionError as e:
            self.fail_with(str(e))

    def wait_delivered(self, group, keys, timeout=60, what=None, receivers=RECEIVERS):
        try:
            group.wait_delivered(keys, receivers=receivers, timeout=timeout, what=what)
        except AssertionError as e:
            self.fail_with(str(e))

    def assert_exactly_once(self, group, expected, slack_duplicates=0, baselines=1):
        """Matrix: every expected change exactly once (txnIds de-duplicated by
        the fake homeserver), webhook: under exactly one delivery id (re-sends
        of an id carry the same body), Slack: at most slack_duplicates
        duplicates in all; nothing that is not a change but the first-run
        notice, `baselines` of them (a new leader never takes a baseline)."""
        rep = group.delivery_report(expected)
        for rcv in ('matrix', 'hook'):
            self.check(rep[rcv]['baselines'] == baselines, '%s: %d first-run notices, not %d'
                       % (rcv, rep[rcv]['baselines'], baselines))
        self.check(rep['slack']['baselines'] >= baselines, 'slack: %d first-run notices, not %d'
                   % (rep['slack']['baselines'], baselines))
        for rcv, r in rep.items():
            self.check(not r['unexpected'], '%s got messages that are no change made: %r'
                       % (rcv, r['unexpected']))
            self.check(not r['missing'], '%s is missing %r' % (rcv, r['missing']))
        self.check(not rep['matrix']['duplicated'],
                   'matrix: a change under two txnIds: %r' % rep['matrix']['duplicated'])
        self.check(not rep['hook']['duplicated'],
                   'webhook: a change under two delivery ids: %r' % rep['hook']['duplicated'])
        self.check(not rep['hook']['bodies_differ'],
                   'webhook: a delivery id re-sent with another body: %r'
                   % rep['hook']['bodies_differ'])
        extra = (sum(c - 1 for k, c in rep['slack']['keys'].items() if k != BASELINE)
                 + rep['slack']['baselines'] - baselines)
        self.check(extra <= slack_duplicates, 'slack: %d duplicates (at most %d allowed): %r'
                   % (extra, slack_duplicates, rep['slack']['duplicated']))
        return rep
