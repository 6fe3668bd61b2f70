#!/usr/bin/env python3
"""Subscriptions made from chat (issue 13): `/youtrack subscribe [PATTERN ...]
[events=KIND,...]`, `unsubscribe [PATTERN ...]`, `subscriptions [all]` in Slack
(Socket Mode, answered in the ack) and `!youtrack ...` in Matrix (answered with
an m.notice reply). This file: the commands, who may use them, the limits, and
the subscriptions surviving a restart, a SIGHUP and a SIGKILL, and --doctor.
Delivery to subscribed channels is in test_subscriptions_delivery.py, crashes
in test_subscriptions_crash.py (SubsTest is shared from here; three files so
that meson runs their waits side by side).

Answers are matched only on behaviour and a few fixed phrases ("Subscribed",
"Unsubscribed", "not subscribed", "invite me", "Sorry, only", "at most 50
patterns", "at most 500 channels", "unknown event kind", "suspended"), the
channel's patterns verbatim and the event kinds by name; never on the state
directory's file names."""

import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (SCALE, STDOUT_SINK, DeliveryTest, deadline_wait,  # noqa: E402
                     main, message_text, project, redact)
from test_matrix_chat import joined, message  # noqa: E402
from test_ops import OpsMixin  # noqa: E402
from test_slack_chat import APP_TOKEN, FakeSlack  # noqa: E402

BOT_TOKEN = 'xoxb-test-fake-bot-token'
CH1, CH2, CH3 = 'C0SUBONE', 'C0SUBTWO', 'C0SUBTHREE'
MANAGER, PLAIN = 'U0MANAGER', 'U0PLAIN'
MX_MANAGER, MX_PLAIN = '@boss:localhost', '@alice:localhost'
ROOM1 = '!room1:localhost'  # the configured matrix sink's room (#yt:localhost)
ROOM2 = '!room2:localhost'  # the room that subscribes
KINDS = ('created', 'removed', 'renamed', 'archived', 'unarchived')
BASE = [project('0-1', 'DEV', 'Development'), project('0-2', 'OPS', 'Operations'),
        project('0-3', 'WEB', 'Website')]
UNDER_VALGRIND = 'valgrind' in (os.environ.get('YTBRIDGE_WRAPPER') or '')


def kinds_named(text):
    """The event kinds named in an answer, as whole words."""
    return {k for k in KINDS if re.search(r'(?<![A-Za-z])%s(?![A-Za-z])' % k, text)}


class SlackWeb(FakeSlack):
    """fake_slack.py with the bot-token Web API helpers."""

    def posts(self, channel=None):
        return [p for p in self.state()['posts'] if channel is None or p['channel'] == channel]

    def calls(self, method='chat.postMessage', channel=None):
        return [c for c in self.state()['api_calls'] if c['method'] == method
                and (channel is None or c['channel'] == channel)]

    def channels(self, **chans):
        return self._call('PUT', '/_control/channels', chans)

    def api_faults(self, *faults):
        return self._call('PUT', '/_control/api_faults', {'faults': list(faults)})

    def bot_token(self, token):
        return self._call('PUT', '/_control/bot_token', {'token': token})

    def web_api(self, **kw):
        return self._call('PUT', '/_control/web_api', kw)


class SubsTest(OpsMixin, DeliveryTest):
    """The daemon with chat.slack (bot token) and chat.matrix, a stdout sink
    (alerts, read from the daemon's stdout), a configured Slack webhook sink
    and a configured Matrix sink in ROOM1 (to compare with what subscribed
    channels get)."""

    slack_manage = (MANAGER,)
    matrix_manage = (MX_MANAGER,)

    def setUp(self):
        super().setUp()
        self.slack = SlackWeb()
        self.addCleanup(self.slack.stop)
        self.rx.set_matrix(rooms=[ROOM1, ROOM2])
        self.daemon = None
        self.n_cmd = 0
        self.quiet_baseline(BASE)
        self.configure()

    def configure(self, sinks=None, **notify):
        rx = self.rx
        slack = {'app_token': APP_TOKEN, 'api_url': self.slack.url + '/api',
                 'bot_token': BOT_TOKEN, 'commands_per_user': 10000,
                 'commands_per_second': 1000}
        if self.slack_manage is not None:
            slack['manage_users'] = list(self.slack_manage)
        matrix = rx.matrix_chat(rooms=(ROOM1, ROOM2))
        if self.matrix_manage is not None:
            matrix['manage_users'] = list(self.matrix_manage)
        self.bridge.configure(chat={'slack': slack, 'matrix': matrix},
                              sinks=sinks if sinks is not None else
                              [STDOUT_SINK, rx.slack_sink(), rx.matrix_sink()],
                              **notify)

    def fail_with(self, msg, result=None):
        if result is None and self.daemon is not None:
            result = self.daemon.result()
        msg += '\n--- fake slack log (tail) ---\n' + self.slack.log()[-2000:]
        super().fail_with(msg, result)

    # -- the daemon ----------------------------------------------------------

    def start(self):
        """The daemon after its first poll, with its socket up and its first
        /sync done (so that commands are answered)."""
        self.daemon = self.start_ops()
        self.wait(lambda: len(self.slack.open_ids()) == 1, 'the Socket Mode socket')
        self.wait(lambda: any(s['since'] is not None and s['status'] is None
                              for s in self.rx.received('matrix')['syncs']),
                  'the /sync long-poll after the first sync')
        self.wait(lambda: self.ready_checks().get('youtrack') == 'ok', 'the first poll')
        return self.daemon

    def ready_checks(self):
        status, _, text = self.request('GET', '/readyz')
        return json.loads(text).get('checks', {})

    def stop(self, sig=signal.SIGTERM):
        result = self.daemon.stop(sig)
        self.check_secrets(result)
        self.daemon = None
        return result

    def kill(self):
        self.daemon.proc.send_signal(signal.SIGKILL)
        self.daemon.proc.wait(10)
        self.daemon = None

    def check_secrets(self, result):
        self.assert_no_token(result)
        for secret in (BOT_TOKEN, APP_TOKEN):
            self.check(secret not in result.stdout and secret not in result.stderr,
                       'a Slack token appears in the daemon output (redacted here)', result)

    def wait(self, predicate, what, timeout=20):
        try:
            return deadline_wait(predicate, timeout, step=0.05, what=what)
        except AssertionError as e:
            self.fail_with(str(e))

    def alerts(self):
        if self.daemon is None:
            return []
        return [m for m in self.daemon.result().messages if m.get('event') == 'alert']

    # -- commands --------------------------------------------------------------

    def slack_cmd(self, text, channel=CH1, user=MANAGER, **kw):
        """The answer's text (the ack payload as JSON text) to /youtrack text."""
        r = self.slack.envelope(text=text, channel_id=channel, user_id=user, **kw)
        self.check(r['ack'] is not None, 'no ack for /youtrack %s' % text)
        payload = r['ack'].get('payload')
        self.check(isinstance(payload, dict) and payload,
                   'no answer in the ack of /youtrack %s: %r' % (text, r['ack']))
        return json.dumps(payload, ensure_ascii=False)

    def matrix_cmd(self, text, room=ROOM2, sender=MX_MANAGER):
        """The body of the m.notice reply to `!youtrack text` in room."""
        self.n_cmd += 1
        eid = '$subcmd%d' % self.n_cmd
        self.rx.queue_sync(joined(room, message(eid, '!youtrack ' + text, sender=sender)))

        rec = self.wait(lambda: self.rx.reply_to(eid), 'the reply to !youtrack %s' % text)
        self.assertEqual(rec['room'], room)
        self.assertEqual(rec['json']['msgtype'], 'm.notice')
        return message_text(rec)

    def assert_has(self, text, *needles):
        for needle in needles:
            self.check(needle in text, '%r not in the answer %s' % (needle, redact(text)))

    def assert_lacks(self, text, *needles):
        for needle in needles:
            self.check(needle not in text, '%r in the answer %s' % (needle, redact(text)))

    def subscribe_slack(self, *channels, args=''):
        for ch in channels:
            self.assert_has(self.slack_cmd(('subscribe ' + args).strip(), channel=ch),
                            'Subscribed')

    # -- changes ---------------------------------------------------------------

    def change(self, projects, marker, timeout=30):
        """Set the projects, wait until the configured Slack sink has a
        message naming marker (the poll that saw the change has delivered)."""
        self.fake.set_projects(projects)
        self.wait(lambda: any(marker in message_text(m) for m in self.rx.accepted('slack')),
                  'the configured Slack sink to get %s' % marker, timeout)


class Commands(SubsTest):

    def test_subscribe_unsubscribe_semantics_slack(self):
        self.start()
        self.assert_has(self.slack_cmd('subscriptions'), 'not subscribed')
        self.assert_has(self.slack_cmd('unsubscribe'), 'not subscribed')
        text = self.slack_cmd('subscribe')
        self.assert_has(text, 'Subscribed', '*')
        self.assertEqual(kinds_named(text), set(KINDS), text)
        text = self.slack_cmd('subscribe DEV* !DEVX web?')
        self.assert_has(text, 'Subscribed', 'DEV*', '!DEVX', 'web?')
        # events= replaces the kinds, the patterns are kept
        text = self.slack_cmd('subscribe OPS events=created,renamed')
        self.assert_has(text, 'DEV*', 'OPS')
        self.assertEqual(kinds_named(text), {'created', 'renamed'}, text)
        text = self.slack_cmd('subscriptions', user=PLAIN)  # everyone may look
        self.assert_has(text, '*', 'DEV*', '!DEVX', 'web?', 'OPS')
        self.assertEqual(kinds_named(text), {'created', 'renamed'}, text)
        # another channel is its own subscription
        self.assert_has(self.slack_cmd('subscriptions', channel=CH2), 'not subscribed')
        text = self.slack_cmd('unsubscribe DEV* web?')
        self.assert_has(text, 'Unsubscribed')
        text = self.slack_cmd('subscriptions')
        self.assert_lacks(text, 'DEV*', 'web?')
        self.assert_has(text, '!DEVX', 'OPS')
        # the last pattern removed: no subscription
        self.slack_cmd('unsubscribe * !DEVX OPS')
        self.assert_has(self.slack_cmd('subscriptions'), 'not subscribed')
        # unsubscribe without patterns removes the whole subscription
        self.subscribe_slack(CH1, args='DEV OPS')
        self.assert_has(self.slack_cmd('unsubscribe'), 'Unsubscribed')
        self.assert_has(self.slack_cmd('subscriptions'), 'not subscribed')
        self.assert_has(self.slack_cmd('subscribe events=created,exploded'),
                        'unknown event kind')
        self.assert_has(self.slack_cmd('subscriptions'), 'not subscribed')
        self.stop()

    def test_subscribe_unsubscribe_semantics_matrix(self):
        self.start()
        self.assert_has(self.matrix_cmd('subscriptions'), 'not subscribed')
        text = self.matrix_cmd('subscribe DEV* OPS events=archived,unarchived')
        self.assert_has(text, 'Subscribed', 'DEV*', 'OPS')
        self.assertEqual(kinds_named(text), {'archived', 'unarchived'}, text)
        text = self.matrix_cmd('subscriptions', sender=MX_PLAIN)
        self.assert_has(text, 'DEV*', 'OPS')
        self.assert_has(self.matrix_cmd('unsubscribe OPS'), 'Unsubscribed')
        self.assert_lacks(self.matrix_cmd('subscriptions'), 'OPS')
        self.assert_has(self.matrix_cmd('subscriptions', room=ROOM1), 'not subscribed')
        self.assert_has(self.matrix_cmd('subscribe events=nope'), 'unknown event kind')
        self.assert_has(self.matrix_cmd('unsubscribe'), 'Unsubscribed')
        self.assert_has(self.matrix_cmd('subscriptions'), 'not subscribed')
        self.stop()

    def test_permissions(self):
        self.start()
        self.slack.channels(C0NOTIN={'member': False})
        # a non-manager changes nothing
        self.assert_has(self.slack_cmd('subscribe DEV', user=PLAIN), 'Sorry, only')
        self.assert_has(self.slack_cmd('subscriptions', user=PLAIN), 'not subscribed')
        self.subscribe_slack(CH1, args='DEV')
        self.assert_has(self.slack_cmd('unsubscribe', user=PLAIN), 'Sorry, only')
        self.assert_has(self.slack_cmd('subscribe OPS', user=PLAIN), 'Sorry, only')
        text = self.slack_cmd('subscriptions', user=PLAIN)
        self.assert_has(text, 'DEV')
        self.assert_lacks(text, 'OPS')
        # `subscriptions all`: managers only; it lists every channel
        self.subscribe_slack(CH2, args='WEB')
        self.assert_has(self.slack_cmd('subscriptions all', user=PLAIN), 'Sorry, only')
        self.assert_has(self.slack_cmd('subscriptions all', channel=CH3), CH1, CH2, 'DEV', 'WEB')
        # the bot is not in the channel: asked to be invited, nothing subscribed
        self.assert_has(self.slack_cmd('subscribe', channel='C0NOTIN'), 'invite me')
        self.assert_has(self.slack_cmd('subscriptions', channel='C0NOTIN'), 'not subscribed')
        # Matrix alike
        self.assert_has(self.matrix_cmd('subscribe', sender=MX_PLAIN), 'Sorry, only')
        self.assert_has(self.matrix_cmd('subscriptions', sender=MX_PLAIN), 'not subscribed')
        self.assert_has(self.matrix_cmd('subscriptions all', sender=MX_PLAIN), 'Sorry, only')
        self.assert_has(self.matrix_cmd('subscribe OPS'), 'Subscribed')
        self.assert_has(self.matrix_cmd('subscriptions all', room=ROOM1), ROOM2, 'OPS')
        self.stop()

    def test_pattern_limit(self):
        self.start()
        first = ['P%02d' % i for i in range(1, 31)]
        more = ['P%02d' % i for i in range(31, 51)]
        self.assert_has(self.slack_cmd('subscribe ' + ' '.join(first)), 'Subscribed')
        self.assert_has(self.slack_cmd('subscribe ' + ' '.join(more)), 'Subscribed')
        self.assert_has(self.slack_cmd('subscribe P51'), 'at most 50 patterns')
        text = self.slack_cmd('subscriptions')
        self.assert_has(text, 'P01', 'P50')
        self.assert_lacks(text, 'P51')
        # 51 in one command: refused whole
        many = ' '.join('Q%02d' % i for i in range(1, 52))
        self.assert_has(self.slack_cmd('subscribe ' + many, channel=CH2), 'at most 50 patterns')
        self.assert_has(self.slack_cmd('subscriptions', channel=CH2), 'not subscribed')
        self.assert_has(self.matrix_cmd('subscribe ' + many), 'at most 50 patterns')
        self.assert_has(self.matrix_cmd('subscriptions'), 'not subscribed')
        self.stop()

    def test_channel_limit(self):
        if UNDER_VALGRIND:
            self.skipTest('500 subscribe commands take minutes under valgrind')
        self.start()
        t0 = time.monotonic()
        for i in range(500):
            self.assert_has(self.slack_cmd('subscribe DEV', channel='C0LIM%03d' % i),
                            'Subscribed')
        sys.stderr.write('\n500 subscriptions in %.1f s\n' % (time.monotonic() - t0))
        self.assert_has(self.slack_cmd('subscribe DEV', channel='C0LIM500'),
                        'at most 500 channels')
        self.assert_has(self.slack_cmd('subscriptions', channel='C0LIM500'), 'not subscribed')
        # one more after one is gone
        self.assert_has(self.slack_cmd('unsubscribe', channel='C0LIM000'), 'Unsubscribed')
        self.assert_has(self.slack_cmd('subscribe DEV', channel='C0LIM500'), 'Subscribed')
        # the limit is per platform: Matrix still takes one
        self.assert_has(self.matrix_cmd('subscribe DEV'), 'Subscribed')
        self.stop()


class Durability(SubsTest):

    def subscribe_both(self):
        self.assert_has(self.slack_cmd('subscribe DEV* OPS events=created,renamed'),
                        'Subscribed')
        self.assert_has(self.matrix_cmd('subscribe WEB events=archived'), 'Subscribed')

    def assert_kept(self):
        text = self.slack_cmd('subscriptions')
        self.assert_has(text, 'DEV*', 'OPS')
        self.assertEqual(kinds_named(text), {'created', 'renamed'}, text)
        text = self.matrix_cmd('subscriptions')
        self.assert_has(text, 'WEB')
        self.assertEqual(kinds_named(text), {'archived'}, text)

    def test_survives_restart_and_sighup(self):
        self.start()
        self.subscribe_both()
        self.stop()
        self.start()
        self.assert_kept()
        before = self.daemon.result().stderr.count('reload: new configuration in effect')
        old = self.slack.open_ids()
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait(lambda: self.daemon.result().stderr.count(
            'reload: new configuration in effect') > before, 'the reload')
        # A reload makes a new bridge, with a Socket Mode socket of its own.
        self.wait(lambda: self.slack.replaced(old), 'the new bridge\'s Socket Mode socket')
        self.assert_kept()
        # and they still deliver
        self.change(BASE + [project('0-7', 'DEV7', 'Reloaded seven')], 'Reloaded seven')
        self.wait(lambda: any('Reloaded seven' in message_text(p)
                              for p in self.slack.posts(CH1)), 'the post to the channel')
        self.stop()

    def test_survives_sigkill_right_after_the_answer(self):
        self.start()
        self.subscribe_both()
        self.kill()
        self.start()
        self.assert_kept()
        self.stop()


class Doctor(SubsTest):

    def test_doctor_lists_subscriptions_and_checks_the_bot_token(self):
        self.start()
        self.subscribe_slack(CH1, args='DEV')
        self.assert_has(self.matrix_cmd('subscribe OPS'), 'Subscribed')
        self.stop()
        self.slack._call('DELETE', '/_control/state')
        result = self.bridge.run('--doctor', timeout=60)
        self.check_secrets(result)
        self.check(CH1 in result.stdout and ROOM2 in result.stdout,
                   'the doctor lists the subscribed channel and room', result)
        self.check('auth.test' in result.stdout, 'the doctor reports auth.test', result)
        calls = self.slack.calls('auth.test')
        self.check(calls and all(c['auth_ok'] for c in calls), 'auth.test with the bot token',
                   result)
        self.assertEqual(self.slack.posts(), [], 'the doctor posts nothing')
        # a refused bot token fails the doctor
        self.slack.bot_token('xoxb-another-token')
        result = self.bridge.run('--doctor', timeout=60)
        self.check_secrets(result)
        self.check(result.rc == 1, 'a refused bot token fails --doctor', result)
        self.check(any('FAIL' in ln and 'auth.test' in ln for ln in result.stdout.splitlines()),
                   'a FAIL line names auth.test', result)


if __name__ == '__main__':
    main()
