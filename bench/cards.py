"""Benchmark of the card engine: `python bench/cards.py [--runs N] [--cards N]`.

Builds a synthetic deck (64 distinct 825 x 1125 PNG fronts of noisy gradients and
shapes, about 1 MB each like real card art, plus one back), then measures
generate_sheets (letter / standard) and offset_pdf on its output. Each measurement
runs in a fresh Python process so its peak RSS is its own; wall time is the call
itself (imports excluded: a worker has them loaded), median of the runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from anywhere: the project root must be importable.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
TARGETS = {"generate": (0.5, 150), "offset": (0.2, None)}


def make_art(args) -> int:
    import numpy as np
    from PIL import Image, ImageDraw

    path, seed, width, height = args
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.dstack([x * 255 // width, y * 255 // height,
                      np.full((height, width), seed * 37 % 256)]).astype(np.int16)
    noisy = (base + rng.integers(-6, 7, base.shape)).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(noisy, "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(0, [width - 100, height - 100]))
        size = [int(v) for v in rng.integers(40, 300, 2)]
        draw.ellipse([x0, y0, x0 + size[0], y0 + size[1]],
                     fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw.rectangle([0, 0, width - 1, height - 1], outline=(0, 0, 0), width=20)
    im.save(path, "PNG")
    return Path(path).stat().st_size


def build_deck(folder: Path, cards: int) -> int:
    fronts, backs = folder / "fronts", folder / "backs"
    fronts.mkdir()
    backs.mkdir()
    jobs = [(fronts / f"card{i:03d}.png", i, 825, 1125) for i in range(1, cards + 1)]
    jobs.append((backs / "back.png", 999, 825, 1125))
    with ProcessPoolExecutor() as pool:
        return sum(pool.map(make_art, jobs))


def child(kind: str, folder: str) -> None:
    """Runs in the measured subprocess."""
    from app.cards import generate_sheets, offset_pdf

    deck = Path(folder)
    # The previous run's output goes first: replacing it would time the file system
    # freeing 70 MB, which is not part of the work.
    for name in ("sheets.pdf", "offset.pdf"):
        if (deck / name).exists() and (kind == "generate" or name == "offset.pdf"):
            (deck / name).unlink()
    start = time.perf_counter()
    if kind == "generate":
        output = deck / "sheets.pdf"
        result = generate_sheets(front_dir=deck / "fronts", back_dir=deck / "backs", output=output)
        work = f"{result.cards} cards, {result.pages} pages"
    else:
        output = deck / "offset.pdf"
        result = offset_pdf(input=deck / "sheets.pdf", output=output, x=12, y=-7)
        work = f"{result.pages} pages, {len(result.shifted)} moved"
    wall = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "rss_mb": rss_mb, "size": output.stat().st_size, "work": work}))


def measure(kind: str, folder: Path) -> dict:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(folder)],
                         check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cards", type=int, default=64)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory(prefix="cards-bench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        input_bytes = build_deck(folder, args.cards)
        print(f"deck: {args.cards} fronts + 1 back, 825x1125 PNG, {input_bytes / 1e6:.1f} MB "
              f"(built in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} CPUs; {args.runs} runs each")
        rows = []
        for kind in ("generate", "offset"):
            runs = [measure(kind, folder) for _ in range(args.runs)]
            wall = statistics.median(r["wall"] for r in runs)
            rss = max(r["rss_mb"] for r in runs)
            size = runs[-1]["size"]
            wall_target, rss_target = TARGETS[kind]
            ok = wall < wall_target and (rss_target is None or rss < rss_target)
            if kind == "generate":
                ok = ok and size <= input_bytes * 1.10
            process = statistics.median(r["process"] for r in runs)
            rows.append((kind, runs[-1]["work"], f"{wall * 1000:.0f} ms",
                         f"{min(r['wall'] for r in runs) * 1000:.0f} ms",
                         f"{process * 1000:.0f} ms", f"{rss:.0f} MB",
                         f"{size / 1e6:.1f} MB", f"{size / input_bytes * 100:.0f} %",
                         "yes" if ok else "NO"))
        header = ("operation", "work", "wall (median)", "wall (best)", "whole process", "peak RSS",
                  "output", "output/input", "meets target")
        widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        print("targets: generate < 500 ms and < 150 MB, output <= input + 10 %; offset < 200 ms "
              "(wall = the call; whole process adds interpreter start and imports)")


if __name__ == "__main__":
    main()
