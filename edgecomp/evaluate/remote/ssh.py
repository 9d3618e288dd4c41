"""The SSH transport to a board: the system's OpenSSH client, one connection per run shared by every command.

Why the system client rather than a Python SSH library (docs/measuring_on_boards.md): it is already on every machine
that reaches a board, and it reads the user's own `~/.ssh/config` (host aliases, ProxyJump through a gateway, agent
and keys, known hosts), so a board that `ssh board` reaches is reached by edgecomp with the same name and nothing
configured twice; a library would need that configuration repeated in edgecomp's. One connection per run comes from
OpenSSH's connection sharing: the first command opens a control master (`ControlMaster=auto`, its socket in a private
folder per local user, keyed by every setting of the login: host, port, user, key, options), every later command of the run (and of the next run within
`ControlPersist`) goes through it without a new handshake.

Failures are classified from ssh's exit status 255 and its message into one line that says what to do (a refused
connection, a refused key, an unknown host, a changed host key, no answer). A failure that may pass (a connection
lost or timed out) is retried once; a refused key or unknown host is not.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgecomp.errors import DeviceError

SSH_FAILED = 255  # ssh's exit status when ssh itself failed (the remote command's own status otherwise)
# ssh's messages, the line edgecomp says instead, and whether a retry may help.
FAILURES = (
    ("Permission denied", "the board refused the login: check device.user and device.identity_file (the public key "
     "must be in ~/.ssh/authorized_keys of that user on the board: ssh-copy-id)", False),
    ("Could not resolve hostname", "unknown host: check device.host (a name ssh resolves, an address, or a Host of "
     "~/.ssh/config)", False),
    ("Host key verification failed", "the board's host key does not match the one known for it: if the board was "
     "reinstalled, remove its old key with ssh-keygen -R HOST (and device.known_hosts_file)", False),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "the board's host key changed: if the board was reinstalled, remove its "
     "old key with ssh-keygen -R HOST", False),
    ("Connection refused", "connection refused: is sshd running on the board, and is device.port right?", True),
    ("timed out", "no answer: is the board on, on this network, and device.host/device.port right?", True),
    ("No route to host", "no route to the board: is it on this network?", True),
    ("Connection reset", "the connection was reset", True),
    ("Connection closed", "the connection was closed", True),
    ("Broken pipe", "the connection was lost", True),
)  # fmt: skip


class RemoteError(DeviceError):
    """The board could not be reached or did not do what was asked: one line saying which and what to do."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient  # a retry may succeed (a lost connection), unlike a refused key


@dataclass(frozen=True)
class SshTarget:
    """Where the board is and how to log in: what is None is left to ssh (and the user's ~/.ssh/config)."""

    host: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    known_hosts_file: str | None = None  # None: ssh's own (~/.ssh/known_hosts); a new board's key is accepted once
    options: tuple[str, ...] = field(default_factory=tuple)  # more `-o Key=Value` options, as ssh takes them
    connect_timeout_s: int = 10

    @property
    def address(self) -> str:
        """`user@host:port` as far as configured: what messages and records name."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


def control_folder() -> Path:
    """The private folder of this local user's control sockets (short: a socket path has at most ~100 bytes). One
    that another user made, or that others may enter, is refused: a socket planted there would see every command."""
    folder = Path(tempfile.gettempdir()) / f"edgecomp-ssh-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    status = folder.lstat()
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise RemoteError(
            f"{folder} (the folder of edgecomp's SSH connections) must be a folder of yours that only you may enter "
            f"(mode 700); remove it and run again"
        )
    return folder


class SshConnection:
    def __init__(self, target: SshTarget, retry_pause_s: float = 2.0) -> None:
        self.target = target
        self.retry_pause_s = retry_pause_s

    @property
    def control_path(self) -> str:
        """The shared connection's socket, one per target and way of logging in: a run with another key or user never
        rides on a connection that a different login opened."""
        return str(control_folder() / hashlib.sha256(repr(self.target).encode()).hexdigest()[:24])

    def command(self, remote_command: str) -> list[str]:
        """The local argv that runs `remote_command` (a line for the board's shell) through the shared connection."""
        target = self.target
        args = ["ssh"]
        for option in target.options:  # first: ssh keeps the first value given for a key, so these win
            args += ["-o", option]
        args += [
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={target.connect_timeout_s}",
            # a board that stops answering mid-run ends the connection in ~15 s, not at TCP's minutes
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}", "-o", "ControlPersist=60",
            "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if target.known_hosts_file:  # quoted: ssh splits the value at spaces into several files
            args += ["-o", f'UserKnownHostsFile="{Path(target.known_hosts_file).expanduser()}"']
        if target.port:
            args += ["-p", str(target.port)]
        if target.identity_file:
            args += ["-i", str(Path(target.identity_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        if target.user:
            args += ["-l", target.user]
        return [*args, target.host, "--", remote_command]

    def failure(self, stderr: str, doing: str) -> RemoteError:
        """ssh's failure (`stderr` of an exit status 255) as one line naming the board and what to do."""
        for needle, advice, transient in FAILURES:
            if needle.lower() in stderr.lower():
                return RemoteError(f"device=remote ({self.target.address}), {doing}: {advice}", transient)
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh failed without a message"
        return RemoteError(f"device=remote ({self.target.address}), {doing}: {last}", transient=True)

    def run(
        self, remote_command: str, doing: str, stdin: bytes | None = None, timeout_s: float | None = None
    ) -> subprocess.CompletedProcess:
        """Run `remote_command` on the board (`doing` says what for, in messages); its exit status is the caller's to
        judge, except ssh's own failures: a RemoteError, after one retry where the failure may pass."""
        for attempt in (1, 2):
            try:
                done = subprocess.run(
                    self.command(remote_command), input=stdin, capture_output=True, timeout=timeout_s, check=False
                )
            except subprocess.TimeoutExpired as expired:
                error = RemoteError(
                    f"device=remote ({self.target.address}), {doing}: no result within {timeout_s:.0f} s", True
                )
                if attempt == 2:
                    raise error from expired
            else:
                if done.returncode != SSH_FAILED:
                    return done
                error = self.failure(done.stderr.decode(errors="replace"), doing)
                if attempt == 2 or not error.transient:
                    raise error
            time.sleep(self.retry_pause_s)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def popen(self, remote_command: str, stderr) -> subprocess.Popen:
        """`remote_command` running on the board with its stdin and stdout as pipes, its stderr into `stderr` (a
        file: what the board said when the session ends)."""
        return subprocess.Popen(
            self.command(remote_command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )

    def close(self) -> None:
        """Stop the shared connection (it also stops by itself `ControlPersist` seconds after its last use)."""
        subprocess.run([*self.command("true")[:-3], "-O", "exit", self.target.host], capture_output=True, check=False)


def quoted(*parts: str) -> str:
    """A command line for the board's shell from its words."""
    return " ".join(shlex.quote(str(part)) for part in parts)
