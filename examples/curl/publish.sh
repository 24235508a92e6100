#!/bin/sh
# A backend publishing with one HTTP request: POST /api/v1/publish on the WebSocket port.
#   sh examples/curl/publish.sh [http://127.0.0.1:8080]
# The body names an MQTT topic (or a STOMP "destination"), the payload (UTF-8, or base64 with
# "encoding": "base64"), and the QoS; at QoS 1 the answer comes once durable queues have it.
# Add -H "Authorization: Bearer $TOKEN" (or -u user:password) when the broker needs credentials.
set -eu
curl -fsS -X POST "${1:-http://127.0.0.1:8080}/api/v1/publish" \
  -H 'Content-Type: application/json' \
  -d '{"topic": "sensors/kitchen/temp", "payload": "{\"celsius\":21.5,\"from\":\"curl\"}", "qos": 1}'
echo
