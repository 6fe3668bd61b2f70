#!/usr/bin/env python3
"""contrib/: the container, Kubernetes and systemd files, checked without a container
engine, a cluster or a running systemd.

- every configuration in contrib/ (and its commented-out sink examples, uncommented)
  passes `ytbridge -n`, with the secret files it names replaced by temporary ones;
- the configurations agree with the files that deploy them (secret paths, state_dir);
- the systemd unit carries every sandboxing directive; `systemd-analyze verify` and
  `systemd-analyze security` accept it (skipped without systemd-analyze);
- the Containerfile's runtime stage installs packages that cover the binary's shared
  libraries (`ldd` + `dpkg -S`; skipped without dpkg);
- the Kubernetes Deployment: replicas 1, Recreate, probes on /healthz and /readyz at 9464,
  a non-root read-only security context (PyYAML if installed, else text checks);
- the replicated examples (issue 12): the Deployment with RollingUpdate and YTBRIDGE_MEMBER
  from the pod's name, the etcd StatefulSet (three members, TLS, auto-compaction) whose member
  names the replicated configuration lists, and the two-host systemd drop-ins.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Bridge, main, need_binary, redact  # noqa: E402

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    '..', '..'))
CONTRIB = os.path.join(SRC, 'contrib')
CONTAINERFILE = os.path.join(CONTRIB, 'container', 'Containerfile')
CONTAINER_CONF = os.path.join(CONTRIB, 'container', 'ytbridge.conf')
# The build context is the top of the source tree (see the Containerfile's header): docker
# reads <context>/.dockerignore, podman and buildah <context>/.containerignore and, without
# it, .dockerignore.
DOCKERIGNORE = os.path.join(SRC, '.dockerignore')
CONTAINERIGNORE = os.path.join(SRC, '.containerignore')
UNIT = os.path.join(CONTRIB, 'systemd', 'ytbridge.service')
SYSTEMD_CONF = os.path.join(CONTRIB, 'systemd', 'ytbridge.conf')
K8S = os.path.join(CONTRIB, 'kubernetes')
DEPLOYMENT = os.path.join(K8S, 'ytbridge-sidecar.yaml')
CONFIGMAP = os.path.join(K8S, 'ytbridge-configmap.yaml')
SECRET = os.path.join(K8S, 'ytbridge-secret.yaml')
PVC = os.path.join(K8S, 'ytbridge-pvc.yaml')
REPLICATED = os.path.join(K8S, 'replicated')
REP_DEPLOYMENT = os.path.join(REPLICATED, 'app-with-ytbridge.yaml')
REP_CONFIGMAP = os.path.join(REPLICATED, 'ytbridge-configmap.yaml')
REP_SECRET = os.path.join(REPLICATED, 'ytbridge-secret.yaml')
ETCD_DIR = os.path.join(K8S, 'etcd')
ETCD = os.path.join(ETCD_DIR, 'etcd.yaml')
SYSTEMD_CLUSTER_CONF = os.path.join(CONTRIB, 'systemd', 'cluster', 'ytbridge.conf')
SYSTEMD_DROPINS = os.path.join(CONTRIB, 'systemd', 'cluster', 'ytbridge.service.d')

# KEY_file = "PATH"; on an uncommented line.
SECRET_FILE_RE = re.compile(r'\b(\w+)_file\s*=\s*"([^"]*)"')
STATE_DIR_RE = re.compile(r'^(\s*state_dir\s*=\s*)"([^"]*)"', re.M)

try:
    import yaml
except ImportError:  # not in scripts/deps.sh: fall back to text checks
    yaml = None


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def strip_comment(line):
    """libconfig line without its # or // comment (quotes respected)."""
    out, quoted, i = [], False, 0
    while i < len(line):
        c = line[i]
        if c == '"' and (i == 0 or line[i - 1] != '\\'):
            quoted = not quoted
        elif not quoted and (c == '#' or line.startswith('//', i)):
            break
        out.append(c)
        i += 1
    return ''.join(out)


def uncomment_examples(text):
    """Uncomment the commented-out sink examples: a comment whose body starts
    with ", {" up to the comment line that closes the group with "}"."""
    out, inside = [], False
    for line in text.splitlines():
        m = re.match(r'^(\s*)#\s?(.*)$', line)
        body = m.group(2) if m else None
        if m and not inside and body.lstrip().startswith(', {'):
            inside = True
        if inside and m:
            out.append(m.group(1) + body)
            if body.rstrip().endswith('}'):
                inside = False
            continue
        inside = False
        out.append(line)
    return '\n'.join(out) + '\n'


def secret_files(text):
    """[(key, path)] of every KEY_file in the uncommented lines."""
    found = []
    for line in text.splitlines():
        found += SECRET_FILE_RE.findall(strip_comment(line))
    return found


def fake_secret(key):
    if 'url' in key:
        return 'https://hooks.example.invalid/contrib-test/%s\n' % key
    if key == 'token':
        return 'perm:contrib-test-token\n'
    return 'contrib-test-%s\n' % key


def configmap_conf(path=CONFIGMAP):
    """The ytbridge.conf block scalar of the ConfigMap, by text (no YAML needed)."""
    lines = read(path).splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'^(\s*)ytbridge\.conf:\s*\|\s*$', line)
        if not m:
            continue
        indent = None
        body = []
        for nxt in lines[i + 1:]:
            if nxt.strip() == '':
                body.append('')
                continue
            width = len(nxt) - len(nxt.lstrip(' '))
            if width <= len(m.group(1)):
                break
            indent = width if indent is None else min(indent, width)
            body.append(nxt)
        return '\n'.join(x[indent:] for x in body).strip('\n') + '\n'
    raise AssertionError('%s has no "ytbridge.conf: |" key' % path)


def parse_unit(path):
    """{section: [(key, value), ...]}: keys repeat in systemd units."""
    sections, current = {}, None
    for raw in read(path).splitlines():
        line = raw.strip()
        if not line or line[0] in '#;':
            continue
        m = re.fullmatch(r'\[(.+)\]', line)
        if m:
            current = sections.setdefault(m.group(1), [])
            continue
        key, sep, value = line.partition('=')
        if current is None or not sep:
            raise AssertionError('%s: cannot parse %r' % (path, raw))
        current.append((key.strip(), value.strip()))
    return sections


def dockerfile_stages(path):
    """[(from_line, [(INSTRUCTION, args)])] with continuation lines joined."""
    logical, buf = [], ''
    for raw in read(path).splitlines():
        if raw.lstrip().startswith('#') and not buf:
            continue
        if raw.lstrip().startswith('#'):
            continue  # a comment inside a continued instruction
        if raw.rstrip().endswith('\\'):
            buf += raw.rstrip()[:-1] + ' '
            continue
        line = (buf + raw).strip()
        buf = ''
        if line:
            logical.append(line)
    stages = []
    for line in logical:
        instr, _, args = line.partition(' ')
        instr = instr.upper()
        if instr == 'FROM':
            stages.append((args.strip(), []))
        elif stages:
            stages[-1][1].append((instr, args.strip()))
    return stages


def ignore_rules(path):
    """[(exclude, regex)] of a .dockerignore, in order (moby/patternmatcher semantics:
    Go filepath.Match plus **, a leading ! re-includes, the last matching line wins)."""
    rules = []
    for raw in read(path).splitlines():
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        exclude = not line.startswith('!')
        pat = os.path.normpath(line.lstrip('!').strip()).lstrip('/')
        rx, i = '', 0
        while i < len(pat):
            if pat.startswith('**/', i):
                rx, i = rx + '(?:.*/)?', i + 3
            elif pat.startswith('**', i):
                rx, i = rx + '.*', i + 2
            elif pat[i] == '*':
                rx, i = rx + '[^/]*', i + 1
            elif pat[i] == '?':
                rx, i = rx + '[^/]', i + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        rules.append((exclude, re.compile(rx + r'\Z')))
    return rules


def ignored(rules, relpath):
    """True if relpath (or a directory above it) is left out of the build context."""
    parts = relpath.strip('/').split('/')
    prefixes = ['/'.join(parts[:n]) for n in range(1, len(parts) + 1)]
    out = False
    for exclude, rx in rules:
        if any(rx.match(p) for p in prefixes):
            out = exclude
    return out


def apt_packages(instructions):
    pkgs = []
    for instr, args in instructions:
        if instr != 'RUN':
            continue
        for cmd in re.split(r'&&|;', args):
            words = cmd.split()
            if 'apt-get' in words and 'install' in words:
                rest = words[words.index('install') + 1:]
                pkgs += [w for w in rest if not w.startswith('-')]
    return pkgs


class ContribConfigs(unittest.TestCase):
    """`ytbridge -n` on each configuration in contrib/."""

    @classmethod
    def setUpClass(cls):
        need_binary()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='ytbridge-contrib-')
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # Bridge only for run(): the wrapper, the clean environment, the deadline.
        self.bridge = Bridge(self.tmp, 'http://127.0.0.1:9')

    def check_config(self, name, text, env=None):
        """Point every secret file and state_dir at temporary ones, run -n."""
        work = os.path.join(self.tmp, name)
        os.makedirs(work)
        files = secret_files(text)

        def relocate(m):
            key, path = m.group(1), m.group(2)
            local = os.path.join(work, 'secret-' + key + '-'
                                 + re.sub(r'\W', '_', path))
            with open(local, 'w', encoding='utf-8') as f:
                f.write(fake_secret(key))
            os.chmod(local, 0o600)
            return '%s_file = "%s"' % (key, local)

        text = SECRET_FILE_RE.sub(relocate, text)
        text = STATE_DIR_RE.sub(
            lambda m: '%s"%s"' % (m.group(1), os.path.join(work, 'state')), text)
        self.bridge.write_config(text)
        result = self.bridge.run('-n', env=env)  # the harness adds --allow-root as root
        if result.rc != 0 or result.stdout.strip() != 'configuration OK':
            self.fail('%s does not pass -n:\n%s\n--- config as checked ---\n%s'
                      % (name, result.describe(), redact(text)))
        self.assertNotIn('warn', result.stderr.lower(),
                         '%s: -n warns:\n%s' % (name, result.describe()))
        return files

    def test_container_conf(self):
        text = read(CONTAINER_CONF)
        files = self.check_config('container', text)
        self.assertIn(('token', '/run/secrets/youtrack-token'), files)
        self.check_config('container-examples', uncomment_examples(text))

    def test_systemd_conf(self):
        text = read(SYSTEMD_CONF)
        self.check_config('systemd', text)
        self.check_config('systemd-examples', uncomment_examples(text))

    def test_kubernetes_conf(self):
        self.check_config('kubernetes', configmap_conf())

    # The cluster configurations name their member through YTBRIDGE_MEMBER, as deployed (the
    # host name would do, but need not be a valid member name on every build machine).
    def test_kubernetes_replicated_conf(self):
        self.check_config('kubernetes-replicated', configmap_conf(REP_CONFIGMAP),
                          env={'YTBRIDGE_MEMBER': 'app-with-ytbridge-5d8f7c9b4-x2k4q'})

    def test_systemd_cluster_conf(self):
        self.check_config('systemd-cluster', read(SYSTEMD_CLUSTER_CONF),
                          env={'YTBRIDGE_MEMBER': 'bridge-a'})

    def test_uncommenting_finds_the_examples(self):
        # Guards the helper above: each file really has commented sink examples.
        for path in (CONTAINER_CONF, SYSTEMD_CONF):
            text = read(path)
            self.assertGreater(len(secret_files(uncomment_examples(text))),
                               len(secret_files(text)), path)


class ConfigsMatchDeployments(unittest.TestCase):
    """Secret paths and state_dir agree with the files that deploy them."""

    def conf_values(self, text):
        state = STATE_DIR_RE.search(text)
        return secret_files(text), state.group(2) if state else None

    def test_container(self):
        files, state = self.conf_values(uncomment_examples(read(CONTAINER_CONF)))
        for key, path in files:
            self.assertTrue(path.startswith('/run/secrets/'), (key, path))
        stages = dockerfile_stages(CONTAINERFILE)
        instrs = dict(stages[-1][1])
        self.assertEqual(state, instrs.get('VOLUME'))
        self.assertIn('contrib/container/ytbridge.conf /etc/ytbridge/ytbridge.conf',
                      [a for i, a in stages[-1][1] if i == 'COPY'])
        self.assertRegex(read(CONTAINER_CONF),
                         r'(?m)^\s*listen\s*=\s*"0\.0\.0\.0:9464"')

    def test_systemd(self):
        unit = parse_unit(UNIT)['Service']
        creds = {}
        for key, value in unit:
            if key == 'LoadCredential':
                name, _, src = value.partition(':')
                creds[name] = src
        text = read(SYSTEMD_CONF)
        files, state = self.conf_values(text)
        self.assertTrue(files)
        prefix = '/run/credentials/ytbridge.service/'
        for key, path in files:
            self.assertTrue(path.startswith(prefix), (key, path))
            self.assertIn(path[len(prefix):], creds,
                          '%s has no LoadCredential= line' % path)
        # The commented examples name commented LoadCredential= lines.
        commented = re.findall(r'(?m)^#\s*LoadCredential=([^:\s]+):', read(UNIT))
        for key, path in secret_files(uncomment_examples(text)):
            self.assertIn(path[len(prefix):], list(creds) + commented, path)
        self.assertEqual(state, '/var/lib/' + dict(unit)['StateDirectory'])

    def test_kubernetes(self):
        text = configmap_conf()
        files, state = self.conf_values(text)
        self.assertEqual(state, '/var/lib/ytbridge')
        self.assertRegex(text, r'(?m)^\s*listen\s*=\s*"0\.0\.0\.0:9464"')
        for key, path in files:
            self.assertTrue(path.startswith('/run/secrets/ytbridge/'), path)
        secret = read(SECRET)
        for key, path in files:
            self.assertRegex(secret, r'(?m)^\s+%s:' % re.escape(os.path.basename(path)),
                             'the Secret has no key for %s' % path)


    def test_kubernetes_replicated(self):
        text = configmap_conf(REP_CONFIGMAP)
        files, state = self.conf_values(text)
        self.assertEqual(state, '/var/lib/ytbridge')
        self.assertRegex(text, r'(?m)^\s*listen\s*=\s*"0\.0\.0\.0:9464"')
        self.assertIn('password', [key for key, _ in files])
        secret = read(REP_SECRET)
        for key, path in files:
            self.assertTrue(path.startswith('/run/secrets/ytbridge/'), path)
            self.assertRegex(secret, r'(?m)^\s+%s:' % re.escape(os.path.basename(path)),
                             'the Secret has no key for %s' % path)
        # Every replica names itself through YTBRIDGE_MEMBER: no member in the file.
        self.assertNotRegex(text, r'(?m)^\s*member\s*=')

    def test_systemd_cluster(self):
        creds = {}
        for path in [UNIT] + sorted(os.path.join(SYSTEMD_DROPINS, n)
                                    for n in os.listdir(SYSTEMD_DROPINS)):
            for key, value in parse_unit(path).get('Service', []):
                if key == 'LoadCredential':
                    name, _, src = value.partition(':')
                    creds[name] = src
        text = read(SYSTEMD_CLUSTER_CONF)
        files, state = self.conf_values(text)
        prefix = '/run/credentials/ytbridge.service/'
        self.assertEqual(state, '/var/lib/' + dict(parse_unit(UNIT)['Service'])['StateDirectory'])
        for key, path in files:
            if key == 'ca':  # public: a plain file
                self.assertTrue(path.startswith('/etc/ytbridge/'), path)
                continue
            self.assertTrue(path.startswith(prefix), (key, path))
            self.assertIn(path[len(prefix):], creds, '%s has no LoadCredential= line' % path)
        self.assertNotRegex(text, r'(?m)^\s*member\s*=')
        member = dict(parse_unit(os.path.join(SYSTEMD_DROPINS, 'member.conf'))['Service'])
        self.assertRegex(member['Environment'], r'^YTBRIDGE_MEMBER=[A-Za-z0-9._-]{1,63}$')


class SystemdUnit(unittest.TestCase):

    REQUIRED = {
        'Type': 'exec',
        'ExecStart': '/usr/sbin/ytbridge -c /etc/ytbridge/ytbridge.conf',
        'ExecReload': '/bin/kill -HUP $MAINPID',
        'Restart': 'on-failure',
        'RestartSec': '5',
        'DynamicUser': 'yes',
        'StateDirectory': 'ytbridge',
        'UMask': '0077',
        'NoNewPrivileges': 'yes',
        'ProtectSystem': 'strict',
        'ProtectHome': 'yes',
        'PrivateTmp': 'yes',
        'PrivateDevices': 'yes',
        'ProtectKernelTunables': 'yes',
        'ProtectKernelModules': 'yes',
        'ProtectKernelLogs': 'yes',
        'ProtectControlGroups': 'yes',
        'ProtectClock': 'yes',
        'ProtectHostname': 'yes',
        'RestrictNamespaces': 'yes',
        'RestrictRealtime': 'yes',
        'RestrictSUIDSGID': 'yes',
        'LockPersonality': 'yes',
        'MemoryDenyWriteExecute': 'yes',
        'SystemCallArchitectures': 'native',
        'CapabilityBoundingSet': '',
    }

    def setUp(self):
        self.unit = parse_unit(UNIT)
        self.service = self.unit['Service']

    def values(self, key):
        return [v for k, v in self.service if k == key]

    def test_required_directives(self):
        for key, want in self.REQUIRED.items():
            with self.subTest(key=key):
                got = self.values(key)
                self.assertTrue(got, '%s= is missing' % key)
                self.assertEqual(got[-1], want, key)

    def test_address_families_and_syscalls(self):
        families = ' '.join(self.values('RestrictAddressFamilies')).split()
        self.assertEqual(sorted(families), ['AF_INET', 'AF_INET6', 'AF_UNIX'])
        filters = self.values('SystemCallFilter')
        self.assertEqual(filters[0], '@system-service')
        self.assertFalse([f for f in filters[1:] if not f.startswith('~')],
                         'later SystemCallFilter= lines may only deny: %s' % filters)

    def test_credentials(self):
        creds = [v.partition(':')[0] for v in self.values('LoadCredential')]
        self.assertIn('youtrack-token', creds)
        self.assertEqual(dict(self.unit['Install']).get('WantedBy'),
                         'multi-user.target')

    def analyze(self):
        tool = shutil.which('systemd-analyze')
        if not tool:
            self.skipTest('systemd-analyze is not installed')
        return tool

    def test_systemd_analyze_verify(self):
        self.verify(dropins=False)

    def test_systemd_analyze_verify_cluster_dropins(self):
        self.verify(dropins=True)

    def verify(self, dropins):
        tool = self.analyze()
        need_binary()
        binary = os.path.abspath(os.environ['YTBRIDGE_BIN'])
        if re.search(r'[\s%"\'\\]', binary):
            self.skipTest('YTBRIDGE_BIN has characters a unit cannot quote simply')
        tmp = tempfile.mkdtemp(prefix='ytbridge-unit-')
        self.addCleanup(shutil.rmtree, tmp, True)
        # verify checks that ExecStart's binary exists: point it at the one under test.
        unit = os.path.join(tmp, 'ytbridge.service')
        with open(unit, 'w', encoding='utf-8') as f:
            f.write(read(UNIT).replace('/usr/sbin/ytbridge', binary))
        if dropins:  # verify reads ytbridge.service.d/ beside the unit
            shutil.copytree(SYSTEMD_DROPINS, os.path.join(tmp, 'ytbridge.service.d'))
        # --man=no: Documentation=man:ytbridge(8) is not installed on a build machine.
        proc = subprocess.run([tool, 'verify', '--man=no', unit],
                              capture_output=True, text=True, timeout=60)
        # verify exits 0 on an unknown key or a bad value, but prints it.
        complaints = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                      if 'ytbridge.service' in ln]
        if proc.returncode != 0 or complaints:
            self.fail('systemd-analyze verify (exit %d):\n%s%s'
                      % (proc.returncode, proc.stdout, proc.stderr))

    def test_systemd_analyze_security(self):
        tool = self.analyze()
        # --offline and --threshold need systemd 250 (Debian 12 has 252). The
        # threshold is in tenths: 20 = exposure 2.0; the unit scores 1.2 with 252.
        proc = subprocess.run([tool, 'security', '--offline=yes', '--threshold=20',
                               '--no-pager', UNIT],
                              capture_output=True, text=True, timeout=60)
        if re.search(r'unrecognized option|[Uu]nknown option', proc.stderr):
            self.skipTest('systemd-analyze is too old for --offline/--threshold')
        overall = re.search(r'Overall exposure level for \S+: ([\d.]+)', proc.stdout)
        if proc.returncode != 0 or not overall:
            self.fail('systemd-analyze security (exit %d, want exposure <= 2.0):\n%s%s'
                      % (proc.returncode, proc.stdout[-3000:], proc.stderr))


class Containerfile(unittest.TestCase):

    def setUp(self):
        self.stages = dockerfile_stages(CONTAINERFILE)
        self.assertEqual(len(self.stages), 2, 'a build stage and a runtime stage')
        self.build, self.runtime = self.stages[0][1], self.stages[1][1]

    def test_shape(self):
        self.assertEqual(self.stages[0][0], 'debian:12-slim AS build')
        self.assertEqual(self.stages[1][0], 'debian:12-slim')
        build_runs = ' '.join(a for i, a in self.build if i == 'RUN')
        self.assertIn('-Dtests=false', build_runs)
        self.assertIn('DESTDIR=', build_runs)
        rt = {}
        for instr, args in self.runtime:
            rt.setdefault(instr, []).append(args)
        self.assertEqual(rt['USER'], ['10001:10001'])
        self.assertEqual(rt['VOLUME'], ['/var/lib/ytbridge'])
        self.assertEqual(rt['EXPOSE'], ['9464'])
        self.assertEqual(rt['STOPSIGNAL'], ['SIGTERM'])
        self.assertEqual(rt['ENTRYPOINT'], ['["/usr/sbin/ytbridge"]'])
        self.assertEqual(rt['CMD'], ['["-c", "/etc/ytbridge/ytbridge.conf"]'])
        self.assertEqual(len(rt['HEALTHCHECK']), 1)
        self.assertIn('http://127.0.0.1:9464/healthz', rt['HEALTHCHECK'][0])
        for pkg in apt_packages(self.runtime):
            self.assertFalse(pkg.endswith('-dev'), 'runtime stage installs %s' % pkg)
        # The healthcheck's client is installed.
        self.assertIn('curl', apt_packages(self.runtime))

    def test_runtime_packages_cover_the_libraries(self):
        need_binary()
        for tool in ('ldd', 'dpkg-query'):
            if not shutil.which(tool):
                self.skipTest('%s is not available' % tool)
        binary = os.environ['YTBRIDGE_BIN']
        runtime = set(apt_packages(self.runtime))
        self.assertTrue(runtime)
        ldd = subprocess.run(['ldd', binary], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(ldd.returncode, 0, ldd.stderr)
        libs = {}
        for line in ldd.stdout.splitlines():
            m = re.match(r'\s*(\S+) => (/\S+)', line)
            if m:
                libs[m.group(1)] = m.group(2)
        self.assertIn('libc.so.6', libs)
        # A sanitizer build (the suite's second pass) adds the sanitizer runtimes, which a
        # release image does not have, and what they need in turn (libubsan pulls libstdc++).
        # The plain pass checks the release binary's own libraries, so nothing escapes.
        sanitizers = {n for n in libs if re.match(r'lib(a|ub|l|t|hwa)san\.so', n)}
        for name in list(sanitizers):
            dep = subprocess.run(['ldd', libs[name]], capture_output=True, text=True,
                                 timeout=60)
            for line in dep.stdout.splitlines():
                m = re.match(r'\s*(\S+) => (/\S+)', line)
                if m and m.group(1) != 'libc.so.6':
                    sanitizers.add(m.group(1))
        owner = self.owners(libs)
        installed = self.installed_packages()
        allowed = self.closure(runtime | self.required(installed), installed)
        missing = []
        for name, path in sorted(libs.items()):
            if name in sanitizers:
                continue
            pkg = owner.get(name)
            if pkg is None:
                missing.append('%s (%s): no Debian package owns it' % (name, path))
            elif pkg not in allowed:
                missing.append('%s: from %s, not installed by the runtime stage'
                               % (name, pkg))
        self.assertFalse(missing, '\n'.join(missing))
        # libwebsockets loads its libuv event loop as a plugin, which ldd cannot see.
        if 'libwebsockets.so.17' in libs:
            self.assertIn('libwebsockets-evlib-uv', runtime)

    def test_build_context_is_small(self):
        # Without an ignore file the context carries .git, every build*/ directory (ASan
        # builds are hundreds of MiB) and the tests: slow, and secrets in a local config
        # or a build log could land in a builder's cache.
        self.assertTrue(os.path.exists(DOCKERIGNORE),
                        '%s is missing: the build context is the whole tree' % DOCKERIGNORE)
        if os.path.exists(CONTAINERIGNORE):
            # Podman would read it instead of .dockerignore: they must not drift.
            self.assertEqual(read(CONTAINERIGNORE), read(DOCKERIGNORE))
        rules = ignore_rules(DOCKERIGNORE)
        needed = []
        for instr, args in self.build + self.runtime:
            if instr != 'COPY' or args.startswith('--from='):
                continue
            needed += [w for w in args.split()[:-1] if not w.startswith('--')]
        self.assertIn('contrib/container/ytbridge.conf', needed)
        for path in needed:
            with self.subTest(copy=path):
                self.assertFalse(ignored(rules, path), '%s is COPYed but ignored' % path)
                if path.endswith('/'):
                    probe = os.path.join(path, 'meson.build')
                    self.assertFalse(ignored(rules, probe), probe)
        tracked = subprocess.run(['git', '-C', SRC, 'ls-files', '--'] + needed,
                                 capture_output=True, text=True, timeout=60)
        if tracked.returncode == 0:  # not a git checkout (a release tarball): skip this part
            left_out = [p for p in tracked.stdout.splitlines() if ignored(rules, p)]
            self.assertFalse(left_out, 'tracked files under a COPY source are ignored')
        for path in ('.git/HEAD', '.git', 'build/build.ninja', 'build-asan/ytbridge',
                     'builddir/meson-logs/testlog.txt', 'tests/integration/harness.py',
                     'tests/fuzz/corpus/x', 'bridge/build/x.o', '__pycache__/x.pyc',
                     'bridge/__pycache__/x.pyc', '.cache/clangd/x', 'ytbridge.conf',
                     'secrets/youtrack-token'):
            with self.subTest(excluded=path):
                self.assertTrue(ignored(rules, path), '%s enters the build context' % path)

    def test_ignore_matcher(self):
        # Guards the helper above against the documented dockerignore examples.
        tmp = tempfile.mkdtemp(prefix='ytbridge-ignore-')
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, 'ignore')
        with open(path, 'w', encoding='utf-8') as f:
            f.write('# comment\n*/temp*\n**/*.go\n*.md\n!README.md\n/build*\n')
        rules = ignore_rules(path)
        self.assertTrue(ignored(rules, 'somedir/temporary.txt'))
        self.assertFalse(ignored(rules, 'temp'))
        self.assertTrue(ignored(rules, 'a/b/c.go'))
        self.assertTrue(ignored(rules, 'notes.md'))
        self.assertFalse(ignored(rules, 'README.md'))
        self.assertTrue(ignored(rules, 'build-x/y/z'))
        self.assertFalse(ignored(rules, 'src/build.c'))

    def test_man_page_in_runtime_image(self):
        self.assertIn("install_man('ytbridge.8')", read(os.path.join(SRC, 'doc', 'meson.build')))
        copies = [a for i, a in self.runtime if i == 'COPY']
        self.assertIn('--from=build /out/usr/share/man/man8/ytbridge.8 '
                      '/usr/share/man/man8/ytbridge.8', copies)

    @staticmethod
    def owners(libs):
        """soname -> package, trying both sides of the /usr merge."""
        candidates = {}
        for name, path in libs.items():
            paths = [path, os.path.realpath(path)]
            for p in list(paths):
                paths.append('/usr' + p if not p.startswith('/usr/') else p[4:])
            candidates[name] = paths
        allpaths = sorted({p for ps in candidates.values() for p in ps})
        proc = subprocess.run(['dpkg-query', '-S'] + allpaths, capture_output=True,
                              text=True, timeout=60)
        by_path = {}
        for line in proc.stdout.splitlines():
            m = re.match(r'([^\s:,]+)(?::[\w-]+)?: (/\S+)$', line)
            if m:
                by_path[m.group(2)] = m.group(1)
        return {name: next((by_path[p] for p in ps if p in by_path), None)
                for name, ps in candidates.items()}

    @staticmethod
    def installed_packages():
        """name -> (priority, [[alternatives], ...] of Depends + Pre-Depends, provides)."""
        proc = subprocess.run(
            ['dpkg-query', '-W', '-f',
             '${Package}\t${db:Status-Abbrev}\t${Priority}\t${Depends}\t'
             '${Pre-Depends}\t${Provides}\n'],
            capture_output=True, text=True, timeout=60)
        pkgs = {}

        def names(field):
            return [[re.sub(r'[:\s(].*$', '', alt.strip()) for alt in dep.split('|')]
                    for dep in field.split(',') if dep.strip()]

        for line in proc.stdout.splitlines():
            parts = line.split('\t')
            if len(parts) != 6 or not parts[1].startswith('ii'):
                continue
            name, _, prio, dep, pre, prov = parts
            pkgs[name] = (prio, names(dep) + names(pre),
                          [p[0] for p in names(prov)])
        return pkgs

    @staticmethod
    def required(installed):
        """debian:12-slim holds every Priority: required package."""
        return {n for n, (prio, _, _) in installed.items() if prio == 'required'}

    @staticmethod
    def closure(roots, installed):
        providers = {}
        for name, (_, _, provides) in installed.items():
            for virtual in provides:
                providers.setdefault(virtual, []).append(name)
        seen, todo = set(), list(roots)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for alts in installed.get(name, (None, [], []))[1]:
                for alt in alts:
                    todo += [alt] + providers.get(alt, [])
        return seen


class ContainerBuild(unittest.TestCase):
    """Builds the image and runs it: needs podman or docker with an engine, and network
    access to debian:12-slim and Debian's apt mirrors, so it runs only when asked to with
    YTBRIDGE_CONTAINER_BUILD=1 (see contrib/container/README.md)."""

    def engine(self):
        if os.environ.get('YTBRIDGE_CONTAINER_BUILD') != '1':
            self.skipTest('set YTBRIDGE_CONTAINER_BUILD=1 to build the image (needs podman '
                          'or docker and network access to debian:12-slim and apt)')
        for name in ('podman', 'docker'):
            tool = shutil.which(name)
            if tool:
                return name, tool
        self.skipTest('YTBRIDGE_CONTAINER_BUILD=1 but neither podman nor docker is installed')

    def test_build_and_run(self):
        name, tool = self.engine()
        tag = 'localhost/ytbridge-contrib-test:%d' % os.getpid()
        build = [tool, 'build', '-f', CONTAINERFILE, '-t', tag]
        if name == 'podman':
            build[2:2] = ['--format', 'docker']
        proc = subprocess.run(build + [SRC], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            self.fail('%s (exit %d):\n%s%s' % (' '.join(build), proc.returncode,
                                                proc.stdout[-4000:], proc.stderr[-4000:]))
        self.addCleanup(subprocess.run, [tool, 'rmi', '-f', tag], capture_output=True,
                        timeout=300)

        def run(*args):
            return subprocess.run([tool, 'run', '--rm', '--network', 'none'] + list(args),
                                  capture_output=True, text=True, timeout=300)

        version = run(tag, '--version')
        self.assertEqual(version.returncode, 0, version.stderr)
        self.assertIn('ytbridge', version.stdout + version.stderr)
        probe = run('--entrypoint', '/bin/sh', tag, '-c',
                    'id -u; test -s /usr/share/man/man8/ytbridge.8 && echo man; '
                    'test -s /usr/share/doc/ytbridge/ytbridge.conf.example && echo example')
        self.assertEqual(probe.returncode, 0, probe.stderr)
        self.assertEqual(probe.stdout.split(), ['10001', 'man', 'example'])


class Kubernetes(unittest.TestCase):

    def sidecar(self, path, configmap, secret_path):
        """The checks both sidecar Deployments pass: annotations, the bridge container's
        probes, port, security context and mounts, the ConfigMap and Secret it mounts.
        Returns (spec, pod, bridge container, mounts, volumes)."""
        dep = load_yaml(path)
        self.assertEqual(dep['kind'], 'Deployment')
        spec = dep['spec']
        pod = spec['template']
        ann = pod['metadata']['annotations']
        self.assertEqual(ann['prometheus.io/scrape'], 'true')
        self.assertEqual(ann['prometheus.io/port'], '9464')
        self.assertEqual(ann['prometheus.io/path'], '/metrics')
        containers = {c['name']: c for c in pod['spec']['containers']}
        self.assertGreaterEqual(len(containers), 2, 'an app container and ytbridge')
        yb = containers['ytbridge']
        self.assertEqual(yb['livenessProbe']['httpGet'],
                         {'path': '/healthz', 'port': 9464})
        self.assertEqual(yb['readinessProbe']['httpGet'],
                         {'path': '/readyz', 'port': 9464})
        self.assertIn(9464, [p['containerPort'] for p in yb['ports']])
        sc = yb['securityContext']
        self.assertIs(sc['runAsNonRoot'], True)
        self.assertEqual(sc['runAsUser'], 10001)
        self.assertIs(sc['readOnlyRootFilesystem'], True)
        self.assertIs(sc['allowPrivilegeEscalation'], False)
        self.assertEqual(sc['capabilities']['drop'], ['ALL'])
        for kind in ('requests', 'limits'):
            self.assertIn('memory', yb['resources'][kind])
        mounts = {m['name']: m for m in yb['volumeMounts']}
        volumes = {v['name']: v for v in pod['spec']['volumes']}
        self.assertEqual(mounts['state']['mountPath'], '/var/lib/ytbridge')
        self.assertEqual(mounts['config']['mountPath'], '/etc/ytbridge')
        self.assertEqual(mounts['secrets']['mountPath'], '/run/secrets/ytbridge')
        self.assertTrue(mounts['secrets'].get('readOnly'))
        self.assertTrue(mounts['config'].get('readOnly'))
        mode = volumes['secrets']['secret']['defaultMode']
        self.assertEqual(mode & 0o7, 0, 'secrets readable by others: %o' % mode)
        self.assertEqual(mode, 0o440, '%o' % mode)
        self.assertEqual(volumes['config']['configMap']['defaultMode'], 0o444)
        cm, secret = load_yaml(configmap), load_yaml(secret_path)
        self.assertEqual(volumes['config']['configMap']['name'], cm['metadata']['name'])
        self.assertIn('ytbridge.conf', cm['data'])
        self.assertEqual(cm['data']['ytbridge.conf'].strip(), configmap_conf(configmap).strip())
        self.assertEqual(volumes['secrets']['secret']['secretName'],
                         secret['metadata']['name'])
        self.assertEqual(pod['spec']['securityContext']['fsGroup'], 10001)
        return spec, pod, yb, mounts, volumes

    def test_deployment(self):
        if yaml is None:
            return self.text_checks()
        spec, _, _, _, volumes = self.sidecar(DEPLOYMENT, CONFIGMAP, SECRET)
        self.assertEqual(spec['replicas'], 1)
        self.assertEqual(spec['strategy'], {'type': 'Recreate'})
        pvc = load_yaml(PVC)
        self.assertEqual(volumes['state']['persistentVolumeClaim']['claimName'],
                         pvc['metadata']['name'])
        self.assertEqual(pvc['spec']['accessModes'], ['ReadWriteOnce'])

    def test_no_implicit_octal(self):
        # YAML 1.1 (PyYAML, Kubernetes' own decoder) reads 0444 as octal 292, YAML 1.2
        # parsers (yq v4, many linters, Go's yaml.v3 in some modes) as decimal 444 = 0674:
        # world-writable. Every integer with a leading zero is ambiguous; write file modes
        # in decimal with the octal in a comment.
        ambiguous = []
        for path in yaml_files():
            name = os.path.relpath(path, K8S)
            for n, line in enumerate(read(path).splitlines(), 1):
                body = strip_yaml_comment(line)
                if re.search(r'(?::|^\s*-)\s+[-+]?0[0-9_]+\s*$', body):
                    ambiguous.append('%s:%d: %s' % (name, n, line.strip()))
        self.assertFalse(ambiguous, 'leading-zero integers (octal in YAML 1.1, decimal in '
                         'YAML 1.2):\n' + '\n'.join(ambiguous))
        for path in yaml_files():
            text = read(path)
            modes = re.findall(r'(?m)^\s*defaultMode:\s*(\d+)\s*#\s*(0[0-7]{3})\b', text)
            self.assertEqual(len(modes), len(re.findall(r'defaultMode:', text)),
                             '%s: each defaultMode: decimal, then its octal in a comment'
                             % path)
            for dec, octal in modes:
                self.assertEqual(int(dec), int(octal, 8),
                                 '%s: defaultMode: %s  # %s' % (path, dec, octal))
            if path in (DEPLOYMENT, REP_DEPLOYMENT):
                self.assertEqual(sorted(int(o, 8) for _, o in modes), [0o440, 0o444])

    def test_replicated_deployment(self):
        if yaml is None:
            return self.replicated_text_checks()
        spec, _, yb, mounts, volumes = self.sidecar(REP_DEPLOYMENT, REP_CONFIGMAP, REP_SECRET)
        self.assertGreaterEqual(spec['replicas'], 2)
        self.assertEqual(spec['strategy'], {'type': 'RollingUpdate', 'rollingUpdate':
                                            {'maxSurge': 1, 'maxUnavailable': 0}})
        env = {e['name']: e for e in yb['env']}
        self.assertEqual(env['YTBRIDGE_MEMBER']['valueFrom'],
                         {'fieldRef': {'fieldPath': 'metadata.name'}})
        # No claim: the state is in etcd, and a ReadWriteOnce volume would pin the replicas.
        self.assertNotIn('persistentVolumeClaim', volumes[mounts['state']['name']])

    def replicated_text_checks(self):
        body = '\n'.join(strip_yaml_comment(ln) for ln in read(REP_DEPLOYMENT).splitlines())
        self.assertRegex(body, r'(?m)^  replicas: [2-9]$')
        self.assertRegex(body, r'(?m)^  strategy:\n    type: RollingUpdate$')
        self.assertRegex(body, r'- name: YTBRIDGE_MEMBER\n\s+valueFrom:\n\s+fieldRef:\n'
                               r'\s+fieldPath: metadata.name\n')
        self.assertNotIn('persistentVolumeClaim', body)

    def test_etcd_statefulset(self):
        text = read(ETCD)
        args = re.findall(r'(?m)^\s+- (--[a-z-]+=\S+)$', text)
        flags = dict(a[2:].split('=', 1) for a in args)
        # Compaction, or the database grows with every snapshot rewrite until etcd's quota.
        self.assertIn(flags.get('auto-compaction-mode'), ('revision', 'periodic'))
        self.assertTrue(flags.get('auto-compaction-retention'))
        for flag in ('cert-file', 'key-file', 'trusted-ca-file', 'peer-cert-file',
                     'peer-key-file', 'peer-trusted-ca-file'):
            self.assertIn(flag, flags)
        self.assertTrue(flags['listen-client-urls'].startswith('https://'))
        self.assertEqual(flags['peer-client-cert-auth'], 'true')
        members = re.findall(r'(etcd-\d+)=https://', flags['initial-cluster'])
        self.assertEqual(members, ['etcd-0', 'etcd-1', 'etcd-2'])
        namespace = re.search(r'(?m)^namespace: (\S+)$',
                              read(os.path.join(ETCD_DIR, 'kustomization.yaml'))).group(1)
        # The replicated example's configuration names exactly these members' client URLs.
        want = ['https://%s.etcd.%s.svc:2379' % (m, namespace) for m in members]
        self.assertEqual(re.findall(r'"(https://etcd-[^"]+)"', configmap_conf(REP_CONFIGMAP)),
                         want)
        if yaml is None:
            return
        with open(ETCD, encoding='utf-8') as f:
            docs = {d['kind']: d for d in yaml.safe_load_all(f)}
        sts, svc = docs['StatefulSet'], docs['Service']
        self.assertEqual(sts['spec']['replicas'], 3)
        self.assertEqual(sts['spec']['podManagementPolicy'], 'Parallel')
        self.assertEqual(sts['spec']['serviceName'], svc['metadata']['name'])
        self.assertEqual(svc['spec']['clusterIP'], 'None')
        self.assertIs(svc['spec']['publishNotReadyAddresses'], True)
        self.assertEqual(sts['metadata']['name'], 'etcd')

    def test_kustomize(self):
        tool = shutil.which('kubectl')
        if not tool:
            self.skipTest('kubectl is not installed')
        for folder in (K8S, REPLICATED, ETCD_DIR):
            with self.subTest(folder=folder):
                proc = subprocess.run([tool, 'kustomize', folder], capture_output=True,
                                      text=True, timeout=120)
                self.assertEqual(proc.returncode, 0, proc.stderr)

    def text_checks(self):
        text = read(DEPLOYMENT)
        body = '\n'.join(strip_yaml_comment(ln) for ln in text.splitlines())
        self.assertRegex(body, r'(?m)^kind: Deployment$')
        self.assertRegex(body, r'(?m)^  replicas: 1$')
        self.assertRegex(body, r'(?m)^  strategy:\n    type: Recreate$')
        self.assertRegex(body, r'livenessProbe:\n\s+httpGet:\n\s+path: /healthz\n'
                               r'\s+port: 9464\n')
        self.assertRegex(body, r'readinessProbe:\n\s+httpGet:\n\s+path: /readyz\n'
                               r'\s+port: 9464\n')
        for line in ('prometheus.io/scrape: "true"', 'prometheus.io/port: "9464"',
                     'prometheus.io/path: "/metrics"', 'runAsNonRoot: true',
                     'runAsUser: 10001', 'readOnlyRootFilesystem: true',
                     'allowPrivilegeEscalation: false', 'drop: ["ALL"]',
                     'claimName: ytbridge-state', 'secretName: ytbridge-secrets',
                     'name: ytbridge-config', 'mountPath: /var/lib/ytbridge'):
            self.assertIn(line, body)


def load_yaml(path):
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


def yaml_files():
    """Every .yaml/.yml under contrib/kubernetes, sorted."""
    found = []
    for root, _, names in os.walk(K8S):
        found += [os.path.join(root, n) for n in names if n.endswith(('.yaml', '.yml'))]
    return sorted(found)


def strip_yaml_comment(line):
    return re.sub(r'\s+#.*$|^\s*#.*$', '', line)


if __name__ == '__main__':
    main()
