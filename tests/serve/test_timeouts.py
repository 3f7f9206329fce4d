"""Slow clients against the real server (uvicorn as ``mmsent serve`` runs it, on 127.0.0.1): a connection whose
request headers take longer than the headers deadline is closed; a body slower than the body deadline gets 408."""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
SLACK = 1.5  # seconds past a deadline still counted as on time (2 shared cores, other test sessions beside us)


@pytest.fixture(scope="module")
def server(tiny_predictor):
    import uvicorn

    from mmsent.serve import ServeSettings, create_app
    from mmsent.serve.timeouts import uvicorn_config

    app = create_app(predictor=tiny_predictor,
                     settings=ServeSettings(header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield ("127.0.0.1", port)
    srv.should_exit = True
    thread.join(10)


def drip(address: tuple[str, int], head: bytes, data: bytes, every: float,
         give_up: float) -> tuple[float | None, bytes]:
    """Sends ``head`` at once, then ``data`` a byte every ``every`` seconds (then nothing) until the server closes the
    connection or ``give_up`` seconds pass: the seconds until it closed (None: still open) and what it answered."""
    answer = b""
    with socket.create_connection(address, timeout=5) as sock:
        start = time.monotonic()
        sock.sendall(head)
        i = 0
        while time.monotonic() - start < give_up:
            try:
                if i < len(data):
                    sock.send(data[i:i + 1])
                    i += 1
                if select.select([sock], [], [], every)[0]:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return time.monotonic() - start, answer
                    answer += chunk
            except (ConnectionResetError, BrokenPipeError):  # closed with bytes of ours unread: a reset
                return time.monotonic() - start, answer
    return None, answer


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and a Content-Length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_connection_sending_its_headers_a_byte_at_a_time_is_closed_at_the_headers_deadline(server):
    headers = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 100
    closed, answer = drip(server, b"", headers, every=0.1, give_up=HEADER_TIMEOUT + 4)
    assert closed is not None, "a client still sending its headers after the deadline kept its connection"
    assert HEADER_TIMEOUT - 0.2 < closed < HEADER_TIMEOUT + SLACK and answer == b""


def test_a_connection_sending_nothing_is_closed_at_the_headers_deadline(server):
    closed, _ = drip(server, b"", b"", every=0.1, give_up=HEADER_TIMEOUT + 4)
    assert closed is not None and HEADER_TIMEOUT - 0.2 < closed < HEADER_TIMEOUT + SLACK


def test_a_body_slower_than_the_body_deadline_gets_408_and_the_connection_closed(server):
    head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    closed, answer = drip(server, head, b"{" + b" " * 999, every=0.2, give_up=BODY_TIMEOUT + 4)
    assert closed is not None, "a client sending its body a byte at a time kept its connection past the deadline"
    assert BODY_TIMEOUT - 0.2 < closed < BODY_TIMEOUT + SLACK
    if answer:  # the 408 may be lost to the reset of a close with the client's bytes unread
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"request body not received within 2 s"' in answer


def test_prompt_headers_stop_the_headers_deadline_and_kept_alive_connections_serve_again(server):
    get = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(server, timeout=5) as sock:
        for _ in range(2):  # the second request after the first's headers deadline would have passed
            sock.sendall(get)
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(HEADER_TIMEOUT * 0.8)
    # a body that takes longer than the headers deadline (but not the body's) is read and answered
    head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 6\r\n\r\n")
    closed, answer = drip(server, head, b"[1, 2]", every=0.25, give_up=BODY_TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 422 "), answer[:200]


def test_a_client_that_hangs_up_mid_body_leaves_one_line_not_a_traceback(server, caplog):
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
    with caplog.at_level("INFO"):
        with socket.create_connection(server, timeout=5) as sock:
            sock.sendall(head + b'{"text": "half a bo')
            time.sleep(0.3)
        time.sleep(1.0)  # the server notices the hang-up and finishes the request
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Exception in ASGI application" not in logged and "Traceback" not in logged, logged
