"""Noise-adaptive (Wiener) shrinkage of a correction onto the slices.

A first estimate ``x₀ = C y`` (C: a linear interpolation along the slice axis) is corrected
by ``A⁺ r`` with ``r = y − A x₀``. Noise ``n`` in the slices (σ per voxel, white) reaches the
residual as ``G n`` with ``G = I − A C``. Along the slice axis, over all in-plane columns of
the volume, the residual's covariance ``Σ_r`` is measured and the noise's is
``Σ_n = σ² G Gᵀ``. The linear estimate of the residual's noise-free part with the least mean
square error is ``W r``, ``W = I − Σ_n Σ_r⁻¹``, computed in the generalised eigenbasis of
``(Σ_n, Σ_r)`` with each gain clipped to [0, 1]. Without noise ``W = I`` (the exact projection);
a component that holds noise only is dropped.

σ starts from the smaller of two upper bounds: the in-plane estimate
(:func:`bida_app.preprocess.noise.noise_sigma`) and the largest σ for which ``Σ_r − σ² G Gᵀ``
stays positive semi-definite (noise cannot explain more than the residual holds). What clean
anatomy reads (``floor``, :data:`bida_app.config.NOISE_FLOOR`) is taken off in quadrature.

Signal and noise are not stationary across a scan: in air and dark tissue the residual is mostly
noise, in bright anatomy mostly signal. ``Σ_r`` and ``W`` are therefore computed per group of
in-plane positions of similar intensity (:func:`intensity_groups`, :data:`GROUPS` quantile
bins of the slices' mean along the slice axis); σ is one for the scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

GROUPS = 8
"""Intensity groups with a gain of their own (quantile bins of equal size)."""


@dataclass(frozen=True)
class Shrinkage:
    """The gains applied to a residual, and the noise they were derived for.

    Attributes
    ----------
    gains : ndarray, shape (n_groups, n_lr, n_lr)
        ``W`` of each intensity group; identities when ``sigma`` is 0.
    groups : ndarray of int
        The group of each in-plane position (the residual's shape without its slice axis).
    sigma : float
        Noise standard deviation used: the smaller of the two bounds, less the floor in
        quadrature.
    sigma_inplane, sigma_residual : float
        The in-plane estimate and the bound from the residual's covariance.
    sigma_floor : float
        What clean anatomy reads, taken off.
    reference : float
        The intensity a relative noise level refers to (the slices' 99th percentile; 0 if
        not given).
    """

    gains: np.ndarray
    groups: np.ndarray
    sigma: float
    sigma_inplane: float
    sigma_residual: float
    sigma_floor: float = 0.0
    reference: float = 0.0

    @property
    def kept(self) -> float:
        """Mean gain over the scan, ``tr(W) / n`` weighted by group size: 1 keeps the whole
        correction, 0 drops it."""
        sizes = np.bincount(self.groups.ravel(), minlength=len(self.gains))
        traces = np.trace(self.gains, axis1=1, axis2=2) / self.gains.shape[1]
        return float(np.sum(sizes * traces) / max(sizes.sum(), 1))

    def apply(self, residual: np.ndarray, axis: int) -> np.ndarray:
        """``W r`` with each in-plane position's group gain, along ``axis``."""
        r = np.moveaxis(np.asarray(residual, np.float64), axis, 0)
        flat = r.reshape(r.shape[0], -1)
        labels = self.groups.ravel()
        out = np.empty_like(flat)
        for g, gain in enumerate(self.gains):
            sel = labels == g
            out[:, sel] = gain @ flat[:, sel]
        return np.moveaxis(out.reshape(r.shape), 0, axis)

    def sidecar(self) -> dict[str, float]:
        """``NoiseLevelEstimate`` (σ over :attr:`reference`) and ``CorrectionKept``, as the
        sidecars report them."""
        return {
            "NoiseLevelEstimate": self.sigma / self.reference if self.reference > 0 else 0.0,
            "CorrectionKept": self.kept,
        }


def intensity_groups(y: np.ndarray, axis: int, n_groups: int = GROUPS) -> np.ndarray:
    """Group of each in-plane position: quantile bin of the slices' mean along ``axis``.

    Examples
    --------
    >>> y = np.arange(8.0)[None, :].repeat(3, axis=0)  # 3 slices along axis 0
    >>> intensity_groups(y, 0, 4).tolist()
    [0, 0, 1, 1, 2, 2, 3, 3]
    """
    level = np.asarray(y, np.float64).mean(axis=axis)
    edges = np.quantile(level, np.linspace(0.0, 1.0, n_groups + 1)[1:-1])
    return np.searchsorted(edges, level, side="right").clip(0, n_groups - 1)


def residual_noise_bound(cov: np.ndarray, noise_map: np.ndarray) -> float:
    """Largest σ with ``cov − σ² G Gᵀ`` positive semi-definite (``G = noise_map``; inf if none).

    Examples
    --------
    >>> cov = np.diag([4.0, 1.0])
    >>> residual_noise_bound(cov, np.eye(2))  # the weaker component caps σ at 1
    1.0
    """
    noise_cov = noise_map @ noise_map.T
    mu = _generalised_eigh(noise_cov, cov)[0]
    top = float(mu.max()) if mu.size else 0.0
    return float(np.sqrt(1.0 / top)) if top > 0 else float("inf")


def wiener_gain(cov: np.ndarray, noise_cov: np.ndarray) -> np.ndarray:
    """``W = I − Σ_n Σ_r⁻¹`` with its generalised eigenvalues clipped to [0, 1].

    Examples
    --------
    >>> w = wiener_gain(np.diag([4.0, 1.0]), np.diag([1.0, 1.0]))
    >>> np.round(np.diag(w), 3).tolist()  # 3/4 of the first component is signal, none of the 2nd
    [0.75, 0.0]
    """
    mu, vecs = _generalised_eigh(noise_cov, cov)
    return cov @ vecs @ np.diag(np.clip(1.0 - mu, 0.0, 1.0)) @ vecs.T


def shrink(
    residual: np.ndarray,
    axis: int,
    noise_map: np.ndarray,
    sigma_inplane: float,
    floor: float = 0.0,
    groups: np.ndarray | None = None,
    reference: float = 0.0,
) -> Shrinkage:
    """The Wiener gain for ``residual`` (slices along ``axis``) with white noise of at most
    ``sigma_inplane`` reaching it through ``noise_map`` (``G = I − A C``).

    Parameters
    ----------
    residual : ndarray
        ``y − A x₀`` on the slice grid.
    axis : int
        Its slice axis.
    noise_map : ndarray, shape (n_lr, n_lr)
        ``G``, how the slices' noise enters the residual.
    sigma_inplane : float
        Upper bound of the slices' noise standard deviation (same units as ``residual``).
    floor : float
        What a noise-free scan reads (same units), taken off in quadrature.
    groups : ndarray of int, optional
        Group of each in-plane position (:func:`intensity_groups`); default one group.
    reference : float
        Recorded as :attr:`Shrinkage.reference` (what the sidecar's relative level refers to).

    Returns
    -------
    Shrinkage
    """
    r = np.moveaxis(np.asarray(residual, np.float64), axis, 0)
    groups = np.zeros(r.shape[1:], int) if groups is None else np.asarray(groups, int)
    n_groups = int(groups.max()) + 1 if groups.size else 1
    n = r.shape[0]
    r = r.reshape(n, -1)
    cov = r @ r.T / max(r.shape[1], 1)  # Σ_r over the whole scan (uncentred)
    gains = np.broadcast_to(np.eye(n), (n_groups, n, n)).copy()
    floor, sigma_inplane = float(floor), float(sigma_inplane)

    def result(sigma: float, bound: float) -> Shrinkage:
        return Shrinkage(gains, groups, sigma, sigma_inplane, bound, floor, float(reference))

    scale = float(np.trace(cov)) / n
    if scale <= 0 or sigma_inplane <= floor:
        return result(0.0, float("nan"))
    ridge = 1e-12 * scale * np.eye(n)  # keeps Σ_r definite for a rank-deficient residual
    bound = residual_noise_bound(cov + ridge, noise_map)
    sigma = float(np.sqrt(max(0.0, min(sigma_inplane, bound) ** 2 - floor**2)))
    if sigma == 0:
        return result(0.0, bound)
    noise_cov = sigma**2 * (noise_map @ noise_map.T)
    labels = groups.ravel()
    for g in range(n_groups):
        cols = r[:, labels == g]
        if cols.shape[1]:
            gains[g] = wiener_gain(cols @ cols.T / cols.shape[1] + ridge, noise_cov)
    return result(sigma, bound)


def _generalised_eigh(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a v = μ b v`` with ``vᵀ b v = I`` (b symmetric positive definite)."""
    return scipy.linalg.eigh(a, b)
