"""Credentials come from the environment or a secret file and never appear in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import DestinationError
from services.common.spec.render import SecretResolver
from services.loader.sinks import sink_for

SECRET = "s3cr3t-Pa55word"


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://sluice_nobody:${DB_PASSWORD}@127.0.0.1:5432/test",
        "mariadb://sluice_nobody:${DB_PASSWORD}@127.0.0.1:3306/test",
    ],
)
def test_a_wrong_password_from_a_secret_file_is_not_in_the_error(uri: str, tmp_path: Path) -> None:
    (tmp_path / "DB_PASSWORD").write_text(SECRET + "\n")
    sink = sink_for(uri, SecretResolver({}, tmp_path))
    with pytest.raises(DestinationError) as failure:
        sink.loaded_units("p", "t", [("u", "f")])
    assert SECRET not in failure.value.full_message
    assert "sluice_nobody" in failure.value.full_message


def test_the_environment_wins_over_secret_files(tmp_path: Path) -> None:
    (tmp_path / "DB_PASSWORD").write_text("from-file")
    resolver = SecretResolver({"DB_PASSWORD": "from-env"}, tmp_path)
    assert resolver.resolve("x:${DB_PASSWORD}") == "x:from-env"
