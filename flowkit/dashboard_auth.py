"""Who may use the dashboard: it can roll sessions back, so it is never open to a network
without a password.

``flowkit dashboard`` binds to 127.0.0.1 unless told otherwise, and refuses any other
address unless a password is configured: ``FLOWKIT_DASHBOARD_PASSWORD`` or a file named by
``FLOWKIT_DASHBOARD_PASSWORD_FILE`` (``--password-file``). Streamlit has no login of its
own, so the app asks for the password before drawing anything and compares it in
constant time. The password never travels in argv or a URL.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from flowkit.errors import ConfigError

ENV_PASSWORD = "FLOWKIT_DASHBOARD_PASSWORD"
ENV_PASSWORD_FILE = "FLOWKIT_DASHBOARD_PASSWORD_FILE"


def configured_password(password_file: str | os.PathLike[str] | None = None) -> str | None:
    """The password from the environment or its file (``password_file`` first); None if none is set."""
    if password_file is None and os.environ.get(ENV_PASSWORD):
        return os.environ[ENV_PASSWORD]
    path = password_file or os.environ.get(ENV_PASSWORD_FILE)
    if not path:
        return None
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the dashboard password file {path}: {exc.strerror}; "
                          f"fix {ENV_PASSWORD_FILE} or --password-file") from None
    if not secret:
        raise ConfigError(f"the dashboard password file {path} is empty; write the password in it")
    return secret


def password_ok(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, password_file: str | os.PathLike[str] | None = None) -> None:
    """Refuse to serve the dashboard beyond this machine without a password."""
    secret = configured_password(password_file)  # a bad file is an error on any address
    if not is_loopback(host) and secret is None:
        raise ConfigError(f"refusing to serve the dashboard on {host} without a password: it can roll sessions "
                          f"back. Set {ENV_PASSWORD} (or {ENV_PASSWORD_FILE} / --password-file), or bind to 127.0.0.1 "
                          "and reach it through an SSH tunnel or an authenticating proxy")
