"""The HTTP API and MQTT over WebSocket through the HTTPS listener.

Run as `python3 https.py SCENARIO`; settings come from the environment:
FERRULE_HTTPS (host:port), FERRULE_CA (PEM path), API_TOKEN, DEVICE_TOKEN,
DEVICE_ID. Every wait has a timeout; a failed check exits non-zero.
"""

import json
import os
import ssl
import sys
import threading
import urllib.request

import paho.mqtt.client as mqtt

TIMEOUT = 5


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def context():
    return ssl.create_default_context(cafile=os.environ["FERRULE_CA"])


def api_over_https():
    """An authenticated API call, verified against the test CA, with HSTS."""
    url = f"https://{os.environ['FERRULE_HTTPS']}/api/v1/auth/me"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {os.environ['API_TOKEN']}"})
    with urllib.request.urlopen(req, context=context(), timeout=TIMEOUT) as r:
        if r.status != 200:
            fail(f"status {r.status}")
        hsts = r.headers.get("Strict-Transport-Security", "")
        if not hsts.startswith("max-age="):
            fail(f"no HSTS header: {dict(r.headers)}")
        body = json.loads(r.read())
        if body.get("role") != "admin":
            fail(f"unexpected body {body}")


def wss_token_pubsub():
    """MQTT 5 over a TLS WebSocket at /mqtt: subscribe, publish, receive."""
    host, port = os.environ["FERRULE_HTTPS"].rsplit(":", 1)
    topic = f"devices/{os.environ['DEVICE_ID']}/wss"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, transport="websockets")
    c.ws_set_options(path="/mqtt")
    c.tls_set_context(context())
    c.username_pw_set(os.environ["DEVICE_TOKEN"])
    connected, subscribed, got = threading.Event(), threading.Event(), threading.Event()
    result = {}

    def on_connect(c, u, flags, reason, props):
        result["reason"] = reason
        connected.set()

    def on_message(c, u, m):
        result["payload"] = m.payload
        got.set()

    c.on_connect = on_connect
    c.on_message = on_message
    c.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
    c.connect(host, int(port))
    c.loop_start()
    if not connected.wait(TIMEOUT):
        fail("no CONNACK over wss")
    if result["reason"] != 0:
        fail(f"wss login refused: {result['reason']}")
    c.subscribe(topic, qos=1)
    if not subscribed.wait(TIMEOUT):
        fail("no SUBACK")
    c.publish(topic, b"over-wss", qos=1)
    if not got.wait(TIMEOUT):
        fail("no message back over wss")
    if result["payload"] != b"over-wss":
        fail("payload changed")
    c.loop_stop()
    c.disconnect()


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("ok")
