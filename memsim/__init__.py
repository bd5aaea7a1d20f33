"""memsim: cost and token-leak simulation for LLM chatbot memory strategies.

The package is the face of the project: the ``memsim`` command line
(:mod:`memsim.cli`), the Python API for notebooks (:func:`run`,
:func:`load_scenario`, :class:`Results`, from :mod:`memsim.api`) and the studies
that run many simulations (:mod:`memsim.studies`).
"""

from memsim.api import Results, load_scenario, run
from sim import __version__

__all__ = ["Results", "__version__", "load_scenario", "run"]
