"""`keras-mbv2 search` (keras_mbv2.search): the grid, the limits, stage 1's measuring order, and a whole search.

The rules of the grid and of stage 1's binary search are checked against a synthetic memory rule (so that they
are exact and fast); the real measurements are checked on a small grid, where every candidate called fitting must
have been converted and allocated on the TFLite Micro host runtime within the limits.
"""

from __future__ import annotations

import math
import os

import pytest

from keras_mbv2.micro.boards import CODE_RESERVE, RAM_RESERVE
from keras_mbv2.search import Candidate, Limits, Measurement, SearchSpace, Stage1, choose_finalists
from keras_mbv2.search.fitting import AS_BUILT, SPLITS


# -- the grid and the limits -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,fragment", [
    (dict(networks=()), "`networks` is empty"),
    (dict(networks=("nasnet",)), "NASNet-A's cells are not searched"),
    (dict(widths=()), "`widths` is empty"),
    (dict(sizes=(16,)), "`sizes` must be at least 32"),
    (dict(sizes=(96.5,)), "`sizes` must be a positive integer"),
    (dict(widths=(0.35, float("nan"))), "`widths` must hold finite positive numbers"),
    (dict(expansions=(0,)), "`expansions` must be a positive integer"),
    (dict(max_macs=0), "`max_macs` must be a positive integer"),
])
def test_a_bad_grid_is_one_error_naming_it(kwargs, fragment):
    with pytest.raises(ValueError, match=None) as info:
        SearchSpace(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(board="pico"), "`board` must be one of"),
    (dict(board="arduino-nano-33-ble", ram=1), "not both"),
    (dict(flash=1 << 20), "give `board`, or both `flash` and `ram`"),
    (dict(flash=CODE_RESERVE, ram=1 << 20), "`flash` must exceed the 163,840 B"),
    (dict(flash=1 << 20, ram=RAM_RESERVE), "`ram` must exceed the 32,768 B"),
    (dict(flash=1 << 20, ram=-5), "`ram` must be a positive integer"),
])
def test_bad_limits_are_one_error_naming_them(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        Limits.of(**kwargs)
    assert fragment in str(info.value)


def test_limits_leave_the_boards_reserves_for_code_and_application():
    nano = Limits.of(board="arduino-nano-33-ble")
    assert (nano.model_flash, nano.device_ram) == (1024 * 1024 - CODE_RESERVE, 256 * 1024 - RAM_RESERVE)
    assert nano.core == "cortex-m4"
    assert Limits.of(flash=1 << 20, ram=128 * 1024).device_ram == 96 * 1024
    assert "nucleo-f746zg" in nano.boards_that_fit(500_000, 250_000)
    assert "arduino-nano-33-ble" not in nano.boards_that_fit(500_000, 250_000)


def test_the_default_grid_and_the_quick_grid():
    full = SearchSpace().candidates()
    assert len(full) == 4 * 7 * 2  # MobileNetV2: widths x sizes x expansions
    quick = SearchSpace(quick=True).candidates()
    assert len(quick) == 2 * 3 * 2
    mixed = SearchSpace(networks=("mobilenet_v2", "mobilenet_v1"), widths=(0.5,), sizes=(96, 64)).candidates()
    assert [c.key for c in mixed] == ["mobilenet_v1-w0.5-s64", "mobilenet_v1-w0.5-s96", "mobilenet_v2-w0.5-s64-e4",
                                      "mobilenet_v2-w0.5-s96-e4", "mobilenet_v2-w0.5-s64-e6",
                                      "mobilenet_v2-w0.5-s96-e6"]


@pytest.mark.parametrize("a,b,dominates", [
    (Candidate("mobilenet_v2", 0.35, 96, 6), Candidate("mobilenet_v2", 0.5, 112, 6), True),
    (Candidate("mobilenet_v2", 0.35, 96, 4), Candidate("mobilenet_v2", 0.35, 96, 6), True),
    (Candidate("mobilenet_v2", 0.35, 112, 6), Candidate("mobilenet_v2", 0.5, 96, 6), False),
    (Candidate("mobilenet_v2", 0.35, 96, 6), Candidate("mobilenet_v2", 0.35, 96, 4), False),
    (Candidate("mobilenet_v1", 0.25, 96), Candidate("mobilenet_v2", 0.35, 96, 6), False),
])
def test_memory_order_of_candidates(a, b, dominates):
    assert a.dominates(b) is dominates


# -- stage 1's order of measuring, on a synthetic memory rule -------------------------------------------------------
class Synthetic(Stage1):
    """Stage 1 with a memory rule instead of TFLM: RAM ~ width * size^2 * expansion; counts what it measures."""

    def __init__(self, limits, rule, techniques=True):
        super().__init__(limits, lambda size: None, 10, 1, techniques)
        self.rule, self.measured = rule, []

    def cost(self, c):
        if c not in self.measurements:
            self.measurements[c] = Measurement(c, int(c.width * 100 * c.size ** 2 * (c.expansion or 6)), 1)
        return self.measurements[c]

    def _measure(self, m, as_built):
        self.measured.append((m.candidate, as_built))
        m.measured, m.flash = True, 1000
        m.ram_as_built = self.rule(m.candidate)
        m.fits_as_built = m.ram_as_built <= self.limits.device_ram
        if m.fits_as_built:
            m.fits, m.ram, m.technique = True, m.ram_as_built, AS_BUILT
        elif not as_built:
            m.ram = m.ram_as_built // 2  # splits halve it
            m.fits = self.techniques and m.ram <= self.limits.device_ram
            m.technique = SPLITS if m.fits else ""
            m.reason = "" if m.fits else "RAM: over"


def _rule(c):
    return int(c.width * c.size ** 2 * (c.expansion or 6) * 2)


def test_binary_search_measures_a_few_per_row_and_finds_the_largest_fitting_size():
    budget = 20_000
    limits = Limits.of(flash=1 << 20, ram=RAM_RESERVE + budget)
    space = SearchSpace(widths=(0.35, 0.5, 0.75, 1.0), sizes=(64, 80, 96, 112, 128, 144, 160), expansions=(4, 6))
    stage = Synthetic(limits, _rule)
    front = stage.front(space.candidates())
    assert front
    for c in front:  # the largest size that fits with splits, checked against the rule itself
        assert _rule(c) // 2 <= budget
        bigger = [s for s in (64, 80, 96, 112, 128, 144, 160) if s > c.size]
        assert all(_rule(Candidate(c.network, c.width, s, c.expansion)) // 2 > budget for s in bigger)
    rows = {c.row for c in space.candidates()}
    assert len(stage.measured) <= len(rows) * math.ceil(math.log2(7 + 1))  # binary search, not all 56
    assert all(m.measured for m in stage.measurements.values() if m.fits)  # fitting means measured
    inferred = [m for m in stage.measurements.values() if m.fits is False and not m.measured]
    assert inferred and all("needs at least the memory of" in m.reason for m in inferred)


def test_as_built_front_needs_no_techniques_and_is_smaller():
    limits = Limits.of(flash=1 << 20, ram=RAM_RESERVE + 60_000)
    space = SearchSpace(widths=(0.35, 0.5), sizes=(64, 96, 128, 160), expansions=(6,))
    stage = Synthetic(limits, _rule)
    with_techniques = stage.front(space.candidates())
    as_built = stage.front(space.candidates(), as_built=True)
    assert all(stage.measurements[c].ram_as_built <= 60_000 for c in as_built)
    assert max(stage.measurements[c].macs for c in with_techniques) > max(stage.measurements[c].macs for c in as_built)
    off = Synthetic(limits, _rule, techniques=False)
    assert off.front(space.candidates()) == as_built


def test_a_flash_failure_rejects_every_input_size_of_its_row_and_wider_rows_without_measuring():
    limits = Limits.of(flash=CODE_RESERVE + 1000, ram=RAM_RESERVE + 10_000_000)

    class TooBig(Synthetic):
        def _measure(self, m, as_built):
            super()._measure(m, as_built)
            if m.candidate.width >= 0.5:
                m.fits = m.fits_as_built = False
                m.size_independent, m.reason = True, "flash: over"

    space = SearchSpace(widths=(0.35, 0.5, 0.75), sizes=(64, 96, 128, 160), expansions=(6,))
    stage = TooBig(limits, _rule)
    front = stage.front(space.candidates())
    assert [(c.width, c.size) for c in front] == [(0.35, 160)]
    assert [(c.width, c.size) for c, _ in stage.measured] == [(0.35, 96), (0.35, 128), (0.35, 160), (0.5, 96)]
    for c in space.candidates():
        m = stage.measurements[c]
        if c.width >= 0.5 and not m.measured:
            assert m.fits is False and "does not shrink with the input size" in m.reason, m.reason


def test_max_macs_leaves_candidates_out_before_measuring():
    limits = Limits.of(flash=1 << 20, ram=RAM_RESERVE + 10_000_000)
    space = SearchSpace(widths=(0.35,), sizes=(64, 96, 128), expansions=(6,))
    stage = Synthetic(limits, _rule)
    cap = stage.cost(Candidate("mobilenet_v2", 0.35, 96, 6)).macs
    front = stage.front(space.candidates(), max_macs=cap)
    assert [c.size for c in front] == [96]
    assert all(c.size != 128 for c, _ in stage.measured)
    assert "over the limit" in stage.measurements[Candidate("mobilenet_v2", 0.35, 128, 6)].reason


def test_finalists_have_the_most_macs_and_differ_in_width_and_size():
    def m(width, size, macs):
        return Measurement(Candidate("mobilenet_v2", width, size, 6), macs, 1, measured=True, fits=True)

    fitting = [m(0.35, 160, 30), m(0.35, 144, 28), m(0.5, 128, 29), m(0.5, 112, 25), m(0.75, 96, 27)]
    chosen = choose_finalists(fitting, 3)
    assert [(f.candidate.width, f.candidate.size) for f in chosen] == [(0.35, 160), (0.5, 128), (0.75, 96)]
    assert len(choose_finalists(fitting[:1], 3)) == 1


# -- the real thing, small: measured on TFLM ---------------------------------------------------------------------
def test_stage1_measures_on_tflm_and_splits_buy_a_larger_input(tmp_path):
    from keras_mbv2.datasets import load_digits
    from keras_mbv2.micro.emitter import tensor_arena_size
    from keras_mbv2.tflite import arena_use

    limits = Limits.of(flash=1 << 20, ram=RAM_RESERVE + 110_000)
    images = {}

    def x(size):
        return images.setdefault(size, load_digits(image_size=size).x_train[:64])

    space = SearchSpace(widths=(0.35,), sizes=(32, 48, 64), expansions=(6,))
    stage = Stage1(limits, x, 10, 1)
    front = stage.front(space.candidates())
    as_built = stage.front(space.candidates(), as_built=True)
    assert front and as_built, [(m.candidate.label, m.reason) for m in stage.measurements.values()]
    best, plain = stage.measurements[front[0]], stage.measurements[as_built[0]]
    assert best.fits and best.measured and best.ram <= limits.device_ram and best.flash <= limits.model_flash
    assert best.technique != AS_BUILT and best.macs > plain.macs  # the techniques buy a larger input
    assert best.ram_as_built > limits.device_ram >= plain.ram_as_built
    # the as-built figure is TFLM's arena for the converted model, margin included
    model, data = stage._converted[plain.candidate]
    assert plain.ram_as_built == tensor_arena_size(arena_use(data).total)


def test_stage1_with_segments_fits_a_candidate_below_tflms_persistent_data():
    """A RAM budget under the model's persistent data (MobileNetV2 0.35, 10 classes: about 72 KB before any
    activation) fits no split or patch plan; with segments the candidate fits, measured, and says how."""
    from keras_mbv2.datasets import load_digits
    from keras_mbv2.search.fitting import SEGMENTS

    limits = Limits.of(flash=1 << 20, ram=RAM_RESERVE + 60_000)
    (candidate,) = SearchSpace(widths=(0.35,), sizes=(32,), expansions=(6,)).candidates()

    def x(size):
        return load_digits(image_size=size).x_train[:64]

    plain = Stage1(limits, x, 10, 1)
    assert not plain.fits(candidate) and "persistent data" in plain.measurements[candidate].reason
    stage = Stage1(limits, x, 10, 1, segments=True)
    assert stage.fits(candidate)
    m = stage.measurements[candidate]
    assert m.technique == SEGMENTS and m.segments > 1 and m.measured and m.ram <= limits.device_ram
    assert Measurement.from_json(m.to_json()) == m  # a rerun reuses it as measured


# -- a whole search, interrupted and continued: the example, as a user runs it -------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "search_for_a_board.py")


def _run_example(cwd):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, EXAMPLE], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


#: A trial's first finished epoch (search/trials.py)
FIRST_EPOCH = r"^    MobileNetV2 .*: epoch 1/2 +\d+ s "


@pytest.mark.slow
def test_example_search_ctrl_c_twice_then_rerun_measures_and_trains_nothing_twice_and_emits_a_model_that_fits(
        tmp_path):
    """examples/search_for_a_board.py (the README's search block) as a user runs it, stopped by Ctrl-C twice, after
    stage 1's first measurement and after the second finalist's first epoch (the first finalist's trial finished),
    then run to its end: each candidate measured once over the three runs, the finished trial reused, the unfinished
    one resumed after its saved epoch, and the model it emits fits the 128 KiB chip, measured. `keras-mbv2 search`
    runs the same `search`; its own Ctrl-C line and exit code: tests/test_interruptions.py."""
    import ast
    import json
    import re
    import signal
    import subprocess

    from harness import NATIVE_LINE, SEARCH_MEASURED, signal_at

    with open(EXAMPLE) as f:
        docstring = ast.get_docstring(ast.parse(f.read()))
    assert "Shows:" in docstring and "python examples/search_for_a_board.py" in docstring
    s = tmp_path / "search_128k"
    trials = s / "trials"
    code, out1, _, _ = signal_at(_run_example(tmp_path), SEARCH_MEASURED.pattern, signal.SIGINT, wait=300)
    first = SEARCH_MEASURED.findall(out1)
    assert code != 0, out1[-3000:]
    assert first and {"search.json", "candidates.json"} <= set(os.listdir(s)), os.listdir(s)
    assert not (s / "report.md").exists() and not (s / ".keras-mbv2.lock").exists()

    code, out2, _, _ = signal_at(_run_example(tmp_path), FIRST_EPOCH, signal.SIGINT, count=2, wait=300)
    assert code != 0, out2[-3000:]
    assert f"stage 1 measured in an earlier run ({len(first)} candidates reused)" in out2, out2[-3000:]
    assert not set(first) & set(SEARCH_MEASURED.findall(out2)), out2[-3000:]
    finished = {p.name for p in trials.glob("*.json")}
    assert len(finished) == 1 and list((trials / "unfinished").glob("*.keras")), os.listdir(trials)
    assert not (s / "report.md").exists() and not (s / ".keras-mbv2.lock").exists()

    proc = _run_example(tmp_path)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert not NATIVE_LINE.search(err), err[-2000:]  # quiet: `import keras_mbv2` first, training included
    measured = first + SEARCH_MEASURED.findall(out2) + SEARCH_MEASURED.findall(out)
    assert len(measured) == len(set(measured)), measured  # each candidate measured once over the three runs
    # the time of an epoch from the finished trial, not from a model built and traced to time 3 steps
    assert "in an earlier run, scaled by multiply-adds)" in out and "steps timed" not in out, out[:3000]
    for name in finished:  # nothing trained twice: the finished trial reused, the other resumed after its epoch
        label = Candidate(**json.loads((trials / name).read_text())["candidate"]).label
        assert f"{label}: trained in an earlier run" in out, out
    assert re.search(r"resuming its trial after epoch 1 \(saved in an earlier run\)", out), out[-3000:]
    ram = int(re.search(r"RAM \(TFLM, measured\)\s+([\d,]+) B of 98,304 B", out).group(1).replace(",", ""))
    assert ram <= 98_304 and re.search(r"outputs identical|predictions agree on (\d+) of \1\b", out), out[-2000:]
    for name in ("model.keras", "model_int8.tflite", "report.md", "front.png", "candidates.csv"):
        assert (s / name).is_file(), name
    assert not [p for p in s.rglob("*") if "kmbv2-tmp" in p.name or p.name.endswith(".lock") or p.name == "unfinished"]
    report = (s / "report.md").read_text()
    measurements = json.loads((s / "candidates.json").read_text())["measurements"]
    chosen = [m for m in measurements if f"| model | {Candidate(**m['candidate']).label} |" in report]
    assert len(chosen) == 1 and chosen[0]["fits"] and chosen[0]["measured"] and chosen[0]["ram"] <= 98_304
    fitting = [m for m in measurements if m["fits"]]
    assert all(m["measured"] for m in fitting)  # fitting means measured on TFLM
    as_built = [m for m in measurements if m["fits_as_built"]]
    assert max(m["macs"] for m in fitting) > max(m["macs"] for m in as_built)  # the techniques buy capacity
    assert "## Why the larger candidates were rejected" in report and "measured (TFLM host runtime)" in report
    # the emitted project's C files compile for the core
    make = subprocess.run(["make", "-C", str(s / "project"), "model-objects"], capture_output=True, text=True)
    assert make.returncode == 0, make.stderr


# -- a choice made on signal -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("right,images,low,high", [
    (10, 29, 0.199, 0.527),  # the trial: 34.5% of 29 validation images
    (9, 29, 0.173, 0.492),
    (288, 288, 0.987, 1.0),
    (0, 30, 0.0, 0.114),
])
def test_the_wilson_interval_of_a_validation_count(right, images, low, high):
    from keras_mbv2.search.trials import interval

    got = interval(right / images, images)
    assert got == pytest.approx((low, high), abs=1e-3)


def _trial(width, right, images):
    from keras_mbv2.search.trials import Trial

    return Trial(Candidate("mobilenet_v2", width, 96, 6), 2, right / images, 0.5, 10.0, 5.0, images)


@pytest.mark.parametrize("trials,sentence", [
    ([(0.5, 10, 29), (0.35, 9, 29)], "within the 95% intervals of 29 validation images: the choice between them is "
                                      "not significant"),
    ([(0.5, 27, 29), (0.35, 9, 29)], "is above the 95% interval of every other finalist (29 validation images)"),
    ([(0.5, 27, 29)], "One finalist was trained: there was no choice to make"),
])
def test_the_report_says_whether_the_finalists_difference_is_signal(trials, sentence):
    from keras_mbv2.search.report import SearchResult, status

    trials = [_trial(*t) for t in trials]
    chosen = Measurement(trials[0].candidate, macs=10, params=1, fits=True)
    result = SearchResult("out", Limits.of("arduino-nano-33-ble"), chosen, 0.9, 0.9, 0.9, "identical", 1, 1, 4, 1,
                          [chosen], trials, None, 1.0, classes=3)
    assert sentence in result.choice()
    low, high = trials[0].interval
    assert f"{trials[0].val_accuracy:.1%} ({trials[0].val_accuracy * 29:.0f} of 29, 95% interval {low:.1%} to " \
           f"{high:.1%})" in status(chosen, result)


def test_a_trial_at_chance_is_told_apart_from_one_that_learned():
    assert _trial(0.5, 10, 29).at_chance(3) and not _trial(0.5, 25, 29).at_chance(3)


def test_a_trial_record_round_trips_and_an_older_one_without_the_count_still_reads():
    from keras_mbv2.search.trials import Trial

    trial = _trial(0.5, 10, 29)
    assert Trial.from_json(trial.to_json()) == trial
    old = {k: v for k, v in trial.to_json().items() if k != "val_images"}
    assert Trial.from_json(old).describe() == "34.5%"  # no count: no interval claimed


def test_a_trial_trains_the_same_whatever_ran_before_it_in_the_process(tmp_path):
    """A search run again reads its finished trials back instead of training them, so the random streams stand
    elsewhere when the next trial starts: each trial is seeded from the run's seed and its candidate alone
    (`trials.reseed`), and trains the same model, bit for bit, after another trial or after none."""
    from types import SimpleNamespace

    import keras
    import numpy as np

    from keras_mbv2.datasets import load_digits
    from keras_mbv2.search.trials import Clock, run_trial

    d = load_digits(image_size=32)
    data = SimpleNamespace(x_train=d.x_train[:64], y_train=d.y_train[:64], x_val=d.x_test[:32], y_val=d.y_test[:32])
    first, second = Candidate("mobilenet_v1", 0.25, 32), Candidate("mobilenet_v1", 0.5, 32)

    def trial(folder, before):
        keras.utils.set_random_seed(before)  # where the streams stand: an earlier run's stage 1, or another trial
        if before == 1:
            run_trial(first, data, 10, 1, 1, str(tmp_path / folder), Clock(600), lambda line: None, [], seed=7)
        result = run_trial(second, data, 10, 1, 1, str(tmp_path / folder), Clock(600), lambda line: None, [], seed=7)
        model = keras.models.load_model(tmp_path / folder / f"{second.key}.keras")
        return result, model.get_weights()

    (alone, weights), (after, weights_after) = trial("alone", 2), trial("after", 1)
    assert (alone.val_accuracy, alone.val_loss) == (after.val_accuracy, after.val_loss)
    assert all(np.array_equal(a, b) for a, b in zip(weights, weights_after, strict=True))
