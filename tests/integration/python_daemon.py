#!/usr/bin/python3
"""A real clusterkvd for Python tests: the Python twin of tests/testing/daemon_process.cc.

As a library:
    with Daemon("/path/to/clusterkvd") as daemon:
        client = clusterkv.Client.connect(daemon.target, "tenant-a")

As a command, it starts a daemon, runs a command with every "{target}" replaced by the
daemon's address, stops the daemon and exits with the command's status (non-zero also when the
daemon did not stop cleanly):
    python_daemon.py --daemon=/path/to/clusterkvd -- python3 example.py --target={target}

The daemon gets a fresh socket and data directory under /tmp (a Unix socket path must stay
short), the flags the C++ test harness passes (--auth=none: tenants come from call metadata;
no metrics port), and is ready once it prints "clusterkvd: serving on". Readiness is that
line, never a sleep.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

READY_LINE = "clusterkvd: serving on "


class Daemon:
    def __init__(self, binary, flags=(), start_timeout=120.0, stop_timeout=60.0):
        self.binary = binary
        self.flags = list(flags)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process = None
        self.work_dir = None
        self._lines = []
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set at the ready line or at EOF
        self._reader = None

    @property
    def socket_path(self):
        return os.path.join(self.work_dir, "clusterkvd.sock")

    @property
    def target(self):
        return "unix:" + self.socket_path

    def output(self):
        with self._lock:
            return "".join(self._lines)

    def _read(self):
        for line in self.process.stdout:
            with self._lock:
                self._lines.append(line)
            if line.startswith(READY_LINE) or READY_LINE in line:
                self._ready.set()
        self._ready.set()

    def start(self):
        self.work_dir = tempfile.mkdtemp(prefix="ckvpy_", dir="/tmp")
        args = [
            self.binary,
            "--socket=" + self.socket_path,
            "--data_dir=" + os.path.join(self.work_dir, "data"),
            "--host_capacity_mib=64",
            "--huge_pages=false",
            "--backend=cpu",
            "--threads=1",
            "--shutdown_grace_s=5",
            "--metrics_address=",
            "--undefok=metrics_address",
            "--auth=none",
        ] + self.flags
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._ready.wait(self.start_timeout)
        if READY_LINE not in self.output():
            self.kill()
            raise RuntimeError("clusterkvd did not start serving:\n" + self.output())
        return self

    def stop(self):
        """SIGTERM, then the exit status (killed after stop_timeout: returns -9)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self._cleanup()
        return status

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._cleanup()

    def _cleanup(self):
        if self._reader is not None:
            self._reader.join(10)
            self._reader = None
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def main():
    parser = argparse.ArgumentParser(
        description="Run a command against a freshly started clusterkvd ({target} in the "
                    "command is replaced by the daemon's address).")
    parser.add_argument("--daemon", required=True, help="clusterkvd binary")
    parser.add_argument("--daemon_flag", action="append", default=[],
                        help="extra daemon flag (repeatable)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- then the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    daemon = Daemon(args.daemon, args.daemon_flag).start()
    try:
        command = [part.replace("{target}", daemon.target) for part in command]
        sys.stdout.flush()
        status = subprocess.call(command)
    finally:
        stopped = daemon.stop()
    if status == 0 and stopped != 0:
        print("python_daemon: clusterkvd exited with status %s:\n%s" % (stopped, daemon.output()))
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
