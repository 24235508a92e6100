"""Cross-protocol: paho-mqtt and stomp.py share one topic namespace (docs/protocol-mapping.md)."""

import pytest

from clients import Paho, Stomp, unique

ODD = "a.b*c d/ü €/日本語"


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_paho_publish_reaches_stomp_subscriber(broker, transport):
    room = unique("room.")
    host, port = broker.mqtt if transport == "tcp" else broker.ws
    mq = Paho(host, port, transport=transport)
    st = Stomp(*broker.stomp)
    try:
        sub_id = st.subscribe("/topic/chat/+")
        mq.publish(f"chat/{room}", b"hi from paho", qos=1)
        m = st.next()
        assert m.body == "hi from paho"
        assert m.headers["destination"] == f"/topic/chat/{room}"
        assert m.headers["subscription"] == sub_id
        assert m.headers.get("message-id")
    finally:
        mq.close()
        st.close()


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_stomp_send_reaches_paho_subscriber(broker, transport):
    room = unique("room.")
    host, port = broker.mqtt if transport == "tcp" else broker.ws
    mq = Paho(host, port, transport=transport)
    st = Stomp(*broker.stomp)
    try:
        assert mq.subscribe("chat/#", qos=1) == 1
        st.send(f"/topic/chat/{room}", "hi from stomp.py")
        m = mq.next()
        # Other tests' rooms may share chat/#; skip anything that is not ours.
        while m.topic != f"chat/{room}":
            m = mq.next()
        assert m.payload == b"hi from stomp.py"
        assert m.qos == 0  # a SEND without persistent:true is QoS 0

        st.send(f"/topic/chat/{room}", "persistent", persistent="true")
        m = mq.next()
        while m.topic != f"chat/{room}":
            m = mq.next()
        assert m.payload == b"persistent"
        assert m.qos == 1  # persistent:true is QoS 1, capped by the subscription's QoS 1
    finally:
        mq.close()
        st.close()


def test_odd_topic_survives_both_directions(broker):
    topic = f"{unique('odd/')}/{ODD}"
    mq = Paho(*broker.mqtt)
    st = Stomp(*broker.stomp)
    try:
        st.subscribe(f"/topic/{topic}")
        mq.subscribe(topic, qos=0)

        mq.publish(topic, "from paho".encode(), qos=0)
        s = st.next()
        assert s.headers["destination"] == f"/topic/{topic}"
        assert s.body == "from paho"
        assert mq.next().topic == topic  # its own copy

        st.send(f"/topic/{topic}", "from stomp.py")
        m = mq.next()
        assert m.topic == topic
        assert m.payload == "from stomp.py".encode()
        s = st.next()  # stomp.py's own copy
        assert s.headers["destination"] == f"/topic/{topic}"
    finally:
        mq.close()
        st.close()
