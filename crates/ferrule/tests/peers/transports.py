"""MQTT over TLS and WebSocket, with paho-mqtt as the peer.

Run as `python3 transports.py SCENARIO`; settings come from the environment:
FERRULE_MQTTS (host:port), FERRULE_WS (host:port), FERRULE_CA (PEM path),
CLIENT_CERT / CLIENT_KEY (PEM paths), DEVICE_TOKEN, DEVICE_ID, USER, PASSWORD.
Every wait has a timeout; a failed check exits non-zero with the reason.
"""

import os
import ssl
import sys
import threading

import paho.mqtt.client as mqtt

TIMEOUT = 5


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def addr(var):
    host, port = os.environ[var].rsplit(":", 1)
    return host, int(port)


class Peer:
    """A paho client with events for connect and received messages."""

    def __init__(self, protocol=mqtt.MQTTv5, transport="tcp", client_id=""):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=protocol, transport=transport)
        self.connected = threading.Event()
        self.reason = None
        self.messages = []
        self.got = threading.Event()
        self.subscribed = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()

    def _on_connect(self, c, u, flags, reason, props):
        self.reason = reason
        self.connected.set()

    def _on_message(self, c, u, m):
        self.messages.append((m.topic, m.payload))
        self.got.set()

    def connect(self, host, port):
        self.c.connect(host, port)
        self.c.loop_start()
        if not self.connected.wait(TIMEOUT):
            fail("no CONNACK")
        return self.reason

    def stop(self):
        self.c.loop_stop()
        self.c.disconnect()


def tls_context(with_cert):
    ctx = ssl.create_default_context(cafile=os.environ["FERRULE_CA"])
    if with_cert:
        ctx.load_cert_chain(os.environ["CLIENT_CERT"], os.environ["CLIENT_KEY"])
    return ctx


def tls_certificate_login():
    """A registered client certificate alone identifies the device."""
    device = os.environ["DEVICE_ID"]
    watcher = Peer(transport="websockets")
    watcher.c.ws_set_options(path="/mqtt")
    watcher.c.username_pw_set(os.environ["USER"], os.environ["PASSWORD"])
    if watcher.connect(*addr("FERRULE_WS")) != 0:
        fail(f"websocket user login refused: {watcher.reason}")
    watcher.c.subscribe(f"devices/{device}/#", qos=1)
    if not watcher.subscribed.wait(TIMEOUT):
        fail("no SUBACK over websocket")

    dev = Peer()
    dev.c.tls_set_context(tls_context(True))
    if dev.connect(*addr("FERRULE_MQTTS")) != 0:
        fail(f"certificate login refused: {dev.reason}")
    info = dev.c.publish(f"devices/{device}/telemetry", b'{"t": 21.5}', qos=1)
    info.wait_for_publish(TIMEOUT)
    if not watcher.got.wait(TIMEOUT):
        fail("message over TLS never reached the websocket subscriber")
    if watcher.messages[0] != (f"devices/{device}/telemetry", b'{"t": 21.5}'):
        fail(f"wrong message {watcher.messages[0]}")
    dev.stop()
    watcher.stop()


def tls_unregistered_certificate():
    """A certificate nobody registered does not log in."""
    dev = Peer(protocol=mqtt.MQTTv311)
    dev.c.tls_set_context(tls_context(True))
    reason = dev.connect(*addr("FERRULE_MQTTS"))
    if reason == 0:
        fail("an unregistered certificate was accepted")
    dev.stop()


def tls_token_login():
    """Server-authenticated TLS with the device token as username."""
    dev = Peer(protocol=mqtt.MQTTv311)
    dev.c.tls_set_context(tls_context(False))
    dev.c.username_pw_set(os.environ["DEVICE_TOKEN"])
    if dev.connect(*addr("FERRULE_MQTTS")) != 0:
        fail(f"token over TLS refused: {dev.reason}")
    topic = f"devices/{os.environ['DEVICE_ID']}/echo"
    dev.c.subscribe(topic, qos=1)
    if not dev.subscribed.wait(TIMEOUT):
        fail("no SUBACK")
    dev.c.publish(topic, b"ping", qos=1)
    if not dev.got.wait(TIMEOUT):
        fail("own message not received over TLS")
    dev.stop()


def ws_token_pubsub():
    """MQTT 3.1.1 and 5 over WebSocket with the `mqtt` subprotocol."""
    topic = f"devices/{os.environ['DEVICE_ID']}/ws"
    for proto in (mqtt.MQTTv311, mqtt.MQTTv5):
        p = Peer(protocol=proto, transport="websockets")
        p.c.ws_set_options(path="/mqtt")
        p.c.username_pw_set(os.environ["DEVICE_TOKEN"])
        if p.connect(*addr("FERRULE_WS")) != 0:
            fail(f"websocket login refused: {p.reason}")
        p.c.subscribe(topic, qos=2)
        if not p.subscribed.wait(TIMEOUT):
            fail("no SUBACK")
        payload = b"x" * 70000  # spans several WebSocket frames and TCP reads
        p.c.publish(topic, payload, qos=2)
        if not p.got.wait(TIMEOUT):
            fail(f"no message back over websocket ({proto})")
        if p.messages[0][1] != payload:
            fail("payload changed over websocket")
        p.stop()


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("ok")
