"""The host's side of the firmware: read what `firmware/app` prints, and check it against the TFLite Micro host runtime.

The app (`make run-app` on QEMU, or a board's UART) prints, one line each:

    keras_mbv2 app: arena used 81780 of 88336 bytes (kTensorArenaSize), 5 images, clock: SysTick ticks
    image 0: class 7 (7) true 7 (7) scores -128,-128,...,127 ticks 155604 SysTick ticks
    profile: operator 0 CONV_2D 9607
    profile: total 155501 SysTick ticks over 65 operators
    profile: outside the operators 103 SysTick ticks

and, for a patch-based model, before the rest model's operators, the patch model's summed over the patches:

    profile: patch operator 0 CONV_2D 120233
    profile: patch total 1108588 SysTick ticks over 11 operators x 64 invocations

and, in segments, the boundary buffer after the arena line and what every model's AllocateTensors took:

    keras_mbv2 app: segmented, 4 segments, boundary buffer 3200 bytes
    profile: allocate 912345 SysTick ticks over 5 models

and, on a board whose start-up paints the stack (micro/Makefile's mps2-an386-ram64k), what the whole app used:

    keras_mbv2 app: RAM 65536 bytes: static 44700 (.data + .bss), heap 4452, stack peak 1428, never used 14956

`parse_app_output` reads that (and the logs of older apps, without `true` or the patch lines); `check_app_output`
runs the same int8 test images (read back from the emitted `<stem>_test_images.cc`) through the host runtime and
compares every score; `profile_by_operator` sums the
per-operator ticks by operator kind.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..tflite import Agreement, compare_outputs, io_details, run_tflm
from ..tflite.segments import SegmentedModel
from .emitter import file_stem, parse_c_array


@dataclass(frozen=True)
class AppImage:
    """One classified image: its index, the predicted class, the raw int8 scores, the inference's ticks and the
    image's true class (None where the app did not know it or did not print it)."""

    index: int
    predicted: int
    scores: np.ndarray
    ticks: int
    label: int | None = None


@dataclass
class AppOutput:
    """What the app printed."""

    arena_used: int
    arena_size: int
    tick_unit: str
    images: list[AppImage] = field(default_factory=list)
    profile: list[tuple[int, str, int]] = field(default_factory=list)  # (operator index, kind, ticks)
    done: bool = False  # the app reached the end of its test images
    # patch-based: the patch model's operators, each summed over the patches of the first image
    patch_profile: list[tuple[int, str, int]] = field(default_factory=list)
    patch_invocations: int = 0
    outside: int | None = None  # ticks of the first image outside every operator (TFLM's and the patch loop's)
    band_bytes: int = 0  # patch-based: the input band the app holds
    stage_bytes: int = 0  # patch-based, one arena shared: the stage buffer
    boundary_bytes: int = 0  # segmented: the boundary buffer (patched, it holds the stage output)
    segments: int = 0  # segmented: how many segments
    allocate: int | None = None  # segmented: ticks of the first image's AllocateTensors calls, every model's
    # segmented: each model's AllocateTensors ticks, (kind "segment" or "patch model", index, ticks)
    allocate_each: list[tuple[str, int, int]] = field(default_factory=list)
    # boards/ram64k.ld's start-up: (RAM, static .data + .bss, heap, stack peak) the whole app used, in bytes
    ram: tuple[int, int, int, int] | None = None

    @property
    def device_ram_bytes(self) -> int:
        """The RAM the model needed on the device: the arena(s) used, and patch-based the band and stage buffer,
        segmented the boundary buffer."""
        return self.arena_used + self.band_bytes + self.stage_bytes + self.boundary_bytes


_HEAD = re.compile(r"keras_mbv2 app: arena used (\d+) of (\d+) bytes "
                   r"\(kTensorArenaSize(?:, shared by both models|, every model in turn| \+ kPatchArenaSize)?\), "
                   r"(\d+) images, clock: (.+)$")
_IMAGE = re.compile(r"image (\d+): class (\d+) \(.*?\)(?: true (-?\d+) \(.*?\))? scores ([-\d,]+) ticks (\d+) (.+)$")
_PROFILE = re.compile(r"profile: (patch )?operator (\d+) (\S+) (\d+)$")
_PATCH_TOTAL = re.compile(r"profile: patch total \d+ .* x (\d+) invocations$")
_OUTSIDE = re.compile(r"profile: outside the operators (\d+) ")
_PATCHED = re.compile(r"keras_mbv2 app: patch-based, .* = (\d+) bytes \(frame \d+ bytes\), "
                      r"(?:stage buffer (\d+) bytes|stage output in the boundary buffer)$")
_SEGMENTED = re.compile(r"keras_mbv2 app: segmented, (\d+) segments, boundary buffer (\d+) bytes$")
_ALLOCATE = re.compile(r"profile: allocate (\d+) ")
_ALLOCATE_ONE = re.compile(r"profile: allocate (segment|patch model) (\d+) (\d+)$")
_RAM = re.compile(r"keras_mbv2 app: RAM (\d+) bytes: static (\d+) \(.*\), heap (\d+), stack peak (\d+),")


def parse_app_output(text: str) -> AppOutput:
    """Read the app's output (QEMU's or a board's serial log). Raises ValueError when the app did not start."""
    head = None
    found = AppOutput(0, 0, "")
    for line in text.splitlines():
        line = line.strip()
        if m := _HEAD.search(line):
            head = m
        elif m := _IMAGE.search(line):
            label = int(m.group(3)) if m.group(3) is not None and int(m.group(3)) >= 0 else None
            found.images.append(AppImage(int(m.group(1)), int(m.group(2)),
                                         np.array([int(v) for v in m.group(4).split(",")], dtype=np.int8),
                                         int(m.group(5)), label))
        elif m := _PROFILE.search(line):
            (found.patch_profile if m.group(1) else found.profile).append((int(m.group(2)), m.group(3),
                                                                           int(m.group(4))))
        elif m := _PATCH_TOTAL.search(line):
            found.patch_invocations = int(m.group(1))
        elif m := _OUTSIDE.search(line):
            found.outside = int(m.group(1))
        elif m := _PATCHED.search(line):
            found.band_bytes, found.stage_bytes = int(m.group(1)), int(m.group(2) or 0)
        elif m := _SEGMENTED.search(line):
            found.segments, found.boundary_bytes = int(m.group(1)), int(m.group(2))
        elif m := _ALLOCATE_ONE.search(line):
            found.allocate_each.append((m.group(1), int(m.group(2)), int(m.group(3))))
        elif m := _ALLOCATE.search(line):
            found.allocate = int(m.group(1))
        elif m := _RAM.search(line):
            found.ram = (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)))
        elif line == "keras_mbv2 app: done":
            found.done = True
    if head is None:
        tail = "\n".join(text.strip().splitlines()[-5:]) or "(no output)"
        raise ValueError(f"The app did not report its arena: it did not start. Its last lines:\n{tail}")
    found.arena_used, found.arena_size, found.tick_unit = int(head.group(1)), int(head.group(2)), head.group(4)
    return found


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
    segments = read_segments(folder, name, model)
    patches = os.path.join(folder, f"{file_stem(name)}_patches.json")
    if segments is not None and not os.path.isfile(patches):
        host = segments.invoke(images.reshape((len(images), *io_details(model)["input_shape"][1:])))
    elif os.path.isfile(patches):  # patch-based: the model array is the rest model; run the app's loop on the host
        import json

        from ..tflite.patches import plan_from_json, run_patched

        with open(patches) as f:
            plan = plan_from_json(json.load(f))
        with open(os.path.join(folder, f"{file_stem(name)}_patches.cc")) as f:
            patch = parse_c_array(f.read(), symbol=f"g_{file_stem(name)}_patch_data")
        shape = io_details(patch)["input_shape"]  # the frame: the patch model's input has its channels
        frame = (len(images), plan.input[0].full, plan.input[1].full, shape[3])
        host, _ = run_patched(patch, model, plan, images.reshape(frame), segments=segments)
    else:
        shape = io_details(model)["input_shape"]
        host, _ = run_tflm(model, images.reshape((len(images), *shape[1:])))
    return compare_outputs(np.stack([image.scores for image in output.images[:len(images)]]),
                           host.reshape(len(images), -1))


def read_segments(folder: str, name: str = "model", first: bytes | None = None) -> SegmentedModel | None:
    """The segment models and plan `emit(..., segments=...)` wrote into `folder` (`<stem>_segments.cc/.json`; the
    first segment is the model array, `first` when already read), to run the app's loop on the host; None when the
    model is not segmented."""
    import json

    stem = file_stem(name)
    path = os.path.join(folder, f"{stem}_segments.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        plan = json.load(f)
    if first is None:
        with open(os.path.join(folder, f"{stem}_data.cc")) as f:
            first = parse_c_array(f.read(), name)
    with open(os.path.join(folder, f"{stem}_segments.cc")) as f:
        source = f.read()
    models = [first, *(parse_c_array(source, symbol=f"g_{stem}_segment_{i}_data")
                       for i in range(1, len(plan["inputs"])))]
    return SegmentedModel.from_plan(models, plan)


def profile_by_operator(output: AppOutput, patches: bool = False) -> list[tuple[str, int, int, float]]:
    """(operator kind, how many, ticks, share of the total) from the app's per-operator profile, largest first:
    the model's (a patch-based model's rest model) or, with `patches`, the patch model's summed over the patches."""
    profile = output.patch_profile if patches else output.profile
    total = sum(ticks for _, _, ticks in profile) or 1
    kinds: dict[str, list[int]] = {}
    for _, kind, ticks in profile:
        kinds.setdefault(kind, []).append(ticks)
    rows = [(kind, len(t), sum(t), sum(t) / total) for kind, t in kinds.items()]
    return sorted(rows, key=lambda row: -row[2])
