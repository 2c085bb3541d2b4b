"""Rewrites README.md's settings table (between its settings markers) from
the declarations in services/common/config.py."""

from __future__ import annotations

import re
from pathlib import Path

from services.common.config import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    text = README.read_text()
    block = "<!-- settings:begin -->\n" + markdown_table() + "<!-- settings:end -->"
    updated, found = re.subn(r"<!-- settings:begin -->\n.*?<!-- settings:end -->", lambda _: block, text, flags=re.S)
    if not found:
        raise SystemExit("README.md has no settings markers")
    README.write_text(updated)


if __name__ == "__main__":
    main()
