#!/usr/bin/env python3
"""A device for Ferrule's twin and command tests (paho-mqtt 2.x).

Runs until told ``quit`` on stdin (a clean DISCONNECT) or killed. Reads its
settings from the environment: ``MQTT_HOST``, ``MQTT_PORT``, ``PROTO``
(``3`` or ``5``), ``DEVICE`` (its id), ``TOKEN`` (its access token),
``CLIENT_ID``, ``CLEAN`` (``1`` clean start, ``0`` a persistent session).

It prints one JSON object per line: ``{"event": "ready"}`` once subscribed
to its commands, desired state and delta; ``{"event": "message", ...}`` for
each state message; ``{"event": "command", ...}`` for each command, which it
answers by the command's name:

- ``echo``: succeeds with the parameters as result;
- ``fail``: fails with ``{"error": "refused by device"}``;
- ``malformed``: replies with bytes that are not JSON;
- ``steal``: replies, on its own topic, to the command id in ``params.id``;
- anything else: no reply.

Stdin lines: ``report JSON`` publishes reported state at QoS 1, ``publish
TOPIC PAYLOAD`` anything at QoS 1; each prints ``{"event": "published",
"rc": N}`` with the PUBACK's reason code once acknowledged (-1: none came);
``quit`` disconnects.
"""

import json
import os
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ["MQTT_PORT"])
V5 = os.environ.get("PROTO", "5") != "3"
DEVICE = os.environ["DEVICE"]
CLEAN = os.environ.get("CLEAN", "1") == "1"
lock = threading.Lock()


def out(**kv):
    with lock:
        print(json.dumps(kv), flush=True)


def payload_of(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


if V5:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=os.environ["CLIENT_ID"],
                         protocol=mqtt.MQTTv5)
else:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=os.environ["CLIENT_ID"],
                         protocol=mqtt.MQTTv311, clean_session=CLEAN)
client.username_pw_set(os.environ["TOKEN"])
acks = {}


def on_connect(c, _userdata, _flags, rc, _props=None):
    if rc != 0:
        out(event="refused", rc=int(rc.value if hasattr(rc, "value") else rc))
        return
    c.subscribe([(f"devices/{DEVICE}/commands/+", 1),
                 (f"devices/{DEVICE}/state/desired", 1),
                 (f"devices/{DEVICE}/state/delta", 1)])


def on_subscribe(_c, _userdata, _mid, _codes, _props=None):
    out(event="ready")


def reply(name, request, props):
    cid = request.get("id")
    if name == "echo":
        body = json.dumps({"id": cid, "result": request.get("params")}).encode()
    elif name == "fail":
        body = json.dumps({"id": cid, "error": "refused by device"}).encode()
    elif name == "malformed":
        body = b"not json{"
    elif name == "steal":
        body = json.dumps({"id": request["params"]["id"], "result": "stolen"}).encode()
    else:
        return
    topic = f"devices/{DEVICE}/commands/{name}/response"
    reply_props = None
    if V5 and props is not None and getattr(props, "ResponseTopic", None) and name != "steal":
        topic = props.ResponseTopic
        reply_props = Properties(PacketTypes.PUBLISH)
        reply_props.CorrelationData = props.CorrelationData
    client.publish(topic, body, qos=1, properties=reply_props)


def on_message(_c, _userdata, msg):
    props = getattr(msg, "properties", None)
    if "/commands/" in msg.topic:
        request = json.loads(msg.payload)
        name = msg.topic.rsplit("/", 1)[1]
        correlation = None
        if props is not None and getattr(props, "CorrelationData", None):
            correlation = props.CorrelationData.decode()
        out(event="command", name=name, id=request.get("id"), params=request.get("params"),
            correlation=correlation,
            response_topic=getattr(props, "ResponseTopic", None) if props is not None else None)
        reply(name, request, props)
    else:
        out(event="message", topic=msg.topic, payload=payload_of(msg.payload), retain=bool(msg.retain))


def on_publish(_c, _userdata, mid, rc=None, _props=None):
    acks[mid] = rc.value if rc is not None and hasattr(rc, "value") else 0


client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.on_publish = on_publish
if V5:
    connect_props = None
    if not CLEAN:
        connect_props = Properties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 3600
    client.connect(HOST, PORT, keepalive=30, clean_start=CLEAN, properties=connect_props)
else:
    client.connect(HOST, PORT, keepalive=30)
client.loop_start()
for line in sys.stdin:
    line = line.strip()
    if line == "quit":
        client.disconnect()
        break
    if line.startswith("report "):
        line = f"publish devices/{DEVICE}/state/reported " + line[len("report "):]
    if line.startswith("publish "):
        _, topic, body = line.split(" ", 2)
        info = client.publish(topic, body.encode(), qos=1)
        info.wait_for_publish(5)
        out(event="published", rc=acks.get(info.mid, -1))
client.loop_stop()
