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


# The heaviest tests first: with two workers stealing work from each other they then run side by side, instead of
# one of them ending the run alone (measured: 23 min with them last on 2 cores).
HEAVY = (
    "test_command_sequence_runs_as_printed", "test_blocks_and_networks_tests_pass_on_jax", "test_example_runs",
    "test_quick_start_demo_as_printed", "test_short_qat_converts", "test_split_model_survives_qat",
    "test_python_block_runs_as_printed", "test_killed_qat_run", "test_qat_under_mirrored_strategy",
    "test_fit_ram_splits_only", "test_same_seed_and_data",
)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not any(name in item.name for name in HEAVY))
