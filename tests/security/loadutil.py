"""A small load driver for the overload tests: keep-alive HTTP/1.1 workers,
closed loop (capacity) or open loop (fixed rate, latency measured from each
request's due time, so queueing counts)."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class Result:
    latencies_ms: List[float] = field(default_factory=list)  # of 200 answers
    statuses: Dict[int, int] = field(default_factory=dict)
    retry_after: Dict[int, int] = field(default_factory=dict)  # status -> answers with Retry-After
    errors: int = 0
    seconds: float = 0.0

    def add(self, other: "Result") -> None:
        self.latencies_ms += other.latencies_ms
        for k, v in other.statuses.items():
            self.statuses[k] = self.statuses.get(k, 0) + v
        for k, v in other.retry_after.items():
            self.retry_after[k] = self.retry_after.get(k, 0) + v
        self.errors += other.errors

    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def p(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]


def _post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: Dict[str, str]):
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("Retry-After")


def run(port: int, path: str, body: bytes, *, workers: int, seconds: float,
        rate: Optional[float] = None, token: Optional[str] = None) -> Result:
    """Closed loop without `rate`; open loop at `rate` requests/s with it."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    start = time.monotonic() + 0.2
    end = start + seconds
    counter = [0]
    lock = threading.Lock()
    results: List[Result] = []

    def worker() -> None:
        res = Result()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            if rate is None:
                now = time.monotonic()
                if now >= end:
                    break
                due = max(now, start)
                if due > now:
                    time.sleep(due - now)
            else:
                with lock:
                    k = counter[0]
                    counter[0] += 1
                due = start + k / rate
                if due >= end:
                    break
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
            try:
                status, retry = _post(conn, path, body, headers)
            except (OSError, http.client.HTTPException):
                res.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            done = time.monotonic()
            res.statuses[status] = res.statuses.get(status, 0) + 1
            if retry is not None:
                res.retry_after[status] = res.retry_after.get(status, 0) + 1
            if status == 200:
                res.latencies_ms.append((done - due) * 1000.0)
        conn.close()
        with lock:
            results.append(res)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    total = Result(seconds=seconds)
    for r in results:
        total.add(r)
    return total


def main() -> None:
    """`python loadutil.py PORT PATH BODY_FILE WORKERS SECONDS RATE TOKEN`:
    one run in its own process (so a flood does not share the measuring
    process's interpreter lock); prints the result as JSON."""
    import json
    import sys

    port, path, body_file, workers, seconds, rate, token = sys.argv[1:8]
    with open(body_file, "rb") as f:
        body = f.read()
    r = run(int(port), path, body, workers=int(workers), seconds=float(seconds),
            rate=float(rate), token=token or None)
    print(json.dumps({"statuses": r.statuses, "retry_after": r.retry_after, "errors": r.errors,
                      "latencies_ms": r.latencies_ms}))


if __name__ == "__main__":
    main()
