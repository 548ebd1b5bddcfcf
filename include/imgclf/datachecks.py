"""Data checks before training (TFX's ExampleValidator step), on what a run already has: the
manifest (file names, sha256) and the stored CNN features. Pure NumPy, no Spark.

- **label conflicts**: the same bytes (sha256) in two classes;
- **near-duplicates** by cosine similarity of the features: across classes (named, file by
  file) and between the run's train and test split (**leakage**: a test image whose near-copy
  is in training inflates the test accuracy);
- **class balance**: the smallest class against the largest;
- **changes** since the previous run's dataset: files added, removed, changed (same path,
  other bytes);
- **drift** of this dataset's features against the champion's training set: the share of the
  images farther from that set than 95 % of the set's own images are from the rest of it.

Each gives metrics (``metrics``: flat numbers for MLflow), findings for the report and, for a
check whose mode (a run parameter) is ``fail``, a reason to stop before training. Sizes are
bounded: similarities are computed in blocks and at most ``MAX_PAIRS`` pairs are kept.
One job in one file, over 400 lines: the checks share one similarity computation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgclf.split import Assignment, holdout_count, stratified_split

if TYPE_CHECKING:
    import numpy as np

MODES = ("warn", "fail", "off")
MAX_PAIRS = 20_000  # near-duplicate pairs kept (the counts stay exact)
MAX_NAMED = 50  # files named per finding in the report
BLOCK = 1024  # rows per block of the similarity matrix (BLOCK x n floats at a time)
DRIFT_QUANTILE = 0.05  # "novel": less similar than 95 % of the reference set is to itself


class DataCheckError(RuntimeError):
    """A data check in mode ``fail`` found a problem: the run stops before training."""


@dataclass(frozen=True)
class Pair:
    a: int  # row indices, a < b
    b: int
    similarity: float


@dataclass
class Outcome:
    """What the checks found: flat metrics, findings by check, warnings and failures."""

    metrics: dict[str, float] = field(default_factory=dict)
    findings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def flag(self, mode: str, message: str) -> None:
        if mode == "fail":
            self.failures.append(message)
        elif mode == "warn":
            self.warnings.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "findings": self.findings,
            "warnings": self.warnings,
            "failures": self.failures,
        }


# --- features ---------------------------------------------------------------------------
def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32); all-zero rows (a face model's "no face") stay zero,
    so they are nobody's near-duplicate."""
    import numpy as np

    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def near_duplicate_pairs(
    unit: np.ndarray, threshold: float, max_pairs: int = MAX_PAIRS
) -> tuple[list[Pair], int]:
    """Pairs ``(a < b)`` whose cosine similarity is at least ``threshold``, most similar first
    (at most ``max_pairs``), and the exact number of such pairs."""
    import numpy as np

    n = len(unit)
    found: list[Pair] = []
    total = 0
    for start in range(0, n, BLOCK):
        block = unit[start : start + BLOCK] @ unit.T  # (rows, n)
        rows, cols = np.nonzero(block >= threshold)
        a = rows + start
        keep = a < cols  # each pair once, never an image with itself
        a, b = a[keep], cols[keep]
        total += len(a)
        sims = block[rows[keep], cols[keep]]
        found.extend(Pair(int(i), int(j), float(s)) for i, j, s in zip(a, b, sims, strict=True))
        if len(found) > 2 * max_pairs:  # bound the memory: keep the most similar
            found = sorted(found, key=lambda p: -p.similarity)[:max_pairs]
    return sorted(found, key=lambda p: (-p.similarity, p.a, p.b))[:max_pairs], total


def groups(n: int, pairs: Sequence[Pair]) -> list[int]:
    """Connected components of the near-duplicate graph: a group id (its smallest row) per row."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in pairs:
        ra, rb = root(p.a), root(p.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(n)]


# --- the split --------------------------------------------------------------------------
def grouped_split(
    keys: Sequence[str],
    labels: Sequence[str],
    group_of: Sequence[int],
    test_fraction: float,
    seed: int,
    folds: int,
) -> list[Assignment]:
    """Like ``split.stratified_split``, but every group of near-duplicates lands on one side.

    Groups are taken in the order of ``sha256(seed + the group's smallest key)``; a group goes
    to test while that keeps every class it holds within the class's test quota (the quota of
    the plain split), else to train. Deterministic: depends on the seed, the bytes and the
    groups only. Big groups can leave a class's test side below its quota, never above.
    """
    from imgclf.split import _rank

    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(group_of):
        members[g].append(i)
    per_class: dict[str, int] = defaultdict(int)
    for label in labels:
        per_class[label] += 1
    quota = {c: holdout_count(n, test_fraction) for c, n in per_class.items()}
    taken: dict[str, int] = defaultdict(int)
    name = {g: min(keys[i] for i in rows) for g, rows in members.items()}
    side: dict[int, str] = {}
    for g in sorted(members, key=lambda g: (_rank(seed, name[g]), name[g])):
        need: dict[str, int] = defaultdict(int)
        for i in members[g]:
            need[labels[i]] += 1
        fits = all(taken[c] + k <= quota[c] for c, k in need.items())
        side[g] = "test" if fits else "train"
        if fits:
            for c, k in need.items():
                taken[c] += k
    out: list[Assignment] = []
    for label in sorted(per_class):
        rows = sorted(
            (i for i in range(len(keys)) if labels[i] == label),
            key=lambda i: (_rank(seed, keys[i]), keys[i]),
        )
        train_rows = [i for i in rows if side[group_of[i]] == "train"]
        if len(train_rows) < folds:
            raise ValueError(
                f"class {label!r} has {len(train_rows)} training images once near-duplicates are "
                f"grouped, fewer than folds={folds}"
            )
        fold = {i: k % folds for k, i in enumerate(train_rows)}
        for i in rows:
            s = side[group_of[i]]
            out.append(Assignment(keys[i], label, s, fold[i] if s == "train" else -1))
    return out


def plain_split(
    keys: Sequence[str], labels: Sequence[str], test_fraction: float, seed: int, folds: int
) -> list[Assignment]:
    """The usual split (``split.stratified_split``), one assignment per distinct key."""
    return stratified_split(sorted(set(zip(keys, labels, strict=True))), test_fraction, seed, folds)


# --- the checks -------------------------------------------------------------------------
def label_conflicts(files: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """The same bytes under two classes: ``[{"sha256", "files": [{"path", "label"}]}]``."""
    by_sha: dict[str, list[dict[str, str]]] = defaultdict(list)
    for f in files:
        by_sha[f["sha256"]].append({"path": f["path"], "label": f["label"]})
    return [
        {"sha256": sha, "files": sorted(fs, key=lambda f: f["path"])}
        for sha, fs in sorted(by_sha.items())
        if len({f["label"] for f in fs}) > 1
    ]


def manifest_changes(
    previous: dict[str, Any] | None, current: dict[str, Any]
) -> dict[str, Any] | None:
    """Files added, removed and changed (same path, other sha256) since ``previous``."""
    if previous is None:
        return None
    old = {f["path"]: f.get("sha256") for f in previous.get("files", [])}
    new = {f["path"]: f.get("sha256") for f in current.get("files", [])}
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(p for p in set(new) & set(old) if new[p] != old[p]),
    }


def balance(labels: Sequence[str]) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    for label in labels:
        counts[label] += 1
    ratio = min(counts.values()) / max(counts.values()) if counts else 1.0
    return {"counts": dict(sorted(counts.items())), "ratio": ratio}


def nearest_similarity(unit: np.ndarray, reference: np.ndarray, *, exclude_self=False):
    """For each row of ``unit``, its highest cosine similarity to a row of ``reference``."""
    import numpy as np

    out = np.empty(len(unit), dtype=np.float32)
    for start in range(0, len(unit), BLOCK):
        block = unit[start : start + BLOCK] @ reference.T
        if exclude_self:
            idx = np.arange(start, start + len(block))
            block[np.arange(len(block)), idx] = -np.inf
        out[start : start + len(block)] = block.max(axis=1)
    return out


def drift(unit: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """This dataset against a reference set (the champion's training images, same featurizer):
    the share of images less similar to the reference than 95 % of the reference is to the rest
    of itself (``novel_share``; about 0.05 when nothing moved), the distance of the two means,
    and both similarity distributions (histograms for the report's figure)."""
    import numpy as np

    ours = nearest_similarity(unit, reference)
    theirs = nearest_similarity(reference, reference, exclude_self=True)
    cut = float(np.quantile(theirs, DRIFT_QUANTILE))
    mean_a, mean_b = unit.mean(axis=0), reference.mean(axis=0)
    denom = float(np.linalg.norm(mean_a) * np.linalg.norm(mean_b)) or 1.0
    bins = np.linspace(min(float(ours.min()), float(theirs.min()), 0.0), 1.0, 41)
    return {
        "novel_share": float((ours < cut).mean()),
        "cut": cut,
        "centroid_distance": 1.0 - float(mean_a @ mean_b) / denom,
        "bins": bins.round(4).tolist(),
        "ours": np.histogram(ours, bins)[0].tolist(),
        "reference": np.histogram(theirs, bins)[0].tolist(),
        "n": len(unit),
        "n_reference": len(reference),
    }


@dataclass
class Settings:
    """The run parameters the checks read (from the run's params, see ``from_params``)."""

    similarity: float = 0.92
    leakage: str = "warn"
    max_leakage: float = 0.0
    group: bool = False
    label_conflicts: str = "warn"
    min_class_ratio: float = 0.5
    max_drift: float = 0.5

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> Settings:
        return cls(
            similarity=p["near_duplicate_similarity"],
            leakage=p["leakage_check"],
            max_leakage=p["max_leakage"],
            group=p["group_near_duplicates"],
            label_conflicts=p["label_conflict_check"],
            min_class_ratio=p["min_class_ratio"],
            max_drift=p["max_drift"],
        )


def _named(pairs: Sequence[Pair], paths: Sequence[str], labels: Sequence[str]) -> list[dict]:
    return [
        {
            "a": paths[p.a], "a_label": labels[p.a], "b": paths[p.b], "b_label": labels[p.b],
            "similarity": round(p.similarity, 4),
        }
        for p in pairs[:MAX_NAMED]
    ]  # fmt: skip


def check(
    rows: Sequence[dict[str, str]],
    features: np.ndarray,
    settings: Settings,
    *,
    test_fraction: float,
    seed: int,
    folds: int,
    manifest: dict[str, Any] | None = None,
    previous_manifest: dict[str, Any] | None = None,
    reference: np.ndarray | None = None,
    reference_note: str = "no champion to compare with",
) -> tuple[list[Assignment], Outcome]:
    """Every check on one dataset (``rows``: path, label, sha256; ``features`` row by row),
    and the run's split (grouped when ``settings.group``). Returns the split and the outcome;
    the caller stops the run when ``outcome.failures``."""
    out = Outcome()
    paths = [r["path"] for r in rows]
    labels = [r["label"] for r in rows]
    keys = [r["sha256"] for r in rows]
    n = len(rows)

    conflicts = label_conflicts(rows)
    out.findings["label_conflicts"] = conflicts[:MAX_NAMED]
    out.metrics["label_conflicts"] = len(conflicts)
    if conflicts:
        names = "; ".join(" = ".join(f["path"] for f in c["files"]) for c in conflicts[:5])
        out.flag(settings.label_conflicts,
                 f"{len(conflicts)} images are in two classes (same bytes): {names}")  # fmt: skip

    unit = unit_rows(features)
    pairs, total = near_duplicate_pairs(unit, settings.similarity)
    exact = {(p.a, p.b) for p in pairs if keys[p.a] == keys[p.b]}
    near = [p for p in pairs if (p.a, p.b) not in exact]
    cross = [p for p in near if labels[p.a] != labels[p.b]]
    out.metrics["near_duplicate_pairs"] = total - len(exact)
    out.metrics["cross_class_near_duplicates"] = len(cross)
    out.findings["near_duplicates"] = {
        "threshold": settings.similarity,
        "pairs": total - len(exact),
        "cross_class": _named(cross, paths, labels),
    }
    if cross:
        names = "; ".join(f"{paths[p.a]} ~ {paths[p.b]} ({p.similarity:.3f})" for p in cross[:5])
        out.flag(settings.label_conflicts,
                 f"{len(cross)} near-duplicate pairs across classes: {names}")  # fmt: skip

    if settings.group:
        split = grouped_split(keys, labels, groups(n, pairs), test_fraction, seed, folds)
    else:
        split = plain_split(keys, labels, test_fraction, seed, folds)
    side = {(a.key, a.label): a.split for a in split}
    sides = [side[(k, lab)] for k, lab in zip(keys, labels, strict=True)]
    leaked: dict[int, Pair] = {}
    for p in pairs:  # most similar first: each test image's closest copy in training
        if sides[p.a] != sides[p.b]:
            t = p.a if sides[p.a] == "test" else p.b
            leaked.setdefault(t, p)
    n_test = sides.count("test")
    share = len(leaked) / n_test if n_test else 0.0
    out.metrics["leaked_test_images"] = len(leaked)
    out.metrics["leakage_share"] = share
    out.findings["leakage"] = {
        "test_images": n_test,
        "leaked": len(leaked),
        "share": share,
        "grouped": settings.group,
        "max_leakage": settings.max_leakage,
        "examples": [
            {"test": paths[t], "train": paths[p.b if p.a == t else p.a],
             "similarity": round(p.similarity, 4)}
            for t, p in sorted(leaked.items(), key=lambda kv: -kv[1].similarity)[:MAX_NAMED]
        ],
    }  # fmt: skip
    if share > settings.max_leakage:
        out.flag(
            settings.leakage,
            f"leakage: {len(leaked)} of {n_test} test images ({share:.1%}) have a near-copy "
            f"(cosine >= {settings.similarity}) in training, more than max_leakage="
            f"{settings.max_leakage}; group_near_duplicates=true keeps them on one side",
        )

    bal = balance(labels)
    out.metrics["class_ratio"] = bal["ratio"]
    out.findings["balance"] = {**bal, "min_class_ratio": settings.min_class_ratio}
    if bal["ratio"] < settings.min_class_ratio:
        out.flag(
            "warn",
            f"class balance: smallest/largest class = {bal['ratio']:.2f} "
            f"< min_class_ratio={settings.min_class_ratio} ({bal['counts']})",
        )

    changes = manifest_changes(previous_manifest, manifest) if manifest is not None else None
    out.findings["changes"] = changes
    if changes is not None:
        for kind in ("added", "removed", "changed"):
            out.metrics[f"images_{kind}"] = len(changes[kind])
            changes[kind] = changes[kind][:MAX_NAMED]

    if reference is not None and len(reference) > 1:
        d = drift(unit, unit_rows(reference))
        out.findings["drift"] = d
        out.metrics["drift_novel_share"] = d["novel_share"]
        out.metrics["drift_centroid_distance"] = d["centroid_distance"]
        if d["novel_share"] > settings.max_drift:
            out.flag(
                "warn",
                f"drift: {d['novel_share']:.1%} of the images are farther from the champion's "
                f"training set than 95 % of it is from itself (max_drift={settings.max_drift})",
            )
    else:
        out.findings["drift"] = {"note": reference_note}
    return split, out
