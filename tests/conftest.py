import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras_mbv2  # noqa: F401 (first: TensorFlow's native start-up lines stay out of the test summary)

# isort: split
import keras
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


# The heaviest tests first, longest first (seconds measured on 2 cores, 2026-12-01; `pytest` and `pytest -m slow` each
# sort their own), handed out one at a time (pyproject: --dist load --maxschedchunk 1) so that each worker takes the
# next longest when it is free: the two workers then run the long tests side by side instead of one ending the run
# alone. (worksteal, and load's default chunks, give the whole head of this list to the first worker.)
HEAVY = (
    # pytest -m slow
    "test_two_workers_killed_and_restarted",  # 200 (two processes)
    "test_example_search_ctrl_c_then_rerun",  # 190
    "test_an_interrupted_search_measures_and_trains_nothing_twice",  # 175
    "test_an_interrupted_qat_resumes_after_its_finished_epoch",  # ~150 (train, QAT whole, QAT stopped and rerun)
    "test_command_sequence_runs_as_printed",  # 149
    "test_example_runs[quantization_aware_training.py]",  # 131
    "test_quick_start_demo_as_printed",  # 119
    "test_the_built_wheel_installs_and_deploys_outside_the_checkout",  # 108
    "test_example_runs[microcontroller.py]",  # 90
    "test_blocks_and_networks_tests_pass_on_jax",  # 89
    "test_example_runs[pretrained_weights.py]",  # 85
    "test_python_block_runs_as_printed[docs/memory.md",  # 48
    "test_python_block_runs_as_printed[docs/patches.md",  # 35
    "test_example_runs",  # 21-32
    # pytest
    "test_short_qat_converts_and_runs_alike_on_litert_and_tflm[NASNet]",  # 68
    "test_the_command_line_profiles_exports_and_emits_mobilenet_v3_small",  # 30
    "test_keras_applications_profile_and_convert_to_int8_that_runs_on_tflm",  # 17-24
    "test_short_qat_converts_and_runs_alike_on_litert_and_tflm[ShuffleNetV1]",  # 32
    "test_killed_qat_run",  # 45 (three runs)
    "test_fit_ram_with_segments_fits_below",  # 30-75 (fit_ram down to patches, then segments)
    "test_the_planner_finds_cuts",  # ~25 (a model and its plans measured)
    "test_segments_after_a_patch_stage",  # ~20
    "test_split_model_survives_qat",  # 30
    "test_qat_under_mirrored_strategy",  # 28
    "test_patches_combine",  # 26
    "test_a_finished_qat_run",  # 25
    "test_fit_ram_goes_below_the_split_floor",  # 25
    "test_same_seed_and_data",  # 24
    "test_a_project_folder_builds",  # 20 + its module's model
    "test_stage1_measures_on_tflm",  # 20
    "test_fit_ram_splits_only",  # 19
    "test_python_block_runs_as_printed",  # up to 20
    "test_training_that_diverges",  # 15
    "test_from_keras_application_carries_weights",  # up to 14
)


def _heaviness(item) -> int:
    return next((i for i, name in enumerate(HEAVY) if name in item.name), len(HEAVY))


def pytest_collection_modifyitems(items):
    items.sort(key=_heaviness)


@pytest.fixture(autouse=True)
def _every_saved_figure_reads_whole(monkeypatch):
    """Every figure the package saves while a test runs: no text cut at the canvas' edges, no legend over data
    (`harness.figure_problems`)."""
    from harness import figure_problems
    from matplotlib.figure import Figure

    save = Figure.savefig

    def checked(fig, *args, **kwargs):
        problems = figure_problems(fig)
        assert not problems, f"{args[0] if args else 'a figure'}: " + "; ".join(problems)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    yield
