"""Cover variant throughput and memory: media_pipeline.resize beside the naive way.

    .venv/bin/python bench/images.py            # both cases
    .venv/bin/python bench/images.py --rounds 2 # more images per measurement

Each (case, method) runs in its own process, so its peak RSS is its own (VmHWM from
/proc, Linux; ru_maxrss would carry the parent's peak across exec). The table shows that
peak and the part above the process's baseline after imports (interpreter and Pillow).
Throughput is images per CPU-second of that process, i.e. per core, so a busy shared
machine lowers the wall-clock rate but hardly this figure.
Sources are synthetic photos (media_pipeline.samples) saved as quality-90 JPEGs.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from media_pipeline.specs import VariantSpec

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

CASES = {
    # name: (width, height, spec names, images per round for ours, for naive)
    "4000x3000 -> 200px JPEG": (4000, 3000, ["w200-jpeg"], 40, 8),
    "8000x6000 -> all 4 variants": (
        8000,
        6000,
        ["w200-jpeg", "w200-webp", "w800-jpeg", "w800-webp"],
        8,
        2,
    ),
}
MAX_PIXELS = 60_000_000


def naive(path: str, specs: list[VariantSpec]) -> None:
    """Open, resize the full decoded image, save: what most code does."""
    from PIL import Image

    with Image.open(path) as image:
        for spec in specs:
            height = round(image.height * spec.width / image.width)
            image.resize((spec.width, height)).save(io.BytesIO(), spec.format.value)


def ours(path: str, specs: list[VariantSpec]) -> None:
    from media_pipeline.resize import render_variants

    with open(path, "rb") as source:
        render_variants(source, specs, max_pixels=MAX_PIXELS)


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(method: str, path: str, spec_names: list[str], count: int) -> None:
    from media_pipeline.specs import COVER_SPECS

    specs = [spec for spec in COVER_SPECS if spec.name in spec_names]
    work = ours if method == "ours" else naive
    baseline = peak_rss_kib()
    work(path, specs)  # warm-up: first-call imports and allocations
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        work(path, specs)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = peak_rss_kib()
    print(json.dumps({"cpu": cpu, "wall": wall, "peak_kib": peak, "baseline_kib": baseline}))


def measure(method: str, path: Path, spec_names: list[str], count: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(path), ",".join(spec_names), str(count)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, path, names, count = args.child
        child(method, path, names.split(","), int(count))
        return

    from media_pipeline.samples import jpeg_bytes, photo

    print(
        f"{'case':30} {'method':7} {'images':>6} {'img/s/core':>10} {'wall img/s':>10} "
        f"{'peak MiB':>9} {'+base MiB':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for case, (width, height, names, ours_count, naive_count) in CASES.items():
            path = Path(tmp) / f"{width}x{height}.jpg"
            path.write_bytes(jpeg_bytes(photo(width, height, seed=5)))
            for method, count in (("naive", naive_count), ("ours", ours_count)):
                count *= args.rounds
                r = measure(method, path, names, count)
                print(
                    f"{case:30} {method:7} {count:6d} {count / r['cpu']:10.1f} "
                    f"{count / r['wall']:10.1f} {r['peak_kib'] / 1024:9.1f} "
                    f"{(r['peak_kib'] - r['baseline_kib']) / 1024:9.1f}"
                )
            print(f"{'':30} source JPEG {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
