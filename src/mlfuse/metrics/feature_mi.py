"""Feature mutual information (FMI), the fast-FMI of Haghighat et al. (spec ``metrics.md`` section 2).

M.B.A. Haghighat, A. Aghagolzadeh, H. Seyedarabi, "A non-reference image fusion metric based on
mutual information of image features", Computers and Electrical Engineering 37(5), 2011; and
M. Haghighat, M.A. Razian, "Fast-FMI: non-reference image fusion metric", AICT 2014.

The reference is ``analysis_fmi`` of the Linfeng-Tang Image-Fusion MATLAB code (``tang`` profile),
as run in GNU Octave. Its per-window loop is vectorised here over all 3x3 windows at once, with the
window quantities on which a branch depends (pdf, mean, Pearson numerator, moments, the Fréchet
covariance, the joint-entropy accumulation) summed in the reference's left-to-right order, so that
flat windows, where the correlation is pure round-off, take the same branch as in Octave.

Reproduced quirks:

* IF's ``FMI_pixel`` calls ``analysis_fmi`` without a feature, i.e. ``feature="edge"``: the binary
  Sobel edge map of Octave's image package ``edge`` (Sobel/8, replicate padding, threshold
  4·mean(g²), "simple thinning").
* After the A-F pass the fused window has been min-max normalised in place, and the B-F identity
  test compares the raw B window with this normalised F window.
* Negative joint-pdf cells enter as -p·log2|p| (the real part of MATLAB's complex log); negative
  variances of the index distribution give imaginary standard deviations, handled in complex
  arithmetic as in Octave.
* ``feature="wavelet"`` uses PyWavelets' 62-tap ``dmey`` (MATLAB's has 102 taps), so FMI_w is
  approximate (about 1e-2).
"""

from __future__ import annotations

import numpy as np

from mlfuse.metrics._common import check_images

__all__ = ["FEATURES", "fmi"]

#: feature extraction methods of ``analysis_fmi`` (its "gradient" is not used by any profile)
FEATURES = ("none", "edge", "dct", "wavelet")

_LN2 = np.log(2.0)
_CHUNK = 4096  # windows per block: (9, 9, block) float64 work arrays of about 2.6 MB
_TINY = 1e-300  # below any nonzero joint-pdf cell: log2 of zero cells stays finite
_IDX = np.arange(1.0, 10.0)  # the 1-based indices i of the reference's moment loops

# Joint-entropy accumulation order of the reference: cell (1,1); the boundary i = 2..9 (j = 1);
# the boundary j = 2..9 (i = 1); then i = 2..9 outer, j = 2..9 inner. Flat index = i * 9 + j (0-based).
_JOINT_ORDER = np.array(
    [0] + [i * 9 for i in range(1, 9)] + list(range(1, 9)) + [i * 9 + j for i in range(1, 9) for j in range(1, 9)]
)


# ------------------------------------------------------------------------------------------ features
def _edge(x: np.ndarray) -> np.ndarray:
    """Octave image-package ``edge(x)`` (Sobel) of a 0-255 image, as binary float64 0/1.

    ``analysis_Reference`` passes ``im2double`` images, so the edge map is computed on x/255: the
    responses of the normalised Sobel kernels (correlation, replicate padding), squared strength
    g² = gx² + gy², threshold 4·mean(g²), cells with g² <= threshold zeroed, then "simple thinning":
    a pixel is an edge if its g² is strictly larger than both horizontal neighbours or than both
    vertical neighbours (zero outside the image). On x/255 data the responses are rounded, and which
    of two mathematically equal neighbours wins the thinning depends on that rounding: the taps are
    accumulated one at a time in row-major kernel order, the order that reproduces the reference
    values (computing on 0-255 data instead moves FMI_pixel by up to 4e-5 on the reference triples).
    """
    y = x / 255.0
    h, w = y.shape
    p = np.pad(y, 1, mode="edge")

    def tap(r: int, c: int) -> np.ndarray:
        return p[r : r + h, c : c + w]

    # gy: kernel [1 2 1; 0 0 0; -1 -2 -1] / 8; gx: its transpose
    gy = 0.125 * tap(0, 0)
    for (r, c), k in (((0, 1), 0.25), ((0, 2), 0.125), ((2, 0), -0.125), ((2, 1), -0.25), ((2, 2), -0.125)):
        gy = gy + k * tap(r, c)
    gx = 0.125 * tap(0, 0)
    for (r, c), k in (((0, 2), -0.125), ((1, 0), 0.25), ((1, 2), -0.25), ((2, 0), 0.125), ((2, 2), -0.125)):
        gx = gx + k * tap(r, c)
    s2 = gy * gy + gx * gx
    thresh2 = 4.0 * s2.mean()
    s2[s2 <= thresh2] = 0.0
    z = np.pad(s2, 1)  # zero neighbours outside the image
    horiz = (s2 > z[1:-1, :-2]) & (s2 > z[1:-1, 2:])
    vert = (s2 > z[:-2, 1:-1]) & (s2 > z[2:, 1:-1])
    return (horiz | vert).astype(np.float64)


def _rerange(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return np.ones_like(x) if hi == lo else (x - lo) / (hi - lo)


def _feature(x: np.ndarray, feature: str) -> np.ndarray:
    if feature == "none":
        return x
    if feature == "edge":
        return _edge(x)
    if feature == "dct":  # MATLAB dct2: orthonormal 2-D DCT-II
        from scipy.fft import dctn

        return dctn(x, type=2, norm="ortho")
    if feature == "wavelet":  # dwt2(x, 'dmey') laid out as [cA cH; cV cD], rescaled to [0, 1]
        import pywt

        ca, (ch, cv, cd) = pywt.dwt2(x, "dmey", mode="symmetric")
        return _rerange(np.block([[ca, ch], [cv, cd]]))
    raise ValueError(f"unknown FMI feature {feature!r} (choose from {', '.join(FEATURES)})")


# ----------------------------------------------------------------------------------------- windows
def _windows(x: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """The 3x3 "valid" windows whose top rows are r0..r1-1, as a (9, n) array (window elements in
    MATLAB column-major order, windows in row-major order)."""
    w = x.shape[1]
    return np.stack([x[r0 + r : r1 + r, c : c + w - 2].ravel() for c in range(3) for r in range(3)])


def _seqsum(v: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Sum over the leading axis strictly left to right (Octave's ``sum``), vectorised over the rest."""
    rows = range(v.shape[0]) if order is None else order
    it = iter(rows)
    acc = v[next(it)].copy()
    for k in it:
        acc += v[k]
    return acc


class _Side:
    """Per-window marginal quantities of one feature image (columns = windows)."""

    def __init__(self, w: np.ndarray):
        mx, mn = w.max(axis=0), w.min(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            norm = np.where(mx == mn, 1.0, (w - mn) / (mx - mn))
        self.norm = norm
        # sum(sum(window)): three column sums, then their sum, each left to right
        s = ((norm[0] + norm[1]) + norm[2]) + ((norm[3] + norm[4]) + norm[5])
        s += (norm[6] + norm[7]) + norm[8]
        pdf = norm / s
        self.pdf = pdf
        cdf = np.empty_like(pdf)  # sequential, as the reference's loop (and faster than cumsum on axis 0)
        cdf[0] = pdf[0]
        for k in range(1, 9):
            np.add(cdf[k - 1], pdf[k], out=cdf[k])
        self.cdf = cdf
        self.temp = pdf - _seqsum(pdf) / 9.0  # pdf - mean(pdf)
        self.ss = _seqsum(self.temp * self.temp)
        e = _seqsum(_IDX[:, None] * pdf)
        e2 = _seqsum((_IDX * _IDX)[:, None] * pdf)
        self.var = e2 - e * e  # may be a tiny negative number: the reference's sqrt is then imaginary
        logs = np.log2(np.where(pdf != 0, pdf, 1.0))  # zero cells are skipped by the reference
        self.ent = -_seqsum(pdf * logs)  # = sum of -p*log2(p), left to right

    def take(self, idx: np.ndarray | slice) -> _Side:
        """The quantities of a subset of the windows (a view for a slice)."""
        sub = object.__new__(_Side)
        for k in ("pdf", "cdf", "temp", "ss", "var", "ent"):
            v = getattr(self, k)
            setattr(sub, k, v[..., idx] if isinstance(idx, slice) else np.take(v, idx, axis=-1))
        return sub


class _Work:
    """Reusable (9, 9, n) float64 work arrays for blocks of up to ``size`` windows (no page faults
    per block)."""

    def __init__(self, size: int):
        self.buf = np.empty((3, 81 * size))

    def arrays(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.buf[k, : 81 * n].reshape(9, 9, n) for k in range(3))  # type: ignore[return-value]


def _joint_entropy_real(xs: _Side, fs: _Side, c: np.ndarray, upper: bool, work: _Work) -> np.ndarray:
    """Joint entropy of the Nelsen-copula joint pdf, windows of one branch (all c >= 0 or all c < 0)
    with real standard deviations. Cell (i, j) pairs F's i-th and X's j-th cdf value."""
    n = c.shape[0]
    fcdf, xcdf = fs.cdf[:, None, :], xs.cdf[None, :, :]
    cop, t, d = work.arrays(n)
    # copula cdf on the 9 x 9 grid in the reference's form: Fréchet upper bound
    # 0.5 * (Ff + Fx - |Ff - Fx|) for c >= 0, lower bound 0.5 * (Ff + Fx - 1 + |Ff + Fx - 1|) for c < 0
    np.add(fcdf, xcdf, out=cop)
    if upper:
        np.subtract(fcdf, xcdf, out=t)
        np.abs(t, out=t)
        cop -= t
    else:
        cop -= 1.0
        np.abs(cop, out=t)
        cop += t
    cop *= 0.5
    # mixing weight phi (theta for c < 0) = c / (cov_bound / (sd_f * sd_x)); 0 if c = 0 or an sd is 0
    need = (xs.var != 0) & (fs.var != 0) & (c != 0)
    phi = np.zeros(n)
    if need.any():
        np.multiply(fcdf, xcdf, out=t)
        np.subtract(cop, t, out=t)
        cov = _seqsum(t.reshape(81, n))  # the reference's loop: i outer, j inner
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = c / (cov / (np.sqrt(fs.var) * np.sqrt(xs.var)))
        phi[need] = ratio[need]
    # cell masses by inclusion-exclusion of the copula cdf: corner, the two boundaries, the walls,
    # each written as the reference's expression
    d[0, 0] = cop[0, 0]
    np.subtract(cop[1:, 0], cop[:-1, 0], out=d[1:, 0])
    np.subtract(cop[0, 1:], cop[0, :-1], out=d[0, 1:])
    np.subtract(cop[1:, 1:], cop[:-1, 1:], out=d[1:, 1:])
    d[1:, 1:] -= cop[1:, :-1]
    d[1:, 1:] += cop[:-1, :-1]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # jpdf = phi * d + (1 - phi) * fPdf(i) * xPdf(j)
        d *= phi
        np.multiply(((1.0 - phi) * fs.pdf)[:, None, :], xs.pdf[None, :, :], out=t)
        d += t
        # -p * log2(p), real part for negative p (-p * log2|p|); zero cells add 0 (0 * finite), as
        # the reference skips them
        np.abs(d, out=t)
        np.maximum(t, _TINY, out=t)
        np.log2(t, out=t)
        t *= d
    return -_seqsum(t.reshape(81, n), _JOINT_ORDER)


def _sqrt_var(var: np.ndarray) -> np.ndarray:
    """MATLAB sqrt: imaginary for negative arguments."""
    return np.sqrt(var.astype(np.complex128))


def _joint_entropy_complex(xs: _Side, fs: _Side, c: np.ndarray) -> np.ndarray:
    """As :func:`_joint_entropy_real` for windows where a variance is negative (round-off), so the
    reference's sqrt, mixing weight and log are complex; the real part of -p*log2(p) is summed."""
    n = c.shape[0]
    fcdf, xcdf = fs.cdf[:, None, :], xs.cdf[None, :, :]
    up = (c >= 0)[None, None, :]
    ssum = fcdf + xcdf
    cop = 0.5 * np.where(up, ssum - np.abs(fcdf - xcdf), (ssum - 1.0) + np.abs(ssum - 1.0))
    cov = _seqsum((cop - fcdf * xcdf).reshape(81, n))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        phi = c / (cov / (_sqrt_var(fs.var) * _sqrt_var(xs.var)))
    g = np.zeros((10, 10, n))
    g[1:, 1:] = cop
    d = ((g[1:, 1:] - g[:-1, 1:]) - g[1:, :-1]) + g[:-1, :-1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        jpdf = phi * d + ((1.0 - phi) * fs.pdf)[:, None, :] * xs.pdf[None, :, :]
        nz = jpdf != 0
        terms = np.where(nz, np.real(-jpdf * (np.log(np.where(nz, jpdf, 1.0)) / _LN2)), 0.0)
    return _seqsum(terms.reshape(81, n), _JOINT_ORDER)


def _pass(xw: np.ndarray, fside: _Side, ident: np.ndarray, work: _Work) -> np.ndarray:
    """NFMI between one source's windows and the fused windows (1 where the windows are identical)."""
    out = np.ones(ident.shape[0])
    todo = np.flatnonzero(~ident)
    if todo.size == 0:
        return out
    xs, fs = _Side(xw[:, todo]), fside.take(todo)
    num = _seqsum(xs.temp * fs.temp)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(num == 0, 0.0, num / np.sqrt(xs.ss * fs.ss))
    need = (xs.var != 0) & (fs.var != 0) & (c != 0)
    cplx = need & ((xs.var < 0) | (fs.var < 0))
    # group the windows by branch (upper copula, lower copula, complex) into contiguous runs
    branch = np.where(cplx, 2, np.where(c >= 0, 0, 1))
    order = np.argsort(branch, kind="stable")
    bounds = np.searchsorted(branch[order], [0, 1, 2, 3])
    xs, fs, c = xs.take(order), fs.take(order), c[order]
    joint = np.empty(todo.size)
    for k in range(3):
        sl = slice(bounds[k], bounds[k + 1])
        if sl.start == sl.stop:
            continue
        xk, fk = xs.take(sl), fs.take(sl)
        if k < 2:
            joint[sl] = _joint_entropy_real(xk, fk, c[sl], k == 0, work)
        else:
            joint[sl] = _joint_entropy_complex(xk, fk, c[sl])
    hsum = xs.ent + fs.ent
    mi = hsum - joint
    with np.errstate(divide="ignore", invalid="ignore"):
        out[todo[order]] = np.where(mi == 0, 0.0, 2.0 * mi / hsum)
    return out


def _window_values(ff: np.ndarray, fa: np.ndarray, fb: np.ndarray, r0: int, r1: int, work: _Work) -> np.ndarray:
    """(NFMI_AF + NFMI_BF) / 2 of the windows with top rows r0..r1-1."""
    fw, aw, bw = _windows(ff, r0, r1), _windows(fa, r0, r1), _windows(fb, r0, r1)
    fside = _Side(fw)
    ident_a = np.all(aw == fw, axis=0)
    # B pass: F has been normalised in place unless the A pass found identical windows
    ident_b = np.all(bw == np.where(ident_a, fw, fside.norm), axis=0)
    return (_pass(aw, fside, ident_a, work) + _pass(bw, fside, ident_b, work)) / 2.0


def fmi(f: np.ndarray, a: np.ndarray, b: np.ndarray, feature: str = "edge") -> float:
    """Fast-FMI (Haghighat et al. 2011/2014) of fused ``f`` against sources ``a`` and ``b``.

    Inputs are 2-D arrays on the 0-255 scale (any real dtype), all the same size; ``a`` is the
    "ir"/functional slot and ``b`` the "vi"/structural slot. ``feature`` is ``"none"`` (raw pixels),
    ``"edge"`` (binary Sobel edges; the reference's default and IF's ``FMI_pixel``), ``"dct"`` (``dct2``
    of the whole image) or ``"wavelet"`` (one-level ``dmey`` ``dwt2``, approximate). Over every 3x3
    "valid" window the normalised MI of (A, F) and (B, F) is averaged; the result is the mean over
    windows, as ``analysis_fmi`` (tang profile) computes it, quirks included (module docstring).
    """
    if feature not in FEATURES:
        raise ValueError(f"unknown FMI feature {feature!r} (choose from {', '.join(FEATURES)})")
    f, a, b = check_images(f, a, b, dtype=np.float64, min_size=3)
    ff, fa, fb = (_feature(x, feature) for x in (f, a, b))
    h, w = ff.shape
    rows = max(1, _CHUNK // (w - 2))  # window rows per block: bounded memory, cache-sized work
    work = _Work(rows * (w - 2))
    values = np.concatenate(
        [_window_values(ff, fa, fb, r0, min(r0 + rows, h - 2), work) for r0 in range(0, h - 2, rows)]
    )
    return float(np.mean(values))
