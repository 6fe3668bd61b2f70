#!/usr/bin/env python3
"""scripts/run.sh, the Quick start demo: closing the terminal stops it all.

Closing a terminal sends SIGHUP to its foreground process group. The bridge
takes SIGHUP as "reload", so run.sh itself must stop the bridge and the demo
YouTrack, or they outlive the terminal and the next run finds the port busy.
YTBRIDGE_BIN makes run.sh skip the package installation and the build.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BridgeTest, deadline_wait  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_SH = os.environ.get('RUN_SH') or os.path.join(HERE, '..', '..', 'scripts',
                                                  'run.sh')
# The bridge's default http.listen (the demo configuration keeps it).
DEMO_PORT = 9464


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def children(pid):
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(') ')[1].split()[0] != 'Z'
    except OSError:
        return False


class RunSh(BridgeTest):

    def run_and_hang_up(self, args, ready, n_children):
        """Start run.sh ARGS like a terminal would, wait for READY in its
        output, send SIGHUP to its process group; everything must end, the
        bridge through SIGTERM (not by noticing its demo state vanish)."""
        port_was_free = port_free(DEMO_PORT)
        out = tempfile.TemporaryFile()
        self.addCleanup(out.close)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('YTBRIDGE_')}
        env['YTBRIDGE_BIN'] = os.environ['YTBRIDGE_BIN']
        env['no_proxy'] = '*'
        # Like a terminal: run.sh leads its own session and process group.
        proc = subprocess.Popen(['bash', RUN_SH] + args,
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(
            proc.pid, signal.SIGKILL))

        def log():
            out.seek(0)
            return out.read().decode('utf-8', 'replace')

        try:
            deadline_wait(lambda: ready in log(), 30,
                          what='run.sh to poll once')
        except AssertionError:
            self.fail('run.sh did not start:\n' + log())
        kids = children(proc.pid)
        if n_children is not None:
            self.assertEqual(len(kids), n_children, '%r\n%s' % (kids, log()))

        os.killpg(proc.pid, signal.SIGHUP)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail('run.sh is still running 15 s after SIGHUP:\n' + log())
        try:
            deadline_wait(lambda: not any(alive(k) for k in kids), 15,
                          what='the children to exit')
        except AssertionError:
            for k in kids:
                if alive(k):
                    os.kill(k, signal.SIGKILL)
            self.fail('still running after run.sh exited: %r\n%s'
                      % ([k for k in kids if alive(k)], log()))
        self.assertIn('SIGTERM: shutting down', log())
        if port_was_free:
            deadline_wait(lambda: port_free(DEMO_PORT), 5,
                          what='port %d to be free' % DEMO_PORT)

    def test_sighup_stops_bridge_and_demo(self):
        # No configuration: the demo YouTrack and the bridge.
        self.run_and_hang_up([], 'now tracking', 2)

    def test_sighup_stops_bridge_with_config(self):
        # -c FILE, as the Quick start suggests; as root it needs no flag.
        self.bridge.write_config()
        self.run_and_hang_up(['-c', self.bridge.config_path], ' polling ',
                             None)


if __name__ == '__main__':
    from harness import main
    main()
