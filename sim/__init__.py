"""memsim's engine and its models of the outside world (LLM, embedder, store, limits, prices)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memsim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
