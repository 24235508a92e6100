"""stomp.py 8.x (STOMP 1.2) against Diglot over raw TCP, and over WebSocket on /stomp."""

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
