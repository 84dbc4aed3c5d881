"""Float training on several processes with Keras 3 on JAX (keras_mbv2.distribute.start_process_cluster): the
cluster read from Keras' variables or TF_CONFIG by one rule, two real processes on this machine training one model
as one process does (examples/train_on_processes.py), and `keras-mbv2 train --multi-worker`, where only process 0
writes."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from keras_mbv2.distribute import ProcessCluster, _answers, free_ports, process_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_VARS = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:5000,10.0.0.2:5000",
              "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}


@pytest.mark.parametrize("env,cluster", [
    (KERAS_VARS, ProcessCluster(("10.0.0.1:5000", "10.0.0.2:5000"), 2, 1)),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}})},
     ProcessCluster(("a:1", "b:2"), 2, 0)),
    ({"TF_CONFIG": json.dumps({"cluster": {"chief": ["c:3"], "worker": ["a:1", "b:2"]},  # the chief is process 0
                               "task": {"type": "worker", "index": 1}})}, ProcessCluster(("c:3", "a:1", "b:2"), 3, 2)),
    ({**KERAS_VARS, "TF_CONFIG": "ignored: Keras' own variables come first"},
     ProcessCluster(("10.0.0.1:5000", "10.0.0.2:5000"), 2, 1)),
])
def test_the_cluster_is_read_from_keras_variables_or_tf_config(env, cluster):
    assert process_cluster(env) == cluster
    assert cluster.chief == (cluster.index == 0)


@pytest.mark.parametrize("env,fragment", [
    ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}, "`KERAS_DISTRIBUTION_JOB_ADDRESSES` is not set"),
    ({**KERAS_VARS, "KERAS_DISTRIBUTION_PROCESS_ID": "two"}, "must be integers"),
    ({**KERAS_VARS, "KERAS_DISTRIBUTION_PROCESS_ID": "2"}, "a process id in 0 .. count - 1"),
    ({}, "`TF_CONFIG` is not set"),
])
def test_a_bad_cluster_is_one_error_naming_the_variable(env, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        process_cluster(env)


def test_shard_gives_every_process_as_many_items():
    import numpy as np

    x = np.arange(11)
    parts = [ProcessCluster(("a:1", "b:2", "c:3"), 3, i).shard(x)[0] for i in range(3)]
    assert [p.tolist() for p in parts] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


@pytest.mark.parametrize("gathered,agreed", [([0, 0], 0), ([2, 2], 2), ([2, 1], 1), ([1, 2, 2], 1), ([0, 1], 0),
                                             ([3, 1], None)])
def test_the_processes_resume_after_the_epoch_all_have_finished(gathered, agreed):
    """The one behind sets the epoch; more than one apart is not one run's backups."""
    from keras_mbv2.distribute import agreed_epoch

    if agreed is None:
        with pytest.raises(RuntimeError, match=re.escape("of epochs [3, 1] (by process): more than one epoch apart")):
            agreed_epoch(gathered)
    else:
        assert agreed_epoch(gathered) == agreed


def _backup(folder, epoch, weights):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "latest.weights.h5"), "w") as f:
        f.write(weights)
    with open(os.path.join(folder, "training_metadata.json"), "w") as f:
        json.dump({"epoch": epoch, "batch": 0}, f)


@pytest.mark.parametrize("saved,previous,resume,weights", [
    (2, 1, 2, "two"),  # its own backup
    (2, 1, 1, "one"),  # one ahead: steps back to the previous backup
    (1, None, 0, None),  # one ahead of a process with none: starts again
    (2, None, 1, "error"),  # no previous backup to step back to
])
def test_a_process_ahead_steps_back_to_its_previous_backup(tmp_path, saved, previous, resume, weights):
    """`KeepPreviousBackup` keeps the backup Keras' BackupAndRestore replaces; `step_back_backup` puts it back."""
    from keras_mbv2.training import backup_epoch, step_back_backup

    folder = str(tmp_path / "process-0")
    if previous is not None:
        _backup(os.path.join(folder, "previous"), previous, {1: "one"}[previous])
    _backup(folder, saved, {1: "one", 2: "two"}[saved])
    if weights == "error":
        with pytest.raises(RuntimeError, match="holds the backups of epochs 2 and none, not of epoch 1"):
            step_back_backup(folder, resume)
        return
    step_back_backup(folder, resume)
    assert backup_epoch(folder) == resume
    if weights is None:
        assert not os.path.exists(os.path.join(folder, "latest.weights.h5"))
    else:
        with open(os.path.join(folder, "latest.weights.h5")) as f:
            assert f.read() == weights


def test_keep_previous_backup_copies_the_backup_before_it_is_replaced(tmp_path):
    from keras_mbv2.training import KeepPreviousBackup, backup_epoch

    folder = str(tmp_path)
    keep = KeepPreviousBackup(folder)
    keep.on_epoch_end(0)  # nothing yet
    assert not os.path.exists(os.path.join(folder, "previous"))
    _backup(folder, 1, "one")
    keep.on_epoch_end(1)
    assert backup_epoch(os.path.join(folder, "previous")) == 1
    assert sorted(os.listdir(os.path.join(folder, "previous"))) == ["latest.weights.h5", "training_metadata.json"]


def test_the_history_is_whole_after_each_epoch_and_a_resumed_run_drops_the_epochs_it_trains_again(tmp_path):
    from keras_mbv2.training import EpochHistory

    path = str(tmp_path / "h.csv")
    first = EpochHistory(path)
    for epoch in range(3):
        first.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5})
        with open(path) as f:
            assert len(f.read().splitlines()) == epoch + 2  # the header and each finished epoch
    resumed = EpochHistory(path, keep_before=2)  # epoch 2 (0-based) is trained again
    resumed.on_epoch_end(2, {"loss": 0.25, "accuracy": 0.75})
    with open(path) as f:
        assert f.read().splitlines() == ["epoch,accuracy,loss", "0,0.5,1.0", "1,0.5,0.5", "2,0.75,0.25"]
    assert sorted(os.listdir(tmp_path)) == ["h.csv"]  # no temporary file left


def _processes(command, tmp_path, count=2, timeout=900, env=None):
    """`command` run by `count` processes of one cluster on 127.0.0.1 (free ports), in `tmp_path`; each stopped at
    the end whatever happens. Returns each one's (return code, output)."""
    addresses = ",".join(f"127.0.0.1:{p}" for p in free_ports(count))
    base = {**os.environ, **(env or {}), "KERAS_DISTRIBUTION_JOB_ADDRESSES": addresses,
            "KERAS_DISTRIBUTION_NUM_PROCESSES": str(count), "PYTHONUNBUFFERED": "1"}
    base.pop("KERAS_BACKEND", None)
    procs = [subprocess.Popen(command, cwd=tmp_path, env={**base, "KERAS_DISTRIBUTION_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(count)]
    try:
        return [(p.wait(timeout=timeout), p.stdout.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _accuracy(output):
    return float(re.search(r"test accuracy (\d\.\d+)", output).group(1))


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


# (what ends the training process, the command's exit code, its last line): process 0 of a cluster whose process 1
# never starts, its training process waiting in JAX's runtime (native code) for the cluster to assemble
ENDINGS = [
    ("SIGABRT to the training process", 1, r"^keras-mbv2 train: failed: the training process was ended by SIGABRT "
     r"\(this is process 0 of 2; JAX's runtime aborts so when another process of the cluster is lost\); no epoch had "
     r"finished: start every process again with the same command$"),
    ("SIGINT to the command", 130, r"^keras-mbv2 train: interrupted: nothing was written$"),
    ("SIGKILL to the command", -9, None),
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("ending,code,last", ENDINGS, ids=[e[0] for e in ENDINGS])
def test_train_multi_worker_says_one_line_however_its_training_process_ends(ending, code, last, tmp_path):
    """`train --multi-worker` trains in a child process it watches (`cli.train.supervise`), because JAX's runtime can
    end a process with SIGABRT when another process of the cluster is lost (gloo's transport thread, the coordination
    service, JAX's shutdown), before any line of ours: a child ended by a signal is one line naming it and what is
    kept, exit code 1; Ctrl-C reaches the child once and it says what it kept (here, blocked in native code, through
    the signal watchdog, whose line reaches the terminal while TensorFlow's native stderr is captured); a command
    killed outright takes its child with it, which would otherwise hold the cluster's ports and a lost process's
    sockets open."""
    import signal
    import time

    port, peer = free_ports(2)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port},127.0.0.1:{peer}",
               KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID="0")
    command = subprocess.Popen(["keras-mbv2", "train", "--multi-worker", "--epochs", "1", "--out", "m.keras"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"127.0.0.1:{port}"):  # JAX's coordinator, in the training process, waits for process 1
            assert command.poll() is None and time.monotonic() < deadline, command.communicate()
            time.sleep(0.2)
        (child,) = _children(command.pid)
        if ending.startswith("SIGABRT"):
            os.kill(child, signal.SIGABRT)
        elif ending.startswith("SIGINT"):
            command.send_signal(signal.SIGINT)
        else:
            command.kill()
        out, err = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == code, (out[-2000:], err[-2000:])
    if last is not None:
        assert re.match(last, err.strip().splitlines()[-1]), err[-2000:]
        assert len([line for line in err.splitlines() if line.startswith("keras-mbv2 train:")]) == 1, err[-2000:]
    deadline = time.monotonic() + 30
    while _alive(child):  # the training process does not outlive the command
        assert time.monotonic() < deadline, f"the training process {child} outlived the command ({ending})"
        time.sleep(0.2)
    assert os.listdir(tmp_path) == []


#: One training step (SGD, no state of its own) of the example's network on its first global batch of 32, on JAX,
#: alone or as a process of the cluster in Keras' variables; process 0 (or the lone process) saves the weights.
FIRST_STEP = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras_mbv2 as K
from keras_mbv2.distribute import start_process_cluster
cluster = start_process_cluster() if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") else None
import keras, numpy as np
from keras_mbv2.datasets import load_digits
data = load_digits(image_size=32)
keras.utils.set_random_seed(0)
model = K.MobileNetV2((32, 32, 1), alpha=0.35, classes=10, weights=None, bn_momentum=0.9)
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
x, y, batch = data.x_train[:32], data.y_train[:32], 32
if cluster is not None:
    (x, y), batch = cluster.shard(x, y), batch // cluster.count
model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
weights = [np.asarray(v) for v in model.weights]
if cluster is None or cluster.chief:
    np.savez(sys.argv[1], *weights)
"""


@pytest.mark.slow
def test_two_processes_train_the_model_one_process_trains(tmp_path):
    """examples/train_on_processes.py as printed (2 epochs, global batch 32) on two processes on JAX over gloo: both
    report the same test accuracy (their weights are one), far above chance (measured 62.8% and 69.7%), and only
    process 0 saved the model. And the step they take together is one process's step: after the first global batch
    every weight and batch-norm statistic equals one process's up to float rounding (measured: at most 3.8e-5 apart,
    weights up to 4.6), so the shards, the gradients' all-reduce and the batch norms' global statistics are right.
    Not asserted: from the second step on, the two runs' updates differ by about 3% (0.97-1.01 times one process's,
    correlation 0.9996, measured with SGD), which 2 epochs of Adam grow into another model (test accuracy 69.7%
    against 63.1% alone in one run); the cause is not found (docs/several-machines.md)."""
    import numpy as np

    example = os.path.join(ROOT, "examples", "train_on_processes.py")
    runs = _processes([sys.executable, example, "2", "two.keras"], tmp_path)
    assert all(code == 0 for code, _ in runs), [out[-2000:] for _, out in runs]
    accuracies = [_accuracy(out) for _, out in runs]
    assert accuracies[0] == accuracies[1] and accuracies[0] > 0.3, accuracies  # 10 classes: chance is 0.1
    assert sorted(os.listdir(tmp_path)) == ["two.keras"]

    (tmp_path / "first_step.py").write_text(FIRST_STEP)
    alone = subprocess.run([sys.executable, "first_step.py", "one.npz"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=600, env={k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"})
    assert alone.returncode == 0, alone.stdout[-2000:] + alone.stderr[-2000:]
    runs = _processes([sys.executable, "first_step.py", "two.npz"], tmp_path)
    assert all(code == 0 for code, _ in runs), [out[-2000:] for _, out in runs]
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert one.files == two.files and len(one.files) == 262
    apart = max(float(np.abs(one[k] - two[k]).max()) for k in one.files)
    assert apart < 1e-3, apart  # the step itself moves each variable by up to 0.04 at the median (measured), up to 4.6


@pytest.mark.slow
def test_train_multi_worker_killed_after_an_epoch_resumes_and_only_process_0_writes(tmp_path):
    """The docs' two `keras-mbv2 train --multi-worker` commands (docs/several-machines.md) as printed, on free ports,
    process 1 killed (SIGKILL) once process 0 has finished its first epoch: process 0 stops too, with one line saying
    so and what is kept; both started again finish the run, each epoch once in the history; process 0 alone wrote
    --out and --history, the epoch backups are gone, and the model goes through QAT under TensorFlow to an int8 model
    that runs on TFLM."""
    import signal
    import time

    exe = shutil.which("keras-mbv2") or pytest.fail("the keras-mbv2 console script is not installed")
    with open(os.path.join(ROOT, "docs", "several-machines.md")) as f:
        block = re.search(r"<!-- the suite runs these two commands as printed.*?-->\n```bash\n(.*?)```", f.read(),
                          re.S).group(1)
    addresses = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    lines = []  # (environment, argv) of each line, the block's ports replaced by free ones
    for line in block.replace("127.0.0.1:12355,127.0.0.1:12356", addresses).strip().splitlines():
        words = shlex.split(line.rstrip(" &"))
        assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
        argv = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
        assert argv[0] == "keras-mbv2", line
        lines.append((assignments, [exe, *argv[1:]]))
    assert [env["KERAS_DISTRIBUTION_PROCESS_ID"] for env, _ in lines] == ["0", "1"]
    assert lines[0][1] == lines[1][1]  # the same command on each process
    command = lines[0][1]
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(lines[0][0], PYTHONUNBUFFERED="1")
    logs = [open(tmp_path.parent / f"{tmp_path.name}-{i}.log", "w+") for i in range(2)]
    procs = [subprocess.Popen(command, cwd=tmp_path, env={**env, **lines[i][0]}, stdout=logs[i],
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        deadline = time.monotonic() + 600
        while not re.search(r"^epoch 1/2  \d+ s", (tmp_path.parent / f"{tmp_path.name}-0.log").read_text(), re.M):
            assert time.monotonic() < deadline and procs[0].poll() is None, "process 0 did not finish an epoch"
            time.sleep(0.5)
        procs[1].send_signal(signal.SIGKILL)
        # the lost process ends the other, with one line of ours
        assert procs[0].wait(timeout=300) == 1, (tmp_path.parent / f"{tmp_path.name}-0.log").read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for f in logs:
            f.close()
    survivor = (tmp_path.parent / f"{tmp_path.name}-0.log").read_text()
    # JAX's error from the failed all-reduce, or, when JAX's runtime aborted the training process first (gloo's
    # transport thread can), the signal that ended it (`supervise`): the same line either way
    assert re.search(r"^keras-mbv2 train: failed: (another process of the cluster was lost \(this is process 0 of 2; "
                     r"JAX: Gloo .*\)|the training process was ended by SIGABRT \(this is process 0 of 2; .*\)); "
                     r"epoch 1 is kept in .*\.m_two\.keras\.multi-worker: start every process again", survivor,
                     re.M), survivor[-3000:]
    assert "Check failure stack trace" not in survivor  # not JAX's abort at shutdown
    with open(tmp_path / "m_two.csv") as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0"]
    runs = _processes(command, tmp_path)
    assert all(code == 0 for code, _ in runs), [out[-3000:] for _, out in runs]
    assert "saved m_two.keras" in runs[0][1] and "saved" not in runs[1][1]
    assert "epoch 1/2" not in runs[0][1]  # resumed after the finished epoch
    assert _accuracy(runs[0][1]) == _accuracy(runs[1][1])
    assert sorted(os.listdir(tmp_path)) == ["m_two.csv", "m_two.keras"]
    with open(tmp_path / "m_two.csv") as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1"]  # each epoch once
    # straight into QAT under TensorFlow, and the int8 model runs on TFLM as on LiteRT
    qat = subprocess.run([exe, "qat", "--model", "m_two.keras", "--epochs", "1", "--run-dir", "q", "--tflite",
                          "q.tflite"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert qat.returncode == 0, qat.stderr[-3000:]
    litert = float(re.search(r"QAT int8 accuracy (\d\.\d+)", qat.stdout).group(1))
    from keras_mbv2.datasets import load_digits
    from keras_mbv2.quantization import evaluate_tflite

    digits = load_digits(image_size=32)
    micro = evaluate_tflite((tmp_path / "q.tflite").read_bytes(), digits.x_test, digits.y_test, runtime="tflm")
    assert abs(micro.accuracy - litert) <= 0.01 and micro.accuracy > 0.3, (micro.accuracy, litert)
