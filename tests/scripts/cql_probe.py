"""Probes of a Cassandra node over the native protocol (v4), standard
library only, for the test scripts that start Cassandra (no driver is
installed when they run).

  cql_probe.py version HOST PORT USER PASSWORD
      prints release_version of system.local when a real query answers
      (SASL PLAIN when the node asks for authentication; USER and PASSWORD
      may be empty otherwise); exits non-zero with the reason otherwise.

  cql_probe.py cluster HOST PORT MEMBER...
      exits 0 when the node at HOST:PORT sees the running nodes MEMBER...
      (addresses, HOST among them) as one cluster: system.peers lists the
      other members with tokens and the node's own schema version (a
      stopped node stays listed; it is not looked at), and a read of
      system_distributed (replication factor 3: every node holds every row)
      at consistency ONE/TWO/THREE for 1/2/3 members answers, which needs
      that many replicas up as this coordinator sees them. Otherwise exits
      non-zero with the reason.
"""

import socket
import struct
import sys

ONE, TWO, THREE = 0x0001, 0x0002, 0x0003
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_QUERY, OP_RESULT, OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x07, 0x08, 0x0F, 0x10


class CqlError(Exception):
    pass


def frame(opcode, body):
    # Request header: version 4, flags, stream, opcode, body length.
    return struct.pack(">BBhBi", 0x04, 0, 0, opcode, len(body)) + body


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_frame(sock):
    _version, _flags, _stream, opcode, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    return opcode, recv_exact(sock, length)


def short_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


class Reader:
    """Reads the protocol's notations from a frame body."""

    def __init__(self, body):
        self.b, self.pos = body, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">H")
        s = self.b[self.pos:self.pos + n].decode(errors="replace")
        self.pos += n
        return s

    def bytes_(self):
        n = self.take(">i")
        if n < 0:
            return None
        v = self.b[self.pos:self.pos + n]
        self.pos += n
        return v

    def option(self):
        kind = self.take(">H")
        if kind == 0x0000:  # custom
            self.string()
        elif kind in (0x0020, 0x0022):  # list, set
            self.option()
        elif kind == 0x0021:  # map
            self.option()
            self.option()
        elif kind == 0x0030:  # UDT
            self.string()
            self.string()
            for _ in range(self.take(">H")):
                self.string()
                self.option()
        elif kind == 0x0031:  # tuple
            for _ in range(self.take(">H")):
                self.option()


def error(body):
    r = Reader(body)
    code = r.take(">i")
    return "CQL error 0x%04x: %s" % (code, r.string())


def connect(host, port, user="", password=""):
    """A connection past STARTUP (and SASL PLAIN when the node asks)."""
    s = socket.create_connection((host, port), timeout=5)
    s.settimeout(15)
    s.sendall(frame(OP_STARTUP, struct.pack(">H", 1) + short_string("CQL_VERSION") + short_string("3.0.0")))
    op, body = read_frame(s)
    if op == OP_AUTHENTICATE:
        token = b"\0" + user.encode() + b"\0" + password.encode()
        s.sendall(frame(OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token))
        op, body = read_frame(s)
        if op != OP_AUTH_SUCCESS:
            raise CqlError(error(body) if op == OP_ERROR else "unexpected opcode %d after AUTH_RESPONSE" % op)
    elif op != OP_READY:
        raise CqlError(error(body) if op == OP_ERROR else "unexpected opcode %d after STARTUP" % op)
    return s


def query(sock, cql, consistency):
    """Rows of a QUERY as lists of raw values (bytes or None)."""
    q = cql.encode()
    sock.sendall(frame(OP_QUERY, struct.pack(">i", len(q)) + q + struct.pack(">HB", consistency, 0)))
    op, body = read_frame(sock)
    if op == OP_ERROR:
        raise CqlError("%s: %s" % (cql, error(body)))
    r = Reader(body)
    if op != OP_RESULT or r.take(">i") != 2:
        raise CqlError("%s: not a rows result" % cql)
    flags, ncols = r.take(">i"), r.take(">i")
    if flags & 0x0002:  # paging state
        r.bytes_()
    if not flags & 0x0004:  # metadata present
        if flags & 0x0001:  # global table spec
            r.string()
            r.string()
        for _ in range(ncols):
            if not flags & 0x0001:
                r.string()
                r.string()
            r.string()
            r.option()
    return [[r.bytes_() for _ in range(ncols)] for _ in range(r.take(">i"))]


def inet(b):
    return socket.inet_ntop(socket.AF_INET if len(b) == 4 else socket.AF_INET6, b) if b else None


def version(host, port, user, password):
    s = connect(host, int(port), user, password)
    rows = query(s, "SELECT release_version FROM system.local", ONE)
    if not rows or rows[0][0] is None:
        raise CqlError("system.local returned no row")
    print(rows[0][0].decode())


def cluster(host, port, *members):
    level = {1: ONE, 2: TWO, 3: THREE}[len(members)]
    s = connect(host, int(port))
    (local_schema, local_tokens), = query(s, "SELECT schema_version, tokens FROM system.local", ONE)
    if not local_tokens:
        raise CqlError("no tokens yet")
    peers = {inet(p): (v, t) for p, v, t in query(s, "SELECT peer, schema_version, tokens FROM system.peers", ONE)}
    missing = [m for m in members if m != host and m not in peers]
    if missing:
        raise CqlError("system.peers lists %s, not %s" % (sorted(peers), missing))
    for p, (v, t) in sorted(peers.items()):
        if p not in members:
            continue
        if not t:
            raise CqlError("peer %s has no tokens yet" % p)
        if v != local_schema:
            raise CqlError("peer %s has another schema version (schema not agreed yet)" % p)
    query(s, "SELECT keyspace_name FROM system_distributed.view_build_status LIMIT 1", level)


def main(argv):
    commands = {"version": (version, 4), "cluster": (cluster, None)}
    if len(argv) < 2 or argv[1] not in commands:
        sys.exit("usage: cql_probe.py version HOST PORT USER PASSWORD | cluster HOST PORT MEMBER...")
    fn, nargs = commands[argv[1]]
    args = argv[2:]
    if (nargs is not None and len(args) != nargs) or (nargs is None and not 3 <= len(args) <= 5):
        sys.exit("cql_probe.py %s: wrong number of arguments" % argv[1])
    try:
        fn(*args)
    except (OSError, EOFError, CqlError, struct.error, ValueError, KeyError) as e:
        sys.exit("%s: %s" % (args[0], e))


if __name__ == "__main__":
    main(sys.argv)
