"""Operator order of a .tflite model, as TensorFlow Lite Micro's memory planner sees it.

TFLM runs a subgraph's operators in their flatbuffer order, and its planner (GreedyMemoryPlanner) gives each
activation tensor a buffer for the span from the operator that writes it to the last operator that reads it.
So the order decides which tensors must exist at once. The paper's memory-efficient inverted residual
(Section 5.1, `InvertedResidual(memory_splits=...)`) only saves memory when each slice's operators run
together, before the next slice's expand conv.

- `activation_peak`: the largest sum of activation tensors alive during one operator, in a given order: the
  least any planner can place for that order (TFLM's "head");
- `depth_first_order`: the order that finishes each branch before starting the next (inputs in order),
  which is slice by slice for a split block;
- `reorder_operators`: rewrites the flatbuffer with its operators in another topological order (any
  topological order computes the same outputs);
- `schedule_operators`: keeps the converter's order unless the depth-first one has a smaller peak.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..profiler import liveness_peak
from .flatbuffer import activation_sizes, opcode_names, pack_model, parse_model, single_subgraph


def _graph(data: bytes) -> tuple[Any, Any]:
    return single_subgraph(data, "scheduled")


def lifetimes(graph: Any, sizes: dict[int, int], order: Sequence[int]) -> tuple[dict[int, int], dict[int, int]]:
    """(born, last_use) step of every activation tensor, running the operators in `order`; subgraph inputs
    are born at -1, outputs stay alive to the end."""
    ops = graph.operators
    born = {t: -1 for t in graph.inputs if t in sizes}
    last = {t: len(order) for t in graph.outputs if t in sizes}
    for position, index in enumerate(order):
        for t in ops[index].outputs:
            if t in sizes:
                born.setdefault(t, position)
        for t in ops[index].inputs:
            if t in sizes:
                last[t] = max(last.get(t, position), position)
    return born, last


def _peak(graph: Any, sizes: dict[int, int], order: Sequence[int]) -> tuple[int, int]:
    born, last = lifetimes(graph, sizes, order)
    peak, step = liveness_peak(born, last, sizes, len(order))
    return peak, order[step] if order else 0


def activation_peak(data: bytes, order: Sequence[int] | None = None) -> tuple[int, int]:
    """(bytes, operator index): the largest sum of activation tensors alive during one operator, running the
    operators in `order` (default: the flatbuffer's)."""
    model, graph = _graph(data)
    order = range(len(graph.operators)) if order is None else order
    return _peak(graph, activation_sizes(model, graph), list(order))


def live_bytes_per_operator(data: bytes) -> list[tuple[str, int]]:
    """(operator name, bytes of activation tensors alive while it runs) for each operator in flatbuffer order:
    what TFLM's planner must hold at each step (its activation area is at least the largest of these)."""
    model, graph = _graph(data)
    sizes = activation_sizes(model, graph)
    born, last = lifetimes(graph, sizes, range(len(graph.operators)))
    names = opcode_names(model)
    return [(names[op.opcodeIndex], sum(sizes[t] for t in born if born[t] <= step <= last.get(t, born[t])))
            for step, op in enumerate(graph.operators)]


def depth_first_order(data: bytes) -> list[int]:
    """Operators in depth-first post-order from the outputs, each operator's inputs visited in order."""
    return _depth_first(_graph(data)[1])


def _depth_first(graph: Any) -> list[int]:
    producer = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}
    order: list[int] = []
    done: set[int] = set()

    def visit(index: int) -> None:
        stack = [(index, iter(graph.operators[index].inputs))]
        while stack:
            op, pending = stack[-1]
            for t in pending:
                p = producer.get(t)
                if p is not None and p not in done:
                    done.add(p)
                    stack.append((p, iter(graph.operators[p].inputs)))
                    break
            else:
                stack.pop()
                order.append(op)

    for t in graph.outputs:
        p = producer.get(t)
        if p is not None and p not in done:
            done.add(p)
            visit(p)
    order += [i for i in range(len(graph.operators)) if i not in done]  # operators no output depends on
    return order


def reorder_operators(data: bytes, order: Sequence[int]) -> bytes:
    """The flatbuffer with its operators in `order`, which must be a topological order of all of them."""
    model, graph = _graph(data)
    n = len(graph.operators)
    if sorted(order) != list(range(n)):
        raise ValueError(f"`order` must be a permutation of the {n} operators. Received: order={list(order)!r}")
    ready = set(graph.inputs) | {i for i, _ in enumerate(graph.tensors) if i not in
                                  {t for op in graph.operators for t in op.outputs}}
    for index in order:
        op = graph.operators[index]
        missing = [t for t in op.inputs if t >= 0 and t not in ready]
        if missing:
            raise ValueError(f"`order` runs operator {index} before the operators producing its inputs {missing}.")
        ready.update(op.outputs)
    graph.operators = [graph.operators[i] for i in order]
    return pack_model(model, len(data))


def schedule_operators(data: bytes) -> bytes:
    """`data` as it is, unless the depth-first order has a smaller activation peak: then reordered.
    Models with several subgraphs (control flow) are left as they are."""
    model = parse_model(data)
    if len(model.subgraphs or []) != 1:
        return data
    graph = model.subgraphs[0]
    sizes = activation_sizes(model, graph)
    order = _depth_first(graph)
    if _peak(graph, sizes, order)[0] < _peak(graph, sizes, range(len(graph.operators)))[0]:
        return reorder_operators(data, order)
    return data
