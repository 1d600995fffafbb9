"""Code blocks of the README, read the way a user copies them: the quickstart and what it prints."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> tuple[str, str]:
    """(the quickstart's Python block, the output the README says it prints)."""
    section = README.read_text().split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = re.search(r"prints\n\n```text\n(.*?)```", section, re.S).group(1)
    return code, printed


def sharded_snippet() -> str:
    """The Python block of "Training on many GPUs": two gloo processes drawing one batch's noise."""
    section = README.read_text().split("\n## Training on many GPUs", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)
