#!/usr/bin/env python3
"""The /healthz, /readyz, /metrics server under hostile clients (issues 9
and 10): a pipelined GET + POST with a body, websocket upgrades, more idle
connections than the cap, a 500-connection flood under a low descriptor
limit, unknown methods, the exact bind address, and a busy port at start and
at a reload.

CAP and IDLE mirror HTTPD_MAX_CONNECTIONS and HTTPD_IDLE_TIMEOUT_S in
bridge/httpd.c. Every wait is a bounded poll; the daemon always runs."""

import os
import re
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SCALE, BridgeTest, Daemon, deadline_wait, main  # noqa: E402
from test_ops import OpsMixin  # noqa: E402

CAP = 64        # HTTPD_MAX_CONNECTIONS
IDLE = 5        # HTTPD_IDLE_TIMEOUT_S
FD_MARGIN = 8   # descriptors the daemon may open meanwhile (libcurl, state)
UPGRADE = (b'GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
           b'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
           b'Sec-WebSocket-Version: 13\r\n\r\n')
STATUS_LINE = re.compile(rb'HTTP/1\.[01] (\d{3}) ')


def statuses(raw):
    """Status codes of every response in a raw byte stream, in order."""
    return [int(m.group(1)) for m in STATUS_LINE.finditer(raw)]


def read_until_closed(sock, timeout):
    """Everything the peer sends until it closes (True) or timeout (False)."""
    out = b''
    end = time.monotonic() + timeout * SCALE
    sock.setblocking(False)
    while time.monotonic() < end:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BlockingIOError):
            return out, True
        if not chunk:
            return out, True
        out += chunk
    return out, False


class Httpd(OpsMixin, BridgeTest):

    def setUp(self):
        super().setUp()
        self.start_ops()

    def fds(self):
        return len(os.listdir('/proc/%d/fd' % self.daemon.proc.pid))

    def stderr_lines(self):
        return self.daemon.result().stderr.count('\n')

    def assert_healthy(self, timeout=5):
        status, _, body = self.request('GET', '/healthz', timeout=timeout)
        self.assertEqual((status, body), (200, 'ok\n'))

    def stop_promptly(self):
        """SIGTERM must end the daemon within a few seconds."""
        t0 = time.monotonic()
        result = self.daemon.stop(timeout=10)
        self.assertLess(time.monotonic() - t0, 10 * SCALE)
        self.assert_ok(result)

    def test_pipelined_get_then_post_with_a_body(self):
        # lws 4.1.6 looped forever on this (lws_service_do_ripe_rxflow ->
        # lws_read_h1): 100% CPU, no answers, SIGTERM ignored.
        raw = self.raw_exchange(
            b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'
            b'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n'
            b'hello', read_for=3)
        self.assertEqual(statuses(raw), [200, 405], raw)
        for _ in range(3):
            self.assert_healthy(timeout=2)
        self.stop_promptly()

    def test_websocket_upgrade_is_refused(self):
        s = socket.create_connection(('127.0.0.1', self.port), timeout=5)
        try:
            s.sendall(UPGRADE)
            raw, _ = read_until_closed(s, 1.5)
        finally:
            s.close()
        self.assertNotIn(101, statuses(raw), raw)
        self.assertEqual(statuses(raw), [200], raw)   # answered as a plain GET
        self.assert_healthy()
        self.stop_promptly()

    def test_unknown_methods_get_405_with_allow(self):
        for method, body in (('DELETE', b''), ('PUT', b'{}'), ('BREW', b''),
                             ('POST', b''), ('OPTIONS', b'')):
            raw = self.raw_exchange(
                b'%s /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n'
                b'\r\n%s' % (method.encode(), len(body), body), read_for=3)
            head = raw.partition(b'\r\n\r\n')[0]
            self.assertRegex(head, rb'^HTTP/1\.1 405 ', method)
            m = re.search(rb'(?im)^allow: *([^\r\n]*)', head)
            self.assertTrue(m, '%s: no Allow header: %r' % (method, head))
            self.assertEqual({x.strip() for x in m.group(1).split(b',')},
                             {b'GET', b'HEAD'}, method)
        # A GET with a body is not served either, and no body is buffered.
        raw = self.raw_exchange(b'GET /healthz HTTP/1.1\r\nHost: x\r\n'
                                b'Content-Length: 100000\r\n\r\n' + b'x' * 1000,
                                read_for=3)
        self.assertIn(statuses(raw), ([405], [413]), raw)
        self.assert_healthy()
        self.stop_promptly()

    def test_idle_connections_beyond_the_cap_time_out(self):
        base = self.fds()
        # Websocket upgrades first (lws answered 101 and kept them forever),
        # then plain idle connections, CAP + 10 in all.
        upgraded = []
        for _ in range(10):
            s = socket.create_connection(('127.0.0.1', self.port), timeout=5)
            s.sendall(UPGRADE)
            upgraded.append(s)
        idle = [socket.create_connection(('127.0.0.1', self.port), timeout=5)
                for _ in range(CAP)]
        try:
            deadline_wait(lambda: self.fds() >= base + CAP - 2, 5,
                          what='the daemon to accept up to the cap')
            n = self.fds()
            self.assertLessEqual(n, base + CAP + FD_MARGIN,
                                 'the daemon holds %d descriptors with %d '
                                 'clients (cap %d, %d before)'
                                 % (n, CAP + 10, CAP, base))
            # A probe waits in the listen queue until idle ones time out.
            t0 = time.monotonic()
            self.assert_healthy(timeout=IDLE + 10)
            self.assertLess(time.monotonic() - t0, (IDLE + 10) * SCALE)
            for s in upgraded:
                raw, closed = read_until_closed(s, IDLE + 5)
                self.assertNotIn(101, statuses(raw), raw)
                self.assertTrue(closed, 'an upgraded connection was kept open '
                                'past the idle timeout: %r' % raw[:200])
        finally:
            for s in upgraded + idle:
                s.close()
        self.assert_healthy()
        self.stop_promptly()

    def test_descriptor_flood_is_capped_and_quiet(self):
        # Restart the daemon with few descriptors: lws accepted until EMFILE
        # and then logged "accept: errno 24" in a tight loop.
        self.daemon.stop(timeout=10)
        argv = ['prlimit', '--nofile=256:256', '--'] + self.bridge.argv()
        self.daemon = Daemon(argv, self.bridge.env(), self.tmp)
        self.addCleanup(self.daemon.kill)
        self.port = self.port_of(self.daemon)
        self.assert_healthy()
        base = self.fds()
        lines0 = self.stderr_lines()
        clients, refused, peak = [], 0, 0
        try:
            for i in range(500):
                s = socket.socket()
                s.settimeout(1 * SCALE)
                try:
                    s.connect(('127.0.0.1', self.port))
                    clients.append(s)
                except OSError:
                    refused += 1
                    s.close()
                if i % 50 == 0:
                    peak = max(peak, self.fds())
            deadline_wait(lambda: self.fds() >= base + CAP - 2, 5,
                          what='the daemon to accept up to the cap')
            for _ in range(5):
                peak = max(peak, self.fds())
                time.sleep(0.1)
            self.assertIsNone(self.daemon.proc.poll(), 'the daemon died')
            self.assertLessEqual(peak, base + CAP + FD_MARGIN,
                                 'the daemon held %d descriptors with %d clients'
                                 % (peak, len(clients)))
            added = self.stderr_lines() - lines0
            self.assertLess(added, 20, 'stderr grew by %d lines during the '
                            'flood:\n%s' % (added,
                                            self.daemon.result().stderr[-2000:]))
        finally:
            for s in clients:
                s.close()
        # The queue of closed connections drains; probes are served again.
        self.assert_healthy(timeout=IDLE + 10)
        self.assertLess(self.stderr_lines() - lines0, 30)
        self.stop_promptly()

    def test_listens_on_exactly_the_configured_address(self):
        self.assert_healthy()
        s = socket.socket()
        s.settimeout(5)
        try:
            with self.assertRaises(ConnectionRefusedError,
                                   msg='127.0.0.2 reached a server configured '
                                   'for 127.0.0.1'):
                s.connect(('127.0.0.2', self.port))
        finally:
            s.close()
        if socket.has_ipv6:
            s = socket.socket(socket.AF_INET6)
            s.settimeout(5)
            try:
                with self.assertRaises(OSError):
                    s.connect(('::1', self.port))
            finally:
                s.close()
        self.stop_promptly()


class BusyPort(OpsMixin, BridgeTest):

    def occupy(self):
        """A listening socket on a free loopback port: (socket, port)."""
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        s.listen(1)
        self.addCleanup(s.close)
        return s, s.getsockname()[1]

    def test_busy_port_at_start_exits_1_with_a_clear_message(self):
        _, port = self.occupy()
        self.bridge.configure(http_listen='127.0.0.1:%d' % port)
        result = self.bridge.run(timeout=20)
        self.check(result.rc == 1, 'expected exit code 1', result)
        self.check('http.listen: 127.0.0.1:%d: address in use' % port
                   in result.stderr, 'no clear "address in use" message',
                   result)

    def test_busy_port_on_reload_keeps_the_old_listener(self):
        self.start_ops()
        old = self.port
        self.assertEqual(self.request('GET', '/healthz')[0], 200)
        busy, port = self.occupy()
        self.bridge.configure(http_listen='127.0.0.1:%d' % port)
        self.daemon.proc.send_signal(signal.SIGHUP)
        want = ('reload: http.listen: 127.0.0.1:%d: address in use; keeping '
                'the running configuration' % port)
        try:
            deadline_wait(lambda: want in self.daemon.result().stderr, 10,
                          what='the refused reload')
        except AssertionError as e:
            self.fail_with(str(e), self.daemon.result())
        self.assertIsNone(self.daemon.proc.poll(), 'the daemon exited')
        for _ in range(3):
            self.assertEqual(self.request('GET', '/healthz', port=old)[0], 200)
        self.assertNotIn('new configuration in effect',
                         self.daemon.result().stderr)
        # Once the port is free, the same file moves the endpoints there.
        busy.close()
        self.daemon.proc.send_signal(signal.SIGHUP)
        try:
            deadline_wait(lambda: 'new configuration in effect'
                          in self.daemon.result().stderr, 15,
                          what='the reload')
        except AssertionError as e:
            self.fail_with(str(e), self.daemon.result())
        self.assertEqual(self.request('GET', '/healthz', port=port)[0], 200)
        with self.assertRaises(ConnectionRefusedError):
            self.request('GET', '/healthz', port=old)
        self.stop_clean()


if __name__ == '__main__':
    main()
