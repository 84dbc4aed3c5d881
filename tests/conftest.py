import json
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


# The longest tests first, handed out one at a time (pyproject: --dist load --maxschedchunk 1) so that each worker
# takes the next longest when it is free: the two workers then run the long tests side by side instead of one ending
# the run alone (worksteal, and load's default chunks, give the whole head of the list to the first worker).
# Each file's tests stay together (the files ordered by their longest test, each file's tests longest first): pytest
# tears a module's fixtures down whenever the next test is in another file, so interleaving the files rebuilt the
# same trained model each time a worker came back to its file (tests/test_micro.py's int8 model five times).
# tests/durations.json holds every test's measured seconds from 10 s up (its call, from `.ci/run`'s
# `--durations=0 --durations-min=10`); a long end-to-end test not in it yet counts as 120 s, so that it never starts
# last.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "durations.json")) as _f:
    SECONDS: dict[str, float] = json.load(_f)["seconds"]
UNMEASURED_SLOW = 120
#: A test measured at this many seconds or more is one of the long runs: `pytest -m slow` runs it, the README's
#: `pytest` does not (CI runs both), so that `pytest` stays a check of a few minutes.
SLOW_FROM = 20


def _seconds(item) -> float:
    """A test's measured seconds (the table is keyed by its node id under tests/)."""
    key = item.nodeid.split("tests/", 1)[-1]
    if key in SECONDS:
        return SECONDS[key]
    return UNMEASURED_SLOW if item.get_closest_marker("slow") else 0


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by -m
def pytest_collection_modifyitems(items):
    def file(item) -> str:
        return item.nodeid.split("::", 1)[0]

    longest: dict[str, float] = {}
    for item in items:
        longest[file(item)] = max(longest.get(file(item), 0), _seconds(item))
        if _seconds(item) >= SLOW_FROM:
            item.add_marker(pytest.mark.slow)
    # stable: within a file the unmeasured keep their order
    items.sort(key=lambda item: (-longest[file(item)], file(item), -_seconds(item)))


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
