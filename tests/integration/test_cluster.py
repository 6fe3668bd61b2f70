#!/usr/bin/env python3
"""Several replicas, one leader, state in etcd (issue 12): the group at rest
and its configuration, against a real three-member etcd cluster started here
(etcd_cluster.py) and the fakes.

- EtcdFixture: the fixture itself (no daemon): members on free ports, a
  member loss, quorum loss and its JSON-API symptoms, restarts on the data
  directories, authentication.
- OneLeader: three bridges elect exactly one leader; the standbys are ready,
  name it, and never poll YouTrack or post anything over three poll
  intervals; metrics and log lines say the same.
- Configuration: `-n` checks the cluster block; a bridge without one has no
  "cluster" in /readyz.
- Settings: a SIGHUP that changes the prefix (applied or refused, never two
  leaders posting), a replica with the wrong prefix (it leads a group of its
  own and leaves the real one alone), one with the wrong etcd password (a
  clear error naming etcd authentication, the password nowhere).

Failover under SIGKILL and SIGSTOP: test_cluster_failover.py; etcd member
loss and 100,000 projects: test_cluster_etcd.py. Skipped without `etcd`."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster_harness import (LEADS_RE, LOST_RE, NAMES, PAIR,  # noqa: E402
                             POLL_INTERVAL, PROJECT_PATHS, RECEIVERS, ClusterTest, Projects,
                             is_baseline, rec_key)
from etcd_cluster import EtcdCluster, EtcdError, main, need_etcd  # noqa: E402
from harness import BridgeTest  # noqa: E402
import test_ops  # noqa: E402


class EtcdFixture(unittest.TestCase):
    """The fixture the cluster tests stand on (runs without the daemon)."""

    @classmethod
    def setUpClass(cls):
        need_etcd()

    def setUp(self):
        self.etcd = EtcdCluster()
        self.addCleanup(self.etcd.close)

    def test_members_loss_quorum_and_restart(self):
        c = self.etcd
        eps = c.endpoints()
        self.assertEqual(len(set(eps)), 3)
        self.assertEqual(len({m.peer_port for m in c.members} | {m.client_port for m in c.members}),
                         6, 'six distinct ports')
        for i in range(3):
            self.assertEqual(c.member_health(i), (200, {'health': 'true'}))
        c.put('/fx/a', 'one')
        c.put('/fx/b', b'\x00two')
        self.assertEqual(c.keys('/fx/'), ['/fx/a', '/fx/b'])
        self.assertEqual(c.get('/fx/b'), b'\x00two')
        self.assertIsNone(c.get('/fx/none'))

        first = c.leader_member()
        self.assertIsNotNone(first, 'one raft leader')
        c.kill(first)
        c.wait_healthy(timeout=10)          # the other two elect a leader
        self.assertNotIn(c.leader_member(), (None, first))
        self.assertTrue(c.has_quorum())
        c.put('/fx/c', 'three')

        second = c.running()[0]
        c.kill(second)
        self.assertFalse(c.has_quorum())
        last = c.running()
        self.assertEqual(len(last), 1)
        status, body = c.member_health(last[0])
        self.assertEqual((status, body.get('health')), (503, 'false'))
        # Linearizable requests cannot be answered without a quorum ...
        with self.assertRaises((OSError, EtcdError)):
            c.get('/fx/a', timeout=2)
        # ... a serializable read answers from the member's own copy.
        self.assertEqual(c.get('/fx/c', serializable=True), b'three')

        c.restart(first)
        c.restart(second)
        c.wait_healthy(timeout=20)
        self.assertEqual(sorted(c.running()), [0, 1, 2])
        self.assertEqual(c.keys('/fx/'), ['/fx/a', '/fx/b', '/fx/c'])
        self.assertEqual(c.endpoints(), eps, 'restarted on the same ports')
        self.assertGreater(c.db_size(), 0)
        self.assertGreater(c.metric_all('etcd_server_has_leader'), 0)

    def test_close_stops_every_member(self):
        procs = [m.proc for m in self.etcd.members]
        self.etcd.pause(0)
        self.etcd.close()
        self.assertTrue(all(p.poll() is not None for p in procs))

    def test_authentication(self):
        c = self.etcd
        c.enable_auth('ytbridge', 'fixture-password-1')
        c.put('/fx/auth', 'yes')
        self.assertEqual(c.get('/fx/auth'), b'yes')
        c._auth_token = None
        c.auth = None
        with self.assertRaises(EtcdError) as cm:
            c.get('/fx/auth')
        self.assertIn('user name is empty', cm.exception.body)


class OneLeader(ClusterTest):

    def test_one_leader_standbys_ready_only_the_leader_polls(self):
        p = Projects()
        # the third takes its name from $YTBRIDGE_MEMBER, the others from cluster.member
        g = self.group(projects=p, member_from_env=(NAMES[2],))
        t_start = time.monotonic()
        g.start()
        lead = self.wait_leader(g)
        kv = self.etcd.get_kv(g.prefix + '/leader')
        self.check(kv is not None and kv['lease'] != 0,
                   'no leader key under a lease at %s/leader: %r' % (g.prefix, kv))
        self.check(self.etcd.lease_ttl(kv['lease']) > 0, 'the leader key\'s lease is not live')

        # Three poll intervals: the leader's baseline poll and two more.
        def polls_of_leader():
            starts = [t for t, who in g.poll_starts() if who == lead]
            return len(starts) >= 3 and max(starts) - min(starts) >= 2 * POLL_INTERVAL - 1
        self.wait(polls_of_leader, 3 * POLL_INTERVAL + 15, 'three polls by the leader',
                  step=0.5)
        self.wait(lambda: 'first run: now tracking' in g[lead].stderr(), 5,
                  'the baseline logged by the leader')
        # Everyone ready (the leader has polled), agreeing on the roles.
        for name in NAMES:
            status, c = g[name].cluster()
            self.check(status == 200, 'replica %s (%s) is not ready: %r'
                       % (name, c and c.get('role'), c))
            self.check(c == {'role': 'leader' if name == lead else 'standby',
                             'member': name, 'leader': lead, 'etcd': 'ok'},
                       'replica %s: /readyz "cluster" is %r' % (name, c))

        reqs = g.youtrack_requests()
        by = {}
        for t, who, path in reqs:
            by.setdefault(who, []).append(path)
        self.check(set(by) == {lead}, 'YouTrack requests by replicas other than the leader '
                   '%s: %r' % (lead, {k: len(v) for k, v in by.items()}))
        self.check(all(path.startswith(PROJECT_PATHS) or path.startswith('/api/users/me')
                       for path in by[lead]), 'unexpected YouTrack paths: %r' % by[lead])
        posts = g.posts()
        others = [(who, rcv, kind) for _, who, rcv, kind, _ in posts if who != lead]
        self.check(not others, 'standbys talked to the receivers: %r' % others)
        extra = [(rcv, kind) for _, who, rcv, kind, rec in posts
                 if kind != 'lookups' and not (kind == 'accepted' and is_baseline(rcv, rec))]
        self.check(not extra, 'posted with nothing changed: %r' % extra)
        for rcv in RECEIVERS:
            n = len([x for x in posts if x[2] == rcv and x[3] == 'accepted'])
            self.check(n == 1, '%s: %d first-run notices, not 1' % (rcv, n))

        # The same from the metrics and the logs (every difference listed at once).
        problems = []

        def want(cond, msg):
            if not cond:
                problems.append(msg)
        for name in NAMES:
            m = g[name].metrics()
            value = test_ops.value_of
            leader = value(m, 'ytbridge_cluster_leader')
            want(leader == (1 if name == lead else 0),
                 '%s: ytbridge_cluster_leader %r' % (name, leader))
            changes = value(m, 'ytbridge_cluster_leader_changes_total')
            want(changes is not None and changes >= 1,
                 '%s: ytbridge_cluster_leader_changes_total %r (a leader was seen)'
                 % (name, changes))
            ok = value(m, 'ytbridge_cluster_etcd_requests_total', result='ok')
            want(ok is not None and ok > 0,
                 '%s: ytbridge_cluster_etcd_requests_total{result="ok"} %r' % (name, ok))
            for res in ('error', 'unreachable'):
                want(value(m, 'ytbridge_cluster_etcd_requests_total', result=res) is not None,
                     '%s: no ytbridge_cluster_etcd_requests_total{result="%s"}' % (name, res))
            fam = m.get('ytbridge_state_commit_seconds')
            want(fam is not None and fam['type'] == 'histogram',
                 '%s: no histogram ytbridge_state_commit_seconds (families named *commit*: %r)'
                 % (name, sorted(f for f in m if 'commit' in f)))
            if name == lead and fam is not None:
                count = value(m, 'ytbridge_state_commit_seconds_count')
                want(count is not None and count >= 1,
                     'the leader committed its baseline; commit_seconds_count %r' % count)
            log = g[name].stderr()
            seen = LEADS_RE.findall(log)
            mine = [ln for ln in seen if name in ln]
            want(len(mine) == (1 if name == lead else 0),
                 '%s: %d "leads now" lines naming itself: %r' % (name, len(mine), mine))
            want(all(lead in ln for ln in seen) and len(seen) <= 1,
                 '%s: "leads now" lines other than one naming %s: %r' % (name, lead, seen))
            want(not LOST_RE.search(log), '%s logged "leadership lost"' % name)
            self.assert_no_token(g[name].daemon.result())
        self.check(not problems, 'metrics and log lines:\n  ' + '\n  '.join(problems))
        sys.stderr.write('\nleader %s elected and polling; %d YouTrack requests in %.1f s\n'
                         % (lead, len(reqs), time.monotonic() - t_start))



class Settings(ClusterTest):

    def reload_outcome(self, replica, since_len):
        """Wait for replica's answer to a SIGHUP: (applied, the log lines
        written since)."""
        got = []

        def answered():
            text = replica.stderr()[since_len:]
            got[:] = [text]
            return ('new configuration in effect' in text
                    or 'keeping the running configuration' in text)
        self.wait(answered, 15, 'replica %s to apply or refuse the reload' % replica.name)
        return 'new configuration in effect' in got[0], got[0]

    def test_sighup_that_changes_the_prefix(self):
        """The operator rolls a new prefix out to both replicas (leader first).
        Either behaviour is fine (stepping down and campaigning under the new
        prefix, or refusing the reload); what must hold: it is logged naming
        the cluster settings, afterwards exactly one replica leads, and a change
        is posted exactly once, by one replica."""
        p = Projects()
        g = self.group(names=PAIR, projects=p)
        g.start()
        lead = self.wait_leader(g)
        g.wait_baseline(lead)
        other = PAIR[1] if lead == PAIR[0] else PAIR[0]
        moved = g.prefix + '-moved'
        t_hup = time.monotonic()
        outcome = {}
        for name in (lead, other):
            r = g[name]
            r.bridge.configure(cluster=g.cluster_block(name, prefix=moved))
            before = len(r.stderr())
            r.hup()
            outcome[name] = self.reload_outcome(r, before)
        applied = {n: o[0] for n, o in outcome.items()}
        self.check(len(set(applied.values())) == 1,
                   'the same reload was applied by one replica and refused by the other: %r'
                   % applied)
        for name, (ok, lines) in outcome.items():
            cluster_lines = [ln for ln in lines.splitlines()
                             if ' cluster: ' in ln or 'cluster' in ln.split(': ', 1)[-1]]
            self.check(cluster_lines, 'replica %s: no log line about the cluster settings after '
                       'the SIGHUP:\n%s' % (name, g.redact(lines)[-2000:]))
            if not ok:
                self.check(re.search(r'cluster.*prefix|prefix.*cluster', lines),
                           'replica %s refused the reload without naming cluster.prefix:\n%s'
                           % (name, g.redact(lines)[-2000:]))
        now = self.wait_leader(g, what='one leader after the reload')
        where = moved if applied[lead] else g.prefix
        kv = self.etcd.get_kv(where + '/leader')
        self.check(kv is not None, 'no leader key under %s' % where)
        if applied[lead]:
            # a new, empty group: its first poll is a baseline
            self.wait(lambda: g[now].stderr().count('first run: now tracking') >= (
                2 if now == lead else 1), 30, 'the baseline under the new prefix')
        t_change = time.monotonic()
        self.fake.set_projects(p.create(1).rename(1).list())
        self.wait_delivered(g, p.expected, timeout=POLL_INTERVAL + 20)
        # Watch one more poll interval (a sleep: what is checked is that nothing
        # happens): a second leader would poll on its own timer and post again.
        time.sleep(POLL_INTERVAL + 2)
        # a new group under the new prefix announces its first run
        self.assert_exactly_once(g, p.expected, baselines=2 if applied[lead] else 1)
        posters = {who for t, who, rcv, kind, rec in g.posts(since=t_change)
                   if kind != 'lookups'}
        self.check(posters == {now}, 'posted by %r, the leader is %s' % (posters, now))
        pollers = {who for t, who in g.polls(since=t_change)}
        self.check(pollers == {now}, 'polled after the reload by %r, the leader is %s'
                   % (pollers, now))
        sys.stderr.write('\nprefix change by SIGHUP: %s; leader afterwards %s (%.1f s)\n'
                         % ('applied' if applied[lead] else 'refused', now,
                            time.monotonic() - t_hup))

    def test_wrong_prefix_leads_only_a_group_of_its_own(self):
        """A replica whose prefix differs (here by a suffix, so a prefix scan
        without the separator would see the other group's keys) is a group of
        its own: it leads it, baselines quietly, and leaves the real group's
        leader and keys alone. (It then announces changes a second time: two
        groups are two bridges; documented, not asserted.)"""
        p = Projects()
        g = self.group(names=PAIR, projects=p)
        g.start()
        lead = self.wait_leader(g)
        g.wait_baseline(lead)
        kv = self.etcd.get_kv(g.prefix + '/leader')
        stray = NAMES[2]
        wrong = self.group(names=(stray,), prefix=g.prefix + '-typo')
        t_wrong = time.monotonic()
        wrong.start()
        self.check(self.wait_leader(wrong) == stray, '%s does not lead its own group' % stray)
        wrong.wait_baseline(stray)
        self.check(self.wait_leader(g) == lead, 'the real group changed leader')
        kv_after = self.etcd.get_kv(g.prefix + '/leader')
        self.check(kv_after and (kv_after['create_revision'], kv_after['lease'])
                   == (kv['create_revision'], kv['lease']),
                   'the real group\'s leader key changed: %r -> %r' % (kv, kv_after))
        for key in self.etcd.keys(g.prefix + '-typo'):
            self.check(key.startswith(g.prefix + '-typo/'), '%s wrote %r' % (stray, key))
        def changes(group, who):
            return [(rcv, kind) for t, w, rcv, kind, rec in group.posts()
                    if w == who and kind != 'lookups'
                    and not (kind == 'accepted' and is_baseline(rcv, rec))]
        self.check(not changes(g, lead), 'the group posted more than its first-run notice '
                   'before any change: %r' % changes(g, lead))
        self.check(not changes(wrong, stray), 'the wrong-prefix replica posted more than a '
                   'first-run notice before any change: %r' % changes(wrong, stray))
        # the real group works as before
        self.fake.set_projects(p.create(1).list())
        self.wait_delivered(g, p.expected, timeout=POLL_INTERVAL + 20)
        self.check(self.wait_leader(g) == lead, 'the real group changed leader')
        # The real group's leader posted the change once per target (the stray
        # replica's own posts are its group's, told apart by process).
        key = p.expected[-1]
        by_lead = {rcv: len([1 for t, w, r, kind, rec in g.posts(receivers=(rcv,))
                             if w == lead and kind == 'accepted' and rec_key(rcv, rec) == key])
                   for rcv in RECEIVERS}
        self.check(by_lead == {rcv: 1 for rcv in RECEIVERS},
                   'the real group\'s leader delivered the change %r times' % by_lead)
        stray_posts = [x for x in wrong.posts(since=t_wrong) if x[1] == stray
                       and x[3] == 'accepted' and not is_baseline(x[2], x[4])]
        sys.stderr.write('\nwrong prefix: %s leads a group of its own (it posted its first-run '
                         'notice, and so far %d message(s) of the change the real group announced)\n'
                         % (stray, len(stray_posts)))

    def test_wrong_etcd_password_is_a_clear_error(self):
        right, wrong_pw = 'right-etcd-pass-4711', 'wrong-etcd-pass-0815'
        self.secrets = (right, wrong_pw)
        self.etcd.enable_auth('ytbridge', right)
        files = {}
        for name, pw in (('right', right), ('wrong', wrong_pw)):
            files[name] = os.path.join(self.tmp, name + '.pw')
            with open(files[name], 'w') as f:
                f.write(pw + '\n')
            os.chmod(files[name], 0o600)
        p = Projects()
        good, wrong = NAMES[0], NAMES[1]
        g = self.group(names=(good,), projects=p,
                       cluster_extra={'user': 'ytbridge', 'password_file': files['right']})
        g.start()
        self.check(self.wait_leader(g) == good, 'a replica with the right password does not lead')
        g.wait_baseline(good)
        bad = self.group(names=(wrong,), prefix=g.prefix,
                         cluster_extra={'user': 'ytbridge', 'password_file': files['wrong']})
        r = bad[wrong]
        r.start()
        pattern = re.compile(r'^.*(etcd.*\bauth|auth\w*.*\betcd).*$', re.I | re.M)
        self.wait(lambda: pattern.search(r.stderr()), 15,
                  'a log line naming etcd authentication')
        line = pattern.search(r.stderr()).group(0)
        if r.alive():
            status, c = r.cluster()
            self.check(status == 503 and c and c.get('role') != 'leader'
                       and c.get('etcd') != 'ok' and re.search('auth', c.get('etcd', ''), re.I),
                       'a replica refused by etcd: /readyz %r %r' % (status, c))
        else:
            self.check(r.daemon.proc.returncode in (1, 2),
                       'exit code %r' % r.daemon.proc.returncode, r.daemon.result())
        self.check(self.wait_leader(g) == good, 'the good replica lost its leadership')
        self.check(not [x for x in bad.polls() if x[1] == wrong], 'the refused replica polled')
        self.check(not [x for x in bad.posts() if x[1] == wrong], 'the refused replica posted')
        out = r.daemon.result()
        for pw in self.secrets:
            self.check(pw not in out.stdout and pw not in out.stderr,
                       'a password appears in the output (redacted)')
        sys.stderr.write('\nwrong password: %s\n' % g.redact(line)[:300])


class Doctor(ClusterTest):

    def test_doctor_checks_each_endpoint_and_names_the_leader(self):
        """--doctor with the cluster block: one line per etcd endpoint, then who
        leads the group; a dead member fails its line (and the run) but the
        group's leader is still read through the others."""
        p = Projects()
        g = self.group(names=PAIR[:1], projects=p)
        g.start()
        lead = self.wait_leader(g)
        self.etcd.wait_healthy()
        r = g[lead].bridge.run('--doctor', env=g[lead].env, timeout=60)
        out = r.stdout
        for ep in self.etcd.endpoints():
            self.check(re.search(r'^OK +cluster: %s answers \(etcd 3\.' % re.escape(ep), out,
                                 re.M), 'no OK line for %s' % ep, r)
        self.check(re.search(r'^OK +cluster: "%s" leads the group %s' % (lead, re.escape(g.prefix)),
                             out, re.M), 'the leader is not named', r)
        # A follower, not the raft leader: the survivors keep their leader, so their lines
        # stay OK and only the dead member's fails (an election in between would fail them).
        raft = self.etcd.leader_member()
        victim = next(i for i in range(3) if i != raft)
        self.etcd.kill(victim)
        self.etcd.wait_healthy()
        r = g[lead].bridge.run('--doctor', env=g[lead].env, timeout=60)
        dead = self.etcd.endpoints()[victim]
        self.check(r.rc == 1, '--doctor passed with an etcd member dead', r)
        self.check(re.search(r'^FAIL +cluster: %s: ' % re.escape(dead), r.stdout, re.M),
                   'no FAIL line for the dead member %s' % dead, r)
        self.check(re.search(r'^OK +cluster: "%s" leads' % lead, r.stdout, re.M),
                   'the leader was not read through the live members', r)
        self.assert_no_token(r)


class Configuration(BridgeTest):

    def test_check_config_validates_the_cluster_block(self):
        good = {'etcd': ['http://127.0.0.1:2379', 'http://127.0.0.1:22379'],
                'prefix': '/ytbridge/check', 'lease_ttl': 2, 'member': 'a'}
        self.bridge.configure(cluster=good)
        result = self.bridge.run('-n')
        self.check(result.rc == 0 and 'configuration OK' in result.stdout,
                   '-n refuses a valid cluster block', result)
        for key, block in (
                ('lease_ttl', dict(good, lease_ttl=1)),
                ('lease_ttl', dict(good, lease_ttl=61)),
                ('etcd', dict(good, etcd=['not a url'])),
                ('password_file', dict(good, user='ytbridge', password_file=os.path.join(
                    self.tmp, 'no-such-file')))):
            self.bridge.configure(cluster=block)
            result = self.bridge.run('-n')
            self.check(result.rc == 2, '-n accepts a bad %s' % key, result)
            self.check(re.search(r'ytbridge\.conf:\d+: .*%s' % key,
                                 result.stdout + result.stderr),
                       'no FILE:LINE message naming %s' % key, result)


class NoCluster(test_ops.OpsMixin, BridgeTest):

    def test_a_single_bridge_has_no_cluster_in_readyz(self):
        self.start_ops()
        # ready() also checks the body is exactly {"ready", "checks"}
        status, doc = self.ready()
        self.assertNotIn('cluster', doc)
        self.stop_clean()


if __name__ == '__main__':
    main()
