"""Package front doors that import their parts on first use (PEP 562), so that `import keras_mbv2` and the
command line's `--help` do not load Keras and TensorFlow (tens of seconds on a small machine).

A front door declares `name -> module` once; `from keras_mbv2 import MobileNetV2`, `keras_mbv2.MobileNetV2` and
`dir(keras_mbv2)` all work as with eager imports.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any, Callable, Sequence


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: `exports` maps each public name to the module (relative to
    `package`, e.g. ".models") that defines it; a name mapped to itself as ".name" is a submodule."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name], package)
        value = module if exports[name] == f".{name}" else getattr(module, name)
        importlib.import_module(package).__dict__[name] = value  # resolved once
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(exports))

    return __getattr__, __dir__


class _AfterImportLoader(importlib.abc.Loader):
    """Runs a module's own loader, then `then()` (the module is whole by then)."""

    def __init__(self, loader: importlib.abc.Loader, then: Callable[[], None]) -> None:
        self.loader, self.then = loader, then

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        self.then()

    def __getattr__(self, name: str) -> Any:  # the rest of the module's loader (resources, source) as it was
        return getattr(self.loader, name)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds `name` through the other finders and hands its loader to `_AfterImportLoader`, until it is imported."""

    def __init__(self, name: str, then: Callable[[], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        for finder in [f for f in sys.meta_path if f is not self]:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _AfterImportLoader(spec.loader, self.done)
                return spec
        return None

    def done(self) -> None:
        """The module is imported (not only looked up: TensorFlow asks `importlib.util.find_spec("keras")` first):
        out of the way of later imports, then `then()`."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.then()


def after_import(name: str, then: Callable[[], None]) -> None:
    """Call `then()` once top-level module `name` is imported: now if it already is, else right after its first
    import finishes, wherever that happens (the user's `import keras`, TensorFlow's own). The package uses it to
    register its blocks with Keras' serialization whenever Keras loads, so that a plain
    `keras.models.load_model("m.keras")` finds them without keras_mbv2 loading Keras itself."""
    if name in sys.modules:
        then()
    elif not any(isinstance(f, _AfterImportFinder) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder(name, then))
