#!/usr/bin/env python3
"""Command line: --version, --help, --check-config, exit codes, formats."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TOKEN, BridgeTest, main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, '..', '..', 'config', 'ytbridge.conf.example')
# The built-in default path (bridge/conf.h) and state directory (bridge/conf.c).
DEFAULT_CONFIG = '/etc/ytbridge/ytbridge.conf'
DEFAULT_STATE_DIR = '/var/lib/ytbridge'

# name -> (replace this line of the generated config, with this; or None to
# drop it).  The error must point at the line of the replacement.
BAD_CONFIGS = {
    'unknown_key': ('  page_size = 2;', '  page_sise = 2;'),
    'wrong_type': ('  poll_interval = 10;', '  poll_interval = "ten";'),
    'out_of_range_page_size': ('  page_size = 2;', '  page_size = 0;'),
    'out_of_range_interval': ('  poll_interval = 10;',
                              '  poll_interval = -5;'),
    'bad_api': ('  api = "auto";', '  api = "v3";'),
    'bad_first_run': ('  first_run = "announce";',
                      '  first_run = "everything";'),
    'bad_confirmations': ('  removal_confirmations = 2;',
                          '  removal_confirmations = 0;'),
    'bad_sink_type': ('sinks = ( { name = "out"; type = "stdout"; '
                      'format = "json"; } );',
                      'sinks = ( { name = "out"; type = "carrier-pigeon"; } );'),
    'bad_log_level': ('log: { level = "debug"; };',
                      'log: { level = "chatty"; };'),
    'syntax_error': ('  timeout = 5;', '  timeout = = 5;'),
}


class Cli(BridgeTest):

    def test_version(self):
        for flag in ('-V', '--version'):
            result = self.assert_ok(self.bridge.run(flag, config=False))
            self.assertRegex(result.stdout, r'ytbridge.*\d+\.\d+\.\d+')
        self.assertEqual(self.fake.requests(), [])

    def test_help_lists_the_options(self):
        for flag in ('-h', '--help'):
            result = self.assert_ok(self.bridge.run(flag, config=False))
            for opt in ('--once', '--dry-run', '--check-config',
                        '--accept-removals', '--log-level', '--log-format',
                        '--version'):
                self.assertIn(opt, result.stdout)
        self.assertEqual(self.fake.requests(), [])

    def test_unknown_option_is_a_usage_error(self):
        for args in (('--frobnicate',), ('--log-format', 'xml', '--once'),
                     ('--log-level', 'loud', '--once')):
            with self.subTest(args=args):
                result = self.bridge.run(*args)
                self.check(result.rc == 2, 'usage errors exit 2', result)
                self.assert_quiet(result)
        self.assertEqual(self.fake.requests(), [])

    def test_check_config_ok_is_offline(self):
        for flag in ('-n', '--check-config'):
            result = self.assert_ok(self.bridge.run(flag))
            self.assertEqual(result.stdout.strip(), 'configuration OK')
        self.assertEqual(self.fake.requests(), [])
        self.assertIsNone(self.bridge.snapshot_bytes())

    def test_check_config_reports_file_and_line(self):
        good = self.bridge.config_text()
        for name, (old, new) in BAD_CONFIGS.items():
            with self.subTest(case=name):
                lines = good.splitlines()
                self.assertIn(old, lines)
                lineno = lines.index(old) + 1
                lines[lineno - 1] = new
                self.bridge.write_config('\n'.join(lines) + '\n')
                result = self.bridge.run('--check-config')
                self.check(result.rc == 2, 'a bad config exits 2', result)
                out = result.stdout + result.stderr
                want = '%s:%d: ' % (self.bridge.config_path, lineno)
                if name == 'syntax_error':
                    # libconfig reports a syntax error where it notices it:
                    # on this line or the next
                    ok = any('%s:%d: ' % (self.bridge.config_path, n) in out
                             for n in (lineno, lineno + 1))
                else:
                    ok = want in out
                self.check(ok, 'no "%s" diagnostic' % want, result)
                self.assertNotIn('configuration OK', out)
                # the daemon itself refuses the same file
                result = self.bridge.once()
                self.check(result.rc == 2, 'running with a bad config exits 2',
                           result)
                self.assert_quiet(result)
        self.assertEqual(self.fake.requests(), [])

    def test_check_config_cluster(self):
        # A cluster block is checked offline, like the rest: no etcd is asked, and a
        # password never shows, wherever it was put.
        password = 'fake-etcd-Pw7x'
        pw_file = os.path.join(self.tmp, 'etcd-password')
        with open(pw_file, 'w', encoding='utf-8') as f:
            f.write(password + '\n')
        os.chmod(pw_file, 0o600)
        good = self.bridge.config_text()
        self.bridge.write_config(good + 'cluster: { etcd = [ "http://127.0.0.1:9" ];\n'
                                 '  user = "ytbridge"; password_file = "%s"; };\n' % pw_file)
        result = self.assert_ok(self.bridge.run('-n', env={'YTBRIDGE_MEMBER': 'cli-test'}))
        self.assertEqual(result.stdout.strip(), 'configuration OK')
        first = len(good.splitlines()) + 1
        self.bridge.write_config(
            good + 'cluster: {\n'
            '  etcd = [ "http://etcd.example.com:2379/v3" ];\n'
            '  lease_ttl = 1;\n'
            '  member = "x %s";\n'
            '  user = "ytbridge"; password_file = "%s"; };\n' % (password, password))
        result = self.bridge.run('-n')
        self.check(result.rc == 2, 'a bad cluster block exits 2', result)
        out = result.stdout + result.stderr
        for line, key in ((first + 1, 'etcd[0]'), (first + 2, 'lease_ttl'),
                          (first + 3, 'member'), (first + 4, 'password_file')):
            self.assertIn('%s:%d: cluster.%s: ' % (self.bridge.config_path, line, key), out)
        self.assertNotIn(password, out)
        self.assertEqual(self.fake.requests(), [])

    def test_missing_token_is_a_config_error(self):
        self.bridge.configure(token=None)
        result = self.bridge.run('--check-config')
        self.check(result.rc == 2, 'a missing token exits 2', result)
        self.assertRegex(result.stdout + result.stderr,
                         re.escape(self.bridge.config_path) + r':\d+: ')
        # ...but the environment can supply it
        result = self.bridge.run('--check-config',
                                 env={'YTBRIDGE_YOUTRACK_TOKEN': TOKEN})
        self.assert_ok(result)

    def test_missing_config_file_exits_2(self):
        os.unlink(self.bridge.config_path)
        result = self.bridge.once()
        self.check(result.rc == 2, 'a missing config file exits 2', result)
        self.check(self.bridge.config_path in result.stderr,
                   'the error names the file', result)

    def test_config_path_from_environment(self):
        result = self.bridge.run(
            '--once', config=False,
            env={'YTBRIDGE_CONFIG': self.bridge.config_path})
        self.assert_ok(result)
        self.assertEqual(len(result.events), 3)

    def test_json_logs_are_json_lines_on_stderr(self):
        result = self.assert_ok(self.bridge.once('--log-format', 'json'))
        self.assertEqual(len(result.events), 3)
        for line in result.stderr.splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                self.fail_with('stderr line is not JSON: %r' % line, result)
            self.assertIsInstance(obj, dict)

    def test_log_level_error_is_quiet_on_success(self):
        result = self.assert_ok(self.bridge.once('--log-level', 'error'))
        self.assertEqual(len(result.events), 3)
        self.check(result.stderr.strip() == '',
                   'nothing to log at level error on success', result)

    def test_text_sink_format(self):
        self.bridge.configure(sink_format='text')
        result = self.assert_ok(self.bridge.once())
        self.assertEqual(result.lines, [
            'project created: Демопроект (DEMO) %s/projects/0-0' % self.fake.url,
            'project created: DEVELOPMENT (DEV) %s/projects/0-1' % self.fake.url,
            'project created: DOCS (DOCS) %s/projects/0-2' % self.fake.url,
        ])

    def test_oneshot_runs_log_one_poll(self):
        # --once and --dry-run poll once: "every 60 s" would be a lie.
        for flag in ('--once', '--dry-run'):
            with self.subTest(flag=flag):
                result = self.assert_ok(self.bridge.run(flag))
                self.check('one poll' in result.stderr,
                           'the start line says "one poll"', result)
                self.check(' every ' not in result.stderr,
                           'no poll interval for a one-shot run', result)

    def test_check_example_config_names_what_is_missing(self):
        # The installed example is a template: -n on it says exactly what
        # is missing (the token) and every way to give it...
        result = self.bridge.run('-n', '-c', EXAMPLE, config=False)
        self.check(result.rc == 2, 'the example alone exits 2', result)
        problems = [line for line in result.stderr.splitlines() if line]
        self.check(len(problems) == 1, 'one problem: the token', result)
        self.assertIn('missing token', problems[0])
        self.assertIn('YTBRIDGE_YOUTRACK_TOKEN', problems[0])
        # ...and with that one thing supplied it is a valid configuration.
        result = self.assert_ok(self.bridge.run(
            '-n', '-c', EXAMPLE, config=False,
            env={'YTBRIDGE_YOUTRACK_TOKEN': TOKEN}))
        self.assertEqual(result.stdout.strip(), 'configuration OK')

    def test_environment_alone_is_enough(self):
        if os.path.exists(DEFAULT_CONFIG):
            self.skipTest('%s exists on this machine' % DEFAULT_CONFIG)
        state_existed = os.path.exists(DEFAULT_STATE_DIR)
        env = {'YTBRIDGE_YOUTRACK_URL': self.fake.url,
               'YTBRIDGE_YOUTRACK_TOKEN': TOKEN}
        result = self.assert_ok(self.bridge.run('-n', config=False, env=env))
        self.assertIn('configuration OK', result.stdout)
        result = self.assert_ok(self.bridge.run('--dry-run', config=False,
                                                env=env))
        self.check(self.fake.requests() != [], 'the dry run polled', result)
        self.check(state_existed or not os.path.exists(DEFAULT_STATE_DIR),
                   'a dry run leaves the state directory alone', result)
        # Without the environment, the missing default file is the problem,
        # and the message says both ways out.
        result = self.bridge.run('--dry-run', config=False)
        self.check(result.rc == 2, 'nothing to run with exits 2', result)
        self.check(DEFAULT_CONFIG in result.stderr
                   and 'YTBRIDGE_YOUTRACK_URL' in result.stderr,
                   'the error names the file and the variables', result)
        # A file that was named must exist, environment or not.
        result = self.bridge.run('--dry-run', '-c', self.tmp + '/nope.conf',
                                 config=False, env=env)
        self.check(result.rc == 2, 'a named missing file exits 2', result)


if __name__ == '__main__':
    main()
