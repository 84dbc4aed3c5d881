"""keras_mbv2.micro and the firmware: C arrays, settings, resolver, arena, boards, projects; host and Cortex-M
compiles; QEMU self-test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zlib

import keras
import numpy as np
import pytest
from harness import built_once, randomize_batch_norms

import keras_mbv2 as K
from keras_mbv2.datasets import load_digits
from keras_mbv2.files import umask
from keras_mbv2.micro import BOARDS, TFLM_OPS, emit, parse_c_array
from keras_mbv2.quantization import run_tflm, to_tflite
from keras_mbv2.tflite import operator_names, strip_strings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO = os.path.join(ROOT, "micro")  # the firmware sources (the wheel carries them as keras_mbv2/firmware)
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="gcc-arm-none-eabi is not installed")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm is not installed")


def _trained_int8():
    data = load_digits(image_size=32)
    keras.utils.set_random_seed(0)
    model = K.MobileNetV2(input_shape=(32, 32, 1), alpha=0.35, classes=10, bn_momentum=0.9)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data.x_train[:512], data.y_train[:512], epochs=1, batch_size=64, verbose=0)
    return to_tflite(model, data.x_train[:16], num_calibration=16)


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """A briefly trained MobileNetV2 0.35 at 32x32 on the digits, full-int8 (built once per run)."""
    return built_once(tmp_path_factory, "micro-int8", _trained_int8)


@needs_arm
@needs_qemu
def test_a_project_folder_builds_and_runs_on_its_own(int8_model, tmp_path):
    """`write_project`: the firmware sources, the model's files, project.mk and a README, in one folder that builds
    the model objects for the board's core and runs the self-test on QEMU with nothing else given."""
    from keras_mbv2.micro import write_project

    project = tmp_path / "p"
    images = load_digits(image_size=32).x_test[:2]
    report = write_project(int8_model, str(project), name="digits", board="nucleo-f746zg", test_images=images)
    assert {"Makefile", "FIRMWARE.md", "README.md", "project.mk", "app", "boards", "selftest", "arduino",
                                                                             "model"} == set(
        os.listdir(project))
    assert "digits_model_data.cc" in os.listdir(project / "model") and report.files[0].startswith(str(project))
    assert (project / "project.mk").read_text().splitlines()[1:] == ["MODEL_NAME ?= digits", "TARGET_ARCH ?= cortex-m7"]
    readme = (project / "README.md").read_text()
    for fact in ("nucleo-f746zg", "cortex-m7", f"{report.arena_bytes:,} B kTensorArenaSize", "make run-app",
                 "QEMU's mps2-an500",
                 "TFLM_DIR="):
        assert fact in readme, fact
    mode = os.stat(project / "Makefile").st_mode & 0o777
    assert mode == 0o666 & ~umask()  # the user's umask, like every output
    dry = subprocess.run(["make", "-n", "-C", str(project), "model-objects"], capture_output=True, text=True,
                         check=True)
    assert "-mcpu=cortex-m7" in dry.stdout and "-Imodel" in dry.stdout  # project.mk's core, the model's folder
    subprocess.run(["make", "-s", "-C", str(project), "model-objects"], check=True)  # no MODEL_DIR, no TARGET_ARCH
    assert (project / "build" / "cortex-m7" / "digits_model_data.o").is_file()
    run = subprocess.run(["make", "-s", "-C", str(project), "run-selftest"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and f"crc32={zlib.crc32(strip_strings(int8_model)):08x}" in run.stdout, run.stdout
    with pytest.raises(ValueError, match="exists and is not empty"):  # replaced only with force
        write_project(int8_model, str(project), name="digits")


@needs_arm
def test_a_model_too_large_for_the_stm32f405s_flash_fails_to_link_there(tmp_path):
    """netduinoplus2's linker script is the STM32F405's real memory: 1,200,000 B of model array do not fit its 1 MiB
    flash (they link on mps2-an386's 4 MiB)."""
    from keras_mbv2.micro.emitter import _c_array

    big = tmp_path / "model"
    big.mkdir()
    (big / "model_data.h").write_text("extern const unsigned char g_model_data[];\n"
                                      "extern const unsigned int g_model_data_size;\n")
    (big / "model_data.cc").write_text(f'#include "model_data.h"\nalignas(16) const unsigned char g_model_data[] = {{\n'
                                       f"{_c_array(b'    TFL3' + bytes(1_200_000 - 8))}\n}};\n"
                                       "const unsigned int g_model_data_size = 1200000;\n")
    for board, links in (("netduinoplus2", False), ("mps2-an386", True)):
        build = subprocess.run(["make", "-s", "-C", MICRO, "selftest", f"MODEL_DIR={big}", f"BOARD={board}",
                                f"SELFTEST_BUILD={tmp_path / board}"], capture_output=True, text=True)
        assert (build.returncode == 0) is links, build.stderr[-2000:]
        if not links:
            assert "will not fit in region `FLASH'" in build.stderr, build.stderr[-2000:]


@pytest.fixture(scope="module")
def emitted(int8_model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("micro") / "out")
    report = emit(int8_model, out, name="digits", labels=[str(i) for i in range(10)])
    return out, report


def test_array_is_byte_identical_and_emission_deterministic(int8_model, emitted, tmp_path):
    out, report = emitted
    with open(os.path.join(out, "digits_model_data.cc")) as f:
        source = f.read()
    array = parse_c_array(source, "digits")
    assert array == strip_strings(int8_model) and len(array) < len(int8_model)  # names are not flashed
    x = np.random.default_rng(0).integers(-128, 128, (1, 32, 32, 1)).astype("int8")
    np.testing.assert_array_equal(run_tflm(array, x)[0], run_tflm(int8_model, x)[0])
    assert "alignas(16) const unsigned char g_digits_model_data[]" in source
    assert f"g_digits_model_data_size = {len(array)};" in source
    again = str(tmp_path / "again")
    emit(int8_model, again, name="digits", labels=[str(i) for i in range(10)])
    for name in sorted(os.listdir(out)):
        if name.endswith((".h", ".cc")):
            with open(os.path.join(out, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
                assert a.read() == b.read(), name
    assert sorted(os.listdir(out)) == sorted(os.path.basename(f) for f in report.files)


def test_resolver_registers_exactly_the_models_operators(int8_model, emitted):
    out, report = emitted
    ops = sorted(set(operator_names(int8_model)))
    assert report.operators == ops
    with open(os.path.join(out, "digits_op_resolver.h")) as f:
        text = f.read()
    assert f"MicroMutableOpResolver<{len(ops)}>" in text
    registered = re.findall(r"resolver\.(\w+)\(", text)
    assert registered == [TFLM_OPS[op][0] for op in ops]
    assert "AddConv2D(tflite::Register_CONV_2D_INT8())" in text


def test_arena_is_measured_and_settings_are_right(int8_model, emitted):
    out, report = emitted
    _, allocations = run_tflm(int8_model, np.zeros((1, 32, 32, 1), "int8"))
    measured = int(re.search(r"Arena allocation total (\d+) bytes", allocations).group(1))
    assert report.measured_arena_bytes == measured
    assert report.arena_bytes % 16 == 0 and measured < report.arena_bytes <= measured + 1024 + 16
    with open(os.path.join(out, "digits_model_settings.h")) as f:
        settings = f.read()
    assert f"kTensorArenaSize = {report.arena_bytes};" in settings
    assert "kNumRows = 32;" in settings and "kCategoryCount = 10;" in settings and '"9"' in settings
    assert report.macs > 0 and report.model_bytes == len(strip_strings(int8_model))
    # the report is a file beside the sources and says the same
    with open(os.path.join(out, "digits_report.txt")) as f:
        assert f"{report.arena_bytes:,} B RAM" in f.read()


HOST_MAIN = r"""
#include <cstdio>
#include "digits_model_data.h"
#include "digits_model_settings.h"
int main() {
  std::printf("%u %d %d %d\n", g_digits_model_data_size, kTensorArenaSize, kInputSize, kCategoryCount);
  return g_digits_model_data[4] == 'T' && g_digits_model_data[7] == '3' ? 0 : 1;
}
"""


def test_generated_files_compile_and_run_on_the_host(emitted, tmp_path):
    out, report = emitted
    main = tmp_path / "main.cc"
    main.write_text(HOST_MAIN)
    exe = str(tmp_path / "host")
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", out, str(main),
                    os.path.join(out, "digits_model_data.cc"), "-o", exe], check=True)
    result = subprocess.run([exe], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.split() == [str(report.model_bytes), str(report.arena_bytes), "1024", "10"]


@needs_arm
@pytest.mark.parametrize("arch", ["cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"])
def test_model_data_cross_compiles_into_aligned_flash(emitted, tmp_path, arch):
    out, report = emitted
    build = str(tmp_path / "build")
    subprocess.run(["make", "-s", "-C", MICRO, "model-objects", f"MODEL_DIR={out}", "MODEL_NAME=digits",
                    f"TARGET_ARCH={arch}", f"BUILD={build}"], check=True)
    obj = os.path.join(build, "digits_model_data.o")
    symbols = subprocess.run(["arm-none-eabi-nm", "-S", obj], capture_output=True, text=True, check=True).stdout
    size, kind = re.search(r"^[0-9a-f]+ ([0-9a-f]+) (\w) g_digits_model_data$", symbols, re.M).groups()
    assert int(size, 16) == report.model_bytes
    assert kind == "R"  # read-only data: stays in flash
    sections = subprocess.run(["arm-none-eabi-objdump", "-h", obj], capture_output=True, text=True, check=True).stdout
    row = next(line for line in sections.splitlines() if f"{int(size, 16):08x}" in line and ".rodata" in line)
    assert row.split()[-1] == "2**4"  # 16-byte alignment


# QEMU's boards for every core the firmware builds for, a real microcontroller's memory map (STM32F405), and
# mps2-an386 with a 64 KiB-SRAM part's RAM (its own start-up: the stack kept in those 64 KiB)
QEMU_BOARDS = ["mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547", "netduinoplus2", "mps2-an386-ram64k"]


@needs_arm
@needs_qemu
@pytest.mark.parametrize("board", QEMU_BOARDS)
def test_the_self_test_firmware_runs_on_every_qemu_board_and_prints_the_models_crc32(int8_model, emitted, tmp_path,
                                                                                    board):
    out, _ = emitted
    build = subprocess.run(["make", "-s", "-C", MICRO, "selftest", f"MODEL_DIR={out}", "MODEL_NAME=digits",
                            f"BOARD={board}", f"SELFTEST_BUILD={tmp_path}"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run(
        ["qemu-system-arm", "-M", board.removesuffix("-ram64k"), "-nographic", "-semihosting-config",
         "enable=on,target=native",
         "-kernel", str(tmp_path / "selftest.elf")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    crc = re.search(r"crc32=([0-9a-f]{8}) identifier=TFL3 aligned16=yes", run.stdout).group(1)
    assert int(crc, 16) == zlib.crc32(strip_strings(int8_model))


@pytest.fixture(scope="module")
def float_model():
    return to_tflite(K.MobileNetV2(input_shape=(32, 32, 1), alpha=0.35, classes=10), quantize="float")


def test_bad_inputs_write_nothing(int8_model, float_model, tmp_path):
    out = str(tmp_path / "out")
    cases = [
        (float_model, {}, "full-int8"),
        (b"not a model", {}, "not a TFLite flatbuffer"),
        (int8_model[: len(int8_model) // 2], {}, "truncated or corrupt"),
        (str(tmp_path / "missing.tflite"), {}, "does not exist"),
        (int8_model, {"board": "esp32"}, "board='esp32'"),
        (int8_model, {"name": "my-model"}, "name='my-model'"),
        (int8_model, {"labels": ["a", "b"]}, "2 labels"),
        (int8_model, {"board": "nucleo-f746zg", "arena_bytes": 400_000}, r"exceeds 327,680 B by"),
    ]
    for model, kwargs, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            emit(model, out, **kwargs)
        assert not os.path.exists(out), fragment


def test_operator_tflm_lacks_is_named(tmp_path, monkeypatch):
    from keras_mbv2.micro import emitter

    # a float model stands in for the bytes; the operator list is what TFLM would be asked for
    monkeypatch.setattr(emitter, "require_int8", lambda data: {})
    monkeypatch.setattr(emitter, "operator_names", lambda data: ["CONV_2D", "RFFT2D"])
    with pytest.raises(ValueError, match=r"does not provide: \['RFFT2D'\]"):
        emitter.emit(to_tflite(K.MobileNetV1(input_shape=(32, 32, 1), alpha=0.25, classes=3), quantize="float"),
                         str(tmp_path / "o"))
    assert not os.path.exists(tmp_path / "o")


def test_boards_table():
    assert {"nucleo-l4r5zi", "nucleo-f746zg", "nucleo-h743zi", "arduino-nano-33-ble", "corstone-300"} <= set(BOARDS)
    assert BOARDS["corstone-300"].core == "cortex-m55"


def _mobilenet_v1_96_int8():
    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(K.MobileNetV1(input_shape=(96, 96, 3), alpha=0.25, classes=10))
    calibration = np.random.default_rng(0).uniform(0, 1, (8, 96, 96, 3)).astype("float32")
    return to_tflite(model, calibration, num_calibration=8)


@pytest.fixture(scope="module")
def mobilenet_v1_96(tmp_path_factory):
    """MobileNetV1 0.25 at 96x96x3, where TFLM's greedy planner needs 73,728 B of activations although the
    operator order needs 55,296 B at once (pointwise 1: 48x48x8 in + 48x48x16 out). Built once per run."""
    return built_once(tmp_path_factory, "micro-mobilenet-v1-96", _mobilenet_v1_96_int8)


def test_offline_memory_plan_beats_tflm_greedy_planner(mobilenet_v1_96, tmp_path):
    from keras_mbv2.micro import arena_use, offline_plan
    from keras_mbv2.tflite.schedule import activation_peak

    online = arena_use(mobilenet_v1_96)
    assert online.head == 73_728 and activation_peak(mobilenet_v1_96)[0] == 55_296
    planned, used = offline_plan(mobilenet_v1_96)
    assert used == 55_296 and arena_use(planned).head == 55_296  # TFLM follows the plan: the order's bound
    assert offline_plan(planned)[0] == planned  # planning again overwrites, does not stack
    x = np.random.default_rng(1).integers(-128, 128, (2, 96, 96, 3)).astype("int8")
    for sample in x:
        np.testing.assert_array_equal(run_tflm(planned, sample[None])[0], run_tflm(mobilenet_v1_96, sample[None])[0])
    report = emit(mobilenet_v1_96, str(tmp_path / "planned"), name="v1")
    assert report.online_arena_bytes == online.total and report.measured_arena_bytes == arena_use(planned).total
    assert "offline memory plan" in str(report)
    with open(tmp_path / "planned" / "v1_model_data.cc") as f:
        assert parse_c_array(f.read(), "v1") == strip_strings(planned)
    kept = emit(mobilenet_v1_96, str(tmp_path / "online"), name="v1", memory_plan=False)
    assert kept.online_arena_bytes is None and kept.measured_arena_bytes == online.total


# --- the firmware application: what CI can check without a TFLM checkout ---------------------------------------
APP = os.path.join(MICRO, "app")


@pytest.fixture(scope="module")
def with_test_images(int8_model, tmp_path_factory):
    """The model emitted with 3 digits test images, as `keras-mbv2 micro --test-images 3` does."""
    data = load_digits(image_size=32)
    out = str(tmp_path_factory.mktemp("app") / "out")
    emit(int8_model, out, name="digits", test_images=data.x_test[:3], test_labels=data.y_test[:3])
    return out, data


def test_test_images_are_the_models_quantized_inputs(int8_model, with_test_images):
    from keras_mbv2.micro import read_test_images
    from keras_mbv2.tflite import io_details
    from keras_mbv2.tflite.runtime import quantize_input

    out, data = with_test_images
    assert {"digits_model_test_images.h", "digits_model_test_images.cc"} <= set(os.listdir(out))
    expected = quantize_input(data.x_test[:3], io_details(int8_model)).reshape(3, -1)
    np.testing.assert_array_equal(read_test_images(out, "digits"), expected)
    with open(os.path.join(out, "digits_model_test_images.h")) as f:
        assert "constexpr int kNumTestImages = 3;" in f.read()
    with open(os.path.join(out, "digits_model_test_images.cc")) as f:
        assert f"g_test_labels[kNumTestImages] = {{{', '.join(str(v) for v in data.y_test[:3])}}};" in f.read()


def _app_log(scores: np.ndarray, labels: list[int] | None = None, patches: bool = False) -> str:
    """The app's output for these scores, in the format of the firmware's app/ (result_responder.cc,
    main_functions.cc, model_runner.cc, operator_profiler.cc); `labels`: the images' true classes (-1: unknown)."""
    lines = [f"keras_mbv2 app: arena used 81780 of 88336 bytes (kTensorArenaSize), {len(scores)} images, clock: "
             "SysTick ticks"]
    for i, row in enumerate(scores):
        label = -1 if labels is None else labels[i]
        lines.append(f"image {i}: class {int(np.argmax(row))} ({int(np.argmax(row))}) true {label} "
                     f"({label if label >= 0 else 'unknown'}) scores {','.join(str(int(v)) for v in row)} "
                     f"ticks {1000 + i} SysTick ticks")
        if i == 0:
            if patches:
                lines += ["profile: patch operator 0 CONV_2D 6400", "profile: patch operator 1 MUL 1600",
                          "profile: patch total 8000 SysTick ticks over 2 operators x 64 invocations"]
            lines += ["profile: operator 0 CONV_2D 600", "profile: operator 1 DEPTHWISE_CONV_2D 300",
                      "profile: operator 2 CONV_2D 100", "profile: total 1000 SysTick ticks over 3 operators",
                      "profile: outside the operators 250 SysTick ticks"]
    return "\n".join(lines + ["keras_mbv2 app: done"]) + "\n"


def test_the_app_prints_what_the_parser_reads():
    """The parser's patterns are the app's printf formats: a change to one must change the other."""
    with open(os.path.join(APP, "result_responder.cc")) as f:
        responder = f.read()
    with open(os.path.join(APP, "main_functions.cc")) as f:
        main = f.read()
    with open(os.path.join(APP, "operator_profiler.cc")) as f:
        profiler = f.read()
    with open(os.path.join(APP, "model_runner.cc")) as f:
        runner = f.read()
    assert '"image %d: class %d (%s) true %d (%s) scores "' in responder and '" ticks %llu %s\\n"' in responder
    assert '"keras_mbv2 app: arena used %u of %d bytes (kTensorArenaSize), %d images, clock: %s\\n"' in main
    assert '"keras_mbv2 app: done\\n"' in main
    assert '"profile: %soperator %d %s %llu\\n"' in profiler and 'Print("patch ")' in runner and 'Print("")' in runner
    assert '"profile: %stotal %llu %s over %d operators"' in profiler and '" x %d invocations"' in profiler
    assert '"profile: outside the operators %llu %s\\n"' in runner


def test_check_app_output_compares_every_score_with_the_host_runtime(int8_model, with_test_images):
    from keras_mbv2.micro import check_app_output, parse_app_output, profile_by_operator, read_test_images

    out, _ = with_test_images
    images = read_test_images(out, "digits").reshape(3, 32, 32, 1)
    host, _ = run_tflm(int8_model, images)
    log = _app_log(host.reshape(3, -1))
    parsed = parse_app_output(log)
    assert (parsed.arena_used, parsed.arena_size, parsed.done, len(parsed.images)) == (81780, 88336, True, 3)
    assert profile_by_operator(parsed) == [("CONV_2D", 2, 700, 0.7), ("DEPTHWISE_CONV_2D", 1, 300, 0.3)]
    assert [image.label for image in parsed.images] == [None] * 3 and parsed.outside == 250
    assert check_app_output(log, out, "digits").identical
    changed = host.reshape(3, -1).copy()
    changed[1, 4] = changed[1, 4] + 1 if changed[1, 4] < 127 else 126
    agreement = check_app_output(_app_log(changed), out, "digits")
    assert (agreement.differing, agreement.max_step) == (1, 1)
    with pytest.raises(ValueError, match="did not start"):
        parse_app_output("AllocateTensors failed: kTensorArenaSize 1000 is too small\n")
    with pytest.raises(ValueError, match="classified 1 of the 3 test images"):
        check_app_output(log.split("image 1:")[0], out, "digits")


def test_the_parser_reads_true_labels_and_the_patch_models_profile_summed_over_its_patches():
    from keras_mbv2.micro import parse_app_output, profile_by_operator

    parsed = parse_app_output(_app_log(np.eye(3, dtype="int8") * 100, labels=[0, 2, -1], patches=True))
    assert [(image.predicted, image.label) for image in parsed.images] == [(0, 0), (1, 2), (2, None)]
    assert parsed.patch_invocations == 64 and [kind for _, kind, _ in parsed.patch_profile] == ["CONV_2D", "MUL"]
    assert profile_by_operator(parsed, patches=True) == [("CONV_2D", 1, 6400, 0.8), ("MUL", 1, 1600, 0.2)]
    assert [index for index, *_ in parsed.profile] == [0, 1, 2] and parsed.outside == 250  # the rest model's


def test_the_parser_reads_the_apps_real_output_on_qemu():
    """A log of the firmware's app on QEMU's mps2-an386 (CMSIS-NN kernels, the demo's MobileNetV2 0.35 on 32x32 digits,
    `make run-app` against a tflite-micro checkout, benchmarks/firmware/README.md): what the parser must read."""
    from keras_mbv2.micro import parse_app_output, profile_by_operator

    with open(os.path.join(ROOT, "benchmarks", "firmware", "qemu_mps2_an386_cmsis_nn.log")) as f:
        parsed = parse_app_output(f.read())
    assert (parsed.arena_used, parsed.arena_size, parsed.done) == (81780, 88336, True)
    assert parsed.tick_unit == "SysTick ticks"  # QEMU does not emulate the DWT cycle counter
    assert [image.predicted for image in parsed.images] == [7, 6, 3, 7, 7]
    assert all(len(image.scores) == 10 and image.ticks > 0 for image in parsed.images)
    assert [index for index, _, _ in parsed.profile] == list(range(65))  # one line per operator of the model
    rows = profile_by_operator(parsed)
    assert [name for name, *_ in rows][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert sum(count for _, count, _, _ in rows) == 65 and abs(sum(share for *_, share in rows) - 1) < 1e-9


@needs_arm
def test_test_images_cross_compile(with_test_images, tmp_path):
    out, _ = with_test_images
    subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=auto", "-std=c++17",
                    "-c", os.path.join(out, "digits_model_test_images.cc"), "-I", out, "-o",
                    str(tmp_path / "t.o")], check=True)


@pytest.mark.parametrize("tflm_dir,message", [
    ("", "set TFLM_DIR to a tflite-micro checkout"),
    ("/tmp", "TFLM_DIR=/tmp is not a tflite-micro checkout"),
])
def test_make_app_says_what_is_missing(tflm_dir, message, with_test_images):
    out, _ = with_test_images
    result = subprocess.run(["make", "-s", "-C", MICRO, "app", f"MODEL_DIR={out}", "MODEL_NAME=digits",
                             f"TFLM_DIR={tflm_dir}"], capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_untrained_network_reports_the_flash_and_arena_of_a_trained_one(tmp_path):
    """What a user does first: build, convert and emit an untrained network to see whether it fits a board. Its
    degenerate quantization cannot run and its equal constants share storage; the report gives what the same
    architecture needs once trained, and says why it cannot run yet."""
    x = np.random.default_rng(0).uniform(0, 1, (8, 48, 48, 3)).astype("float32")
    model = K.MobileNetV2((48, 48, 3), alpha=0.35, classes=10, weights=None)
    untrained = emit(to_tflite(model, x, num_calibration=8), str(tmp_path / "untrained"))
    randomize_batch_norms(model)
    bias = model.get_layer("predictions").bias
    bias.assign(np.random.default_rng(1).normal(0, 0.1, bias.shape))
    trained = emit(to_tflite(model, x, num_calibration=8), str(tmp_path / "trained"))
    assert trained.cannot_run is None and untrained.cannot_run and "train the model" in untrained.cannot_run
    assert trained.model_bytes == trained.array_bytes
    # the same content; the converter orders an untrained model's tensors differently, and flatbuffer alignment
    # padding follows the order (80 B of 611,760 B when written)
    assert abs(untrained.model_bytes - trained.model_bytes) <= 0.0005 * trained.model_bytes
    assert untrained.array_bytes < 0.98 * trained.model_bytes  # what was written: equal constants stored once
    assert untrained.measured_arena_bytes == trained.measured_arena_bytes
    assert f"{untrained.model_bytes:,} B flash once trained" in str(untrained)


# (make arguments, the core and the QEMU board `make run-app` then builds for and runs on, its linker script)
APP_BOARDS = [
    ([], "cortex-m4", "mps2-an386", "mps2_an386.ld"),
    (["TARGET_ARCH=cortex-m7"], "cortex-m7", "mps2-an500", "mps2_an386.ld"),
    (["BOARD=mps2-an505"], "cortex-m33", "mps2-an505", "mps2_an505.ld"),
    (["BOARD=mps3-an547"], "cortex-m55", "mps3-an547", "mps3_an547.ld"),
    (["BOARD=netduinoplus2"], "cortex-m4", "netduinoplus2", "netduinoplus2.ld"),
]


@pytest.fixture
def fake_tflm(tmp_path):
    """A folder TFLM's makefile path exists in, whose `microlite` does nothing: enough for `make -n`."""
    makefile = tmp_path / "tflm" / "tensorflow" / "lite" / "micro" / "tools" / "make" / "Makefile"
    makefile.parent.mkdir(parents=True)
    makefile.write_text("microlite:\n\t@true\n")
    return str(tmp_path / "tflm")


@pytest.mark.parametrize("args, core, board, script", APP_BOARDS)
def test_make_run_app_builds_for_the_cores_qemu_board_with_its_startup_and_linker_script(
        args, core, board, script, fake_tflm, with_test_images):
    from keras_mbv2.micro.boards import QEMU_BOARDS

    out, _ = with_test_images
    dry = subprocess.run(["make", "-n", "-C", MICRO, "run-app", f"MODEL_DIR={out}", "MODEL_NAME=digits",
                          f"TFLM_DIR={fake_tflm}", *args], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert f"TARGET_ARCH={_tflm_arch(core)}" in dry.stdout and f"-mcpu={core}" in dry.stdout  # TFLM's and the app's
    assert f"boards/startup.c -T boards/{script}" in dry.stdout and "--specs=rdimon.specs" in dry.stdout
    assert f"-M {board} " in dry.stdout and f"build/app-{board}-cmsis_nn/app.elf" in dry.stdout
    assert f"the app for QEMU's {board} ({core};" in dry.stdout and 'for your board pass BOARD_SOURCES=' in dry.stdout
    if not args or args[0].startswith("TARGET_ARCH"):
        assert QEMU_BOARDS[core] == board  # the Python side's table (project READMEs) says the same


def _tflm_arch(core: str) -> str:
    return core + "+fp" if core in ("cortex-m4", "cortex-m7") else core


@pytest.mark.parametrize("args, message", [
    (["BOARD=stm32"], "BOARD must be one of mps2-an386 mps2-an500 mps2-an505 mps3-an547 netduinoplus2 "
                      "mps2-an386-ram64k; got BOARD=stm32"),
    (["BOARD=mps2-an505", "TARGET_ARCH=cortex-m4"], "BOARD=mps2-an505 is a cortex-m33, TARGET_ARCH=cortex-m4 is not"),
    (["BOARD_SOURCES=s.c"], "run-app runs on a QEMU board"),
])
def test_make_run_app_refuses_a_contradictory_board(args, message, fake_tflm, with_test_images):
    out, _ = with_test_images
    result = subprocess.run(["make", "-n", "-C", MICRO, "run-app", f"MODEL_DIR={out}", "MODEL_NAME=digits",
                             f"TFLM_DIR={fake_tflm}", *args], capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_make_app_for_your_board_uses_your_files(fake_tflm, with_test_images):
    out, _ = with_test_images
    dry = subprocess.run(["make", "-n", "-C", MICRO, "app", f"MODEL_DIR={out}", "MODEL_NAME=digits",
                          f"TFLM_DIR={fake_tflm}", "TARGET_ARCH=cortex-m7", "BOARD_SOURCES=my_startup.c",
                          "BOARD_LDFLAGS=-T my.ld --specs=nosys.specs"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "my_startup.c -T my.ld --specs=nosys.specs" in dry.stdout and "boards/" not in dry.stdout
    assert "build/app-cortex-m7-cmsis_nn/app.elf" in dry.stdout
    assert re.search(r"make -j\d+ -C \S+ -f tensorflow/lite/micro/tools/make/Makefile", dry.stdout)  # in parallel


@pytest.mark.parametrize("board", sorted(BOARDS) + [None])
def test_a_projects_readme_says_how_to_build_for_its_real_board_and_the_makefile_agrees(board, int8_model, tmp_path,
                                                                                       fake_tflm):
    """For each board of the table: the generated README names the core's flags, the vendor files to bring (startup,
    system init, linker script, the UART retarget), and the ELF paths; `make -n` with exactly the README's `make app`
    line builds those paths with those files."""
    import shlex

    from keras_mbv2.micro import write_project
    from keras_mbv2.micro.boards import VENDOR_FILES

    project = tmp_path / "p"
    write_project(int8_model, str(project), board=board, memory_plan=False)
    readme = (project / "README.md").read_text()
    core = BOARDS[board].core if board else "cortex-m4"
    assert f"-mcpu={core} -mthumb -mfloat-abi=hard -mfpu=auto" in readme
    vendor = VENDOR_FILES.get(board or "")
    if vendor is not None:
        for name in (vendor.startup, vendor.system, vendor.linker_script.split(" ")[0], "retarget.c"):
            assert f"`{name}`" in readme, name
    elfs = re.findall(r"`(build/app-[\w-]+/app\.elf)`", readme)
    line = re.search(r"^make app (TFLM_DIR=\S+ .*?BOARD_LDFLAGS=\"[^\"]+\")", readme, re.M | re.S)
    # as the shell gives it to make: PACK (the README's first line) expanded
    args = [a.replace("~/tflite-micro", fake_tflm).replace("$PACK", "/opt/pack")
            for a in shlex.split(line.group(1).replace("\\\n", " "))]
    cflags = next(a.split("=", 1)[1] for a in args if a.startswith("BOARD_CFLAGS="))
    if vendor is not None:
        assert cflags == vendor.cflags.replace("$PACK", "/opt/pack") and re.search(r"^PACK=\S+$", readme, re.M)
    for sources in (args, [f"TFLM_DIR={fake_tflm}"]):  # the real board's line, and the QEMU board's
        dry = subprocess.run(["make", "-n", "-C", str(project), "app", *sources], capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        built = re.findall(r"-o (build/app-[\w-]+/app\.elf)", dry.stdout)
        assert built and built[0] in elfs, (built, elfs)
        assert (cflags in dry.stdout) == (sources is args), dry.stdout  # the vendor files' flags on their line
    assert f"-mcpu={core}" in dry.stdout
