"""The ``imgclf`` command: each step of the pipeline outside Airflow, with the same code."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from imgclf import spark_conf
from imgclf.settings import (
    DEFAULT_CLASSES,
    DEFAULT_REF,
    DEFAULT_REPO,
    PROJECT_ROOT,
    Settings,
    spark_tasks_dir,
)


def _classes(values: list[str] | None) -> dict[str, str]:
    """``--class NAME=PATH`` options -> ``{name: folder}``, checked like the DAG's ``classes``."""
    from imgclf.params import check_classes

    if not values:
        return dict(DEFAULT_CLASSES)
    out = {}
    for item in values:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"imgclf: --class {item!r} must be NAME=PATH")
        if name in out:
            raise SystemExit(f"imgclf: --class {item!r}: class {name!r} is given twice")
        try:
            check_classes({name: path})
        except ValueError as exc:
            raise SystemExit(f"imgclf: --class {item!r}: {exc}") from None
        out[name] = path
    try:
        return check_classes(out)
    except ValueError as exc:
        raise SystemExit(f"imgclf: --class: {exc}") from None


def cmd_download(args: argparse.Namespace) -> int:
    from imgclf.connections import endpoint_from_env
    from imgclf.dataset import sync_dataset
    from imgclf.github import DownloadError, GitHubClient

    classes = _classes(args.classes)
    settings = Settings.from_env()
    try:
        api_url, token = endpoint_from_env(dict(os.environ))
        client = GitHubClient.from_settings(settings, args.api_url or api_url, token)
        result = sync_dataset(
            client, args.repo, args.ref, classes, Path(args.dest),
            min_images_per_class=args.min_images_per_class, workers=args.workers,
            max_image_pixels=settings.max_image_pixels, lock_wait=settings.sync_lock_wait,
        )  # fmt: skip
    except DownloadError as exc:
        print(f"imgclf download: {exc}", file=sys.stderr)
        if exc.result is not None:
            print(exc.result.summary())
        else:
            print("downloaded=0 unchanged=0 failed=all (nothing could be listed)")
        return 1
    print(
        f"{sum(result.counts.values())} images in {args.dest} ({result.seconds:.2f} s); "
        f"fingerprint {result.fingerprint}"
    )
    print(result.summary())
    return 0


def cmd_github_stub(args: argparse.Namespace) -> int:
    from imgclf.testing.github_stub import GitHubStub

    stub = GitHubStub(
        args.root, repo=args.repo, ref=args.ref, prefix=args.prefix, port=args.port,
        host=args.host, public_url=args.public_url,
    )  # fmt: skip
    for spec in args.fault or []:
        pattern, _, faults = spec.partition("=")
        stub.add_faults(pattern, faults.split(","))
    print(f"GitHub stand-in for {args.repo}@{args.ref}:{args.prefix} at {stub.url}", flush=True)
    if args.url_file:
        Path(args.url_file).write_text(stub.url)
    with contextlib.suppress(KeyboardInterrupt):
        stub.serve_forever()
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    runs = sorted(
        (p for p in settings.runs_dir.glob("*/metrics.json") if p.stat().st_mtime >= args.since),
        key=lambda p: p.stat().st_mtime,
    )
    if not runs:
        failures = sorted(
            (
                p
                for p in settings.runs_dir.glob("*/failure.json")
                if p.stat().st_mtime >= args.since
            ),
            key=lambda p: p.stat().st_mtime,
        )
        if failures:
            failure = json.loads(failures[-1].read_text())
            print(f"run {failure['run_id']} failed at {failure['task']}: {failure['error']}")
        else:
            print(f"no run metrics under {settings.runs_dir} since {time.ctime(args.since)}")
        return 1
    from imgclf.tracking import registry_outcome

    path = runs[-1]
    m = json.loads(path.read_text())
    lines = [f"run {m['run_id']}: {m['gate']['reason']}"]
    for stage in ("baseline", "tuned"):
        s = m.get(stage)
        if s:
            lines.append(f"  {stage:8s} accuracy {s['accuracy']:.4f} params {s['params']}")
        else:
            lines.append(f"  {stage:8s} skipped")
    lines.append(
        f"  featurized_images {m['featurized_images']}, promoted "
        f"{m.get('promoted_version') or 'nothing'}"
    )
    if m.get("champion_comparison"):
        lines.append(f"  {m['champion_comparison']['decision']}")
    lines.append(f"  registry: {registry_outcome(m)}")  # a version, the alias, or nothing
    lines.append(f"accuracy {m['accuracy']:.4f}")
    lines.append(f"metrics {path}")
    if (path.parent / "report.html").is_file():
        lines.append(f"report {path.parent / 'report.html'}")
    if (path.parent / "mlflow.json").is_file():  # `make mlflow` serves it
        lines.append(f"mlflow {json.loads((path.parent / 'mlflow.json').read_text())['url']}")
    print("\n".join(lines))
    return 0


def cmd_package_code(args: argparse.Namespace) -> int:
    """Zip the project's Python packages for spark-submit --py-files (IMGCLF_PY_FILES)."""
    import zipfile

    roots = {"imgclf": PROJECT_ROOT / "include" / "imgclf",
             "spark_tasks": spark_tasks_dir()}  # fmt: skip
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for package, folder in roots.items():
            for path in sorted(folder.rglob("*.py")):
                zf.write(path, f"{package}/{path.relative_to(folder)}")
    os.replace(tmp, out)
    print(out)
    return 0


def test_set(tags: dict[str, str]) -> str:
    """Which test images a version's figures come from (older versions did not say)."""
    seed = tags.get("test_split_seed")
    if not seed:
        return "test set not recorded"
    fingerprint = tags.get("dataset_fingerprint") or "?"
    return (
        f"test split seed {seed}, fraction {tags.get('test_fraction', '?')}, "
        f"{tags.get('n_test', '?')} images of dataset {fingerprint[:12]}"
    )


def version_line(v: dict, champion: str | None) -> str:
    """One version in ``imgclf models list``: its accuracy and the test set it was measured
    on; for a challenger, the champion's accuracy on that same test set."""
    tags = v["tags"]
    line = (
        f"{'*' if v['version'] == champion else ' '} {v['version']:>4}  accuracy "
        f"{tags.get('accuracy', '?')} ({test_set(tags)})  {tags.get('model', '?')}  "
        f"run {tags.get('airflow_run_id', '?')}"
    )
    if tags.get("challenged_version"):
        line += (
            f"\n        champion then, version {tags['challenged_version']}: accuracy "
            f"{tags.get('challenged_accuracy', '?')} on the same test set"
        )
    return line


def readable_version(v: dict) -> dict:
    """A version for people: timestamps as UTC ISO 8601, not epoch numbers."""
    from imgclf.tracking import readable_time

    tags = dict(v["tags"])
    if "champion_since" in tags:
        tags["champion_since"] = readable_time(tags["champion_since"])
    return {**v, "created": readable_time(v.get("created")), "tags": tags}


def cmd_models(args: argparse.Namespace) -> int:
    """The MLflow Model Registry: list, show, promote (move ``champion``), rollback."""
    from imgclf import registry

    settings = Settings.from_env()
    try:
        if args.action == "promote":
            if not args.version:
                raise KeyError("imgclf models promote needs a VERSION")
            done = registry.promote(settings, args.version, "promoted by hand (imgclf models)")
            print(f"champion: {done}")
        elif args.action == "rollback":
            print(f"champion: {registry.rollback(settings)}")
        elif args.action == "show":
            print(json.dumps(readable_version(registry.version(settings, args.version or "")),
                             indent=2))  # fmt: skip
        else:
            found = registry.versions(settings)
            champion = (registry.champion(settings) or {}).get("version")
            for v in found:
                print(version_line(v, champion))
            if not found:
                where = settings.mlflow_registry_uri
                print(f"no versions of {settings.registered_model!r} in {where}")
    except KeyError as exc:
        print(f"imgclf models: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


def _spark_env(master: str) -> dict[str, str]:
    env = os.environ.copy()
    if spark_conf.is_local_master(master):  # the UI, RPC and block manager on loopback
        env.update(spark_conf.loopback_env())
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _spark_submit(script: str, master: str) -> list[str]:
    settings = Settings.from_env()
    conf = {
        **spark_conf.job_conf(settings, master),
        "spark.ui.enabled": "false",
    }
    return [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master", master,
        *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")],
        str(spark_tasks_dir() / script),
    ]  # fmt: skip


def _images_problem(value: str | None) -> str | None:
    """Why ``--images`` is not a folder of images to read, checked before Spark starts."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        return f"--images {str(value)!r} does not exist"
    if not path.is_dir():
        return f"--images {str(value)!r} is not a folder"
    return None


def cmd_predict(args: argparse.Namespace) -> int:
    """Score a folder with the champion (or --version) through spark-submit."""
    from imgclf.dag_tasks import resolve_version

    if problem := _images_problem(args.images):
        print(f"imgclf predict: {problem}", file=sys.stderr)
        return 2

    try:
        found = resolve_version(Settings.from_env(), args.version)
    except KeyError as exc:
        print(f"imgclf predict: {exc.args[0]}", file=sys.stderr)
        return 2
    cmd = [
        *_spark_submit("predict.py", args.master),
        "--images", str(Path(args.images).resolve()),
        "--model-uri", found["model_uri"],
        "--version", found["version"],
        "--out", str(Path(args.out).resolve()),
    ]  # fmt: skip
    return subprocess.run(cmd, env=_spark_env(args.master), check=False).returncode


def cmd_job(args: argparse.Namespace) -> int:
    """``featurize`` / ``evaluate``: their job's own options, forwarded to it through
    spark-submit as the DAG runs its jobs (declared once, in the job's ``build_parser``)."""
    if problem := _images_problem(str(args.images) if args.images is not None else None):
        print(f"imgclf {args.command}: {problem}", file=sys.stderr)
        return 2
    forwarded, skip = [], False
    for arg in args.argv:
        if skip:
            skip = False
        elif arg == "--master":
            skip = True
        elif not arg.startswith("--master="):
            forwarded.append(arg)
    cmd = [*_spark_submit(args.script, args.master), *forwarded]
    return subprocess.run(cmd, env=_spark_env(args.master), check=False).returncode


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imgclf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="download and verify the class folders from GitHub")
    d.add_argument("--dest", required=True, help="folder for <class>/<file> and manifest.json")
    d.add_argument("--api-url", help="GitHub API base URL (default: github_default / GitHub)")
    d.add_argument("--repo", default=DEFAULT_REPO)
    d.add_argument("--ref", default=DEFAULT_REF)
    d.add_argument("--class", dest="classes", action="append", metavar="NAME=PATH")
    d.add_argument("--min-images-per-class", type=int, default=1)
    d.add_argument("--workers", type=int, default=4)
    d.set_defaults(fn=cmd_download)

    s = sub.add_parser("github-stub", help="serve a folder like GitHub's API, on 127.0.0.1")
    s.add_argument("--root", required=True, help="folder served as --prefix of the repo")
    s.add_argument("--repo", default=DEFAULT_REPO)
    s.add_argument("--ref", default=DEFAULT_REF)
    s.add_argument("--prefix", default="CH13/football")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--public-url", default="", help="base URL clients reach it at (with --host)")
    s.add_argument("--url-file", help="write the base URL here once listening")
    s.add_argument(
        "--fault",
        action="append",
        metavar="REGEX=F1,F2",
        help="serve these faults, in order, to requests whose path matches",
    )
    s.set_defaults(fn=cmd_github_stub)

    r = sub.add_parser("summary", help="print the newest run's accuracy and metrics path")
    r.add_argument("--since", type=float, default=0.0, help="only runs written after (epoch s)")
    r.set_defaults(fn=cmd_summary)

    for name, text in (
        ("featurize", "CNN features of a folder of images, to Parquet"),
        ("evaluate", "test accuracy over K seeded stratified splits"),
    ):
        job = importlib.import_module(f"spark_tasks.{name}")  # light: pyspark only in run()
        jp = sub.add_parser(name, help=text, parents=[job.build_parser()], add_help=False)
        jp.add_argument("--master", default="local[*]")
        jp.set_defaults(fn=cmd_job, script=f"{name}.py")

    pc = sub.add_parser("package-code", help="zip imgclf + spark_tasks for --py-files")
    pc.add_argument("--out", required=True)
    pc.set_defaults(fn=cmd_package_code)

    pr = sub.add_parser("predict", help="score a folder of images with the champion or --version")
    pr.add_argument("--images", required=True)
    pr.add_argument("--version", default="champion")
    pr.add_argument("--out", required=True, help="FILE.csv")
    pr.add_argument("--master", default="local[*]")
    pr.set_defaults(fn=cmd_predict)

    m = sub.add_parser("models", help="the model registry")
    m.add_argument("action", choices=["list", "show", "promote", "rollback"])
    m.add_argument("version", nargs="?")
    m.set_defaults(fn=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]  # a job's own options, for cmd_job to forward
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
