"""`keras-mbv2 qat`: quantization-aware training of a .keras model to a full-int8 .tflite (resumable), on one
process or as one worker of several (`--multi-worker`, TF_CONFIG)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..distribute import CLUSTER_TIMEOUT
from ..files import check_checkpoint_folder, check_receiving_folder, check_replaceable, run_lock, write_file
from .contract import QUIET, StepFailed, say
from .flags import add_force, positive_float, positive_int
from .inputs import check_data, check_keras_file, check_not_chance, load_data, load_keras, require_suffix

HELP = "quantization-aware fine-tuning to a full-int8 .tflite"
EXAMPLE = "keras-mbv2 qat --model m.keras --data digits --run-dir qat_run --tflite m_int8.tflite"
DESCRIPTION = "Quantization-aware fine-tuning (tfmot) to a full-int8 .tflite; rerun the same command to resume."
ALIASES = {"out_dir": "--run-dir", "representative_data": "--data"}


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    p.add_argument("--model", required=True, help="float .keras model")
    p.add_argument("--data", default="digits", help="'digits' or an image folder (one sub-folder per class)")
    p.add_argument("--epochs", type=positive_int, default=3, help="quantization-aware training epochs in all")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per training step")
    p.add_argument("--learning-rate", type=positive_float, default=1e-4, help="Adam's learning rate")
    p.add_argument("--run-dir", required=True, help="checkpoints and history; rerun to resume")
    p.add_argument("--tflite", required=True, help="output int8 .tflite")
    add_force(p, "--tflite")
    p.add_argument("--multi-worker", action="store_true",
                   help="one of several workers (tf.distribute.MultiWorkerMirroredStrategy): TF_CONFIG names the "
                   "cluster and this worker; run the same command on each; the chief writes --run-dir and --tflite")
    p.add_argument("--cluster-timeout", type=positive_float, default=CLUSTER_TIMEOUT, metavar="SECONDS",
                   help="--multi-worker: how long to wait for every worker of the cluster before giving up, naming "
                   "those that did not answer")


def _cluster_role(args: argparse.Namespace) -> Any:
    """--multi-worker: this process's role in TF_CONFIG's cluster (checked before anything else); else None."""
    if not args.multi_worker:
        return None
    from ..distribute import cluster_role

    role = cluster_role()
    say(f"{role.describe()}: waiting for the cluster's {role.workers} workers (TF_CONFIG; at most "
        f"{args.cluster_timeout:g} s, --cluster-timeout)")
    return role


def check(args: argparse.Namespace) -> None:
    """Usage checks before TensorFlow loads: TF_CONFIG (--multi-worker), --run-dir, --model, --data, --tflite's
    name."""
    role = None
    if args.multi_worker:
        from ..distribute import cluster_role

        role = cluster_role()
    check_checkpoint_folder(args.run_dir, "--run-dir")
    if role is None or role.chief:  # the run folder: not another's, and not in use by another run (named)
        check_receiving_folder(args.run_dir, "--run-dir", [], force=False)
        with run_lock(args.run_dir, "--run-dir", log=say):
            pass
    check_keras_file(args.model)
    check_data(args.data)
    require_suffix("--tflite", args.tflite, ".tflite")


def run(args: argparse.Namespace) -> int:
    """Take the run folder's lock (the chief), then train and convert (`_qat`)."""
    role = _cluster_role(args)
    if role is not None and not role.chief:  # writes nothing of the user's: no lock, no output checks
        return _qat(args, role)
    with run_lock(args.run_dir, "--run-dir", log=say):  # one run per folder, at once
        return _qat(args, role)


def _qat(args: argparse.Namespace, role: Any = None) -> int:
    # a multi-worker strategy first: TensorFlow requires it before any other operation of the process
    strategy = None
    if role is not None:
        from ..distribute import ClusterDidNotAssemble, multi_worker_strategy, wait_for_cluster

        try:
            wait_for_cluster(role, args.cluster_timeout)
        except ClusterDidNotAssemble as exc:
            raise StepFailed(f"{exc}; start every worker with the same command and its own TF_CONFIG task, or raise "
                             "--cluster-timeout (nothing was trained or written)") from None
        strategy = multi_worker_strategy()
        say(f"{role.describe()}: the cluster's {role.workers} workers are connected")
    import tf_keras

    from ..model_checks import check_model_and_data
    from ..quantization import evaluate_tflite, finished_model, fit_qat, quantize_aware, to_tflite
    from ..quantization.qat import epochs_done
    from ..training import fit_progress

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
    model = load_keras(args.model)
    data = load_data(args.data, tuple(model.input_shape[1:]))
    check_model_and_data(model, data.x_train[:1], data.y_train, len(data.class_names), "--model", "--data")
    qat = quantize_aware(model, strategy=strategy)

    def kept() -> str:  # the epochs finished when the signal came
        n = len(epochs_done(args.run_dir))
        if not n:
            return "no epoch had finished (nothing was written to --tflite); run the same command again to start"
        return (f"{n} finished epoch{'s are' if n > 1 else ' is'} saved in {args.run_dir}; run the same command again "
                "to resume (nothing was written to --tflite)")

    args.interrupted = kept
    verbose, progress = fit_progress(tf_keras.callbacks.Callback, args.epochs, say, QUIET.is_set())
    try:
        rows = fit_qat(qat, data.x_train, data.y_train, args.run_dir, epochs=args.epochs,
                       batch_size=args.batch_size, learning_rate=args.learning_rate,
                       validation_data=(data.x_test, data.y_test), verbose=verbose, callbacks=progress, log=say,
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
    check_not_chance(result.accuracy, len(data.class_names), f"the int8 model after {len(rows)} QAT epochs",
                     "Check the float model's accuracy first (keras-mbv2 train), or lower --learning-rate.")
    write_file(args.tflite, tflite)
    print(f"QAT int8 accuracy {result.accuracy:.4f}; saved {args.tflite} ({len(tflite):,} bytes)")
    return 0
