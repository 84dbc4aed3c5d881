"""The host's side of the firmware: read what `firmware/app` prints, and check it against the TFLite Micro host runtime.

The app (`make run-app` on QEMU, or a board's UART) prints, one line each:

    keras_mbv2 app: arena used 81780 of 88336 bytes (kTensorArenaSize), 5 images, clock: SysTick ticks
    image 0: class 7 (7) scores -128,-128,...,127 ticks 6203482 SysTick ticks
    profile: operator 0 CONV_2D 183020
    profile: total 6203113 SysTick ticks over 65 operators

`parse_app_output` reads that; `check_app_output` runs the same int8 test images (read back from the emitted
`<stem>_test_images.cc`) through the host runtime and compares every score; `profile_by_operator` sums the
per-operator ticks by operator kind.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..tflite import Agreement, compare_outputs, io_details, run_tflm
from .emitter import file_stem, parse_c_array


@dataclass(frozen=True)
class AppImage:
    """One classified image: its index, the predicted class, the raw int8 scores and the Invoke's ticks."""

    index: int
    predicted: int
    scores: np.ndarray
    ticks: int


@dataclass
class AppOutput:
    """What the app printed."""

    arena_used: int
    arena_size: int
    tick_unit: str
    images: list[AppImage] = field(default_factory=list)
    profile: list[tuple[int, str, int]] = field(default_factory=list)  # (operator index, kind, ticks)
    done: bool = False  # the app reached the end of its test images


_HEAD = re.compile(r"keras_mbv2 app: arena used (\d+) of (\d+) bytes "
                   r"\(kTensorArenaSize(?:, shared by both models| \+ kPatchArenaSize)?\), (\d+) images, clock: (.+)$")
_IMAGE = re.compile(r"image (\d+): class (\d+) \(.*\) scores ([-\d,]+) ticks (\d+) (.+)$")
_PROFILE = re.compile(r"profile: operator (\d+) (\S+) (\d+)$")


def parse_app_output(text: str) -> AppOutput:
    """Read the app's output (QEMU's or a board's serial log). Raises ValueError when the app did not start."""
    head = None
    images, profile, done = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if m := _HEAD.search(line):
            head = m
        elif m := _IMAGE.search(line):
            images.append(AppImage(int(m.group(1)), int(m.group(2)),
                                   np.array([int(v) for v in m.group(3).split(",")], dtype=np.int8), int(m.group(4))))
        elif m := _PROFILE.search(line):
            profile.append((int(m.group(1)), m.group(2), int(m.group(3))))
        elif line == "keras_mbv2 app: done":
            done = True
    if head is None:
        tail = "\n".join(text.strip().splitlines()[-5:]) or "(no output)"
        raise ValueError(f"The app did not report its arena: it did not start. Its last lines:\n{tail}")
    return AppOutput(int(head.group(1)), int(head.group(2)), head.group(4), images, profile, done)


def read_test_images(folder: str, name: str = "model") -> np.ndarray:
    """The int8 test images `emit(..., test_images=...)` wrote into `folder`, as an array (N, values)."""
    path = os.path.join(folder, f"{file_stem(name)}_test_images.cc")
    if not os.path.isfile(path):
        raise ValueError(f"`folder` has no test images ({os.path.basename(path)}): emit with test_images "
                         f"(keras-mbv2 micro --test-images N). Received: folder={folder!r}")
    with open(path) as f:
        source = f.read()
    body = source.split("g_test_images", 1)[1].split("};", 1)[0]
    rows = re.findall(r"\{([-\d,\s]+)\}", body)
    return np.array([[int(v) for v in row.split(",")] for row in rows], dtype=np.int8)


def check_app_output(text: str, folder: str, name: str = "model") -> Agreement:
    """Compare the scores the app printed for its embedded test images with the TFLite Micro host runtime's for
    the same model and the same int8 images (both read back from the emitted files in `folder`). Raises when the
    app did not classify every image."""
    output = parse_app_output(text)
    with open(os.path.join(folder, f"{file_stem(name)}_data.cc")) as f:
        model = parse_c_array(f.read(), name)
    images = read_test_images(folder, name)
    if [image.index for image in output.images[:len(images)]] != list(range(len(images))):
        raise ValueError(f"The app classified {len(output.images)} of the {len(images)} test images in {folder!r}.")
    patches = os.path.join(folder, f"{file_stem(name)}_patches.json")
    if os.path.isfile(patches):  # patch-based: the model array is the rest model; run the app's loop on the host
        import json

        from ..tflite.patches import plan_from_json, run_patched

        with open(patches) as f:
            plan = plan_from_json(json.load(f))
        with open(os.path.join(folder, f"{file_stem(name)}_patches.cc")) as f:
            patch = parse_c_array(f.read(), symbol=f"g_{file_stem(name)}_patch_data")
        shape = io_details(patch)["input_shape"]  # the frame: the patch model's input has its channels
        frame = (len(images), plan.input[0].full, plan.input[1].full, shape[3])
        host, _ = run_patched(patch, model, plan, images.reshape(frame))
    else:
        shape = io_details(model)["input_shape"]
        host, _ = run_tflm(model, images.reshape((len(images), *shape[1:])))
    return compare_outputs(np.stack([image.scores for image in output.images[:len(images)]]),
                           host.reshape(len(images), -1))


def profile_by_operator(output: AppOutput) -> list[tuple[str, int, int, float]]:
    """(operator kind, how many, ticks, share of the total) from the app's per-operator profile, largest first."""
    total = sum(ticks for _, _, ticks in output.profile) or 1
    kinds: dict[str, list[int]] = {}
    for _, kind, ticks in output.profile:
        kinds.setdefault(kind, []).append(ticks)
    rows = [(kind, len(t), sum(t), sum(t) / total) for kind, t in kinds.items()]
    return sorted(rows, key=lambda row: -row[2])
