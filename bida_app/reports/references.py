"""BibTeX entries cited by the methods boilerplate (:mod:`bida_app.reports.boilerplate`).

Keys are cited in the Markdown text as ``[@key]``; only the cited entries are written to
``logs/CITATION.bib``.
"""

from __future__ import annotations

from .. import __version__

#: BibTeX entry bodies by key (``@type{key,`` and the closing brace are added on output).
BIBTEX: dict[str, tuple[str, str]] = {
    "bida": (
        "software",
        f"""  title = {{bida: zero-shot super-resolution of thick-slice rodent T2w MRI}},
  author = {{{{bida developers}}}},
  version = {{{__version__}}},
  url = {{https://github.com/bida-app/bida}}""",
    ),
    "gharib_bida": (
        "inproceedings",
        """  title = {Exploring the feasibility of zero-shot super-resolution in preclinical
           imaging},
  author = {Gharib, Omar A. M. and Remedios, Samuel W. and Dewey, Blake E. and
            Prince, Jerry L. and Carass, Aaron},
  booktitle = {Medical Image Computing and Computer Assisted Intervention (MICCAI)},
  publisher = {Springer}""",
    ),
    "ddnm": (
        "inproceedings",
        """  title = {Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model},
  author = {Wang, Yinhuai and Yu, Jiwen and Zhang, Jian},
  booktitle = {The Eleventh International Conference on Learning Representations (ICLR)},
  year = {2023}""",
    ),
    "ddim": (
        "inproceedings",
        """  title = {Denoising Diffusion Implicit Models},
  author = {Song, Jiaming and Meng, Chenlin and Ermon, Stefano},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2021}""",
    ),
    "ddpm": (
        "inproceedings",
        """  title = {Denoising Diffusion Probabilistic Models},
  author = {Ho, Jonathan and Jain, Ajay and Abbeel, Pieter},
  booktitle = {Advances in Neural Information Processing Systems},
  volume = {33},
  pages = {6840--6851},
  year = {2020}""",
    ),
    "flow_matching": (
        "inproceedings",
        """  title = {Flow Matching for Generative Modeling},
  author = {Lipman, Yaron and Chen, Ricky T. Q. and Ben-Hamu, Heli and Nickel, Maximilian
            and Le, Matt},
  booktitle = {The Eleventh International Conference on Learning Representations (ICLR)},
  year = {2023}""",
    ),
    "unser_splines": (
        "article",
        """  title = {Splines: A perfect fit for signal and image processing},
  author = {Unser, Michael},
  journal = {IEEE Signal Processing Magazine},
  volume = {16},
  number = {6},
  pages = {22--38},
  year = {1999}""",
    ),
    "n4": (
        "article",
        """  title = {{N4ITK}: Improved {N3} Bias Correction},
  author = {Tustison, Nicholas J. and Avants, Brian B. and Cook, Philip A. and Zheng, Yuanjie
            and Egan, Alexander and Yushkevich, Paul A. and Gee, James C.},
  journal = {IEEE Transactions on Medical Imaging},
  volume = {29},
  number = {6},
  pages = {1310--1320},
  year = {2010},
  doi = {10.1109/TMI.2010.2046908}""",
    ),
    "antsx": (
        "article",
        """  title = {The {ANTsX} ecosystem for quantitative biological and medical imaging},
  author = {Tustison, Nicholas J. and others},
  journal = {Scientific Reports},
  volume = {11},
  pages = {9068},
  year = {2021}""",
    ),
    "slr": (
        "article",
        """  title = {Parameter relations for the {Shinnar-Le Roux} selective excitation pulse
           design algorithm},
  author = {Pauly, John and Le Roux, Patrick and Nishimura, Dwight and Macovski, Albert},
  journal = {IEEE Transactions on Medical Imaging},
  volume = {10},
  number = {1},
  pages = {53--65},
  year = {1991}""",
    ),
    "nipype": (
        "article",
        """  title = {Nipype: a flexible, lightweight and extensible neuroimaging data processing
           framework in Python},
  author = {Gorgolewski, Krzysztof and others},
  journal = {Frontiers in Neuroinformatics},
  volume = {5},
  pages = {13},
  year = {2011},
  doi = {10.3389/fninf.2011.00013}""",
    ),
    "pybids": (
        "article",
        """  title = {{PyBIDS}: Python tools for {BIDS} datasets},
  author = {Yarkoni, Tal and others},
  journal = {Journal of Open Source Software},
  volume = {4},
  number = {40},
  pages = {1294},
  year = {2019}""",
    ),
    "bids_apps": (
        "article",
        """  title = {{BIDS} apps: Improving ease of use, accessibility, and reproducibility of
           neuroimaging data analysis methods},
  author = {Gorgolewski, Krzysztof J. and others},
  journal = {PLoS Computational Biology},
  volume = {13},
  number = {3},
  pages = {e1005209},
  year = {2017}""",
    ),
    "pytorch": (
        "inproceedings",
        """  title = {{PyTorch}: An Imperative Style, High-Performance Deep Learning Library},
  author = {Paszke, Adam and others},
  booktitle = {Advances in Neural Information Processing Systems},
  volume = {32},
  year = {2019}""",
    ),
}


def bibtex(keys: list[str]) -> str:
    """BibTeX text of ``keys`` (in that order, unknown keys skipped).

    Examples
    --------
    >>> print(bibtex(["ddim"]).splitlines()[0])
    @inproceedings{ddim,
    """
    entries = [f"@{BIBTEX[k][0]}{{{k},\n{BIBTEX[k][1]}\n}}\n" for k in keys if k in BIBTEX]
    return "\n".join(entries)
