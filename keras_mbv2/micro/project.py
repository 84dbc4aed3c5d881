"""A complete, self-contained firmware project: the package's firmware sources and the model's files in one folder.

`keras-mbv2 micro ... --project DIR` (or `write_project`) hands the user what TFLM's `generate_project` and Edge
Impulse's C++ library export hand theirs: a folder that builds on its own, wherever the package was installed
from (the sources are the repository's top-level `micro/`, the one copy; the wheel carries it as
`keras_mbv2/firmware/`, pyproject.toml's package-dir):

    DIR/Makefile, DIR/app/, DIR/selftest/, DIR/arduino/   the firmware (micro/, copied)
    DIR/FIRMWARE.md                                        its documentation (micro/README.md)
    DIR/model/                                             the model's files, as `emit` writes them
    DIR/project.mk                                         this project's MODEL_NAME and TARGET_ARCH (the board's
                                                           core), read by the Makefile; the command line overrides
    DIR/README.md                                          board, core, flash and RAM, and the commands to build
                                                           (model objects, TFLM app) and run on QEMU

The folder is built under a temporary name and renamed into place when complete (`files.output_folder`).
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from typing import Any, Sequence

import numpy as np

from ..files import output_folder, umask
from .boards import BOARDS, QEMU_BOARDS, VENDOR_FILES
from .emitter import MicroReport, emit

#: The firmware project's sources inside the package, copied whole into every project.
FIRMWARE = ("Makefile", "app", "boards", "selftest", "arduino")
#: The core `make` builds for when no board names one (QEMU's mps2-an386, a Cortex-M4).
DEFAULT_CORE = "cortex-m4"


def firmware_dir() -> str:
    """The folder of the firmware sources: `keras_mbv2/firmware` in an installed wheel, else the checkout's `micro/`.

    One copy exists: the repository's top-level `micro/`, which the wheel carries as `keras_mbv2/firmware`
    (pyproject.toml's package-dir); a clone or an editable install reads `micro/` beside the package.
    """
    package = resources.files("keras_mbv2")
    for path in (package.joinpath("firmware"), package.joinpath("..", "micro")):
        if path.joinpath("Makefile").is_file():
            return os.path.normpath(str(path))
    raise FileNotFoundError(f"the firmware sources are missing: neither {package.joinpath('firmware')} (an installed "
                            f"wheel) nor {os.path.normpath(str(package.joinpath('..', 'micro')))} (a checkout)")


def _readme(report: MicroReport, board: str | None, core: str, name: str) -> str:
    chip = BOARDS[board] if board else None
    target = (f"{chip.name} ({chip.note}: {chip.flash // 1024:,} KiB flash, {chip.ram // 1024:,} KiB RAM)" if chip
              else f"no board given: `make` builds for {core}")
    patched = report.patches is not None
    ram = (f"{report.device_ram_bytes:,} B: {report.arena_bytes:,} B kTensorArenaSize"
           + (f" + {report.patch_arena_bytes:,} B kPatchArenaSize" if report.patch_arena_bytes else "")
           + (f" + {report.stage_bytes:,} B stage buffer" if report.stage_bytes else "")
           + (f" + {report.boundary_bytes:,} B boundary buffer (every segment in turn in the arena)"
              if report.boundary_bytes else "")
           + (f" + {report.band_bytes:,} B input band" if report.band_bytes else ""))
    images = ("embedded (`model/*_test_images.cc`): the app classifies them"
              if any(f.endswith("_test_images.cc") for f in report.files) else "none (`--test-images N` embeds N)")
    parts = (f"{len(report.segments.segments)} segment models, " if report.segments is not None else "rest model, ")
    model = f"`model/` ({('patch model + ' + parts) if patched else parts if report.segments else ''}" \
            f"{report.model_bytes:,} B flash)"
    check = f"keras-mbv2 check-app --log app.log --dir model{'' if name == 'model' else f' --name {name}'}"
    qemu = QEMU_BOARDS[core]
    return f"""# Firmware project: `{name}` for {chip.name if chip else core}

Written by `keras-mbv2 micro --project` (keras_mbv2.micro.write_project). Everything it needs is in this folder
except TensorFlow Lite Micro itself and the Arm toolchain; `FIRMWARE.md` explains every target.

| | |
| --- | --- |
| board | {target} |
| core (`TARGET_ARCH`) | {core} |
| model | {model} |
| RAM | {ram} |
| operators | {', '.join(report.operators)} |
| test images | {images} |

`project.mk` sets `MODEL_NAME={name}` and `TARGET_ARCH={core}`; pass either to `make` to change it.

## Build the model objects (no TFLM needed)

```bash
make model-objects            # the C array compiled with arm-none-eabi-g++ for {core}
make run-selftest             # a self-test firmware on QEMU's {qemu} ({core}): the array's identifier and CRC
make run-selftest BOARD=netduinoplus2   # ... on an STM32F405's memory (1 MiB flash, 128 KiB SRAM), or
                                        # mps2-an386 (M4), mps2-an500 (M7), mps2-an505 (M33), mps3-an547 (M55)
```

## Build and run the app

Needs Debian's `gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib` (and `qemu-system-arm`),
Python's Pillow, and a TensorFlow Lite Micro checkout (`git clone https://github.com/tensorflow/tflite-micro`;
`FIRMWARE.md` lists what its makefile downloads):

```bash
make run-app TFLM_DIR=~/tflite-micro > app.log      # builds TFLM and the app, runs it on QEMU's {qemu}
{check}  # its scores against the host runtime
make run-app TFLM_DIR=~/tflite-micro BOARD=netduinoplus2   # on an STM32F405's 1 MiB flash and 128 KiB SRAM
```

`make app` builds the same firmware (`{qemu_elf(core)}`) without running it.
{_real_board(board, core)}"""


def qemu_elf(core: str, kernels: str = "cmsis_nn") -> str:
    """The ELF `make app` builds for `core`'s QEMU board (micro/Makefile's APP_BUILD without BOARD_SOURCES)."""
    return f"build/app-{QEMU_BOARDS[core]}-{kernels}/app.elf"


def board_elf(core: str, kernels: str = "cmsis_nn") -> str:
    """The ELF `make app BOARD_SOURCES=... BOARD_LDFLAGS=...` builds for a real board of `core` (micro/Makefile's
    APP_BUILD with the board's files)."""
    return f"build/app-{core}-{kernels}/app.elf"


def _real_board(board: str | None, core: str) -> str:
    """The generated README's section on the real board: the compiler flags, the vendor files to bring, the exact
    `make app` line, the ELF it writes and how to flash it."""
    flags = f"`-mcpu={core} -mthumb -mfloat-abi=hard -mfpu=auto` (the Makefile's, for the app and TFLM's library)"
    vendor = VENDOR_FILES.get(board or "")
    if vendor is None:
        return (f"""
## On a real {core} board

Compiled with {flags}. Bring your part's startup code, system init and linker script (its vendor's CMSIS device
pack has them), retarget newlib's `_write` to a UART to see the app's lines, and give the vendor files their part's
define and the pack's header folder (`BOARD_CFLAGS`):

```bash
make app TFLM_DIR=~/tflite-micro BOARD_CFLAGS="-DMY_PART -I/path/to/pack/Include" \\
    BOARD_SOURCES="startup.c system.c retarget.c" \\
    BOARD_LDFLAGS="-T board.ld --specs=nosys.specs -Wl,--print-memory-usage"
```

It writes `{board_elf(core)}`.
""")
    startup, system = vendor.startup, vendor.system
    script = vendor.linker_script.split(" ")[0]
    return rf"""
## On the real board: {BOARDS[board].name} ({BOARDS[board].note})

Compiled with {flags}. Bring from {vendor.pack}:

| file | what it is |
| --- | --- |
| `{startup}` | startup code: vector table, reset handler (it or the system init must enable the FPU) |
| `{system}` | system init: clocks (`SystemInit`, `SystemCoreClock`) |
| `{script}` | the linker script: {vendor.linker_script.partition(" ")[2].strip("()") or "the part's flash and RAM"} |
| `retarget.c` (yours) | newlib's `_write` on {vendor.uart} |

The vendor files need their part's define and the pack's headers (`BOARD_CFLAGS`; `PACK` is where the pack's
device folder is on your machine), beside TFLM's CMSIS core headers, which the Makefile passes:

```bash
PACK={vendor.pack_dir}
make app TFLM_DIR=~/tflite-micro BOARD_CFLAGS="{vendor.cflags}" \
    BOARD_SOURCES="{startup} {system} retarget.c" \
    BOARD_LDFLAGS="-T {script} --specs=nosys.specs -Wl,--print-memory-usage"
```

It writes `{board_elf(core)}` (and the linker prints each memory region's use); onto the board:
`{vendor.flash.format(elf=board_elf(core))}`.
"""


def write_project(
    model: Any,
    out_dir: str,
    name: str = "model",
    board: str | None = None,
    labels: Sequence[str] | None = None,
    memory_plan: bool = True,
    test_images: np.ndarray | None = None,
    test_labels: Sequence[int] | None = None,
    segments: Any = None,
    force: bool = False,
    flag: str = "`out_dir`",
) -> MicroReport:
    """Write a self-contained firmware project for `model` (an int8 .tflite, its bytes, or a PatchedModel, with its
    `segments` when it runs in segments: see `emit`) into
    the folder `out_dir`: the firmware sources, the model's files in `model/` (as `emit` writes them, with the same
    checks), `project.mk` and a README naming the board, its core, flash and RAM, and the commands to build and run
    on QEMU. `out_dir` is built under a temporary name and renamed into place when complete; an existing non-empty
    folder is replaced only with `force` (errors name it as `flag`). Returns `emit`'s report (its files are in
    `out_dir/model`)."""
    if board is not None and board not in BOARDS:  # emit checks it too; this names it before the copy
        raise ValueError(f"`board` must be one of {sorted(BOARDS)}. Received: board={board!r}")
    core = BOARDS[board].core if board else DEFAULT_CORE
    source = firmware_dir()
    with output_folder(out_dir, flag, force) as work:
        for entry in FIRMWARE:
            path = os.path.join(source, entry)
            if os.path.isdir(path):
                shutil.copytree(path, os.path.join(work, entry), ignore=shutil.ignore_patterns("build", "__pycache__"))
            else:
                shutil.copy2(path, os.path.join(work, entry))
        shutil.copy2(os.path.join(source, "README.md"), os.path.join(work, "FIRMWARE.md"))
        report = emit(model, os.path.join(work, "model"), name=name, board=board, labels=labels,
                      memory_plan=memory_plan, test_images=test_images, test_labels=test_labels, segments=segments)
        with open(os.path.join(work, "project.mk"), "w") as f:
            f.write(f"# Written by keras-mbv2 micro --project: this project's model and core (make VAR=... overrides)\n"
                    f"MODEL_NAME ?= {name}\nTARGET_ARCH ?= {core}\n")
        with open(os.path.join(work, "README.md"), "w") as f:
            f.write(_readme(report, board, core, name))
        for folder, dirs, files in os.walk(work):  # the user's umask, as every output (copy2 keeps the sources')
            for entry in dirs + files:
                os.chmod(os.path.join(folder, entry), (0o777 if entry in dirs else 0o666) & ~umask())
    report.files = [os.path.join(out_dir, "model", os.path.basename(f)) for f in report.files]
    return report
