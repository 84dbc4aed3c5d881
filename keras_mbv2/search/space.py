"""What the search may choose from: candidate networks on a grid of widths, input sizes and expansions, and the
limits of the board they must fit.

A candidate is one network family (a row of `keras_mbv2.models.networks.NETWORKS`) at one width multiplier, one
square input size and, for MobileNetV2, one expansion factor t (the paper's Table 2 uses 6; Section 6.1 and
Figure 6 vary it). Memory only grows with each of the three: a wider, larger or more expanded candidate needs at
least the RAM and flash of a smaller one on the same row. The search uses that order to measure few candidates
(`keras_mbv2.search.fitting`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..checks import check_positive_int
from ..micro.boards import BOARDS, CODE_RESERVE, RAM_RESERVE, Board
from ..models.networks import NETWORKS, build_network

#: Networks the search knows how to grid: name -> widths, sizes and expansions of the default grid. MobileNetV2's
#: expansion is searched; the others have none (None). Sizes are multiples of 16 from 64 (the resolutions of
#: MCUNet's and the STM32 model zoo's tables) to 160.
GRIDS: dict[str, dict[str, tuple]] = {
    "mobilenet_v2": {"widths": (0.35, 0.5, 0.75, 1.0), "sizes": (64, 80, 96, 112, 128, 144, 160),
                     "expansions": (4, 6)},
    "mobilenet_v1": {"widths": (0.25, 0.5, 0.75, 1.0), "sizes": (64, 80, 96, 112, 128, 144, 160),
                     "expansions": (None,)},
    "shufflenet_v1": {"widths": (0.5, 1.0, 1.5), "sizes": (64, 80, 96, 112, 128, 144, 160), "expansions": (None,)},
}
#: `--quick`: a grid small enough that the whole search (stage 1 and training) ends in minutes on 2 cores.
QUICK_GRIDS: dict[str, dict[str, tuple]] = {
    "mobilenet_v2": {"widths": (0.35, 0.5), "sizes": (96, 128, 160), "expansions": (4, 6)},
    "mobilenet_v1": {"widths": (0.25, 0.5), "sizes": (96, 128, 160), "expansions": (None,)},
    "shufflenet_v1": {"widths": (0.5, 1.0), "sizes": (96, 128, 160), "expansions": (None,)},
}
MIN_SIZE = 32  # the networks' total stride
#: The search's training as it runs by default, and with `--quick` (a small grid, `QUICK_GRIDS`, and short training:
#: minutes on 2 cores). The one place these numbers are said: `search`, `keras-mbv2 search --help` and the report
#: read them from here.
DEFAULTS: dict[str, Any] = dict(finalists=3, trial_epochs=3, epochs=15, qat_epochs=3, budget_minutes=60.0)
QUICK: dict[str, Any] = dict(finalists=2, trial_epochs=2, epochs=4, qat_epochs=1, budget_minutes=10.0)
#: Steps of 32 images the trials and the winner train at least when their epochs are not given: a small folder (3
#: classes x 60 images: 4 steps an epoch) gets more epochs, the digits (36 steps) keep the numbers above. Measured
#: (benchmarks/SMALL_DATA.md): 8 steps left a trial's validation at chance; about 40 told the finalists apart.
MIN_STEPS: dict[str, int] = dict(trial_epochs=40, epochs=120)


def epochs_for_steps(setting: str, epochs: int, steps_per_epoch: int) -> int:
    """`epochs`, raised so that `steps_per_epoch` x epochs reaches `MIN_STEPS[setting]`."""
    return max(epochs, -(-MIN_STEPS[setting] // max(steps_per_epoch, 1)))


def default_text(setting: str, network: str = "mobilenet_v2") -> str:
    """`None: 3 (quick: 2)`, from `DEFAULTS` / `QUICK` (a training setting) or `GRIDS` / `QUICK_GRIDS` (`widths`,
    `sizes`, `expansions` of `network`), for help texts."""
    if setting in DEFAULTS:
        return f"None: {DEFAULTS[setting]:g} (quick: {QUICK[setting]:g})"
    grid, quick = GRIDS[network][setting], QUICK_GRIDS[network][setting]
    return (f"None: each network's grid, for {network} {','.join(f'{v:g}' for v in grid)} "
            f"(quick: {','.join(f'{v:g}' for v in quick)})")


@dataclass(frozen=True, order=True)
class Candidate:
    """One network of the search space: family, width multiplier, square input size, expansion (MobileNetV2)."""

    network: str
    width: float
    size: int
    expansion: int | None = None

    @property
    def key(self) -> str:
        """A stable identifier, used for file names and the run's records: `mobilenet_v2-w0.35-s96-e6`."""
        return f"{self.network}-w{self.width:g}-s{self.size}" + (f"-e{self.expansion}" if self.expansion else "")

    @property
    def label(self) -> str:
        """How reports name it: `MobileNetV2 0.35 @ 96, t=6`."""
        text = f"{NETWORKS[self.network].builder_name} {self.width:g} @ {self.size}"
        return text + (f", t={self.expansion}" if self.expansion else "")

    @property
    def row(self) -> tuple:
        """The candidates that differ from it only in input size (the search measures along a row)."""
        return (self.network, self.width, self.expansion)

    def dominates(self, other: "Candidate") -> bool:
        """True when `other` needs at least this candidate's memory: same family, and no smaller in width, size or
        expansion."""
        return (self.network == other.network and self.width <= other.width and self.size <= other.size
                and (self.expansion or 0) <= (other.expansion or 0))

    def build(self, channels: int, classes: int, **kwargs: Any) -> Any:
        """The untrained Keras model (batch-norm momentum 0.9, which trains small data sets well)."""
        if self.expansion is not None:
            kwargs["expansion"] = self.expansion
        return build_network(self.network, (self.size, self.size, channels), self.width, None, classes,
                             bn_momentum=0.9, **kwargs)


@dataclass(frozen=True)
class SearchSpace:
    """The grid: every combination of `networks` x `widths` x `sizes` x `expansions` (expansions apply to MobileNetV2
    only), optionally capped at `max_macs` multiply-adds (a latency proxy)."""

    networks: tuple[str, ...] = ("mobilenet_v2",)
    widths: tuple[float, ...] | None = None  # None: each network's own default widths (`GRIDS`)
    sizes: tuple[int, ...] | None = None
    expansions: tuple[int, ...] | None = None
    max_macs: int | None = None
    quick: bool = False

    def __post_init__(self) -> None:
        if not self.networks:
            raise ValueError("`networks` is empty: name at least one of "
                             f"{tuple(GRIDS)}. Received: networks={self.networks!r}")
        for name in self.networks:
            if name not in GRIDS:
                raise ValueError(f"`networks` must be among {tuple(GRIDS)} (NASNet-A's cells are not searched). "
                                 f"Received: networks={self.networks!r}")
        for name, values, check in (("widths", self.widths, _positive_float), ("sizes", self.sizes, _size),
                                    ("expansions", self.expansions, check_positive_int)):
            if values is not None:
                if len(values) == 0:
                    raise ValueError(f"`{name}` is empty: the grid has no candidate. Received: {name}=()")
                for v in values:
                    check(name, v)
        if self.max_macs is not None:
            check_positive_int("max_macs", self.max_macs)

    def grid(self, network: str) -> dict[str, tuple]:
        """The widths, sizes and expansions searched for `network`."""
        base = (QUICK_GRIDS if self.quick else GRIDS)[network]
        expansions = base["expansions"] if network != "mobilenet_v2" else (self.expansions or base["expansions"])
        return {"widths": tuple(sorted(set(self.widths or base["widths"]))),
                "sizes": tuple(sorted(set(self.sizes or base["sizes"]))),
                "expansions": tuple(sorted(set(expansions), key=lambda e: e or 0))}

    def candidates(self) -> list[Candidate]:
        """Every candidate of the grid, in a fixed order."""
        found = []
        for network in self.networks:
            g = self.grid(network)
            found += [Candidate(network, float(w), int(s), e) for w in g["widths"] for s in g["sizes"]
                      for e in g["expansions"]]
        return sorted(found, key=lambda c: (c.network, c.width, c.expansion or 0, c.size))


def _positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must hold finite positive numbers. Received: {name} entry {value!r}")


def _size(name: str, value: Any) -> None:
    check_positive_int(name, value)
    if value < MIN_SIZE:
        raise ValueError(f"`{name}` must be at least {MIN_SIZE} (the networks' strides). Received: {name} entry "
                         f"{value!r}")


@dataclass(frozen=True)
class Limits:
    """What a candidate may use: the board's flash and RAM, less the stated reserves for code and for the
    application (`keras_mbv2.micro.boards`: `model + CODE_RESERVE <= flash`, `device RAM + RAM_RESERVE <= RAM`,
    the check `keras-mbv2 micro --board` makes)."""

    flash: int  # the chip's flash, bytes
    ram: int  # the chip's RAM, bytes
    board: str | None = None  # the boards-table name, when given by board
    core: str = "cortex-m4"  # the core the C files are compiled for

    @property
    def model_flash(self) -> int:
        """Flash left for the model's arrays."""
        return self.flash - CODE_RESERVE

    @property
    def device_ram(self) -> int:
        """RAM left for inference: the TFLM arena(s), stage buffer and input band."""
        return self.ram - RAM_RESERVE

    @property
    def name(self) -> str:
        """The board's name, or the limits as given."""
        return self.board or f"{self.flash:,} B flash / {self.ram:,} B RAM"

    def describe(self) -> str:
        """One line: the limits and what they leave for the model."""
        return (f"{self.name}: {self.flash:,} B flash - {CODE_RESERVE:,} B code reserve = {self.model_flash:,} B for "
                f"the model; {self.ram:,} B RAM - {RAM_RESERVE:,} B reserve = {self.device_ram:,} B for inference")

    @classmethod
    def of(cls, board: str | None = None, flash: int | None = None, ram: int | None = None) -> "Limits":
        """From a board of the boards table, or explicit flash and RAM (both), not both ways."""
        if board is not None:
            if flash is not None or ram is not None:
                raise ValueError(f"give `board` or `flash` and `ram`, not both. Received: board={board!r}, "
                                 f"flash={flash!r}, ram={ram!r}")
            if board not in BOARDS:
                raise ValueError(f"`board` must be one of {sorted(BOARDS)}. Received: board={board!r}")
            b: Board = BOARDS[board]
            return cls(b.flash, b.ram, b.name, b.core)
        if flash is None or ram is None:
            raise ValueError(f"give `board`, or both `flash` and `ram` (bytes). Received: flash={flash!r}, "
                             f"ram={ram!r}")
        check_positive_int("flash", flash)
        check_positive_int("ram", ram)
        for name, value, reserve in (("flash", flash, CODE_RESERVE), ("ram", ram, RAM_RESERVE)):
            if value <= reserve:
                raise ValueError(f"`{name}` must exceed the {reserve:,} B reserved for code and the application "
                                 f"(keras_mbv2.micro.boards). Received: {name}={value!r}")
        return cls(int(flash), int(ram))

    def boards_that_fit(self, flash: int, ram: int) -> list[str]:
        """Boards of the table whose limits hold a model of `flash` B and `ram` B of inference RAM."""
        return [b.name for b in sorted(BOARDS.values(), key=lambda b: (b.ram, b.flash))
                if flash + CODE_RESERVE <= b.flash and ram + RAM_RESERVE <= b.ram]


def describe_grid(space: SearchSpace) -> str:
    """One line per network: the grid searched."""
    lines = []
    for network in space.networks:
        g = space.grid(network)
        parts = [f"widths {', '.join(f'{w:g}' for w in g['widths'])}", f"sizes {', '.join(map(str, g['sizes']))}"]
        if g["expansions"] != (None,):
            parts.append(f"expansions {', '.join(map(str, g['expansions']))}")
        lines.append(f"{network}: " + "; ".join(parts))
    return "\n".join(lines)

