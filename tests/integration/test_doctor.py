"""ytbridge --doctor against the fakes: every check passes on a healthy set-up,
and each broken piece is named with FAIL (exit 1), without posting anything and
without printing a secret."""

import re

from harness import DeliveryTest, main


class Doctor(DeliveryTest):

    def doctor(self):
        result = self.bridge.run('--doctor', timeout=60)
        self.assert_no_token(result)
        return result

    def lines(self, result):
        return [ln for ln in result.stdout.splitlines() if ln.strip()]

    def verdict(self, result, pattern):
        """The verdict word of the first stdout line matching pattern."""
        for ln in self.lines(result):
            if re.search(pattern, ln):
                return ln.split()[0]
        self.fail_with('no line matches %r' % pattern, result)

    def test_healthy_setup_passes_and_posts_nothing(self):
        rx = self.rx
        self.use_sinks(rx.slack_sink(), rx.matrix_sink(), rx.webhook_sink())
        result = self.doctor()
        self.check(result.rc == 0, 'every check passes', result)
        self.assertEqual(self.verdict(result, r'youtrack: .* answers'), 'OK')
        self.assertEqual(self.verdict(result, r'token: valid, belongs to'), 'OK')
        self.assertEqual(self.verdict(result, r'not an administrator'), 'OK')
        self.assertEqual(self.verdict(result, r'projects: 3 visible'), 'OK')
        self.assertEqual(self.verdict(result, r'sink team \(slack\)'), 'OK')
        self.assertEqual(self.verdict(result, r'sink room \(matrix\)'), 'OK')
        self.assertEqual(self.verdict(result, r'sink ci \(webhook\)'), 'SKIP')
        self.assertIn('doctor: all checks passed', result.stdout)
        # The Slack probe is an empty message, which Slack refuses: nothing
        # reached a channel, nothing reached the room or the webhook.
        self.assertEqual(rx.accepted('slack'), [])
        self.assertEqual(rx.accepted('matrix'), [])
        self.assertEqual(rx.accepted('hook'), [])
        # No state is written by a doctor run.
        self.assertEqual(self.bridge.state_listing(), {})

    def test_each_broken_piece_fails(self):
        rx = self.rx
        self.use_sinks(rx.slack_sink(), rx.matrix_sink())
        rx.fault('slack', 'no_service')
        rx.set_matrix(rooms=[])
        result = self.doctor()
        self.check(result.rc == 1, 'a failed check exits 1', result)
        self.assertEqual(self.verdict(result, r'sink team \(slack\)'), 'FAIL')
        self.assertEqual(self.verdict(result, r'sink room \(matrix\)'), 'FAIL')
        self.assertIn('doctor: some checks failed', result.stdout)

    def test_wrong_token_and_guest(self):
        self.fake.fault('401')
        result = self.doctor()
        self.check(result.rc == 1, 'a refused token exits 1', result)
        self.assertEqual(self.verdict(result, r'token: refused'), 'FAIL')
        self.fake.clear_fault()
        self.fake._call('PUT', '/_control/user', {'login': 'guest',
                                                  'fullName': 'Guest'})
        result = self.doctor()
        self.check(result.rc == 1, 'a guest session exits 1', result)
        self.assertEqual(self.verdict(result, r'guest account'), 'FAIL')

    def test_unreachable_youtrack(self):
        self.bridge.configure(url='http://127.0.0.1:9')  # discard: nothing listens
        result = self.doctor()
        self.check(result.rc == 1, 'an unreachable YouTrack exits 1', result)
        self.assertEqual(self.verdict(result, r'does not answer'), 'FAIL')


if __name__ == '__main__':
    main()
