"""`keras-mbv2 train`: train a network in float on the digits or an image folder and save it."""

from __future__ import annotations

import argparse

from ..files import atomic_write
from .contract import QUIET, StepFailed, say, stop_on_ctrl_c_callback
from .flags import add_force, add_network_args, network, open_fraction, positive_float, positive_int
from .inputs import check_not_chance, load_data, output_file

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
    p.set_defaults(input_shape=(32, 32, 1))


def run(args: argparse.Namespace) -> int:
    """Train on --data, check the result is better than chance, save it to --out."""
    import keras
    import numpy as np

    from ..models.batch_norm import warn_if_stale_batch_norms
    from ..training import compile_classifier, fit_progress

    output_file("--out", args.out, ".keras", args.force)
    data = load_data(args.data, args.input_shape)
    classes = len(data.class_names)
    model = network(args, classes, bn_momentum=args.bn_momentum)
    print(f"training {model.name} ({model.count_params():,} params) on {len(data.y_train)} images of {classes} "
          f"classes, {args.epochs} epochs", flush=True)
    compile_classifier(model, args.learning_rate)
    verbose, progress = fit_progress(keras.callbacks.Callback, args.epochs, say, QUIET.is_set())
    history = model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(data.x_test, data.y_test), verbose=verbose,
                        callbacks=[keras.callbacks.TerminateOnNaN(), stop_on_ctrl_c_callback(), *progress])
    losses = history.history.get("loss", [])
    if not losses or not np.isfinite(losses[-1]):
        raise StepFailed(f"training diverged (loss {losses[-1] if losses else 'nan'} in epoch {len(losses)}); nothing "
                         f"was saved. Lower --learning-rate (was {args.learning_rate:g}).")
    accuracy = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    print(f"test accuracy {accuracy:.4f} ({len(data.y_test)} images)")
    check_not_chance(accuracy, classes, "the trained model",
                     "Train longer (--epochs), change --learning-rate, or check --data.")
    warn_if_stale_batch_norms(model, data.x_train)
    atomic_write(args.out, model.save, ".keras")
    print(f"saved {args.out}")
    return 0
