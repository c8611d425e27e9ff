"""Cover variant throughput and memory per source format: media_pipeline.resize beside the
naive way, for 12 MP and 48 MP photos.

    .venv/bin/python bench/images.py             # every format, both sizes (a few minutes)
    .venv/bin/python bench/images.py --rounds 2  # more images per measurement
    .venv/bin/python bench/images.py --formats JPEG,WEBP --sizes 48

Each (source, method) runs in its own process, so its peak RSS is its own (VmHWM from
/proc, Linux; ru_maxrss would carry the parent's peak across exec). "+base" is that peak
above the process's baseline after imports (interpreter, Pillow, pillow-heif, libvips):
the figure the target bounds, since a worker child has those loaded before its first job.
Throughput is images per CPU-second of that process, i.e. per core (libvips and the
AV1/HEVC decoders use threads; their CPU time counts), so a busy shared machine lowers the
wall-clock rate but hardly this figure.

Every run makes all four cover variants (JPEG and WebP, 200 and 800 px). The last rows
add an AVIF variant (off by default, see media_pipeline.specs) to the 12 MP JPEG run.
Sources are synthetic photos (media_pipeline.samples): quality-90 JPEG and MPO (a second
picture appended), PNG, quality-85 WebP, GIF, quality-70 AVIF, and quality-70 HEIC written
by pillow-heif; a 48 MP HEIC is a grid of 512 px tiles, as phones write it (libde265 refuses
a single HEVC picture that large: it is beyond every HEVC level).
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
    from PIL import Image

    from media_pipeline.specs import VariantSpec

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

TARGET_MIB_ABOVE_BASE = 150
SIZES = {12: (4000, 3000), 48: (8000, 6000)}
FORMATS = ["JPEG", "MPO", "PNG", "WEBP", "GIF", "HEIF", "AVIF"]
EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "mpo.jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "HEIF": "heic",
    "AVIF": "avif",
}
# Images per measurement (ours, naive) by megapixels: enough CPU time to be measurable.
COUNTS = {12: (4, 2), 48: (2, 1)}
COVER = ["w200-jpeg", "w200-webp", "w800-jpeg", "w800-webp"]
AVIF_SPEC = "w800-avif"
MAX_PIXELS = 60_000_000


def specs_named(names: list[str]) -> list[VariantSpec]:
    from media_pipeline.specs import COVER_SPECS, OutputFormat, VariantSpec

    extra = {AVIF_SPEC: VariantSpec(AVIF_SPEC, 800, OutputFormat.AVIF, quality=60)}
    known = {spec.name: spec for spec in COVER_SPECS} | extra
    return [known[name] for name in names]


def naive(path: str, specs: list[VariantSpec]) -> None:
    """Open, resize the full decoded image, save: what most code does."""
    from PIL import Image

    with Image.open(path) as opened:
        # JPEG cannot hold a palette (GIF) or alpha.
        image = opened if opened.mode == "RGB" else opened.convert("RGB")
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
    import pillow_heif
    import pyvips  # noqa: F401  (loaded before the baseline, as in a worker)

    import media_pipeline.resize  # noqa: F401

    pillow_heif.register_heif_opener(thumbnails=False)
    specs = specs_named(spec_names)
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


def write_source(fmt: str, picture: Image.Image, path: Path) -> None:
    import pillow_heif
    from PIL import Image

    if fmt == "JPEG":
        picture.save(path, "JPEG", quality=90)
    elif fmt == "MPO":
        second = picture.resize((picture.width // 4, picture.height // 4))
        picture.save(path, "MPO", quality=90, save_all=True, append_images=[second])
    elif fmt == "PNG":
        picture.save(path, "PNG", compress_level=6)
    elif fmt == "WEBP":
        picture.save(path, "WEBP", quality=85)
    elif fmt == "GIF":
        picture.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, "GIF")
    elif fmt == "AVIF":
        picture.save(path, "AVIF", quality=70, speed=8)
    elif fmt == "HEIF":
        tile = 512 if picture.width * picture.height > 35_000_000 else 0
        heif = pillow_heif.from_pillow(picture)
        heif.save(path, quality=70, tile_size=tile, enc_params={"preset": "ultrafast"})
    else:
        raise ValueError(fmt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--sizes", default=",".join(str(mp) for mp in SIZES))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, path, names, count = args.child
        child(method, path, names.split(","), int(count))
        return

    from media_pipeline.samples import photo

    formats = args.formats.upper().split(",")
    sizes = [int(mp) for mp in args.sizes.split(",")]
    print(
        f"{'source':18} {'variants':9} {'method':6} {'images':>6} {'img/s/core':>10} "
        f"{'wall img/s':>10} {'peak MiB':>9} {'+base MiB':>9}  target (+base, 48 MP)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for megapixels in sizes:
            width, height = SIZES[megapixels]
            picture = photo(width, height, seed=5)
            runs = [(fmt, COVER) for fmt in formats]
            if megapixels == 12 and "JPEG" in formats:
                runs.append(("JPEG", [*COVER, AVIF_SPEC]))
            for fmt, names in runs:
                path = Path(tmp) / f"{width}x{height}.{EXTENSIONS[fmt]}"
                if not path.exists():
                    write_source(fmt, picture, path)
                label = f"{megapixels} MP {fmt} {path.stat().st_size / 2**20:.0f} MiB"
                variants = "4" if names == COVER else "4 + AVIF"
                for method, count in zip(
                    ("naive", "ours"), reversed(COUNTS[megapixels]), strict=True
                ):
                    count *= args.rounds
                    r = measure(method, path, names, count)
                    above = (r["peak_kib"] - r["baseline_kib"]) / 1024
                    verdict = ""
                    if method == "ours" and megapixels == 48:
                        verdict = f"<= {TARGET_MIB_ABOVE_BASE}: " + (
                            "met" if above <= TARGET_MIB_ABOVE_BASE else "MISSED"
                        )
                    print(
                        f"{label:18} {variants:9} {method:6} {count:6d} "
                        f"{count / r['cpu']:10.2f} {count / r['wall']:10.2f} "
                        f"{r['peak_kib'] / 1024:9.1f} {above:9.1f}  {verdict}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
