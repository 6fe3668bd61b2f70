#!/usr/bin/env python3
"""Failover benchmark for a bridge group in etcd (issue 12; run by hand, not
part of the suite).

    python3 tests/bench/bench_failover.py [--kills 20] [--replicas 3]
        [--lease-ttl 2] [--steady-polls 3]

Starts a three-member etcd on loopback (tests/integration/etcd_cluster.py),
the fake YouTrack and the fake receivers (both recording which process sent
each request), and --replicas bridges (YTBRIDGE_BIN, default
build/bridge/ytbridge) of one configuration with Slack, Matrix and webhook
sinks, lease_ttl --lease-ttl and the minimum poll interval (10 s).

1. Steady state: over --steady-polls polls of the leader with nothing
   changed, per poll: the daemons' etcd requests (the deltas of
   ytbridge_cluster_etcd_requests_total, leader and standbys apart), what
   etcd received and sent (etcd_network_client_grpc_received_bytes_total and
   _sent_bytes_total, summed over the members), etcd's revision (any write
   moves it; lease keep-alives do not) and the gRPC messages etcd received by
   method.
2. --kills times: Matrix and the webhook are made to fail (HTTP 500), a
   project is created, and once the leader has tried and failed to deliver
   it, the leader is killed (SIGKILL) and the failures are cleared. Measured:
   the kill -> the first delivery of that pending message by the new leader
   (the receivers' arrival time), and the kill -> every replica agreeing on
   the new leader in /readyz. The killed replica is then started again, so
   the group keeps its size.

Prints every figure; asserts nothing about time. Exits 1 when a message is
lost, doubled at Matrix or the webhook, or delivered by the killed replica.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
os.environ.setdefault('YTBRIDGE_BIN', os.path.join(ROOT, 'build', 'bridge', 'ytbridge'))

from cluster_harness import NAMES, POLL_INTERVAL, Group, Projects, rec_key  # noqa: E402
from etcd_cluster import EtcdCluster  # noqa: E402
from harness import FakeYouTrack, Receivers, deadline_wait  # noqa: E402


def etcd_traffic(etcd):
    """Counters summed over the members: bytes in and out, revision, and the
    gRPC messages received per method."""
    # the revision from Maintenance.Status, so that the bench's own look adds no Range
    status = etcd.status(etcd.running()[0])
    out = {'received': 0.0, 'sent': 0.0, 'revision': int(status['header']['revision'])}
    methods = {}
    for i in etcd.running():
        for line in etcd.metrics_text(i).splitlines():
            name, _, value = line.rpartition(' ')
            if name == 'etcd_network_client_grpc_received_bytes_total':
                out['received'] += float(value)
            elif name == 'etcd_network_client_grpc_sent_bytes_total':
                out['sent'] += float(value)
            elif name.startswith('grpc_server_msg_received_total{'):
                method = name.split('grpc_method="', 1)[1].split('"', 1)[0]
                methods[method] = methods.get(method, 0.0) + float(value)
    out['methods'] = methods
    return out


def bridge_requests(group):
    """{replica: ytbridge_cluster_etcd_requests_total summed over results}."""
    out = {}
    for name, r in group.replicas.items():
        fam = r.metrics().get('ytbridge_cluster_etcd_requests_total')
        out[name] = sum(v for _, _, v in fam['samples']) if fam else 0.0
    return out


def leader_poll_starts(group, lead, since):
    return [t for t, who in group.poll_starts(since) if who == lead]


def steady_state(group, etcd, lead, polls):
    t = time.monotonic()
    deadline_wait(lambda: leader_poll_starts(group, lead, t), POLL_INTERVAL + 20,
                  what='a poll of the leader')
    first = leader_poll_starts(group, lead, t)[0]
    e0, b0 = etcd_traffic(etcd), bridge_requests(group)
    deadline_wait(lambda: len(leader_poll_starts(group, lead, first)) > polls,
                  polls * POLL_INTERVAL + 20, what='%d more polls' % polls)
    e1, b1 = etcd_traffic(etcd), bridge_requests(group)
    print('steady state, %d unchanged polls of the leader %s, per poll:' % (polls, lead))
    for name in group.names():
        print('  %s (%s): %.1f etcd requests' % (
            name, 'leader' if name == lead else 'standby', (b1[name] - b0[name]) / polls))
    print('  etcd received %.0f bytes, sent %.0f bytes; revision +%.1f'
          % ((e1['received'] - e0['received']) / polls, (e1['sent'] - e0['sent']) / polls,
             (e1['revision'] - e0['revision']) / polls))
    methods = {m: (e1['methods'].get(m, 0) - e0['methods'].get(m, 0)) / polls
               for m in e1['methods']}
    print('  gRPC messages received by etcd: %s' % (', '.join(
        '%s %.1f' % (m, v) for m, v in sorted(methods.items()) if v) or 'none'))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--kills', type=int, default=20)
    ap.add_argument('--replicas', type=int, default=3, choices=(2, 3))
    ap.add_argument('--lease-ttl', type=int, default=2)
    ap.add_argument('--steady-polls', type=int, default=3)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix='ytbridge-bench-failover-')
    cleanups = []
    g = None
    try:
        etcd = EtcdCluster(os.path.join(tmp, 'etcd'))
        cleanups.append(etcd.close)
        p = Projects()
        yt = FakeYouTrack('--peer-pids', projects=p.list())
        cleanups.append(yt.stop)
        rx = Receivers('--peer-pids')
        cleanups.append(rx.stop)
        os.makedirs(os.path.join(tmp, 'group'))
        g = Group(os.path.join(tmp, 'group'), etcd, yt, rx=rx, names=NAMES[:args.replicas],
                  lease_ttl=args.lease_ttl, register=cleanups.append, log_level='info')
        g.start()
        lead = g.wait_leader()
        g.wait_baseline(lead)
        print('%d bridges, 3 etcd members, lease_ttl %d s, poll_interval %d s'
              % (args.replicas, args.lease_ttl, POLL_INTERVAL))
        steady_state(g, etcd, lead, args.steady_polls)

        deliver, agree, problems = [], [], []
        for k in range(args.kills):
            rx.fault('matrix', '500')
            rx.fault('hook', '500')
            yt.set_projects(p.create(1).list())
            key = p.expected[-1]

            def tried():
                return all(any(rec_key(r, x) == key and g.who(x.get('pid')) == lead
                               for x in rx.received(r)['rejected']) for r in ('matrix', 'hook'))
            deadline_wait(tried, POLL_INTERVAL + 20, what='the leader failing to deliver')
            t_kill = g[lead].kill()
            rx.clear_faults()
            killed = lead
            lead = g.wait_leader()
            agree.append(time.monotonic() - t_kill)

            def delivered():
                return [x for r in ('matrix', 'hook') for x in rx.received(r)['accepted']
                        if rec_key(r, x) == key]
            deadline_wait(delivered, 60, what='the pending message delivered')
            first = min(delivered(), key=lambda x: x['t'])
            if g.who(first.get('pid')) == killed:
                problems.append('kill %d: delivered by the killed replica' % k)
            deliver.append(first['t'] - t_kill)
            g.wait_delivered([key], timeout=60)
            g[killed].start()
            g[killed].port()
            g.wait_leader()
            print('kill %2d: %s -> %s: leader agreed %.2f s, pending message delivered %.2f s '
                  'after the SIGKILL' % (k + 1, killed, lead, agree[-1], deliver[-1]))

        rep = g.delivery_report(p.expected)
        for r, v in rep.items():
            if v['missing'] or v['unexpected']:
                problems.append('%s: missing %r, unexpected %r' % (r, v['missing'],
                                                                  v['unexpected']))
        for r in ('matrix', 'hook'):
            if rep[r]['duplicated']:
                problems.append('%s: duplicated %r' % (r, rep[r]['duplicated']))
        if deliver:
            print('SIGKILL -> first delivery of the pending message by the new leader, '
                  '%d kills: median %.2f s, max %.2f s (min %.2f s)'
                  % (len(deliver), statistics.median(deliver), max(deliver), min(deliver)))
            print('SIGKILL -> every replica agrees on the new leader: median %.2f s, max %.2f s'
                  % (statistics.median(agree), max(agree)))
            print('Slack duplicates: %d in %d kills; webhook re-sends: %d'
                  % (sum(c - 1 for c in rep['slack']['keys'].values()), len(deliver),
                     rep['hook']['resends']))
        for line in problems:
            print('PROBLEM: ' + line)
        return 1 if problems else 0
    except AssertionError as e:
        print('FAILED: %s' % e)
        if g is not None:
            print(g.describe(2000))
        return 1
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as e:   # keep cleaning up
                print('cleanup: %s' % e, file=sys.stderr)
        shutil.rmtree(tmp, True)


if __name__ == '__main__':
    sys.exit(main())
