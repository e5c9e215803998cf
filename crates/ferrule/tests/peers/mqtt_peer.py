#!/usr/bin/env python3
"""Real MQTT peers (paho-mqtt 2.x) for Ferrule's integration tests.

Run as ``python3 mqtt_peer.py SCENARIO``. The Rust test that runs it starts
the server, creates the identities and passes everything in the environment:

- ``MQTT_HOST``, ``MQTT_PORT``: the broker under test.
- ``PROTO``: ``3`` (MQTT 3.1.1) or ``5`` (MQTT 5.0, the default).
- ``<NAME>_USER`` / ``<NAME>_PASS``: the login of the peer role NAME (for
  example ``DEV`` for device ``pump`` by its token, ``OBS`` for a user who may
  see the whole tenant). An empty password means "no password".

Each scenario asserts what a user of the broker would rely on and exits 1
with a message naming what went wrong. Every wait has a timeout: nothing
here can hang a test run.
"""

import os
import queue
import socket
import sys
import threading
import time
import traceback
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "0"))
TIMEOUT = 5.0
# How long "nothing arrives" is watched for. Messages through a local broker
# arrive in milliseconds; this is generous.
QUIET = 0.7


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def proto():
    return 3 if os.environ.get("PROTO", "5") == "3" else 5


def creds(name):
    user = os.environ.get(f"{name}_USER")
    if user is None:
        raise Failure(f"the test did not pass {name}_USER")
    password = os.environ.get(f"{name}_PASS") or None
    return user, password


def props(packet_type, **values):
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def describe(msg):
    return f"{msg.topic} {msg.payload!r} qos={msg.qos} retain={int(msg.retain)} dup={int(msg.dup)}"


class Peer:
    """One paho client, with its events turned into waits that time out."""

    def __init__(self, name, who="DEV", version=None, client_id=None, clean=True,
                 keepalive=30, manual_ack=False):
        self.name = name
        self.version = version or proto()
        self.client_id = client_id if client_id is not None else f"{name}-{uuid.uuid4().hex[:8]}"
        self.clean = clean
        self.keepalive = keepalive
        kwargs = {}
        if self.version == 3:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self.version == 5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
            **kwargs,
        )
        if who:
            user, password = creds(who)
            self.c.username_pw_set(user, password)
        self.cond = threading.Condition()
        self.connack = None
        self.gone = None
        self.subacks = {}
        self.pubacks = {}
        self.unsubacks = {}
        self.inbox = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_publish = self._on_publish

    # paho callbacks (run on paho's network thread)
    def _set(self, fn):
        with self.cond:
            fn()
            self.cond.notify_all()

    def _on_connect(self, c, ud, flags, rc, properties):
        self._set(lambda: setattr(self, "connack", (rc, flags, properties)))

    def _on_disconnect(self, c, ud, flags, rc, properties):
        self._set(lambda: setattr(self, "gone", (rc, properties)))

    def _on_message(self, c, ud, msg):
        self.inbox.put(msg)

    def _on_subscribe(self, c, ud, mid, rcs, properties):
        self._set(lambda: self.subacks.__setitem__(mid, rcs))

    def _on_unsubscribe(self, c, ud, mid, rcs, properties):
        self._set(lambda: self.unsubacks.__setitem__(mid, rcs))

    def _on_publish(self, c, ud, mid, rc, properties):
        self._set(lambda: self.pubacks.__setitem__(mid, rc))

    def wait(self, pred, what, timeout=TIMEOUT):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise Failure(f"{self.name}: no {what} within {timeout} s")

    # actions
    def will(self, topic, payload, qos=0, retain=False, properties=None):
        self.c.will_set(topic, payload, qos, retain, properties=properties)
        return self

    def connect(self, expect=0, clean_start=None, properties=None):
        """Connects; checks the CONNACK code (MQTT 5 numbering; paho maps
        3.1.1 return codes onto it). Returns (session_present, properties)."""
        self.connack = None
        self.gone = None
        if self.version == 5:
            cs = self.clean if clean_start is None else clean_start
            self.c.connect(HOST, PORT, self.keepalive, clean_start=cs, properties=properties)
        else:
            self.c.connect(HOST, PORT, self.keepalive)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        rc, flags, cprops = self.connack
        check(rc.value == expect,
              f"{self.name}: CONNACK {rc} ({rc.value:#04x}), expected {expect:#04x}")
        return flags.session_present, cprops

    def disconnect(self, reason=None, properties=None):
        """A normal DISCONNECT (or one with an MQTT 5 reason code)."""
        if reason is None:
            self.c.disconnect(properties=properties)
        else:
            self.c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=reason),
                              properties=properties)
        self.wait(lambda: self.gone is not None, "close after DISCONNECT")
        self.c.loop_stop()

    def kill(self):
        """Drops the TCP connection without DISCONNECT, as a crash or a
        network loss would."""
        sock = self.c.socket()
        check(sock is not None, f"{self.name}: not connected")
        sock.shutdown(socket.SHUT_RDWR)
        self.wait(lambda: self.gone is not None, "close after killing the socket")
        self.c.loop_stop()

    def wait_gone(self, timeout=TIMEOUT):
        """Waits for the broker to close the connection; returns the reason."""
        self.wait(lambda: self.gone is not None, "disconnect from the broker", timeout)
        self.c.loop_stop()
        return self.gone[0]

    def connected(self):
        return self.gone is None and self.c.is_connected()

    def subscribe(self, *subs, properties=None):
        """subs: (filter, qos) or (filter, {qos, noLocal, retainAsPublished,
        retainHandling}). Returns the SUBACK codes as ints."""
        if self.version == 5:
            topics = []
            for f, o in subs:
                opts = {"qos": o} if isinstance(o, int) else o
                topics.append((f, mqtt.SubscribeOptions(**opts)))
            res, mid = self.c.subscribe(topics, properties=properties)
        else:
            res, mid = self.c.subscribe([(f, o) for f, o in subs])
        check(res == 0, f"{self.name}: subscribe not sent ({res})")
        self.wait(lambda: mid in self.subacks, f"SUBACK for {[f for f, _ in subs]}")
        return [rc.value for rc in self.subacks[mid]]

    def unsubscribe(self, *filters):
        res, mid = self.c.unsubscribe(list(filters))
        check(res == 0, f"{self.name}: unsubscribe not sent ({res})")
        self.wait(lambda: mid in self.unsubacks, "UNSUBACK")

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes; for QoS 1/2 waits for the acknowledgement and returns
        its reason code (0 in 3.1.1, which has none)."""
        info = self.c.publish(topic, payload, qos, retain, properties=properties)
        check(info.rc == 0, f"{self.name}: publish to {topic!r} not sent ({info.rc})")
        if qos == 0:
            return 0
        self.wait(lambda: info.mid in self.pubacks, f"ack for the publish to {topic!r}")
        return self.pubacks[info.mid].value

    def expect(self, n=1, timeout=TIMEOUT):
        """The next n messages, in arrival order."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            try:
                got.append(self.inbox.get(timeout=max(left, 0.001)))
            except queue.Empty:
                raise Failure(f"{self.name}: expected {n} message(s) within {timeout} s, got "
                              f"{[describe(m) for m in got]}")
        return got

    def expect_one(self, timeout=TIMEOUT):
        return self.expect(1, timeout)[0]

    def expect_none(self, within=QUIET):
        try:
            m = self.inbox.get(timeout=within)
        except queue.Empty:
            return
        raise Failure(f"{self.name}: expected no message, got {describe(m)}")


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def v5_only():
    check(proto() == 5, "this scenario is MQTT 5 only")


def refused(code):
    """What a refused QoS 1 publish gets back: the reason code in MQTT 5, a
    plain PUBACK in 3.1.1 (the message is dropped silently)."""
    return code if proto() == 5 else 0


# ---------------------------------------------------------------- logins

@scenario
def login_roundtrip():
    """Each login named in LOGINS (comma-separated; <NAME>_USER, <NAME>_PASS,
    <NAME>_TOPIC) connects and proves it works: subscribe to its topic,
    publish there at QoS 1, get the message back."""
    for who in os.environ["LOGINS"].split(","):
        topic = os.environ[f"{who}_TOPIC"]
        p = Peer(who.lower(), who)
        present, _ = p.connect()
        check(not present, f"{who}: a clean session must not be present")
        check(p.subscribe((topic, 1)) == [1], f"{who}: subscription to {topic} not granted")
        check(p.publish(topic, who.encode(), qos=1) == 0, f"{who}: publish to {topic} refused")
        m = p.expect_one()
        check((m.topic, m.payload, m.qos) == (topic, who.encode(), 1), f"{who}: got {describe(m)}")
        p.disconnect()


@scenario
def anonymous():
    """With anonymous clients enabled, a client without credentials joins
    tenant `default`: it sees device pump's messages and may publish."""
    anon = Peer("anon", who=None)
    anon.connect()
    check(anon.subscribe(("devices/pump/#", 1)) == [1], "anonymous subscribe refused")
    dev = Peer("dev", "DEV")
    dev.connect()
    dev.publish("devices/pump/telemetry", b'{"t":1}', qos=1)
    m = anon.expect_one()
    check(m.topic == "devices/pump/telemetry", f"got {describe(m)}")
    check(dev.subscribe(("devices/pump/commands/#", 1)) == [1], "device subscribe refused")
    check(anon.publish("devices/pump/commands/reboot", b"now", qos=1) == 0, "anonymous publish refused")
    m = dev.expect_one()
    check(m.payload == b"now", f"got {describe(m)}")


@scenario
def auth_method_refused():
    """MQTT 5 enhanced authentication is not configured: a CONNECT with an
    Authentication Method gets 0x8C (Bad authentication method)."""
    v5_only()
    p = Peer("auth", "DEV")
    p.connect(expect=0x8C, properties=props(PacketTypes.CONNECT, AuthenticationMethod="SCRAM-SHA-1"))
    p.wait_gone()


# ---------------------------------------------------------------- pub/sub

@scenario
def qos_matrix():
    """Every publish QoS against every subscription QoS, in both directions
    (device → user and user → device): the message arrives at the lower of
    the two, never retained, never a duplicate."""
    for name_pub, name_sub, base in (("DEV", "OBS", "devices/pump/up"),
                                     ("OBS", "DEV", "devices/pump/down")):
        sub = Peer("sub", name_sub)
        sub.connect()
        pub = Peer("pub", name_pub)
        pub.connect()
        for sq in (0, 1, 2):
            check(sub.subscribe((f"{base}/sub{sq}/#", sq)) == [sq], f"QoS {sq} not granted")
        for pq in (0, 1, 2):
            for sq in (0, 1, 2):
                topic = f"{base}/sub{sq}/pub{pq}"
                rc = pub.publish(topic, f"p{pq}s{sq}".encode(), qos=pq)
                check(rc == 0, f"publish to {topic} at QoS {pq}: reason {rc:#x}")
                m = sub.expect_one()
                check(m.topic == topic and m.payload == f"p{pq}s{sq}".encode(), f"got {describe(m)}")
                check(m.qos == min(pq, sq),
                      f"published at QoS {pq}, subscribed at {sq}: received at {m.qos}")
                check(not m.retain and not m.dup, f"flags: {describe(m)}")
        sub.expect_none()
        sub.disconnect()
        pub.disconnect()


@scenario
def wildcards():
    """`+` matches one level, `#` the parent and everything below; a client
    with overlapping subscriptions gets one copy."""
    plus = Peer("plus", "OBS")
    plus.connect()
    plus.subscribe(("devices/+/telemetry", 1))
    hash_ = Peer("hash", "OBS")
    hash_.connect()
    hash_.subscribe(("devices/pump/#", 1))
    mid = Peer("mid", "OBS")
    mid.connect()
    mid.subscribe(("devices/pump/+/x", 1))
    both = Peer("both", "OBS")
    both.connect()
    both.subscribe(("devices/pump/#", 1), ("devices/+/telemetry", 1))
    dev = Peer("dev", "DEV")
    dev.connect()
    topics = ["devices/pump/telemetry", "devices/pump/events/boot", "devices/pump",
              "devices/pump/a/x", "devices/pump/a/b/x"]
    for t in topics:
        dev.publish(t, b'{"n": 1}', qos=1)
    want = {
        plus: ["devices/pump/telemetry"],
        hash_: topics,
        mid: ["devices/pump/a/x"],
        both: topics,
    }
    for peer, expected in want.items():
        got = [m.topic for m in peer.expect(len(expected))]
        check(sorted(got) == sorted(expected), f"{peer.name}: got {got}, expected {expected}")
        peer.expect_none(0.3)


@scenario
def dollar_topics():
    """Topics starting with `$` are the server's: a client's publish there
    is refused (0x87 in MQTT 5, dropped in 3.1.1) and reaches nobody, not
    even an explicit `$x/#` subscriber; `#` and `+/…` never match them."""
    obs = Peer("obs", "OBS")
    obs.connect()
    check(obs.subscribe(("#", 1), ("+/y", 1)) == [1, 1], "subscribe")
    spy = Peer("spy", "OBS")
    spy.connect()
    check(spy.subscribe(("$x/#", 1)) == [1], "subscribe to $x/#")
    pub = Peer("pub", "OBS")
    pub.connect()
    rc = pub.publish("$x/y", b"dollar", qos=1)
    check(rc == refused(0x87), f"publish to $x/y: reason {rc:#x}")
    pub.publish("$x/y", b"dollar0", qos=0)
    check(pub.publish("x/y", b"plain", qos=1) == 0, "plain publish refused")
    m = obs.expect_one()
    check((m.topic, m.payload) == ("x/y", b"plain"), f"got {describe(m)}")
    obs.expect_none()
    spy.expect_none(0.2)
    check(pub.connected(), "the publisher must stay connected")


@scenario
def unsubscribe():
    """UNSUBSCRIBE stops delivery for that filter only; MQTT 5 UNSUBACK says
    0x00 for a filter that existed and 0x11 for one that did not."""
    s = Peer("s", "OBS")
    s.connect()
    s.subscribe(("devices/pump/a", 1), ("devices/pump/b", 1))
    s.unsubscribe("devices/pump/a", "devices/pump/never")
    if proto() == 5:
        codes = [rc.value for rc in s.unsubacks[max(s.unsubacks)]]
        check(codes == [0x00, 0x11], f"UNSUBACK codes {[hex(c) for c in codes]}")
    dev = Peer("dev", "DEV")
    dev.connect()
    dev.publish("devices/pump/a", b"a", qos=1)
    dev.publish("devices/pump/b", b"b", qos=1)
    m = s.expect_one()
    check(m.topic == "devices/pump/b", f"got {describe(m)}")
    s.expect_none()


@scenario
def large_payload():
    """A payload of 900 kB (under the 1 MiB maximum packet size) arrives
    byte for byte, both ways round the broker."""
    payload = os.urandom(900 * 1024)
    s = Peer("s", "OBS")
    s.connect()
    s.subscribe(("devices/pump/big", 1))
    dev = Peer("dev", "DEV")
    dev.connect()
    check(dev.publish("devices/pump/big", payload, qos=1) == 0, "large publish refused")
    m = s.expect_one(timeout=10)
    check(len(m.payload) == len(payload), f"got {len(m.payload)} bytes, sent {len(payload)}")
    check(m.payload == payload, "payload corrupted on the way")


@scenario
def burst():
    """3000 messages published back to back, at QoS 0 and at QoS 1, all
    arrive, in order (one publisher, one topic: MQTT 5 §4.6)."""
    n = 3000
    for qos in (0, 1):
        s = Peer("s", "OBS")
        s.connect()
        s.subscribe(("devices/pump/burst", qos))
        dev = Peer("dev", "DEV")
        dev.c.max_inflight_messages_set(100)
        dev.c.max_queued_messages_set(0)
        dev.connect()
        infos = [dev.c.publish("devices/pump/burst", str(i).encode(), qos) for i in range(n)]
        for info in infos[-1:]:
            info.wait_for_publish(timeout=20)
        got = [int(m.payload) for m in s.expect(n, timeout=20)]
        check(got == list(range(n)),
              f"QoS {qos}: {len(got)} messages, first out of order at "
              f"{next((i for i, v in enumerate(got) if v != i), None)}")
        s.expect_none(0.3)
        s.disconnect()
        dev.disconnect()


@scenario
def payload_format_invalid():
    """MQTT 5: a payload marked UTF-8 (Payload Format Indicator 1) that is
    not UTF-8 is refused with 0x99 and not delivered; the connection stays."""
    v5_only()
    obs = Peer("obs", "OBS")
    obs.connect()
    obs.subscribe(("devices/pump/#", 1))
    dev = Peer("dev", "DEV")
    dev.connect()
    rc = dev.publish("devices/pump/text", b"\xff\xfe", qos=1,
                     properties=props(PacketTypes.PUBLISH, PayloadFormatIndicator=1))
    check(rc == 0x99, f"invalid UTF-8 payload: reason {rc:#x}")
    rc = dev.publish("devices/pump/text", "ok ✓".encode(), qos=1,
                     properties=props(PacketTypes.PUBLISH, PayloadFormatIndicator=1))
    check(rc == 0, f"valid UTF-8 payload: reason {rc:#x}")
    m = obs.expect_one()
    check(m.payload == "ok ✓".encode(), f"got {describe(m)}")
    obs.expect_none()


# ---------------------------------------------------------------- retained

@scenario
def retained():
    """A retained message is kept per topic (the last one wins), delivered
    with RETAIN=1 to a new subscription at min(QoS), forwarded live with
    RETAIN=0 (no Retain As Published), and cleared by an empty payload."""
    dev = Peer("dev", "DEV")
    dev.connect()
    topic = "devices/pump/state"
    dev.publish(topic, b"v1", qos=1, retain=True)
    dev.publish(topic, b"v2", qos=1, retain=True)
    dev.publish("devices/pump/q2", b"r2", qos=2, retain=True)
    dev.publish("devices/pump/q0", b"r0", qos=0, retain=True)
    time.sleep(0.1)  # the QoS 0 one has no ack to wait for

    s1 = Peer("s1", "OBS")
    s1.connect()
    s1.subscribe((topic, 1))
    m = s1.expect_one()
    check((m.payload, m.retain, m.qos) == (b"v2", True, 1), f"retained: got {describe(m)}")
    s1.expect_none(0.3)

    dev.publish(topic, b"v3", qos=1, retain=True)
    m = s1.expect_one()
    check((m.payload, m.retain) == (b"v3", False),
          f"live message on an established subscription: {describe(m)}")

    dev.publish(topic, b"", qos=1, retain=True)
    m = s1.expect_one()
    check(m.payload == b"" and not m.retain, f"clearing message is delivered normally: {describe(m)}")

    s2 = Peer("s2", "OBS")
    s2.connect()
    s2.subscribe((topic, 1))
    s2.expect_none()

    s3 = Peer("s3", "OBS")
    s3.connect()
    s3.subscribe(("devices/pump/q2", 0), ("devices/pump/q0", 2))
    got = {m.topic: m for m in s3.expect(2)}
    check(got["devices/pump/q2"].qos == 0 and got["devices/pump/q2"].retain,
          f"QoS 2 retained at a QoS 0 subscription: {describe(got['devices/pump/q2'])}")
    check(got["devices/pump/q0"].qos == 0 and got["devices/pump/q0"].retain,
          f"QoS 0 retained at a QoS 2 subscription: {describe(got['devices/pump/q0'])}")


@scenario
def retain_handling():
    """MQTT 5 Retain Handling: 0 sends retained messages at every
    SUBSCRIBE, 1 only for a new subscription, 2 never; Retain As Published
    keeps RETAIN=1 on live messages."""
    v5_only()
    dev = Peer("dev", "DEV")
    dev.connect()
    topic = "devices/pump/rh"
    dev.publish(topic, b"kept", qos=1, retain=True)

    rh0 = Peer("rh0", "OBS")
    rh0.connect()
    for attempt in (1, 2):
        rh0.subscribe((topic, {"qos": 1, "retainHandling": 0}))
        m = rh0.expect_one()
        check(m.payload == b"kept" and m.retain, f"retain handling 0, subscribe #{attempt}: {describe(m)}")

    rh1 = Peer("rh1", "OBS")
    rh1.connect()
    rh1.subscribe((topic, {"qos": 1, "retainHandling": 1}))
    m = rh1.expect_one()
    check(m.payload == b"kept" and m.retain, f"retain handling 1, new: {describe(m)}")
    rh1.subscribe((topic, {"qos": 1, "retainHandling": 1}))
    rh1.expect_none()

    rh2 = Peer("rh2", "OBS")
    rh2.connect()
    rh2.subscribe((topic, {"qos": 1, "retainHandling": 2, "retainAsPublished": True}))
    rh2.expect_none()

    dev.publish(topic, b"live", qos=1, retain=True)
    m = rh2.expect_one()
    check(m.payload == b"live" and m.retain, f"retain as published: {describe(m)}")
    m = rh0.expect_one()
    check(m.payload == b"live" and not m.retain, f"without retain as published: {describe(m)}")
    dev.publish(topic, b"not-retained", qos=1, retain=False)
    m = rh2.expect_one()
    check(m.payload == b"not-retained" and not m.retain, f"RAP on a non-retained message: {describe(m)}")


# ---------------------------------------------------------------- subscription options

@scenario
def no_local():
    """MQTT 5 No Local: a client does not get its own messages back on that
    subscription; other clients (and subscriptions without it) do."""
    v5_only()
    topic = "devices/pump/nl"
    a = Peer("a", "OBS")
    a.connect()
    a.subscribe((topic, {"qos": 1, "noLocal": True}))
    b = Peer("b", "OBS")
    b.connect()
    b.subscribe((topic, 1))
    a.publish(topic, b"from-a", qos=1)
    m = b.expect_one()
    check(m.payload == b"from-a", f"b: {describe(m)}")
    a.expect_none()
    b.publish(topic, b"from-b", qos=1)
    check(a.expect_one().payload == b"from-b", "a must get b's message")
    check(b.expect_one().payload == b"from-b", "b (no No Local) gets its own message")


@scenario
def no_local_other_identity():
    """Client ids are scoped to the identity that logs in, so the admin and
    device pump may both use client id X at once without taking each other
    over. No Local must then suppress only the subscriber's *own*
    messages, not those of another identity that happens to share its
    client id."""
    v5_only()
    cid = f"twin-{uuid.uuid4().hex[:6]}"
    topic = "devices/pump/nl2"
    a = Peer("a", "OBS", client_id=cid)
    a.connect()
    a.subscribe((topic, {"qos": 1, "noLocal": True}))
    b = Peer("b", "DEV", client_id=cid)
    b.connect()
    time.sleep(0.3)
    check(a.connected(), f"the admin's connection was taken over by the device: {a.gone}")
    b.publish(topic, b"from-device", qos=1)
    m = a.expect_one()
    check(m.payload == b"from-device", f"got {describe(m)}")
    a.publish(topic, b"from-admin", qos=1)
    a.expect_none()


@scenario
def subscription_ids():
    """MQTT 5 Subscription Identifiers: every matching subscription's id is
    in the PUBLISH (one copy for overlapping subscriptions), none when the
    subscription had none, also on retained messages, and replacing a
    subscription replaces its id."""
    v5_only()
    dev = Peer("dev", "DEV")
    dev.connect()
    s = Peer("s", "OBS")
    s.connect()
    s.subscribe(("devices/pump/si/+", 1), properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    s.subscribe(("devices/pump/si/#", 1), properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9))
    s.subscribe(("devices/pump/plain", 1))

    def ids(m):
        return sorted(getattr(m.properties, "SubscriptionIdentifier", []) or [])

    dev.publish("devices/pump/si/a", b"1", qos=1)
    m = s.expect_one()
    check(ids(m) == [7, 9], f"overlapping subscriptions 7 and 9: got ids {ids(m)}")
    s.expect_none(0.3)
    dev.publish("devices/pump/plain", b"2", qos=1)
    m = s.expect_one()
    check(ids(m) == [], f"subscription without id: got ids {ids(m)}")

    dev.publish("devices/pump/sr", b"r", qos=1, retain=True)
    s.subscribe(("devices/pump/sr", 1), properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=11))
    m = s.expect_one()
    check(m.retain and ids(m) == [11], f"retained message: {describe(m)} ids {ids(m)}")

    s.subscribe(("devices/pump/si/+", 1), properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=8))
    dev.publish("devices/pump/si/b", b"3", qos=1)
    m = s.expect_one()
    check(ids(m) == [8, 9], f"after replacing 7 by 8: got ids {ids(m)}")


@scenario
def shared():
    """Shared subscriptions: members of `$share/g/…` split the messages
    (each delivered to exactly one member), each group gets its own copy,
    and a plain subscriber gets everything."""
    topic = "devices/pump/jobs"
    m1 = Peer("m1", "OBS")
    m1.connect()
    m2 = Peer("m2", "OBS")
    m2.connect()
    solo = Peer("solo", "OBS")
    solo.connect()
    plain = Peer("plain", "OBS")
    plain.connect()
    check(m1.subscribe((f"$share/g/{topic}", 1)) == [1], "m1 subscribe")
    check(m2.subscribe((f"$share/g/{topic}", 1)) == [1], "m2 subscribe")
    check(solo.subscribe((f"$share/h/{topic}", 1)) == [1], "solo subscribe")
    plain.subscribe((topic, 1))
    dev = Peer("dev", "DEV")
    dev.connect()
    n = 10
    for i in range(n):
        dev.publish(topic, str(i).encode(), qos=1)
    want = sorted(str(i).encode() for i in range(n))
    check(sorted(m.payload for m in plain.expect(n)) == want, "plain subscriber gets all")
    check(sorted(m.payload for m in solo.expect(n)) == want, "a one-member group gets all")
    got = {m1: [], m2: []}
    deadline = time.monotonic() + TIMEOUT
    while sum(len(v) for v in got.values()) < n and time.monotonic() < deadline:
        for peer in got:
            try:
                got[peer].append(peer.inbox.get(timeout=0.05).payload)
            except queue.Empty:
                pass
    a, b = got[m1], got[m2]
    check(sorted(a + b) == want, f"group g: m1 got {a}, m2 got {b}; each message exactly once")
    check(a and b, f"group g: both members must get some (m1 {a}, m2 {b})")
    m1.expect_none(0.3)
    m2.expect_none(0.1)
    # A member that leaves the group no longer takes turns.
    m1.unsubscribe(f"$share/g/{topic}")
    for i in range(4):
        dev.publish(topic, f"after-{i}".encode(), qos=1)
    check([m.payload for m in m2.expect(4)] == [f"after-{i}".encode() for i in range(4)],
          "the remaining member gets everything")
    m1.expect_none(0.2)


@scenario
def shared_no_retained():
    """Retained messages are not sent for a shared subscription (MQTT 5
    §4.8.2), only to plain ones."""
    dev = Peer("dev", "DEV")
    dev.connect()
    dev.publish("devices/pump/jobs/state", b"kept", qos=1, retain=True)
    m = Peer("m", "OBS")
    m.connect()
    m.subscribe(("$share/g/devices/pump/jobs/#", 1))
    m.expect_none()
    plain = Peer("plain", "OBS")
    plain.connect()
    plain.subscribe(("devices/pump/jobs/#", 1))
    check(plain.expect_one().payload == b"kept", "plain subscription gets the retained message")


@scenario
def shared_no_local():
    """No Local on a shared subscription is a Protocol Error (MQTT 5
    §3.8.3.1): the broker disconnects with 0x82."""
    v5_only()
    p = Peer("p", "OBS")
    p.connect()
    p.c.subscribe([("$share/g/devices/pump/x", mqtt.SubscribeOptions(qos=1, noLocal=True))])
    rc = p.wait_gone()
    check(rc.value == 0x82, f"disconnect reason {rc} ({rc.value:#x}), expected 0x82")


# ---------------------------------------------------------------- wills

def will_props():
    if proto() != 5:
        return None
    return props(PacketTypes.WILLMESSAGE, ContentType="text/plain", UserProperty=[("why", "lost")])


def observer(topic="devices/pump/status"):
    obs = Peer("obs", "OBS")
    obs.connect()
    obs.subscribe((topic, 1))
    return obs


@scenario
def will_abnormal():
    """A connection lost without DISCONNECT publishes the will (with its
    MQTT 5 properties)."""
    obs = observer()
    w = Peer("w", "DEV").will("devices/pump/status", b"offline", qos=1, properties=will_props())
    w.connect()
    w.kill()
    m = obs.expect_one()
    check((m.topic, m.payload, m.qos) == ("devices/pump/status", b"offline", 1), f"will: {describe(m)}")
    if proto() == 5:
        check(getattr(m.properties, "ContentType", None) == "text/plain", f"content type {m.properties}")
        check(getattr(m.properties, "UserProperty", None) == [("why", "lost")], f"user props {m.properties}")
    obs.expect_none()


@scenario
def will_retained():
    """A will with RETAIN=1 is kept as the topic's retained message."""
    w = Peer("w", "DEV").will("devices/pump/status", b"gone", qos=1, retain=True)
    w.connect()
    w.kill()
    time.sleep(0.3)
    late = observer()
    m = late.expect_one()
    check((m.payload, m.retain) == (b"gone", True), f"retained will: {describe(m)}")


@scenario
def will_normal_disconnect():
    """A normal DISCONNECT discards the will."""
    obs = observer()
    w = Peer("w", "DEV").will("devices/pump/status", b"offline", qos=1)
    w.connect()
    w.disconnect()
    obs.expect_none(1.0)


@scenario
def will_disconnect_with_will():
    """MQTT 5 DISCONNECT with reason 0x04 publishes the will."""
    v5_only()
    obs = observer()
    w = Peer("w", "DEV").will("devices/pump/status", b"bye", qos=1)
    w.connect()
    w.disconnect(reason=0x04)
    m = obs.expect_one()
    check(m.payload == b"bye", f"will: {describe(m)}")


@scenario
def will_delay_clean_start():
    """MQTT 5 §3.1.3.2.2: the will waits for its delay *or the end of the
    session*, whichever comes first. A reconnect with clean start 1 ends the
    old session, so its will is due at once, not when the delay runs out."""
    v5_only()
    obs = observer()
    cid = f"will-cs-{uuid.uuid4().hex[:6]}"
    w = Peer("w", "DEV", client_id=cid).will(
        "devices/pump/status", b"session-ended", qos=1,
        properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=3))
    w.connect(clean_start=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    w.kill()
    time.sleep(0.2)
    fresh = Peer("fresh", "DEV", client_id=cid)
    t0 = time.monotonic()
    present, _ = fresh.connect(clean_start=True)
    check(not present, "clean start: no session present")
    m = obs.expect_one(timeout=4.0)
    waited = time.monotonic() - t0
    check(m.payload == b"session-ended", f"will: {describe(m)}")
    check(waited < 1.5, f"the old session ended at the clean-start reconnect, but its will "
                        f"came {waited:.2f} s later (its 3 s delay ran out instead)")


@scenario
def will_delay_takeover_clean_start():
    """The same as will_delay_clean_start, by takeover: a new connection with
    the same client id and clean start 1 while the old one is still up. The
    old connection gets 0x8E, its session ends, and its delayed will is due
    at once (the session ended), as when the old connection had died first."""
    v5_only()
    obs = observer()
    cid = f"will-to-{uuid.uuid4().hex[:6]}"
    w = Peer("w", "DEV", client_id=cid).will(
        "devices/pump/status", b"taken-over", qos=1,
        properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=3))
    w.connect(clean_start=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    fresh = Peer("fresh", "DEV", client_id=cid)
    t0 = time.monotonic()
    present, _ = fresh.connect(clean_start=True)
    check(not present, "clean start: no session present")
    rc = w.wait_gone()
    check(rc.value == 0x8E, f"old connection: {rc}")
    try:
        m = obs.expect_one(timeout=4.0)
    except Failure:
        raise Failure("the old session ended at the clean-start takeover, but its delayed "
                      "will was never published")
    waited = time.monotonic() - t0
    check(m.payload == b"taken-over", f"will: {describe(m)}")
    check(waited < 1.5, f"will came {waited:.2f} s after the takeover ended its session")


@scenario
def will_acl():
    """A will is a publish like any other: a device's will on a topic
    outside devices/{id}/# is not delivered."""
    obs = observer("#")
    w = Peer("w", "DEV").will("elsewhere/status", b"offline", qos=1)
    w.connect()
    w.kill()
    obs.expect_none(1.0)


@scenario
def will_dollar_topic():
    """A will cannot do what a PUBLISH cannot: a will on a `$` topic must
    not reach anyone (neither `#` nor an explicit `$x/#` subscriber)."""
    obs = observer("#")
    spy = Peer("spy", "OBS")
    spy.connect()
    spy.subscribe(("$x/#", 1))
    w = Peer("w", "OBS").will("$x/status", b"spoofed", qos=1)
    w.connect()
    w.kill()
    spy.expect_none(1.0)
    obs.expect_none(0.1)


# ---------------------------------------------------------------- takeover

@scenario
def takeover():
    """A second connection with the same client id in the same tenant takes
    over: the first gets DISCONNECT 0x8E (MQTT 5) or is closed (3.1.1); the
    new one works."""
    cid = f"same-{uuid.uuid4().hex[:6]}"
    a = Peer("a", "DEV", client_id=cid)
    a.connect()
    b = Peer("b", "DEV", client_id=cid)
    b.connect()
    rc = a.wait_gone()
    if proto() == 5:
        check(rc.value == 0x8E, f"old connection: disconnect reason {rc} ({rc.value:#x}), expected 0x8E")
    check(b.subscribe(("devices/pump/t", 1)) == [1], "new connection subscribe")
    b.publish("devices/pump/t", b"mine", qos=1)
    check(b.expect_one().payload == b"mine", "new connection works")
    check(b.connected(), "new connection stays")


@scenario
def takeover_other_tenant():
    """The same client id in another tenant is another client: nobody is
    taken over and both keep working."""
    cid = f"same-{uuid.uuid4().hex[:6]}"
    a = Peer("a", "DEV", client_id=cid)
    a.connect()
    a.subscribe(("devices/pump/t", 1))
    b = Peer("b", "BETA", client_id=cid)
    b.connect()
    b.subscribe(("devices/pump/t", 1))
    time.sleep(0.5)
    check(a.connected(), f"tenant default's client was disconnected: {a.gone}")
    check(b.connected(), f"tenant beta's client was disconnected: {b.gone}")
    a.publish("devices/pump/t", b"A", qos=1)
    b.publish("devices/pump/t", b"B", qos=1)
    check(a.expect_one().payload == b"A", "a gets its own tenant's message")
    check(b.expect_one().payload == b"B", "b gets its own tenant's message")
    a.expect_none(0.3)
    b.expect_none(0.1)


@scenario
def foreign_session():
    """A session belongs to who made it. Device `valve` reusing device
    `pump`'s client id with clean start 0 must not resume pump's session:
    that would hand it pump's subscriptions and queued messages (pump's
    commands), outside the devices/valve/# it may read (SPEC, MQTT)."""
    cid = f"shared-{uuid.uuid4().hex[:6]}"
    pump = Peer("pump", "DEV", client_id=cid, clean=False)
    pump.connect(clean_start=True, properties=session_props())
    check(pump.subscribe(("devices/pump/commands/#", 1)) == [1], "pump subscribe")
    pump.disconnect()
    obs = Peer("obs", "OBS")
    obs.connect()
    obs.publish("devices/pump/commands/unlock", b"secret-for-pump", qos=1)
    valve = Peer("valve", "VALVE", client_id=cid, clean=False)
    present, _ = valve.connect(clean_start=False, properties=session_props())
    try:
        m = valve.expect_one(timeout=1.0)
    except Failure:
        m = None
    check(m is None, f"device valve received pump's queued command: {describe(m) if m else ''}")
    check(not present, "device valve was handed device pump's session (session present = 1)")
    obs.publish("devices/pump/commands/live", b"also-for-pump", qos=1)
    valve.expect_none()


# ---------------------------------------------------------------- keep alive

@scenario
def server_keepalive():
    """With --mqtt-max-keepalive 5: asking for 60 (or 0, "none") gets Server
    Keep Alive 5 in the CONNACK; asking for 3 is accepted as is."""
    v5_only()
    for asked, want in ((60, 5), (0, 5), (3, None)):
        p = Peer(f"ka{asked}", "DEV", keepalive=asked)
        _, cp = p.connect()
        got = getattr(cp, "ServerKeepAlive", None)
        check(got == want, f"keep alive {asked}: Server Keep Alive {got}, expected {want}")
        p.disconnect()


# ---------------------------------------------------------------- sessions

def session_props(expiry=60):
    return props(PacketTypes.CONNECT, SessionExpiryInterval=expiry) if proto() == 5 else None


@scenario
def session_resume():
    """A persistent session (clean start 0 + session expiry in MQTT 5, clean
    session 0 in 3.1.1) keeps the subscription while offline; the broker
    queues QoS 1/2 messages and delivers them in order on return, with
    session present = 1."""
    cid = f"persist-{uuid.uuid4().hex[:6]}"
    s = Peer("s", "OBS", client_id=cid, clean=False)
    present, _ = s.connect(clean_start=True, properties=session_props())
    check(not present, "first connection: no session yet")
    s.subscribe(("devices/pump/s/#", 2))
    s.disconnect()
    dev = Peer("dev", "DEV")
    dev.connect()
    sent = [(f"devices/pump/s/{i}", f"m{i}".encode(), q) for i, q in enumerate((1, 1, 2, 1))]
    for t, p, q in sent:
        dev.publish(t, p, qos=q)
    back = Peer("back", "OBS", client_id=cid, clean=False)
    present, _ = back.connect(clean_start=False, properties=session_props())
    check(present, "session present must be 1")
    got = back.expect(len(sent))
    # paho hands a QoS 2 message over only after PUBREL, one round trip
    # later than QoS 1 ones, so order is checked among the QoS 1 messages.
    check(sorted((m.topic, m.payload, m.qos) for m in got) == sorted(sent),
          f"queued messages: {[describe(m) for m in got]}, expected {sent}")
    check([m.payload for m in got if m.qos == 1] == [p for _, p, q in sent if q == 1],
          f"QoS 1 messages out of order: {[describe(m) for m in got]}")
    back.expect_none()
    dev.publish("devices/pump/s/live", b"live", qos=1)
    check(back.expect_one().payload == b"live", "the resumed subscription stays live")


@scenario
def clean_start_discards():
    """Clean start (clean session 1) discards the old session: no session
    present, no queued messages, no subscriptions."""
    cid = f"persist-{uuid.uuid4().hex[:6]}"
    s = Peer("s", "OBS", client_id=cid, clean=False)
    s.connect(clean_start=True, properties=session_props())
    s.subscribe(("devices/pump/c/#", 1))
    s.disconnect()
    dev = Peer("dev", "DEV")
    dev.connect()
    dev.publish("devices/pump/c/1", b"queued", qos=1)
    fresh = Peer("fresh", "OBS", client_id=cid, clean=True)
    present, _ = fresh.connect(clean_start=True, properties=session_props())
    check(not present, "clean start: session present must be 0")
    fresh.expect_none()
    dev.publish("devices/pump/c/2", b"after", qos=1)
    fresh.expect_none()


@scenario
def session_across_credentials():
    """A session belongs to the device, not to the credential: device pump
    logging in by token, then by DEVICE@TENANT + password with the same
    client id, resumes its session."""
    cid = f"pump-{uuid.uuid4().hex[:6]}"
    s = Peer("s", "DEV", client_id=cid, clean=False)
    s.connect(clean_start=True, properties=session_props())
    s.subscribe(("devices/pump/commands/#", 1))
    s.disconnect()
    obs = Peer("obs", "OBS")
    obs.connect()
    obs.publish("devices/pump/commands/reboot", b"now", qos=1)
    back = Peer("back", "DEVPW", client_id=cid, clean=False)
    present, _ = back.connect(clean_start=False, properties=session_props())
    check(present, "same device, other credential: the session must be resumed")
    check(back.expect_one().payload == b"now", "queued command")


@scenario
def session_redelivery():
    """A QoS 1 message the client did not acknowledge before its connection
    dropped is sent again on resume, with DUP=1 (paho, manual acks)."""
    cid = f"redeliver-{uuid.uuid4().hex[:6]}"
    s = Peer("s", "OBS", client_id=cid, clean=False, manual_ack=True)
    s.connect(clean_start=True, properties=session_props())
    s.subscribe(("devices/pump/r", 1))
    dev = Peer("dev", "DEV")
    dev.connect()
    dev.publish("devices/pump/r", b"unacked", qos=1)
    first = s.expect_one()
    check(first.payload == b"unacked" and not first.dup, f"first delivery: {describe(first)}")
    s.kill()
    back = Peer("back", "OBS", client_id=cid, clean=False)
    present, _ = back.connect(clean_start=False, properties=session_props())
    check(present, "session present")
    again = back.expect_one()
    check(again.payload == b"unacked" and again.dup and again.qos == 1, f"redelivery: {describe(again)}")
    check(again.mid == first.mid, f"redelivery packet id {again.mid}, first {first.mid}")
    back.expect_none()


# ---------------------------------------------------------------- MQTT 5 properties

@scenario
def properties_passthrough():
    """MQTT 5 application properties reach the subscriber as published:
    payload format, content type, response topic, correlation data, user
    properties (order and duplicates kept), message expiry (counting down)."""
    v5_only()
    s = Peer("s", "OBS")
    s.connect()
    s.subscribe(("devices/pump/p/#", 1))
    dev = Peer("dev", "DEV")
    dev.connect()
    user_props = [("b", "2"), ("a", "1"), ("b", "3")]
    p = props(PacketTypes.PUBLISH, PayloadFormatIndicator=1, ContentType="application/json",
              ResponseTopic="devices/pump/p/reply", CorrelationData=b"\x00\x01corr",
              MessageExpiryInterval=60)
    p.UserProperty = user_props
    dev.publish("devices/pump/p/req", b'{"x":1}', qos=1, properties=p)
    m = s.expect_one()
    mp = m.properties
    check(getattr(mp, "PayloadFormatIndicator", None) == 1, f"payload format indicator: {mp}")
    check(getattr(mp, "ContentType", None) == "application/json", f"content type: {mp}")
    check(getattr(mp, "ResponseTopic", None) == "devices/pump/p/reply", f"response topic: {mp}")
    check(getattr(mp, "CorrelationData", None) == b"\x00\x01corr", f"correlation data: {mp}")
    check(getattr(mp, "UserProperty", None) == user_props, f"user properties: {mp}")
    exp = getattr(mp, "MessageExpiryInterval", None)
    check(exp is not None and 58 <= exp <= 60, f"message expiry interval: {exp}")
    dev.publish("devices/pump/p/bare", b"x", qos=1)
    m = s.expect_one()
    for name in ("PayloadFormatIndicator", "ContentType", "ResponseTopic", "CorrelationData",
                 "UserProperty", "MessageExpiryInterval"):
        check(not hasattr(m.properties, name), f"bare message carries {name}: {m.properties}")


@scenario
def assigned_client_id():
    """MQTT 5: an empty client id gets an Assigned Client Identifier in the
    CONNACK, and the client works."""
    v5_only()
    p = Peer("anon-id", "DEV", client_id="")
    _, cp = p.connect()
    assigned = getattr(cp, "AssignedClientIdentifier", None)
    check(assigned, f"no Assigned Client Identifier in {cp}")
    p.subscribe(("devices/pump/a", 1))
    p.publish("devices/pump/a", b"x", qos=1)
    check(p.expect_one().payload == b"x", "round trip")
    q = Peer("anon-id2", "DEV", client_id="")
    _, cq = q.connect()
    check(getattr(cq, "AssignedClientIdentifier", None) not in (None, assigned),
          "two clients got the same assigned id")
    check(p.connected(), "the first client must not be taken over by the second")


@scenario
def topic_alias_in():
    """MQTT 5 Topic Alias from the client: publish once with topic + alias,
    then with the alias alone; both arrive under the full topic."""
    v5_only()
    s = Peer("s", "OBS")
    s.connect()
    s.subscribe(("devices/pump/#", 1))
    dev = Peer("dev", "DEV")
    dev.connect()
    check(dev.publish("devices/pump/alias", b"first", qos=1,
                      properties=props(PacketTypes.PUBLISH, TopicAlias=3)) == 0, "first")
    check(dev.publish("", b"second", qos=1,
                      properties=props(PacketTypes.PUBLISH, TopicAlias=3)) == 0, "second")
    # The same alias may be set to another topic (MQTT 5 §3.3.2.3.4).
    check(dev.publish("devices/pump/other", b"third", qos=1,
                      properties=props(PacketTypes.PUBLISH, TopicAlias=3)) == 0, "third")
    check(dev.publish("", b"fourth", qos=1,
                      properties=props(PacketTypes.PUBLISH, TopicAlias=3)) == 0, "fourth")
    got = s.expect(4)
    check([(m.topic, m.payload) for m in got] ==
          [("devices/pump/alias", b"first"), ("devices/pump/alias", b"second"),
           ("devices/pump/other", b"third"), ("devices/pump/other", b"fourth")],
          f"got {[describe(m) for m in got]}")


# ---------------------------------------------------------------- ACL and tenancy

@scenario
def acl_device_publish():
    """A device publishes under devices/{its id}/# only: elsewhere, MQTT 5
    QoS 1 gets PUBACK 0x87, 3.1.1 is dropped silently; nothing is delivered
    and the connection stays up."""
    obs = observer("#")
    dev = Peer("dev", "DEV")
    dev.connect()
    for topic in ("devices/other/telemetry", "elsewhere", "devices/pumpx/telemetry", "devices"):
        rc = dev.publish(topic, b"nope", qos=1)
        check(rc == refused(0x87), f"publish to {topic}: reason {rc:#x}")
    dev.publish("devices/other/qos0", b"nope", qos=0)
    check(dev.publish("devices/pump/telemetry", b'{"yes": 1}', qos=1) == 0, "own topic refused")
    m = obs.expect_one()
    check((m.topic, m.payload) == ("devices/pump/telemetry", b'{"yes": 1}'), f"got {describe(m)}")
    obs.expect_none()
    check(dev.connected(), "the device must stay connected")


@scenario
def acl_subscribe():
    """A SUBSCRIBE that can match nothing under devices/{id}/# gets 0x80 for
    that filter (both versions); wildcards that can reach the device's own
    topics are granted and filtered message by message; the other filters
    of the same SUBSCRIBE are granted and the connection stays up."""
    dev = Peer("dev", "DEV")
    dev.connect()
    codes = dev.subscribe(("devices/pump/#", 1), ("devices/other/#", 1), ("#", 0),
                          ("devices/+/telemetry", 1), ("devices/pump/commands/+", 2),
                          ("$share/g/devices/other/#", 1), ("$share/g/devices/pump/jobs", 1))
    check(codes == [1, 0x80, 0, 1, 2, 0x80, 1], f"SUBACK codes {[hex(c) for c in codes]}")
    check(dev.connected(), "the device must stay connected")
    obs = Peer("obs", "OBS")
    obs.connect()
    obs.publish("devices/other/telemetry", b"not for pump", qos=1)
    obs.publish("devices/pump/commands/reboot", b"for pump", qos=1)
    m = dev.expect_one()
    check(m.payload == b"for pump" and m.qos == 1, f"got {describe(m)}")
    dev.expect_none()


@scenario
def acl_user_roles():
    """Users and API keys with a tenant role see the whole tenant: editors
    publish anywhere; viewers subscribe but their publishes are refused."""
    obs = observer("#")
    for who in ("EDITOR", "KEY_EDITOR"):
        p = Peer(who.lower(), who)
        p.connect()
        check(p.publish(f"anywhere/{who}", b"x", qos=1) == 0, f"{who} publish refused")
        m = obs.expect_one()
        check(m.topic == f"anywhere/{who}", f"got {describe(m)}")
    for who in ("VIEWER", "KEY_VIEWER"):
        p = Peer(who.lower(), who)
        p.connect()
        check(p.subscribe(("#", 1)) == [1], f"{who} subscribe to # refused")
        rc = p.publish("devices/pump/commands/x", b"x", qos=1)
        check(rc == refused(0x87), f"{who} publish: reason {rc:#x}")
        obs.expect_none()
        check(p.connected(), f"{who} must stay connected")
        dev = Peer("dev", "DEV")
        dev.connect()
        dev.publish("devices/pump/telemetry", b'{"seen": 1}', qos=1)
        check(p.expect_one().payload == b'{"seen": 1}', f"{who} sees the tenant's messages")
        check(obs.expect_one().payload == b'{"seen": 1}', "observer")
        dev.disconnect()


@scenario
def tenant_isolation():
    """Two tenants with the same device id and topics never see each other's
    messages, live or retained, even through `#`."""
    a_obs = observer("#")
    b_obs = Peer("b_obs", "BETA_OBS")
    b_obs.connect()
    b_obs.subscribe(("#", 1))
    a_dev = Peer("a_dev", "DEV")
    a_dev.connect()
    a_dev.subscribe(("devices/pump/#", 1))
    b_dev = Peer("b_dev", "BETA")
    b_dev.connect()
    b_dev.subscribe(("devices/pump/#", 1))
    # Telemetry payloads must be valid telemetry, so the tenants' markers are JSON.
    A, B = b'{"a": 1}', b'{"b": 1}'
    a_dev.publish("devices/pump/telemetry", A, qos=1, retain=True)
    b_dev.publish("devices/pump/telemetry", B, qos=1, retain=True)
    for peer, want in ((a_obs, A), (a_dev, A), (b_obs, B), (b_dev, B)):
        m = peer.expect_one()
        check(m.payload == want, f"{peer.name}: got {describe(m)}")
        peer.expect_none(0.3)
    late_a = observer("#")
    late_b = Peer("late_b", "BETA_OBS")
    late_b.connect()
    late_b.subscribe(("#", 1))
    check(late_a.expect_one().payload == A, "tenant default's retained message")
    check(late_b.expect_one().payload == B, "tenant beta's retained message")
    late_a.expect_none(0.3)
    late_b.expect_none(0.1)


# ---------------------------------------------------------------- telemetry

@scenario
def telemetry_refused():
    """Telemetry that is not valid is refused: MQTT 5 PUBACK 0x99 (Payload
    format invalid; 3.1.1 cannot say no, so a plain PUBACK), it reaches no
    subscriber, and the connection stays up for the next, valid message."""
    obs = observer("devices/pump/telemetry")
    dev = Peer("dev", "DEV")
    dev.connect()
    for bad in (b"not json", b'{"temp": null}', b'[[{"temp": 1}]]', b'{"temp": NaN}'):
        rc = dev.publish("devices/pump/telemetry", bad, qos=1)
        check(rc == refused(0x99), f"{bad!r}: PUBACK {rc:#04x}, expected {refused(0x99):#04x}")
        check(dev.connected(), f"disconnected after {bad!r}")
    good = b'{"temp": 21.5}'
    rc = dev.publish("devices/pump/telemetry", good, qos=1)
    check(rc == 0, f"the valid message got PUBACK {rc:#04x}")
    m = obs.expect_one()
    check(m.payload == good, f"observer got {describe(m)}")
    obs.expect_none(0.3)
    dev.disconnect()
    obs.disconnect()


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print(f"usage: {sys.argv[0]} SCENARIO\nscenarios: {', '.join(sorted(SCENARIOS))}",
              file=sys.stderr)
        return 2
    name = sys.argv[1]
    # A watchdog: whatever happens, never outlive a generous bound.
    threading.Timer(45.0, lambda: (print(f"{name}: watchdog expired", file=sys.stderr),
                                    os._exit(3))).start()
    try:
        SCENARIOS[name]()
    except Failure as e:
        print(f"FAIL {name} (MQTT {'5' if proto() == 5 else '3.1.1'}): {e}", file=sys.stderr)
        os._exit(1)
    except Exception:
        traceback.print_exc()
        os._exit(1)
    print(f"ok {name}")
    sys.stdout.flush()
    # Skip interpreter teardown (paho threads); the connections just close.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
