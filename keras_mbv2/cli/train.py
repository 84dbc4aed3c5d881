"""`keras-mbv2 train`: train a network in float on the digits or an image folder and save it."""

from __future__ import annotations

import argparse
import warnings

from ..files import atomic_write
from .contract import QUIET, StepFailed, say, stop_on_ctrl_c_callback
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


def check(args: argparse.Namespace) -> None:
    """Usage checks before Keras loads: --out, --data and its channels against --input-shape."""
    output_file("--out", args.out, ".keras", args.force)
    args.input_shape = input_shape(args)


def run(args: argparse.Namespace) -> int:
    """Train on --data, check the result is better than chance, save it to --out."""
    import keras
    import numpy as np

    from ..datasets import hold_out
    from ..models.batch_norm import warn_if_stale_batch_norms
    from ..training import RecalibrateBatchNorms, compile_classifier, fit_progress

    data = load_data(args.data, args.input_shape)
    classes = len(data.class_names)
    x_train, y_train, x_val, y_val = hold_out(data.x_train, data.y_train, args.validation_fraction, args.seed)
    model = network(args, classes, bn_momentum=args.bn_momentum)
    h, w, c = args.input_shape
    print(f"training {model.name} ({model.count_params():,} params, input {h}x{w}x{c}) on {len(y_train)} images of "
          f"{classes} classes ({len(y_val)} held out for validation), {args.epochs} epochs", flush=True)
    compile_classifier(model, args.learning_rate)
    verbose, progress = fit_progress(keras.callbacks.Callback, args.epochs, say, QUIET.is_set())
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(x_val, y_val), verbose=verbose,
                        callbacks=[keras.callbacks.TerminateOnNaN(), RecalibrateBatchNorms(x_train),
                                   stop_on_ctrl_c_callback(), *progress])
    losses = history.history.get("loss", [])
    if not losses or not np.isfinite(losses[-1]):
        raise StepFailed(f"training diverged (loss {losses[-1] if losses else 'nan'} in epoch {len(losses)}); nothing "
                         f"was saved. Lower --learning-rate (was {args.learning_rate:g}).")
    accuracy = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    print(f"test accuracy {accuracy:.4f} ({len(data.y_test)} images)")
    check_not_chance(accuracy, classes, "the trained model",
                     "Train longer (--epochs), change --learning-rate, or check --data.")
    warn_if_stale_batch_norms(model, x_train)
    atomic_write(args.out, model.save, ".keras")
    print(f"saved {args.out}")
    return 0
