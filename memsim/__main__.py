"""``python -m memsim`` runs the memsim command line."""

from memsim.cli import main

main()
