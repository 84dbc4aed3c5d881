"""Stage 1 of the search, no training: which candidates fit the board, measured on the TFLite Micro host runtime.

Each candidate measured is built untrained, its batch norms given the statistics of real images
(`recalibrate_batch_norms`: the int8 scales are then those of a working network), converted to int8 and allocated
on the TFLM host runtime: flash is its stripped array (`emitter.flash_bytes`), RAM the arena TFLM reports plus the
emitted margin. When the model as built does not fit, `fit_ram` (channel splits, then patch-based inference) looks
for a plan that does, and the device RAM of that plan is measured the same way. A candidate is called fitting only
when it was measured so.

Measuring is the expensive part (a conversion is seconds; a patch plan several conversions), so the search measures
few candidates, using the order of memory (`Candidate.dominates`): along each row of the grid (one family, width
and expansion) a binary search over the input sizes finds the largest size that fits; a candidate that needs at
least the memory of one measured not to fit is rejected without measuring, and said so. The same is done for the
model as built (no splits or patches) to show what the memory techniques buy.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from .space import Candidate, Limits

Log = Callable[[str], None]

# How a fitting candidate fits.
AS_BUILT, SPLITS, PATCHES, SEGMENTS = "as built", "channel splits", "patches", "segments"


@dataclass
class Measurement:
    """What stage 1 knows of one candidate. `measured` is True when it was converted and allocated on the TFLM host
    runtime; otherwise `reason` says how its verdict was reached (from a measured candidate it dominates, or a
    lower bound)."""

    candidate: Candidate
    macs: int  # multiply-adds (the paper's MAdds, profiler), as built
    params: int
    measured: bool = False
    fits: bool | None = None  # with the memory techniques allowed (None: not decided)
    fits_as_built: bool | None = None  # without splits or patches
    flash: int | None = None  # bytes of the model array(s), measured (the fitting plan's when it fits)
    ram_as_built: int | None = None  # kTensorArenaSize of the model as built, measured
    ram: int | None = None  # device RAM of the fitting plan (arena + margin; patched: band + arenas + stage)
    need: int | None = None  # when it does not fit: the least device RAM a plan needed (or at least), measured
    technique: str = ""  # AS_BUILT, SPLITS, PATCHES or SEGMENTS (then patched too where `patches`) when it fits
    splits: dict[str, int] = field(default_factory=dict)  # the fitting plan's channel splits (>1 only)
    patches: tuple[int, tuple[int, int]] | None = None  # (cut, grid) of the fitting plan's patches
    macs_fitted: int | None = None  # multiply-adds of the fitting plan (patches recompute halos)
    segments: int = 0  # SEGMENTS: how many segments the fitting plan's model (or patched rest) runs in
    reason: str = ""  # why it does not fit, or why it was not measured
    size_independent: bool = False  # it does not fit for flash or TFLM's persistent data: no input size would
    seconds: float = 0.0  # time spent measuring it

    def to_json(self) -> dict[str, Any]:
        """Plain data for the run's `candidates.json`."""
        data = asdict(self)
        data["candidate"] = asdict(self.candidate)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Measurement":
        """Inverse of `to_json`."""
        data = dict(data)
        data["candidate"] = Candidate(**data["candidate"])
        if data.get("patches") is not None:
            cut, grid = data["patches"]
            data["patches"] = (int(cut), (int(grid[0]), int(grid[1])))
        return cls(**data)


def weight_bytes_lower_bound(model: Any) -> int:
    """Bytes the int8 weights of the model's convolutions and dense layers take at least in flash (one byte per
    kernel entry; biases, scales and the flatbuffer come on top): an estimate that can only under-state."""
    total = 0
    for w in model.weights:
        path = getattr(w, "path", w.name)
        if path.endswith("kernel") and len(w.shape) >= 2:
            total += int(np.prod(w.shape))
    return total


class Stage1:
    """Measures candidates against `limits` on calibration images `x` (float, the model's input range), each once,
    keeping every verdict in `measurements` (candidate -> Measurement)."""

    def __init__(self, limits: Limits, x: Callable[[int], np.ndarray], classes: int, channels: int,
                 techniques: bool = True, log: Log | None = None,
                 known: dict[Candidate, Measurement] | None = None,
                 on_measured: Callable[[], None] | None = None, segments: bool = False) -> None:
        self.limits, self.x, self.classes, self.channels = limits, x, classes, channels
        self.segments = segments  # fit_ram may also run the model in segments (keras_mbv2.tflite.segments)
        self.on_measured = on_measured or (lambda: None)  # after each measurement: the search saves them
        self.techniques = techniques
        self.log = log or (lambda message: None)
        self.measurements: dict[Candidate, Measurement] = dict(known or {})
        self._converted: dict[Candidate, tuple[Any, bytes]] = {}

    # -- one candidate -------------------------------------------------------------------------------------------
    def cost(self, candidate: Candidate) -> Measurement:
        """The candidate's record, with its multiply-adds and parameters (the profiler, on the built model; no
        conversion)."""
        if candidate not in self.measurements:
            from ..profiler import profile

            p = profile(candidate.build(self.channels, self.classes))
            self.measurements[candidate] = Measurement(candidate, int(p.macs), int(p.params))
        return self.measurements[candidate]

    def _inferred(self, candidate: Candidate, as_built: bool) -> str | None:
        """Why `candidate` cannot fit, known without measuring it: it needs at least the memory of a candidate
        measured not to fit. None when no such candidate was measured."""
        for other in self.measurements.values():
            fits = other.fits_as_built if as_built else other.fits
            if other.candidate == candidate or not other.measured or fits is not False:
                continue
            o = other.candidate
            if other.size_independent and o.network == candidate.network and o.width <= candidate.width and \
                    (o.expansion or 0) <= (candidate.expansion or 0):
                return (f"{other.reason.split(':')[0]} does not shrink with the input size: at least as for "
                        f"{o.label}, measured not to fit")
            if o.dominates(candidate):
                return (f"needs at least the memory of {o.label}, measured not to fit "
                        f"({other.reason.split(':')[0] if other.reason else 'RAM'})")
        return None

    def _known(self, m: Measurement, as_built: bool) -> bool | None:
        """`m`'s verdict when known, or when it follows from a measured candidate (then recorded); else None."""
        verdict = m.fits_as_built if as_built else m.fits
        if verdict is not None:
            return verdict
        why = self._inferred(m.candidate, as_built)
        if why is None:
            return None
        if as_built:
            m.fits_as_built = False
        else:
            m.fits, m.reason = False, m.reason or why
        return False

    def fits(self, candidate: Candidate, as_built: bool = False) -> bool:
        """Does `candidate` fit (as built only, or with splits and patches when the search allows them)? Measures it
        unless its verdict is known or follows from a measured candidate."""
        m = self.cost(candidate)
        verdict = self._known(m, as_built)
        if verdict is not None:
            return verdict
        self._measure(m, as_built)
        return bool(m.fits_as_built if as_built else m.fits)

    def _measure(self, m: Measurement, as_built: bool) -> None:
        """Convert and allocate on TFLM: the model as built, then (unless `as_built` only) a fitting plan."""
        from ..micro.emitter import flash_bytes, tensor_arena_size
        from ..models.batch_norm import recalibrate_batch_norms
        from ..quantization import to_tflite
        from ..tflite import arena_use

        c, start = m.candidate, time.perf_counter()
        if c not in self._converted:
            model = c.build(self.channels, self.classes)
            bound = weight_bytes_lower_bound(model)
            if bound > self.limits.model_flash:
                m.measured, m.fits, m.fits_as_built, m.size_independent = True, False, False, True
                m.reason = (f"flash: its int8 weights alone take {bound:,} B (a lower bound, counted without "
                            f"converting), over the {self.limits.model_flash:,} B for the model")
                self.on_measured()  # saved before it is said: a rerun reuses what the log shows as measured
                self.log(f"  {c.label}: {m.macs:,} MACs: does not fit ({m.reason})")
                return
            m.measured = True
            x = self.x(c.size)
            recalibrate_batch_norms(model, x[:64])
            data = to_tflite(model, x)
            self._converted[c] = (model, data)
            use = arena_use(data)
            m.flash = flash_bytes(data)
            m.ram_as_built = tensor_arena_size(use.total)
            m.fits_as_built = m.flash <= self.limits.model_flash and m.ram_as_built <= self.limits.device_ram
            if m.flash > self.limits.model_flash:
                m.fits, m.size_independent = False, True
                m.reason = f"flash: {m.flash:,} B, over the {self.limits.model_flash:,} B for the model"
            elif m.fits_as_built:
                m.fits, m.ram, m.technique, m.macs_fitted = True, m.ram_as_built, AS_BUILT, m.macs
            elif not self.techniques:
                m.fits, m.need = False, m.ram_as_built
                m.reason = (f"RAM: {m.ram_as_built:,} B as built (splits and patches off), over "
                            f"{self.limits.device_ram:,} B")
        if m.fits is None and not as_built:
            self._fit(m)
        m.seconds += time.perf_counter() - start
        if m.fits:
            detail = f"fits ({m.technique}): RAM {m.ram:,} B, flash {m.flash:,} B"
        elif m.fits is False:
            detail = f"does not fit ({m.reason})"
        else:  # measured as built only
            detail = (f"as built: RAM {m.ram_as_built:,} B, flash {m.flash:,} B: "
                      + ("fits" if m.fits_as_built else "does not fit"))
        self.on_measured()  # saved before it is said: a rerun reuses what the log shows as measured
        self.log(f"  {c.label}: {m.macs:,} MACs: {detail} [measured, {time.perf_counter() - start:.0f} s]")

    def _fit(self, m: Measurement) -> None:
        """Channel splits, then patches (`fit_ram`), then (with `segments`) segments, on the converted model; the
        plan's device RAM as emitted."""
        from ..micro.emitter import emitted_ram, flash_bytes, tensor_arena_size
        from ..micro.fit import RamNotMet, fit_ram, segmented_ram

        model, data = self._converted[m.candidate]
        x = self.x(m.candidate.size)
        try:
            result = fit_ram(model, self.limits.device_ram, x, converted=data, segments=self.segments)
        except RamNotMet as exc:
            m.fits, m.need = False, exc.need or tensor_arena_size(exc.before.tail)
            if exc.persistent:
                m.size_independent = True
                m.reason = (f"TFLM's persistent data: {exc.before.tail:,} B (+ margin) before any activation, "
                            f"over the {self.limits.device_ram:,} B for inference whatever the plan")
            else:
                m.reason = (f"RAM: the best plan (splits, patches{', segments' if self.segments else ''}) needs "
                            f"{m.need:,} B, over "
                            f"{self.limits.device_ram:,} B")
            return
        except ValueError as exc:  # no patch stage within the multiply-add overhead, and the like
            m.fits, m.reason = False, "RAM: " + " ".join(str(exc).split())[:200]
            return
        m.flash = flash_bytes(result.patched or result.tflite, result.segmented)
        if m.flash > self.limits.model_flash:
            m.fits = False
            m.reason = f"flash: the fitting plan's arrays take {m.flash:,} B, over {self.limits.model_flash:,} B"
            return
        m.fits = True
        m.splits = {name: s for name, s in result.memory_splits.items() if s > 1}
        if result.patched is not None:
            m.technique, m.ram = PATCHES, emitted_ram(result.patched)
            m.patches = (result.patched.plan.cut, tuple(result.patched.plan.grid))
        if result.segmented is not None:
            m.technique, m.segments = SEGMENTS, len(result.segmented.segments)
            m.ram = segmented_ram(result.segmented, result.patched, margins=True)
        elif result.patched is None:
            m.technique, m.ram = SPLITS, tensor_arena_size(result.after.total)
        m.macs_fitted = int(result.macs_after)

    # -- the grid ------------------------------------------------------------------------------------------------
    def largest_fitting(self, row: list[Candidate], as_built: bool = False) -> Candidate | None:
        """The largest input size of `row` (one family, width and expansion; sizes ascending) that fits, by binary
        search: memory grows with the input size, so the fitting sizes are a prefix of the row."""
        low, high = -1, len(row)  # row[low] fits (or none), row[high] does not (or past the end)
        while high - low > 1:
            mid = (low + high) // 2
            if self.fits(row[mid], as_built):
                low = mid
            else:
                high = mid
        return row[low] if low >= 0 else None

    def front(self, candidates: list[Candidate], as_built: bool = False,
              max_macs: int | None = None) -> list[Candidate]:
        """The largest fitting candidate of each row, rows narrow first (a wider row's verdicts follow from the
        narrower's failures). Candidates over `max_macs` are left out before any measuring."""
        rows: dict[tuple, list[Candidate]] = {}
        for c in candidates:
            m = self.cost(c)
            if max_macs is not None and m.macs > max_macs:
                m.fits = m.fits_as_built = False
                m.reason = f"MACs: {m.macs:,}, over the limit of {max_macs:,}"
                continue
            rows.setdefault(c.row, []).append(c)
        found = []
        for key in sorted(rows, key=lambda r: (r[0], r[1], r[2] or 0)):
            best = self.largest_fitting(sorted(rows[key], key=lambda c: c.size), as_built)
            if best is not None:
                found.append(best)
        for row in rows.values():  # what follows from the measurements for the candidates not measured
            for c in row:
                self._known(self.measurements[c], as_built)
        return found


def choose_finalists(fitting: list[Measurement], count: int) -> list[Measurement]:
    """The `count` fitting candidates with the most multiply-adds, diverse: after the largest, each next one differs
    from those chosen in width and in input size where such a candidate exists, else in one of them."""
    left = sorted(fitting, key=lambda m: (-m.macs, m.candidate))
    chosen: list[Measurement] = []
    while left and len(chosen) < count:
        def differs(m: Measurement, both: bool) -> bool:
            tests = [(m.candidate.width != c.candidate.width, m.candidate.size != c.candidate.size) for c in chosen]
            return all((w and s) if both else (w or s) for w, s in tests)

        pick = next((m for m in left if differs(m, True)), None) or next((m for m in left if differs(m, False)),
                                                                          left[0])
        chosen.append(pick)
        left.remove(pick)
    return chosen
