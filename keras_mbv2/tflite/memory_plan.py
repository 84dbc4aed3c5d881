"""An offline memory plan for TensorFlow Lite Micro: activation offsets chosen here, stored in the model.

TFLM's GreedyMemoryPlanner places activation buffers largest first, each at the lowest offset free for its
lifetime. That is not always tight: MobileNetV1 0.25 at 96x96x3 gets a 73,728 B activation area where the
operator order needs only 55,296 B at once. TFLM also reads a plan from the model's metadata
("OfflineMemoryAllocation", documented in tflite-micro's memory management notes: int32 version 0,
subgraph 0, the number of tensors, then each tensor's byte offset in the activation area or -1 for "plan at
run time"), so `offline_plan` tries several placement orders with the same lowest-free-offset rule and
writes the tightest it finds. `emit` keeps it only when TFLM then reports a smaller arena.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .flatbuffer import METADATA_NAME, activation_sizes, metadata_name, pack_model, parse_model, single_subgraph
from .schedule import lifetimes

ALIGNMENT = 16  # TFLM's MicroArenaBufferAlignment


def _place(items: dict[int, tuple[int, int, int]], order: list[int]) -> tuple[dict[int, int], int]:
    """Each tensor (size, born, last) in `order` at the lowest offset not overlapping a placed tensor that is
    alive at the same time. Returns (offsets, bytes used)."""
    offsets: dict[int, int] = {}
    for t in order:
        size, born, last = items[t]
        busy = sorted((offsets[u], offsets[u] + items[u][0]) for u in offsets
                      if not (items[u][2] < born or last < items[u][1]))
        offset = 0
        for low, high in busy:
            if offset + size <= low:
                break
            offset = max(offset, high)
        offsets[t] = offset
    return offsets, max((offsets[t] + items[t][0] for t in offsets), default=0)


def plan_offsets(data: bytes) -> tuple[dict[int, int], int]:
    """(tensor index -> byte offset, activation bytes) of the tightest placement found for `data`'s operator
    order: largest first (TFLM's own rule), earliest first, longest-lived first."""
    model, graph = single_subgraph(data, "planned")
    sizes = activation_sizes(model, graph)
    born, last = lifetimes(graph, sizes, range(len(graph.operators)))
    items = {t: (-(-sizes[t] // ALIGNMENT) * ALIGNMENT, born[t], last.get(t, born[t])) for t in born}
    keys = (
        lambda t: (-items[t][0], items[t][1], t),
        lambda t: (items[t][1], -items[t][0], t),
        lambda t: (items[t][1] - items[t][2], -items[t][0], t),
    )
    return min((_place(items, sorted(items, key=key)) for key in keys), key=lambda plan: plan[1])


def with_offline_plan(data: bytes, offsets: dict[int, int]) -> bytes:
    """`data` with an OfflineMemoryAllocation metadata entry holding `offsets` (others -1), replacing any."""
    from ai_edge_litert import schema_py_generated as schema

    model = parse_model(data)
    n = len(model.subgraphs[0].tensors)
    values = np.array([0, 0, n] + [offsets.get(i, -1) for i in range(n)], dtype="<i4")
    entry = next((m for m in model.metadata or [] if metadata_name(m) == METADATA_NAME), None)
    if entry is None:  # a new buffer and metadata entry; a plan already there is overwritten in place
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers)
        model.buffers.append(schema.BufferT())
        model.metadata = [*(model.metadata or []), entry]
    model.buffers[entry.buffer].data = np.frombuffer(values.tobytes(), dtype=np.uint8)
    return pack_model(model, len(data))


def offline_plan(data: bytes) -> tuple[bytes, int]:
    """(`data` with the tightest offline plan found, its activation bytes)."""
    offsets, used = plan_offsets(data)
    return with_offline_plan(data, offsets), used


def with_tightest_plan(data: bytes, use: Any = None) -> tuple[bytes, Any, Any]:
    """(`data` with an offline plan if TFLM then reports a smaller arena than with its own greedy plan, else
    `data`; its arena as measured on the TFLM host runtime; the arena TFLM planned itself when the offline plan
    replaced it, else None). `use`: `data`'s arena, already measured."""
    from .runtime import arena_use

    use = use or arena_use(data)
    if len(parse_model(data).subgraphs) == 1:
        planned, head = offline_plan(data)
        if head < use.head:
            planned_use = arena_use(planned)
            if planned_use.total < use.total:
                return planned, planned_use, use
    return data, use, None
