"""Which local process holds the other end of an accepted loopback TCP
connection (Linux /proc; standard library only).

The cluster tests run several bridges with one configuration against one fake
YouTrack and one set of fake receivers; a fake started with --peer-pids
records the pid of the process that sent each request, so a test can tell
which replica polled or posted. The client's socket is found in /proc/net/tcp
(its local address is our peer address), then its inode among the open files
of every process this user may inspect. Costs a few milliseconds per
connection (not per request: a kept-alive connection is looked up once).
"""

import os
import socket


def _hex(addr, family):
    """('127.0.0.1', 8080) -> /proc/net/tcp's '0100007F:1F90'."""
    host, port = addr[0], addr[1]
    packed = socket.inet_pton(family, host)
    if family == socket.AF_INET:
        text = '%08X' % int.from_bytes(packed, 'little')
    else:
        # /proc/net/tcp6: four 32-bit words, each in host (little-endian) order
        text = ''.join('%08X' % int.from_bytes(packed[i:i + 4], 'little')
                       for i in range(0, 16, 4))
    return '%s:%04X' % (text, port)


def _client_inode(sock):
    family = sock.family
    peer = _hex(sock.getpeername(), family)
    local = _hex(sock.getsockname(), family)
    table = '/proc/net/tcp' if family == socket.AF_INET else '/proc/net/tcp6'
    with open(table) as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == peer and fields[2] == local and fields[9] != '0':
                return fields[9]
    return None


def peer_pid(sock):
    """The pid of the local process holding the client end of sock, or None
    (not on loopback, gone already, or not ours to inspect)."""
    try:
        inode = _client_inode(sock)
    except (OSError, ValueError):
        return None
    if inode is None:
        return None
    want = 'socket:[%s]' % inode
    me = os.getpid()
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = '/proc/%s/fd' % entry
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink('%s/%s' % (fd_dir, fd)) == want:
                    return int(entry)
            except OSError:
                continue
    return None
