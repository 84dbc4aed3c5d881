"""Training on several workers: TensorFlow's `MultiWorkerMirroredStrategy`, one process per machine, the cluster
named by the `TF_CONFIG` environment variable.

`TF_CONFIG` is JSON: `{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index":
0}}`, the same cluster on every worker and each its own index. The chief (task type "chief", or worker 0 when the
cluster has none) writes the checkpoints and the outputs; the others write to temporary folders they remove. The
strategy splits each global batch over the workers and averages their gradients (all-reduce over gRPC).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in the cluster `TF_CONFIG` names."""

    workers: int  # processes that train (workers, and the chief if named apart)
    task_type: str
    index: int
    has_chief: bool = False  # the cluster names a chief apart from its workers

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
    return ClusterRole(workers, task_type, index, "chief" in members)


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
