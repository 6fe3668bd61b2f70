#!/usr/bin/env python3
"""Messages that wait longer than notify.max_age are dead-lettered, not sent
late: about 65 s, the minimum max_age being 60 (a file of its own so that
meson runs the wait beside the other tests)."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import DeliveryTest, main  # noqa: E402
from test_delivery_lifecycle import BASE, names, new_projects  # noqa: E402


class MaxAge(DeliveryTest):

    MAX_AGE = 60

    def test_messages_older_than_max_age_are_dead_lettered(self):
        rx = self.rx
        self.use_sinks(rx.slack_sink(), digest_threshold=50,
                       max_age=self.MAX_AGE)
        self.quiet_baseline(BASE)
        self.fake.set_projects(BASE + new_projects(10))
        rx.fault('slack', 'disconnect')     # network errors: retried later
        committed = time.monotonic()
        self.deliver_once()
        self.assertEqual(rx.accepted('slack'), [])
        self.assertTrue(rx.received('slack')['rejected'],
                        'the first attempt was made')
        # The behaviour under test is an age: the message must really grow older than
        # max_age, whose documented minimum is 60 s (not scaled: it is the daemon's clock).
        time.sleep(max(0.0, committed + self.MAX_AGE + 3 - time.monotonic()))
        rx.clear_faults()
        rx.clear_received()
        self.fake.set_projects(BASE + new_projects(10, 11))
        result = self.deliver_once()
        got = rx.received('slack')
        self.check(names(got['accepted']) == [['Nw11']] and not got['rejected'],
                   'the stale message is not sent, the fresh one is: %r'
                   % names(got['accepted']), result)
        self.check(re.search(r'dead|max_age|too old|expired|stale',
                             result.stderr, re.I),
                   'the dropped message is logged', result)


if __name__ == '__main__':
    main()
