"""Rasterize a PDF page at 300 dpi in poppler, pdfium, mupdf and ghostscript.

Each returns (RGB array, stderr text). Page sizes in the spec are whole pixels at
300 dpi, so every renderer gives exactly the spec's pixel grid.
"""
from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tests.cards.helpers import render as pdfium_render

# mutool says this on every run when built without lcms; it is about the tool, not the file.
MUPDF_NOISE = ("warning: ICC support is not available",)


def _ppm(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, timeout=240, check=True)


def poppler(pdf: Path, index: int) -> tuple[np.ndarray, str]:
    page = str(index + 1)
    done = _run(["pdftoppm", "-r", "300", "-f", page, "-l", page, str(pdf)])
    return _ppm(done.stdout), done.stderr.decode()


def pdfium(pdf: Path, index: int) -> tuple[np.ndarray, str]:
    return pdfium_render(pdf, index), ""


def mupdf(pdf: Path, index: int) -> tuple[np.ndarray, str]:
    with tempfile.TemporaryDirectory(prefix="cards-mu-") as tmp:
        out = Path(tmp) / "page.ppm"
        done = _run(["mutool", "draw", "-q", "-r", "300", "-o", str(out), str(pdf), str(index + 1)])
        stderr = "\n".join(line for line in done.stderr.decode().splitlines()
                           if line.strip() and line.strip() not in MUPDF_NOISE)
        return _ppm(out.read_bytes()), stderr


def ghostscript(pdf: Path, index: int) -> tuple[np.ndarray, str]:
    page = str(index + 1)
    done = _run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=ppmraw", "-r300",
                 "-dTextAlphaBits=4", "-dGraphicsAlphaBits=4", f"-dFirstPage={page}",
                 f"-dLastPage={page}", "-sOutputFile=-", str(pdf)])
    return _ppm(done.stdout), done.stderr.decode()


RENDERERS = {"poppler": poppler, "pdfium": pdfium, "mupdf": mupdf, "ghostscript": ghostscript}
