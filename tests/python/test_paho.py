"""paho-mqtt 2.x against Diglot over raw TCP and over WebSocket (/ws, subprotocol "mqtt")."""

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from clients import Paho, unique

TRANSPORTS = ["tcp", "websockets"]
PROTOCOLS = [pytest.param(mqtt.MQTTv311, id="3.1.1"), pytest.param(mqtt.MQTTv5, id="5")]


def connect(broker, transport, protocol=mqtt.MQTTv311):
    host, port = broker.mqtt if transport == "tcp" else broker.ws
    return Paho(host, port, transport=transport, ws_path="/ws", protocol=protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_qos0_and_qos1_round_trip(broker, transport, protocol):
    base = unique(f"paho/{transport}/")
    sub = connect(broker, transport, protocol)
    pub = connect(broker, transport, protocol)
    try:
        assert sub.subscribe(f"{base}/+/level", qos=1) == 1

        # Not matched by the filter; published first, so it would arrive first if delivered.
        pub.publish(f"{base}/level", b"no", qos=0)
        pub.publish(f"{base}/a/level", b"zero", qos=0)
        m = sub.next()
        assert m.topic == f"{base}/a/level"
        assert m.payload == b"zero"
        assert m.qos == 0
        assert not m.retain

        payload = bytes([0, 1, 2, 0, 255])
        pub.publish(f"{base}/b/level", payload, qos=1)
        m = sub.next()
        assert m.topic == f"{base}/b/level"
        assert m.payload == payload
        assert m.qos == 1
        assert m.mid > 0
    finally:
        sub.close()
        pub.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_own_publish_with_hash_wildcard(broker, transport):
    base = unique(f"paho/{transport}/self/")
    c = connect(broker, transport)
    try:
        assert c.subscribe(f"{base}/#", qos=1) == 1
        c.publish(f"{base}/x/y", "ünïcode", qos=1)
        m = c.next()
        assert m.topic == f"{base}/x/y"
        assert m.payload.decode() == "ünïcode"
        assert m.qos == 1
    finally:
        c.close()


def test_tcp_publisher_reaches_websocket_subscriber(broker):
    topic = unique("paho/tcp-to-ws/")
    sub = connect(broker, "websockets")
    pub = connect(broker, "tcp")
    try:
        sub.subscribe(topic, qos=1)
        pub.publish(topic, b"across transports", qos=1)
        m = sub.next()
        assert (m.topic, m.payload, m.qos) == (topic, b"across transports", 1)
    finally:
        sub.close()
        pub.close()


def test_mqtt5_properties_are_forwarded(broker):
    topic = unique("paho/v5/props/")
    sub = connect(broker, "tcp", mqtt.MQTTv5)
    pub = connect(broker, "websockets", mqtt.MQTTv5)
    try:
        sub.subscribe(topic, qos=1)
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "text/csv"
        props.UserProperty = [("k", "v 1")]
        pub.publish(topic, b"a,b", qos=1, properties=props)
        m = sub.next()
        assert m.payload == b"a,b"
        assert getattr(m.properties, "ContentType", None) == "text/csv"
        assert ("k", "v 1") in getattr(m.properties, "UserProperty", [])
    finally:
        sub.close()
        pub.close()
