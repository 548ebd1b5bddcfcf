"""The code's version, for provenance: the package version and, in a git checkout, the commit."""

from __future__ import annotations

import subprocess

from imgclf.settings import PROJECT_ROOT


def code_version() -> str:
    """The package version and, in a git checkout, the commit."""
    from imgclf import __version__

    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        commit = out.stdout.strip() if out.returncode == 0 else ""
    except OSError:
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__
