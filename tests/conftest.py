import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


# The heaviest tests first, longest first (seconds measured in one CI run on 2 cores, 2026-11-30), handed out one
# at a time (pyproject: --dist load --maxschedchunk 1) so that each worker takes the next longest when it is free:
# the two workers then run the long tests side by side instead of one ending the run alone. (worksteal, and load's
# default chunks, give the whole head of this list to the first worker.)
HEAVY = (
    "test_command_sequence_runs_as_printed",  # 252
    "test_example_runs[quantization_aware_training.py]",  # 213
    "test_quick_start_demo_as_printed",  # 199
    "test_blocks_and_networks_tests_pass_on_jax",  # 186
    "test_short_qat_converts_and_runs_alike_on_litert_and_tflm[NASNet]",  # 166
    "test_example_runs[microcontroller.py]",  # 119
    "test_python_block_runs_as_printed[README.md-2]",  # 99
    "test_qat_under_mirrored_strategy",  # 79
    "test_python_block_runs_as_printed[README.md-6]",  # 69
    "test_split_model_survives_qat",  # 69
    "test_short_qat_converts",  # 32-68
    "test_killed_qat_run",  # 65
    "test_fit_ram_goes_below_the_split_floor",  # 52
    "test_a_finished_qat_run",  # 51
    "test_example_runs",  # 44-51
    "test_same_seed_and_data",  # 49
    "test_patches_combine",  # 49
    "test_python_block_runs_as_printed",  # up to 40
    "test_fit_ram_splits_only",  # 39
    "test_from_keras_application_carries_weights",  # up to 33
)


def _heaviness(item) -> int:
    return next((i for i, name in enumerate(HEAVY) if name in item.name), len(HEAVY))


def pytest_collection_modifyitems(items):
    items.sort(key=_heaviness)
