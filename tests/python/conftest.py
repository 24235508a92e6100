"""Starts the real `diglot` daemon once for the whole session.

The daemon gets a temp config that puts all three listeners on 127.0.0.1:0; their addresses
are read from its "listening" log lines on stdout, e.g.

    INFO diglot_net::server: listening listener=listeners.ws kind="ws" addr=127.0.0.1:41234

stdout and stderr are drained by threads for the daemon's whole life (a full pipe would stall
it), keeping the last lines for error messages. The daemon is stopped with SIGTERM at the end of
the session (and killed at interpreter exit if anything went wrong before that).
"""

import atexit
import collections
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clients import EVENTUALLY

REPO = Path(__file__).resolve().parents[2]
DIGLOT_BIN = os.environ.get("DIGLOT_BIN") or str(REPO / "target" / "debug" / "diglot")

CONFIG = """\
[listeners.ws]
addr = "127.0.0.1:0"
[listeners.mqtt]
addr = "127.0.0.1:0"
[listeners.stomp]
addr = "127.0.0.1:0"
[log]
level = "info"
"""

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LISTENING = re.compile(r"listener=listeners\.(ws|mqtt|stomp)\b.*\baddr=(\S+)")


def _split(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass
class Broker:
    proc: subprocess.Popen
    tmpdir: str
    lines: collections.deque = field(default_factory=lambda: collections.deque(maxlen=300))
    addrs: dict = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def ws(self):
        return _split(self.addrs["ws"])

    @property
    def mqtt(self):
        return _split(self.addrs["mqtt"])

    @property
    def stomp(self):
        return _split(self.addrs["stomp"])

    def log(self):
        return "\n".join(self.lines)

    def stop(self, keep_dir=False):
        """SIGTERM, then wait for the exit (SIGKILL past the bound). Returns the exit code.

        The temp dir (and the data directory in it) is removed unless `keep_dir`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EVENTUALLY)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"diglot did not exit after SIGTERM\n--- diglot output ---\n{self.log()}")
        finally:
            if not keep_dir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)


def _drain(broker, stream, tag):
    for raw in iter(stream.readline, ""):
        line = ANSI.sub("", raw.rstrip("\n"))
        broker.lines.append(tag + line)
        if not tag and "listening" in line:
            m = LISTENING.search(line)
            if m:
                broker.addrs[m.group(1)] = m.group(2)
                if {"ws", "mqtt", "stomp"} <= broker.addrs.keys():
                    broker.ready.set()
    stream.close()
    broker.ready.set()  # wake the starter if the daemon died before logging everything


def start_broker(tmpdir=None):
    """Starts a daemon in a new temp dir, or in `tmpdir` (reusing the store under its `data/`)."""
    tmpdir = tmpdir or tempfile.mkdtemp(prefix="diglot-py-")
    config = os.path.join(tmpdir, "broker.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    env = dict(os.environ, NO_COLOR="1")
    env.pop("RUST_LOG", None)
    try:
        proc = subprocess.Popen(
            [DIGLOT_BIN, "--config", config],
            cwd=tmpdir,  # the store's default data directory lands in the temp dir too
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as e:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise RuntimeError(f"cannot start {DIGLOT_BIN}: {e} (build it or set DIGLOT_BIN)") from e
    broker = Broker(proc=proc, tmpdir=tmpdir)
    atexit.register(lambda: proc.poll() is None and proc.kill())
    for stream, tag in ((proc.stdout, ""), (proc.stderr, "[stderr] ")):
        threading.Thread(target=_drain, args=(broker, stream, tag), daemon=True).start()
    broker.ready.wait(EVENTUALLY)
    if not {"ws", "mqtt", "stomp"} <= broker.addrs.keys():
        code = broker.stop()
        raise RuntimeError(
            f"diglot did not log its three listeners (exit code {code}, found {broker.addrs})\n"
            f"--- diglot output ---\n{broker.log()}"
        )
    return broker


def restart_broker(broker):
    """Stops `broker` with SIGTERM (it must exit 0) and starts a new daemon in the same temp dir,
    so on the same data directory; the listeners get new ports. Returns the new Broker."""
    try:
        code = broker.stop(keep_dir=True)
    except BaseException:
        shutil.rmtree(broker.tmpdir, ignore_errors=True)
        raise
    if code != 0:
        shutil.rmtree(broker.tmpdir, ignore_errors=True)
        raise AssertionError(f"diglot exited {code} after SIGTERM\n--- diglot output ---\n{broker.log()}")
    return start_broker(broker.tmpdir)


@pytest.fixture
def own_broker():
    """A daemon of the test's own (e.g. to restart it); a holder whose `.b` is the current
    Broker, so a test that restarts it updates `.b` and the fixture stops the latest one."""

    holder = types.SimpleNamespace(b=start_broker())
    yield holder
    code = holder.b.stop()
    assert code == 0, f"diglot exited {code} after SIGTERM\n--- diglot output ---\n{holder.b.log()}"


@pytest.fixture(scope="session")
def broker():
    b = start_broker()
    yield b
    code = b.stop()
    # README: on SIGTERM the daemon says goodbye to its clients and exits 0.
    assert code == 0, f"diglot exited {code} after SIGTERM\n--- diglot output ---\n{b.log()}"
