"""The pip line that adds one of the package's extras, written for how this copy was installed: from a
checkout (editable or not), from a wheel file, or from a package index. A line naming
``diffusion-kernels[extra]`` works only where an index serves the package, so it is given only there.
"""
from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

DISTRIBUTION = "diffusion-kernels"


def _source() -> tuple[str, bool] | None:
    """(the checkout folder or wheel file this copy was installed from, editable), or None: an index."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():  # imported from a checkout (editable, or never installed)
        return str(checkout), True
    for distribution in metadata.distributions(name=DISTRIBUTION):
        text = distribution.read_text("direct_url.json")
        if text:
            url = urlparse(json.loads(text).get("url", ""))
            # A VCS or web address is not a file pip can read again: an index-like line is the fair answer.
            return (unquote(url.path), False) if url.scheme == "file" else None
    return None


def extra_line(extra: str) -> str:
    """``pip install ...`` that installs ``extra`` here, with the packages themselves as a second way."""
    source = _source()
    if source is None:
        line = f"pip install '{DISTRIBUTION}[{extra}]'"
    else:
        path, editable = source
        line = f"pip install {'-e ' if editable else ''}'{path}[{extra}]'"
        if not os.path.exists(path):  # the wheel (or checkout) is gone: the extra's packages themselves
            packages = extra_packages(extra)
            line = "pip install " + " ".join(f"'{p}'" for p in packages) if packages else line
    return line


def extra_packages(extra: str) -> list[str]:
    """The requirements an extra adds (from the installed metadata), e.g. ['scipy', 'tqdm']."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    marker = f'extra == "{extra}"'
    return [r.split(";")[0].strip() for r in requires if marker in r.replace("'", '"')]
