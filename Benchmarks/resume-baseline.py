#!/usr/bin/env python3
"""resume-baseline.py - the bare-driver baseline for Benchmarks/resume.sh and capture.sh.

A plain Python QMP/QGA driver (stdlib only), modelled on the lab driver's resume and
capture (sequential steps, one QMP and one QGA connection, MIGRATION events instead of
sleeps, 2 ms guest-exec-status polls, 150 ms HTTP tries), doing the same work as
`stack-emulator start` / `capture` on the same emulator home:

  resume   fresh session overlay (qemu-img create -u) on the snapshot's disk layer;
           QEMU with the argv stack-emulator used (read from a file); events capability
           + bandwidth; migrate-incoming exec:zstd -dc <ram.zst>; cont; QGA sync;
           guest-set-time; device_add virtio-9p-pci; mount-host-fs --post-resume;
           four fresh secrets, internal-pck (0600) then trigger-fast-rotate with
           input-data; the four HTTP endpoints until 200.
  capture  cold boot with the same layout (no -incoming, -kernel/-initrd/-append) on a
           fresh layer; the four endpoints; QGA sync; stop; migrate exec:zstd -1 -T0;
           quit.

It is a yardstick, not a product: no fallback, no validation beyond what the steps need.
"""
import argparse
import base64
import json
import os
import random
import socket
import subprocess
import sys
import time

NAMES = ["STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY", "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY",
         "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY", "CRON_SECRET"]
ENDPOINTS = [("dashboard", "/handler/sign-in"), ("backend", "/health?db=1"), ("minio", "/minio/health/live"), ("inbucket", "/")]


def now():
    return time.monotonic()


class QMP:
    def __init__(self, path, timeout=30.0):
        deadline = now() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if now() > deadline:
                    raise
                time.sleep(0.005)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        self.n = 0
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        self.n += 1
        req = {"execute": name, "id": self.n}
        if args is not None:
            req["arguments"] = args
        self.sock.sendall((json.dumps(req) + "\n").encode())
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
                continue
            if msg.get("id") != self.n:
                continue
            if "error" in msg:
                raise RuntimeError(f"{name}: {msg['error']}")
            return msg.get("return")

    def wait_migration(self):
        while True:
            for ev in self.events:
                if ev["event"] == "MIGRATION" and ev["data"]["status"] in ("completed", "failed", "cancelled"):
                    self.events.remove(ev)
                    return ev["data"]["status"]
            self.events.append(self._read())


class QGA:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def _read(self, deadline):
        while True:
            self.buf = self.buf.lstrip(b"\xff")
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.strip(b"\xff \r")
                if line:
                    try:
                        return json.loads(line)
                    except ValueError:
                        continue
                continue
            left = deadline - now()
            if left <= 0:
                raise TimeoutError("QGA read timeout")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QGA closed")
            self.buf += chunk

    def sync(self, timeout=30.0):
        deadline = now() + timeout
        while now() < deadline:
            sid = random.randrange(1, 2**31)
            self.sock.sendall(b"\xff" + (json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": sid}}) + "\n").encode())
            try:
                attempt = min(deadline, now() + 0.5)
                while True:
                    if self._read(attempt).get("return") == sid:
                        return
            except (TimeoutError, socket.timeout):
                continue
        raise TimeoutError("guest agent silent")

    def cmd(self, name, args=None, timeout=30.0):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        self.sock.sendall((json.dumps(req) + "\n").encode())
        msg = self._read(now() + timeout)
        if "error" in msg:
            raise RuntimeError(f"{name}: {msg['error']}")
        return msg.get("return")

    def run(self, path, args=None, input_data=None, timeout=60.0):
        a = {"path": path, "capture-output": True}
        if args:
            a["arg"] = args
        if input_data is not None:
            a["input-data"] = base64.b64encode(input_data).decode()
        pid = self.cmd("guest-exec", a)["pid"]
        deadline = now() + timeout
        while True:
            st = self.cmd("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                if st.get("exitcode") != 0:
                    raise RuntimeError(f"{path} failed: {st}")
                return st
            if now() > deadline:
                raise TimeoutError(f"{path} did not exit")
            time.sleep(0.002)


def http_ok(port, path, timeout=0.15):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/") and data.split(b" ", 2)[1] == b"200"
    except OSError:
        return False
    finally:
        s.close()


def wait_http(ports, timeout):
    deadline = now() + timeout
    for name, path in ENDPOINTS:
        while not http_ok(ports[name], path):
            if now() > deadline:
                raise TimeoutError(f"{name} not healthy")
            time.sleep(0.01)


def option(argv, name):
    return argv[argv.index(name) + 1]


def launch(argv, vm_dir):
    for f in ("qemu.pid", "monitor.sock", "qga.sock"):
        try:
            os.unlink(os.path.join(vm_dir, f))
        except FileNotFoundError:
            pass
    open(os.path.join(vm_dir, "serial.log"), "w").close()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)


def resume(a):
    t0 = now()
    argv = json.load(open(a.argv))
    vm = a.vm_dir
    meta = json.load(open(os.path.join(a.snapshot, "metadata.json")))
    with open(a.base_image, "rb") as f:
        size = int.from_bytes(f.read(32)[24:32], "big")
    disk = os.path.join(vm, "disk.qcow2")
    try:
        os.unlink(disk)
    except FileNotFoundError:
        pass
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b",
                    os.path.join(a.snapshot, meta["diskLayerFile"]), disk, str(size)], check=True)
    launch(argv, vm)
    q = QMP(os.path.join(vm, "monitor.sock"))
    q.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    q.cmd("migrate-set-parameters", {"max-bandwidth": 16 << 30})
    q.cmd("migrate-incoming", {"uri": "exec:zstd -dcq " + os.path.join(a.snapshot, meta["ramStateFile"])})
    if q.wait_migration() != "completed":
        raise RuntimeError("incoming migration failed")
    if q.cmd("query-status")["status"] != "running":
        q.cmd("cont")
    g = QGA(os.path.join(vm, "qga.sock"))
    g.sync()
    g.cmd("guest-set-time", {"time": time.time_ns()})
    q.cmd("device_add", {"driver": "virtio-9p-pci", "id": "hostfs-dev", "fsdev": "hostfs", "mount_tag": "hostfs", "bus": "hostfs-port"})
    mount_args = ["--post-resume"] + ([] if a.share == "/" else ["/host" + a.share])
    g.run("/usr/local/bin/mount-host-fs", mount_args)
    secrets = [os.urandom(32).hex() for _ in NAMES]
    fd = os.open(os.path.join(vm, "internal-pck"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, secrets[0].encode())
    os.close(fd)
    payload = "\n".join(f"{n}={v}" for n, v in zip(NAMES, secrets)).encode()
    g.run("/usr/local/bin/trigger-fast-rotate", input_data=payload)
    wait_http(json.loads(a.ports), 45)
    print(json.dumps({"seconds": round(now() - t0, 3)}))


def capture(a):
    t0 = now()
    resume_argv = json.load(open(a.argv))
    vm = a.vm_dir
    layer = os.path.join(a.out, "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", a.base_image, layer], check=True)
    argv = []
    skip = False
    for i, arg in enumerate(resume_argv):
        if skip:
            skip = False
            continue
        if arg == "-incoming":
            skip = True
            continue
        if arg.startswith("file=") and arg.split(",")[0].endswith("/disk.qcow2"):
            arg = "file=" + layer + "," + arg.split(",", 1)[1]
        argv.append(arg)
    argv[1:1] = ["-kernel", a.kernel, "-initrd", a.initrd, "-append", open(a.cmdline).read().strip()]
    launch(argv, vm)
    q = QMP(os.path.join(vm, "monitor.sock"))
    wait_http(json.loads(a.ports), 240)
    g = QGA(os.path.join(vm, "qga.sock"))
    g.sync()
    q.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    q.cmd("migrate-set-parameters", {"max-bandwidth": 16 << 30})
    q.cmd("stop")
    q.cmd("migrate", {"uri": "exec:zstd -q -1 -T0 > " + os.path.join(a.out, "ram.zst")})
    if q.wait_migration() != "completed":
        raise RuntimeError("migration failed")
    pid = int(open(os.path.join(vm, "qemu.pid")).read())
    try:
        q.cmd("quit")
    except (ConnectionError, OSError):
        pass
    while os.path.exists(f"/proc/{pid}"):
        time.sleep(0.005)
    print(json.dumps({"seconds": round(now() - t0, 3)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["resume", "capture"])
    ap.add_argument("--argv", required=True, help="JSON list: the QEMU argv stack-emulator's resume used")
    ap.add_argument("--vm-dir", required=True)
    ap.add_argument("--snapshot", help="resume: the snapshot directory")
    ap.add_argument("--base-image", required=True)
    ap.add_argument("--share", default="/")
    ap.add_argument("--ports", required=True, help='JSON {"dashboard":…,"backend":…,"minio":…,"inbucket":…}')
    ap.add_argument("--kernel")
    ap.add_argument("--initrd")
    ap.add_argument("--cmdline")
    ap.add_argument("--out", help="capture: directory for disk.qcow2 and ram.zst")
    a = ap.parse_args()
    {"resume": resume, "capture": capture}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
