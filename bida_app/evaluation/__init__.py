"""Evaluation of super-resolution against isotropic references (``bida evaluate``).

Modules
-------
harness
    Find isotropic volumes, simulate thick slices, run the methods, score, resume
    (:func:`~bida_app.evaluation.harness.run_evaluation`,
    :class:`~bida_app.evaluation.harness.EvalSettings`).
metrics
    PSNR, SSIM, Dice, zero-padding crop, data-consistency residual.
skullstrip, keras_port, fetch
    The rodent skull-strip U-Nets for cDSC (PyTorch port, recipes, set-up-time download).
stats
    Paired two-sided Wilcoxon tests between methods (α = 0.001) and summaries.
report
    Box plots, slice panels with masks and the HTML summary.

Nothing heavy is imported here; import the module you need.
"""
