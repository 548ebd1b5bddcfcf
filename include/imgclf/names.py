"""The one name rule every reader agrees with: a file or class name we store, Spark reads.

Spark's file sources (``binaryFile``, Parquet...) list folders through Hadoop, and three things
there turn a name we would happily write into a file Spark never reads:

- **hidden names**: a file or folder whose name starts with ``_`` or ``.`` is skipped by
  every listing (``HadoopFSUtils.shouldFilterOutPathName``), even when named explicitly: an
  image ``_x.jpg`` or a whole class ``_messi`` would be counted and then silently left out;
- **glob characters** ``* ? [ ] { } \\``: a path given to ``load()`` is expanded as a glob, so
  ``[x].jpg`` matches ``x.jpg`` (PATH_NOT_FOUND) and ``{a,b}.jpg`` matches two other names;
- **URI syntax** ``:``: Hadoop builds each listed child's ``Path`` from its name, and ``a:b.jpg``
  reads as scheme ``a`` (``URISyntaxException``: the whole job dies).

Each of these is *refused* where names enter (the listing check, the class names of the run
parameters), with a line naming the name and the reader that would misread it: escaping cannot
help the first (Hadoop has no switch for its hidden-file filter) nor the third (the name is parsed
from the listing, before anything of ours sees it), and for the glob characters a dataset whose
names need escaping in one reader would need it in every reader, forever. Everything else a
name may hold (spaces, ``%``, ``#``, ``,``, ``=``, quotes, non-ASCII letters...) is read
correctly by every job: ``tests/spark/test_names.py`` proves it for every printable ASCII
character in each position, through the same readers the jobs use.

Pure: no imports from the rest of the package (``github`` and ``params`` both use it).
"""

from __future__ import annotations

from typing import Any

HIDDEN_PREFIXES = ("_", ".")
GLOB_CHARS = frozenset("*?[]{}\\")
URI_CHARS = frozenset(":")


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def spark_problem(name: str) -> str | None:
    """Why Spark would skip or misread a file or folder called ``name``; ``None`` if it reads it."""
    if name.startswith(HIDDEN_PREFIXES):
        return "starts with '_' or '.', which Spark's file sources skip as hidden"
    glob = sorted(set(name) & GLOB_CHARS)
    if glob:
        return f"contains {' '.join(glob)}, which Spark reads as a glob pattern"
    if set(name) & URI_CHARS:
        return "contains ':', which Spark's file listing reads as a URI scheme"
    return None


def check_spark_name(name: str, what: str = "name") -> str:
    """``name`` if Spark reads a file or folder of that name, else ``ValueError`` naming it."""
    problem = spark_problem(name)
    if problem is not None:
        raise ValueError(f"{what} {_shown(name)} {problem}; rename it")
    return name
