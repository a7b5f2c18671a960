"""Bad requests get 4xx answers with Feast-shaped bodies (a JSON string
holding {"module","class","message"}), never 500s, and the proxy stays up."""

import select
import socket
import time

import pytest

import hosutil as H

READ = "/get-online-features"


@pytest.fixture(scope="module")
def proxy(base_repo, proxy_bin, tmp_path_factory):
    """A proxy on a private copy of the base repo (bad writes that the proxy
    wrongly accepted would otherwise change the shared data)."""
    d = tmp_path_factory.mktemp("malformed")
    repo = H.clone_repo(base_repo, d / "repo")
    p = H.start_proxy(["--repo", str(repo)], d / "logs", name="hos-proxy-malformed")
    yield p
    p.stop()


def response_complete(resp):
    head, sep, rest = resp.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(rest) >= int(v.strip())
    return False


def raw_post(port, path, body, timeout=60.0):
    """POSTs `body` on a raw socket, reading while sending, so an early
    answer (a 413 before the whole body is sent) is seen. Returns
    (status or None, response bytes, bytes sent, note)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {H.HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    view = memoryview(body)
    sent, resp, note = 0, b"", ""
    s = socket.create_connection((H.HOST, port), timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        s.sendall(head)
        s.setblocking(False)
        while time.monotonic() < deadline:
            want_write = sent < len(body)
            r, w, _ = select.select([s], [s] if want_write else [], [], 1.0)
            if r:
                try:
                    chunk = s.recv(1 << 16)
                except ConnectionResetError:
                    note = "connection reset by the server"
                    break
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                resp += chunk
                if response_complete(resp):
                    break
            if w and want_write:
                try:
                    sent += s.send(view[sent:sent + (1 << 20)])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError) as e:
                    note = f"{type(e).__name__} while sending"
                    want_write = False
                    sent = len(body)  # stop sending; keep reading
    finally:
        s.close()
    status = None
    if resp.startswith(b"HTTP/1."):
        try:
            status = int(resp.split(b" ", 2)[1])
        except (IndexError, ValueError):
            pass
    return status, resp, sent, note


def error_of(r, status):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    return H.feast_error(r)


def test_malformed_inputs_json_422(proxy):
    r = proxy.post(READ, data=b'{"features": ["user_features:f_int64"], "entities": {')
    error_of(r, 422)


def test_malformed_inputs_join_key_type_422(proxy):
    # a string that is not a number for an Int64 join key
    r = proxy.post(READ, {"features": ["user_features:f_int64"], "entities": {"user_id": ["abc"]}})
    e = error_of(r, 422)
    assert "user_id" in e["message"], e


def test_malformed_inputs_unknown_names_404(proxy):
    r = proxy.post(READ, {"features": ["nope_view:f_int64"], "entities": {"user_id": [1001]}})
    e = error_of(r, 404)
    assert "nope_view" in e["message"], e
    r = proxy.post(READ, {"features": ["user_features:nope_feature"], "entities": {"user_id": [1001]}})
    e = error_of(r, 404)
    assert "nope_feature" in e["message"], e
    r = proxy.post(READ, {"feature_service": "nope_service", "entities": {"user_id": [1001]}})
    e = error_of(r, 404)
    assert "nope_service" in e["message"], e
    r = proxy.post("/write-to-online-store", {"feature_view_name": "nope_view", "df": {"x": [1]}})
    e = error_of(r, 404)
    assert "nope_view" in e["message"], e


def test_malformed_inputs_write_bad_join_key_422(proxy):
    r = proxy.post("/write-to-online-store", {"feature_view_name": "user_merchant", "df": {
        "user_id": ["abc"], "merchant_id": ["m"], "spend": [1.0], "visits": [1],
        "event_timestamp": ["2024-05-01T00:00:00Z"]}})
    e = error_of(r, 422)
    assert "user_id" in e["message"], e


def test_malformed_inputs_write_missing_feature_column_4xx(proxy):
    """Feast refuses a write without every feature column (500 "None of
    [Index(['spend'])] are in the [columns]"); the proxy must refuse it too
    (4xx), not store part of the row."""
    r = proxy.post("/write-to-online-store", {"feature_view_name": "user_merchant", "df": {
        "user_id": [1], "merchant_id": ["m"], "visits": [1], "event_timestamp": ["2024-05-01T00:00:00Z"]}})
    assert 400 <= r.status_code < 500, f"write without column spend: {r.status_code} {r.text[:500]}"
    assert "spend" in H.feast_error(r)["message"]


def test_malformed_inputs_entity_row_limit_413(proxy):
    # default limit 10,000 rows: at the limit fine, above it 413
    r = proxy.post(READ, {"features": ["user_features:f_int32"], "entities": {"user_id": list(range(10_000))}})
    assert r.status_code == 200, f"10,000 rows: {r.status_code} {r.text[:300]}"
    assert len(H.columns(r.json())["f_int32"]["values"]) == 10_000
    r = proxy.post(READ, {"features": ["user_features:f_int32"], "entities": {"user_id": list(range(20_000))}})
    error_of(r, 413)


def test_malformed_inputs_body_limit_413(proxy):
    # a 64 MiB body (default limit 4 MiB)
    pad = 64 * 1024 * 1024
    body = b'{"features": ["user_features:f_int32"], "entities": {"user_id": [1]}, "pad": "' + b"x" * pad + b'"}'
    status, resp, sent, note = raw_post(proxy.port, READ, body)
    assert status == 413, (f"64 MiB body: status {status} after sending {sent} of {len(body)} bytes ({note}); "
                           f"response {resp[:500]!r}")


def test_malformed_inputs_still_serving(proxy):
    """Runs after the others (file order): the proxy is still up."""
    r = proxy.get("/health")
    assert r.status_code == 200, r.text
    r = proxy.post(READ, {"features": ["user_features:f_int32"], "entities": {"user_id": [1001]}})
    assert r.status_code == 200 and H.columns(r.json())["f_int32"]["values"] == [-7], r.text
    assert proxy.proc.alive()
