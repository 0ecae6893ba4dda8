"""`python -m sweeper.report`: an HTML page, PNG figures, CSV/Parquet exports and a terminal
summary of the runs in a store, reproducing the study's analyses.

Reads the store only (no torch). Estimated energy is marked as such everywhere. The report
is built in sweeper.report.build; each analysis, figure and export has its own module.
"""

from sweeper.report.build import Report, build_report, fit_runs, pick_trace_run

__all__ = ["Report", "build_report", "fit_runs", "pick_trace_run"]
