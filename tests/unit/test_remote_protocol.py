"""device=remote's pieces that need no server: the board program's message framing over a pipe (what numpy's .npy
reader cannot read from), its Python 3.6 syntax (JetPack 4.6's interpreter), and ssh's failures as one line each."""

from __future__ import annotations

import ast
import os
import threading

import numpy as np
import pytest

from edgecomp.evaluate.remote import board
from edgecomp.evaluate.remote.client import PROGRAM
from edgecomp.evaluate.remote.ssh import SshConnection, SshTarget


def test_messages_cross_a_pipe_whole_with_their_arrays():
    read_end, write_end = os.pipe()
    arrays = [np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.array([[1, -2]], dtype=np.int64)]
    big = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)  # > a pipe's 64 KiB buffer
    with open(read_end, "rb") as reader, open(write_end, "wb") as writer:
        sender = threading.Thread(
            target=lambda: (board.write_message(writer, {"op": "run"}, arrays), board.write_message(writer, {}, [big]))
        )
        sender.start()
        header, received = board.read_message(reader)
        _, (received_big,) = board.read_message(reader)
        sender.join()
        writer.close()
        assert board.read_message(reader) == (None, [])  # the end of the stream
    assert header["op"] == "run" and header["arrays"] == [["<f4", [2, 3, 4]], ["<i8", [1, 2]]]
    for sent, got in zip(arrays, received, strict=True):
        assert got.dtype == sent.dtype and np.array_equal(got, sent)
    assert np.array_equal(received_big, big)


def test_a_message_cut_short_is_an_error_not_a_short_array():
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as reader:
        with open(write_end, "wb") as writer:
            writer.write(b'{"arrays": [["<f4", [1000]]]}\n' + b"\0" * 100)
        with pytest.raises(EOFError):
            board.read_message(reader)


def test_the_board_program_parses_as_python_3_6():
    tree = ast.parse(PROGRAM.read_text(), feature_version=(3, 6))  # JetPack 4.6's: no walrus, no `/` parameters
    futures = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
               if node.module == "__future__"]  # fmt: skip
    assert "annotations" not in futures  # 3.7+
    keywords = {keyword.arg for node in ast.walk(tree) if isinstance(node, ast.Call) for keyword in node.keywords}
    assert not keywords & {"capture_output", "text", "strict"}  # subprocess.run's 3.7 keywords, zip's 3.10


@pytest.mark.parametrize(
    ("said", "expected", "transient"),
    [
        ("edgecomp-board@127.0.0.1: Permission denied (publickey).", "refused the login", False),
        ("ssh: Could not resolve hostname nano.lan: Name or service not known", "unknown host", False),
        ("Host key verification failed.", "host key does not match", False),
        ("ssh: connect to host 127.0.0.1 port 2: Connection refused", "connection refused", True),
        ("ssh: connect to host 10.0.0.9 port 22: Connection timed out", "no answer", True),
        ("Connection closed by 127.0.0.1 port 2222", "the connection was closed", True),
    ],
)
def test_ssh_failures_are_one_line_that_says_what_to_do(said, expected, transient):
    connection = SshConnection(SshTarget("nano.lan", user="jetson", port=2222))
    error = connection.failure(f"warning: something first\n{said}\n", "probing the board")
    message = str(error)
    assert message.startswith("device=remote (jetson@nano.lan:2222), probing the board: ")
    assert expected in message and "\n" not in message and error.transient is transient


def test_each_login_has_its_own_shared_connection():
    key_a = SshConnection(SshTarget("board", identity_file="~/.ssh/a")).control_path
    key_b = SshConnection(SshTarget("board", identity_file="~/.ssh/b")).control_path
    assert key_a != key_b and key_a == SshConnection(SshTarget("board", identity_file="~/.ssh/a")).control_path
    assert len(key_a) < 100  # a Unix socket's path has at most ~104 bytes
