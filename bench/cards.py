"""Benchmark of the card engine: `python bench/cards.py [--runs N] [--cards N] [--skip-render]`.

Builds three 64-card decks of the same real-looking art (825 x 1125: gradients, soft
shapes, a title and rules text; RGBA PNG with rounded transparent corners, RGB PNG,
JPEG q90, plus one back each) and prints three tables:

1. generate_sheets (letter / standard) per deck, and offset_pdf: wall time of the call
   in a fresh process (imports excluded: a worker has them loaded), median of the runs;
   with "decode only" per deck: every image decoded to pixels and nothing else, the
   floor under generate (the bleed strips and the integrity check need every pixel);
2. rendering at 300 dpi in poppler, pdfium, mupdf and ghostscript, per page, seconds
   (best of at least 3 runs: one run's noise is larger than the differences) and peak
   RSS of the renderer process, for the RGB deck plain / --crop 3mm /
   --extend-corners 10, next to a plain raster page of the same size (one full-page
   PNG placed once, as the original tool's pages are);
3. cold command line: `scm-cards --help` and `scm-cards generate` of the RGB deck,
   start to finish, median of the runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from anywhere: the project root must be importable.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sysconfig
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

GENERATE_TARGET_S = 0.3
HELP_TARGET_S, COLD_GENERATE_TARGET_S = 0.3, 0.8
DECKS = ("rgba-png", "rgb-png", "jpeg")
RENDER_OPTIONS = {"plain": [], "crop 3mm": ["--crop", "3mm"], "extend 10": ["--extend-corners", "10"]}


# --------------------------------------------------------------------------- decks

def make_art(args) -> None:
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    folders, name, seed = args
    width, height = 825, 1125
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.dstack([128 + 127 * np.sin(x / 97 + seed), 128 + 127 * np.cos(y / 131 + seed * 0.3),
                      (x + y) * 255 / (width + height)])
    im = Image.fromarray(base.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(8):
        x0, y0 = (int(v) for v in rng.integers(0, [width - 100, height - 100]))
        size = [int(v) for v in rng.integers(60, 300, 2)]
        draw.ellipse([x0, y0, x0 + size[0], y0 + size[1]], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    im = im.filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(im)
    draw.rounded_rectangle([40, 560, width - 40, height - 60], 24, fill=(238, 232, 220), outline=(40, 30, 20), width=4)
    draw.text((60, 70), f"Card {seed}", fill=(255, 255, 255), font=ImageFont.load_default(size=64))
    body = ImageFont.load_default(size=30)
    for line in range(9):
        draw.text((70, 600 + line * 48), "Deal 3 damage to any target. Draw a card.", fill=(25, 20, 15), font=body)
    im.save(folders["rgb-png"] / name, "PNG")
    im.save(folders["jpeg"] / name.replace(".png", ".jpg"), "JPEG", quality=90)
    alpha = Image.new("L", im.size, 0)
    ImageDraw.Draw(alpha).rounded_rectangle([0, 0, width - 1, height - 1], 40, fill=255)
    im.putalpha(alpha)
    im.save(folders["rgba-png"] / name, "PNG")


def build_decks(base: Path, cards: int) -> dict[str, Path]:
    roots = {deck: base / deck for deck in DECKS}
    jobs = []
    for sub, names in (("fronts", [(f"card{i:03d}.png", i) for i in range(1, cards + 1)]),
                       ("backs", [("back.png", 999)])):
        folders = {deck: roots[deck] / sub for deck in DECKS}
        for folder in folders.values():
            folder.mkdir(parents=True)
        jobs += [(folders, name, seed) for name, seed in names]
    with ProcessPoolExecutor() as pool:
        list(pool.map(make_art, jobs))
    return roots


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- in-process timing

def child(kind: str, folder: str) -> None:
    """Runs in the measured subprocess."""
    from app.cards import generate_sheets, offset_pdf
    warm_up()

    deck = Path(folder)
    # The previous run's output goes first: replacing it would time the file system
    # freeing it, which is not part of the work.
    for name in ("sheets.pdf", "offset.pdf"):
        if (deck / name).exists() and (kind == "generate" or name == "offset.pdf"):
            (deck / name).unlink()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    if kind == "decode":
        work, output = decode_only(deck), None
    elif kind == "generate":
        output = deck / "sheets.pdf"
        result = generate_sheets(front_dir=deck / "fronts", back_dir=deck / "backs", output=output)
        work = f"{result.cards} cards, {result.pages} pages"
    else:
        output = deck / "offset.pdf"
        result = offset_pdf(input=deck / "sheets.pdf", output=output, x=12, y=-7)
        work = f"{result.pages} pages, {len(result.shifted)} moved"
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": rss_mb,
                      "size": output.stat().st_size if output else 0, "work": work}))


def decode_only(deck: Path) -> str:
    """Every image of the deck decoded once to pixels, as many at once as the engine's
    loader runs, and nothing else: the floor under generate, since the bleed strips and
    the integrity check need every pixel (libpng for PNG, Pillow's libjpeg for JPEG)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from app.cards.decode import png_pixels
    from app.cards.sheet import loader_threads

    def decode(path: Path) -> None:
        if path.suffix == ".png":
            png_pixels(path.read_bytes())
        else:
            Image.open(path).load()

    files = sorted(p for p in deck.rglob("*") if p.suffix in (".png", ".jpg"))
    with ThreadPoolExecutor(max_workers=loader_threads()) as pool:
        list(pool.map(decode, files))
    return f"{len(files)} images decoded"


def warm_up() -> None:
    """Load what the engine imports on first use (pydantic models, pypdf, the codecs): a
    worker that has run one job has them, and their import is not the work measured."""
    import imagecodecs
    import zlib_ng.zlib_ng

    import app.cards.models
    import app.cards.offset
    import app.cards.pdf

    del imagecodecs, zlib_ng, app


def cpu_seconds() -> float:
    """User + system CPU of this process: meaningful when the machine is shared."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(kind: str, folder: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(folder)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def generate_table(roots: dict[str, Path], runs: int) -> list[tuple]:
    rows = []
    for deck in DECKS:
        rows.append(timing_row(f"generate {deck}", [measure("generate", roots[deck]) for _ in range(runs)],
                               folder_bytes(roots[deck] / "fronts"), GENERATE_TARGET_S))
    for deck in DECKS:
        rows.append(timing_row(f"decode only {deck}", [measure("decode", roots[deck]) for _ in range(runs)]))
    rows.append(timing_row("offset rgb-png", [measure("offset", roots["rgb-png"]) for _ in range(runs)]))
    return rows


def timing_row(label: str, results: list[dict], input_bytes: int = 0, target: float | None = None) -> tuple:
    wall = statistics.median(r["wall"] for r in results)
    cpu = statistics.median(r["cpu"] for r in results)
    return (label, results[-1]["work"], f"{wall * 1000:.0f} ms", f"{cpu * 1000:.0f} ms",
            f"{min(r['wall'] for r in results) * 1000:.0f} ms", f"{max(r['rss_mb'] for r in results):.0f} MB",
            f"{input_bytes / 1e6:.1f} MB" if input_bytes else "",
            f"{results[-1]['size'] / 1e6:.1f} MB" if results[-1]["size"] else "",
            "" if target is None else ("yes" if wall <= target else "NO"))


# --------------------------------------------------------------------------- rendering

def timed(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one child process. GNU time measures the RSS: a child
    forked from this (large) process would report this process's size as its own peak."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr.decode()[:300]}")
        return seconds, int(rss.read().split()[-1]) / 1024


def render_commands(pdf: Path, page: int, scratch: Path) -> dict[str, list[str]]:
    p = str(page)
    pdfium = ("import sys, pypdfium2 as p; d = p.PdfDocument(sys.argv[1]); "
              "d[int(sys.argv[2]) - 1].render(scale=300 / 72).to_pil().save(sys.argv[3])")
    return {
        "poppler": ["pdftoppm", "-r", "300", "-f", p, "-l", p, str(pdf), str(scratch / "pp")],
        "pdfium": [sys.executable, "-c", pdfium, str(pdf), p, str(scratch / "pdfium.ppm")],
        "mupdf": ["mutool", "draw", "-q", "-r", "300", "-o", str(scratch / "mu.ppm"), str(pdf), p],
        "ghostscript": ["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=ppmraw", "-r300",
                        f"-dFirstPage={p}", f"-dLastPage={p}", f"-sOutputFile={scratch / 'gs.ppm'}", str(pdf)],
    }


def raster_page(pdf: Path, out: Path) -> Path:
    """Our page 1 as one full-page PNG, placed once on a page of the same size."""
    import pypdfium2
    from reportlab.pdfgen import canvas

    doc = pypdfium2.PdfDocument(str(pdf))
    width, height = doc[0].get_size()
    png = out.with_suffix(".png")
    doc[0].render(scale=300 / 72).to_pil().convert("RGB").save(png)
    doc.close()
    page = canvas.Canvas(str(out), pagesize=(width, height))
    page.drawImage(str(png), 0, 0, width, height)
    page.save()
    return out


def render_table(deck: Path, work: Path, runs: int) -> list[tuple]:
    pdfs = {}
    for label, args in RENDER_OPTIONS.items():
        pdfs[label] = work / f"{label.split()[0]}.pdf"
        cli = [sys.executable, "-m", "app.cli.scm_cards", "generate", "--front-dir", str(deck / "fronts"),
               "--back-dir", str(deck / "backs"), "--output", str(pdfs[label]), *args]
        subprocess.run(cli, cwd=ROOT, check=True, capture_output=True)
    raster = raster_page(pdfs["plain"], work / "raster.pdf")
    rows = []
    for renderer in ("poppler", "pdfium", "mupdf", "ghostscript"):
        def best(pdf, page, renderer=renderer):
            samples = [timed(render_commands(pdf, page, work)[renderer]) for _ in range(runs)]
            return min(s for s, _ in samples), max(m for _, m in samples)
        base_s, base_mb = best(raster, 1)
        for label, pdf in pdfs.items():
            for page in (1, 2):
                seconds, mb = best(pdf, page)
                ok = seconds <= base_s * 1.05 and mb <= base_mb * 1.05
                rows.append((renderer, f"{label}, page {page}", f"{seconds:.2f} s", f"{mb:.0f} MB",
                             f"{base_s:.2f} s", f"{base_mb:.0f} MB", "yes" if ok else "NO"))
    return rows


# --------------------------------------------------------------------------- cold command line

def scm_cards() -> list[str]:
    """The console script `pip install .` put beside this interpreter (what a venv user
    runs), not a version manager's shim from PATH: pyenv's adds 50 ms to every call."""
    installed = Path(sysconfig.get_path("scripts")) / "scm-cards"
    if installed.exists():
        return [str(installed)]
    on_path = shutil.which("scm-cards")
    return [on_path] if on_path else [sys.executable, "-m", "app.cli.scm_cards"]


def cold_table(deck: Path, work: Path, runs: int) -> list[tuple]:
    command = scm_cards()
    rows = []
    for label, args, target in (("scm-cards --help", ["--help"], HELP_TARGET_S),
                                ("scm-cards generate (rgb-png)",
                                 ["generate", "--front-dir", str(deck / "fronts"), "--back-dir",
                                  str(deck / "backs"), "--output", str(work / "cold.pdf")],
                                 COLD_GENERATE_TARGET_S)):
        samples = []
        for _ in range(runs):
            (work / "cold.pdf").unlink(missing_ok=True)
            samples.append(timed([*command, *args]))
        wall = statistics.median(s for s, _ in samples)
        rows.append((label, f"{wall * 1000:.0f} ms", f"{min(s for s, _ in samples) * 1000:.0f} ms",
                     f"{max(m for _, m in samples):.0f} MB", f"{target * 1000:.0f} ms",
                     "yes" if wall <= target else "NO"))
    return rows


def print_table(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cards", type=int, default=64)
    parser.add_argument("--skip-render", action="store_true", help="leave out the render table")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory(prefix="cards-bench-") as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        roots = build_decks(base, args.cards)
        load = os.getloadavg()[0]
        print(f"decks: {args.cards} fronts + 1 back each, 825x1125 {', '.join(DECKS)} "
              f"(built in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} CPUs, "
              f"load average {load:.1f}; {args.runs} runs each\n")
        print_table(("operation", "work", "wall (median)", "CPU (median)", "wall (best)", "peak RSS", "input",
                     "output", f"<= {GENERATE_TARGET_S * 1000:.0f} ms"), generate_table(roots, args.runs))
        if not args.skip_render:
            print_table(("renderer", "sheet page (300 dpi)", "seconds", "peak RSS", "raster page s",
                         "raster page RSS", "within raster"),
                        render_table(roots["rgb-png"], base, max(3, args.runs)))
        print_table(("command (cold)", "wall (median)", "wall (best)", "peak RSS", "target", "meets"),
                    cold_table(roots["rgb-png"], base, args.runs))


if __name__ == "__main__":
    main()
