"""Durable delivery with real clients: paho-mqtt persistent sessions (3.1.1 clean_session=False,
MQTT 5 clean_start=False + Session Expiry Interval) keep QoS 1 messages while the client is away
and across a daemon restart; stomp.py `/queue/<name>` keeps messages for a later consumer, with
client-individual acks, redelivery and the dead-letter queue `/queue/dlq.<name>`."""

import queue
import threading
import time

import paho.mqtt.client as mqtt
import pytest
import stomp
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from clients import EVENTUALLY, Collector, Paho, Stomp, unique
from conftest import restart_broker

VERSIONS = [pytest.param(mqtt.MQTTv311, id="mqtt311"), pytest.param(mqtt.MQTTv5, id="mqtt5")]


class Session:
    """A paho-mqtt client on a persistent session: clean_session=False (3.1.1), or
    clean_start=False with Session Expiry Interval 300 s (5). Callbacks are set before the
    CONNECT goes out, so the backlog the broker sends right after the CONNACK is not missed.
    With manual_ack=True, QoS 1 messages are PUBACKed only by ack()."""

    def __init__(self, addr, client_id, protocol, manual_ack=False):
        self.messages = queue.Queue()
        self._cond = threading.Condition()
        self._connack = None
        self._subacks = {}
        kwargs = {} if protocol == mqtt.MQTTv5 else {"clean_session": False}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            manual_ack=manual_ack,
            **kwargs,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        if protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 300
            self.client.connect(*addr, keepalive=30, clean_start=False, properties=props)
        else:
            self.client.connect(*addr, keepalive=30)
        self.client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._connack is not None, EVENTUALLY):
                self.close()
                raise AssertionError(f"no CONNACK for {client_id}")
        flags, reason = self._connack
        if reason.is_failure:
            self.close()
            raise AssertionError(f"CONNACK refused: {reason}")
        self.session_present = flags.session_present

    def _on_connect(self, _client, _userdata, flags, reason_code, _properties):
        with self._cond:
            self._connack = (flags, reason_code)
            self._cond.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        with self._cond:
            self._subacks[mid] = reason_codes
            self._cond.notify_all()

    def subscribe(self, topic, qos=1):
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._subacks, EVENTUALLY), f"no SUBACK for {topic}"
            codes = self._subacks.pop(mid)
        assert codes[0].value == qos, f"SUBSCRIBE {topic} granted {codes[0]}"

    def take(self, n):
        got = []
        for i in range(n):
            try:
                got.append(self.messages.get(timeout=EVENTUALLY))
            except queue.Empty:
                raise AssertionError(
                    f"timed out waiting for message {i + 1} of {n}; got {[m.payload for m in got]}"
                ) from None
        return got

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def park_session(broker, client_id, protocol, topic_filter):
    """Creates a persistent session subscribed to `topic_filter` at QoS 1, then leaves, and
    waits until the broker has ended the connection: a message published before that may
    still go to the connection that is leaving, and then comes back as a redelivery."""
    s = Session(broker.mqtt, client_id, protocol)
    try:
        assert s.session_present is False, "a new client id has no session yet"
        s.subscribe(topic_filter, 1)
    finally:
        s.close()
    wait_closed(broker, client_id)


def wait_closed(broker, client_id):
    """Waits until the broker logs the end of `client_id`'s connection."""
    needle = f'client_id="{client_id}"'
    deadline = time.monotonic() + EVENTUALLY
    while time.monotonic() < deadline:
        if any("connection closed" in line and needle in line for line in list(broker.lines)):
            return
        time.sleep(0.01)
    raise AssertionError(f"the broker did not log the end of {client_id}'s connection\n{broker.log()}")


def publish_acked(addr, topic, n):
    """Publishes m0..m{n-1} at QoS 1, each PUBACKed before the next."""
    p = Paho(*addr)
    try:
        for i in range(n):
            p.publish(topic, f"m{i}", qos=1)
    finally:
        p.close()


def expected(n):
    return [f"m{i}".encode() for i in range(n)]


def redelivery_count(msg):
    props = getattr(msg, "properties", None)
    return dict(getattr(props, "UserProperty", None) or []).get("redelivery-count")


@pytest.mark.parametrize("protocol", VERSIONS)
def test_persistent_session_keeps_messages_while_away(broker, protocol):
    client_id = unique("paho-away-")
    base = unique("py/durable/")
    park_session(broker, client_id, protocol, f"{base}/#")
    publish_acked(broker.mqtt, f"{base}/a", 20)

    s = Session(broker.mqtt, client_id, protocol)
    try:
        assert s.session_present is True, "CONNACK session present"
        got = s.take(20)
        assert [m.payload for m in got] == expected(20)
        for m in got:
            assert m.topic == f"{base}/a"
            assert m.qos == 1
            assert m.dup is False, f"DUP on the first delivery attempt of {m.payload}"
        # The subscription is part of the session: a message published now arrives too.
        publish_acked(broker.mqtt, f"{base}/live", 1)
        (live,) = s.take(1)
        assert (live.topic, live.payload) == (f"{base}/live", b"m0")
    finally:
        s.close()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_unacked_messages_are_redelivered_first_in_order_with_dup(broker, protocol):
    client_id = unique("paho-unacked-")
    base = unique("py/unacked/")
    park_session(broker, client_id, protocol, f"{base}/#")
    publish_acked(broker.mqtt, f"{base}/x", 5)

    # manual_ack: only m1 and m3 get a PUBACK; then a clean DISCONNECT.
    s = Session(broker.mqtt, client_id, protocol, manual_ack=True)
    try:
        assert s.session_present is True
        first = s.take(5)
        assert [m.payload for m in first] == expected(5)
        assert all(m.dup is False for m in first)
        for i in (3, 1):
            assert s.client.ack(first[i].mid, 1) == mqtt.MQTT_ERR_SUCCESS
    finally:
        s.close()

    s = Session(broker.mqtt, client_id, protocol)
    try:
        assert s.session_present is True
        again = s.take(3)
        assert [m.payload for m in again] == [b"m0", b"m2", b"m4"]
        for m, was in zip(again, (first[0], first[2], first[4])):
            assert m.dup is True, f"DUP=1 on the redelivery of {m.payload} [MQTT-3.3.1-1]"
            assert m.mid == was.mid, "the original packet identifier is reused [MQTT-4.4.0-1]"
            if protocol == mqtt.MQTTv5:
                assert redelivery_count(m) == "1", m.properties
        # Nothing else is pending: the next message is a new one.
        publish_acked(broker.mqtt, f"{base}/after", 1)
        (after,) = s.take(1)
        assert (after.topic, after.dup) == (f"{base}/after", False)
    finally:
        s.close()


@pytest.mark.parametrize("protocol", VERSIONS)
def test_persistent_session_survives_a_restart(own_broker, protocol):
    client_id = unique("paho-restart-")
    base = unique("py/restart/")
    park_session(own_broker.b, client_id, protocol, f"{base}/+")
    publish_acked(own_broker.b.mqtt, f"{base}/r", 20)

    own_broker.b = restart_broker(own_broker.b)

    s = Session(own_broker.b.mqtt, client_id, protocol)
    try:
        assert s.session_present is True, "CONNACK session present after the restart"
        got = s.take(20)
        assert [m.payload for m in got] == expected(20)
        assert all(m.topic == f"{base}/r" and m.qos == 1 for m in got)
    finally:
        s.close()


class Stomp12(Stomp):
    """clients.Stomp speaks STOMP 1.1 (stomp.Connection is StompConnection11); this one 1.2."""

    def __init__(self, host, port):
        self.conn = stomp.Connection12([(host, port)], heartbeats=(0, 0), reconnect_attempts_max=1)
        self.listener = Collector()
        self.conn.set_listener("collector", self.listener)
        self.conn.connect(wait=True)


STOMP_VERSIONS = [pytest.param(Stomp, id="stomp11"), pytest.param(Stomp12, id="stomp12")]


def stomp_subscribe(c, destination, sub_id, ack):
    receipt = unique("sub-receipt-")
    c.conn.subscribe(destination, id=sub_id, ack=ack, headers={"receipt": receipt})
    c.listener.receipt(receipt)


def settle(c, verb, msg, **headers):
    """ACK or NACK with a receipt, and wait for it. STOMP 1.2 names the message by the
    MESSAGE's `ack` header, 1.1 by `message-id` and `subscription`."""
    receipt = unique(f"{verb}-receipt-")
    if isinstance(c, Stomp12):
        assert msg.headers.get("ack"), f"STOMP 1.2 MESSAGE on a client-individual subscription: {msg.headers}"
        getattr(c.conn, verb)(msg.headers["ack"], receipt=receipt, **headers)
    else:
        getattr(c.conn, verb)(msg.headers["message-id"], msg.headers["subscription"], receipt=receipt, **headers)
    c.listener.receipt(receipt)


@pytest.mark.parametrize("Client", STOMP_VERSIONS)
def test_stomp_queue_keeps_messages_for_a_later_consumer_and_dead_letters_a_nack(broker, Client):
    name = unique("py-jobs-")
    destination = f"/queue/{name}"
    pub = Client(*broker.stomp)
    try:
        for i in range(5):
            frame = pub.send(destination, f"job{i}", receipt=True)
            assert frame.cmd == "RECEIPT"
    finally:
        pub.close()

    # Nobody was subscribed when they were sent; a later consumer gets all of them, in order.
    c = Client(*broker.stomp)
    try:
        stomp_subscribe(c, destination, "w", "client-individual")
        msgs = [c.next() for _ in range(5)]
        assert [m.body for m in msgs] == [f"job{i}" for i in range(5)]
        for m in msgs:
            assert m.headers["destination"] == destination
            assert "redelivered" not in m.headers
        for i in (0, 1, 3, 4):
            settle(c, "ack", msgs[i])
        settle(c, "nack", msgs[2], requeue="false")
    finally:
        c.close()

    d = Client(*broker.stomp)
    try:
        stomp_subscribe(d, f"/queue/dlq.{name}", "d", "client-individual")
        dead = d.next()
        assert dead.body == "job2"
        settle(d, "ack", dead)
    finally:
        d.close()

    # The queue itself holds nothing more: the next message a consumer gets is a new one.
    c = Client(*broker.stomp)
    try:
        c.send(destination, "after", receipt=True)
        stomp_subscribe(c, destination, "w2", "client-individual")
        m = c.next()
        assert m.body == "after"
        assert "redelivered" not in m.headers
        settle(c, "ack", m)
    finally:
        c.close()


@pytest.mark.parametrize("Client", STOMP_VERSIONS)
def test_stomp_queue_redelivers_unacked_messages_in_order(broker, Client):
    destination = f"/queue/{unique('py-orders-')}"
    pub = Client(*broker.stomp)
    try:
        for i in range(4):
            pub.send(destination, f"o{i}", receipt=True)
    finally:
        pub.close()

    c = Client(*broker.stomp)
    try:
        stomp_subscribe(c, destination, "s", "client-individual")
        msgs = [c.next() for _ in range(4)]
        assert [m.body for m in msgs] == ["o0", "o1", "o2", "o3"]
        settle(c, "ack", msgs[2])
    finally:
        c.close()

    c = Client(*broker.stomp)
    try:
        stomp_subscribe(c, destination, "s", "client-individual")
        again = [c.next() for _ in range(3)]
        assert [m.body for m in again] == ["o0", "o1", "o3"]
        for m in again:
            assert m.headers.get("redelivered") == "true", m.headers
            assert m.headers.get("redelivery-count") == "1", m.headers
            settle(c, "ack", m)
    finally:
        c.close()


def test_mqtt_publish_to_dollar_queue_reaches_the_stomp_queue(broker):
    name = unique("py-mixed-")
    p = Paho(*broker.mqtt)
    try:
        p.publish(f"$queue/{name}", "from-mqtt", qos=1)
    finally:
        p.close()
    c = Stomp(*broker.stomp)
    try:
        stomp_subscribe(c, f"/queue/{name}", "q", "client-individual")
        m = c.next()
        assert m.body == "from-mqtt"
        assert m.headers["destination"] == f"/queue/{name}"
        settle(c, "ack", m)
    finally:
        c.close()
