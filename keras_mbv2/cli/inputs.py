"""Steps more than one command shares: checking an output file before any work, loading a .keras model and
`--data`, and refusing a model that scores at chance."""

from __future__ import annotations

import os
from typing import Any

from ..files import check_replaceable
from .contract import StepFailed, UsageError, whole_sentences


def require_suffix(flag: str, path: str, suffix: str) -> None:
    """`flag`'s file must end with `suffix` (a usage error otherwise)."""
    if not path.endswith(suffix):
        raise UsageError(f"{flag} must end with {suffix}. Received: {flag} {path!r}")


def output_file(flag: str, path: str, suffix: str, force: bool) -> None:
    """Check an output file before any work: its suffix, its folder, and that it replaces nothing unasked."""
    require_suffix(flag, path, suffix)
    check_replaceable(path, flag, force)
    if os.path.isdir(path):
        raise UsageError(f"{flag} is a folder; give a file name ending with {suffix}. Received: {flag} {path!r}")


def check_keras_file(path: str, flag: str = "--model") -> None:
    """A .keras model file exists and is a zip archive (cheap: before Keras loads)."""
    import zipfile

    if not os.path.isfile(path):
        raise UsageError(f"{flag} file not found. Received: {flag} {path!r}")
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise UsageError(f"{flag} must be a Keras model saved as .keras (keras-mbv2 build or train writes one). "
                         f"Received: {flag} {path!r}")


def check_input_file(path: str, flag: str) -> None:
    """An input file exists and is a file (cheap: before TensorFlow loads)."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} is a folder, not a file. Received: {flag} {path!r}")
    if not os.path.isfile(path):
        raise UsageError(f"{flag} file does not exist. Received: {flag} {path!r}")


def check_data(spec: str, flag: str = "--data") -> None:
    """--data is "digits" or an existing folder (cheap: before TensorFlow loads)."""
    if spec != "digits" and not os.path.isdir(spec):
        raise UsageError(f"{flag} must be 'digits' or an image folder. Received: {flag} {spec!r}")


def load_keras(path: str, flag: str = "--model") -> Any:
    """A .keras model file, with one clear error for a missing, misnamed or unreadable one."""
    check_keras_file(path, flag)
    import keras

    try:
        return keras.models.load_model(path)
    except Exception as exc:
        reason = whole_sentences(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if "`Lambda` layer" in reason:  # Keras' safe mode: its advice (safe_mode=False) is no flag of ours
            reason = ("it holds a Lambda layer with Python code, which Keras does not load from a file unless told the "
                      "file is trusted (safe mode), and which tfmot cannot quantize: rebuild the model without the "
                      "Lambda layer (built-in layers, or a Layer subclass registered with "
                      "keras.saving.register_keras_serializable)")
        raise UsageError(f"{flag} could not be loaded as a Keras model: {reason.rstrip('.')}. Received: {flag} "
                         f"{path!r}") from exc


def load_data(spec: str, shape: tuple[int, int, int]) -> Any:
    """--data: "digits" (bundled) or an image folder with one sub-folder per class -> a datasets.Split."""
    from ..datasets import load_digits, load_image_folder

    h, w, c = shape
    if h != w:
        raise UsageError(f"--data needs a square model input. Received: input shape {h}x{w}x{c}")
    if c not in (1, 3):
        raise UsageError(f"--data gives 1- or 3-channel images. Received: input shape {h}x{w}x{c}")
    check_data(spec)
    if spec == "digits":
        return load_digits(image_size=h, channels=c)
    return load_image_folder(spec, image_size=h, channels=c)


def data_channels(spec: str) -> int:
    """--data's channels: 1 for the digits, else the folder's (`datasets.image_folder_channels`: 3 when its images
    are in colour)."""
    check_data(spec)
    if spec == "digits":
        return 1
    from ..datasets import image_folder_channels

    return image_folder_channels(spec)


def check_not_chance(accuracy: float, classes: int, what: str, advice: str) -> None:
    """Fail (nothing saved) when a trained model scores no better than guessing."""
    if not accuracy > 1.5 / classes:
        raise StepFailed(f"{what} scores {accuracy:.1%} on the test split, chance level for {classes} classes; "
                         f"nothing was saved. {advice}")
