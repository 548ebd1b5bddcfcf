"""A dataset of any size from the real football images: deterministic augmentation with Pillow.

``make_dataset(source, dest, n)`` writes ``dest/<class>/<name>`` for N images split evenly over
the classes of ``source`` (its sub-folders with images; default the reference dataset in
``../shared/datasets/football``). In each class the first images are the originals, byte for
byte, under their own names; the rest are augmented copies of them, cycled: a random crop (75 to
100 % of each side), a horizontal flip half of the time, brightness and contrast x0.75..1.25,
re-encoded as JPEG at quality 70..95 with a comment naming the image, so no two files have the
same bytes. Every choice comes from a ``random.Random`` seeded by ``(seed, class, index)``: the
same call writes byte-identical files, in any number of worker processes.

``noisy_fraction`` moves that fraction of the images (a seeded choice) into another class's
folder (the next one, in sorted order): label noise, so that a benchmark's baseline stays below
a target accuracy of 1.0 and the tuning branch runs.

``python -m benchmarks.augment --dest DIR --images N [--source DIR] [--seed S]
[--noisy-fraction F]`` prints the returned dict as one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imgclf.github import IMAGE_EXTENSIONS
from imgclf.settings import PROJECT_ROOT

DEFAULT_SOURCE = PROJECT_ROOT.parent / "shared" / "datasets" / "football"
CHUNK = 64  # images per task sent to a worker process


@dataclass(frozen=True)
class Job:
    source: str  # the original image
    target: str  # the file to write
    label: str  # the class the image was made from (not necessarily its folder's)
    index: int  # its index in that class
    seed: int


def source_images(source: Path) -> dict[str, list[Path]]:
    """``{class: sorted image files}`` for every sub-folder of ``source`` holding images."""
    classes: dict[str, list[Path]] = {}
    for folder in sorted(p for p in Path(source).iterdir() if p.is_dir()):
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if files:
            classes[folder.name] = files
    return classes


def _split(n: int, labels: list[str]) -> dict[str, int]:
    """``n`` over ``labels`` as evenly as possible, the first classes taking the remainder."""
    base, extra = divmod(n, len(labels))
    return {label: base + (i < extra) for i, label in enumerate(labels)}


@functools.lru_cache(maxsize=256)
def _decoded(path: str):
    """The source image as RGB pixels, decoded once per worker process."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def augment(job: Job) -> bytes:
    """The JPEG bytes of one augmented image: every choice from ``job``'s own seeded RNG."""
    from PIL import Image, ImageEnhance

    rng = random.Random(f"imgclf-augment:{job.seed}:{job.label}:{job.index}")
    img = _decoded(job.source)
    width, height = img.size
    w = max(1, round(width * rng.uniform(0.75, 1.0)))
    h = max(1, round(height * rng.uniform(0.75, 1.0)))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    out = img.crop((left, top, left + w, top + h))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.75, 1.25))
    buf = io.BytesIO()
    comment = f"imgclf augment seed={job.seed} {job.label}#{job.index}"
    out.save(buf, format="JPEG", quality=rng.randint(70, 95), comment=comment.encode())
    return buf.getvalue()


def _run(jobs: list[Job]) -> int:
    """Write ``jobs`` (augmented, or copied when the index is an original's); bytes written."""
    total = 0
    for job in jobs:
        # an original (index -1) is copied unchanged
        data = Path(job.source).read_bytes() if job.index < 0 else augment(job)
        with open(job.target, "xb") as fh:
            fh.write(data)
        total += len(data)
    return total


def _plan(
    classes: dict[str, list[Path]], dest: Path, n: int, seed: int, noisy_fraction: float
) -> tuple[list[Job], dict[str, int], int]:
    """Every image's job; ``{folder: images}``; how many are in another class's folder."""
    labels = sorted(classes)
    per_class = _split(n, labels)
    made: list[tuple[str, int, Path, str, bool]] = []  # label, index, source, name, original
    for label in labels:
        files = classes[label]
        for i in range(per_class[label]):
            src = files[i % len(files)]
            if i < len(files):
                made.append((label, i, src, src.name, True))
            else:
                made.append((label, i, src, f"{src.stem}_aug{i:05d}.jpg", False))
    noisy = round(len(made) * noisy_fraction) if len(labels) > 1 else 0
    moved = set(random.Random(f"imgclf-augment-noise:{seed}").sample(range(len(made)), noisy))
    taken: dict[str, set[str]] = {label: set() for label in labels}
    jobs: list[Job] = []
    for k, (label, i, src, name, original) in enumerate(made):
        folder = labels[(labels.index(label) + 1) % len(labels)] if k in moved else label
        stem, ext = os.path.splitext(name)
        unique, extra = name, 1
        while unique.casefold() in taken[folder]:  # e.g. an original with another class's name
            unique, extra = f"{stem}_{extra}{ext}", extra + 1
        taken[folder].add(unique.casefold())
        target = dest / folder / unique
        jobs.append(Job(str(src), str(target), label, -1 if original else i, seed))
    counts = {label: len(names) for label, names in taken.items()}
    return jobs, counts, noisy


def make_dataset(
    source: Path | None,
    dest: Path,
    n: int,
    *,
    seed: int = 0,
    noisy_fraction: float = 0.0,
    workers: int | None = None,
) -> dict:
    """Write an ``n``-image dataset ``dest/<class>/<name>`` made from ``source`` (see above)."""
    started = time.perf_counter()
    if n < 0:
        raise ValueError(f"n={n} is negative")
    if not 0.0 <= noisy_fraction <= 1.0:
        raise ValueError(f"noisy_fraction={noisy_fraction} is not within 0..1")
    source = Path(source) if source is not None else DEFAULT_SOURCE
    classes = source_images(source)
    if not classes:
        raise ValueError(f"{source} has no sub-folder with images")
    dest = Path(dest)
    jobs, counts, noisy = _plan(classes, dest, n, seed, noisy_fraction)
    for label in counts:
        (dest / label).mkdir(parents=True, exist_ok=True)
    chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    if workers == 1 or len(jobs) <= CHUNK:
        written = sum(_run(chunk) for chunk in chunks)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            written = sum(pool.map(_run, chunks))
    originals = sum(job.index < 0 for job in jobs)
    return {
        "images": len(jobs),
        "dest": str(dest),
        "source": str(source),
        "seed": seed,
        "classes": counts,
        "originals": originals,
        "augmented": len(jobs) - originals,
        "noisy": noisy,
        "noisy_fraction": noisy_fraction,
        "bytes": written,
        "seconds": round(time.perf_counter() - started, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.augment", description=__doc__)
    p.add_argument("--dest", type=Path, required=True, help="folder to write <class>/<name> in")
    p.add_argument("--images", type=int, required=True, help="number of images N")
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noisy-fraction", type=float, default=0.0)
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    args = p.parse_args(argv)
    try:
        out = make_dataset(
            args.source,
            args.dest,
            args.images,
            seed=args.seed,
            noisy_fraction=args.noisy_fraction,
            workers=args.workers or None,
        )
    except (ValueError, OSError) as exc:
        print(f"benchmarks.augment: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
