"""Everything that turns recorded runs into tables, summaries and files.

Reports read DataFrames and ``summary.json`` data only; they never reach into a
simulation.
"""
