"""`keras-mbv2 train`: train a network in float on the digits or an image folder and save it."""

from __future__ import annotations

import argparse
import os
import warnings
from typing import Any

from ..files import atomic_write
from .contract import QUIET, ProcessLost, StepFailed, UsageError, say, stop_on_ctrl_c_callback
from .flags import add_force, add_network_args, network, open_fraction, positive_float, positive_int
from .inputs import check_not_chance, data_channels, load_data, output_file

HELP = "train a network in float"
EXAMPLE = "keras-mbv2 train --data digits --width 0.35 --out m.keras"


def add_flags(p: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_network_args(p, classes=False)  # the classes are the data's
    p.add_argument("--data", default="digits", help="'digits' or an image folder (one sub-folder per class)")
    p.add_argument("--epochs", type=positive_int, default=15, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per training step")
    p.add_argument("--learning-rate", type=positive_float, default=2e-3, help="Adam's learning rate")
    p.add_argument("--bn-momentum", type=open_fraction, default=0.9, help="0.9 trains small data sets well")
    p.add_argument("--out", required=True, help="output .keras file")
    add_force(p, "--out")
    p.set_defaults(input_shape=None)
    p.add_argument("--validation-fraction", type=open_fraction, default=0.2,
                   help="training images held out (stratified, seeded) to validate each epoch; the test split is only "
                   "reported at the end")
    p.add_argument("--seed", type=int, default=0, help="random seed of the validation split")
    p.add_argument("--history", default=None, metavar="CSV",
                   help="also write each epoch's loss and accuracy to this .csv file (Keras' CSVLogger's columns), "
                   "rewritten whole after each epoch")
    p.add_argument("--multi-worker", action="store_true",
                   help="one of several processes training one model with Keras 3 on JAX (keras.distribution): "
                   "KERAS_DISTRIBUTION_JOB_ADDRESSES / _NUM_PROCESSES / _PROCESS_ID (or TF_CONFIG) name the cluster "
                   "and this process; run the same command on each; --batch-size is the global batch; process 0 "
                   "writes --out and --history; rerun all after a failure to resume from the last finished epoch")


def input_shape(args: argparse.Namespace) -> tuple[int, int, int]:
    """--input-shape, or 32x32 with --data's channels (1 for the digits, 3 for a folder of colour images); a shape
    whose channels differ from a folder's images is used as given, with one warning line."""
    channels = data_channels(args.data)
    if args.input_shape is None:
        return (32, 32, channels)
    h, w, c = args.input_shape
    if args.data != "digits" and c != channels:
        warnings.warn(f"--data's images are {'in colour' if channels == 3 else 'grayscale'} and --input-shape "
                      f"{h}x{w}x{c} makes them {'grayscale' if c == 1 else '3-channel'}; leave --input-shape out to "
                      f"follow the data", UserWarning, stacklevel=2)
    return args.input_shape


def backup_folder(out: str) -> str:
    """Where --multi-worker processes keep their epoch backups (Keras' BackupAndRestore, one folder per process)
    beside --out until the run ends: its presence means a rerun resumes."""
    return os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.multi-worker")


def kept_epochs(done: int, backups: str) -> str:
    """`epoch 1 is kept in BACKUPS` or `epochs 1-N are kept in BACKUPS`: the finished epochs a rerun resumes after
    (`done` at least 1)."""
    return f"epoch 1 is kept in {backups}" if done == 1 else f"epochs 1-{done} are kept in {backups}"


def lost_process(cluster: Any, exc: BaseException, finished: list[int], backups: str) -> str:
    """The one line a process says when JAX's collectives fail during `fit` because another process of the cluster
    was lost (killed, crashed, its machine gone): what JAX said, what is kept, how to resume."""
    said = " ".join(str(exc).split())
    said = said[said.find("Gloo"):] if "Gloo" in said else said
    done = finished[-1] if finished else 0
    kept = kept_epochs(done, backups) if done else \
        f"no epoch finished in this run; earlier ones, if any, are kept in {backups}"
    return (f"another process of the cluster was lost (this is process {cluster.index} of {cluster.count}; JAX: "
            f"{said[:160]}); {kept}: start every process again with the same command to resume after the last "
            f"finished epoch")


def check(args: argparse.Namespace) -> None:
    """Usage checks before Keras loads: --multi-worker's cluster and backend, --out, --history, --data and its
    channels against --input-shape."""
    args.cluster = None
    if args.multi_worker:
        from ..distribute import process_cluster

        args.cluster = process_cluster()
        backend = os.environ.get("KERAS_BACKEND")
        if backend not in (None, "", "jax"):
            raise UsageError(f"--multi-worker trains with Keras 3 on JAX (keras.distribution): unset KERAS_BACKEND "
                             f"or set it to jax. Received: KERAS_BACKEND={backend!r}")
        os.environ["KERAS_BACKEND"] = "jax"  # before Keras loads (the CLI loads it after these checks)
        if args.batch_size % args.cluster.count:
            raise UsageError(f"--batch-size is the global batch, split evenly over the {args.cluster.count} "
                             f"processes: give a multiple of {args.cluster.count}. Received: --batch-size "
                             f"{args.batch_size}")
    output_file("--out", args.out, ".keras", args.force)
    args.resuming = bool(args.multi_worker and os.path.isdir(backup_folder(args.out)))
    if args.history is not None and not args.resuming:  # a resumed run appends to its own history
        output_file("--history", args.history, ".csv", args.force)
    args.input_shape = input_shape(args)


#: In the training process that a `train --multi-worker` command starts (`supervise`): the read end of a pipe whose
#: write end only the supervising process holds, so that the training process ends when its supervisor is gone.
SUPERVISOR_FD = "KERAS_MBV2_SUPERVISOR_FD"


def _fd(stream: Any) -> Any:
    """`stream`'s descriptor, or None (inherit) when it has none (pytest's capture, a notebook)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def supervise(args: argparse.Namespace) -> int:
    """Run this `train --multi-worker` command in a child process and wait for it: its exit code is the command's.

    JAX's runtime can end a process of the cluster with SIGABRT when another is lost (gloo's transport thread
    throwing "Connection reset by peer" outside any collective; the coordination service when a process misses its
    heartbeats; JAX's shutdown waiting on the lost process), before or instead of the error `run` turns into one
    line. So the training runs in a child, and a child ended by a signal becomes one line here, saying what is kept:
    the same contract on every path. SIGINT and SIGTERM are passed on to the child, which stops as any command does
    and says what it kept; the child has its own process group (Ctrl-C reaches it once, through here) and ends when
    this process is gone (it holds a pipe only this process writes to)."""
    import signal
    import subprocess
    import sys
    import threading

    from ..training import backup_epoch

    cluster = args.cluster
    read, write = os.pipe()
    sys.stdout.flush()
    child = subprocess.Popen([sys.executable, "-m", "keras_mbv2.cli", *args.argv], pass_fds=(read,),
                             env={**os.environ, SUPERVISOR_FD: str(read)}, stdout=_fd(sys.stdout),
                             stderr=_fd(sys.stderr), start_new_session=True)
    os.close(read)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    main_thread = threading.current_thread() is threading.main_thread()  # where Python handles signals
    if main_thread:
        wakeup = signal.set_wakeup_fd(-1)  # the command's signal watchdog stays asleep: the child stops on its own
        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        if main_thread:
            for s, handler in previous.items():
                signal.signal(s, handler)
            signal.set_wakeup_fd(wakeup)
        os.close(write)
    if code >= 0:
        return code
    try:
        ended = signal.Signals(-code).name
    except ValueError:  # a signal without a name (real-time)
        ended = f"signal {-code}"
    if -code in received:  # stopped by the signal passed on before its own handler was in place
        from ..interrupts import SIGNALLED

        SIGNALLED[0] = -code
        raise KeyboardInterrupt
    done = backup_epoch(os.path.join(backup_folder(args.out), f"process-{cluster.index}"))
    kept = f"{kept_epochs(done, backup_folder(args.out))}: " if done else "no epoch had finished: "
    why = "; JAX's runtime aborts so when another process of the cluster is lost" if ended == "SIGABRT" else ""
    raise StepFailed(f"the training process was ended by {ended} (this is process {cluster.index} of "
                     f"{cluster.count}{why}); {kept}"
                     "start every process again with the same command" +
                     (" to resume after the last finished epoch" if done else ""))


def _end_with_supervisor(fd: int) -> None:
    """In the supervised training process: end it (cleanups run, one line) once the supervising process is gone."""
    import threading

    from ..interrupts import emergency_exit

    def watch() -> None:
        while True:
            try:
                if not os.read(fd, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        emergency_exit(1, "keras-mbv2 train: stopped: the supervising keras-mbv2 process is gone")

    threading.Thread(target=watch, name="keras-mbv2-supervisor-watch", daemon=True).start()


def run(args: argparse.Namespace) -> int:
    """Train on --data, check the result is better than chance, save it to --out (with --multi-worker, in a child
    process that `supervise` watches)."""
    if args.multi_worker:
        if SUPERVISOR_FD not in os.environ:
            return supervise(args)
        _end_with_supervisor(int(os.environ.pop(SUPERVISOR_FD)))
    import keras
    import numpy as np

    from ..datasets import hold_out
    from ..models.batch_norm import warn_if_stale_batch_norms
    from ..training import EpochHistory, RecalibrateBatchNorms, compile_classifier, fit_progress

    cluster = None
    if args.multi_worker:
        from ..distribute import start_process_cluster

        cluster = start_process_cluster(args.cluster)  # before the model: its variables span every process
        say(f"{cluster.describe()}: the cluster of {cluster.count} processes is up (JAX, gloo)")
    chief = cluster is None or cluster.chief
    data = load_data(args.data, args.input_shape)
    classes = len(data.class_names)
    x_train, y_train, x_val, y_val = hold_out(data.x_train, data.y_train, args.validation_fraction, args.seed)
    x_fit, y_fit, x_check, y_check, x_test, y_test = x_train, y_train, x_val, y_val, data.x_test, data.y_test
    batch_size = args.batch_size
    if cluster is not None:  # each process feeds its part; Keras assembles the global batch over the processes
        x_fit, y_fit = cluster.shard(x_train, y_train)
        x_check, y_check = cluster.shard(x_val, y_val)
        x_test, y_test = cluster.shard(data.x_test, data.y_test)
        batch_size = args.batch_size // cluster.count
        # whole steps only: on JAX a last, partial batch compiles the train step a second time (measured: ~20 s of
        # a MobileNetV2 0.35's first epoch on each process); the split is shuffled, so the images left out (fewer
        # than one global batch) are a random few
        whole = len(y_fit) // batch_size * batch_size or len(y_fit)
        x_fit, y_fit = x_fit[:whole], y_fit[:whole]
    model = network(args, classes, bn_momentum=args.bn_momentum)
    h, w, c = args.input_shape
    print(f"training {model.name} ({model.count_params():,} params, input {h}x{w}x{c}) on {len(y_train)} images of "
          f"{classes} classes ({len(y_val)} held out for validation"
          + (f"; {len(y_fit) * cluster.count} in whole global batches of {args.batch_size}" if cluster else "")
          + f"), {args.epochs} epochs", flush=True)
    compile_classifier(model, args.learning_rate)
    verbose, progress = fit_progress(keras.callbacks.Callback, args.epochs, say, QUIET.is_set() or not chief)
    extra = []
    resume = 0
    if cluster is not None:  # every process its own epoch backups: a rerun of all resumes after the same epoch
        from ..distribute import agreed_epoch, gather
        from ..training import KeepPreviousBackup, backup_epoch, step_back_backup

        backups = os.path.join(backup_folder(args.out), f"process-{cluster.index}")
        own = backup_epoch(backups)
        resume = agreed_epoch(gather(own))
        if resume != own:  # lost between two processes' backups of one epoch: this one steps back
            say(f"{cluster.describe()}: resuming after epoch {resume} with the other processes (this one's backup "
                f"was of epoch {own})")
            step_back_backup(backups, resume)
        extra += [KeepPreviousBackup(backups), keras.callbacks.BackupAndRestore(backups)]
    if args.history is not None and chief:
        extra.append(EpochHistory(args.history, keep_before=resume))
        args.interrupted = lambda: (f"{args.history} holds the finished epochs' history; --out was not written"
                                    if os.path.exists(args.history) else "nothing was written")

    def failed(message: str) -> StepFailed:  # a run that saves no model leaves no history of its own either
        if args.history is not None and chief and not args.resuming and os.path.exists(args.history):
            os.remove(args.history)
        return StepFailed(message)

    finished: list[int] = []  # the epochs finished in this run (absolute: a resumed run starts after its backup)
    extra.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: finished.append(epoch + 1)))
    # the batch norms' statistics from the whole training split on every process: the same values everywhere
    try:
        history = model.fit(x_fit, y_fit, epochs=args.epochs, batch_size=batch_size,
                            validation_data=(x_check, y_check), verbose=verbose if chief else 0,
                            callbacks=[keras.callbacks.TerminateOnNaN(), RecalibrateBatchNorms(x_train),
                                       stop_on_ctrl_c_callback(), *extra, *(progress if chief else [])])
    except Exception as exc:
        if cluster is None or type(exc).__name__ != "JaxRuntimeError":
            raise
        raise ProcessLost(lost_process(cluster, exc, finished, backup_folder(args.out))) from exc
    losses = history.history.get("loss", [])
    if not losses or not np.isfinite(losses[-1]):
        raise failed(f"training diverged (loss {losses[-1] if losses else 'nan'} in epoch {len(losses)}); nothing "
                     f"was saved. Lower --learning-rate (was {args.learning_rate:g}).")
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    print(f"test accuracy {accuracy:.4f} ({len(y_test) * (cluster.count if cluster else 1)} images)")
    try:
        check_not_chance(accuracy, classes, "the trained model",
                         "Train longer (--epochs), change --learning-rate, or check --data.")
    except StepFailed as exc:
        raise failed(str(exc)) from None
    warn_if_stale_batch_norms(model, x_train)
    if chief:
        atomic_write(args.out, model.save, ".keras")
        print(f"saved {args.out}")
    else:  # saving reads every variable across the processes: each takes part, only process 0 keeps the file
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            model.save(os.path.join(tmp, "model.keras"))
    if cluster is not None and chief:  # BackupAndRestore removed each process's own folder at the end of fit
        import contextlib

        with contextlib.suppress(OSError):
            os.rmdir(backup_folder(args.out))
    return 0
