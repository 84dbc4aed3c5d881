"""The search's last steps for the winner: float training to the end, the stage-1 plan applied (channel splits,
patches), quantization-aware training, int8 conversion, the int8 model on TFLM against LiteRT, the firmware
project, and the report."""

from __future__ import annotations

import os
from typing import Any, Callable

from ..files import atomic_write, write_file
from ..interrupts import stop_on_ctrl_c
from .fitting import PATCHES, SEGMENTS, Measurement
from .report import SearchResult, write_report
from .space import Limits
from .trials import QAT_EPOCH_COST, Clock, Trial, train_final

Log = Callable[[str], None]
CONVERSION_RESERVE = 60.0  # seconds the budget keeps for conversion, checks and emission after QAT
#: The test images embedded in the project for `make run-app` (and `keras-mbv2 check-app`).
TEST_IMAGES = 10


def finish(out: str, limits: Limits, chosen: Measurement, trial: Trial, source: Any, epochs: int, qat_epochs: int,
           clock: Clock, log: Log, callbacks: list[Any], measurements: list[Measurement], trials: list[Trial],
           as_built_best: Measurement | None, seed: int) -> SearchResult:
    """Train, quantize, check and emit the winner into `out`; returns the `SearchResult`."""
    import tf_keras

    from ..micro import write_project
    from ..micro.emitter import emitted_ram, flash_bytes, tensor_arena_size
    from ..micro.fit import fit_segments, segmented_ram
    from ..models.memory_split import memory_splits_of, split_model
    from ..quantization import evaluate_tflite, fit_qat, quantize_aware, to_tflite
    from ..tflite import arena_use, compare_outputs, io_details
    from ..tflite.patches import patch_model, run_patched, stage_cuts
    from ..tflite.runtime import quantize_input
    from ..training import step_progress

    data = source.at(chosen.candidate.size)
    classes = len(data.class_names)
    reserve = QAT_EPOCH_COST * qat_epochs * trial.seconds_per_epoch + CONVERSION_RESERVE
    model, trained = train_final(trial, data, epochs, os.path.join(out, "trials"), os.path.join(out, "final"), clock,
                                 log, callbacks, reserve, seed)
    float_accuracy = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    val_accuracy = float(model.evaluate(data.x_val, data.y_val, verbose=0)[1])
    if not val_accuracy > 1.5 / classes:
        raise RuntimeError(f"the winner, {chosen.candidate.label}, scores {val_accuracy:.1%} on the validation split "
                           f"after {trained} epochs, chance level for {classes} classes: nothing was emitted. Give "
                           "more epochs or check the data.")
    if chosen.splits:
        model = split_model(model, {**{name: 1 for name in memory_splits_of(model)}, **chosen.splits})
        log(f"  channel splits of the plan: {', '.join(f'{k}={v}' for k, v in chosen.splits.items())}")

    log(f"  quantization-aware training: {qat_epochs} epoch{'s' if qat_epochs > 1 else ''} ({clock.describe()})")
    qat = quantize_aware(model)
    fit_qat(qat, data.x_train, data.y_train, os.path.join(out, "final", "qat_run"), epochs=qat_epochs,
            validation_data=(data.x_val, data.y_val), verbose=0, seed=seed, log=log,
            callbacks=[stop_on_ctrl_c(tf_keras.callbacks.Callback),
                       step_progress(tf_keras.callbacks.Callback, qat_epochs, lambda m: log("    " + m),
                                     what="QAT epoch")])

    log("[4/4] int8: conversion, TFLM against LiteRT on the test images, the firmware project, the report")
    int8 = to_tflite(qat, data.x_train[:200])
    segmented = None
    if chosen.patches:  # PATCHES, or SEGMENTS after patches
        cut, grid = chosen.patches
        if cut in [c for c, _ in stage_cuts(int8)]:  # stage 1's plan, where the trained model's operators allow it
            target = patch_model(int8, cut, grid)
        else:  # the QAT conversion ordered its operators otherwise: the best plan for it, measured again
            log(f"  stage 1's patch stage (after {cut} operators) is not a stage of the QAT model: searching again")
            target = patch_model(int8)
        ram = emitted_ram(target)
    else:
        target = int8
        ram = tensor_arena_size(arena_use(int8).total)
    flash = flash_bytes(target)
    if chosen.technique == SEGMENTS:  # the trained model's (or patched rest's) fewest segments that fit, measured
        patched = target if chosen.patches else None
        segmented = fit_segments(int8, limits.device_ram, lambda m: log("  " + m), patched)
        if segmented is None:
            raise RuntimeError(f"the trained int8 model fits {limits.device_ram:,} B in no segment plan, unlike the "
                               "model stage 1 measured: nothing was emitted")
        ram = segmented_ram(segmented, patched, margins=True)
        flash = flash_bytes(target, segmented)
    if ram > limits.device_ram or flash > limits.model_flash:
        raise RuntimeError(f"the trained int8 model needs {ram:,} B RAM and {flash:,} B flash, more than the "
                           f"{limits.device_ram:,} B and {limits.model_flash:,} B stage 1 measured it within: "
                           "nothing was emitted")
    lite = evaluate_tflite(int8, data.x_test, data.y_test)
    frames = quantize_input(data.x_test, io_details(int8))
    if segmented is not None:  # the firmware's loops on the host: patches (where patched), then segments
        outputs = run_patched(target.patch, target.rest, target.plan, frames, segments=segmented)[0] \
            if chosen.patches else segmented.invoke(frames)
        tflm_accuracy = float((outputs.reshape(len(outputs), -1).argmax(-1) == data.y_test).mean())
    elif chosen.technique == PATCHES:
        outputs = target.invoke(frames)
        tflm_accuracy = float((outputs.reshape(len(outputs), -1).argmax(-1) == data.y_test).mean())
    else:
        micro = evaluate_tflite(int8, data.x_test, data.y_test, runtime="tflm")
        outputs, tflm_accuracy = micro.outputs, micro.accuracy
    agreement = compare_outputs(outputs, lite.outputs)
    if not lite.accuracy > 1.5 / classes:
        raise RuntimeError(f"the int8 model scores {lite.accuracy:.1%} on the test split, chance level: nothing was "
                           "emitted")
    if abs(tflm_accuracy - lite.accuracy) > 0.01:
        raise RuntimeError(f"TFLM and LiteRT disagree on the int8 model ({tflm_accuracy:.1%} vs {lite.accuracy:.1%}; "
                           f"{agreement}): nothing was emitted")

    project = os.path.join(out, "project")
    report = write_project(target, project, name="model", board=limits.board, labels=list(data.class_names),
                           segments=segmented,
                           test_images=data.x_test[:TEST_IMAGES], test_labels=data.y_test[:TEST_IMAGES], force=True,
                           flag="`out`/project")
    atomic_write(os.path.join(out, "model.keras"), model.save, ".keras")
    write_file(os.path.join(out, "model_int8.tflite"), int8)
    result = SearchResult(out_dir=os.path.abspath(out), limits=limits, chosen=chosen,
                          float_test_accuracy=float_accuracy, int8_test_accuracy=lite.accuracy,
                          tflm_test_accuracy=tflm_accuracy, tflm_agreement=str(agreement),
                          flash_bytes=report.model_bytes, ram_bytes=report.device_ram_bytes, epochs=trained,
                          qat_epochs=qat_epochs, measurements=measurements, trials=trials,
                          as_built_best=as_built_best, seconds=0.0, classes=classes)
    result.files = write_report(out, result)
    result.files += ["model.keras", "model_int8.tflite", "project/"]
    return result
