"""stomp.py 8.x (STOMP 1.2) against Diglot over raw TCP, and over WebSocket on /stomp; raw frames
where a client library would not write them."""

import socket
import time

from clients import Stomp, unique


def test_subscribe_send_receive_over_tcp(broker):
    destination = f"/topic/{unique('stomppy/news/')}"
    sub = Stomp(*broker.stomp)
    pub = Stomp(*broker.stomp)
    try:
        sub_id = sub.subscribe(destination)
        pub.send(destination, "hello from stomp.py ü", **{"content-type": "text/plain"})
        m = sub.next()
        assert m.cmd == "MESSAGE"
        assert m.body == "hello from stomp.py ü"
        assert m.headers["destination"] == destination
        assert m.headers["subscription"] == sub_id
        assert m.headers.get("message-id")
        assert m.headers.get("content-type") == "text/plain"
    finally:
        sub.close()
        pub.close()


def test_send_with_receipt(broker):
    destination = f"/topic/{unique('stomppy/receipt/')}"
    c = Stomp(*broker.stomp)
    try:
        c.subscribe(destination)
        frame = c.send(destination, "with receipt", receipt=True)
        assert frame.cmd == "RECEIPT"
        m = c.next()
        assert m.body == "with receipt"
        assert m.headers["destination"] == destination
    finally:
        c.close()


def test_websocket_stomp_path_without_subprotocol(broker):
    # stomp.py's WebSocket adapter offers no subprotocol; /stomp defaults to STOMP.
    destination = f"/topic/{unique('stomppy/ws/')}"
    ws = Stomp(*broker.ws, ws_path="/stomp")
    tcp = Stomp(*broker.stomp)
    try:
        ws.subscribe(destination)
        tcp.send(destination, "tcp to ws")
        m = ws.next()
        assert m.body == "tcp to ws"
        assert m.headers["destination"] == destination
    finally:
        ws.close()
        tcp.close()


def _read_frames(sock, count, timeout=5.0):
    """Reads until `count` NUL-terminated frames arrived (heart-beat EOLs skipped)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    while data.lstrip(b"\r\n").count(b"\0") < count and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return [f.lstrip(b"\r\n") for f in data.split(b"\0")[:count]]


def test_rabbitmq_style_spacing_over_raw_tcp(broker):
    # RabbitMQ's own STOMP parsing tests connect with a body of one LF (`\n\n\n\0`) and put NUL
    # octets before commands and after frames; both are spacing, not errors.
    destination = f"/topic/{unique('raw/spacing/')}"
    with socket.create_connection(broker.stomp) as s:
        s.sendall(b"CONNECT\nlogin:guest\npasscode:guest\n\n\n\0")
        (connected,) = _read_frames(s, 1)
        assert connected.startswith(b"CONNECTED\n"), connected
        s.sendall(
            b"\n\0SUBSCRIBE\ndestination:" + destination.encode() + b"\nreceipt:r1\n\n\0\n"
            b"\0SEND\ndestination:" + destination.encode() + b"\ncontent-type:text/plain\n\nhello\n\0\0\n"
        )
        receipt, message = _read_frames(s, 2)
        assert receipt.startswith(b"RECEIPT\n") and b"\nreceipt-id:r1\n" in receipt, receipt
        assert message.startswith(b"MESSAGE\n"), message
        assert b"\ndestination:" + destination.encode() + b"\n" in message
        assert message.endswith(b"\n\nhello\n")


def test_python_true_header_value_is_persistent(broker):
    # stomp.py writes a Python True as `persistent:True`; that is persistent (QoS 1), not a
    # silent QoS 0 send.
    destination = f"/topic/{unique('stomppy/persistent/')}"
    sub = Stomp(*broker.stomp)
    pub = Stomp(*broker.stomp)
    try:
        sub.subscribe(destination)
        pub.send(destination, "kept", persistent=True)
        m = sub.next()
        assert m.body == "kept"
        assert m.headers.get("persistent") == "true"
    finally:
        sub.close()
        pub.close()
