"""QC reports: per-run figures, ``sub-<label>.html`` and the group report.

- :mod:`~bida_app.reports.views`: world-oriented slices, input sampled on the SR grid.
- :mod:`~bida_app.reports.metrics`: no-reference image-quality metrics, outlier flags.
- :mod:`~bida_app.reports.plotting`: matplotlib mosaics, flicker SVG, distribution plots.
- :mod:`~bida_app.reports.figures`: the figures of one run (:func:`render_run_figures`).
- :mod:`~bida_app.reports.collect`: derivatives, sidecar fields and run statuses.
- :mod:`~bida_app.reports.participant`: :func:`write_participant_report`.
- :mod:`~bida_app.reports.group`: :func:`write_group_report`.
- :mod:`~bida_app.reports.regenerate`: :func:`regenerate_reports` (``--reports_only``).
"""
