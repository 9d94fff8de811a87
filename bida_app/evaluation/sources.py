"""Where the rodent skull-strip networks come from (PyPI packages, members, SHA-256, licences).

Shared by :mod:`~bida_app.evaluation.fetch` (set-up-time download) and
:mod:`~bida_app.evaluation.skullstrip` (recognising a published file by its hash).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Where a network comes from."""

    package: str
    version: str
    member: str
    sha256: str
    license: str
    url: str
    citation: str
    license_note: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SOURCES: dict[str, Source] = {
    "rat": Source(
        "rbm",
        "0.0.3",
        "rbm/scripts/rat_brain-2d_unet.hdf5",
        "e60ef6e3accb55668dfd80b89adb31101a6708413db3c23088b4753dfa9da85a",
        "GPL-3.0 (package metadata: 'GNLv3')",
        "https://pypi.org/project/rbm/0.0.3/",
        "Hsu L-M, et al. Automatic skull stripping of rat and mouse brain MRI data using "
        "U-Net. Front. Neurosci. 14:568614 (2020)",
    ),
    "mouse": Source(
        "seg-for-4modalities",
        "1.0.6",
        "seg-for-4modalities/predict/scripts/model156_0.50.25_scan.hdf5",
        "43bf5fc61e846ecfa7795c2f77cd6945b072c1351c77d5bb8d3a16ef046df4e1",
        "BSD-2-Clause (1.0.6 package metadata: 'BSD 2-clause'); see the note below",
        "https://pypi.org/project/seg-for-4modalities/1.0.6/",
        "Frohock Z, et al. seg-for-4modalities, Copyright The Jackson Laboratory (2022); "
        "network family of Hsu et al., Front. Neurosci. 14:568614 (2020)",
        "Note: the 1.0.6 wheel (November 2023) declares 'BSD 2-clause' but ships no licence\n"
        "text. In February 2024 the project's GitHub repository\n"
        "(TheJacksonLaboratory/seg-for-4modalities) added a LICENSE file with a different,\n"
        "non-commercial 'Software License Agreement' that forbids modification and\n"
        "derivative works. Check which terms apply to your use before redistributing these\n"
        "converted weights.\n",
    ),
}
