#!/usr/bin/env python3
"""Device profiles seen by a real MQTT 5 device (paho-mqtt 2.x).

Run as ``python3 profiles.py SCENARIO`` with the environment of
``mqtt_peer.py`` (``MQTT_HOST``, ``MQTT_PORT``, ``DEV_USER`` for device
``pump``, whose profile's telemetry schema allows ``temp`` up to 100).
"""

import os
import sys
import threading
import traceback

from mqtt_peer import Failure, Peer, check

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


class ReasonPeer(Peer):
    """A peer that keeps each PUBACK's reason string as well."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reasons = {}
        self.c.on_publish = self._on_publish_with_reason

    def _on_publish_with_reason(self, c, ud, mid, rc, properties):
        reason = getattr(properties, "ReasonString", None) if properties else None
        self._set(lambda: (self.reasons.__setitem__(mid, reason),
                           self.pubacks.__setitem__(mid, rc)))

    def publish_for_reason(self, topic, payload):
        info = self.c.publish(topic, payload, 1)
        check(info.rc == 0, f"publish to {topic!r} not sent ({info.rc})")
        self.wait(lambda: info.mid in self.pubacks, f"ack for the publish to {topic!r}")
        return self.pubacks[info.mid].value, self.reasons[info.mid]


@scenario
def schema_refused():
    """Telemetry that breaks the profile's schema gets PUBACK 0x99 with a
    reason string naming the path and the rule; the connection stays up and
    a valid message after it is accepted."""
    dev = ReasonPeer("dev", "DEV", version=5)
    dev.connect()
    rc, reason = dev.publish_for_reason("devices/pump/telemetry", b'{"temp": 500}')
    check(rc == 0x99, f"PUBACK {rc:#04x}, expected 0x99")
    expected = "/temp: 500 is greater than the maximum of 100"
    check(reason == expected, f"reason string {reason!r}, expected {expected!r}")
    check(dev.connected(), "disconnected after the refusal")
    rc, reason = dev.publish_for_reason("devices/pump/telemetry", b'{"temp": 42}')
    check(rc == 0, f"the valid message got PUBACK {rc:#04x} ({reason!r})")
    dev.disconnect()


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print(f"usage: {sys.argv[0]} SCENARIO\nscenarios: {', '.join(sorted(SCENARIOS))}",
              file=sys.stderr)
        return 2
    name = sys.argv[1]
    threading.Timer(30.0, lambda: (print(f"{name}: watchdog expired", file=sys.stderr),
                                    os._exit(3))).start()
    try:
        SCENARIOS[name]()
    except Failure as e:
        print(f"FAIL {name}: {e}", file=sys.stderr)
        os._exit(1)
    except Exception:
        traceback.print_exc()
        os._exit(1)
    print(f"ok {name}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
