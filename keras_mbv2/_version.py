"""The package version: the one source that pyproject.toml (`[tool.setuptools.dynamic]`) and
`keras_mbv2.__version__` read."""

__version__ = "0.2.0"
