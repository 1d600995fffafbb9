"""The README's API table as inspect.signature renders the package's exports: what test_api_table checks."""
import inspect
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def render(name: str, obj) -> str:
    """``name(params)`` with defaults as Python writes them and no annotations."""
    signature = inspect.signature(obj)
    parts, star_done = [], False
    for param in signature.parameters.values():
        if param.kind is param.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        text = param.name
        if param.kind is param.VAR_POSITIONAL:
            text, star_done = "*" + text, True
        elif param.kind is param.VAR_KEYWORD:
            text = "**" + text
        if param.default is not param.empty:
            default = param.default
            text += "=" + (f'"{default}"' if isinstance(default, str) else repr(default))
        parts.append(text)
        if param.kind is param.POSITIONAL_ONLY and all(
                p.kind is not p.POSITIONAL_ONLY for p in list(signature.parameters.values())[len(parts):]):
            parts.append("/")
    return f"{name}({', '.join(parts)})"


def table_rows() -> dict:
    """First cell of each row of the README's API table: name -> the cell's code text."""
    text = README.read_text()
    section = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `([A-Za-z_][\w.]*)(\(.*?\))?`", line)
        if match:
            rows[match.group(1)] = match.group(1) + (match.group(2) or "")
    return rows
