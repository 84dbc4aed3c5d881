"""Package front doors that import their parts on first use (PEP 562), so that `import keras_mbv2` and the
command line's `--help` do not load Keras and TensorFlow (tens of seconds on a small machine).

A front door declares `name -> module` once; `from keras_mbv2 import MobileNetV2`, `keras_mbv2.MobileNetV2` and
`dir(keras_mbv2)` all work as with eager imports.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


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
