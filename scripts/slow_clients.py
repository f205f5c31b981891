#!/usr/bin/env python3
"""Hostile stream clients for `scripts/chaos.sh slow-clients`.

  slow_clients.py HOST:PORT --stalled N --trickle M --seconds S [--bbox W,S,E,N]

Opens N SSE streams that never read a byte and M that read one byte a second, each with a tiny
receive buffer so the gateway's side fills at once. A stream the gateway cuts off is opened again,
and a stalled one is replaced every 20 s (a persistent attacker). Prints one JSON line at the end: connections made, cut off, refused.
"""
import argparse
import json
import select
import socket
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("addr")
p.add_argument("--stalled", type=int, default=20)
p.add_argument("--trickle", type=int, default=20)
p.add_argument("--seconds", type=float, default=30)
p.add_argument("--bbox", default="145.60,-17.10,145.90,-16.70")
a = p.parse_args()
host, port = a.addr.rsplit(":", 1)
deadline = time.time() + a.seconds
lock = threading.Lock()
stats = {"connections": 0, "cut_off": 0, "replaced": 0, "refused": 0, "bytes_read": 0}


def bump(k, n=1):
    with lock:
        stats[k] += n


def open_stream():
    s = socket.socket()
    # Set before connecting so the advertised window is small from the first segment.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect((host, int(port)))
    s.sendall(f"GET /v1/stream?bbox={a.bbox} HTTP/1.1\r\nhost: {a.addr}\r\n\r\n".encode())
    bump("connections")
    return s


def client(trickle):
    while time.time() < deadline:
        try:
            s = open_stream()
            opened = time.time()
        except OSError:
            bump("refused")
            time.sleep(1)
            continue
        try:
            if trickle:
                s.settimeout(2)
            while time.time() < deadline:
                if trickle:
                    b = s.recv(1)
                    if not b:
                        bump("cut_off")
                        break
                    bump("bytes_read")
                    time.sleep(1)
                else:
                    # Never read. The gateway's FIN queues behind the data this socket never
                    # takes, so a cut-off is not always visible here: after 20 s, replace the
                    # stream with a fresh one regardless, keeping the stalled population up.
                    poller = select.poll()
                    poller.register(s, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
                    if poller.poll(1000):
                        bump("cut_off")
                        break
                    if time.time() - opened > 20:
                        bump("replaced")
                        break
        except OSError:
            bump("cut_off")
        finally:
            s.close()


threads = [threading.Thread(target=client, args=(False,), daemon=True) for _ in range(a.stalled)]
threads += [threading.Thread(target=client, args=(True,), daemon=True) for _ in range(a.trickle)]
for t in threads:
    t.start()
for t in threads:
    t.join(max(0.0, deadline - time.time()) + 10)
print(json.dumps(stats))
