"""A board to measure on over SSH, for the device=remote tests: a real OpenSSH server on 127.0.0.1 (a free port, a
throwaway host key and a throwaway client key made here) that lets in one user, the one scripts/install_test_board.sh
made with no rights outside its home, whose interpreters have numpy and onnxruntime (and numpy alone, and a stand-in
trtexec: tests/helpers/fake_trtexec.py). The server can be stopped and started again on the same port and key (the
fault tests)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BOARD = Path("/opt/edgecomp-test-board")
LOGIN = "edgecomp-board"
HOME = Path("/home") / LOGIN
SSHD = Path("/usr/sbin/sshd")
PYTHON = BOARD / "bin" / "python"
PYTHON_WITHOUT_ONNXRUNTIME = BOARD / "bin" / "python-without-onnxruntime"
PYTHON_WITH_TRTEXEC = BOARD / "bin" / "python-with-trtexec"
# CI sets it: there the board must be there (scripts/install_test_board.sh ran), a missing one fails instead of skipping
REQUIRED = os.environ.get("EDGECOMP_REQUIRE_BOARD") == "1"


def missing() -> str | None:
    """Why the test board cannot run here, or None."""
    if os.geteuid() != 0:
        return "the test board's server logs in another user: the tests need root"
    for path in (SSHD, PYTHON, PYTHON_WITHOUT_ONNXRUNTIME, PYTHON_WITH_TRTEXEC, HOME):
        if not path.exists():
            return f"{path} is missing: run scripts/install_test_board.sh (as root) first"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SshBoard:
    folder: Path  # keys, config, log (root's)
    port: int
    workdir: str  # the board's folder of this session, relative to the login's home
    process: subprocess.Popen | None = None

    @property
    def key(self) -> Path:
        return self.folder / "client_key"

    def settings(self, **settings) -> dict:
        """device=remote's keys for this board (`settings` replace or add keys)."""
        values = {
            "host": "127.0.0.1", "port": self.port, "user": LOGIN, "identity_file": str(self.key),
            "known_hosts_file": str(self.folder / "known_hosts"), "python": str(PYTHON), "workdir": self.workdir,
            "threads": 1,
        }  # fmt: skip
        return {**values, **settings}

    def overrides(self, **settings) -> list[str]:
        """device=remote's command-line settings for this board (`settings` replace or add device keys)."""
        return ["device=remote", *(f"device.{key}={value}" for key, value in self.settings(**settings).items())]

    def device(self, **settings):
        """A RemoteDevice for this board, as device=remote with `overrides(**settings)` builds it."""
        from edgecomp.evaluate.remote.remote_device import RemoteDevice

        return RemoteDevice(name="remote", **self.settings(**settings))

    def start(self) -> None:
        config = self.folder / "sshd_config"
        config.write_text(
            "\n".join([
                f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.folder / 'host_key'}",
                f"PidFile {self.folder / 'sshd.pid'}", f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
                f"AllowUsers {LOGIN}", "PermitRootLogin no", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "X11Forwarding no",
                "AllowTcpForwarding no", "PrintMotd no", "LogLevel ERROR", "",
            ])
        )  # fmt: skip
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stderr=open(self.folder / "sshd.log", "ab"),  # noqa: SIM115 - the server's, closed with it
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()[-2000:]}")

    def ensure_running(self) -> None:
        """Started again if a test stopped it (and failed before starting it)."""
        if self.process is None:
            self.start()

    def stop(self) -> None:
        """Stop the server and its connections, whatever they run (a board that went away mid-run); another
        server's (another test worker's) are left alone."""
        if self.process is None:
            return
        for pid in [*descendants(self.process.pid), self.process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None


def descendants(pid: int) -> list[int]:
    """Every process started by `pid`, its children's children included (sshd's connections start sessions of their
    own, so the server's process group does not hold them)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout.split()
    children: dict[int, list[int]] = {}
    for child, parent in zip(table[::2], table[1::2], strict=True):
        children.setdefault(int(parent), []).append(int(child))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def start_board() -> SshBoard:
    """A server started in a folder of its own: the login reads authorized_keys there, so it is not under pytest's
    temporary folders (only root may enter those)."""
    reason = missing()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"EDGECOMP_REQUIRE_BOARD=1, but {reason}")
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="edgecomp-test-board-"))
    folder.chmod(0o755)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    (folder / "authorized_keys").chmod(0o644)
    board = SshBoard(folder, free_port(), f"edgecomp-test-{os.getpid()}-{time.time_ns() % 10**6}")
    board.start()
    return board


def remove_board(board: SshBoard) -> None:
    board.stop()
    shutil.rmtree(HOME / board.workdir, ignore_errors=True)
    shutil.rmtree(board.folder, ignore_errors=True)
