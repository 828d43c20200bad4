"""Parallel work over many items, from a laptop to a cluster, on Ray; one after another here without it.

An engine maps a *task* over items and yields ``(index, value)`` pairs as items finish (in completion order). A
task is a picklable callable with an optional ``setup(worker_index)`` that loads what it needs once (the face
models, a checkpoint, the client of one of several servers); ``task(item)`` returns the item's value and handles
the item's own, expected errors itself (a corrupt file is a row that says so); the exceptions in its ``fatal``
attribute stop the whole run (a server that is gone). What a task cannot report comes back as a
:class:`Failure` for that item alone:

- an exception the task let through (its type and message);
- a worker process that died on the item (a decoder crash, the OOM killer, a ``kill -9``): the worker is replaced
  and the item retried once; a second death fails the item;
- an item that runs past ``timeout_s``: its worker is killed and replaced, the item fails (a hang would hang again).

:class:`RayEngine` runs one Ray actor per worker (``num_cpus`` each; the task's models loaded once in each) and
keeps one item in flight per actor, so the timeout measures that item alone. Ray Data's ``map_batches`` runs the
same kind of actors but turns a crashing or hanging item into a failed dataset (or a dropped block), not a row that
says why, so the dispatch here is Ray's core API (``ray.wait`` over the actors' calls). ``address=None`` starts Ray
on this machine with its cores; ``"auto"`` or ``"host:6379"`` joins a running cluster (``ray start --head`` and
``ray start --address`` on the other nodes, each with emoreason installed in the same environment).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RAY_HINT = "pip install 'emoreason[scale]' (or scripts/setup.sh dev) for Ray"
DEFAULT_TIMEOUT_S = 1800.0  # an item's limit in a Ray worker: a 60 s clip at 200 fps with --micro takes ~200 s here


class EngineError(RuntimeError):
    """The engine cannot run the task at all (Ray missing or unreachable, every worker failing to start)."""


@dataclass(frozen=True)
class Failure:
    """An item the task could not report on itself: why, in one line."""

    error: str


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def ray_is_initialized() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A ``host:port`` address must answer at once: ``ray.init`` would otherwise retry a dead address for ever."""
    if address == "auto":  # what Ray itself would join: $RAY_ADDRESS, else the last `ray start` on this machine
        latest = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        address = os.environ.get("RAY_ADDRESS") or (latest.read_text().strip() if latest.is_file() else "")
        if not address:
            raise EngineError("--ray-address auto: no Ray cluster was started on this machine (`ray start --head`)")
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise EngineError(f"nothing answers at {address} ({exc.strerror or exc}): is `ray start --head` running "
                          "there?") from None  # fmt: skip


def _has_token() -> bool:
    """Whether this machine holds a Ray cluster token (Ray's token authentication)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.isfile(path)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500] or "failed"


def _setup(task: Any, index: int) -> None:
    setup = getattr(task, "setup", None)
    if setup is not None:
        setup(index)


@dataclass
class SequentialEngine:
    """Every item in this process, one after another (no timeout: nothing here can stop a hung call)."""

    name: str = "sequential"
    workers: int = 1
    per_node: Counter = field(default_factory=Counter)

    def map(self, task: Callable, items: Sequence) -> Iterator[tuple[int, Any]]:
        if not items:
            return
        _setup(task, 0)
        for index, item in enumerate(items):
            try:
                value = task(item)
            except getattr(task, "fatal", ()):
                raise
            except Exception as exc:  # noqa: BLE001 - one bad item must not stop a corpus run
                logger.warning("item %d: unexpected %s", index, type(exc).__name__, exc_info=True)
                value = Failure(_one_line(f"{type(exc).__name__}: {exc}"))
            self.per_node["local"] += 1
            yield index, value

    def close(self) -> None:
        pass


class _Worker:
    """A Ray actor: the task, set up once; one item at a time."""

    def __init__(self, task: Any, index: int):
        os.environ.setdefault("TQDM_DISABLE", "1")
        self.task, self.error = task, None
        try:
            _setup(task, index)
        except Exception as exc:  # noqa: BLE001 - said by ready(), so the driver gets the reason, not a dead actor
            self.error = _one_line(f"{type(exc).__name__}: {exc}")

    def ready(self) -> tuple[str, int, str | None]:
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid(), self.error

    def run(self, item: Any) -> Any:
        try:
            return self.task(item)
        except getattr(self.task, "fatal", ()):
            raise  # the whole run stops: the driver raises it
        except Exception as exc:  # noqa: BLE001 - returned, so the actor stays alive for the next item
            logger.warning("unexpected %s", type(exc).__name__, exc_info=True)
            return Failure(_one_line(f"{type(exc).__name__}: {exc}"))


class RayEngine:
    """Items over Ray actors (see the module's docstring).

    Args:
        address: None starts Ray here; "auto" or "host:port" joins a running cluster.
        workers: the most actors at once (default: the cluster's CPUs / ``num_cpus``).
        timeout_s: an item's limit (None: none).
        retries: how often an item whose worker died is tried again.
        num_cpus: CPUs reserved per actor (its torch and ONNX threads follow it).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S, retries: int = 1, num_cpus: float = 1.0):  # fmt: skip
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 or None, got {timeout_s}")
        if address is not None and not ray_is_initialized():
            _check_reachable(address)
        if address is not None and "RAY_AUTH_MODE" not in os.environ and _has_token() and "ray" not in sys.modules:
            os.environ["RAY_AUTH_MODE"] = "token"  # a `ray start` cluster asks for the token this machine holds
        try:
            import ray
        except ImportError:
            raise EngineError(f"Ray is not installed: {RAY_HINT}") from None
        self._ray = ray
        self.address, self.timeout_s, self.retries, self.num_cpus = address, timeout_s, retries, num_cpus
        self.per_node: Counter = Counter()  # items finished per Ray node id
        self.replaced = 0  # workers replaced after dying or timing out
        started = time.perf_counter()
        self._owns = not ray.is_initialized()
        if self._owns:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address is None:
                options["num_cpus"] = os.cpu_count() or 1
            try:
                ray.init(address=address or "local", **options)  # "local": never a stale `ray start` address
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EngineError(f"cannot start or reach Ray at {address or 'this machine'}: "
                                  f"{_one_line(exc)}") from None  # fmt: skip
        self.startup_s = time.perf_counter() - started
        cpus = int(ray.cluster_resources().get("CPU", 1) // num_cpus) or 1
        self.workers = min(workers, cpus) if workers is not None else cpus
        self._actor_class = ray.remote(num_cpus=num_cpus, max_restarts=0, max_concurrency=1)(_Worker)

    def map(self, task: Callable, items: Sequence) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        if not items:
            return
        task_ref = ray.put(task)
        pending = deque(range(len(items)))
        deaths: Counter = Counter()
        starting: dict = {}  # ready() ref -> (actor, worker index)
        idle: list = []  # (actor, worker index, node id)
        busy: dict = {}  # run() ref -> (actor, worker index, node id, item index, started)
        start_failures: list[str] = []
        next_index = 0

        def start() -> None:
            nonlocal next_index
            actor = self._actor_class.remote(task_ref, next_index)
            starting[actor.ready.remote()] = (actor, next_index)
            next_index += 1

        for _ in range(min(self.workers, len(items))):
            start()
        try:
            while pending or busy:
                while idle and pending:
                    actor, worker, node = idle.pop()
                    index = pending.popleft()
                    busy[actor.run.remote(items[index])] = (actor, worker, node, index, time.monotonic())
                if not starting and not busy:
                    if pending:  # every worker failed to start
                        raise EngineError("no worker could start: " + (start_failures[-1] if start_failures else "?"))
                    break
                done, _ = ray.wait([*starting, *busy], num_returns=1, timeout=self._tick())
                for ref in done:
                    if ref in starting:
                        actor, worker = starting.pop(ref)
                        try:
                            node, _pid, error = ray.get(ref)
                        except (RayActorError, RayTaskError) as exc:  # died while starting (killed, out of memory)
                            node, error = None, _one_line(exc)[:300]
                        if error is not None:
                            start_failures.append(error)
                            logger.warning("a worker failed to start: %s", error)
                            ray.kill(actor, no_restart=True)
                            if len(start_failures) < 2 * self.workers:
                                start()
                            continue
                        idle.append((actor, worker, node))
                        continue
                    actor, worker, node, index, _started = busy.pop(ref)
                    try:
                        value = ray.get(ref)
                    except (RayActorError, WorkerCrashedError) as exc:
                        deaths[index] += 1
                        self.replaced += 1
                        logger.warning("a worker died on item %d (%s); replacing it", index, _one_line(exc)[:200])
                        if deaths[index] <= self.retries:
                            pending.appendleft(index)
                        if pending:  # a replacement only where there is work left for it
                            start()
                        if deaths[index] > self.retries:
                            yield index, Failure(f"the worker died on this input {deaths[index]} times "
                                                 "(a crash in decoding or analysis)")  # fmt: skip
                        continue
                    except RayTaskError as exc:  # a fatal error of the task (a server gone): the run stops
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, getattr(task, "fatal", ())):
                            raise cause from None
                        value = Failure(_one_line(cause or exc))
                    self.per_node[node] += 1
                    idle.append((actor, worker, node))
                    yield index, value
                if self.timeout_s is not None:
                    now = time.monotonic()
                    for ref, (actor, _worker, _node, index, started) in list(busy.items()):
                        if now - started > self.timeout_s:
                            del busy[ref]
                            ray.kill(actor, no_restart=True)
                            self.replaced += 1
                            if pending:
                                start()
                            yield index, Failure(f"timed out after {self.timeout_s:g} s (the worker was replaced)")
        finally:
            for actor, *_rest in [*starting.values(), *busy.values()]:
                ray.kill(actor, no_restart=True)
            for actor, *_rest in idle:
                ray.kill(actor, no_restart=True)

    def _tick(self) -> float | None:
        return None if self.timeout_s is None else max(0.05, min(1.0, self.timeout_s / 4))

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1, limit_s: float = 180.0) -> Iterator[tuple[str, dict]]:
    """A Ray cluster of ``nodes`` nodes on this machine (``ray start --head``, then ``ray start --address`` for the
    others, ``cpus`` CPUs each, token auth off), for trying ``--ray-address`` and for tests and benchmarks. Yields
    ``(address, env)`` once every node is up (``env``: the environment its clients need); stops the nodes after.
    Raises EngineError when Ray is missing or the nodes do not come up within ``limit_s``."""
    import socket
    import subprocess

    if not ray_available():
        raise EngineError(f"Ray is not installed: {RAY_HINT}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    env = os.environ | {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    started = [subprocess.Popen([ray_cli, "start", "--head", "--port", str(port), "--num-cpus", str(cpus),
                                 "--include-dashboard", "false", "--block"], **quiet)]  # fmt: skip
    try:
        _wait_for_nodes(address, 1, env, limit_s)
        for _ in range(nodes - 1):
            started.append(subprocess.Popen([ray_cli, "start", "--address", address, "--num-cpus", str(cpus),
                                             "--block"], **quiet))  # fmt: skip
        _wait_for_nodes(address, nodes, env, limit_s)
        yield address, env
    finally:
        for process in reversed(started):
            process.terminate()  # `ray start --block` stops its node's processes on SIGTERM
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_nodes(address: str, count: int, env: dict, limit_s: float) -> None:
    """Until the cluster at ``address`` has ``count`` live nodes (a loaded machine starts a node in 5-30 s)."""
    import subprocess

    probe = (f"import ray; ray.init(address='{address}', log_to_driver=False); "
             "print(sum(n['Alive'] for n in ray.nodes()))")  # fmt: skip
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(2)
    raise EngineError(f"the local Ray cluster did not reach {count} nodes in {limit_s:g} s")


def make_engine(workers: int | None = None, address: str | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                items: int = 2, say: Callable[[str], None] | None = None):  # fmt: skip
    """The engine a command uses: Ray when it is installed and there is parallel work (``workers`` not 1, more
    than one item, or a cluster ``address``); otherwise this process, with a message naming the extra when Ray
    would have been used. Raises EngineError when ``address`` is given and Ray is missing or unreachable."""
    say = say or (lambda text: print(text, file=sys.stderr))
    if address is None and (workers == 1 or items < 2):
        return SequentialEngine()
    if not ray_available():
        if address is not None:
            raise EngineError(f"--ray-address needs Ray: {RAY_HINT}")
        say(f"Ray is not installed: the inputs run one after another in this process ({RAY_HINT})")
        return SequentialEngine()
    return RayEngine(address=address, workers=workers, timeout_s=timeout_s)


__all__ = ["DEFAULT_TIMEOUT_S", "EngineError", "Failure", "RayEngine", "SequentialEngine", "local_cluster", "make_engine",
           "ray_available"]  # fmt: skip
