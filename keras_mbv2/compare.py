"""The paper's Table 3 and Table 4 beside what keras_mbv2's builders and profiler measure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

from . import paper
from .models.networks import NETWORKS
from .profiler import Profile, profile


def table4_rows() -> list[tuple[str, Callable[..., keras.Model], dict[str, Any]]]:
    """(Table 4 label, builder, its arguments) for every row our networks table reproduces, in the paper's order."""
    rows = {label: (label, n.builder, kwargs) for n in NETWORKS.values() for label, kwargs in n.paper_rows}
    return [rows[label] for label in paper.TABLE4 if label in rows]

NOTES = [
    "Params include the 1000-class classifier, as keras.applications counts them; the paper's MobileNetV2 "
    "3.4M is 3.54M here and in keras.applications.",
    "ShuffleNet 1.5x: the paper scales only the stages (stem stays 24); keras_mbv2 also scales the stem "
    "(36 channels), hence about 2.6% more MAdds.",
    "MobileNetV2 1.4: the paper lists 6.9M params; keras.applications and keras_mbv2 count 6.16M for the "
    "same architecture (Table 2 at alpha 1.4, last conv 1792).",
    "Peak memory executes each block as one operation (Section 5.1) and counts every tensor alive at once. "
    "The paper's Table 3 applies the Section 5 trick to the first layer of MobileNetV2 and ShuffleNet and "
    "lists one tensor per resolution, so its figures are lower than these peaks. Its MobileNetV2 rows also list "
    "each stage's channels one resolution early (e.g. 32 at 56², which first appears at 28²).",
]


@dataclass
class Row:
    """One Table 4 network: the paper's figures beside ours."""

    network: str
    paper_top1: float
    paper_params_m: float
    paper_madds_m: float
    params_m: float
    madds_m: float
    peak_kb: float
    profile: Profile


def compare(size: int = 224, bytes_per_activation: int = 2) -> list[Row]:
    """Build each Table 4 network at `size` and measure params, MAdds and peak activation memory."""
    rows = []
    for label, builder, kwargs in table4_rows():
        p = profile(builder(input_shape=(size, size, 3), **kwargs), bytes_per_activation)
        top1, params, madds = paper.TABLE4[label]
        rows.append(Row(label, top1, params, madds, p.params / 1e6, p.macs / 1e6, p.peak_activation_bytes / 1000, p))
        keras.backend.clear_session()
    return rows


def format_rows(rows: list[Row]) -> str:
    """The comparison as text: Table 4 beside our measurements, Table 3 per resolution, and the notes."""
    lines = [
        "Paper Table 4 vs measured (224x224, 1000 classes; memory at 16-bit activations)",
        f"{'network':<20}{'top-1':>7}{'params paper':>14}{'params ours':>13}{'MAdds paper':>13}"
        f"{'MAdds ours':>12}{'diff':>8}{'peak KB':>10}",
    ]
    for r in rows:
        diff = (r.madds_m - r.paper_madds_m) / r.paper_madds_m * 100
        lines.append(
            f"{r.network:<20}{r.paper_top1:>7.1f}{r.paper_params_m:>13.1f}M{r.params_m:>12.2f}M"
            f"{r.paper_madds_m:>12.0f}M{r.madds_m:>11.1f}M{diff:>+7.1f}%{r.peak_kb:>10.0f}"
        )
    lines.append("")
    lines.append("Paper Table 3 (max channels / Kb per resolution) vs the widest tensor per resolution here")
    for label, ours_label in (("MobileNetV1", "MobileNetV1"), ("MobileNetV2", "MobileNetV2")):
        ours = next(r for r in rows if r.network == ours_label).profile.memory_by_resolution()
        cells = []
        for res, (ch, kb) in paper.TABLE3[label].items():
            o = ours.get(res)
            cells.append(f"{res}²: {ch}/{kb} vs {o[0]}/{o[1] / 1000:.0f}" if o else f"{res}²: {ch}/{kb} vs -")
        lines.append(f"  {label:<12} " + "; ".join(cells))
    lines.append("")
    lines += [f"Note: {n}" for n in NOTES]
    return "\n".join(lines)
