"""Reliability: one table of bad inputs across the package, determinism, and TFLM crash isolation.

Also covered elsewhere: resume after a killed QAT run (test_quantization.py), `.keras` round trips of every
block and network (test_layers.py, test_models.py), QAT save/load under quantize_scope (test_quantization.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from harness import randomize_batch_norms

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.files import LOCK_FILE, FolderLockedError, run_lock
from keras_mbv2.micro import emit, fit_ram
from keras_mbv2.models.networks import build_network
from keras_mbv2.quantization import evaluate_tflite, fit_qat, quantize_aware, read_tflite, require_int8, to_tflite


@pytest.fixture(scope="module")
def tiny():
    """A small model, its float export, and its int8 export (calibrated on the digits)."""
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(K.MobileNetV1(input_shape=(32, 32, 1), alpha=0.25, classes=10))
    digits = load_digits(image_size=32)
    return model, to_tflite(model, quantize="float"), to_tflite(model, digits.x_train[:8], num_calibration=8)


def _with_layer_norm():
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.LayerNormalization(name="ln")(K.layers.ConvBNAct(8, name="stem")(inputs))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))


# (where, call(tmp, tiny), fragment naming the argument and the value)
BAD = [
    ("layer", lambda t, m: K.layers.InvertedResidual(16, expansion=0), "expansion=0"),
    ("layer", lambda t, m: K.layers.InvertedResidual(16, strides=4), "strides=4"),
    ("layer", lambda t, m: K.layers.ConvBNAct(-3), "filters=-3"),
    ("layer", lambda t, m: K.layers.DepthwiseSeparable(8, linear_bottleneck=None), "linear_bottleneck=None"),
    ("layer", lambda t, m: K.layers.ShuffleUnit(24, groups=7), "groups=7"),
    ("layer", lambda t, m: K.layers.ChannelShuffle(3).build((None, 4, 4, 10)), "groups=3"),
    ("layer", lambda t, m: K.layers.Bottleneck(8, bottleneck_ratio=2.0), "bottleneck_ratio=2.0"),
    ("builder", lambda t, m: K.MobileNetV2(alpha=0.6, weights="imagenet"), "alpha=0.6"),
    ("builder", lambda t, m: K.MobileNetV2(input_shape=(24, 24, 3)), "input_shape=(24, 24, 3)"),
    ("builder", lambda t, m: K.MobileNetV1(weights="imagenet", classes=5), "classes=5"),
    ("builder", lambda t, m: K.ShuffleNetV1(groups=6), "groups=6"),
    ("builder", lambda t, m: K.NASNet(penultimate_filters=1000), "penultimate_filters=1000"),
    ("builder", lambda t, m: K.MobileNetV2(weights=os.path.join(t, "none.h5")), "none.h5"),
    ("builder", lambda t, m: K.MobileNetV2(pooling="sum", include_top=False), "pooling='sum'"),
    ("builder", lambda t, m: K.MobileNetV2(memory_splits=[2, 2]), "memory_splits=[2, 2]"),
    ("builder", lambda t, m: K.MobileNetV2(memory_splits={"block_99": 2}), "block_99"),
    ("layer", lambda t, m: K.layers.InvertedResidual(16, expansion=1, memory_splits=2), "memory_splits=2"),
    ("split", lambda t, m: K.split_model(m[0], 2), "no InvertedResidual blocks"),
    ("split", lambda t, m: K.models.plan_memory_splits(K.MobileNetV2((96, 96, 3), 0.35), 60_000), "'expanded_conv' needs 73,728 B"),
    ("profile", lambda t, m: K.profile(m[0], bytes_per_activation=0), "bytes_per_activation=0"),
    ("qat", lambda t, m: quantize_aware("model.keras"), "model=str"),
    ("export", lambda t, m: to_tflite(m[0], np.zeros((0, 32, 32, 1))), "representative_data"),
    ("export", lambda t, m: to_tflite(m[0], np.zeros((4, 16, 16, 1))), "shape (4, 16, 16, 1)"),
    ("export", lambda t, m: to_tflite(m[0], quantize="fp16"), "quantize='fp16'"),
    ("evaluate", lambda t, m: evaluate_tflite(m[1], np.zeros((0, 32, 32, 1)), np.zeros(0)), "0 images"),
    ("evaluate", lambda t, m: evaluate_tflite(m[1], np.zeros((2, 32, 32, 1)), np.zeros(2), runtime="npu"), "runtime='npu'"),
    ("evaluate", lambda t, m: require_int8(m[1]), "float32 input"),
    ("tflite", lambda t, m: read_tflite(b"\x00" * 64), "not a TFLite flatbuffer"),
    ("tflite", lambda t, m: read_tflite(m[1][:100]), "truncated or corrupt"),
    ("tflite", lambda t, m: read_tflite(12345), "tflite=int"),
    ("micro", lambda t, m: emit(m[1], os.path.join(t, "out")), "full-int8"),
    ("micro", lambda t, m: emit(b"junk", os.path.join(t, "out")), "not a TFLite flatbuffer"),
    ("micro", lambda t, m: emit(m[1], os.path.join(t, "out"), name="3d"), "name='3d'"),
    ("micro", lambda t, m: emit(m[1], os.path.join(t, "out"), board="pico"), "board='pico'"),
    ("data", lambda t, m: load_digits(image_size=0), "image_size=0"),
    ("data", lambda t, m: load_digits(test_fraction=1.5), "test_fraction=1.5"),
    ("data", lambda t, m: K.datasets.load_image_folder(os.path.join(t, "nope")), "nope"),
    # numbers everywhere: NaN, inf, zero, bool
    ("builder", lambda t, m: K.MobileNetV2(alpha=float("nan")), "alpha=nan"),
    ("builder", lambda t, m: K.MobileNetV1(alpha=float("inf")), "alpha=inf"),
    ("builder", lambda t, m: K.MobileNetV2(classes=True), "classes=True"),
    ("layer", lambda t, m: K.layers.InvertedResidual(16, linear_bottleneck=1), "linear_bottleneck=1"),
    ("layer", lambda t, m: K.layers.ConvBNAct(8, strides=True), "strides=True"),
    ("layer", lambda t, m: K.layers.ConvBNAct(8, bn_momentum=float("nan")), "bn_momentum=nan"),
    ("networks", lambda t, m: build_network("nasnet", (96, 96, 3), width=0.5), "width=0.5"),
    ("networks", lambda t, m: build_network("resnet", (96, 96, 3)), "network='resnet'"),
    ("qat", lambda t, m: fit_qat(None, np.zeros((2, 32, 32, 1)), np.zeros(2), t, epochs=0), "epochs=0"),
    ("qat", lambda t, m: fit_qat(None, np.zeros((2, 32, 32, 1)), np.zeros(2), t, batch_size=0), "batch_size=0"),
    ("qat", lambda t, m: fit_qat(None, np.zeros((2, 32, 32, 1)), np.zeros(2), t, learning_rate=float("nan")),
     "learning_rate=nan"),
    ("qat", lambda t, m: quantize_aware(_with_layer_norm()), "layer 'ln' (LayerNormalization)"),
    ("export", lambda t, m: to_tflite("model.keras"), "model=str"),
    ("export", lambda t, m: to_tflite(m[0], np.zeros((4, 32, 32, 1)), num_calibration=0), "num_calibration=0"),
    ("evaluate", lambda t, m: evaluate_tflite(m[2], np.full((4, 32, 32, 1), 200.0), np.zeros(4)), "x / 255"),
    ("batch norm", lambda t, m: K.models.recalibrate_batch_norms(m[0], np.zeros((0, 32, 32, 1))), "non-empty"),
    ("micro", lambda t, m: emit(m[2], os.path.join(t, "out"), labels=["a"]), "one entry per class (10)"),
    ("micro", lambda t, m: fit_ram(m[0], 0, np.zeros((2, 32, 32, 1))), "ram_bytes=0"),
    ("micro", lambda t, m: fit_ram(m[0], 100_000, np.zeros((2, 64, 64, 1))), "takes images of shape (32, 32, 1)"),
    ("micro", lambda t, m: fit_ram(keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(4, 3)]), 100_000,
                                   np.zeros((2, 32, 32, 1))), "keras.Model(model.inputs, model.outputs)"),
    ("qat", lambda t, m: fit_qat(quantize_aware(m[0]), np.zeros((4, 32, 32, 1)), np.arange(4) * 5, t),
     "outputs 10 classes, and `x` has 16"),
    ("export", lambda t, m: to_tflite(m[0], np.full((4, 32, 32, 1), np.nan)), "NaN or infinite"),
    ("data", lambda t, m: load_digits(channels=2), "channels=2"),
]


@pytest.mark.parametrize("where,call,fragment", BAD, ids=[f"{w}-{f}" for w, _, f in BAD])
def test_bad_input_raises_one_clear_error_and_writes_nothing(where, call, fragment, tiny, tmp_path):
    with pytest.raises(ValueError) as exc:
        call(str(tmp_path), tiny)
    assert fragment in str(exc.value), str(exc.value)
    assert os.listdir(tmp_path) == []


DETERMINISM = textwrap.dedent("""
    import hashlib, os, sys
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    import keras, numpy as np
    import keras_mbv2 as K
    from keras_mbv2.datasets import load_digits
    from keras_mbv2.micro import emit
    from keras_mbv2.quantization import to_tflite
    keras.utils.set_random_seed(7)
    d = load_digits(image_size=32)
    m = K.MobileNetV1(input_shape=(32, 32, 1), alpha=0.25, classes=10, bn_momentum=0.9)
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(d.x_train[:128], d.y_train[:128], epochs=1, batch_size=32, verbose=0, shuffle=False)
    b = to_tflite(m, d.x_train[:8], num_calibration=8)
    emit(b, sys.argv[1], name="m", arena_bytes=100000)
    digest = hashlib.sha256(b)
    for f in sorted(os.listdir(sys.argv[1])):  # every file, the report too: it names files, not folders
        digest.update(f.encode() + open(os.path.join(sys.argv[1], f), "rb").read())
    print("DIGEST", digest.hexdigest())
""")


def test_same_seed_and_data_give_identical_tflite_and_c_files(tmp_path):
    script = tmp_path / "det.py"
    script.write_text(DETERMINISM)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"out{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    digests = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        digests.append(next(line for line in out.splitlines() if line.startswith("DIGEST")))
    assert digests[0] == digests[1]


def test_model_that_makes_tflm_abort_is_an_error_and_we_live():
    """An untrained network calibrated on noise gives a near-zero softmax input scale, on which the TFLM
    runtime aborts (SIGABRT, as DESIGN.md records); the child process takes the crash."""
    keras.utils.set_random_seed(0)
    model = K.MobileNetV2(input_shape=(32, 32, 1), alpha=0.35, classes=10)
    int8 = to_tflite(model, np.random.default_rng(0).random((8, 32, 32, 1)).astype("float32"), num_calibration=8)
    x = np.zeros((2, 32, 32, 1), "float32")
    for runtime in ("litert", "tflm"):  # both runtimes' reference kernels abort on it
        with pytest.raises(RuntimeError, match="SIGABRT.*calling process is unaffected"):
            evaluate_tflite(int8, x, np.zeros(2), runtime=runtime)
    assert K.profile(model).params == model.count_params()  # and this process carries on


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from keras_mbv2.files import run_lock
    with run_lock(sys.argv[1], "--run-dir"):
        print("HOLDING", flush=True)
        time.sleep(300)
""")


def test_one_run_per_folder_a_second_is_refused_at_once_and_a_killed_runs_lock_taken_over(tmp_path):
    folder = tmp_path / "qat_run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HOLDING"
        with pytest.raises(FolderLockedError) as exc:  # the library: at once, naming the folder and the holder
            with run_lock(str(folder), "--run-dir"):
                pass
        assert f"process {holder.pid} on {socket.gethostname()}, started 20" in str(exc.value)
        assert f"Received: --run-dir {str(folder)!r}" in str(exc.value)
        # the command line: exit 2, one line, before anything else (m.keras does not even exist)
        cli = subprocess.run([shutil.which("keras-mbv2"), "qat", "--model", "m.keras", "--run-dir", str(folder),
                              "--tflite", "m.tflite"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 2 and f"process {holder.pid}" in cli.stderr and len(cli.stderr.splitlines()) == 1
    finally:
        holder.kill()  # kill -9: the lock file stays, the lock does not
        holder.wait()
    assert os.listdir(folder) == [LOCK_FILE]
    said = []
    with run_lock(str(folder), "--run-dir", log=said.append):
        with run_lock(str(folder), "--run-dir"):  # nested in one process: shared
            pass
    assert len(said) == 1 and f"took over the lock of a run that no longer runs (process {holder.pid}" in said[0]
    assert os.listdir(folder) == []


KILLED_WRITE = textwrap.dedent("""
    import os, signal, sys
    from keras_mbv2.files import atomic_write, output_folder
    def die(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half a model")
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 while saving
    if sys.argv[2] == "file":
        atomic_write(os.path.join(sys.argv[1], "m.keras"), die)
    else:
        with output_folder(os.path.join(sys.argv[1], "demo")) as work:
            die(os.path.join(work, "report.md"))
""")


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_write_killed_midway_leaves_nothing_once_the_next_run_writes_there(kind, tmp_path):
    (tmp_path / "notes.txt").write_text("the user's\n")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(tmp_path), kind], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".kmbv2-tmp-")]
    assert len(leftovers) == 1 and _pid_of(leftovers[0]).isdigit()  # named after the process that died
    exe = shutil.which("keras-mbv2")
    build = subprocess.run([exe, "build", "--network", "mobilenet_v1", "--width", "0.25", "--input-shape", "32x32x1",
                            "--classes", "10", "--out", "m.keras"], cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "notes.txt"]  # the dead writer's file is gone, nothing else


def _pid_of(name: str) -> str:
    return name.split("-")[2]


def test_a_runtime_abort_names_the_operator_and_a_softmax_over_too_many_classes():
    """No degenerate scale to blame: a 1000-class int8 softmax with near-equal scores aborts TFLite's reference
    kernel and TFLM (the sum of its exponentials passes 2^9); the error names the operator, found by running ever
    shorter prefixes of the model, and the cause."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(16, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1000, activation="softmax")(x))
    tflite = to_tflite(model, np.random.default_rng(0).uniform(0, 1, (32, 8, 8, 1)).astype("float32"))
    for runtime in ("litert", "tflm"):
        with pytest.raises(RuntimeError) as exc:
            evaluate_tflite(tflite, np.zeros((2, 8, 8, 1)), np.zeros(2), runtime=runtime)
        assert "aborts in operator #3 (SOFTMAX, input shape (1, 1000)); the 3 operators before it run" in str(
            exc.value) and "about 512 classes" in str(exc.value), str(exc.value)


def test_a_process_ended_from_a_thread_removes_its_lock_and_temporary_outputs(tmp_path):
    """`interrupts.emergency_exit` (what the watchdog does when the main thread is stuck in native code): the run
    folder's lock, the half-written output file and the half-built output folder are removed, the message is the
    last line, and the exit code is the one given; what was finished before stays."""
    code = textwrap.dedent(f"""
        import os, threading, time
        from keras_mbv2.files import atomic_write, output_folder, run_lock
        from keras_mbv2.interrupts import emergency_exit
        os.chdir({str(tmp_path)!r})
        with run_lock("run", "--run-dir"):
            open("run/epoch_001.txt", "w").write("finished")
            with output_folder("out"):
                def write(tmp):
                    open(tmp, "w").write("half")
                    threading.Thread(target=emergency_exit, args=(143, "stopped: what finished is kept")).start()
                    time.sleep(30)  # the main thread never gets back
                atomic_write("model.keras", write)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 143, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "stopped: what finished is kept"
    left = sorted(os.path.relpath(os.path.join(d, f), tmp_path) for d, ds, fs in os.walk(tmp_path) for f in fs + ds)
    assert left == ["run", os.path.join("run", "epoch_001.txt")], left


@pytest.mark.parametrize("kind", ["file", "files", "folder"])
def test_a_signal_whose_interrupt_was_swallowed_still_stops_the_next_write(kind, tmp_path):
    """A library that swallows the KeyboardInterrupt of the command line's SIGINT/SIGTERM handler (CI: SIGTERM while
    `keras-mbv2 figures` drew, which then finished with exit 0): the next output renamed into place raises it again
    (`interrupts.raise_if_signalled`) and nothing is written; used from Python, outside a command, writes go on."""
    from keras_mbv2 import interrupts
    from keras_mbv2.files import output_folder, write_file, write_files

    def write(name):
        if kind == "file":
            write_file(str(tmp_path / name), "x")
        elif kind == "files":
            write_files(str(tmp_path / name), {"a.txt": "x"})
        else:
            with output_folder(str(tmp_path / name)) as work:
                with open(os.path.join(work, "a.txt"), "w") as f:
                    f.write("x")

    with interrupts.stop_within_seconds(lambda signum: "stopped"):
        interrupts.SIGNALLED[0] = signal.SIGTERM  # the handler ran; its KeyboardInterrupt went nowhere
        with pytest.raises(KeyboardInterrupt):
            write("out")
    assert os.listdir(tmp_path) == []  # no output, no temporary file
    write("later")  # no command running: the flag says nothing
    assert os.listdir(tmp_path) == ["later"]
    interrupts.SIGNALLED[0] = 0
