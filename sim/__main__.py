"""``python -m sim`` runs the memsim command line."""

from sim.cli import main

main()
