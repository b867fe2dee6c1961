"""Every setting is documented where operators look for it: `.env.example`."""

from __future__ import annotations

from pathlib import Path

from mediakeep import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_every_setting_is_listed_in_env_example() -> None:
    text = ENV_EXAMPLE.read_text()
    missing = [
        f"MEDIAKEEP_{name.upper()}"
        for name in Settings.model_fields
        if f"MEDIAKEEP_{name.upper()}=" not in text
    ]
    assert missing == []
