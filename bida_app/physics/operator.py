"""Linear operators that act along one axis of an array (NumPy or torch).

Modelled on ``sigpy.linop``: operators are objects, ``op(x)`` applies them, ``op.H`` is the
adjoint and ``op1 @ op2`` composes. Because the slice-selection operator acts along a single
axis, it is stored as a small dense matrix (``n_lr x n_hr``) and applied with a tensor
contraction, so the exact pseudo-inverse comes from that matrix's SVD.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import Any

import numpy as np

from .geometry import SliceGeometry, lr_centres_from_affines
from .profiles import SliceProfile, make_profile

Array = Any  # np.ndarray | torch.Tensor


class AxisOperator:
    """Apply a dense matrix ``M`` (``m x n``) along ``axis`` of an array.

    Inputs may be NumPy arrays or torch tensors of any dimension (a batch of 2D images is just
    an array with more axes) on any device. Floating inputs keep their dtype; NumPy float16 and
    torch float16/bfloat16 are computed in float32 and cast back, integer inputs give float64
    (NumPy) or float32 (torch). Torch outputs stay on the input's device and are
    differentiable.

    Parameters
    ----------
    matrix : ndarray, shape (m, n)
        The operator's matrix, stored in float64.
    axis : int
        Axis of the input the matrix contracts (negative values count from the end).
    factors : tuple of ndarray, optional
        ``(L, R)`` with ``matrix == L @ R`` (or ``I - L @ R`` when ``complement``): the
        operator is then applied as two thin products, much cheaper than the dense ``n x n``
        matrix of a projector.
    complement : bool
        See ``factors``.

    Examples
    --------
    >>> op = AxisOperator(np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]), axis=1)
    >>> op(np.ones((4, 3, 2))).shape
    (4, 2, 2)
    >>> op.H(np.ones((4, 2, 2))).shape
    (4, 3, 2)
    >>> (op.H @ op).shape, op.H.H is op
    ((3, 3), True)
    """

    _AXIS_BOUND = ("H",)  # cached operators that carry ``axis``; dropped by :meth:`along`

    def __init__(
        self,
        matrix: np.ndarray,
        axis: int,
        *,
        factors: tuple[np.ndarray, np.ndarray] | None = None,
        complement: bool = False,
    ) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64)
        if self.matrix.ndim != 2:
            raise ValueError("AxisOperator needs a 2D matrix")
        self.axis = int(axis)
        self._factors = factors
        self._complement = bool(complement)
        self._torch_cache: dict[tuple[int, str, Any], Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and copy) without the per-device torch copies of the matrices."""
        state = self.__dict__.copy()
        state["_torch_cache"] = {}
        return state

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``: output and input length along the axis."""
        return self.matrix.shape  # type: ignore[return-value]

    @cached_property
    def H(self) -> AxisOperator:  # noqa: N802 - sigpy convention
        """Adjoint operator (the matrix transpose); ``op.H.H is op``."""
        factors = None if self._factors is None else tuple(f.T for f in self._factors[::-1])
        adj = AxisOperator(self.matrix.T, self.axis, factors=factors, complement=self._complement)
        adj.__dict__["H"] = self
        return adj

    def along(self, axis: int) -> AxisOperator:
        """The same operator acting on another array axis (shares the matrices)."""
        op = copy.copy(self)
        op.axis = int(axis)
        for name in self._AXIS_BOUND:
            op.__dict__.pop(name, None)
        return op

    def __matmul__(self, other: Any) -> Any:
        """Compose with another operator on the same axis, or apply to an array."""
        if isinstance(other, AxisOperator):
            if other.axis != self.axis:
                raise ValueError("can only compose AxisOperators acting on the same axis")
            return AxisOperator(self.matrix @ other.matrix, self.axis)
        if hasattr(other, "shape") and hasattr(other, "dtype"):
            return self.apply(other)
        return NotImplemented

    def __call__(self, x: Array) -> Array:
        return self.apply(x)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.shape[1]}->{self.shape[0]} on axis {self.axis}>"

    def apply(self, x: Array) -> Array:
        """Apply the matrix along ``self.axis`` of ``x`` (NumPy array or torch tensor)."""
        n_in = self.matrix.shape[1]
        if not -x.ndim <= self.axis < x.ndim or x.shape[self.axis] != n_in:
            raise ValueError(
                f"operator expects length {n_in} along axis {self.axis}, got shape "
                f"{tuple(x.shape)}"
            )
        if isinstance(x, np.ndarray):
            return self._apply_numpy(x)
        return self._apply_torch(x)

    def _apply_numpy(self, x: np.ndarray) -> np.ndarray:
        dtype = x.dtype if np.issubdtype(x.dtype, np.inexact) else np.dtype(np.float64)
        single = dtype in (np.float16, np.float32, np.complex64)
        real = np.float32 if single else np.float64
        out = self._apply_matrices(
            x.astype(dtype, copy=False), lambda i, a: a.astype(real, copy=False), np.moveaxis
        )
        return out.astype(dtype, copy=False)

    def _apply_torch(self, x: Any) -> Any:
        import torch

        compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32

        def get(i: int, a: np.ndarray) -> Any:
            key = (i, str(x.device), compute)
            if key not in self._torch_cache:
                self._torch_cache[key] = torch.as_tensor(a, dtype=compute, device=x.device)
            return self._torch_cache[key]

        out = self._apply_matrices(x.to(compute), get, torch.movedim)
        return out.to(x.dtype if x.dtype.is_floating_point else compute)

    def _apply_matrices(self, x: Any, get: Any, movedim: Any) -> Any:
        """Dense product, or the factored one ``[x -] L (R x)``; ``get`` converts matrices."""
        if self._factors is None:
            return _contract(get(0, self.matrix), x, self.axis, movedim)
        left, right = self._factors
        t = _contract(get(1, right), x, self.axis, movedim)
        t = _contract(get(2, left), t, self.axis, movedim)
        return x - t if self._complement else t


def _contract(m: Any, x: Any, axis: int, movedim: Any) -> Any:
    """``m`` applied along ``axis`` of ``x`` as a batched matmul; C-contiguous result."""
    if x.ndim == 1:
        return m @ x
    out = movedim(m @ movedim(x, axis, -2), -2, axis)
    return out.contiguous() if hasattr(out, "contiguous") else np.ascontiguousarray(out)


class SliceOperator(AxisOperator):
    """Through-plane degradation ``y = A x``: slice-profile convolution, then slice sampling.

    Row ``i`` of the matrix is the profile centred on LR slice ``i``, integrated over each HR
    voxel (exactly when the profile has an antiderivative, otherwise with ``oversample``
    midpoint sub-samples) and normalised to unit sum, so a constant image stays constant; where
    a profile reaches past the end of the HR grid the part inside is renormalised. Slice
    centres may be anywhere inside the HR grid (non-integer factors, gaps, overlaps); a centre
    outside it is an error.

    The pseudo-inverse comes from the SVD of the small matrix (:func:`numpy.linalg.pinv`), so
    ``A A⁺ A = A`` holds to rounding error. Overlapping thick slices make ``A`` ill-conditioned
    (see :attr:`condition_number`); ``rcond`` then truncates the smallest singular values.

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

    Examples
    --------
    >>> from bida_app.physics import SliceGeometry
    >>> A = SliceOperator.from_geometry(SliceGeometry.from_hr(1, 10, 0.5, 0.5, 0.2))
    >>> x = np.random.default_rng(0).random((3, 10, 2))
    >>> A(x).shape, bool(np.allclose(A(A.pinv(A(x))), A(x)))
    ((3, 4, 2), True)
    """

    _AXIS_BOUND = ("H", "pinv", "range_projector", "null_projector", "_damped")

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

    @classmethod
    def from_affines(
        cls,
        hr_affine: np.ndarray,
        n_hr: int,
        lr_affine: np.ndarray,
        n_lr: int,
        axis: int,
        profile: str | SliceProfile = "gaussian",
        *,
        lr_axis: int | None = None,
        thickness_mm: float | None = None,
        effective: bool = False,
        **profile_kw: Any,
    ) -> SliceOperator:
        """Operator between an existing HR grid and LR image, positioned by their affines.

        Parameters
        ----------
        hr_affine, lr_affine : ndarray, shape (4, 4)
            Voxel-to-world affines of the HR grid and the LR image.
        n_hr, n_lr : int
            Lengths of the through-plane axis in the HR grid and the LR image.
        axis : int
            Through-plane voxel axis of the HR grid (the axis the operator acts on).
        profile : str or SliceProfile
            Profile kind (see :func:`make_profile`) or a ready profile.
        lr_axis : int, optional
            Through-plane voxel axis of the LR image; defaults to ``axis``.
        thickness_mm : float, optional
            Slice thickness; defaults to the LR slice spacing (no gap, as in the paper).
        effective : bool
            Use the effective width ``sqrt(T**2 - h**2)``.
        **profile_kw
            Passed to :func:`make_profile` (e.g. ``tbw``).
        """
        lr_axis = axis if lr_axis is None else lr_axis
        hr_mm = float(np.linalg.norm(np.asarray(hr_affine, float)[:3, axis]))
        if thickness_mm is None:
            thickness_mm = float(np.linalg.norm(np.asarray(lr_affine, float)[:3, lr_axis]))
        if isinstance(profile, str):
            profile = make_profile(
                profile, thickness_mm, hr_mm=hr_mm, effective=effective, **profile_kw
            )
        centres = lr_centres_from_affines(hr_affine, lr_affine, n_lr, lr_axis, axis)
        return cls(n_hr, centres, hr_mm, profile, axis)

    @cached_property
    def pinv_matrix(self) -> np.ndarray:
        """Moore-Penrose pseudo-inverse of the matrix, from its SVD (float64)."""
        return np.linalg.pinv(self.matrix, rcond=self.rcond)

    @property
    def condition_number(self) -> float:
        """Ratio of the largest to the smallest singular value of the matrix."""
        sv = np.linalg.svd(self.matrix, compute_uv=False)
        return float(sv[0] / sv[-1]) if sv[-1] > 0 else float("inf")

    @cached_property
    def pinv(self) -> AxisOperator:
        """``A⁺`` as an operator (LR → HR)."""
        return AxisOperator(self.pinv_matrix, self.axis)

    @cached_property
    def range_projector(self) -> AxisOperator:
        """``A⁺A``: projection onto the row space (what the data determine)."""
        factors = (self.pinv_matrix, self.matrix)
        return AxisOperator(self.pinv_matrix @ self.matrix, self.axis, factors=factors)

    @cached_property
    def null_projector(self) -> AxisOperator:
        """``I − A⁺A``: projection onto the null space (what the prior must supply)."""
        n = self.matrix.shape[1]
        return AxisOperator(
            np.eye(n) - self.pinv_matrix @ self.matrix,
            self.axis,
            factors=(self.pinv_matrix, self.matrix),
            complement=True,
        )

    def damped_pinv(self, damping: float) -> AxisOperator:
        """Tikhonov-damped inverse ``Aᵀ(AAᵀ + λ d I)⁻¹`` (LR → HR); ``damping=0`` is :attr:`pinv`.

        ``λ = damping`` is relative to ``d``, the mean of ``diag(AAᵀ)``, so that one value means
        the same for any profile, thickness and voxel size. The damping shrinks what the data
        determine only weakly (the small eigenvalues of ``AAᵀ``: detail near the slices' Nyquist
        frequency), where a wrong slice profile or noise would be amplified the most.

        Examples
        --------
        >>> from bida_app.physics import SliceGeometry
        >>> A = SliceOperator.from_geometry(SliceGeometry.from_hr(0, 20, 1.0, 1.0, 0.25))
        >>> bool(np.allclose(A.damped_pinv(0.0).matrix, A.pinv_matrix))
        True
        >>> y = np.random.default_rng(0).random(A.shape[0])
        >>> r = [A.relative_residual(A.damped_pinv(lam)(y), y) for lam in (0.0, 0.1, 1.0)]
        >>> r[0] < 1e-10 < r[1] < r[2]
        True
        """
        damping = float(damping)
        if not damping >= 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        if damping == 0:
            return self.pinv
        cache = self.__dict__.setdefault("_damped", {})
        if damping not in cache:
            m = self.matrix
            gram = m @ m.T
            reg = damping * float(np.mean(np.diag(gram))) * np.eye(len(gram))
            cache[damping] = AxisOperator(np.linalg.solve(gram + reg, m).T, self.axis)
        return cache[damping]

    def consistency(self, x: Array, y: Array, damping: float = 0.0) -> Array:
        """DDNM range-space replacement ``A⁺y + (I − A⁺A) x``, computed as ``x + A⁺(y − Ax)``.

        With ``damping > 0`` the correction uses :meth:`damped_pinv`: the result re-degrades
        to ``y`` only up to a residual that grows with ``damping`` (a regularised projection).
        """
        return x + self.damped_pinv(damping)(y - self(x))

    def relative_residual(self, x: np.ndarray, y: np.ndarray) -> float:
        """``‖A x − y‖ / ‖y‖`` in float64 (0 when an all-zero ``y`` is matched exactly)."""
        y = np.asarray(y, np.float64)
        ax = self(np.asarray(x, np.float64))
        return float(np.linalg.norm(ax - y) / max(float(np.linalg.norm(y)), 1e-12))


def _profile_matrix(
    n_hr: int, centres: np.ndarray, hr_mm: float, profile: SliceProfile, oversample: int
) -> np.ndarray:
    """Rows: the profile at each LR centre, averaged over each HR voxel, unit row sums."""
    if oversample < 1:
        raise ValueError("oversample must be >= 1")
    outside = (centres < -0.5 - 1e-6) | (centres > n_hr - 0.5 + 1e-6)
    if np.any(outside):
        bad = np.flatnonzero(outside).tolist()
        raise ValueError(
            f"LR slices {bad} are centred outside the HR grid of {n_hr} voxels; check the geometry"
        )
    edges = np.arange(n_hr + 1) - 0.5  # HR voxel boundaries, HR index units
    integral = profile.integral((edges[None, :] - centres[:, None]) * hr_mm)
    if integral is not None:
        w = np.diff(integral, axis=1)
    else:
        sub = (np.arange(oversample) + 0.5) / oversample - 0.5  # sub-voxel offsets
        pos = np.arange(n_hr)[:, None] + sub[None, :]  # (n_hr, oversample)
        w = profile((pos[None, :, :] - centres[:, None, None]) * hr_mm).mean(axis=-1)
    sums = w.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        bad = np.flatnonzero(sums[:, 0] <= 0).tolist()
        raise ValueError(f"slices {bad} have no profile weight on the HR grid")
    return w / sums
