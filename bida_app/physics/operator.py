"""Linear operators that act along one axis of an array (NumPy or torch).

Modelled on ``sigpy.linop``: operators are objects, ``op(x)`` applies them, ``op.H`` is the
adjoint and ``op1 @ op2`` composes. Because the slice-selection operator acts along a single
axis, it is stored as a small dense matrix (``n_lr x n_hr``) and applied with a tensor
contraction, so the exact pseudo-inverse comes from that matrix's SVD.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from .geometry import SliceGeometry
from .profiles import SliceProfile, make_profile

Array = Any  # np.ndarray | torch.Tensor


class AxisOperator:
    """Apply a dense matrix ``M`` (``m x n``) along ``axis`` of an array.

    Parameters
    ----------
    matrix : ndarray, shape (m, n)
        The operator's matrix, stored in float64.
    axis : int
        Axis of the input the matrix contracts (negative values count from the end).

    Examples
    --------
    >>> op = AxisOperator(np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]), axis=1)
    >>> op(np.ones((4, 3, 2))).shape
    (4, 2, 2)
    >>> op.H(np.ones((4, 2, 2))).shape
    (4, 3, 2)
    """

    def __init__(self, matrix: np.ndarray, axis: int) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64)
        if self.matrix.ndim != 2:
            raise ValueError("AxisOperator needs a 2D matrix")
        self.axis = int(axis)
        self._torch_cache: dict[tuple[str, Any], Any] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``: output and input length along the axis."""
        return self.matrix.shape  # type: ignore[return-value]

    @property
    def H(self) -> AxisOperator:  # noqa: N802 - sigpy convention
        """Adjoint operator (the matrix transpose)."""
        return AxisOperator(self.matrix.T, self.axis)

    def __matmul__(self, other: AxisOperator) -> AxisOperator:
        if not isinstance(other, AxisOperator):
            return NotImplemented
        if other.axis != self.axis:
            raise ValueError("can only compose AxisOperators acting on the same axis")
        return AxisOperator(self.matrix @ other.matrix, self.axis)

    def __call__(self, x: Array) -> Array:
        return self.apply(x)

    def apply(self, x: Array) -> Array:
        """Apply the matrix along ``self.axis`` of ``x`` (NumPy array or torch tensor)."""
        n_in = self.matrix.shape[1]
        if x.shape[self.axis] != n_in:
            raise ValueError(
                f"operator expects length {n_in} along axis {self.axis}, got shape "
                f"{tuple(x.shape)}"
            )
        if isinstance(x, np.ndarray):
            dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
            m = self.matrix.astype(np.result_type(dtype, np.float32), copy=False)
            out = np.tensordot(m, x, axes=([1], [self.axis]))
            return np.moveaxis(out, 0, self.axis).astype(dtype, copy=False)
        return self._apply_torch(x)

    def _apply_torch(self, x: Any) -> Any:
        import torch

        compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        key = (str(x.device), compute)
        m = self._torch_cache.get(key)
        if m is None:
            m = torch.as_tensor(self.matrix, dtype=compute, device=x.device)
            self._torch_cache[key] = m
        out = torch.tensordot(m, x.to(compute), dims=([1], [self.axis]))
        return torch.movedim(out, 0, self.axis).to(x.dtype)


class SliceOperator(AxisOperator):
    """Through-plane degradation ``y = A x``: slice-profile convolution, then slice sampling.

    Row ``i`` of the matrix is the profile centred on LR slice ``i``, integrated over each HR
    voxel and normalised to unit sum (so a constant image stays constant).

    Parameters
    ----------
    n_hr : int
        HR samples along the axis.
    lr_centres : array_like
        LR slice centres in HR index units (see :class:`~bida_app.physics.geometry.SliceGeometry`).
    hr_mm : float
        HR voxel size in mm.
    profile : SliceProfile
        The slice profile (FWHM = slice thickness).
    axis : int
        Array axis the operator acts on.
    oversample : int
        Sub-samples per HR voxel used to integrate the profile.
    rcond : float
        Relative cut-off of singular values for the pseudo-inverse.
    """

    def __init__(
        self,
        n_hr: int,
        lr_centres: np.ndarray,
        hr_mm: float,
        profile: SliceProfile,
        axis: int,
        *,
        oversample: int = 16,
        rcond: float = 1e-10,
    ) -> None:
        self.lr_centres = np.asarray(lr_centres, dtype=np.float64)
        self.hr_mm = float(hr_mm)
        self.profile = profile
        self.rcond = float(rcond)
        super().__init__(
            _profile_matrix(int(n_hr), self.lr_centres, self.hr_mm, profile, oversample), axis
        )

    @classmethod
    def from_geometry(
        cls,
        geom: SliceGeometry,
        profile: str | SliceProfile = "gaussian",
        *,
        axis: int | None = None,
        effective: bool = False,
        **profile_kw: Any,
    ) -> SliceOperator:
        """Operator for a :class:`SliceGeometry`; ``axis`` defaults to ``geom.axis``."""
        if isinstance(profile, str):
            profile = make_profile(
                profile, geom.thickness_mm, hr_mm=geom.hr_mm, effective=effective, **profile_kw
            )
        return cls(
            geom.n_hr, geom.lr_centres, geom.hr_mm, profile, geom.axis if axis is None else axis
        )

    def along(self, axis: int) -> AxisOperator:
        """The same operator acting on another array axis (shares the matrices)."""
        op = SliceOperator.__new__(SliceOperator)
        op.__dict__.update(self.__dict__)
        op.axis = int(axis)
        op._torch_cache = self._torch_cache
        return op

    @cached_property
    def pinv_matrix(self) -> np.ndarray:
        """Moore-Penrose pseudo-inverse of the matrix, from its SVD (float64)."""
        return np.linalg.pinv(self.matrix, rcond=self.rcond)

    @property
    def pinv(self) -> AxisOperator:
        """``A⁺`` as an operator (LR → HR)."""
        return AxisOperator(self.pinv_matrix, self.axis)

    @property
    def range_projector(self) -> AxisOperator:
        """``A⁺A``: projection onto the row space (what the data determine)."""
        return AxisOperator(self.pinv_matrix @ self.matrix, self.axis)

    @property
    def null_projector(self) -> AxisOperator:
        """``I − A⁺A``: projection onto the null space (what the prior must supply)."""
        n = self.matrix.shape[1]
        return AxisOperator(np.eye(n) - self.pinv_matrix @ self.matrix, self.axis)

    def consistency(self, x: Array, y: Array) -> Array:
        """DDNM range-space replacement ``A⁺y + (I − A⁺A) x``."""
        return self.pinv(y) + self.null_projector(x)


def _profile_matrix(
    n_hr: int, centres: np.ndarray, hr_mm: float, profile: SliceProfile, oversample: int
) -> np.ndarray:
    """Rows: the profile at each LR centre, averaged over each HR voxel, unit row sums."""
    if oversample < 1:
        raise ValueError("oversample must be >= 1")
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5  # sub-voxel offsets, HR units
    pos = np.arange(n_hr)[:, None] + sub[None, :]  # (n_hr, oversample)
    z = (pos[None, :, :] - centres[:, None, None]) * hr_mm  # mm from each slice centre
    w = profile(z).mean(axis=-1)  # (n_lr, n_hr)
    sums = w.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        bad = np.flatnonzero(sums[:, 0] <= 0).tolist()
        raise ValueError(f"slices {bad} fall outside the HR grid; check the geometry")
    return w / sums
