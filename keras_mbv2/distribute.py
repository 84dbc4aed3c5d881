"""Training on several workers: TensorFlow's `MultiWorkerMirroredStrategy`, one process per machine, the cluster
named by the `TF_CONFIG` environment variable.

`TF_CONFIG` is JSON: `{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index":
0}}`, the same cluster on every worker and each its own index. The chief (task type "chief", or worker 0 when the
cluster has none) writes the checkpoints and the outputs; the others write to temporary folders they remove. The
strategy splits each global batch over the workers and averages their gradients (all-reduce over gRPC).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

#: Seconds a worker waits for the rest of its cluster before it gives up (`keras-mbv2 qat --cluster-timeout`).
CLUSTER_TIMEOUT = 300.0


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in the cluster `TF_CONFIG` names."""

    workers: int  # processes that train (workers, and the chief if named apart)
    task_type: str
    index: int
    has_chief: bool = False  # the cluster names a chief apart from its workers
    peers: tuple[tuple[str, str], ...] = ()  # the other tasks: ("worker 1", "host:port"), ...
    address: str = ""  # this task's host:port

    @property
    def chief(self) -> bool:
        """The worker that writes: task "chief", or worker 0 of a cluster without a chief."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0 and not self.has_chief)

    def describe(self) -> str:
        """`worker 1 of 2`."""
        return f"{self.task_type} {self.index} of {self.workers}" + (" (the chief: it writes)" if self.chief else "")


def cluster_role(env: dict[str, str] | None = None) -> ClusterRole:
    """Read and check `TF_CONFIG` (no TensorFlow needed); raises ValueError naming `TF_CONFIG` and what is wrong."""
    text = (os.environ if env is None else env).get("TF_CONFIG")
    if not text:
        raise ValueError('`TF_CONFIG` is not set: a multi-worker run needs it on every worker, e.g. '
                         'TF_CONFIG=\'{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}, "task": '
                         '{"type": "worker", "index": 0}}\'. Received: TF_CONFIG=None')
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, index = str(task["type"]), int(task["index"])
        members = {k: list(v) for k, v in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"`TF_CONFIG` must be JSON with a \"cluster\" (task type -> host:port list) and a \"task\" "
                         f"(type, index). Received: TF_CONFIG={text!r}") from None
    if task_type not in members or not 0 <= index < len(members[task_type]):
        raise ValueError(f"`TF_CONFIG`'s task ({task_type} {index}) is not in its cluster "
                         f"({', '.join(f'{k}: {len(v)}' for k, v in members.items())}). Received: TF_CONFIG={text!r}")
    for address in (a for v in members.values() for a in v):
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"`TF_CONFIG`'s cluster addresses must be host:port. Received: TF_CONFIG={text!r}")
    workers = len(members.get("worker", [])) + len(members.get("chief", []))
    peers = tuple((f"{kind} {i}", str(address)) for kind, addresses in members.items()
                  for i, address in enumerate(addresses) if (kind, i) != (task_type, index))
    return ClusterRole(workers, task_type, index, "chief" in members, peers, str(members[task_type][index]))


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except OSError:
        return False


class ClusterDidNotAssemble(RuntimeError):
    """Some workers of the cluster did not answer within the wait (`wait_for_cluster`); the message names them."""


def wait_for_cluster(role: ClusterRole, timeout: float = CLUSTER_TIMEOUT, poll: float = 0.25) -> None:
    """Wait, in Python (so Ctrl-C and SIGTERM stop it at once), until every other task of the cluster answers on its
    address; raise ClusterDidNotAssemble naming those that did not within `timeout` seconds.

    TensorFlow's strategy blocks inside native code, holding the interpreter, until every worker has joined: a
    worker that never starts would hang it for good. So each worker first listens on its own address with a plain
    socket and probes the others'; once all answer it closes its socket and creates the strategy, whose server
    then takes the address (a peer still probing sees that server answer instead)."""
    host, _, port = role.address.rpartition(":")
    listener = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        listener.close()
        raise ClusterDidNotAssemble(f"this worker's address {role.address} ({role.describe()}) cannot be listened on: "
                                    f"{exc.strerror or exc}; another process holds it, or the host is not this "
                                    "machine's") from None
    listener.listen(16)
    listener.setblocking(False)
    pending = dict(role.peers)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            with contextlib.suppress(BlockingIOError, OSError):
                while True:  # peers' probes: accept and close
                    listener.accept()[0].close()
            for task in [t for t, address in pending.items() if _answers(address)]:
                del pending[task]
            if pending and time.monotonic() >= deadline:
                raise ClusterDidNotAssemble(
                    f"the cluster of {role.workers} workers did not assemble within {timeout:g} s ({role.describe()}): "
                    + ", ".join(f"{task} ({address})" for task, address in pending.items()) + " did not answer")
            if pending:
                time.sleep(poll)
    finally:
        listener.close()


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` ports free on `host` now, for a cluster of worker processes on one machine (tests, benchmarks)."""
    import socket

    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def multi_worker_strategy() -> Any:
    """A `tf.distribute.MultiWorkerMirroredStrategy` for the cluster `TF_CONFIG` names (checked first). Create it
    before any other TensorFlow operation of the process, as TensorFlow requires; it waits for every worker."""
    cluster_role()
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()
