"""Shared helpers of the security suite: process memory, socket sinks that
record what reaches them, and the figures report."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import List

# Lines printed in the "security figures" section at the end of the run.
REPORT: List[str] = []


def report(line: str) -> None:
    REPORT.append(line)


def proc_status_kib(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class SocketSink:
    """A TCP listener on 127.0.0.1 that accepts every connection and keeps
    every byte it receives, to prove what was (not) sent to a host."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._data = bytearray()
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        with conn:
            while not self._stop:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                with self._lock:
                    self._data.extend(chunk)

    def received(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
