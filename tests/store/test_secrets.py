"""Redis passwords never show: not in `flowkit redis status`, the dashboard, logs, reprs or
errors, whether given as ``redis://:pw@host``, ``?password=pw``, a URL file or a password
file; and what holds personal data (backups, exports, the data dir, AOF) is owner-only."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flowkit.dashboard import open_source
from flowkit.errors import ConfigError
from flowkit.store import RedisServer, Store, connect, mask_url, settings
from flowkit.store.connection import RedisSettings
from tests.store.conftest import advance

FLOWKIT = str(Path(sys.executable).parent / "flowkit")
APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")
PASSWORD = "s3cr/et+pass word"  # characters that need URL quoting, so both spellings are checked
QUOTED = "s3cr%2Fet%2Bpass%20word"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("locked"), appendonly=False, password=PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


def urls(server: RedisServer) -> dict[str, str]:
    where = f"127.0.0.1:{server.port}"
    return {"userinfo": f"redis://:{QUOTED}@{where}/0", "user+userinfo": f"redis://default:{QUOTED}@{where}/0",
            "query": f"redis://{where}/0?password={QUOTED}", "both": f"redis://:{QUOTED}@{where}/0?password={QUOTED}"}


def clean(text: str) -> bool:
    return PASSWORD not in text and QUOTED not in text and "s3cr" not in text


def flowkit(*args: str, env: dict[str, str] | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKIT_REDIS")}
    p = subprocess.run([FLOWKIT, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=60,
                       check=False)
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    return p


def test_mask_url_hides_every_password_spelling() -> None:
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis://alice:pw@h:1/0") == "redis://alice:***@h:1/0"
    assert mask_url("redis://h:1/0?password=pw&db=2") == "redis://h:1/0?password=***&db=2"
    assert mask_url("rediss://h:1/0?ssl_ca_certs=/etc/ca.pem&Password=pw") == \
        "rediss://h:1/0?ssl_ca_certs=/etc/ca.pem&Password=***"
    assert mask_url("unix:///run/redis.sock?password=pw") == "unix:///run/redis.sock?password=***"
    assert mask_url("redis+cluster://:pw@h1:1,h2:2") == "redis+cluster://:***@h1:1,h2:2"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"
    assert mask_url("redis://alice@h:1/0") == "redis://alice@h:1/0"


def test_reprs_and_settings_never_hold_the_password(locked: RedisServer) -> None:
    for name, url in urls(locked).items():
        cfg = settings(url)
        assert cfg.password == PASSWORD, name  # ?password= counts as the password (redis-cli gets it too)
        client = connect(url)
        try:
            assert client.ping()
            store = Store(client)
            for shown in (repr(cfg), str(cfg), cfg.redacted, repr(client), repr(client.connection_pool), repr(store),
                          repr(store.driver), repr(locked)):
                assert clean(shown), (name, shown)
        finally:
            client.close()


def test_redis_status_text_and_json_never_print_the_password(locked: RedisServer) -> None:
    for name, url in urls(locked).items():
        for fmt in ("text", "json"):
            p = flowkit("redis", "status", "--redis", url, "--format", fmt)
            assert "reachable" in p.stdout and clean(p.stdout + p.stderr), (name, fmt, p.stdout, p.stderr)
            assert "***" in p.stdout
    bad = urls(locked)["query"].replace(str(locked.port), "1")  # unreachable: the error names the URL
    p = flowkit("redis", "status", "--redis", bad, code=1)
    assert clean(p.stdout + p.stderr)
    p = flowkit("redis", "status", "--redis", bad.replace(":1/", ":x/"), code=2)  # malformed: the message shows it
    assert "error:" in p.stderr and clean(p.stdout + p.stderr)


def test_a_password_on_the_command_line_is_warned_about(locked: RedisServer) -> None:
    p = flowkit("redis", "status", "--redis", urls(locked)["userinfo"])
    assert "visible in this process's command line" in p.stderr and "FLOWKIT_REDIS_URL_FILE" in p.stderr
    assert clean(p.stdout + p.stderr)
    p = flowkit("redis", "status", env={"FLOWKIT_REDIS_URL": urls(locked)["userinfo"]})
    assert "command line" not in p.stderr


def test_unsupported_scheme_error_is_masked() -> None:
    with pytest.raises(ConfigError) as err:
        RedisSettings.from_url(f"http://:{QUOTED}@h:1/0?password={QUOTED}")
    assert clean(str(err.value))


def test_url_file_and_password_files_keep_the_password_out_of_argv(locked: RedisServer, tmp_path: Path) -> None:
    url_file = tmp_path / "redis-url"
    url_file.write_text(urls(locked)["query"] + "\n")
    pw_file = tmp_path / "redis-password"
    pw_file.write_text(PASSWORD + "\n")
    bare = f"redis://127.0.0.1:{locked.port}/0"
    for env in ({"FLOWKIT_REDIS_URL_FILE": str(url_file)},
                {"FLOWKIT_REDIS_URL": bare, "FLOWKIT_REDIS_PASSWORD_FILE": str(pw_file)},
                {"FLOWKIT_REDIS_URL": bare, "FLOWKIT_REDIS_PASSWORD": PASSWORD}):
        p = flowkit("redis", "status", "--format", "json", env=env)
        assert '"reachable": true' in p.stdout and clean(p.stdout + p.stderr), (env, p.stdout)
    # without the password the server refuses, and says so without a traceback
    p = flowkit("redis", "status", env={"FLOWKIT_REDIS_URL": bare}, code=1)
    assert "reachable: False" in p.stdout and "Traceback" not in p.stderr
    p = flowkit("redis", "status", env={"FLOWKIT_REDIS_URL_FILE": str(tmp_path / "missing")}, code=2)
    assert "FLOWKIT_REDIS_URL_FILE" in p.stderr and "cannot be read" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "empty").write_text("\n")
    p = flowkit("redis", "status", env={"FLOWKIT_REDIS_URL": bare, "FLOWKIT_REDIS_PASSWORD_FILE": str(tmp_path / "empty")},
                code=2)
    assert "is empty" in p.stderr


def test_logs_never_hold_the_password(locked: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = urls(locked)["both"]
    store = Store(connect(url))
    advance(store, "u1", None, "welcome")
    from flowkit.store import backup, restore

    backup(store, tmp_path / "b.jsonl")
    restore(store, tmp_path / "b.jsonl")
    store.reconcile()
    assert caplog.records and all(clean(r.getMessage() + repr(r.__dict__)) for r in caplog.records)
    store.client.flushall()
    store.client.close()


def test_dashboard_shows_the_masked_url(locked: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    url = urls(locked)["query"]
    src = open_source(url, [])
    assert src.url == f"redis://127.0.0.1:{locked.port}/0?password=***"
    src.client.close()
    monkeypatch.setenv("FLOWKIT_REDIS_URL", urls(locked)["both"])
    monkeypatch.delenv("FLOWKIT_FLOWS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [str(getattr(e, "value", "")) for e in (*at.caption, *at.info, *at.error, *at.markdown)]
    assert any("***" in x for x in shown) and all(clean(x) for x in shown), shown


def test_backups_exports_and_the_embedded_data_dir_are_private(tmp_path: Path) -> None:
    """umask 0 (the worst case): every file flowkit creates with personal data is still 0600,
    every directory 0700, and the embedded server has a password kept in the data dir."""
    data = tmp_path / "data"
    code = f"""
import os, stat, sys
os.umask(0)
from flowkit.store import Store, backup, connect, embedded_server, stop_embedded
from flowkit.history.export import export_store
from tests.store.conftest import advance
store = Store(connect())  # no URL: the embedded server of $FLOWKIT_DATA_DIR, started now
advance(store, "u1", None, "welcome")
backup(store, {str(tmp_path / 'b.jsonl')!r})
export_store(store, {str(tmp_path / 'export')!r}, fmt="csv")
store.client.close()
state = {str(data / 'redis' / 'server.json')!r}
print(oct(stat.S_IMODE(os.stat(state).st_mode)), "url" in open(state).read())
stop_embedded()
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKIT_REDIS")}
    p = subprocess.run([sys.executable, "-c", code], env={**env, "FLOWKIT_DATA_DIR": str(data)}, capture_output=True,
                       text=True, timeout=60, check=False, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr
    mode = {str(f.relative_to(tmp_path)): stat.S_IMODE(f.stat().st_mode) for f in tmp_path.rglob("*")}
    assert mode["data"] == mode["data/redis"] == 0o700
    assert p.stdout.split() == ["0o600", "False"]  # server.json: private, and no URL (it would hold the password)
    assert mode["b.jsonl"] == mode["data/redis/password"] == 0o600
    assert mode["export"] == 0o700 and mode["export/export.json"] == 0o600
    exported = [name for name in mode if name.startswith("export/")]
    assert len(exported) >= 3 and all(mode[n] == (0o700 if (tmp_path / n).is_dir() else 0o600) for n in exported)
    aof = [name for name in mode if "appendonly" in name]
    assert aof and all(mode[name] in (0o600, 0o700) for name in aof), {n: oct(mode[n]) for n in aof}
