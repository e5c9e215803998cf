#!/usr/bin/env python3
"""A device's MQTT connections, driven line by line from a Rust test.

Run as ``python3 device_link.py``, with ``MQTT_HOST``/``MQTT_PORT`` and
``PROTO`` (3 or 5) as for ``mqtt_peer.py``. Each line on stdin is one
command; each gets one line on stdout:

- ``connect NAME CLIENT_ID KEEPALIVE TOKEN`` -> ``connected``
- ``disconnect NAME``: a normal DISCONNECT -> ``gone``
- ``kill NAME``: drops the TCP connection without DISCONNECT -> ``gone``
- ``silence NAME``: stops the client's network loop, so it sends no more
  PINGREQ (the broker's keep alive is to time it out) -> ``silent``
- ``wait_gone NAME``: waits until the broker closes the connection ->
  ``gone REASON`` (the MQTT 5 disconnect reason code, or 0)
- ``publish NAME TOPIC``: a QoS 0 publish -> ``sent``

Anything unexpected prints ``FAIL ...`` and exits 1; a watchdog ends the
process after a bound, so nothing here can hang a test run.
"""

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqtt_peer import Failure, Peer  # noqa: E402

WATCHDOG = 120.0
TIMEOUT = 10.0


def until_closed(sock, timeout):
    """Reads a silenced client's socket until the broker closes it."""
    sock.settimeout(timeout)
    seen = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        seen += chunk
    # Packets the paho loop left unread (a PINGRESP) may come first; an
    # MQTT 5 server DISCONNECT is 0xE0, its length, its reason code.
    i = 0
    while i + 1 < len(seen):
        kind, length, at, shift = seen[i], 0, i + 1, 0
        while at < len(seen):
            length |= (seen[at] & 0x7F) << shift
            shift += 7
            at += 1
            if seen[at - 1] < 0x80:
                break
        if kind == 0xE0 and length >= 1 and at < len(seen):
            return seen[at]
        i = at + length
    return 0


def main():
    threading.Timer(WATCHDOG, lambda: os._exit(3)).start()
    peers = {}
    silenced = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, name, args = words[0], words[1], words[2:]
        try:
            if cmd == "connect":
                client_id, keepalive, token = args
                os.environ["DEV_USER"] = token
                os.environ["DEV_PASS"] = ""
                p = Peer(name, "DEV", client_id=client_id, keepalive=int(keepalive))
                p.connect()
                peers[name] = p
                print("connected")
            elif cmd == "disconnect":
                peers[name].disconnect()
                print("gone")
            elif cmd == "kill":
                peers[name].kill()
                print("gone")
            elif cmd == "silence":
                p = peers[name]
                sock = p.c.socket()
                p.c.loop_stop()
                silenced[name] = sock
                print("silent")
            elif cmd == "wait_gone":
                if name in silenced:
                    print(f"gone {until_closed(silenced.pop(name), TIMEOUT)}")
                else:
                    rc = peers[name].wait_gone(TIMEOUT)
                    print(f"gone {getattr(rc, 'value', 0)}")
            elif cmd == "publish":
                peers[name].publish(args[0], b"{}", qos=0)
                print("sent")
            else:
                raise Failure(f"unknown command {cmd}")
        except (Failure, OSError, KeyError, ValueError) as e:
            print(f"FAIL {line.strip()}: {e}")
            sys.stdout.flush()
            os._exit(1)
        sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
