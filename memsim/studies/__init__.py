"""Studies: work that runs many simulations (cost projection, sweeps, the CI check).

A study may import the runner (:func:`sim.runner.run_scenario`, the one way to
run a scenario, shards and workers included) and ``reports`` to render what it
found; only the face (:mod:`memsim.cli`, the :mod:`memsim` API) imports a study.
"""
