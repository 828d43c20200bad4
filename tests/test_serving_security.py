"""The server's safety checks (issue 16, items 1-5 and the serve part of 14), against real vLLM servers.

Two servers, started together (~40-60 s), because the items need opposite settings:
- ``locked``: ``emoreason serve`` as most operators run it: an API key, an allowed media folder, no media domain.
- ``open``: no key, no media folder, 127.0.0.1 listed as a media domain (what ``--allowed-media-domain`` maps to).
A local HTTP server on 127.0.0.1 stands for another service on the server's network and records what it is asked.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="serving needs vLLM: bash scripts/setup.sh serve")
openai = pytest.importorskip("openai")

from emoreason.model.tiny import make_tiny_checkpoint  # noqa: E402

pytestmark = pytest.mark.vllm
API_KEY = "security-key"
NAME = "tiny"
MAX_VIDEO_MB = 1
QUESTION = {"type": "text", "text": "Which emotion?"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Serves ``/x.mp4`` (the server's ``video`` bytes) and ``/redirect`` (to localhost); records every GET."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/x.mp4")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(self.server.video)))
        self.end_headers()
        self.wfile.write(self.server.video)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def local_service(smile_video):
    service = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    service.requests, service.video = [], smile_video.read_bytes()
    threading.Thread(target=service.serve_forever, daemon=True).start()
    yield service
    service.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory, smile_video) -> Path:
    """The locked server's allowed folder: a video, a sparse file over the size limit, a FIFO."""
    folder = tmp_path_factory.mktemp("allowed")
    (folder / "smile.mp4").write_bytes(smile_video.read_bytes())
    with open(folder / "big.mp4", "wb") as file:
        file.truncate(3 * MAX_VIDEO_MB * 2**20)  # sparse: no disk used
    os.mkfifo(folder / "pipe.mp4")
    return folder


def _start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"}
        )


def _wait(url: str, process: subprocess.Popen, log: Path, deadline: float) -> None:
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not start in time:\n{log.read_text()[-3000:]}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, media):
    from emoreason.serving.launcher import serve_args

    checkpoint = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / NAME)
    logs = tmp_path_factory.mktemp("logs")
    ports = {"locked": _free_port(), "open": _free_port()}
    commands = {
        "locked": [sys.executable, "-m", "emoreason.cli", "serve", str(checkpoint), "--port", str(ports["locked"]),
                   "--api-key", API_KEY, "--allowed-media-dir", str(media), "--dtype", "float32",
                   "--max-video-mb", str(MAX_VIDEO_MB)],
        "open": [sys.executable, "-m", "emoreason.serving.launcher",
                 *serve_args(checkpoint, port=ports["open"], dtype="float32", allowed_media_domains=["127.0.0.1"])],
    }  # fmt: skip
    processes = {name: _start(command, logs / f"{name}.log") for name, command in commands.items()}
    try:
        deadline = time.monotonic() + 400
        for name, process in processes.items():
            _wait(f"http://127.0.0.1:{ports[name]}", process, logs / f"{name}.log", deadline)
        yield {
            name: {"url": f"http://127.0.0.1:{ports[name]}", "process": processes[name], "log": logs / f"{name}.log"}
            for name in processes
        }
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def locked(servers):
    server = servers["locked"]
    return server | {"client": openai.OpenAI(base_url=server["url"] + "/v1", api_key=API_KEY, max_retries=0,
                                             timeout=60)}  # fmt: skip


@pytest.fixture(scope="module")
def open_server(servers):
    server = servers["open"]
    return server | {"client": openai.OpenAI(base_url=server["url"] + "/v1", api_key="none", max_retries=0,
                                             timeout=60)}  # fmt: skip


def _http(server, path: str, body: dict | None = None, key: str | None = None, timeout: float = 60) -> tuple:
    """(status, decoded JSON or text) of a plain HTTP request: POST with ``body``, else GET."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server["url"] + path, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _chat(server, content, **kwargs):
    messages = content if isinstance(content, list) and content and "role" in content[0] else None
    messages = messages or [{"role": "user", "content": content}]
    return server["client"].chat.completions.create(model=NAME, messages=messages, max_tokens=4, temperature=0.0,
                                                     **kwargs)  # fmt: skip


def _refused(server, content, **kwargs) -> tuple[int, str]:
    try:
        _chat(server, content, **kwargs)
    except openai.APIStatusError as exc:
        return exc.status_code, str(exc.message)
    return 200, ""


def _video(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


# 1. SSRF ---------------------------------------------------------------------------------------------------------


def test_http_media_is_refused_by_default_and_never_fetched(locked, local_service):
    url = f"http://127.0.0.1:{local_service.server_port}/x.mp4"
    local_service.requests.clear()
    status, message = _refused(locked, [_video(url), QUESTION])
    assert status == 400, message
    assert "--allowed-media-domain 127.0.0.1" in message and "data: URL" in message
    # /tokenize parses the same messages (and fetched the URL before): refused too, with the key
    status, body = _http(locked, "/tokenize", {"model": NAME, "messages": [{"role": "user", "content": [
        _video(url), QUESTION]}]}, key=API_KEY)  # fmt: skip
    assert status == 400, body
    assert local_service.requests == []


def test_an_allowed_domain_is_fetched_without_following_redirects(open_server, local_service):
    port = local_service.server_port
    local_service.requests.clear()
    status, message = _refused(open_server, [_video(f"http://localhost:{port}/x.mp4"), QUESTION])
    assert status == 400 and "allowed domains" in message, message  # localhost is not 127.0.0.1
    assert local_service.requests == []
    status, message = _refused(open_server, [_video(f"http://127.0.0.1:{port}/redirect"), QUESTION])
    assert 400 <= status < 500, message
    assert local_service.requests == ["/redirect"]  # the 302 to localhost was not followed
    _refused(open_server, [_video(f"http://127.0.0.1:{port}/x.mp4"), QUESTION])
    assert local_service.requests[-1] == "/x.mp4"  # a listed host is fetched


def test_allowed_media_domains_map_to_vllm_and_are_checked(tmp_path):
    from emoreason.serving import ServeError
    from emoreason.serving.launcher import serve_args

    checkpoint = make_tiny_checkpoint(tmp_path / NAME, lora=False)
    args = serve_args(checkpoint, allowed_media_domains=["Media.Example.com", "::1", "media.example.com"])
    assert args[args.index("--allowed-media-domains") + 1 :][:2] == ["media.example.com", "[::1]"]
    assert "--allowed-media-domains" not in serve_args(checkpoint)
    assert args[args.index("--middleware") + 1] == "emoreason.serving.guard.RequestGuard"
    for bad in ("http://media.example.com", "media.example.com:8080", "*.example.com", "a/b"):
        with pytest.raises(ServeError, match="not a host name"):
            serve_args(checkpoint, allowed_media_domains=[bad])


# 2. The API key on every route -----------------------------------------------------------------------------------

GUARDED = [("GET", "/v1/models"), ("GET", "/version"), ("GET", "/metrics"), ("GET", "/load"),
           ("GET", "/openapi.json"), ("GET", "/docs"), ("POST", "/tokenize"), ("POST", "/detokenize"),
           ("POST", "/v1/chat/completions"), ("POST", "/invocations"), ("POST", "/v1/completions"),
           ("POST", "/scale_elastic_ep"), ("GET", "/no/such/route")]  # fmt: skip


def test_every_route_but_health_needs_the_key(locked, local_service):
    for method, path in GUARDED:
        body = {"model": NAME, "prompt": "hi", "tokens": [1, 2]} if method == "POST" else None
        for key in (None, "wrong-key"):
            status, answer = _http(locked, path, body, key=key)
            assert status == 401, f"{method} {path} with key {key}: HTTP {status} {answer}"
    for path in ("/health", "/ping"):
        assert _http(locked, path)[0] == 200, path
    # the anonymous /tokenize of a chat video_url neither runs the pipeline nor fetches
    local_service.requests.clear()
    url = f"http://127.0.0.1:{local_service.server_port}/x.mp4"
    status, _ = _http(locked, "/tokenize", {"model": NAME, "messages": [{"role": "user", "content": [_video(url)]}]})
    assert status == 401 and local_service.requests == []
    # with the key the same routes answer
    assert _http(locked, "/tokenize", {"model": NAME, "prompt": "hi"}, key=API_KEY)[0] == 200
    assert _http(locked, "/detokenize", {"model": NAME, "tokens": [1, 2]}, key=API_KEY)[0] == 200
    assert _http(locked, "/metrics", key=API_KEY)[0] == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=locked["url"] + "/v1", api_key="wrong", max_retries=0).models.list()


# 3. No answer without a video ------------------------------------------------------------------------------------


def test_requests_without_a_video_are_refused(locked, media):
    cases = {
        "typed <face>, no video": ("<face> which emotion?", "needs a video"),
        "<face> in an earlier turn": ([{"role": "user", "content": "<face> which emotion?"},
                                       {"role": "assistant", "content": "happiness"},
                                       {"role": "user", "content": "why?"}], "needs a video"),
        "a typed <face> beside the video": ([_video(f"file://{media / 'smile.mp4'}"),
                                             {"type": "text", "text": "<face>\n<face>\nWhich emotion?"}],
                                            "more <face> placeholders"),
        "a typed <audio> without audio": ([_video(f"file://{media / 'smile.mp4'}"),
                                           {"type": "text", "text": "<face><audio> Which emotion?"}],
                                          "more <audio> placeholders"),
    }  # fmt: skip
    for name, (content, message) in cases.items():
        status, text = _refused(locked, content)
        assert status == 400 and message in text, f"{name}: HTTP {status} {text}"


def test_the_completions_route_is_off(locked):
    with pytest.raises(openai.BadRequestError, match="/v1/completions is off"):
        locked["client"].completions.create(model=NAME, prompt="hi", max_tokens=4)
    status, body = _http(locked, "/invocations", {"model": NAME, "prompt": "hi", "max_tokens": 4}, key=API_KEY)
    assert status == 400 and "is off" in body["error"]["message"], body


def test_the_video_limits_cannot_be_lifted_per_request(locked, media):
    status, text = _refused(locked, [_video(f"file://{media / 'big.mp4'}"), QUESTION],
                            extra_body={"media_io_kwargs": {"video": {"max_video_mb": 10_000}}})  # fmt: skip
    assert status == 400 and "media_io_kwargs" in text, text


def test_a_request_with_a_video_passes_the_guard(locked, media):
    """The emoreason client's request shape (its own <face> before the question) reaches the media layer."""
    status, text = _refused(locked, [_video(f"file://{media / 'missing.mp4'}"),
                                     {"type": "text", "text": "<face>\nWhich emotion?"}])  # fmt: skip
    assert status == 400 and "cannot be opened" in text, text


# 4. 4xx, not 500 -------------------------------------------------------------------------------------------------


def test_file_urls_without_an_allowed_folder_are_400(open_server, media):
    status, text = _refused(open_server, [_video(f"file://{media / 'smile.mp4'}"), QUESTION])
    assert status == 400 and "--allowed-media-dir" in text, text


def test_a_closed_port_on_an_allowed_domain_is_a_quick_400(open_server):
    start = time.monotonic()
    status, text = _refused(open_server, [_video(f"http://127.0.0.1:{_free_port()}/x.mp4"), QUESTION])
    elapsed = time.monotonic() - start
    assert status == 400 and "could not be fetched from 127.0.0.1" in text, text
    assert elapsed < 4.0, f"{elapsed:.1f} s"
    assert open_server["process"].poll() is None
    assert "Exception in ASGI application" not in open_server["log"].read_text()


# 5. Files in the allowed folder ----------------------------------------------------------------------------------


def _atime_updates_on_read(folder: Path) -> bool:
    probe = folder / "probe.bin"
    probe.write_bytes(b"x")
    before = probe.stat()
    os.utime(probe, (before.st_mtime - 3600, before.st_mtime))
    probe.read_bytes()
    return probe.stat().st_atime > before.st_mtime - 3600


def test_a_file_over_the_limit_is_refused_before_it_is_read(locked, media, tmp_path):
    big = media / "big.mp4"
    mtime = big.stat().st_mtime
    os.utime(big, (mtime - 3600, mtime))  # relatime updates the access time at the next read
    status, text = _refused(locked, [_video(f"file://{big}"), QUESTION])
    assert status == 400 and f"at most {MAX_VIDEO_MB} MB" in text, text
    if _atime_updates_on_read(tmp_path):  # (a noatime mount cannot show a read)
        assert big.stat().st_atime == mtime - 3600, "the server read the file"


def test_a_fifo_in_the_allowed_folder_is_refused_without_hanging(locked, media):
    client = locked["client"].with_options(timeout=20)
    start = time.monotonic()
    with pytest.raises(openai.BadRequestError, match="not a regular file"):
        client.chat.completions.create(model=NAME, max_tokens=4,
                                       messages=[{"role": "user", "content": [_video(f"file://{media / 'pipe.mp4'}"),
                                                                              QUESTION]}])  # fmt: skip
    assert time.monotonic() - start < 10
    assert locked["process"].poll() is None


def test_data_urls_still_work_and_the_server_keeps_serving(locked, smile_video):
    data = f"data:video/mp4;base64,{base64.b64encode(smile_video.read_bytes()).decode()}"
    response = _chat(locked, [_video(data), QUESTION])
    assert response.choices[0].message.content is not None
    assert "Exception in ASGI application" not in locked["log"].read_text()


# 14. `emoreason serve` errors are one line -----------------------------------------------------------------------


def test_serve_errors_are_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "emoreason.cli", "serve", str(tmp_path)], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"emoreason: error: {tmp_path.resolve()} is not an emoreason checkpoint: "
                                       f"config.json is missing"]  # fmt: skip
