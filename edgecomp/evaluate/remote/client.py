"""The board as the host sees it: edgecomp's board program copied once, what the board has, files copied by content, and
sessions of the program that run and time one file (edgecomp.evaluate.remote.board: the other end of the protocol).

Every copy lands under a temporary name, is checked against its SHA-256 on the board and only then renamed to its
final name, the hash: a copy cut short (a lost connection) leaves at most a temporary file that nothing reads, and a
rerun copies again; a file already there under its hash is not copied twice (nor the program, named by its own hash).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import subprocess
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp.evaluate.remote import board as board_program
from edgecomp.evaluate.remote.ssh import RemoteError, SshConnection, quoted

PROGRAM = Path(board_program.__file__)
COMMAND_NOT_FOUND = 127


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Board:
    """A board reached by `connection`, running `python` (its interpreter: a path or a command on its PATH) in
    `workdir` (relative to the login's home, or absolute)."""

    def __init__(self, connection: SshConnection, python: str, workdir: str) -> None:
        self.connection = connection
        self.python = python
        self.workdir = workdir.rstrip("/") or "/"
        self.address = connection.target.address

    def path(self, *parts: str) -> str:
        return posixpath.join(self.workdir, *parts)

    def has(self, remote_path: str) -> bool:
        done = self.connection.run(quoted("test", "-f", remote_path), f"looking for {remote_path}")
        return done.returncode == 0

    def put(self, local: Path, remote_path: str, sha256: str) -> None:
        """Copy `local` to `remote_path` unless it is there: through a temporary name, checked, then renamed."""
        if self.has(remote_path):
            return
        folder = posixpath.dirname(remote_path)
        partial = f"{quoted(remote_path)}.part$$"  # $$: the board shell's pid, so two runs never share one
        script = (
            f"mkdir -p {quoted(folder)} && cat > {partial} && "
            f"echo {quoted(f'{sha256}  ')}{partial} | sha256sum -c --status && mv {partial} {quoted(remote_path)} "
            f"|| {{ rm -f {partial}; exit 3; }}"
        )
        done = self.connection.run(script, f"copying {local.name}", stdin=local.read_bytes())
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip() or "its SHA-256 did not match: a copy cut short"
            raise RemoteError(
                f"device=remote ({self.address}): copying {local} to {remote_path} failed ({detail}); nothing of it "
                "is kept there, run again", transient=True
            )  # fmt: skip

    @cached_property
    def program(self) -> str:
        """The board program's path on the board, copied there if this version is not."""
        sha256 = sha256_of(PROGRAM)
        remote = self.path(f"edgecomp_board-{sha256[:16]}.py")
        self.put(PROGRAM, remote, sha256)
        return remote

    @cached_property
    def facts(self) -> dict[str, Any]:
        """What the board has (board.probe): its interpreter checked first, then numpy; ONNX Runtime is for the
        runtime to require."""
        done = self.connection.run(quoted(self.python, self.program, "probe"), "probing the board's interpreter")
        stderr = done.stderr.decode(errors="replace").strip()
        if done.returncode == COMMAND_NOT_FOUND or (done.returncode != 0 and "not found" in stderr):
            raise RemoteError(
                f"device=remote ({self.address}): device.python={self.python} is not on the board; give the path of "
                "a Python 3 interpreter there (with numpy and onnxruntime installed for it)"
            )
        if done.returncode != 0:
            last = stderr.splitlines()[-1] if stderr else f"exit status {done.returncode}"
            raise RemoteError(f"device=remote ({self.address}): device.python={self.python} failed: {last}")
        facts = json.loads(done.stdout.decode().strip().splitlines()[-1])
        if facts.get("numpy") is None:
            raise RemoteError(
                f"device=remote ({self.address}): numpy does not import in device.python={self.python} on the board "
                f"({facts.get('numpy_error')}); install it there: {self.python} -m pip install numpy"
            )
        return facts

    def upload(self, local: Path) -> str:
        """`local` on the board, named by its content: copied once, reused by every later run."""
        sha256 = sha256_of(local)
        remote = self.path("artifacts", f"{sha256}{local.suffix}")
        self.put(local, remote, sha256)
        return remote

    def serve(self, *arguments: str) -> BoardSession:
        """A session of the board program serving one file (board.serve's arguments)."""
        return BoardSession(self, quoted(self.python, self.program, "serve", *arguments))


class BoardSession:
    """One `board.py serve` on the board: requests in, answers out, over the ssh process's pipes (its stderr kept in a
    file: a pipe nobody reads would stop the board once full)."""

    def __init__(self, board: Board, command: str) -> None:
        self.board = board
        self.stderr = tempfile.TemporaryFile()
        self.process = board.connection.popen(command, stderr=self.stderr)
        try:
            self.skip_to_marker()
            self.answer("loading the file")
        except BaseException:
            self.close()
            raise

    def skip_to_marker(self) -> None:
        """Past what the login's shell may print before the program starts (a profile's greeting)."""
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            if line.rstrip(b"\r\n") == board_program.SERVE_MARKER:
                return
        raise self.lost("starting the board program")

    def lost(self, doing: str) -> RemoteError:
        """What to say when the other end is gone: ssh's failure, or the program's last words."""
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.stderr.seek(0)
        message = self.stderr.read().decode(errors="replace").strip()
        if self.process.returncode == 255 or not message:
            return self.board.connection.failure(message or "Connection closed", doing)
        return RemoteError(f"device=remote ({self.board.address}), {doing}: {message.splitlines()[-1]}")

    def answer(self, doing: str) -> tuple[dict[str, Any], list[np.ndarray]]:
        assert self.process.stdout is not None
        try:
            header, arrays = board_program.read_message(self.process.stdout)
        except (ValueError, EOFError) as error:  # a message cut short, or not one
            raise self.lost(doing) from error
        if header is None:
            raise self.lost(doing)
        if not header.get("ok"):
            raise RemoteError(f"device=remote ({self.board.address}), {doing}: {header.get('error')}")
        return header, arrays

    def request(self, doing: str, header: dict[str, Any], array: np.ndarray) -> tuple[dict[str, Any], list]:
        assert self.process.stdin is not None
        try:
            board_program.write_message(self.process.stdin, header, [array])
        except (BrokenPipeError, OSError) as error:
            raise self.lost(doing) from error
        return self.answer(doing)

    def close(self) -> None:
        """End the program (its stdin closed: it returns) and the ssh process, and close every pipe."""
        process = self.process
        try:
            if process.poll() is None and process.stdin is not None:
                process.stdin.close()
                process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # a request's bytes still buffered for a board that is gone
                    pass
        self.stderr.close()
