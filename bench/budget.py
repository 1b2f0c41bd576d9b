"""Decode memory, measured against the job budget's estimate: `python bench/budget.py [--side N]`.

For a side x side PNG in each mode (RGBA, RGB, L), prepares it the way a sheets job does
(app.cards.images.prepare_image, downsampled to a poker slot) in a fresh process and
prints the peak RSS over that process's baseline next to app.cards.budget's estimate.
The estimate must stay above the measurement: it is what upload and the worker refuse by.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

MEASURE = """
import json, sys, threading, time
from pathlib import Path
import psutil
from app.cards.images import Demand, Spool, prepare_image
proc, peak = psutil.Process(), [0]
def watch():
    while True:
        peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.005)
threading.Thread(target=watch, daemon=True).start()
time.sleep(0.05)
base = proc.memory_info().rss
started = time.monotonic()
spool = Spool()
prepare_image(Path(sys.argv[1]), name="x", demands=[Demand((750, 1050))],
              max_pixels=10**9, quality=100, spool=spool)
spool.close()
print(json.dumps({"peak": peak[0] - base, "seconds": time.monotonic() - started}))
"""


def _image(path: Path, side: int, mode: str) -> None:
    rng = np.random.default_rng(7)
    bands = {"RGBA": 4, "RGB": 3, "L": 1}[mode]
    tile = rng.integers(0, 256, (64, max(1, side // 100), bands), dtype=np.uint8)
    rows = np.concatenate([tile] * 101, axis=1)[:, :side]
    pixels = np.concatenate([rows] * (side // 64 + 1), axis=0)[:side]
    Image.fromarray(np.ascontiguousarray(pixels.squeeze()), mode).save(path, compress_level=1)


def main() -> None:
    from app.cards.budget import MB, image_cost

    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=5000)
    side = parser.parse_args().side
    print(f"{'mode':<6}{'pixels':>12}{'measured MB':>14}{'estimate MB':>14}{'seconds':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("RGBA", "RGB", "L"):
            path = Path(folder) / f"{mode}.png"
            _image(path, side, mode)
            run = subprocess.run([sys.executable, "-c", MEASURE, str(path)], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            measured = json.loads(run.stdout)
            estimate = image_cost(path, path.name).peak_bytes
            print(f"{mode:<6}{side * side:>12,}{measured['peak'] / MB:>14.0f}"
                  f"{estimate / MB:>14.0f}{measured['seconds']:>10.1f}")


if __name__ == "__main__":
    main()
