"""stomp.py 8.x (STOMP 1.2) against Diglot over raw TCP and over WebSocket (stomp.py's
WSStompConnection, on /stomp since it offers no subprotocol): what issue 5's "Tests" section asks
of the Python suite beyond test_stomp.py and test_durable.py: send/receive on both transports,
`client` (cumulative) and `client-individual` acks with NACK and redelivery after a disconnect,
durable topic subscriptions (`client-id` + `durable:true` + `id`), and transactions."""

import queue

import pytest
import stomp

from clients import EVENTUALLY, Collector, Paho, unique

TRANSPORTS = ["tcp", "ws"]


class Client:
    """A connected stomp.py STOMP 1.2 client over TCP or WebSocket, optionally with a CONNECT
    `client-id` header."""

    def __init__(self, broker, transport, client_id=None):
        if transport == "tcp":
            self.conn = stomp.Connection12([broker.stomp], heartbeats=(0, 0), reconnect_attempts_max=1)
        else:
            from stomp.adapter.ws import WSStompConnection

            self.conn = WSStompConnection([broker.ws], heartbeats=(0, 0), reconnect_attempts_max=1, ws_path="/stomp")
        self.listener = Collector()
        self.conn.set_listener("collector", self.listener)
        headers = {"client-id": client_id} if client_id else {}
        self.conn.connect(wait=True, headers=headers)

    def subscribe(self, destination, sub_id=None, ack="auto", **headers):
        sub_id = sub_id or unique("sub-")
        receipt = unique("sub-receipt-")
        self.conn.subscribe(destination, id=sub_id, ack=ack, headers={"receipt": receipt, **headers})
        self.listener.receipt(receipt)
        return sub_id

    def send(self, destination, body, **headers):
        """SEND with a receipt and wait for it."""
        rid = unique("send-receipt-")
        self.conn.send(destination, body, headers={"receipt": rid, **headers})
        return self.listener.receipt(rid)

    def settle(self, verb, msg, **headers):
        """ACK or NACK (by the MESSAGE's `ack` header, STOMP 1.2) with a receipt; waits for it."""
        assert msg.headers.get("ack"), f"no ack header: {msg.headers}"
        receipt = unique(f"{verb}-receipt-")
        getattr(self.conn, verb)(msg.headers["ack"], receipt=receipt, **headers)
        self.listener.receipt(receipt)

    def next(self):
        return self.listener.next()

    def take(self, n):
        return [self.next() for _ in range(n)]

    def nothing_pending(self, destination, what):
        """SENDs a marker to the /topic `destination` this client subscribes to; it must be the
        next MESSAGE."""
        body = unique("marker-")
        self.send(destination, body)
        m = self.next()
        assert m.body == body, f"{what}: got {m.body!r} before the marker"

    def close(self):
        import threading

        done = threading.Event()

        def run():
            try:
                self.conn.disconnect()
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()
        if not done.wait(EVENTUALLY):
            self.conn.transport.disconnect_socket()
            raise AssertionError("stomp.py DISCONNECT did not finish")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_send_receive_with_headers(broker, transport):
    destination = f"/topic/{unique(f'stomppy/full/{transport}/')}"
    sub = Client(broker, transport)
    pub = Client(broker, "tcp" if transport == "ws" else "ws")
    try:
        sub_id = sub.subscribe(destination)
        pub.send(
            destination,
            "grüße",
            **{"content-type": "text/plain;charset=utf-8", "x-note": "a:b\nc", "correlation-id": "c-1"},
        )
        m = sub.next()
        assert m.cmd == "MESSAGE"
        assert m.body == "grüße"
        assert m.headers["destination"] == destination
        assert m.headers["subscription"] == sub_id
        assert m.headers["content-type"] == "text/plain;charset=utf-8"
        assert m.headers["x-note"] == "a:b\nc"
        assert m.headers["correlation-id"] == "c-1"
        assert m.headers.get("message-id")
    finally:
        sub.close()
        pub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_ack_is_cumulative_and_unacked_are_redelivered(broker, transport):
    destination = f"/queue/{unique(f'py-client-ack-{transport}-')}"
    pub = Client(broker, transport)
    try:
        for i in range(4):
            pub.send(destination, f"c{i}")
    finally:
        pub.close()

    c = Client(broker, transport)
    try:
        c.subscribe(destination, "s", ack="client")
        first = c.take(4)
        assert [m.body for m in first] == ["c0", "c1", "c2", "c3"]
        assert all("redelivered" not in m.headers for m in first)
        c.settle("ack", first[1])  # acknowledges c0 and c1
    finally:
        c.close()

    c = Client(broker, transport)
    try:
        c.subscribe(destination, "s", ack="client")
        again = c.take(2)
        assert [m.body for m in again] == ["c2", "c3"]
        for m in again:
            assert m.headers.get("redelivered") == "true", m.headers
            assert m.headers.get("redelivery-count") == "1", m.headers
        c.settle("ack", again[1])  # both
        c.send(destination, "fresh")
        m = c.next()
        assert m.body == "fresh" and "redelivered" not in m.headers
        c.settle("ack", m)
    finally:
        c.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_individual_nack_redelivers_then_disconnect_redelivers(broker, transport):
    destination = f"/queue/{unique(f'py-individual-{transport}-')}"
    c = Client(broker, transport)
    try:
        c.subscribe(destination, "s", ack="client-individual")
        for i in range(3):
            c.send(destination, f"i{i}")
        first = c.take(3)
        assert [m.body for m in first] == ["i0", "i1", "i2"]
        c.settle("ack", first[2])  # only i2
        c.settle("nack", first[0])  # back to the queue: redelivered to us
        m = c.next()
        assert m.body == "i0"
        assert m.headers.get("redelivered") == "true"
        assert m.headers.get("redelivery-count") == "1"
        # i0 (again) and i1 stay unacknowledged.
    finally:
        c.close()

    c = Client(broker, transport)
    try:
        c.subscribe(destination, "s2", ack="client-individual")
        again = c.take(2)
        assert [m.body for m in again] == ["i0", "i1"], "unacked first, in their original order"
        assert [m.headers.get("redelivery-count") for m in again] == ["2", "1"]
        for m in again:
            c.settle("ack", m)
        c.send(destination, "last")
        m = c.next()
        assert m.body == "last"
        c.settle("ack", m)
    finally:
        c.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_durable_subscription_keeps_messages_while_away(broker, transport):
    client_id = unique(f"py-dash-{transport}-")
    base = unique("py/full/durable/")
    s = Client(broker, transport, client_id=client_id)
    try:
        s.subscribe(f"/topic/{base}/#", "news", ack="client-individual", durable="true")
    finally:
        s.close()

    # While the subscriber is away: persistent STOMP SENDs and MQTT QoS 1 publishes are kept; a
    # non-persistent SEND (QoS 0) is never stored (docs/durability.md).
    pub = Client(broker, transport)
    try:
        pub.send(f"/topic/{base}/a", "s0", persistent="true")
        pub.send(f"/topic/{base}/a", "not kept")
        pub.send(f"/topic/{base}/b", "s1", persistent="true")
    finally:
        pub.close()
    mq = Paho(*broker.mqtt)
    try:
        mq.publish(f"{base}/c", b"m2", qos=1)
    finally:
        mq.close()

    s = Client(broker, transport, client_id=client_id)
    try:
        s.subscribe(f"/topic/{base}/#", "news", ack="client-individual", durable="true")
        got = s.take(3)
        assert [m.body for m in got] == ["s0", "s1", "m2"]
        assert [m.headers["destination"] for m in got] == [f"/topic/{base}/a", f"/topic/{base}/b", f"/topic/{base}/c"]
        assert all(m.headers["subscription"] == "news" for m in got)
        s.settle("ack", got[0])
        s.settle("ack", got[2])
        # Live messages keep flowing to the durable subscription.
        s.send(f"/topic/{base}/live", "live", persistent="true")
        live = s.next()
        assert live.body == "live"
        s.settle("ack", live)
        # s1 is left unacknowledged.
    finally:
        s.close()

    s = Client(broker, transport, client_id=client_id)
    try:
        s.subscribe(f"/topic/{base}/#", "news", ack="client-individual", durable="true")
        m = s.next()
        assert m.body == "s1"
        assert m.headers.get("redelivered") == "true"
        s.settle("ack", m)
        # UNSUBSCRIBE with durable:true removes the durable subscription (RabbitMQ's header).
        receipt = unique("unsub-receipt-")
        s.conn.unsubscribe("news", headers={"receipt": receipt, "durable": "true"})
        s.listener.receipt(receipt)
    finally:
        s.close()

    pub = Client(broker, transport)
    try:
        pub.send(f"/topic/{base}/a", "after the durable unsubscribe", persistent="true")
    finally:
        pub.close()
    s = Client(broker, transport, client_id=client_id)
    try:
        s.subscribe(f"/topic/{base}/#", "news", ack="auto", durable="true")
        s.nothing_pending(f"/topic/{base}/marker", "the removed durable subscription kept nothing")
        receipt = unique("unsub-receipt-")
        s.conn.unsubscribe("news", headers={"receipt": receipt, "durable": "true"})
        s.listener.receipt(receipt)
    finally:
        s.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_transactions_commit_delivers_abort_discards(broker, transport):
    destination = f"/topic/{unique(f'py/full/tx/{transport}/')}"
    c = Client(broker, transport)
    try:
        c.subscribe(destination)
        tx = c.conn.begin(transaction=unique("tx-"))
        c.conn.send(destination, "t1", headers={"transaction": tx})
        c.conn.send(destination, "t2", headers={"transaction": tx})
        c.send(destination, "outside")
        assert c.next().body == "outside", "transactional SENDs wait for COMMIT"
        receipt = unique("commit-receipt-")
        c.conn.commit(transaction=tx, headers={"receipt": receipt})
        c.listener.receipt(receipt)
        assert [m.body for m in c.take(2)] == ["t1", "t2"]

        tx2 = c.conn.begin(transaction=unique("tx-"))
        c.conn.send(destination, "never", headers={"transaction": tx2})
        receipt = unique("abort-receipt-")
        c.conn.abort(tx2, headers={"receipt": receipt})
        c.listener.receipt(receipt)
        c.nothing_pending(destination, "ABORT discards")
        try:
            c.listener.errors.get_nowait()
            raise AssertionError("unexpected ERROR")
        except queue.Empty:
            pass
    finally:
        c.close()
