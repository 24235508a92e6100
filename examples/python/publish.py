"""A backend service publishing to Diglot over MQTT/TCP with paho-mqtt, at QoS 1.

    python3 -m pip install paho-mqtt
    python3 examples/python/publish.py [host] [port]      # default 127.0.0.1 1883

Browser clients subscribed to MQTT `sensors/#` or STOMP `/topic/sensors/#` receive it.
"""
import json
import sys

import paho.mqtt.client as mqtt

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 1883

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="example-publisher")
client.connect(host, port)
client.loop_start()
info = client.publish("sensors/kitchen/temp", json.dumps({"celsius": 21.5, "from": "paho"}), qos=1)
info.wait_for_publish()  # returns once the broker has acknowledged (and stored) it
print("published, acknowledged:", info.is_published())
client.loop_stop()
client.disconnect()
