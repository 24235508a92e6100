"""A backend service sending to Diglot over STOMP/TCP with stomp.py, persistent.

    python3 -m pip install stomp.py
    python3 examples/python/stomp_publish.py [host] [port]      # default 127.0.0.1 61613

STOMP `/topic/sensors/kitchen/temp` is MQTT topic `sensors/kitchen/temp`: MQTT and STOMP
subscribers both receive it. `persistent:true` makes it QoS 1 for MQTT subscribers and stores
it for persistent sessions and durable subscriptions; the RECEIPT comes once it is stored.
"""
import json
import sys
import threading

import stomp

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 61613


class Receipts(stomp.ConnectionListener):
    def __init__(self):
        self.done = threading.Event()

    def on_receipt(self, frame):
        self.done.set()


conn = stomp.Connection12([(host, port)])
receipts = Receipts()
conn.set_listener("receipts", receipts)
conn.connect(wait=True)
conn.send(
    "/topic/sensors/kitchen/temp",
    json.dumps({"celsius": 21.5, "from": "stomp.py"}),
    headers={"persistent": "true", "receipt": "sent-1"},
)
if not receipts.done.wait(10):
    sys.exit("no RECEIPT from the broker within 10 s")
print("sent, receipt received")
conn.disconnect()
