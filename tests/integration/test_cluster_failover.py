#!/usr/bin/env python3
"""Failover of a bridge group (issue 12) against a real three-member etcd:

- Kill: three bridges; a change burst while the leader is SIGKILLed, twice.
  Every change reaches Matrix and the webhook exactly once (after txnId /
  delivery-id de-duplication), Slack with at most one duplicate per failover;
  the message the first leader left pending (its Matrix and webhook sends were
  failing) is delivered by the new leader under the same txnId and delivery
  id within lease_ttl + 5 s of the kill; at every moment only the replica that
  leads polls YouTrack and posts.
- Pause: the leader is SIGSTOPped for 3 x lease_ttl while a webhook delivery
  of its is failing and due for a retry, then SIGCONTed: from then on it
  neither posts nor polls while the other replica leads, and nothing is posted
  twice (the receivers' records, timestamped and attributed per process).

CLUSTER_SEED=n reproduces the kill timing of a run."""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster_harness import (LEADS_RE, LEASE_TTL, LOST_RE, NAMES,  # noqa: E402
                             PAIR, POLL_INTERVAL, TTL_WAIT, ClusterTest, Projects,
                             rec_key)
from etcd_cluster import main  # noqa: E402
from harness import SCALE  # noqa: E402

SLACK_GRACE = 0.5   # s: a request sent just before a kill may be recorded just after it


class Failover(ClusterTest):

    def attempts(self, g, receiver, key, kind='rejected', who=None):
        return [r for r in self.rx.received(receiver)[kind]
                if rec_key(receiver, r) == key and (who is None or g.who(r.get('pid')) == who)]

    def check_timeline(self, g, spans):
        """spans: [(start, end, leader)]; every poll and every post must come
        from the replica that led at that moment (a request of a replica
        killed at `end` may be recorded up to SLACK_GRACE s later)."""
        kills = [end for start, end, who in spans if end != float('inf')]

        def fine(t, who):
            if who == '?':
                # the sender was gone before the fake could ask who it was: a
                # request of a replica killed just then
                return any(abs(t - k) < SLACK_GRACE for k in kills)
            return any(start <= t < end + (SLACK_GRACE if end != float('inf') else 0)
                       and who == leader for start, end, leader in spans)
        bad = []
        for t, who in g.polls():
            if not fine(t, who):
                bad.append(('poll', round(t - spans[0][0], 2), who))
        for t, who, rcv, kind, rec in g.posts():
            if not fine(t, who):
                bad.append((rcv + ' ' + kind, round(t - spans[0][0], 2), who))
        self.check(not bad, 'requests by a replica that did not lead at the time '
                   '(what, s since start, who; leaders %r): %r'
                   % ([(round(s - spans[0][0], 2), w) for s, e, w in spans], bad[:20]))

    def test_change_burst_through_two_leader_kills(self):
        seed = int(os.environ.get('CLUSTER_SEED') or random.randrange(1 << 30))
        sys.stderr.write('\nCLUSTER_SEED=%d\n' % seed)
        rng = random.Random(seed)
        rx = self.rx
        p = Projects()
        g = self.group(projects=p)
        t0 = time.monotonic()
        g.start()
        l1 = self.wait_leader(g)
        g.wait_baseline(l1)

        # A message left pending: Matrix and the webhook fail, Slack takes it.
        rx.fault('matrix', '500')
        rx.fault('hook', '500')
        self.fake.set_projects(p.create(1).list())                  # Kc1
        pending = p.expected[-1]
        self.wait(lambda: (self.attempts(g, 'matrix', pending, who=l1)
                           and self.attempts(g, 'hook', pending, who=l1)
                           and self.attempts(g, 'slack', pending, 'accepted')),
                  POLL_INTERVAL + 15, 'the leader to try the first change')
        txn = {r['txn_id'] for r in self.attempts(g, 'matrix', pending)}
        delivery = {r['delivery'] for r in self.attempts(g, 'hook', pending)}
        self.check(len(txn) == 1 and len(delivery) == 1,
                   'retries of one message under several ids: %r %r' % (txn, delivery))

        # The burst: changes just before the kill and during the election.
        self.fake.set_projects(p.rename(1).remove(2).create(1).list())  # Kr1, Ko2, Kc2
        time.sleep(rng.uniform(0, 0.5))
        t_kill1 = g[l1].kill()
        rx.clear_faults()
        self.fake.set_projects(p.rename(3).create(1).list())           # Kr3, Kc3
        l2 = self.wait_leader(g, names=[n for n in NAMES if n != l1],
                              what='a new leader after killing %s' % l1)
        t_l2 = time.monotonic()

        def pending_delivered():
            return (self.attempts(g, 'matrix', pending, 'accepted')
                    and self.attempts(g, 'hook', pending, 'accepted'))
        self.wait(pending_delivered, TTL_WAIT + 15,
                  'the pending message delivered by the new leader')
        for rcv, ids, field in (('matrix', txn, 'txn_id'), ('hook', delivery, 'delivery')):
            got = self.attempts(g, rcv, pending, 'accepted')
            first = min(got, key=lambda r: r['t'])
            self.check(g.who(first.get('pid')) == l2, '%s: the pending message was delivered by '
                       '%s, not the new leader %s' % (rcv, g.who(first.get('pid')), l2))
            self.check({r[field] for r in got} == ids, '%s: the new leader delivered the '
                       'pending message under another id' % rcv)
            late = first['t'] - t_kill1
            self.check(late <= LEASE_TTL + 5 * SCALE,
                       '%s: the pending message arrived %.1f s after the kill (at most '
                       'lease_ttl + 5 s = %.0f s)' % (rcv, late, LEASE_TTL + 5 * SCALE))
            sys.stderr.write('%s: pending message delivered %.2f s after the kill\n'
                             % (rcv, late))

        # Second burst; the new leader is killed just after it polled it.
        t_set = time.monotonic()
        self.fake.set_projects(p.rename(4).remove(5).create(2).list())  # Kr4, Ko5, Kc4, Kc5
        self.wait(lambda: any(who == l2 and t >= t_set for t, who in g.polls()),
                  POLL_INTERVAL + 10, 'the new leader polling the second burst')
        time.sleep(rng.uniform(0, 0.4))     # in the poll, its commit or its deliveries
        t_kill2 = g[l2].kill()
        self.fake.set_projects(p.rename(6).list())                      # Kr6
        l3 = [n for n in NAMES if n not in (l1, l2)][0]
        self.check(self.wait_leader(g, names=[l3]) == l3, 'the last replica does not lead')
        self.wait_delivered(g, p.expected, timeout=2 * POLL_INTERVAL + 20)
        # Once more: nothing further arrives after the last replica's next poll.
        t_done = time.monotonic()
        self.wait(lambda: any(who == l3 and t > t_done for t, who in g.polls()),
                  POLL_INTERVAL + 10, 'one more poll of the last leader')

        rep = self.assert_exactly_once(g, p.expected, slack_duplicates=2)
        self.check_timeline(g, [(t0, t_kill1, l1), (t_kill1, t_kill2, l2),
                                (t_kill2, float('inf'), l3)])
        for name in (l1, l2, l3):
            seen = LEADS_RE.findall(g[name].stderr())
            mine = [ln for ln in seen if name in ln]
            self.check(len(mine) == 1, '%s: %d "leads now" lines naming itself: %r'
                       % (name, len(mine), mine))
            named = [[n for n in NAMES if n in ln] for ln in seen]
            self.check(all(len(x) == 1 for x in named)
                       and all(a != b for a, b in zip(named, named[1:])),
                       '%s: each leadership change is not logged once with the member name: '
                       '%r' % (name, seen))
        sys.stderr.write('leaders %s -> %s -> %s; new leader agreed %.2f s after the first '
                         'kill; %d changes; slack duplicates %d, webhook re-sends %d\n'
                         % (l1, l2, l3, t_l2 - t_kill1, len(p.expected),
                            sum(c - 1 for c in rep['slack']['keys'].values()),
                            rep['hook']['resends']))

    def test_paused_leader_neither_posts_nor_polls_after_it_resumes(self):
        rx = self.rx
        p = Projects()
        g = self.group(names=PAIR, projects=p)
        t0 = time.monotonic()
        g.start()
        lead = self.wait_leader(g)
        other = PAIR[1] if lead == PAIR[0] else PAIR[0]
        g.wait_baseline(lead)

        rx.fault('hook', '500')
        self.fake.set_projects(p.create(1).list())                     # Kc1
        key = p.expected[-1]
        # Two failed attempts: the retry timer runs (back-off), it is due again soon.
        self.wait(lambda: (len(self.attempts(g, 'hook', key, who=lead)) >= 2
                           and self.attempts(g, 'slack', key, 'accepted')
                           and self.attempts(g, 'matrix', key, 'accepted')),
                  POLL_INTERVAL + 20, 'the leader failing to deliver to the webhook twice')
        t_stop = g[lead].pause()
        self.fake.set_projects(p.rename(1).list())                     # Kr1, while paused
        self.check(self.wait_leader(g, names=[other]) == other,
                   'the other replica does not take over')
        t_other = time.monotonic()
        # The pause itself is the scenario: 3 x lease_ttl in all.
        rest = t_stop + 3 * LEASE_TTL - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        t_cont = g[lead].resume()

        # Its poll timer and the webhook retry were due while it was stopped:
        # watch a whole poll interval after it resumed (safety first; whether it
        # rejoins as a standby is checked last).
        end = t_cont + POLL_INTERVAL + 2
        while time.monotonic() < end:
            status, c = g[other].cluster()
            self.check(c and c.get('role') == 'leader', '%s stopped leading while %s was back: '
                       '%r' % (other, lead, c))
            status, c = g[lead].cluster()
            self.check(c and c.get('role') != 'leader', 'the resumed replica claims to lead '
                       'again: %r' % c)
            time.sleep(0.5)
        rx.clear_faults()
        self.wait_delivered(g, p.expected, timeout=POLL_INTERVAL + 20)

        late_polls = [round(t - t_cont, 2) for t, who in g.polls(since=t_stop) if who == lead]
        self.check(not late_polls, 'the paused leader polled after it resumed (s after '
                   'SIGCONT): %r' % late_polls)
        late_posts = [(rcv, kind, round(t - t_cont, 2)) for t, who, rcv, kind, rec
                      in g.posts(since=t_stop) if who == lead]
        self.check(not late_posts, 'the paused leader posted after it resumed (receiver, '
                   'kind, s after SIGCONT): %r' % late_posts)
        early = [(rcv, kind, round(t - t0, 2)) for t, who, rcv, kind, rec in g.posts()
                 if who == other and t < t_stop]
        self.check(not early, 'the standby posted while the leader ran: %r' % early)
        self.assert_exactly_once(g, p.expected, slack_duplicates=1)
        hook = self.attempts(g, 'hook', key, 'accepted')
        self.check(len(hook) == 1 and g.who(hook[0].get('pid')) == other,
                   'the failing webhook message was delivered %d times, first by %s'
                   % (len(hook), hook and g.who(hook[0].get('pid'))))
        self.check(LOST_RE.search(g[lead].stderr()), 'the resumed replica did not log '
                   '"leadership lost"')
        self.check(not LOST_RE.search(g[other].stderr()), '%s lost its leadership' % other)

        # Back in the group: a standby that names the leader and is ready
        # (by now it has had a poll interval and more).
        status, c = g[lead].cluster()
        self.check(status == 200 and c == {'role': 'standby', 'member': lead, 'leader': other,
                                           'etcd': 'ok'},
                   '%.1f s after SIGCONT the resumed replica is not a ready standby: %r %r'
                   % (time.monotonic() - t_cont, status, c))
        sys.stderr.write('\n%s paused %.1f s; %s leads %.2f s after the SIGSTOP\n'
                         % (lead, t_cont - t_stop, other, t_other - t_stop))

if __name__ == '__main__':
    main()
