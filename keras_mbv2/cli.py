"""The `keras-mbv2` command line.

The contract (tests/test_cli_contract.py checks it case by case):
- Exit codes: 0 done; 1 a step failed (one line: what and why); 2 bad usage (one line naming the flag the user
  typed and the value); 130 interrupted by Ctrl-C (one line: what was kept, how to resume).
- Nothing is lost: outputs are written under temporary names and renamed into place after success, with the
  user's umask; an existing output is replaced only with --force, and never the current folder, a parent of it,
  the home folder or the root. A step that cannot give a useful result (training that diverged or stayed at
  chance) fails instead of saving it.
- Every number is checked before any work starts; the library's messages are re-worded with the flags.
- Quiet: TensorFlow's native log lines stay off the terminal unless --verbose or --debug; --debug also shows
  tracebacks.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import threading
import traceback
import warnings
from typing import Any, Callable, Sequence

from ._version import __version__
from .files import atomic_write, check_receiving_folder, check_replaceable, run_lock, write_file
from .interrupts import INTERRUPTED, on_ctrl_c, stop_on_ctrl_c
from .models.networks import NETWORKS, build_network

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _stop_on_ctrl_c() -> Any:
    """A Keras callback that raises KeyboardInterrupt at the next batch once Ctrl-C was pressed (`interrupts`)."""
    import keras

    return stop_on_ctrl_c(keras.callbacks.Callback)


QUIET = threading.Event()  # --quiet: no progress lines, only results and errors


def _say(message: str) -> None:
    """A progress line (the phases of long steps), flushed at once; nothing under --quiet."""
    if not QUIET.is_set():
        print(message, flush=True)


# Library arguments that a differently named flag sets: the library's messages name them, the user typed the flag.
LIBRARY_ALIASES = {"alpha": "width", "scale": "width", "directory": "data"}
COMMAND_ALIASES = {
    "qat": {"out_dir": "--run-dir", "representative_data": "--data"},
    "micro": {"out_dir": "--out", "ram_bytes": "--fit-ram", "representative_data": "--data"},
    "export": {"representative_data": "--data"},
    "demo": {"image_size": "--image-size"},
    "search": {"budget_minutes": "--budget", "memory_techniques": "--no-memory-techniques"},
}


class UsageError(ValueError):
    """Bad arguments: exit code 2."""


class StepFailed(RuntimeError):
    """A step ran but could not give a useful result (exit code 1); nothing was saved."""


# -- argument types: each names what it expects; argparse adds the flag ------------------------------------------
def _number(text: str, kind: Callable[[str], Any], what: str, ok: Callable[[Any], bool]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, "a positive integer", lambda v: v >= 1)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (not nan or inf)."""
    return _number(text, float, "a finite positive number", lambda v: v > 0)


def open_fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    return _number(text, float, "a number between 0 and 1 (exclusive)", lambda v: 0 < v < 1)


def number_list(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
    """argparse type: comma-separated numbers (`0.35,0.5`), each positive."""
    what = "integers" if kind is int else "numbers"

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive {what}, got {text!r}") from None
        if not values or any(not (math.isfinite(v) and v > 0) for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated positive {what}, got {text!r}")
        return values

    return parse


def name_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated names."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def image_shape(text: str) -> tuple[int, int, int]:
    """argparse type: HxWxC such as 96x96x3, positive integers."""
    try:
        values = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 96x96x3, got {text!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 96x96x3, got {text!r}")
    return values  # type: ignore[return-value]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show (required, unset, or a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump): `keras-mbv2 build: error: ...`, exit code 2, and every
    flag's default in its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# -- library messages in the user's words --------------------------------------------------------------------------
def command_flags(subparser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Library argument name -> the flag of `command` that sets it."""
    flags = {a.dest: a.option_strings[-1] for a in subparser._actions if a.option_strings and a.dest != "help"}
    flags.update({alias: flags[dest] for alias, dest in LIBRARY_ALIASES.items() if dest in flags})
    flags.update(COMMAND_ALIASES.get(command, {}))
    return flags


def flag_message(message: str, flags: dict[str, str]) -> str:
    """A library message in the user's words: "`alpha`" -> "--width", "Received: alpha=0.5" -> "--width 0.5"."""
    for name, flag in flags.items():
        message = message.replace(f"`{name}`", flag)
        message = re.sub(rf"(?<![\w-]){re.escape(name)}=", f"{flag} ", message)
    return " ".join(message.split())  # one line


# -- shared steps --------------------------------------------------------------------------------------------------
def _require_suffix(flag: str, path: str, suffix: str) -> None:
    if not path.endswith(suffix):
        raise UsageError(f"{flag} must end with {suffix}. Received: {flag} {path!r}")


def _output_file(flag: str, path: str, suffix: str, force: bool) -> None:
    """Check an output file before any work: its suffix, its folder, and that it replaces nothing unasked."""
    _require_suffix(flag, path, suffix)
    check_replaceable(path, flag, force)
    if os.path.isdir(path):
        raise UsageError(f"{flag} is a folder; give a file name ending with {suffix}. Received: {flag} {path!r}")


def _load_keras(path: str, flag: str = "--model") -> Any:
    """A .keras model file, with one clear error for a missing, misnamed or unreadable one."""
    import zipfile

    import keras

    if not os.path.isfile(path):
        raise UsageError(f"{flag} file not found. Received: {flag} {path!r}")
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise UsageError(f"{flag} must be a Keras model saved as .keras (keras-mbv2 build or train writes one). "
                         f"Received: {flag} {path!r}")
    try:
        return keras.models.load_model(path)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{flag} could not be loaded as a Keras model ({reason[:200]}). Received: {flag} {path!r}"
                         ) from exc


def _load_data(spec: str, shape: tuple[int, int, int]) -> Any:
    """--data: "digits" (bundled) or an image folder with one sub-folder per class -> a datasets.Split."""
    from .datasets import load_digits, load_image_folder

    h, w, c = shape
    if h != w:
        raise UsageError(f"--data needs a square model input. Received: input shape {h}x{w}x{c}")
    if c not in (1, 3):
        raise UsageError(f"--data gives 1- or 3-channel images. Received: input shape {h}x{w}x{c}")
    if spec == "digits":
        return load_digits(image_size=h, channels=c)
    if not os.path.isdir(spec):
        raise UsageError(f"--data must be 'digits' or an image folder. Received: --data {spec!r}")
    return load_image_folder(spec, image_size=h, channels=c)


def _check_not_chance(accuracy: float, classes: int, what: str, advice: str) -> None:
    """Fail (nothing saved) when a trained model scores no better than guessing."""
    if not accuracy > 1.5 / classes:
        raise StepFailed(f"{what} scores {accuracy:.1%} on the test split, chance level for {classes} classes; "
                         f"nothing was saved. {advice}")


def _add_network_args(p: argparse.ArgumentParser, classes: bool = True) -> None:
    p.add_argument("--network", default="mobilenet_v2", choices=list(NETWORKS), help="which of the four networks")
    p.add_argument("--width", type=positive_float, default=None,
                   help="alpha (MobileNets) or scale (ShuffleNet); None: the network's 1.0")
    p.add_argument("--groups", type=positive_int, default=None,
                   help="ShuffleNet groups (1, 2, 3, 4, 8); None: 3")
    p.add_argument("--input-shape", type=image_shape, default=(224, 224, 3), help="HxWxC, e.g. 96x96x3")
    if classes:
        p.add_argument("--classes", type=positive_int, default=1000, help="output classes")
    p.add_argument("--memory-splits", type=positive_int, default=None, metavar="S",
                   help="mobilenet_v2: compute each expanding block in S channel slices (paper Section 5.1); "
                   "None: unsplit")


def _network(args: argparse.Namespace, classes: int, **kwargs: Any) -> Any:
    return build_network(args.network, args.input_shape, args.width, args.groups, classes,
                         memory_splits=args.memory_splits, **kwargs)


def _add_force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"replace {what} if it exists")


# -- commands ------------------------------------------------------------------------------------------------------
def cmd_build(args: argparse.Namespace) -> int:
    """`keras-mbv2 build`: build a network and save it as .keras."""
    _output_file("--out", args.out, ".keras", args.force)
    model = _network(args, args.classes)
    atomic_write(args.out, model.save, ".keras")
    print(f"saved {model.name} ({model.count_params():,} params, untrained) to {args.out}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """`keras-mbv2 profile`: params, MAdds and activation memory per layer of a built or saved model."""
    from .profiler import profile

    model = _load_keras(args.model) if args.model else _network(args, args.classes)
    print(profile(model, args.bytes_per_activation).table())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """`keras-mbv2 compare`: the paper's Tables 3 and 4 beside our measurements."""
    from .compare import compare, format_rows

    if args.size < 32:
        raise UsageError(f"--size must be at least 32 (the networks' strides). Received: --size {args.size}")
    print(format_rows(compare(args.size)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`keras-mbv2 train`: train a network in float on the digits or an image folder and save it."""
    import keras
    import numpy as np

    from .models.batch_norm import warn_if_stale_batch_norms
    from .training import compile_classifier, fit_progress

    _output_file("--out", args.out, ".keras", args.force)
    data = _load_data(args.data, args.input_shape)
    classes = len(data.class_names)
    model = _network(args, classes, bn_momentum=args.bn_momentum)
    print(f"training {model.name} ({model.count_params():,} params) on {len(data.y_train)} images of {classes} "
          f"classes, {args.epochs} epochs", flush=True)
    compile_classifier(model, args.learning_rate)
    verbose, progress = fit_progress(keras.callbacks.Callback, args.epochs, _say, QUIET.is_set())
    history = model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(data.x_test, data.y_test), verbose=verbose,
                        callbacks=[keras.callbacks.TerminateOnNaN(), _stop_on_ctrl_c(), *progress])
    losses = history.history.get("loss", [])
    if not losses or not np.isfinite(losses[-1]):
        raise StepFailed(f"training diverged (loss {losses[-1] if losses else 'nan'} in epoch {len(losses)}); nothing "
                         f"was saved. Lower --learning-rate (was {args.learning_rate:g}).")
    accuracy = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    print(f"test accuracy {accuracy:.4f} ({len(data.y_test)} images)")
    _check_not_chance(accuracy, classes, "the trained model",
                      "Train longer (--epochs), change --learning-rate, or check --data.")
    warn_if_stale_batch_norms(model, data.x_train)
    atomic_write(args.out, model.save, ".keras")
    print(f"saved {args.out}")
    return 0


def _cluster_role(args: argparse.Namespace) -> Any:
    """--multi-worker: this process's role in TF_CONFIG's cluster (checked before anything else); else None."""
    if not args.multi_worker:
        return None
    from .distribute import cluster_role

    role = cluster_role()
    _say(f"{role.describe()}: waiting for the cluster's {role.workers} workers (TF_CONFIG)")
    return role


def cmd_qat(args: argparse.Namespace) -> int:
    """`keras-mbv2 qat`: quantization-aware training of a .keras model to a full-int8 .tflite (resumable)."""
    _require_suffix("--tflite", args.tflite, ".tflite")
    role = _cluster_role(args)
    if role is not None and not role.chief:  # writes nothing of the user's: no lock, no output checks
        return _qat(args, role)
    check_receiving_folder(args.run_dir, "--run-dir", [], force=False)
    with run_lock(args.run_dir, "--run-dir", log=_say):  # one run per folder, at once
        return _qat(args, role)


def _qat(args: argparse.Namespace, role: Any = None) -> int:
    # a multi-worker strategy first: TensorFlow requires it before any other operation of the process
    strategy = None
    if role is not None:
        from .distribute import multi_worker_strategy

        strategy = multi_worker_strategy()
    import tf_keras

    from .model_checks import check_model_and_data
    from .quantization import evaluate_tflite, finished_model, fit_qat, quantize_aware, to_tflite
    from .quantization.qat import epochs_done
    from .training import fit_progress

    done = epochs_done(args.run_dir)
    if role is not None and not role.chief and len(done) >= args.epochs:
        print(f"nothing to do: {args.run_dir} finished {len(done)} epochs ({role.describe()})")
        return 0
    if os.path.exists(args.tflite) and not args.force and (role is None or role.chief):
        if len(done) >= args.epochs:
            print(f"nothing to do: {args.run_dir} finished {len(done)} epochs and {args.tflite} exists "
                  "(--force converts the finished run again)")
            return 0
        check_replaceable(args.tflite, "--tflite", force=False)
    check_replaceable(args.tflite, "--tflite", force=True)
    model = _load_keras(args.model)
    data = _load_data(args.data, tuple(model.input_shape[1:]))
    check_model_and_data(model, data.x_train[:1], data.y_train, len(data.class_names), "--model", "--data")
    qat = quantize_aware(model, strategy=strategy)
    args.interrupted = (f"finished epochs are saved in {args.run_dir}; run the same command again to resume "
                        "(nothing was written to --tflite)")
    verbose, progress = fit_progress(tf_keras.callbacks.Callback, args.epochs, _say, QUIET.is_set())
    try:
        rows = fit_qat(qat, data.x_train, data.y_train, args.run_dir, epochs=args.epochs,
                       batch_size=args.batch_size, learning_rate=args.learning_rate,
                       validation_data=(data.x_test, data.y_test), verbose=verbose, callbacks=progress, log=_say,
                       strategy=strategy)
    except Exception as exc:
        import tensorflow as tf

        if role is None or not isinstance(exc, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)):
            raise
        lost = " ".join(str(getattr(exc, "message", exc)).split())
        lost = lost[lost.find("The following tasks"):][:160] if "The following tasks" in lost else lost[:160]
        raise StepFailed(f"a worker of the cluster was lost ({lost}); the finished epochs are saved in "
                         f"{args.run_dir}: start every worker again with the same command to resume") from exc
    if role is not None and not role.chief:
        print(f"{role.describe()}: {len(rows)} epochs done; the chief writes {args.run_dir} and {args.tflite}")
        return 0
    if len(done) >= args.epochs:
        print(f"{args.run_dir} had finished {len(done)} epochs: converting its last epoch's weights")
    tflite = to_tflite(qat if strategy is None else finished_model(model, args.run_dir), data.x_train[:200])
    result = evaluate_tflite(tflite, data.x_test, data.y_test)
    _check_not_chance(result.accuracy, len(data.class_names), f"the int8 model after {len(rows)} QAT epochs",
                      "Check the float model's accuracy first (keras-mbv2 train), or lower --learning-rate.")
    write_file(args.tflite, tflite)
    print(f"QAT int8 accuracy {result.accuracy:.4f}; saved {args.tflite} ({len(tflite):,} bytes)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`keras-mbv2 export`: convert a .keras model to TFLite (int8 post-training quantization, or float)."""
    from .quantization import to_tflite

    _output_file("--out", args.out, ".tflite", args.force)
    model = _load_keras(args.model)
    calibration = _load_data(args.data, tuple(model.input_shape[1:])).x_train[:200] if args.quantize == "int8" else None
    data = to_tflite(model, calibration, quantize=args.quantize)
    write_file(args.out, data)
    print(f"saved {args.out} ({len(data):,} bytes, {args.quantize})")
    return 0


def cmd_micro(args: argparse.Namespace) -> int:
    """`keras-mbv2 micro`: TFLite Micro C files for an int8 model, or fit a .keras model into a RAM budget first."""
    from .micro import emit, fit_ram
    from .micro.emitter import emitted_names

    labels = args.labels.split(",") if args.labels else None
    if (args.tflite is None) == (args.model is None):
        raise UsageError("give exactly one of --tflite (an int8 model) and --model (a .keras model, with --fit-ram). "
                         f"Received: --tflite {args.tflite!r} --model {args.model!r}")
    if args.tflite is not None and args.fit_ram is not None:
        raise UsageError("--fit-ram splits the blocks of a Keras model before quantization: pass --model "
                         f"m.keras instead of --tflite. Received: --tflite {args.tflite!r} --fit-ram {args.fit_ram}")
    if args.model is not None and args.fit_ram is None:
        raise UsageError(f"--model needs --fit-ram BYTES (or convert with `keras-mbv2 export` and pass --tflite). "
                         f"Received: --model {args.model!r}")
    if (args.out is None) == (args.project is None):
        raise UsageError("give exactly one of --out (the model's C files) and --project (a whole firmware project). "
                         f"Received: --out {args.out!r} --project {args.project!r}")
    if args.save_model is not None:
        _output_file("--save-model", args.save_model, ".keras", args.force)
    if args.project is not None:
        check_replaceable(args.project, "--project", args.force)
    else:
        check_receiving_folder(args.out, "--out", emitted_names(args.name), args.force)
    emit_args = dict(name=args.name, board=args.board, labels=labels, memory_plan=not args.no_offline_plan)

    def write(model: Any) -> None:
        if args.project is None:
            print(emit(model, args.out, **emit_args))
            return
        from .micro import write_project

        report = write_project(model, args.project, force=args.force, flag="--project", **emit_args)
        print(report)
        print(f"project {args.project}: firmware sources, project.mk and README.md (build: make -C {args.project} "
              "model-objects)")

    if args.tflite is not None:
        if args.test_images:
            from .tflite import io_details, read_tflite

            data = _load_data(args.data, io_details(read_tflite(args.tflite))["input_shape"][1:])
            emit_args.update(test_images=data.x_test[:args.test_images], test_labels=data.y_test[:args.test_images])
        write(args.tflite)
        return 0
    model = _load_keras(args.model)
    data = _load_data(args.data, tuple(model.input_shape[1:]))
    result = fit_ram(model, args.fit_ram, data.x_train[:200], log=_say)
    print(result)
    if args.test_images:
        emit_args.update(test_images=data.x_test[:args.test_images], test_labels=data.y_test[:args.test_images])
    write(result.patched or result.tflite)
    if args.save_model:
        atomic_write(args.save_model, result.model.save, ".keras")
        print(f"split model saved to {args.save_model} (quantization-aware training: keras-mbv2 qat --model ...)")
    return 0


def cmd_check_app(args: argparse.Namespace) -> int:
    """`keras-mbv2 check-app`: the firmware's scores against the host runtime's, and its per-operator profile."""
    from .micro import check_app_output, parse_app_output, profile_by_operator

    if not os.path.isfile(args.log):
        raise UsageError(f"--log file not found. Received: --log {args.log!r}")
    with open(args.log, errors="replace") as f:
        text = f.read()
    output = parse_app_output(text)
    agreement = check_app_output(text, args.dir, args.name)
    print(f"arena used {output.arena_used:,} of {output.arena_size:,} B; {len(output.images)} images; "
          f"scores vs the TFLite Micro host runtime: {agreement}")
    for kind, count, ticks, share in profile_by_operator(output):
        print(f"{kind:<20}{count:>4} x {ticks:>14,} {output.tick_unit:<14}{share:>7.1%}")
    if not agreement.identical:
        raise StepFailed(f"the firmware's scores differ from the host runtime's: {agreement}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """`keras-mbv2 figures`: the paper's Figures 3 and 4 drawn from the blocks, and evolution.md."""
    from .figures import make_figures
    from .files import output_folder

    args.interrupted = f"nothing was written to {args.out} (it is written only when complete)"
    with output_folder(args.out, "--out", args.force) as work:
        written = make_figures(work, quick=args.quick, log=_say)
    for path in written:
        print(f"wrote {os.path.join(args.out, os.path.basename(path))}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`keras-mbv2 demo`: the whole job on the bundled digits (see `keras_mbv2.demo.run_demo`)."""
    from .demo import DEFAULTS, QUICK, run_demo

    check_replaceable(args.out, "--out", args.force)
    args.interrupted = f"nothing was written to {args.out} (the demo writes it only when it completes)"
    base = QUICK if args.quick else DEFAULTS  # a flag given applies, with or without --quick
    epochs = args.epochs if args.epochs is not None else base["epochs"]
    qat_epochs = args.qat_epochs if args.qat_epochs is not None else base["qat_epochs"]
    result = run_demo(args.out, network=args.network, width=args.width, groups=args.groups,
                      image_size=args.image_size, epochs=epochs, qat_epochs=qat_epochs, force=args.force,
                      seed=args.seed, log=_say)
    print()
    print(result.table())
    print(f"report  {os.path.join(result.out_dir, 'report.md')}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """`keras-mbv2 search`: the most accurate model of a grid that fits a board (see `keras_mbv2.search`)."""
    from .search import search

    if args.board is None and (args.flash is None or args.ram is None):
        raise UsageError(f"give --board NAME, or --flash BYTES and --ram BYTES. Received: --flash {args.flash} "
                         f"--ram {args.ram}")
    args.interrupted = (f"what finished (stage 1's measurements, each finished trial and epoch) is kept in "
                        f"{args.out}; run the same command again to continue")
    result = search(args.out, data=args.data, board=args.board, flash=args.flash, ram=args.ram,
                    networks=args.networks, widths=args.widths, sizes=args.sizes, expansions=args.expansions,
                    max_macs=args.max_macs, budget_minutes=args.budget, finalists=args.finalists,
                    trial_epochs=args.trial_epochs, epochs=args.epochs, qat_epochs=args.qat_epochs,
                    memory_techniques=not args.no_memory_techniques, quick=args.quick, seed=args.seed, log=_say)
    print()
    print(result.table())
    print(f"report  {os.path.join(result.out_dir, 'report.md')}")
    return 0


def _boards() -> list[str]:
    from .micro.boards import BOARDS

    return sorted(BOARDS)


def make_parser() -> argparse.ArgumentParser:
    """The `keras-mbv2` argument parser with one sub-command per job."""
    parser = _Parser(prog="keras-mbv2",
                     description="MobileNetV2-paper networks for Keras 3, on the way to microcontrollers.")
    parser.add_argument("--version", action="version", version=f"keras-mbv2 {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    for p in (parser, common):  # before or after the command; on the command, only when typed
        default = False if p is parser else argparse.SUPPRESS
        p.add_argument("--debug", action="store_true", default=default, help="show tracebacks and TensorFlow's logs")
        p.add_argument("--verbose", action="store_true", default=default, help="show TensorFlow's own log lines")
        p.add_argument("--quiet", action="store_true", default=default,
                       help="no progress lines (phases, epochs, steps): only results, warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = sub.choices  # command -> its parser, for flag_message

    def command(name: str, help: str, example: str, func: Callable[[argparse.Namespace], int],
                description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:] + ".",
                           epilog=f"example: {example}", parents=[common])
        p.set_defaults(func=func)
        return p

    p = command("demo", "the whole job on the bundled digits: train, QAT, int8, TFLM, micro files",
                "keras-mbv2 demo --out my-demo --network mobilenet_v2 --width 0.35", cmd_demo,
                "Train a small network on the bundled digits, quantize it (PTQ and QAT), check it on TFLite Micro, "
                "emit the C files, and write report.md with plots.")
    p.add_argument("--out", default="keras-mbv2-demo", help="output folder (default ./keras-mbv2-demo)")
    _add_force(p, "--out (a non-empty folder)")
    p.add_argument("--network", default="mobilenet_v2", choices=list(NETWORKS), help="which of the four networks")
    p.add_argument("--width", type=positive_float, default=None,
                   help="alpha / scale; None: the network's demo width (" + ", ".join(
                       f"{n.name} {n.demo_width}" for n in NETWORKS.values() if n.demo_width) + ")")
    p.add_argument("--groups", type=positive_int, default=None, help="ShuffleNet groups; None: 3")
    p.add_argument("--image-size", type=positive_int, default=32, help="digits resized to SIZExSIZE")
    p.add_argument("--epochs", type=positive_int, default=None, help="float training epochs; None: 15 (quick: 3)")
    p.add_argument("--qat-epochs", type=positive_int, default=None,
                   help="quantization-aware training epochs; None: 3 (quick: 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed prints the same table")
    p.add_argument("--quick", action="store_true",
                   help="a short run that checks an installation: 3 float and 1 QAT epochs (accuracy lower); "
                   "--epochs and --qat-epochs given still apply")

    p = command("build", "build a network (untrained) and save it as .keras",
                "keras-mbv2 build --network mobilenet_v2 --width 0.35 --input-shape 96x96x3 --out m96.keras",
                cmd_build)
    _add_network_args(p)
    p.add_argument("--out", required=True, help="output .keras file")
    _add_force(p, "--out")

    p = command("profile", "params, MAdds and peak activation memory per layer",
                "keras-mbv2 profile --network shufflenet_v1 --groups 3 --width 0.5", cmd_profile)
    _add_network_args(p)
    p.add_argument("--model", help="profile a saved .keras model instead of building one")
    p.add_argument("--bytes-per-activation", type=int, choices=(1, 2, 4), default=1,
                   help="1 int8 (default), 2 the paper's 16-bit, 4 float")

    p = command("train", "train a network in float", "keras-mbv2 train --data digits --width 0.35 --out m.keras",
                cmd_train)
    _add_network_args(p, classes=False)  # the classes are the data's
    p.add_argument("--data", default="digits", help="'digits' or an image folder (one sub-folder per class)")
    p.add_argument("--epochs", type=positive_int, default=15, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per training step")
    p.add_argument("--learning-rate", type=positive_float, default=2e-3, help="Adam's learning rate")
    p.add_argument("--bn-momentum", type=open_fraction, default=0.9, help="0.9 trains small data sets well")
    p.add_argument("--out", required=True, help="output .keras file")
    _add_force(p, "--out")
    p.set_defaults(input_shape=(32, 32, 1))

    p = command("qat", "quantization-aware fine-tuning to a full-int8 .tflite",
                "keras-mbv2 qat --model m.keras --data digits --run-dir qat_run --tflite m_int8.tflite", cmd_qat,
                "Quantization-aware fine-tuning (tfmot) to a full-int8 .tflite; rerun the same command to resume.")
    p.add_argument("--model", required=True, help="float .keras model")
    p.add_argument("--data", default="digits", help="'digits' or an image folder (one sub-folder per class)")
    p.add_argument("--epochs", type=positive_int, default=3, help="quantization-aware training epochs in all")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per training step")
    p.add_argument("--learning-rate", type=positive_float, default=1e-4, help="Adam's learning rate")
    p.add_argument("--run-dir", required=True, help="checkpoints and history; rerun to resume")
    p.add_argument("--tflite", required=True, help="output int8 .tflite")
    _add_force(p, "--tflite")
    p.add_argument("--multi-worker", action="store_true",
                   help="one of several workers (tf.distribute.MultiWorkerMirroredStrategy): TF_CONFIG names the "
                   "cluster and this worker; run the same command on each; the chief writes --run-dir and --tflite")

    p = command("export", "convert a .keras model to TFLite (int8 PTQ or float)",
                "keras-mbv2 export --model m.keras --quantize int8 --data digits --out m_ptq.tflite", cmd_export,
                "Convert a .keras model to TFLite: full-int8 post-training quantization or float.")
    p.add_argument("--model", required=True, help="a .keras model")
    p.add_argument("--quantize", choices=("int8", "float"), default="int8",
                   help="full int8 (post-training, calibrated on --data) or float")
    p.add_argument("--data", default="digits", help="calibration data for int8: 'digits' or an image folder")
    p.add_argument("--out", required=True, help="output .tflite file")
    _add_force(p, "--out")

    p = command("micro", "TFLite Micro C files, measured arena and board check",
                "keras-mbv2 micro --tflite m_int8.tflite --out micro_out --board nucleo-f746zg "
                "(or --project app for a whole firmware project; to fit a RAM budget: --model m.keras --fit-ram "
                "160000 --data digits instead of --tflite)",
                cmd_micro,
                "Emit TFLite Micro C arrays, settings and op resolver for an int8 .tflite. With --model and "
                "--fit-ram, first split the inverted residual blocks (paper Section 5.1) just enough for the arena "
                "to fit the RAM budget, and report the arena before and after.")
    p.add_argument("--tflite", default=None, help="an int8 .tflite model")
    p.add_argument("--model", default=None, help="a .keras model to split for --fit-ram and convert (int8 PTQ)")
    p.add_argument("--fit-ram", type=positive_int, default=None, metavar="BYTES",
                   help="RAM for inference: split blocks until kTensorArenaSize fits; below the split floor, run the "
                   "early stage in patches (arena + stage buffer + input band must fit)")
    p.add_argument("--data", default="digits", help="calibration data for --model: 'digits' or an image folder")
    p.add_argument("--save-model", default=None, help="also save the split .keras model (for QAT)")
    p.add_argument("--out", default=None, help="output folder for the model's C files")
    p.add_argument("--project", default=None, metavar="DIR",
                   help="instead of --out: a self-contained firmware project (the app, Makefile, self-test, the "
                   "model's files in DIR/model, and a README naming the board, core, arena and how to build and run)")
    _add_force(p, "the files of the same name in --out, or the --project folder")
    p.add_argument("--name", default="model", help="C identifier used in file and symbol names")
    p.add_argument("--board", default=None, help="check flash/RAM: " + ", ".join(_boards()))
    p.add_argument("--labels", default=None, help="comma-separated class names")
    p.add_argument("--no-offline-plan", action="store_true",
                   help="keep TFLM's own activation placement even where an offline plan needs less")
    p.add_argument("--test-images", type=positive_int, default=None, metavar="N",
                   help="embed the first N test images of --data (quantized) for the app and `make run-app`")

    p = command("check-app", "compare the firmware's scores with the TFLite Micro host runtime",
                "make -C app run-app TFLM_DIR=~/tflite-micro > app.log; "
                "keras-mbv2 check-app --log app.log --dir app/model", cmd_check_app,
                "Read what the firmware's app printed (QEMU or a board's serial log) and compare the int8 scores of "
                "its embedded test images bit for bit with the TFLite Micro host runtime; print the per-operator "
                "profile.")
    p.add_argument("--log", required=True, help="the app's output")
    p.add_argument("--dir", required=True, help="the folder keras-mbv2 micro --test-images wrote")
    p.add_argument("--name", default="model", help="the --name given to keras-mbv2 micro")

    p = command("figures", "the paper's Figures 3 and 4 drawn from the blocks, and the claims measured",
                "keras-mbv2 figures --out figs --quick", cmd_figures,
                "Draw the paper's Figure 3 (regular conv -> separable -> linear bottleneck -> inverted residual) and "
                "Figure 4 (the four networks' blocks) from the keras_mbv2 blocks themselves, each panel annotated with "
                "the profiler's params, multiply-adds and memory, and write evolution.md with the paper's cost and "
                "memory claims measured.")
    p.add_argument("--out", default="keras-mbv2-figures", help="output folder")
    _add_force(p, "--out (a non-empty folder)")
    p.add_argument("--quick", action="store_true", help="figures 3 and 4 and the cost and memory sections only")

    p = command("search", "the most accurate model of a grid that fits a board: measured, trained, emitted",
                "keras-mbv2 search --board arduino-nano-33-ble --data digits --quick --out s", cmd_search,
                "Find the most accurate network that fits a board. Stage 1 (no training): every candidate of a grid "
                "of widths, input sizes and expansions that decides is converted to int8 and measured on the TFLite "
                "Micro host runtime, with channel splits and patch-based inference allowed. Stage 2: the fitting "
                "candidates with the most multiply-adds train for a few equal epochs and the best on held-out "
                "validation data trains on, is quantized (QAT), checked on TFLM and emitted as a firmware project, "
                "with report.md and front.png. Rerun the same command to continue an interrupted search.")
    p.add_argument("--board", default=None, help="the board to fit: " + ", ".join(_boards()))
    p.add_argument("--flash", type=positive_int, default=None, metavar="BYTES",
                   help="instead of --board: the chip's flash (code reserve taken off, as for the boards)")
    p.add_argument("--ram", type=positive_int, default=None, metavar="BYTES",
                   help="instead of --board: the chip's RAM (application reserve taken off, as for the boards)")
    p.add_argument("--data", default="digits", help="'digits' or an image folder (one sub-folder per class)")
    p.add_argument("--out", default="keras-mbv2-search", help="the run folder")
    p.add_argument("--networks", type=name_list, default="mobilenet_v2",
                   help="comma-separated: mobilenet_v2, mobilenet_v1, shufflenet_v1")
    p.add_argument("--widths", type=number_list(float), default=None,
                   help="comma-separated width multipliers; None: each network's grid (mobilenet_v2: 0.35,0.5,0.75,1)")
    p.add_argument("--sizes", type=number_list(int), default=None,
                   help="comma-separated input sizes; None: 64,80,...,160 (quick: 80,96,112,128)")
    p.add_argument("--expansions", type=number_list(int), default=None,
                   help="mobilenet_v2's expansion factors t; None: 4,6 (quick: 6)")
    p.add_argument("--max-macs", type=positive_int, default=None, metavar="N",
                   help="leave out candidates with more multiply-adds (a latency proxy)")
    p.add_argument("--budget", type=positive_float, default=None, metavar="MINUTES",
                   help="time for training (trials, final, QAT); None: 60 (quick: 10)")
    p.add_argument("--finalists", type=positive_int, default=None, help="candidates trained; None: 3 (quick: 2)")
    p.add_argument("--trial-epochs", type=positive_int, default=None,
                   help="epochs each finalist trains; None: 3 (quick: 1)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="the winner's float epochs in all; None: 15 (quick: 4)")
    p.add_argument("--qat-epochs", type=positive_int, default=None, help="QAT epochs; None: 3 (quick: 1)")
    p.add_argument("--no-memory-techniques", action="store_true",
                   help="no channel splits or patches: only models that fit as built")
    p.add_argument("--quick", action="store_true",
                   help="a small grid and short training (about 10 minutes on 2 cores); flags given still apply")
    p.add_argument("--seed", type=int, default=0, help="random seed (data split, weights, kernels)")

    p = command("compare", "the paper's Tables 3 and 4 beside measured values", "keras-mbv2 compare", cmd_compare)
    p.add_argument("--size", type=positive_int, default=224, help="input resolution (default 224, as in the paper)")
    return parser


def _quiet_python_logs() -> None:
    """TensorFlow's and absl's Python loggers to errors only (their native lines are captured separately)."""
    import logging

    for name in ("tensorflow", "absl", "tf_keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*HDF5 file via `model.save\(\)`.*")
    warnings.filterwarnings("ignore", message=r".*does not have any trainable weights.*")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `keras-mbv2 ARGV`; returns the exit code (0 done, 1 a step failed, 2 bad usage, 130 interrupted)."""
    from .logs import STARTUP, native_stderr_to

    parser = make_parser()
    args = parser.parse_args(argv)  # argparse exits 2 with a one-line message on bad usage
    loud = args.debug or args.verbose
    if loud:
        os.environ["KERAS_MBV2_VERBOSE"] = "1"
        sys.stderr.write("".join(STARTUP))
    else:
        _quiet_python_logs()
    captured: list[str] = []
    name = f"keras-mbv2 {args.command}"
    def one_line_warning(message: Any, category: Any, *rest: Any, **kwargs: Any) -> None:
        print(f"{name}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = one_line_warning
    INTERRUPTED.clear()
    QUIET.clear()
    if args.quiet:
        QUIET.set()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if in_main_thread else None
    try:
        with native_stderr_to(captured):
            return args.func(args)
    except KeyboardInterrupt:
        kept = getattr(args, "interrupted", "nothing was written")
        print(f"\n{name}: interrupted: {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as exc:  # UsageError and our validation errors, which name the argument and value
        if args.debug:
            traceback.print_exc()
        message = flag_message(str(exc), command_flags(parser.commands[args.command], args.command))
        print(f"{name}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a step that failed
        if args.debug:
            traceback.print_exc()
            sys.stderr.write("".join(captured))
        reason = " ".join(str(exc).split()) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: " + \
            " ".join(str(exc).split())[:500]
        print(f"{name}: failed: {reason}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
