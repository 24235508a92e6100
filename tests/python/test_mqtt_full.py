"""paho-mqtt 2.x against Diglot over raw TCP and transport="websockets": what issue 4's "Tests"
section asks of the Python suite beyond test_paho.py and test_durable.py: QoS 2 in both directions
(client → broker and broker → client, the full PUBREC/PUBREL/PUBCOMP exchange), pub/sub with
wildcards and retained messages, and persistent-session redelivery over WebSocket (test_durable.py
covers it over TCP, and across restarts)."""

import queue
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from clients import EVENTUALLY, Paho, unique

TRANSPORTS = ["tcp", "websockets"]
PROTOCOLS = [pytest.param(mqtt.MQTTv311, id="3.1.1"), pytest.param(mqtt.MQTTv5, id="5")]


def addr(broker, transport):
    return broker.mqtt if transport == "tcp" else broker.ws


def connect(broker, transport, protocol=mqtt.MQTTv311):
    host, port = addr(broker, transport)
    return Paho(host, port, transport=transport, ws_path="/ws", protocol=protocol)


def take(client, n):
    got = []
    for i in range(n):
        try:
            got.append(client.messages.get(timeout=EVENTUALLY))
        except queue.Empty:
            raise AssertionError(f"timed out waiting for message {i + 1} of {n}; got {[m.payload for m in got]}") from None
    return got


def next_is_marker(client, what):
    """Proves nothing else is pending for `client`: a fresh marker topic must come next (one
    session's deliveries keep publish order)."""
    marker = unique("py/full/marker/")
    client.subscribe(marker, qos=1)
    client.publish(marker, b"marker", qos=1)
    m = client.next()
    assert m.topic == marker, f"{what}: got {m.topic} {m.payload!r} before the marker"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_qos2_both_ways(broker, transport, protocol):
    base = unique(f"py/full/{transport}/qos2/")
    sub = connect(broker, transport, protocol)
    pub = connect(broker, transport, protocol)
    try:
        assert sub.subscribe(f"{base}/two", qos=2) == 2
        assert sub.subscribe(f"{base}/one", qos=1) == 1

        # Client → broker QoS 2: publish() returns after PUBREC, PUBREL, PUBCOMP. Broker → client
        # QoS 2 on a QoS 2 subscription. 100 messages is more than the broker's default inflight
        # window (limits.max_inflight = 64): they all arrive only if every outbound QoS 2 flow
        # completes (PUBREC from paho, PUBREL from the broker, PUBCOMP from paho).
        n = 100
        for i in range(n):
            pub.publish(f"{base}/two", f"x{i}", qos=2)
        got = take(sub, n)
        assert [m.payload for m in got] == [f"x{i}".encode() for i in range(n)]
        assert all(m.qos == 2 and m.topic == f"{base}/two" for m in got)
        assert all(not m.dup for m in got)

        # The lower QoS wins either way.
        pub.publish(f"{base}/one", b"2-on-1", qos=2)
        pub.publish(f"{base}/two", b"1-on-2", qos=1)
        a, b = take(sub, 2)
        assert (a.payload, a.qos) == (b"2-on-1", 1)
        assert (b.payload, b.qos) == (b"1-on-2", 1)
        next_is_marker(sub, "no duplicate after the QoS 2 flows")
    finally:
        sub.close()
        pub.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pub_sub_wildcards_and_unsubscribe(broker, transport, protocol):
    base = unique(f"py/full/{transport}/wild/")
    sub = connect(broker, transport, protocol)
    pub = connect(broker, transport, protocol)
    try:
        sub.subscribe(f"{base}/+/b", qos=1)
        sub.subscribe(f"{base}/x/#", qos=0)
        for topic in (f"{base}/a/b", f"{base}/a/c", f"{base}/a/b/c", f"{base}/x", f"{base}/x/y/z"):
            pub.publish(topic, topic.encode(), qos=1)
        got = take(sub, 3)
        assert [m.topic for m in got] == [f"{base}/a/b", f"{base}/x", f"{base}/x/y/z"]
        assert [m.qos for m in got] == [1, 0, 0]
        unsubacks = queue.Queue()
        sub.client.on_unsubscribe = lambda _c, _u, mid, codes, _p: unsubacks.put((mid, codes))
        result, mid = sub.client.unsubscribe(f"{base}/+/b")
        assert result == mqtt.MQTT_ERR_SUCCESS
        # Wait for the UNSUBACK: the publisher is another connection.
        got_mid, codes = unsubacks.get(timeout=EVENTUALLY)
        assert got_mid == mid
        assert all(not c.is_failure for c in codes), codes
        pub.publish(f"{base}/a/b", b"after unsubscribe", qos=1)
        next_is_marker(sub, "nothing on the unsubscribed filter")
    finally:
        sub.close()
        pub.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retained_set_replace_clear(broker, transport, protocol):
    topic = unique(f"py/full/{transport}/retained/")
    pub = connect(broker, transport, protocol)
    try:
        info = pub.client.publish(topic, b"old", qos=1, retain=True)
        info.wait_for_publish(EVENTUALLY)
        info = pub.client.publish(topic, b"new", qos=2, retain=True)
        info.wait_for_publish(EVENTUALLY)

        s1 = connect(broker, transport, protocol)
        try:
            s1.subscribe(topic, qos=2)
            m = s1.next()
            assert (m.topic, m.payload, m.retain) == (topic, b"new", True)
            assert m.qos == 2
            info = pub.client.publish(topic, b"", qos=1, retain=True)
            info.wait_for_publish(EVENTUALLY)
            cleared = s1.next()
            assert cleared.payload == b"" and cleared.retain is False
        finally:
            s1.close()

        s2 = connect(broker, transport, protocol)
        try:
            s2.subscribe(topic, qos=1)
            next_is_marker(s2, "the cleared retained message is gone")
        finally:
            s2.close()
    finally:
        pub.close()


class Persistent:
    """A paho client on a persistent session (3.1.1 clean_session=False; 5 clean_start=False and
    Session Expiry Interval 300 s), with callbacks in place before the CONNECT goes out."""

    def __init__(self, broker, transport, client_id, protocol):
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        kwargs = {} if protocol == mqtt.MQTTv5 else {"clean_session": False}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, transport=transport, **kwargs
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/ws")
        self.client.on_connect = lambda _c, _u, flags, rc, _p: self.connack.put((flags, rc))
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self.subacks.put((mid, codes))
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        host, port = addr(broker, transport)
        if protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 300
            self.client.connect(host, port, keepalive=30, clean_start=False, properties=props)
        else:
            self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        try:
            flags, rc = self.connack.get(timeout=EVENTUALLY)
        except queue.Empty:
            self.close()
            raise AssertionError(f"no CONNACK for {client_id}") from None
        assert not rc.is_failure, rc
        self.session_present = flags.session_present

    def subscribe(self, topic):
        result, mid = self.client.subscribe(topic, 1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        got_mid, codes = self.subacks.get(timeout=EVENTUALLY)
        assert got_mid == mid and codes[0].value == 1, codes

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_persistent_session_redelivery_over_websocket(broker, protocol):
    client_id = unique("paho-ws-away-")
    base = unique("py/full/ws/away/")
    s = Persistent(broker, "websockets", client_id, protocol)
    try:
        assert s.session_present is False
        s.subscribe(f"{base}/#")
    finally:
        s.close()

    pub = connect(broker, "websockets", protocol)
    try:
        for i in range(10):
            pub.publish(f"{base}/t", f"m{i}", qos=1)
    finally:
        pub.close()

    s = Persistent(broker, "websockets", client_id, protocol)
    try:
        assert s.session_present is True
        got = []
        for _ in range(10):
            got.append(s.messages.get(timeout=EVENTUALLY))
        assert [m.payload for m in got] == [f"m{i}".encode() for i in range(10)]
        assert all(m.qos == 1 and m.topic == f"{base}/t" for m in got)
    finally:
        s.close()
    # Clean up the session: a clean connect discards it.
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    c.on_connect = lambda *_a: done.set()
    c.connect(*broker.mqtt, keepalive=30)
    c.loop_start()
    done.wait(EVENTUALLY)
    c.disconnect()
    c.loop_stop()


def test_mqtt5_response_topic_and_correlation_data(broker):
    base = unique("py/full/rpc/")
    req = connect(broker, "tcp", mqtt.MQTTv5)
    rep = connect(broker, "websockets", mqtt.MQTTv5)
    try:
        rep.subscribe(f"{base}/req", qos=1)
        req.subscribe(f"{base}/reply", qos=1)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{base}/reply"
        props.CorrelationData = b"\x00\xffid-1"
        props.UserProperty = [("a", "1"), ("a", "2")]
        req.publish(f"{base}/req", b"question", qos=1, properties=props)
        m = rep.next()
        assert m.properties.ResponseTopic == f"{base}/reply"
        assert m.properties.CorrelationData == b"\x00\xffid-1"
        assert m.properties.UserProperty == [("a", "1"), ("a", "2")]
        answer = Properties(PacketTypes.PUBLISH)
        answer.CorrelationData = m.properties.CorrelationData
        rep.publish(m.properties.ResponseTopic, b"answer", qos=1, properties=answer)
        r = req.next()
        assert (r.topic, r.payload) == (f"{base}/reply", b"answer")
        assert r.properties.CorrelationData == b"\x00\xffid-1"
    finally:
        req.close()
        rep.close()
