"""Training on several workers (keras_mbv2.distribute): TF_CONFIG read and checked, and `keras-mbv2 qat
--multi-worker` run by two real worker processes on this machine, one killed after its first epoch and both started
again, against the same QAT in one process."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from keras_mbv2 import cli
from keras_mbv2.distribute import ClusterRole, cluster_role, free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO = {"cluster": {"worker": ["127.0.0.1:20000", "127.0.0.1:20001"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("config,role", [
    (TWO, ClusterRole(2, "worker", 1)),
    ({**TWO, "task": {"type": "worker", "index": 0}}, ClusterRole(2, "worker", 0)),
    ({"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": 0}},
     ClusterRole(2, "worker", 0, has_chief=True)),
    ({"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "chief", "index": 0}},
     ClusterRole(2, "chief", 0, has_chief=True)),
])
def test_tf_config_names_the_workers_and_the_chief(config, role):
    import dataclasses

    found = cluster_role({"TF_CONFIG": json.dumps(config)})
    assert dataclasses.replace(found, peers=(), address="") == role
    everyone = [(kind, i, a) for kind, addresses in config["cluster"].items() for i, a in enumerate(addresses)]
    assert found.address == next(a for kind, i, a in everyone if (kind, i) == (role.task_type, role.index))
    assert found.peers == tuple((f"{kind} {i}", a) for kind, i, a in everyone if (kind, i) != (role.task_type,
                                                                                                  role.index))
    assert found.chief == (role.task_type == "chief" or (role.index == 0 and not role.has_chief))


@pytest.mark.parametrize("text,fragment", [
    (None, "`TF_CONFIG` is not set"),
    ("{not json", "must be JSON with a \"cluster\""),
    (json.dumps({"cluster": {"worker": ["h:1"]}}), "must be JSON with a \"cluster\""),
    (json.dumps({**TWO, "task": {"type": "worker", "index": 2}}), "task (worker 2) is not in its cluster"),
    (json.dumps({"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}), "must be host:port"),
])
def test_a_bad_tf_config_is_one_error_naming_it(text, fragment):
    with pytest.raises(ValueError) as info:
        cluster_role({} if text is None else {"TF_CONFIG": text})
    assert fragment in str(info.value) and "Received: TF_CONFIG=" in str(info.value)


def _lone_worker(tmp_path, *flags):
    """`keras-mbv2 qat --multi-worker` as worker 0 of a cluster of two whose worker 1 never starts."""
    ports = free_ports(2)
    config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": 0}}
    env = {**os.environ, "TF_CONFIG": json.dumps(config)}
    argv = ["keras-mbv2", "qat", "--model", "m.keras", "--run-dir", "run", "--tflite", "q.tflite", "--multi-worker",
            *flags]
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), \
        ports


@pytest.fixture
def a_model(tmp_path):
    from keras_mbv2.models import MobileNetV1

    MobileNetV1(input_shape=(32, 32, 1), alpha=0.25, classes=10, weights=None).save(tmp_path / "m.keras")
    return tmp_path


def test_a_cluster_that_does_not_assemble_is_one_line_naming_the_missing_worker(a_model):
    """The issue's hang: worker 1 never starts. Worker 0 gives up after --cluster-timeout with exit 1, one line naming
    worker 1 and its address, and leaves no run folder and no lock."""
    worker, ports = _lone_worker(a_model, "--cluster-timeout", "5")
    out, err = worker.communicate(timeout=120)
    errors = [line for line in err.splitlines() if line.strip()]
    assert worker.returncode == 1, err[-2000:]
    assert errors == [f"keras-mbv2 qat: failed: the cluster of 2 workers did not assemble within 5 s (worker 0 of 2 "
                      f"(the chief: it writes)): worker 1 (127.0.0.1:{ports[1]}) did not answer; start every worker "
                      "with the same command and its own TF_CONFIG task, or raise --cluster-timeout (nothing was "
                      "trained or written)"], err[-2000:]
    assert sorted(os.listdir(a_model)) == ["m.keras"]


@pytest.mark.parametrize("signal_name,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_waiting_for_the_cluster_stops_at_once_on_a_signal(signal_name, code, a_model):
    import signal

    worker, _ = _lone_worker(a_model)
    for line in worker.stdout:  # its first line: it is waiting
        assert "waiting for the cluster's 2 workers" in line, line
        break
    time.sleep(1)
    start = time.monotonic()
    worker.send_signal(getattr(signal, signal_name))
    _, err = worker.communicate(timeout=60)
    assert time.monotonic() - start < 5 and worker.returncode == code, (worker.returncode, err[-2000:])
    by = "" if signal_name == "SIGINT" else f" by {signal_name}"
    assert err.strip().splitlines()[-1] == f"keras-mbv2 qat: interrupted{by}: nothing was written"
    assert sorted(os.listdir(a_model)) == ["m.keras"]  # no run folder, no lock


def test_qat_multi_worker_without_tf_config_exits_2_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["qat", "--model", "m.keras", "--run-dir", "run", "--tflite", "q.tflite", "--multi-worker"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "TF_CONFIG is not set" in err[0].replace("`", ""), err
    assert os.listdir(tmp_path) == []


def readme_worker_commands():
    """The docs' multi-worker block (docs/several-machines.md): (TF_CONFIG as data, argv) per line."""
    with open(os.path.join(ROOT, "docs", "several-machines.md")) as f:
        text = f.read()
    block = re.search(r"<!-- the suite runs these commands as printed, on free ports -->\n```bash\n(.*?)```", text,
                      re.S).group(1)
    commands = []
    for line in block.strip().splitlines():
        words = shlex.split(line.rstrip(" &"))
        assert words[0].startswith("TF_CONFIG=") and words[1] == "keras-mbv2", line
        commands.append((json.loads(words[0].split("=", 1)[1]), words[1:]))
    return commands


def readme_worker_script():
    """The docs' Python multi-worker block (docs/several-machines.md), as a worker's script."""
    with open(os.path.join(ROOT, "docs", "several-machines.md")) as f:
        text = f.read()
    return re.search(r"<!-- the suite runs this block on two workers[^\n]*-->\n```python\n(.*?)```", text,
                     re.S).group(1)


def _accuracy(text):
    return float(re.search(r"QAT int8 accuracy ([\d.]+)", text).group(1))


@pytest.mark.slow
def test_two_workers_killed_and_restarted_finish_one_run_like_one_process(tmp_path):
    import keras

    import keras_mbv2 as K
    from keras_mbv2.datasets import load_digits
    from keras_mbv2.training import compile_classifier, reproducible

    exe = shutil.which("keras-mbv2") or pytest.fail("the keras-mbv2 console script is not installed")
    reproducible(0)
    d = load_digits(32)
    model = compile_classifier(K.MobileNetV1((32, 32, 1), alpha=0.25, classes=10, bn_momentum=0.9), 2e-3)
    model.fit(d.x_train, d.y_train, epochs=5, batch_size=32, verbose=0)
    model.save(tmp_path / "m.keras")
    keras.backend.clear_session()
    commands = readme_worker_commands()
    assert [c["task"]["index"] for c, _ in commands] == [0, 1]
    more = ["--epochs", "2", "--learning-rate", "2e-5"]  # a short run that stays close to the float model
    single = subprocess.run([exe, "qat", "--model", "m.keras", "--run-dir", "single", "--tflite", "single.tflite",
                             *more], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]

    ports = free_ports(2)
    workers: list[subprocess.Popen] = []

    def start(index, tag):
        config, argv = commands[index]
        config["cluster"]["worker"] = [f"127.0.0.1:{p}" for p in ports]  # the README's, on free ports
        log = open(tmp_path / f"worker{index}{tag}.log", "w")
        env = {**os.environ, "TF_CONFIG": json.dumps(config)}
        return subprocess.Popen([exe, *argv[1:], *more], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    history = tmp_path / "qat_mw" / "history.csv"
    try:
        workers += [start(0, "a"), start(1, "a")]
        deadline = time.time() + 400
        while not (history.exists() and len(history.read_text().splitlines()) >= 2):  # epoch 1 finished
            assert time.time() < deadline and all(w.poll() is None for w in workers), "no epoch finished"
            time.sleep(0.5)
        workers[1].kill()  # worker 1 is lost mid-run; the chief stops with one line when it notices
        workers[1].wait(timeout=60)
        assert workers[0].wait(timeout=120) == 1
        lost = (tmp_path / "worker0a.log").read_text().strip().splitlines()[-1]
        assert "a worker of the cluster was lost" in lost and "start every worker again" in lost, lost
        workers += [start(0, "b"), start(1, "b")]  # both again, the same commands
        assert [w.wait(timeout=600) for w in workers[2:]] == [0, 0]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    chief = (tmp_path / "worker0b.log").read_text()
    other = (tmp_path / "worker1b.log").read_text()
    assert "the chief writes qat_mw and m_mw_int8.tflite" in other, other[-2000:]
    # one run: epochs 0 and 1 once each, none repeated or skipped; the second start resumed at epoch 2
    assert [line.split(",")[0] for line in history.read_text().splitlines()[1:]] == ["0", "1"]
    assert re.search(r"^epoch 2/2 ", chief, re.M) and not re.search(r"^epoch 1/2 ", chief, re.M), chief[-2000:]
    # one set of files: the chief's, no worker's temporary copy left anywhere
    leftovers = [str(p) for p in tmp_path.rglob("*") if "workertemp" in p.name or p.name.startswith(".kmbv2-")]
    assert not leftovers, leftovers
    assert sorted(os.listdir(tmp_path / "qat_mw")) == ["backup", "checkpoints", "history.csv", "run.json"]
    assert (tmp_path / "m_mw_int8.tflite").is_file()
    # Within 3 points (11 of the 360 test images). Each epoch's global batches are the same in every run (drawn from
    # the seed and the epoch: datasets.epoch_batches), but each worker normalizes its half of every batch, so two
    # workers fine-tune a model of their own, and TensorFlow's CPU training is not bitwise repeatable run to run.
    # Measured: 78.61% in one process, on two workers (killed and restarted) and on two workers from Python alike
    # (an earlier install); with Keras 3.15.1 and TensorFlow 2.21: 74.72% in one process, 76.67% on two workers
    # from Python (a 1-point bound failed). A worker that trained apart (no all-reduce) or on the wrong half is
    # further off: it fine-tunes on half the data with the whole learning rate.
    assert abs(_accuracy(chief) - _accuracy(single.stdout)) <= 0.03, (chief[-500:], single.stdout[-500:])

    # The docs' Python path, as printed, on two workers: quantize_aware and fit_qat under the strategy, then to_tflite
    # on every worker; the chief's int8 model against the same QAT in one process (the same epochs, learning rate)
    (tmp_path / "qat_worker.py").write_text(readme_worker_script())
    ports, processes = free_ports(2), []
    try:
        for index in (0, 1):
            config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker",
                                                                                       "index": index}}
            processes.append(subprocess.Popen(
                [sys.executable, "qat_worker.py"], cwd=tmp_path, env={**os.environ, "TF_CONFIG": json.dumps(config)},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = [p.communicate(timeout=600) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in results]
    assert not results[1][0].strip()  # only the chief prints and writes
    assert (tmp_path / "m_py_int8.tflite").is_file()
    assert sorted(os.listdir(tmp_path / "qat_py")) == ["backup", "checkpoints", "history.csv", "run.json"]
    print(f"QAT int8 accuracy: one process {_accuracy(single.stdout):.4f}, two workers (command line, killed and "
          f"restarted) {_accuracy(chief):.4f}, two workers (Python) {_accuracy(results[0][0]):.4f}")  # pytest -s
    assert abs(_accuracy(results[0][0]) - _accuracy(single.stdout)) <= 0.03, (results[0][0], single.stdout[-500:])
