"""Child process that runs a .tflite model in the TFLite Micro host runtime.

TFLM can abort the whole process (SIGABRT) on degenerate models, so the parent runs this in a child and
turns a crash into an error. Usage: python _tflm_worker.py MODEL INPUTS OUT ARENA
(run by file path so that only numpy and tflite_micro are imported), where INPUTS is a .npy of already-quantized inputs (N, ...) and OUT a .npz to write (outputs, allocations).
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np


def main(model_path: str, inputs_path: str, out_path: str, arena_size: int) -> None:
    from tflite_micro.python.tflite_micro import runtime

    with open(model_path, "rb") as f:
        model = f.read()
    inputs = np.load(inputs_path)
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
        allocations = log.read().decode(errors="replace")
    np.savez(out_path, outputs=np.stack(outputs) if outputs else np.zeros((0,)), allocations=np.array(allocations))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
