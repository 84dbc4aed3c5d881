"""The shape of the house: floors that import only downwards, no import circles, docstrings, lint.

The floors (shared/DESIGN.md): each module imports only modules on its own floor or below, so a newcomer can
read the package bottom-up, and no module imports one that imports it back.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_mbv2")

# Lowest floor first. A module's floor is that of its first matching prefix.
FLOORS = [
    ("keras_mbv2._lazy", "keras_mbv2._version", "keras_mbv2.checks", "keras_mbv2.files", "keras_mbv2.logs",
     "keras_mbv2.interrupts",
     "keras_mbv2.paper", "keras_mbv2.layers"),
    ("keras_mbv2.profiler", "keras_mbv2.datasets", "keras_mbv2.models", "keras_mbv2.model_checks",
     "keras_mbv2.training", "keras_mbv2.distribute"),
    ("keras_mbv2.tflite",),
    ("keras_mbv2.quantization",),
    ("keras_mbv2.micro",),
    ("keras_mbv2.search",),
    ("keras_mbv2.demo", "keras_mbv2.compare", "keras_mbv2.figures", "keras_mbv2.cli", "keras_mbv2.__main__"),
]


def module_files() -> dict[str, str]:
    """Module name -> file, for every module of the package."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for fname in files:
            if fname.endswith(".py"):
                path = os.path.join(folder, fname)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (module level or inside functions).

    `from X import name` counts as importing X.name when that is a module, else X.
    """
    modules = module_files()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.endswith("__init__.py")
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module and target.startswith("keras_mbv2"):
                    graph[module].add(target)
    return graph


def floor_of(module: str) -> int | None:
    for i, prefixes in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert not cycles({m: {t for t in ts if t != "keras_mbv2"} for m, ts in graph.items()})


def test_every_module_imports_only_its_floor_or_below():
    graph = import_graph()
    upward = []
    for module, targets in graph.items():
        if module == "keras_mbv2":  # the package's front door re-exports from every floor
            continue
        mine = floor_of(module)
        assert mine is not None, f"{module} is on no floor of FLOORS"
        upward += [f"{module} -> {t}" for t in targets if t != "keras_mbv2" and floor_of(t) > mine]
    assert not upward, upward


def test_tflite_is_below_quantization_and_micro():
    graph = import_graph()
    tflite = [m for m in graph if m.startswith("keras_mbv2.tflite")]
    assert not [f"{m} -> {t}" for m in tflite for t in graph[m]
                if t.startswith(("keras_mbv2.quantization", "keras_mbv2.micro"))]
    for user in ("keras_mbv2.quantization", "keras_mbv2.micro"):
        assert any(t.startswith("keras_mbv2.tflite") for m in graph if m.startswith(user) for t in graph[m]), user


def public_definitions() -> list[tuple[str, object]]:
    """(qualified name, object) of every public function, class and public method defined in the package."""
    found = []
    for module_name in sorted(module_files()):
        if module_name.rsplit(".", 1)[-1].startswith("_") and not module_name.endswith("__init__"):
            continue
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
                continue
            if inspect.isfunction(obj):
                found.append((f"{module_name}.{name}", obj))
            elif inspect.isclass(obj):
                found.append((f"{module_name}.{name}", obj))
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                        continue
                    found.append((f"{module_name}.{name}.{attr}", member))
    return found


def test_every_public_function_and_class_has_a_docstring():
    # inspect.getdoc: an override without its own docstring shows its base's, as help() does
    import dataclasses

    def own(obj):  # a dataclass without a docstring gets its signature as __doc__: that is not documentation
        doc = (inspect.getdoc(obj.fget if isinstance(obj, property) else obj) or "").strip()
        generated = dataclasses.is_dataclass(obj) and isinstance(obj, type) and doc.startswith(f"{obj.__name__}(")
        return doc and not generated

    missing = [name for name, obj in public_definitions() if not own(obj)]
    assert not missing, f"{len(missing)} public definitions without a docstring: {missing}"


def test_ruff_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_no_unexplained_noqa():
    """Every `# noqa` says why, after the code: `# noqa: E402 (why)`."""
    bare = []
    for folder in ("keras_mbv2", "tests", "benchmarks", "examples"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for fname in files:
                if fname.endswith(".py"):
                    with open(os.path.join(dirpath, fname)) as f:
                        for i, line in enumerate(f, 1):
                            if "# noqa" in line and "(" not in line.split("# noqa", 1)[1]:
                                bare.append(f"{fname}:{i}")
    assert not bare, bare


@pytest.mark.parametrize("module,expected", [("keras_mbv2.tflite.schedule", "keras_mbv2.profiler"),
                                             ("keras_mbv2.micro.fit", "keras_mbv2.quantization")])
def test_the_graph_sees_imports(module, expected):
    assert expected in import_graph()[module]


def test_subpackages_are_attributes_of_the_package_loaded_on_first_use_and_keras_then_loads_its_models(tmp_path):
    """`import keras_mbv2` then `keras_mbv2.micro.fit_ram(...)`, as a user types it: every subpackage resolves as an
    attribute, and importing the package alone loads neither Keras nor TensorFlow. And a model of the package's
    blocks, saved, loads with a plain `keras.models.load_model` once keras_mbv2 is imported, before anything of the
    package is used, here with TensorFlow imported first (it looks Keras up before it imports it)."""
    import keras_mbv2 as K

    path = str(tmp_path / "m.keras")
    K.MobileNetV2((32, 32, 1), alpha=0.35, classes=10, weights=None).save(path)
    probe = (
        "import sys, keras_mbv2\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
        "import tensorflow, keras\n"
        f"model = keras.models.load_model({path!r})\n"
        "print(type(model.layers[1]).__module__, model.count_params())\n"
        "names = ('micro', 'quantization', 'tflite', 'search', 'models', 'layers', 'datasets')\n"
        "print(all(getattr(keras_mbv2, n).__name__ == 'keras_mbv2.' + n for n in names))\n"
        "print(keras_mbv2.micro.fit_ram.__module__, keras_mbv2.quantization.to_tflite.__module__, "
        "keras_mbv2.tflite.arena_use.__module__, keras_mbv2.search.search.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "[]" and lines[-2] == "True"
    assert lines[1] == "keras_mbv2.layers.conv 422730", lines[1]  # MobileNetV2 0.35 at 32x32x1, 10 classes
    assert lines[-1].split() == ["keras_mbv2.micro.fit", "keras_mbv2.quantization.export", "keras_mbv2.tflite.runtime",
                                 "keras_mbv2.search.run"], lines[-1]


@pytest.mark.parametrize("looked_up_first", [False, True])
@pytest.mark.parametrize("imported_before", [False, True])
def test_after_import_calls_back_once_the_module_is_imported(tmp_path, monkeypatch, imported_before, looked_up_first):
    """`_lazy.after_import`, the rule that registers the blocks when Keras loads: called at once for a module already
    imported, else right after its first import, and not on a mere look-up (`importlib.util.find_spec`, as
    TensorFlow does for Keras); once, and out of `sys.meta_path` afterwards."""
    import importlib.util

    from keras_mbv2._lazy import _AfterImportFinder, after_import

    name = f"kmbv2_probe_{int(imported_before)}{int(looked_up_first)}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    calls = []
    if imported_before:
        importlib.import_module(name)
    try:
        after_import(name, lambda: calls.append(sys.modules[name].VALUE))
        assert calls == ([1] if imported_before else [])
        if looked_up_first:
            assert importlib.util.find_spec(name) is not None
            assert calls == ([1] if imported_before else [])
        module = importlib.import_module(name)
        importlib.import_module(name)
        assert calls == [1]
        assert inspect.getsource(module) == "VALUE = 1\n"  # its own loader's other answers (source, resources) kept
        assert not any(isinstance(f, _AfterImportFinder) for f in sys.meta_path)
    finally:
        sys.modules.pop(name, None)
