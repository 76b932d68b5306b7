"""The static HTML report of a scan (`isl-rt report`, `isl-rt scan --report`, `isl-rt demo`).

A folder that opens from ``file://`` with no server and no network: an index of every series
(flagged first, sortable, filterable) and a page per scored series with its slices, heat-map
overlay, slice-score and APDS curves, metadata, bundle and threshold. Modules: ``source`` (what
the report reads of a scan), ``pictures`` (PNG slices, overlays, thumbnails), ``pages`` (HTML,
everything from the data escaped), ``writer`` (the folder); ``assets/`` holds our own CSS and JS.
"""

from isl_rt.report.writer import Report, ReportSummary, default_heatmaps_dir, write_report

__all__ = ["Report", "ReportSummary", "default_heatmaps_dir", "write_report"]
