"""Image reading and writing with one-line errors and atomic, no-clobber writes.

Every input becomes an :class:`Image`: integer pixels (uint8 or uint16, never clipped or
rescaled on load) plus the dtype's maximum, so 8-bit images reach the network exactly as the
MLFuse authors fed them (PIL ``convert('L')`` / 255) and 16-bit images keep their precision.
Files are shown upright: an EXIF orientation tag (camera JPEGs) is applied on read, as every image
viewer does, so a rotated visible photo is not fused against an upright infrared one.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from mlfuse.data.gray import pil_luma
from mlfuse.errors import InputError, InputTypeError, OutputError, OutputExistsError

#: file extensions treated as images when scanning folders
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".gif")

_TO_RGB = {"RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "PA"}
_TO_L = {"1", "LA", "La"}
_U16 = {"I;16", "I;16L", "I;16B", "I;16N"}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Image:
    """Integer pixels (H x W gray or H x W x 3 RGB) and the value that means full white."""

    pixels: np.ndarray
    maxval: int
    source: str = "<array>"

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.pixels.shape[0], self.pixels.shape[1]

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3

    def luma(self) -> np.ndarray:
        """Integer luma on the pixels' own scale: PIL's integer BT.601 luma for 8-bit RGB (what
        ``convert('L')`` gives), the pixels themselves (no copy) for gray."""
        return pil_luma(self.pixels) if self.is_color else self.pixels

    def gray(self) -> np.ndarray:
        """Float32 luma in [0, 1]: :meth:`luma` divided by the full-scale value ``maxval``."""
        return self.luma().astype(np.float32) / np.float32(self.maxval)


def read_image(path: str | Path) -> Image:
    """Read an image file; raise :class:`InputError` naming the file and the problem."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not an image file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    try:
        with PILImage.open(p) as im:
            im.load()
            return _from_pil(_upright(im), str(p))
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{p}: not an image file (format not recognised)") from None
    except PILImage.DecompressionBombError as exc:
        raise InputError(f"{p}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: truncated or corrupt image ({reason})") from None


def _upright(im: PILImage.Image) -> PILImage.Image:
    """The image as viewers show it: its EXIF orientation tag applied (a no-op without one)."""
    if im.getexif().get(_EXIF_ORIENTATION, 1) not in (0, 1):
        return ImageOps.exif_transpose(im)
    return im


def _from_pil(im: PILImage.Image, source: str) -> Image:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in _TO_L:
        im, mode = im.convert("L"), "L"
    if mode in _TO_RGB:
        im, mode = im.convert("RGB"), "RGB"
    if mode in _U16:
        return from_array(np.asarray(im).astype(np.uint16), source)
    if mode == "I":  # 32-bit integer: Pillow uses it for 16-bit data from some writers
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise InputError(f"{source}: 32-bit integer image with values outside 0..65535 is not supported")
        return from_array(arr.astype(np.uint16), source)
    if mode == "F":
        return from_array(np.asarray(im, dtype=np.float32), source)
    if mode in ("L", "RGB"):
        return from_array(np.asarray(im), source)
    raise InputError(f"{source}: unsupported image mode '{mode}'")


def from_array(arr: np.ndarray, source: str = "<array>") -> Image:
    """Wrap a numpy array: uint8 / uint16 as is; float arrays must lie in [0, 1] (quantised to
    16 bits, which is below the network's float32 resolution at 8-bit scale); H x W, H x W x 1,
    H x W x 3 or H x W x 4 (alpha dropped). RGB with identical channels is treated as gray."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3]
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[2] == 3):
        raise InputError(f"{source}: expected an H x W or H x W x 3 image, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"{source}: image has no pixels (shape {a.shape})")
    if a.dtype == np.uint8:
        maxval = 255
    elif a.dtype == np.uint16:
        maxval = 65535
    elif a.dtype == np.bool_:
        a, maxval = a.astype(np.uint8) * 255, 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InputError(f"{source}: float image contains NaN or infinity")
        if a.min() < 0 or a.max() > 1:
            raise InputError(
                f"{source}: float image values must lie in [0, 1] (got {a.min():.4g}..{a.max():.4g}); "
                "pass uint8/uint16 or scale it"
            )
        a, maxval = np.rint(a.astype(np.float64) * 65535).astype(np.uint16), 65535
    else:
        raise InputError(f"{source}: unsupported pixel type {a.dtype} (use uint8, uint16 or float in [0, 1])")
    if a.ndim == 3 and np.array_equal(a[:, :, 0], a[:, :, 1]) and np.array_equal(a[:, :, 0], a[:, :, 2]):
        a = a[:, :, 0]
    if a.ndim == 3 and maxval != 255:
        raise InputError(f"{source}: colour images must be 8-bit (got {a.dtype})")
    return Image(np.ascontiguousarray(a), maxval, source)


def as_image(x: object) -> Image:
    """Accept an :class:`Image`, a path, a numpy array (H x W or H x W x C), a ``PIL.Image.Image``
    or a ``torch.Tensor`` (H x W, C x H x W or 1 x C x H x W, C = 1 or 3: PyTorch's channel-first
    layout; uint8, or float in [0, 1]). A PIL image's EXIF orientation is applied, as on files.
    Anything else is an :class:`InputTypeError` saying so."""
    if isinstance(x, Image):
        return x
    if isinstance(x, (str, os.PathLike)):
        return read_image(x)
    if isinstance(x, np.ndarray):
        return from_array(x)
    if isinstance(x, PILImage.Image):
        return _from_pil(_upright(x), f"<PIL image {x.mode} {x.width}x{x.height}>")
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):  # no torch import here
        return _from_tensor(x)
    raise InputTypeError(
        f"cannot fuse a {type(x).__module__}.{type(x).__qualname__}: give an image path, a numpy array "
        "(H x W or H x W x 3), a PIL.Image.Image or a torch.Tensor (H x W, C x H x W or 1 x C x H x W)"
    )


def _from_tensor(t: object) -> Image:
    shape = tuple(t.shape)
    source = f"<tensor {'x'.join(map(str, shape))}>"
    arr = t.detach().cpu()
    if str(arr.dtype) in ("torch.bfloat16", "torch.float16"):
        arr = arr.float()
    a = arr.numpy()
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)
    elif a.ndim != 2:
        raise InputError(f"{source}: expected a tensor of shape H x W, C x H x W or 1 x C x H x W with C = 1 or 3")
    return from_array(a, source)


#: hidden temp files of :func:`atomic_write`: ``.<name>.<pid>.<random>.tmp`` (older versions: no pid)
_TEMP_NAME = re.compile(r"^\.(?P<name>.+?\.[A-Za-z0-9]+?)(?:\.(?P<pid>\d+))?\.[a-z0-9_]{8}\.tmp$")
_IMAGE_WRITE_EXTS = frozenset(ext for ext, fmt in PILImage.registered_extensions().items() if fmt in PILImage.SAVE)
#: a temp file without a live writer on this host, or older than this, is a leftover of a killed run
STALE_TEMP_SECONDS = 6 * 3600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temps(folder: str | Path, *, max_age_s: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the hidden temp files that :func:`atomic_write` left in ``folder`` when its process was
    killed (SIGKILL gives no chance to clean up): those whose writer pid no longer runs, and any older
    than ``max_age_s`` (a writer on another host). Only temp files of image outputs are considered
    (``.NAME.EXT.PID.XXXXXXXX.tmp`` with an image extension); files of a live concurrent writer are
    kept and other files are never touched. Returns the deleted paths."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if not m or Path(m["name"]).suffix.lower() not in _IMAGE_WRITE_EXTS or not entry.is_file(follow_symlinks=False):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = m["pid"]
        # a dead writer's file a minute old (a writer on another host sharing the folder may have a pid
        # unknown here: it gets that minute to finish its write)
        dead = pid is not None and int(pid) != os.getpid() and not _pid_alive(int(pid)) and age > 60
        if dead or age > max_age_s:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def check_output_format(path: str | Path) -> str:
    """The Pillow format that writes ``path`` (by its extension); :class:`OutputError` if none does."""
    p = Path(path)
    fmt = PILImage.registered_extensions().get(p.suffix.lower())
    if fmt is None or fmt not in PILImage.SAVE:
        raise OutputError(f"{p}: unknown output image format '{p.suffix}' (use .png, .jpg, .tif, .bmp)")
    return fmt


def check_writable_folder(folder: str | Path) -> None:
    """Raise :class:`OutputError` if files cannot be created in ``folder`` (created later if missing):
    found before any work is done, not after the first result is computed."""
    d = Path(folder)
    probe = d
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"{d}: cannot create output folder ({probe} is a file)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".mlfuse-probe.{os.getpid()}.", suffix=".tmp", dir=probe)
    except OSError as exc:
        raise OutputError(f"{d}: cannot write output here ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(tmp)


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if two paths name the same file or folder (links and ``..`` resolved; either may not exist)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return Path(a).resolve() == Path(b).resolve()


def check_distinct_inputs(structural: object, functional: object) -> None:
    """Refuse one file (or folder) given for both roles: it would fuse each image with itself."""
    if isinstance(structural, (str, os.PathLike)) and isinstance(functional, (str, os.PathLike)) \
            and same_path(structural, functional):
        raise InputError(f"{structural}: given for both roles (structural and functional are the same "
                         f"{'folder' if Path(structural).is_dir() else 'file'}); give the other modality's")


def check_output_not_input(output: str | os.PathLike, inputs: list[str | os.PathLike]) -> None:
    """Refuse an output path that resolves to an input (file or folder), whatever ``--overwrite`` says:
    the source images are never replaced."""
    if not str(output).strip():
        raise OutputError("empty output path (-o ''): give an output file or folder")
    for src in inputs:
        if same_path(output, src):
            what = "folder" if Path(src).is_dir() else "file"
            raise OutputError(f"{output}: is the input {what} {src}; the sources are never overwritten: "
                              "choose another output path")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *, overwrite: bool = False) -> Path:
    """Write a file atomically: ``write(fh)`` fills a temp file beside ``path``, which is then
    renamed into place with the user's umask permissions.

    Without ``overwrite`` an existing file is never replaced (refused up front, and the final link
    is no-clobber). Raises :class:`OutputError` with one line on any failure; nothing partial is
    ever left at ``path``.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: already exists (pass --overwrite to replace it)")
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{parent}: cannot create output folder ({exc.strerror or exc})") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{os.getpid()}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"{parent}: cannot write output here ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)  # fails if p appeared meanwhile: never clobber
            except FileExistsError:
                raise OutputExistsError(f"{p}: already exists (pass --overwrite to replace it)") from None
            except OSError:  # file systems without hard links
                if p.exists():
                    raise OutputExistsError(f"{p}: already exists (pass --overwrite to replace it)") from None
                os.replace(tmp, p)
    except OSError as exc:
        raise OutputError(f"{p}: cannot write output ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def write_image(pixels: np.ndarray, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write uint8 pixels atomically (see :func:`atomic_write`); the format follows the extension."""
    p = Path(path)
    fmt = check_output_format(p)
    return atomic_write(p, lambda fh: PILImage.fromarray(np.ascontiguousarray(pixels)).save(fh, format=fmt),
                        overwrite=overwrite)
