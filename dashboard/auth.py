"""Who is using the dashboard: nobody else on a loopback-only server, a signed-in user in team mode.

By default the server listens on 127.0.0.1 (`.streamlit/config.toml`) and the reviewer saved with a
verdict is the name in the sidebar (CON2_REVIEWER, else the user name). Team mode serves a wider
address; it needs `CON2_AUTH_CONFIG`, the path of a YAML file of users with bcrypt-hashed passwords
(streamlit-authenticator), and then every request sees the login form and nothing else until its
user signs in, and every verdict is saved under the signed-in user name:

    credentials:
      usernames:
        ada:
          name: Ada Lovelace
          password: "$2b$12$..."        # python -m dashboard.auth hash
    cookie:
      name: con2_auth
      key: "<at least 32 random characters>"   # signs the re-login cookie
      expiry_days: 1

`python -m dashboard.auth check --address ADDRESS` is start.sh's preflight: exit status 2 and one
`error:` line when the address is wider than loopback and no usable login is configured.
"""

from __future__ import annotations

import argparse
import copy
import getpass
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

AUTH_CONFIG_ENV = "CON2_AUTH_CONFIG"
MIN_COOKIE_KEY = 32  # characters: the cookie key signs re-login tokens, so it must not be guessable
REVIEWER_KEY = "app_reviewer"  # the local-mode sidebar field


class AuthError(ValueError):
    """A login configuration that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class AuthConfig:
    """The users who may sign in (bcrypt hashes only) and the re-login cookie's settings."""

    path: Path
    credentials: dict[str, Any]
    cookie_name: str
    cookie_key: str
    expiry_days: float


def is_loopback(address: str | None) -> bool:
    """Whether a server address only accepts connections from this machine. Streamlit binds every
    interface when no address is set, so None and "" are wide."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything, so treat it as wide
        return False


def load_config(path: str | Path) -> AuthConfig:
    """Read and check a team-mode login file; AuthError names the first problem."""
    import yaml  # installed with streamlit-authenticator
    from streamlit_authenticator import Hasher

    path = Path(path).expanduser()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise AuthError(f"cannot read the login file {path} ({AUTH_CONFIG_ENV}): {error.strerror}") from None
    except yaml.YAMLError as error:
        raise AuthError(f"the login file {path} is not valid YAML: {error}") from None
    users = ((raw or {}).get("credentials") or {}).get("usernames") or {}
    if not isinstance(users, dict) or not users:
        raise AuthError(f"the login file {path} lists no users under credentials.usernames")
    for name, user in users.items():
        password = (user or {}).get("password")
        if not isinstance(password, str) or not Hasher.is_hash(password):
            # plain-text passwords in a file are what team mode exists to avoid
            raise AuthError(
                f"user {name!r} in {path} has no bcrypt-hashed password; make one with `python -m dashboard.auth hash`"
            )
    cookie = (raw or {}).get("cookie") or {}
    key = str(cookie.get("key") or "")
    if len(key) < MIN_COOKIE_KEY:
        raise AuthError(f"cookie.key in {path} must be at least {MIN_COOKIE_KEY} random characters")
    return AuthConfig(
        path=path,
        credentials={"usernames": users},
        cookie_name=str(cookie.get("name") or "con2_auth"),
        cookie_key=key,
        expiry_days=float(cookie.get("expiry_days", 1)),
    )


def configured() -> AuthConfig | None:
    """The login configuration CON2_AUTH_CONFIG names, or None when it is unset. Raises AuthError."""
    path = os.environ.get(AUTH_CONFIG_ENV, "").strip()
    return load_config(path) if path else None


def server_problem(address: str | None) -> str | None:
    """Why the dashboard must not serve at `address`, or None when it may."""
    try:
        config = configured()
    except AuthError as error:
        return f"team mode needs a usable login: {error}"
    if config is None and not is_loopback(address):
        shown = address or "every interface"
        return (
            f"the server address is {shown}, which other machines can reach, and no login is configured: "
            f"set {AUTH_CONFIG_ENV} to a login file (README: team mode), or serve on 127.0.0.1"
        )
    return None


def require_login() -> None:
    """Gate the whole app; call before anything else is shown. Local mode passes at once. In team mode
    the login form is all a request without a signed-in user sees (st.stop() ends the run)."""
    problem = server_problem(st.get_option("server.address"))
    if problem:
        st.error(f"This dashboard refuses to serve: {problem}.", icon=":material/lock:")
        st.stop()
    config = configured()
    if config is None:
        return
    authenticator = _authenticator(config)
    authenticator.login(location="main", fields={"Form name": "Sign in to Con2 screening", "Login": "Sign in"})
    if st.session_state.get("authentication_status") is False:
        st.error("Wrong user name or password.", icon=":material/lock:")
    if not st.session_state.get("authentication_status"):
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as **{st.session_state.get('username')}**")
        authenticator.logout("Sign out", location="sidebar", key="app_sign_out")
    if not st.session_state.get("authentication_status"):  # signed out by the button just now
        st.rerun()


def signed_in() -> bool:
    """Whether this session may see the pages (always in local mode). The app hides the page list until then."""
    if server_problem(st.get_option("server.address")):
        return False
    return not team_mode() or bool(st.session_state.get("authentication_status"))


def current_user() -> str:
    """The reviewer saved with a verdict: the signed-in user name in team mode, else the sidebar's
    name (CON2_REVIEWER, else the process's user name)."""
    if st.session_state.get("authentication_status") and st.session_state.get("username"):
        return str(st.session_state["username"])
    from dashboard.settings import default_reviewer  # the local default lives with the other app settings

    return str(st.session_state.get(REVIEWER_KEY) or default_reviewer())


def team_mode() -> bool:
    """Whether users sign in (the reviewer is then not editable)."""
    return bool(os.environ.get(AUTH_CONFIG_ENV, "").strip())


def _authenticator(config: AuthConfig) -> Any:
    import streamlit_authenticator as stauth

    # a private copy per run: the library records login attempts in the dict it is given
    return stauth.Authenticate(
        copy.deepcopy(config.credentials),
        cookie_name=config.cookie_name,
        cookie_key=config.cookie_key,
        cookie_expiry_days=config.expiry_days,
        auto_hash=False,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m dashboard.auth check --address A` (start.sh's preflight) or `... hash` (a password hash)."""
    parser = argparse.ArgumentParser(prog="python -m dashboard.auth")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="refuse a wide server address without a usable login")
    check.add_argument("--address", default="", help="the address the server will listen on")
    commands.add_parser("hash", help="read a password (typed, or one line on stdin) and print its bcrypt hash")
    args = parser.parse_args(argv)
    from streamlit.logger import set_log_level

    set_log_level("error")  # outside a running app the login library's imports warn about "bare mode"
    if args.command == "hash":
        from streamlit_authenticator import Hasher

        # typed at a terminal: not echoed; piped: one line, so scripts can make hashes too
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if not password:
            print("error: type the password on standard input", file=sys.stderr)
            return 2
        print(Hasher.hash(password))
        return 0
    problem = server_problem(args.address)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
