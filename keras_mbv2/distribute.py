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


# -- float training on several processes: Keras 3's own distribution on JAX ---------------------------------------
#: Keras' variables naming a multi-process JAX cluster (`keras.distribution.initialize` reads the same).
KERAS_CLUSTER_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                           "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclass(frozen=True)
class ProcessCluster:
    """Processes that train one float model together with Keras 3 on JAX (`keras.distribution`): the job addresses
    (host:port each, the first process 0's, where JAX's coordinator listens), how many processes, and this one's
    index. Process 0 writes the outputs."""

    addresses: tuple[str, ...]
    count: int
    index: int

    @property
    def chief(self) -> bool:
        """Process 0: the one that writes the model and the history."""
        return self.index == 0

    def describe(self) -> str:
        """`process 1 of 2`."""
        return f"process {self.index} of {self.count}" + (" (process 0: it writes)" if self.chief else "")

    def shard(self, *arrays: Any) -> tuple[Any, ...]:
        """This process's part of each array: every `count`-th item from `index`, the arrays first cut to a multiple
        of `count` so that every process runs the same number of steps."""
        cut = len(arrays[0]) // self.count * self.count
        return tuple(a[:cut][self.index::self.count] for a in arrays)


def process_cluster(env: dict[str, str] | None = None) -> ProcessCluster:
    """The cluster this process belongs to, one rule for every command: Keras' variables
    (`KERAS_DISTRIBUTION_JOB_ADDRESSES`, comma-separated host:port, process 0's first; `_NUM_PROCESSES`;
    `_PROCESS_ID`) when set, else `TF_CONFIG` (`cluster_role`: the chief, or worker 0, is process 0, its address the
    coordinator's). Raises ValueError naming the variable and what is wrong."""
    env = os.environ if env is None else env
    given = {name: env.get(name) for name in KERAS_CLUSTER_VARIABLES}
    if any(given.values()):
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ValueError(f"`{missing[0]}` is not set: Keras' cluster needs all of "
                             f"{', '.join(KERAS_CLUSTER_VARIABLES)}. Received: " +
                             ", ".join(f"{k}={v!r}" for k, v in given.items()))
        addresses = tuple(a.strip() for a in str(given["KERAS_DISTRIBUTION_JOB_ADDRESSES"]).split(","))
        try:
            count = int(str(given["KERAS_DISTRIBUTION_NUM_PROCESSES"]))
            index = int(str(given["KERAS_DISTRIBUTION_PROCESS_ID"]))
        except ValueError:
            raise ValueError("`KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID` must be "
                             "integers. Received: " + ", ".join(f"{k}={v!r}" for k, v in given.items())) from None
        if count < 2 or not 0 <= index < count or any(":" not in a for a in addresses):
            raise ValueError("Keras' cluster needs at least 2 processes, a process id in 0 .. count - 1 and host:port "
                             "job addresses. Received: " + ", ".join(f"{k}={v!r}" for k, v in given.items()))
        return ProcessCluster(addresses, count, index)
    role = cluster_role(env)  # names TF_CONFIG when neither is set
    tasks = [("chief", 0)] if role.has_chief else []
    config = json.loads(env["TF_CONFIG"])["cluster"]
    tasks += [("worker", i) for i in range(len(config.get("worker", [])))]
    addresses = tuple(str(config[kind][i]) for kind, i in tasks)
    return ProcessCluster(addresses, len(tasks), tasks.index((role.task_type, role.index)))


def start_process_cluster(cluster: ProcessCluster | None = None) -> ProcessCluster:
    """Join this process to its cluster (`process_cluster`, read from the environment unless given) for float
    training with Keras 3 on JAX, the one documented call before building the model, on every process:
    JAX's multi-process runtime with its CPU collectives over gloo, then `keras.distribution.DataParallel` over
    every process's devices, each global batch split over them; each process feeds its own part of the data
    (`ProcessCluster.shard`), `batch_size` the global batch / `count`. Raises RuntimeError when Keras' backend is
    not JAX, or when the installed JAX cannot use gloo (what it said)."""
    import keras

    cluster = cluster or process_cluster()
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"several processes train with Keras 3 on JAX: set KERAS_BACKEND=jax before Keras loads. "
                           f"Received: backend {keras.backend.backend()!r}")
    import sys

    jax = sys.modules["jax"]  # Keras' JAX backend, loaded with Keras (no dependency of this package's own)
    try:  # JAX's CPU collectives across processes; without them a multi-process all-reduce fails
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception as exc:  # noqa: BLE001 (the installed JAX's own words)
        raise RuntimeError(f"the installed JAX {jax.__version__} cannot run its CPU collectives over gloo, which "
                           f"training on several processes needs: {exc}") from None
    keras.distribution.initialize(",".join(cluster.addresses), cluster.count, cluster.index)
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=keras.distribution.list_devices(), auto_shard_dataset=False))
    return cluster


def gather(value: int) -> list[int]:
    """`value` from every process of the started cluster (`start_process_cluster`), in process order: JAX's
    `multihost_utils.process_allgather` over the cluster's collectives. Every process must call it."""
    import importlib

    import numpy as np

    # Keras' JAX backend's own module (loaded with it; jax is no dependency of this package's own)
    multihost = importlib.import_module("jax.experimental.multihost_utils")
    return [int(v) for v in np.asarray(multihost.process_allgather(np.array([value], np.int32))).ravel()]


def agreed_epoch(gathered: list[int]) -> int:
    """The epoch every process of a lock-step run resumes after: the fewest any has finished (`gathered`, each
    process's backup). A process's backup can be at most one epoch ahead of another's (each train step waits for
    every process), so the one ahead steps back to its previous backup (`training.step_back_backup`). Raises
    RuntimeError when they are further apart: their backups are not of one run."""
    if max(gathered) - min(gathered) > 1:
        raise RuntimeError(f"the processes' epoch backups are of epochs {gathered} (by process): more than one "
                           f"epoch apart, not one run's; remove the backup folders to start again")
    return min(gathered)
