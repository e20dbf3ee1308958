"""Prepare a developer checkout: write ``.env`` with a fresh SECRET_KEY on first run.

Run by ``make run``. An existing ``.env`` is never touched; ``.env`` is in
.gitignore, so the generated key is never committed.
"""

from __future__ import annotations

import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def main() -> None:
    env_file = BASE_DIR / ".env"
    if env_file.exists():
        return
    key = secrets.token_urlsafe(50)
    env_file.write_text(
        "# Written by `make run` for local development; see .env.example.\n"
        f"SECRET_KEY={key}\n"
        "DEBUG=True\n"
    )
    env_file.chmod(0o600)
    print(f"Wrote {env_file} with a new development SECRET_KEY and DEBUG=True.")


if __name__ == "__main__":
    main()
