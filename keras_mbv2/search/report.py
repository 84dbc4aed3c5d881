"""The search's result and its report: every candidate considered, what was measured and what followed from it,
why the larger candidates were rejected, the trials, and the front (multiply-adds against device RAM and flash) as
a plot."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from typing import Any

from ..files import atomic_write, write_file
from .fitting import AS_BUILT, PATCHES, SEGMENTS, SPLITS, Measurement
from .space import Limits
from .trials import Trial, within_noise

KIB = 1024


@dataclass
class SearchResult:
    """What `search` found and wrote: the chosen candidate with its measured flash and device RAM, its accuracies,
    every candidate's measurement, the trials, and the files."""

    out_dir: str
    limits: Limits
    chosen: Measurement
    float_test_accuracy: float
    int8_test_accuracy: float  # LiteRT reference kernels
    tflm_test_accuracy: float  # the TFLM host runtime, patched when the plan is
    tflm_agreement: str  # TFLM vs LiteRT outputs on the test images
    flash_bytes: int  # the emitted model array(s)
    ram_bytes: int  # the emitted device RAM (arena(s) + margin, stage buffer, input band)
    epochs: int
    qat_epochs: int
    measurements: list[Measurement]
    trials: list[Trial]
    as_built_best: Measurement | None  # the largest candidate fitting without splits or patches
    seconds: float
    files: list[str] = field(default_factory=list)
    classes: int = 0  # the data's classes (chance: 1 / classes)

    def choice(self) -> str:
        """How sure the choice among the finalists is, in one sentence: a lone finalist, a winner above the others'
        95% intervals, or a difference within what the validation images can tell apart."""
        if len(self.trials) < 2:
            return "One finalist was trained: there was no choice to make among trained candidates."
        ranked = sorted(self.trials, key=lambda t: -t.val_accuracy)
        best, second = ranked[0], ranked[1]
        if best.val_images and within_noise(best, second):
            return (f"The finalists' difference ({best.candidate.label} {best.val_accuracy:.1%}, "
                    f"{second.candidate.label} {second.val_accuracy:.1%}) is within the 95% intervals of "
                    f"{best.val_images} validation images: the choice between them is not significant (the higher "
                    "score was taken; an exact tie goes to more multiply-adds).")
        return (f"{best.candidate.label}'s validation accuracy is above the 95% interval of every other finalist "
                f"({best.val_images} validation images).")

    def table(self) -> str:
        """The aligned summary the command prints."""
        c = self.chosen
        rows = [
            ("board", self.limits.name),
            ("chosen", f"{c.candidate.label} ({c.technique})"),
            ("MACs", f"{c.macs:,}" + (f" ({c.macs_fitted:,} run in patches)" if c.patches else "")),
            ("flash (model array)", f"{self.flash_bytes:,} B of {self.limits.model_flash:,} B"),
            ("RAM (TFLM, measured)", f"{self.ram_bytes:,} B of {self.limits.device_ram:,} B"),
            ("float / int8 accuracy", f"{self.float_test_accuracy:.1%} / {self.int8_test_accuracy:.1%} (test split)"),
            ("TFLM vs LiteRT", self.tflm_agreement),
        ]
        if self.as_built_best is not None:
            b = self.as_built_best
            rows.append(("as built, the best", f"{b.candidate.label}: {b.macs:,} MACs" + (
                f" (the chosen has {c.macs / b.macs:.2f}x)" if c.macs > b.macs else "")))
        rows += [("time", f"{self.seconds / 60:.1f} min"), ("files", self.out_dir)]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)



def status(m: Measurement, result: Any) -> str:
    """One candidate's part in the search, in words."""
    trials = {t.candidate: t for t in result.trials}
    chosen = result.chosen.candidate
    if m.candidate == chosen:
        if len(trials) == 1:
            return f"chosen: the only finalist (validation accuracy {trials[chosen].describe()})"
        return f"chosen: validation accuracy {trials[chosen].describe()}"
    if m.candidate in trials:
        mine, best = trials[m.candidate], trials[chosen]
        noise = " (within the 95% intervals: not significant)" if mine.val_images and within_noise(mine, best) else ""
        return (f"finalist: validation accuracy {mine.describe()}, "
                + (f"below the chosen's {best.val_accuracy:.1%}{noise}" if mine.val_accuracy < best.val_accuracy
                   else "equal to the chosen's, which has more multiply-adds"))
    if m.fits:
        finalists = [result.chosen, *(x for x in result.measurements if x.candidate in trials)]
        if m.macs > min(f.macs for f in finalists):
            return ("fits; not a finalist: its width or input size is already among the finalists (they are chosen "
                    "diverse)")
        return "fits; not a finalist: fewer multiply-adds than the finalists"
    if m.fits is False:
        return m.reason
    if m.measured:
        return (f"measured as built only ({'fits' if m.fits_as_built else 'does not fit'} as built): a larger input "
                "size of its row fits with splits or patches")
    return "not measured: a larger input size of its row fits (more multiply-adds)"


def verdict_source(m: Measurement) -> str:
    """Where the row's verdict comes from: measured on TFLM, or how it follows without measuring."""
    if m.measured and m.flash is not None:
        return "measured (TFLM host runtime)"
    if m.measured:
        return "lower bound (weights counted)"
    if m.fits is False:
        return "follows from a measured candidate"
    return "not measured"


def _kib(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def candidates_csv(result: Any) -> str:
    """Every candidate as a CSV row."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["candidate", "network", "width", "size", "expansion", "macs", "params", "flash_bytes",
                "ram_as_built_bytes", "ram_bytes", "plan", "fits", "fits_as_built", "verdict", "status"])
    for m in sorted(result.measurements, key=lambda m: -m.macs):
        c = m.candidate
        w.writerow([c.label, c.network, c.width, c.size, c.expansion or "", m.macs, m.params, m.flash or "",
                    m.ram_as_built or "", m.ram or "", m.technique, m.fits, m.fits_as_built, verdict_source(m),
                    status(m, result)])
    return out.getvalue()


def report_markdown(result: Any) -> str:
    """report.md."""
    c, limits = result.chosen, result.limits
    lines = [
        f"# keras-mbv2 search: {limits.name}",
        "",
        f"Limits: {limits.describe()}.",
        "",
        "## The chosen model",
        "",
        "| | |",
        "| --- | --- |",
        f"| model | {c.candidate.label} |",
        f"| memory plan | {c.technique}" + (f" ({', '.join(f'{k}={v}' for k, v in c.splits.items())})" if c.splits
                                            else "") + (f", patches {c.patches[1][0]}x{c.patches[1][1]} after "
                                                        f"{c.patches[0]} operators" if c.patches else "")
        + (f", the model in {c.segments} segments" if c.technique == SEGMENTS else "") + " |",
        f"| multiply-adds | {c.macs:,}" + (f" ({c.macs_fitted:,} as run in patches)" if c.patches
                                          else "") + " |",
        f"| params | {c.params:,} |",
        f"| flash: the emitted model array(s) | {result.flash_bytes:,} B of {limits.model_flash:,} B |",
        f"| RAM: arena(s) + margin, stage buffer, input band, measured on TFLM | {result.ram_bytes:,} B of "
        f"{limits.device_ram:,} B |",
        f"| float test accuracy | {result.float_test_accuracy:.1%} ({result.epochs} epochs) |",
        f"| int8 test accuracy (LiteRT reference kernels) | {result.int8_test_accuracy:.1%} (QAT, "
        f"{result.qat_epochs} epoch{'s' if result.qat_epochs > 1 else ''}) |",
        f"| int8 test accuracy (TFLite Micro host runtime) | {result.tflm_test_accuracy:.1%}; "
        f"{result.tflm_agreement} |",
        "",
    ]
    b = result.as_built_best
    if b is not None and b.candidate != c.candidate:
        lines += [f"Without splits or patches, the largest candidate of this grid that fits is {b.candidate.label}: "
                  f"{b.macs:,} multiply-adds, {b.ram_as_built:,} B RAM as built. The chosen model has "
                  f"{c.macs / b.macs:.2f}x its multiply-adds: the memory techniques buy that capacity.", ""]
    elif b is None:
        lines += ["Without splits or patches, no candidate of this grid fits.", ""]
    else:
        lines += ["The chosen model fits as built: splits and patches were not needed.", ""]
    larger = sorted((m for m in result.measurements if m.macs > c.macs), key=lambda m: -m.macs)
    lines += ["## Why the larger candidates were rejected", ""]
    lines += [f"- {m.candidate.label} ({m.macs:,} MACs): {status(m, result)} [{verdict_source(m)}]"
              for m in larger] or ["- none: the chosen model has the most multiply-adds of the grid."]
    lines += ["", "## Trials (equal epochs, validation split held out of the training data)", "",
              "Each validation accuracy is a count of right images, so it carries the uncertainty of that count: the "
              "95% interval (Wilson) is where the accuracy on unseen images of the same kind lies.", "",
              "| candidate | MACs | epochs | validation accuracy | right / images | 95% interval | time |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    macs = {m.candidate: m.macs for m in result.measurements}
    for t in result.trials:
        low, high = t.interval
        lines.append(f"| {t.candidate.label} | {macs[t.candidate]:,} | {t.epochs} | {t.val_accuracy:.1%} | "
                     f"{round(t.val_accuracy * t.val_images)} / {t.val_images} | {low:.1%} to {high:.1%} | "
                     f"{t.seconds:.0f} s |")
    lines += ["", result.choice()]
    lines += ["", "## Every candidate", "",
              "A row is called fitting only when it was converted and measured on the TFLite Micro host runtime. "
              "RAM as built: kTensorArenaSize of the model as converted; RAM: the device RAM of the plan that fits "
              "(TFLM arena(s) + margin, and with patches the stage buffer and input band).", "",
              "| candidate | MACs | params | flash B | RAM as built B | RAM B | plan | fits | verdict | part in the "
              "search |", "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"]
    for m in sorted(result.measurements, key=lambda m: -m.macs):
        fits = "yes" if m.fits else "no" if m.fits is False else ""
        lines.append(f"| {m.candidate.label} | {m.macs:,} | {m.params:,} | {_kib(m.flash)} | {_kib(m.ram_as_built)} | "
                     f"{_kib(m.ram)} | {m.technique} | {fits} | {verdict_source(m)} | {status(m, result)} |")
    lines += ["", "![the front](front.png)", "",
              "Files: `model.keras` (float, with the plan's channel splits), `model_int8.tflite` (QAT int8, the whole "
              "model), `project/` (the firmware project: `make -C project model-objects`; its `model/` holds the C "
              "files" + (", patched" if c.patches else "") + (", segmented" if c.technique == SEGMENTS else "")
              + "), `candidates.csv`; `trials/` and "
              "`final/` keep the run's training so that a rerun continues it.", ""]
    return "\n".join(lines)


def plot_front(result: Any, path: str) -> None:
    """front.png: multiply-adds against device RAM and against flash, each candidate measured, the limits drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limits = result.limits
    fig, (ax_ram, ax_flash) = plt.subplots(1, 2, figsize=(11, 5.6))
    styles = {AS_BUILT: ("o", "#55a868", "fits as built"), SPLITS: ("s", "#4c72b0", "fits with channel splits"),
              PATCHES: ("^", "#dd8452", "fits with patches"), SEGMENTS: ("D", "#8172b3", "fits with segments")}
    shown: set[str] = set()
    flash_shown: set[str] = set()
    for m in result.measurements:
        if not m.measured or m.flash is None:
            continue
        x = m.macs / 1e6
        if m.ram_as_built is not None:
            label = "as built (did not fit)" if "as built" not in shown else None
            if m.technique != AS_BUILT:
                ax_ram.scatter(x, m.ram_as_built / KIB, marker="o", facecolors="none", edgecolors="#999999",
                               label=label)
                shown.add("as built")
        if m.fits:
            marker, color, label = styles[m.technique]
            ax_ram.scatter(x, m.ram / KIB, marker=marker, color=color, label=None if label in shown else label)
            shown.add(label)
            if m.ram_as_built is not None and m.technique != AS_BUILT:
                ax_ram.annotate("", (x, m.ram / KIB), (x, m.ram_as_built / KIB),
                                arrowprops=dict(arrowstyle="->", color=color, lw=0.8))
            ax_flash.scatter(x, m.flash / KIB, marker=marker, color=color,
                             label=None if label in flash_shown else label)
            flash_shown.add(label)
        else:
            need = m.need or m.ram_as_built
            if need:
                ax_ram.scatter(x, need / KIB, marker="x", color="#c44e52",
                               label=None if "no" in shown else "does not fit (least RAM found)")
                shown.add("no")
            ax_flash.scatter(x, m.flash / KIB, marker="x", color="#c44e52",
                             label=None if "no" in flash_shown else "does not fit (flash of the model as built)")
            flash_shown.add("no")
        y = (m.ram or m.need or m.ram_as_built or 0) / KIB
        ax_ram.annotate(f"{m.candidate.width:g}@{m.candidate.size}" + (f" t{m.candidate.expansion}"
                                                                       if m.candidate.expansion else ""),
                        (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    c = result.chosen
    ax_ram.scatter(c.macs / 1e6, c.ram / KIB, marker="*", s=220, color="gold", edgecolors="black", zorder=5,
                   label=f"chosen: {c.candidate.label}")
    ax_flash.scatter(c.macs / 1e6, c.flash / KIB, marker="*", s=220, color="gold", edgecolors="black", zorder=5,
                     label=f"chosen: {c.candidate.label}")
    ax_ram.axhline(limits.device_ram / KIB, color="black", lw=1, ls="--",
                   label=f"RAM for inference {limits.device_ram / KIB:.0f} KiB")
    ax_flash.axhline(limits.model_flash / KIB, color="black", lw=1, ls="--",
                     label=f"flash for the model {limits.model_flash / KIB:.0f} KiB")
    ax_ram.set(xlabel="multiply-adds (millions)", ylabel="device RAM (KiB), measured on TFLM",
               title="RAM: as built (grey) -> with the plan that fits")
    ax_flash.set(xlabel="multiply-adds (millions)", ylabel="flash: model array(s) (KiB)", title="flash")
    for ax in (ax_ram, ax_flash):  # below the axes: a legend inside would hide candidates
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.suptitle(f"keras-mbv2 search: {limits.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: str, result: Any) -> list[str]:
    """Write report.md, front.png and candidates.csv into `out`; returns their names."""
    write_file(os.path.join(out, "report.md"), report_markdown(result))
    write_file(os.path.join(out, "candidates.csv"), candidates_csv(result))
    atomic_write(os.path.join(out, "front.png"), lambda p: plot_front(result, p), ".png")
    return ["report.md", "front.png", "candidates.csv"]
