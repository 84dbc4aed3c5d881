"""`keras_mbv2.search.search` / `keras-mbv2 search`: from a board and a data set to the most accurate model that fits.

Stage 1 (`fitting`): which candidates of the grid fit the board, measured on the TFLite Micro host runtime, with
channel splits and patch-based inference (the paper's Section 5.1, then MCUNetV2's patches) allowed. Stage 2
(`trials`): the fitting candidates with the most multiply-adds (MCUNet's observation: within a space, more MACs
under the constraint tend to mean higher accuracy) train for a short, equal number of epochs, the best on held-out
validation data trains on, then quantization-aware training, conversion to int8, the int8 model checked on TFLM
against LiteRT's reference kernels on the test images, and the firmware project emitted (patched when the plan is).

The run folder keeps what each step finished (`search.json`, `candidates.json`, `trials/`, `final/`), so a run
stopped by Ctrl-C continues when the same command is given again; the results (`model.keras`, `model_int8.tflite`,
`project/`, `report.md`, `front.png`, `candidates.csv`) are written last, each under a temporary name renamed into
place.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..checks import check_bool, check_positive_int, check_positive_number
from ..files import LOCK_FILE, run_lock, write_file
from ..interrupts import ctrl_c_stops_training, stop_on_ctrl_c
from ..logs import native_stderr_to
from .finish import finish
from .fitting import Measurement, Stage1, choose_finalists
from .report import SearchResult
from .space import DEFAULTS, QUICK, Candidate, Limits, SearchSpace, describe_grid, epochs_for_steps
from .trials import QAT_EPOCH_COST, Clock, Trial, extend_trial, run_trial, winner, within_noise

Log = Callable[[str], None]
SETTINGS_FILE = "search.json"


class SearchDoesNotFit(ValueError):
    """No candidate of the grid fits the limits (a ValueError naming the limits)."""


@dataclass
class SearchData:
    """The search's images at one input size: training (less validation), validation (held out from the training
    split, for choosing), test (for the report only)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


class DataSource:
    """`data` ("digits" or an image folder) at any input size, with a stratified validation split of
    `validation_fraction` of the training images (seeded), loaded once per size."""

    def __init__(self, data: str, seed: int = 0, validation_fraction: float = 0.2) -> None:
        if not isinstance(data, str) or (data != "digits" and not os.path.isdir(data)):
            raise ValueError(f"`data` must be 'digits' or an image folder (one sub-folder per class). "
                             f"Received: data={data!r}")
        self.data, self.seed, self.fraction = data, seed, validation_fraction
        self.channels = 1 if data == "digits" else 3
        self._cache: dict[int, SearchData] = {}

    def at(self, size: int) -> SearchData:
        """The images at `size` x `size`."""
        if size not in self._cache:
            from ..datasets import hold_out, load_digits, load_image_folder

            split = load_digits(size, self.channels, seed=self.seed) if self.data == "digits" else \
                load_image_folder(self.data, size, self.channels, seed=self.seed)
            x_tr, y_tr, x_val, y_val = hold_out(split.x_train, split.y_train, self.fraction, self.seed)
            self._cache = {size: SearchData(x_tr, y_tr, x_val, y_val, split.x_test, split.y_test,
                                            split.class_names)}  # one size at a time: big images are big
        return self._cache[size]

    def calibration(self, size: int) -> np.ndarray:
        """200 training images for int8 calibration."""
        return self.at(size).x_train[:200]


def _settings(limits: Limits, space: SearchSpace, data: str, techniques: bool, seed: int, finalists: int,
              trial_epochs: int, epochs: int, qat_epochs: int, segments: bool = False) -> dict[str, Any]:
    from .._version import __version__

    return {"limits": {"flash": limits.flash, "ram": limits.ram, "board": limits.board},
            "grid": {n: {k: list(v) for k, v in space.grid(n).items()} for n in space.networks},
            "max_macs": space.max_macs, "data": os.path.abspath(data) if data != "digits" else data,
            "memory_techniques": techniques, "segments": segments, "seed": seed, "finalists": finalists,
            "trial_epochs": trial_epochs,
            "epochs": epochs, "qat_epochs": qat_epochs, "version": __version__}


def _check_run_folder(out: str, settings: dict[str, Any]) -> bool:
    """True when `out` holds this search's earlier run (continue it); raises when it holds anything else."""
    path = os.path.join(out, SETTINGS_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            theirs = json.load(f)
        if theirs != settings:
            differ = sorted(k for k in set(theirs) | set(settings) if theirs.get(k) != settings.get(k))
            raise ValueError(f"`out` holds a search with other settings (differing: {', '.join(differ)}): give "
                             f"another folder, or the same settings to continue it. Received: out={out!r}")
        return True
    if os.path.isdir(out) and set(os.listdir(out)) - {LOCK_FILE}:
        raise ValueError(f"`out` exists and is not a search run folder (no {SETTINGS_FILE}): give a new folder. "
                         f"Received: out={out!r}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"`out` is a file, not a folder. Received: out={out!r}")
    return False


def search(
    out: str,
    data: str = "digits",
    board: str | None = None,
    flash: int | None = None,
    ram: int | None = None,
    networks: tuple[str, ...] = ("mobilenet_v2",),
    widths: tuple[float, ...] | None = None,
    sizes: tuple[int, ...] | None = None,
    expansions: tuple[int, ...] | None = None,
    max_macs: int | None = None,
    budget_minutes: float | None = None,
    finalists: int | None = None,
    trial_epochs: int | None = None,
    epochs: int | None = None,
    qat_epochs: int | None = None,
    memory_techniques: bool = True,
    segments: bool = False,
    quick: bool = False,
    seed: int = 0,
    log: Log = print,
    callbacks: list[Any] | None = None,
) -> SearchResult:
    """Find the most accurate candidate of the grid that fits a board, train it, quantize it and emit it.

    Args:
        out: the run folder (created; an earlier run of the same settings there is continued).
        data: "digits" (bundled) or an image folder with one sub-folder per class.
        board: a board of `keras_mbv2.micro.BOARDS`, or else `flash` and `ram` in bytes (the chip's totals: the
            code and application reserves of `keras_mbv2.micro.boards` are taken off, as for the boards).
        networks, widths, sizes, expansions: the grid (`space.SearchSpace`; None: each network's default, or the
            quick grid with `quick`). `max_macs`: leave out candidates with more multiply-adds (a latency proxy).
        budget_minutes: time for training (trials, final float training, QAT); the search refuses at once a budget
            too short to train one candidate, skips trials that no longer fit it, and shortens the final float
            training to keep time for QAT.
        finalists, trial_epochs, epochs, qat_epochs: how many candidates train, for how many epochs each, then the
            winner's float epochs in all (its trial's included) and QAT epochs. None: `DEFAULTS`, or `QUICK`.
        memory_techniques: allow channel splits and patches (False: only models that fit as built).
        segments: with `memory_techniques`, also let a candidate that fits no split or patch plan run in segments
            (`keras_mbv2.tflite.segments`: one TFLM interpreter at a time, below TFLM's persistent data); such a
            candidate is reported with the technique "segments" and emitted segmented.
        seed: seeds the data split, the weights and the kernels (`training.reproducible`).
        callbacks: Keras callbacks added to every float training. Ctrl-C stops the search at the next batch (even
            where TensorFlow swallows it: `keras_mbv2.interrupts`), keeping what finished.

    Raises ValueError (naming the argument) on bad input and when no candidate fits, before writing anything.
    """
    start = time.perf_counter()
    limits = Limits.of(board, flash, ram)
    space = SearchSpace(tuple(networks), _tuple(widths), _tuple(sizes), _tuple(expansions), max_macs, bool(quick))
    # TensorFlow's native lines while training (tf.data's `NodeDef mentions attribute use_unbounded_threadpool`
    # once per fit) stay off the terminal, as at start-up (keras_mbv2.logs)
    # Ctrl-C stops training even where TensorFlow swallows it (`interrupts`); what finished is kept
    with native_stderr_to([]), ctrl_c_stops_training():
        return _search(out, data, limits, space, budget_minutes, finalists, trial_epochs, epochs, qat_epochs,
                       memory_techniques, quick, seed, log, callbacks, start, segments)


def _search(out: str, data: str, limits: Limits, space: SearchSpace, budget_minutes: float | None,
            finalists: int | None, trial_epochs: int | None, epochs: int | None, qat_epochs: int | None,
            memory_techniques: bool, quick: bool, seed: int, log: Log, callbacks: list[Any] | None,
            start: float, segments: bool = False) -> SearchResult:
    import keras

    from ..training import reproducible

    callbacks = [stop_on_ctrl_c(keras.callbacks.Callback), *(callbacks or [])]
    check_bool("memory_techniques", memory_techniques)
    check_bool("segments", segments)
    if segments and not memory_techniques:
        raise ValueError("`segments` is one of the memory techniques: it needs memory_techniques=True. Received: "
                         "segments=True, memory_techniques=False")
    base = QUICK if quick else DEFAULTS

    def given(name: str, value: Any) -> Any:  # a value given applies, with or without `quick`
        return base[name] if value is None else value

    finalists = check_positive_int("finalists", given("finalists", finalists))
    trial_given, epochs_given = trial_epochs is not None, epochs is not None
    trial_epochs = check_positive_int("trial_epochs", given("trial_epochs", trial_epochs))
    epochs = check_positive_int("epochs", given("epochs", epochs))
    qat_epochs = check_positive_int("qat_epochs", given("qat_epochs", qat_epochs))
    budget = check_positive_number("budget_minutes", given("budget_minutes", budget_minutes)) * 60
    if epochs < trial_epochs:
        raise ValueError(f"`epochs` (the winner's epochs in all) must be at least `trial_epochs` ({trial_epochs}). "
                         f"Received: epochs={epochs}")
    source = DataSource(data, seed)
    if not (trial_given and epochs_given):  # a small data set: enough steps to learn (MIN_STEPS), not epochs
        sizes = space.grid(space.networks[0])["sizes"]
        steps = -(-len(source.at(min(sizes)).y_train) // 32)
        more_trial = trial_epochs if trial_given else epochs_for_steps("trial_epochs", trial_epochs, steps)
        more_trial = min(more_trial, epochs) if epochs_given else more_trial
        more = epochs if epochs_given else max(epochs_for_steps("epochs", epochs, steps), more_trial)
        if (more_trial, more) != (trial_epochs, epochs):
            log(f"small data: {steps} steps of 32 images an epoch, so trials train {more_trial} epochs and the "
                f"winner {more} in all (at least {more_trial * steps} and {more * steps} steps)")
        trial_epochs, epochs = more_trial, more
    settings = _settings(limits, space, data, memory_techniques, seed, finalists, trial_epochs, epochs, qat_epochs,
                         segments)
    resuming = _check_run_folder(out, settings)
    reproducible(seed)
    log(f"limits  {limits.describe()}")
    log("grid    " + describe_grid(space).replace("\n", "\n        "))

    with run_lock(out, "`out`", log=log):
        if not resuming:  # first: each stage-1 measurement is saved as it completes, for a rerun to reuse
            write_file(os.path.join(out, SETTINGS_FILE), json.dumps(settings, indent=1) + "\n")
        try:
            stage1, measurements, as_built_best, chosen, classes, per_epoch = _stage1(
                out, resuming, source, limits, space, memory_techniques, finalists, trial_epochs, qat_epochs, budget,
                log, segments)
        except ValueError:  # nothing fits, or the budget is too short: a new run folder is not left behind
            if not resuming:
                for name in (SETTINGS_FILE, "candidates.json"):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(out, name))
            raise
        clock = Clock(budget)
        smallest = min(chosen, key=lambda m: m.macs)
        _save_measurements(out, measurements)
        trials = _stage2_trials(chosen, source, classes, trial_epochs, epochs, qat_epochs, out, clock, log,
                                callbacks, per_epoch / smallest.macs)
        trials = _make_surer(trials, source, classes, trial_epochs, epochs, qat_epochs, out, clock, log, callbacks)
        best = winner(trials, {m.candidate: m.macs for m in measurements})
        chosen_m = stage1.measurements[best.candidate]
        log(f"[3/4] the winner, {best.candidate.label} (validation accuracy {best.describe()}): float training "
            f"to {epochs} epochs, then {qat_epochs} QAT epoch{'s' if qat_epochs > 1 else ''} ({clock.describe()})")
        result = finish(out, limits, chosen_m, best, source, epochs, qat_epochs, clock, log, callbacks,
                        measurements, trials, as_built_best, seed)
    result.seconds = time.perf_counter() - start
    return result


def _stage1(out: str, resuming: bool, source: DataSource, limits: Limits, space: SearchSpace, memory_techniques: bool,
            finalists: int, trial_epochs: int, qat_epochs: int, budget: float, log: Log,
            segments: bool = False) -> tuple:
    """Stage 1 (what fits, each measurement saved in `out` as it completes; an earlier run's reused), the finalists,
    and the budget check: (stage1, measurements, as_built_best, chosen, classes, seconds per epoch of the smallest
    finalist). Raises ValueError when nothing fits or the budget cannot train one candidate."""
    known: dict[Candidate, Measurement] = {}
    if resuming and os.path.isfile(os.path.join(out, "candidates.json")):
        with open(os.path.join(out, "candidates.json")) as f:
            known = {m.candidate: m for m in map(Measurement.from_json, json.load(f)["measurements"])}
        log(f"continuing the search in {out}: stage 1 measured in an earlier run ({len(known)} candidates reused)")
    first = source.at(min(space.grid(space.networks[0])["sizes"]))
    classes = len(first.class_names)
    stage1 = Stage1(limits, source.calibration, classes, source.channels, memory_techniques, log, known,
                    on_measured=lambda: _save_measurements(out, [m for m in stage1.measurements.values()
                                                                 if m.measured]), segments=segments)
    candidates = space.candidates()
    log(f"[1/4] what fits: {len(candidates)} candidates; measuring on the TFLite Micro host runtime the few that "
        "decide (the largest input size of each row that fits, by binary search)")
    front = stage1.front(candidates, max_macs=space.max_macs)
    as_built = stage1.front(candidates, as_built=True, max_macs=space.max_macs) if memory_techniques else front
    measurements = [stage1.measurements[c] for c in candidates]
    if not front:
        raise SearchDoesNotFit(_nothing_fits(limits, measurements))
    fitting = [m for m in stage1.measurements.values() if m.fits]  # each measured: the fronts' and those on the way
    as_built_best = max((stage1.measurements[c] for c in as_built), key=lambda m: m.macs, default=None)
    chosen = choose_finalists(fitting, finalists)
    log("      finalists (most multiply-adds that fit, diverse): "
        + "; ".join(f"{m.candidate.label} {m.macs:,} MACs ({m.technique})" for m in chosen))

    smallest = min(chosen, key=lambda m: m.macs)
    # a finalist's trial finished in an earlier run: its measured time, scaled by multiply-adds (as stage 2 scales
    # it) to the smallest finalist, instead of building and tracing a model to time 3 steps
    saved = [(m, os.path.join(out, "trials", f"{m.candidate.key}.json")) for m in sorted(
        chosen, key=lambda m: m is not smallest)] if resuming else []
    saved = [(m, path) for m, path in saved if os.path.isfile(path)]
    if saved:
        m, path = saved[0]
        with open(path) as f:
            per_epoch = Trial.from_json(json.load(f)).seconds_per_epoch * smallest.macs / m.macs
        if m is not smallest:
            log(f"      one float epoch of {smallest.candidate.label} takes about {per_epoch:.0f} s here (the trial "
                f"of {m.candidate.label} in an earlier run, scaled by multiply-adds)")
    else:
        per_epoch = probe_epoch_seconds(smallest.candidate, source.at(smallest.candidate.size), classes,
                                        source.channels)
        log(f"      one float epoch of {smallest.candidate.label} takes about {per_epoch:.0f} s here (3 steps timed)")
    needed = (trial_epochs + QAT_EPOCH_COST * qat_epochs) * per_epoch
    if needed > budget:
        raise ValueError(
            f"`budget_minutes` is too short to train one candidate: the smallest finalist, "
            f"{smallest.candidate.label}, needs about {needed / 60:.1f} min here for {trial_epochs} float and "
            f"{qat_epochs} QAT epoch{'s' if qat_epochs > 1 else ''} (a QAT epoch costs about {QAT_EPOCH_COST:g} float "
            f"ones). Received: budget_minutes={budget / 60:g}")

    return stage1, measurements, as_built_best, chosen, classes, per_epoch


def _tuple(values: Any) -> tuple | None:
    return None if values is None else tuple(values)


def _save_measurements(out: str, measurements: list[Measurement]) -> None:
    write_file(os.path.join(out, "candidates.json"),
               json.dumps({"measurements": [m.to_json() for m in measurements]}, indent=1) + "\n")


def _nothing_fits(limits: Limits, measurements: list[Measurement]) -> str:
    """The one-line error when no candidate fits: the smallest candidate's need, and the boards it would fit."""
    measured = [m for m in measurements if m.measured]
    smallest = min(measured or measurements, key=lambda m: (m.macs, m.candidate))
    need_ram = smallest.need or smallest.ram_as_built
    converted = smallest.flash is not None and need_ram is not None  # else only a lower bound of its weights
    at_least = " at least" if smallest.size_independent else ""
    needs = f" (it needs {smallest.flash:,} B flash and{at_least} {need_ram:,} B RAM)" if converted else ""
    boards = limits.boards_that_fit(smallest.flash, need_ram) if converted else []
    where = f"; it would fit {', '.join(boards)}" if boards else ""
    what = f"board={limits.board!r}" if limits.board else f"flash={limits.flash!r}, ram={limits.ram!r}"
    return (f"no candidate of the grid fits {limits.describe()}. The smallest, {smallest.candidate.label}, "
            f"does not fit: {smallest.reason or 'over the limits'}{needs}{where}. Received: {what}")


def probe_epoch_seconds(candidate: Candidate, data: SearchData, classes: int, channels: int,
                        steps: int = 3) -> float:
    """Seconds one float training epoch of `candidate` takes here, estimated before any training: the model is
    built and its step traced, then `steps` steps are timed and scaled to an epoch (validation included)."""
    import keras

    from ..training import compile_classifier

    model = compile_classifier(candidate.build(channels, classes), 2e-3)
    x, y = data.x_train[:32], data.y_train[:32]
    model.train_on_batch(x, y)  # traces
    begin = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    per_step = (time.perf_counter() - begin) / steps
    batches = -(-len(data.y_train) // 32) + 0.4 * -(-len(data.y_val) // 32)  # a validation step: ~0.4 of one
    keras.backend.clear_session()
    return per_step * batches


def _stage2_trials(chosen: list[Measurement], source: DataSource, classes: int, trial_epochs: int, epochs: int,
                   qat_epochs: int, out: str, clock: Clock, log: Log, callbacks: list[Any],
                   per_mac: float) -> list[Trial]:
    """Train the finalists, largest first, while the budget allows (`per_mac`: estimated seconds per float epoch
    per multiply-add, replaced by each trial's measured time)."""
    folder = os.path.join(out, "trials")
    each = f"{trial_epochs} epoch{'s' if trial_epochs > 1 else ''}"
    if len(chosen) == 1:
        log(f"[2/4] one finalist, nothing to choose between: its first {each} train as the start of its training")
    else:
        log(f"[2/4] which is best: {len(chosen)} finalists, {each} each, ranked by validation accuracy "
            f"({len(source.at(chosen[0].candidate.size).y_val)} held-out training images, each accuracy with its 95% "
            "interval; the test split is not used to choose)")
    trials: list[Trial] = []
    largest = max(m.macs for m in chosen)
    for k, m in enumerate(chosen, start=1):
        c = m.candidate
        saved = os.path.isfile(os.path.join(folder, f"{c.key}.json"))
        if trials and not saved:
            final_cost = (epochs - trial_epochs + QAT_EPOCH_COST * qat_epochs) * per_mac * largest
            estimate = trial_epochs * per_mac * m.macs
            if estimate + final_cost > clock.left:
                log(f"  {k}/{len(chosen)} {c.label}: not trained: about {estimate / 60:.1f} min, and the winner's "
                    f"training needs about {final_cost / 60:.1f} min ({clock.describe()})")
                continue
        trial = run_trial(c, source.at(c.size), classes, source.channels, trial_epochs, folder, clock, log,
                          callbacks, index=f"{k}/{len(chosen)} ", seed=source.seed)
        trials.append(trial)
        if not saved:
            per_mac = trial.seconds_per_epoch / m.macs
        log(f"  {k}/{len(chosen)} {c.label}: validation accuracy {trial.describe()} ({clock.describe()})")
    return trials


def _make_surer(trials: list[Trial], source: DataSource, classes: int, trial_epochs: int, epochs: int,
                qat_epochs: int, out: str, clock: Clock, log: Log, callbacks: list[Any]) -> list[Trial]:
    """Spend budget the winner will not need where it makes the choice surer: while the two best finalists' 95%
    intervals overlap (or every finalist is at chance), every finalist trains `trial_epochs` more epochs, as long
    as the budget keeps the winner's training and QAT and no trial passes the winner's `epochs`."""
    folder = os.path.join(out, "trials")
    while len(trials) > 1:
        best, second = sorted(trials, key=lambda t: -t.val_accuracy)[:2]
        chance = all(t.at_chance(classes) for t in trials)
        if not (chance or within_noise(best, second)):
            break
        why = (f"every finalist is within chance ({1 / classes:.0%})" if chance else
               f"{best.candidate.label} and {second.candidate.label} are within each other's 95% intervals")
        per_epoch = max(t.seconds_per_epoch for t in trials)
        cost = trial_epochs * sum(t.seconds_per_epoch for t in trials)
        final_cost = (max(0, epochs - best.epochs - trial_epochs) + QAT_EPOCH_COST * qat_epochs) * per_epoch
        if max(t.epochs for t in trials) + trial_epochs > epochs or cost + final_cost > clock.left:
            log(f"      {why}; no budget left to train them longer: the choice is not significant")
            break
        log(f"      {why}: each trains {trial_epochs} more epoch{'s' if trial_epochs > 1 else ''} to tell them apart")
        trials = [extend_trial(t, source.at(t.candidate.size), trial_epochs, folder, clock, log, callbacks,
                               index=f"{k}/{len(trials)} ", seed=source.seed) for k, t in enumerate(trials, start=1)]
        for k, t in enumerate(trials, start=1):
            log(f"  {k}/{len(trials)} {t.candidate.label}: validation accuracy {t.describe()} after {t.epochs} epochs")
    return trials
