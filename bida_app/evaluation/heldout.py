"""Leave-one-volume-out: a prior is scored only on volumes it was not trained on.

Every plane model's card records its training sources (file names and, since 0.3, their
SHA-256: ``training.source_sha256``). A volume whose file hash, or failing a recorded hash
whose file name, is in the record of a prior that a BiDA method would use is *not held out*:
``bida evaluate`` refuses it for that method unless ``--allow-training-volumes`` is given,
and then flags every such row (``held_out = False``) in the tables and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BidaError, ExitCode
from .inputs import HRVolume


@dataclass(frozen=True)
class TrainingRecord:
    """Training sources of the priors in use: names and SHA-256 per plane model."""

    names: dict[str, set[str]] = field(default_factory=dict)
    sha256: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_cards(cls, cards: dict[str, dict]) -> TrainingRecord:
        """From model cards (``{plane: card}``, as :func:`~bida_app.models.weights.read_card`).

        Examples
        --------
        >>> training = {"sources": ["a.nii.gz"], "source_sha256": {"a.nii.gz": "ff"}}
        >>> rec = TrainingRecord.from_cards({"axial": {"training": training}})
        >>> rec.planes_trained_on("ff", "b.nii.gz"), rec.planes_trained_on("00", "a.nii.gz")
        (['axial'], [])
        """
        names, hashes = {}, {}
        for plane, card in cards.items():
            training = card.get("training") or {}
            names[plane] = {Path(str(s)).name for s in training.get("sources", [])}
            hashes[plane] = {str(h) for h in (training.get("source_sha256") or {}).values()}
        return cls(names, hashes)

    def planes_trained_on(self, sha256: str, name: str) -> list[str]:
        """Planes whose prior saw this file (hash match; the name only where no hash is kept)."""
        hits = []
        for plane, names in self.names.items():
            hashes = self.sha256.get(plane, set())
            if sha256 in hashes or (not hashes and name in names):
                hits.append(plane)
        return sorted(hits)


def shipped_or_given_record(weights: str | None, planes: tuple[str, ...]) -> TrainingRecord:
    """The training record of the plane models ``bida`` would load (shipped or ``weights``)."""
    from ..models.weights import read_card, resolve_weights_dir

    folder = resolve_weights_dir(weights)
    return TrainingRecord.from_cards({p: read_card(folder, p) for p in planes})


def check_held_out(volume: HRVolume, record: TrainingRecord, allow: bool) -> bool:
    """Whether ``volume`` is held out from the priors; refuse it (exit 64) unless ``allow``.

    Raises
    ------
    BidaError
        The volume is in the priors' training data and ``allow`` is False.
    """
    from ..models.weights import sha256_file

    planes = record.planes_trained_on(sha256_file(volume.path), volume.path.name)
    if not planes:
        return True
    if not allow:
        raise BidaError(
            f"{volume.path}: this volume trained the {'/'.join(planes)} prior(s), so BiDA "
            "scores on it are not held out; leave it out, use priors trained without it "
            "(--weights), or pass --allow-training-volumes to score it flagged",
            ExitCode.USAGE,
        )
    return False
