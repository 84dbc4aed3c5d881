"""Child process that runs a .tflite model in LiteRT (reference kernels) or the TFLite Micro host runtime.

Both runtimes can abort the whole process (SIGABRT) on degenerate models (e.g. a calibration that gives a
near-zero softmax input scale), so the parent runs this file in a child and turns a crash into an error.
Run by file path, so that only numpy and the runtime are imported:

    python _runtime_worker.py RUNTIME MODEL INPUTS OUT ARENA

RUNTIME is "litert" or "tflm"; INPUTS is a .npy of already-quantized inputs (N, ...); OUT is the .npz to
write (outputs, and TFLM's allocation report); ARENA is TFLM's arena size in bytes. With N = 0, TFLM only
allocates (and prepares every operator), which already fixes the arena it reports.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np


def run_litert(model: bytes, inputs: np.ndarray, reference_kernels: bool = True) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    interp = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outputs = []
    for sample in inputs:
        interp.set_tensor(inp["index"], sample[None, ...])
        interp.invoke()
        outputs.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(outputs)


def run_tflm(model: bytes, inputs: np.ndarray, arena_size: int) -> tuple[np.ndarray, str]:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    outputs = []
    for x in inputs:
        interp.set_input(x[None, ...], 0)
        interp.invoke()
        outputs.append(np.array(interp.get_output(0))[0])
    # print_allocations writes to the C stderr: capture file descriptor 2 around it
    with tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        report = log.read().decode(errors="replace")
    return (np.stack(outputs) if outputs else np.zeros((0,), "int8")), report


def main(runtime: str, model_path: str, inputs_path: str, out_path: str, arena_size: int) -> None:
    with open(model_path, "rb") as f:
        model = f.read()
    inputs = np.load(inputs_path)
    if runtime == "litert":
        outputs, report = run_litert(model, inputs), ""
    else:
        outputs, report = run_tflm(model, inputs, arena_size)
    np.savez(out_path, outputs=outputs, allocations=np.array(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
