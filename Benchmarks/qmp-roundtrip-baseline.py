#!/usr/bin/env python3
"""Bare baseline for Benchmarks/qmp-roundtrip.sh: the same steps as the Swift driver,
done the way a minimal protocol driver does them (one blocking socket, json.dumps, no
threads). Python 3 stdlib only.

  qmp-roundtrip-baseline.py latency SOCKET COUNT     -> "<median us> <p90 us>"
  qmp-roundtrip-baseline.py migrate SRC DST SNAPSHOT -> "<capture ms> <resume ms>"
"""
import json
import os
import socket
import sys
import time


class QMP:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.n = 0
        self.events = []
        self.read()  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None, fds=None):
        self.n += 1
        req = {"execute": name, "id": self.n}
        if args is not None:
            req["arguments"] = args
        data = (json.dumps(req) + "\n").encode()
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)
        while True:
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)
                continue
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg.get("return")

    def wait_migration(self):
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == "MIGRATION" and ev["data"]["status"] in ("completed", "failed", "cancelled"):
                    self.events.pop(i)
                    return ev["data"]["status"]
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)


def latency(path, count):
    q = QMP(path)
    for _ in range(min(100, count)):
        q.cmd("query-status")
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        q.cmd("query-status")
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    print(f"{samples[len(samples) // 2]:.1f} {samples[int(len(samples) * 0.9)]:.1f}")


def migrate(src, dst, snapshot):
    t0 = time.perf_counter()
    a = QMP(src)
    a.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    a.cmd("migrate-set-parameters", {"max-bandwidth": 16 << 30})
    a.cmd("stop")
    fd = os.open(snapshot, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    a.cmd("getfd", {"fdname": "snapshot"}, fds=[fd])
    os.close(fd)
    a.events.clear()
    a.cmd("migrate", {"uri": "fd:snapshot"})
    assert a.wait_migration() == "completed"
    try:
        a.cmd("quit")
    except ConnectionError:
        pass
    a.sock.close()
    t1 = time.perf_counter()
    b = QMP(dst)
    b.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    fd = os.open(snapshot, os.O_RDONLY)
    b.cmd("getfd", {"fdname": "snapshot"}, fds=[fd])
    os.close(fd)
    b.events.clear()
    b.cmd("migrate-incoming", {"uri": "fd:snapshot"})
    assert b.wait_migration() == "completed"
    b.cmd("cont")
    assert b.cmd("query-status")["status"] == "running"
    t2 = time.perf_counter()
    b.sock.close()
    print(f"{(t1 - t0) * 1000:.2f} {(t2 - t1) * 1000:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "latency":
        latency(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "migrate":
        migrate(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
