"""The dashboard can roll sessions back: it asks for a password when one is set, and
`flowkit dashboard` refuses to listen beyond loopback without one."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from flowkit.cli import app as cli
from tests.dashboard.conftest import Traffic
from tests.dashboard.test_app import APP

SECRET = "correct horse battery staple"


def _open(monkeypatch: pytest.MonkeyPatch, url: str, **env: str) -> AppTest:
    monkeypatch.setenv("FLOWKIT_REDIS_URL", url)
    monkeypatch.delenv("FLOWKIT_FLOWS", raising=False)
    monkeypatch.delenv("FLOWKIT_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.delenv("FLOWKIT_DASHBOARD_PASSWORD_FILE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="password").input(password)
    return at.button[0].click().run()


def test_with_a_password_nothing_shows_before_sign_in(traffic: Traffic, redis_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(monkeypatch, redis_url, FLOWKIT_DASHBOARD_PASSWORD=SECRET)
    assert not at.metric and not at.tabs and not [b for b in at.button if b.key == "rollback"]
    assert at.text_input(key="password").proto.type == at.text_input(key="password").proto.PASSWORD
    at = _sign_in(at, "wrong")
    assert any("Wrong password" in e.value for e in at.error)
    assert not at.metric and not at.tabs
    at = _sign_in(at, SECRET)
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.label.startswith("Live sessions") for m in at.metric) and at.tabs


def test_the_password_can_come_from_a_file(traffic: Traffic, redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    secret_file = tmp_path / "dashboard.pw"
    secret_file.write_text(SECRET + "\n")
    at = _open(monkeypatch, redis_url, FLOWKIT_DASHBOARD_PASSWORD_FILE=str(secret_file))
    assert not at.metric
    at = _sign_in(at, SECRET)
    assert any(m.label.startswith("Live sessions") for m in at.metric)


def test_without_a_password_on_loopback_it_opens_as_before(traffic: Traffic, redis_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(monkeypatch, redis_url)
    assert any(m.label.startswith("Live sessions") for m in at.metric)


def test_the_cli_refuses_other_addresses_without_a_password(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                            tmp_path: Path) -> None:
    monkeypatch.delenv("FLOWKIT_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.delenv("FLOWKIT_DASHBOARD_PASSWORD_FILE", raising=False)
    r = CliRunner().invoke(cli, ["dashboard", "--redis", redis_url, "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "without a password" in r.output, r.output
    r = CliRunner().invoke(cli, ["dashboard", "--redis", redis_url, "--host", "0.0.0.0",
                                 "--password-file", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "cannot read the dashboard password file" in r.output, r.output


def test_the_bind_check() -> None:
    from flowkit.dashboard_auth import is_loopback, password_ok

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("dash.example.com")
    assert password_ok(SECRET, SECRET) and not password_ok(SECRET[:-1], SECRET) and not password_ok("", SECRET)
