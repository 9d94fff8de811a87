"""Evaluation of super-resolution against isotropic references (``bida evaluate``).

Modules
-------
harness
    The loop: simulate thick slices, run the methods, score, resume
    (:func:`~bida_app.evaluation.harness.run_evaluation`).
settings
    :class:`~bida_app.evaluation.settings.EvalSettings`, methods, the baseline, fingerprint.
inputs
    Isotropic HR volumes (files or BIDS), reference masks, slice tiling, grids.
runners
    The methods by name, run as the participant pipeline runs them (N4, method, field back,
    projection onto the acquired slices); ECLARE as an external program.
scoring
    Whole-field and interior PSNR/SSIM, residual, cDSC, the HR mask's plausibility.
heldout
    Leave-one-volume-out guard against the priors' training record.
metrics
    PSNR, SSIM, Dice, zero-padding crop, data-consistency residual.
skullstrip, keras_port, fetch
    The rodent skull-strip U-Nets for cDSC (PyTorch port, recipes, set-up-time download).
stats
    Paired two-sided Wilcoxon tests between methods (α = 0.001), every method against the
    baseline, summaries.
report
    Box plots, slice panels with masks and the HTML summary.

Nothing heavy is imported here; import the module you need.
"""
