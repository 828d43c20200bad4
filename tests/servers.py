"""Starting a real `emoreason serve` for a test module: a free port, the log kept, ready when /v1/models answers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(checkpoint: Path, log: Path, options: list[str], api_key: str = "none", start_s: float = 300,
                   env: dict | None = None):
    """``emoreason serve CHECKPOINT --port P OPTIONS`` in a subprocess; yields {url, client, process, log} once the
    server lists its models, and stops it afterwards (``env``: more environment for the server) (the test fails with the log's tail if it does not start)."""
    import openai

    port = free_port()
    command = [sys.executable, "-m", "emoreason.cli", "serve", str(checkpoint), "--port", str(port), *options]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env=os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {}))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0, timeout=120)
    deadline = time.monotonic() + start_s
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not start in {start_s:g} s:\n{log.read_text()[-3000:]}")
                time.sleep(1.0)
        yield {"url": url, "client": client, "process": process, "log": log}
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
