"""Thin helpers around the real client libraries: paho-mqtt 2.x and stomp.py 8.x."""

import itertools
import os
import queue
import threading

import paho.mqtt.client as mqtt
import stomp

# "Eventually" bound for anything we wait on; never a timing assertion.
EVENTUALLY = 15.0

_seq = itertools.count(1)


def unique(prefix):
    """A per-run unique name, so topics of different tests never overlap."""
    return f"{prefix}{os.getpid()}-{next(_seq)}"


class Paho:
    """A connected paho-mqtt client whose received messages land in a queue."""

    def __init__(self, host, port, *, transport="tcp", ws_path="/ws", protocol=mqtt.MQTTv311):
        self.messages = queue.Queue()
        self._cond = threading.Condition()
        self._connack = None
        self._subacks = {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=unique("paho-"),
            protocol=protocol,
            transport=transport,
        )
        if transport == "websockets":
            self.client.ws_set_options(path=ws_path)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._connack is not None, EVENTUALLY):
                self.close()
                raise AssertionError(f"no CONNACK from {host}:{port} over {transport}")
        if self._connack.is_failure:
            self.close()
            raise AssertionError(f"CONNACK refused: {self._connack}")

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties):
        with self._cond:
            self._connack = reason_code
            self._cond.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        with self._cond:
            self._subacks[mid] = reason_codes
            self._cond.notify_all()

    def subscribe(self, topic, qos):
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS."""
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._subacks, EVENTUALLY), f"no SUBACK for {topic}"
            codes = self._subacks.pop(mid)
        assert len(codes) == 1, codes
        assert not codes[0].is_failure, f"SUBSCRIBE {topic} refused: {codes[0]}"
        return codes[0].value

    def publish(self, topic, payload, qos=0, properties=None):
        """PUBLISH; for QoS 1 this returns once the PUBACK is in."""
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        info.wait_for_publish(timeout=EVENTUALLY)
        assert info.is_published(), f"PUBLISH {topic} QoS {qos} not acknowledged"

    def next(self):
        try:
            return self.messages.get(timeout=EVENTUALLY)
        except queue.Empty:
            raise AssertionError("timed out waiting for an MQTT message") from None

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Collector(stomp.ConnectionListener):
    """Collects MESSAGE, RECEIPT and ERROR frames."""

    def __init__(self):
        self.messages = queue.Queue()
        self.errors = queue.Queue()
        self._cond = threading.Condition()
        self._receipts = {}

    def on_message(self, frame):
        self.messages.put(frame)

    def on_error(self, frame):
        self.errors.put(frame)

    def on_receipt(self, frame):
        with self._cond:
            self._receipts[frame.headers.get("receipt-id")] = frame
            self._cond.notify_all()

    def receipt(self, receipt_id):
        with self._cond:
            ok = self._cond.wait_for(lambda: receipt_id in self._receipts, EVENTUALLY)
            assert ok, f"no RECEIPT for {receipt_id}"
            return self._receipts.pop(receipt_id)

    def next(self):
        try:
            return self.messages.get(timeout=EVENTUALLY)
        except queue.Empty:
            raise AssertionError("timed out waiting for a STOMP MESSAGE") from None


class Stomp:
    """A connected stomp.py client (stomp.Connection speaks STOMP 1.1) (raw TCP, or WebSocket with ws_path)."""

    def __init__(self, host, port, *, ws_path=None):
        if ws_path is None:
            self.conn = stomp.Connection([(host, port)], heartbeats=(0, 0), reconnect_attempts_max=1)
        else:
            from stomp.adapter.ws import WSStompConnection

            self.conn = WSStompConnection(
                [(host, port)], heartbeats=(0, 0), reconnect_attempts_max=1, ws_path=ws_path
            )
        self.listener = Collector()
        self.conn.set_listener("collector", self.listener)
        self.conn.connect(wait=True)

    def subscribe(self, destination, sub_id=None, **headers):
        """SUBSCRIBE with a receipt and wait for it, so the subscription is in place."""
        sub_id = sub_id or unique("sub-")
        receipt = unique("sub-receipt-")
        self.conn.subscribe(destination, id=sub_id, ack="auto", headers={"receipt": receipt, **headers})
        frame = self.listener.receipt(receipt)
        assert frame.headers.get("receipt-id") == receipt
        return sub_id

    def send(self, destination, body, receipt=False, **headers):
        """SEND; with receipt=True, waits for and returns the RECEIPT frame."""
        if receipt:
            rid = unique("send-receipt-")
            self.conn.send(destination, body, headers={"receipt": rid, **headers})
            return self.listener.receipt(rid)
        self.conn.send(destination, body, headers=headers)
        return None

    def next(self):
        return self.listener.next()

    def close(self):
        """DISCONNECT (stomp.py waits for its receipt), bounded so a broker fault cannot hang us."""
        done = threading.Event()

        def run():
            try:
                self.conn.disconnect()
            finally:
                done.set()

        threading.Thread(target=run, daemon=True).start()
        if not done.wait(EVENTUALLY):
            self.conn.transport.disconnect_socket()
            raise AssertionError("stomp.py DISCONNECT did not finish (no RECEIPT or close from the broker)")
