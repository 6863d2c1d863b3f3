"""Who can reach the dashboard: nobody but this machine by default; in team mode, only signed-in users, whose
user name is saved with each verdict. Real servers, real sockets, a real headless Chromium."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from dashboard.seed import seed_run
from db.models import Review
from db.session import open_database
from tests.test_dashboard_e2e import CHROMIUM, NO_CHROMIUM, browser_page, settle, streamlit_app, streamlit_script

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"
PAGE_TEXT = ("Register a dataset", "Prepare", "Inspect", "Reviewer", "Database:")  # what any signed-in page shows


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port`, from `ss -ltnH` (as an admin would check)."""
    lines = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout.splitlines()
    found = set()
    for line in lines:
        local = line.split()[3]  # State Recv-Q Send-Q Local:Port Peer:Port
        address, _, local_port = local.rpartition(":")
        if local_port == str(port):
            found.add(address.strip("[]").split("%")[0])
    return found


def login_file(tmp_path: Path, user: str = "ada") -> Path:
    """A team-mode login file with one user and a bcrypt hash made by our own helper."""
    hashed = subprocess.run(
        [sys.executable, "-m", "dashboard.auth", "hash"], input=PASSWORD + "\n", capture_output=True, text=True
    )
    assert hashed.returncode == 0, hashed.stderr
    path = tmp_path / "users.yaml"
    path.write_text(
        "credentials:\n"
        "  usernames:\n"
        f"    {user}:\n"
        "      name: Ada Lovelace\n"
        f"      password: '{hashed.stdout.strip()}'\n"
        "cookie:\n"
        "  name: con2_test_auth\n"
        f"  key: '{os.urandom(24).hex()}'\n"
        "  expiry_days: 1\n"
    )
    return path


def auth_check(address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """start.sh's preflight, `python -m dashboard.auth check --address ADDRESS`, as a user's shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "dashboard.auth", "check", "--address", address],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_the_default_server_listens_on_loopback_only(tmp_path):
    with streamlit_app(tmp_path / "data", tmp_path / "streamlit.log", CON2_WORKER="off") as url:
        port = urlparse(url).port
        addresses = listening_addresses(port)
    print(f"port {port} listens on {sorted(addresses)}")
    assert addresses, "the server's port was not found in ss -ltn"
    for address in addresses:
        assert address not in ("*", "0.0.0.0", "::") and ipaddress.ip_address(address).is_loopback, addresses


def test_start_sh_refuses_a_wide_address_without_a_login(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CON2_AUTH_CONFIG"} | {"CON2_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(ROOT / "start.sh"), "--server.address", "0.0.0.0"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "CON2_AUTH_CONFIG" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    preflight = auth_check("0.0.0.0", env)
    assert preflight.returncode == 2 and "no login is configured" in preflight.stderr
    assert auth_check("127.0.0.1", env).returncode == 0


def test_a_plaintext_password_file_is_refused(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text(f"credentials:\n  usernames:\n    ada:\n      password: hunter2\ncookie:\n  key: '{'k' * 40}'\n")
    env = {**os.environ, "CON2_AUTH_CONFIG": str(path)}
    done = auth_check("0.0.0.0", env)
    assert done.returncode == 2 and "no bcrypt-hashed password" in done.stderr


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)
def test_a_wide_address_without_a_login_serves_nothing(tmp_path):
    # started past start.sh, as `streamlit run --server.address 0.0.0.0` would be: the app itself refuses
    app = streamlit_app(tmp_path / "data", tmp_path / "streamlit.log", "--server.address", "0.0.0.0", CON2_WORKER="off")
    with app as url, browser_page() as page:
        page.goto(f"{url}/review")
        page.get_by_text("This dashboard refuses to serve").wait_for(timeout=60_000)
        settle(page)
        body = page.locator("body").inner_text()
    assert not any(text in body for text in PAGE_TEXT), body


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)
def test_team_mode_shows_only_the_login_form_and_saves_verdicts_under_the_signed_in_user(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url_db = f"sqlite:///{data_dir / 'con2.db'}"
    seeded = seed_run(url_db, samples=60, reviewed=0)  # a finished run to review, without training
    users = login_file(tmp_path)
    app = streamlit_app(
        data_dir, tmp_path / "streamlit.log", CON2_WORKER="off", CON2_AUTH_CONFIG=str(users), CON2_REVIEWER="mallory"
    )
    with app as url, browser_page() as page:
        for path in ("", "review", "datasets", "train"):  # any page, asked for directly, shows only the form
            page.goto(f"{url}/{path}")
            page.get_by_text("Sign in to Con2 screening").first.wait_for(timeout=60_000)
            settle(page)
            body = page.locator("body").inner_text()
            assert not any(text in body for text in PAGE_TEXT), (path, body)
            assert page.locator("[data-testid=stSidebarNav]").count() == 0

        page.get_by_role("textbox", name="Username").fill("ada")
        page.get_by_role("textbox", name="Password").fill("wrong password")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Wrong user name or password.").wait_for(timeout=30_000)
        assert "Register a dataset" not in page.locator("body").inner_text()

        page.get_by_role("textbox", name="Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Signed in as").wait_for(timeout=30_000)
        settle(page)
        assert page.get_by_label("Reviewer").count() == 0  # no free-text reviewer to type another name into

        page.goto(f"{url}/review")  # a new page load: the signed cookie keeps the user signed in
        first_row = page.locator("[class*='st-key-review_row_']").first
        first_row.wait_for(timeout=60_000)
        first_row.get_by_role("button", name="anomaly", exact=True).click()
        sessions = open_database(url_db)
        deadline = time.monotonic() + 30
        rows: list = []
        while time.monotonic() < deadline and not rows:
            with sessions() as session:
                rows = session.execute(select(Review.reviewer, Review.verdict, Review.job_id)).all()
            time.sleep(0.3)
        sessions.kw["bind"].dispose()
    assert [(r.reviewer, r.verdict, r.job_id) for r in rows] == [("ada", "anomaly", seeded.run_id)]


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)
def test_an_error_shows_no_traceback_or_server_path_in_the_browser(tmp_path):
    script = tmp_path / "broken.py"  # any uncaught error: its message and traceback name server paths
    script.write_text('raise RuntimeError("cannot read /srv/secret/patients/0001.png")\n')
    with streamlit_script(script, tmp_path / "data", tmp_path / "streamlit.log") as url, browser_page() as page:
        page.goto(url)
        page.locator("[data-testid=stException], [data-testid=stAlert]").first.wait_for(timeout=60_000)
        settle(page)
        body = page.locator("body").inner_text()
    log = (tmp_path / "streamlit.log").read_text()
    assert "/srv/secret" not in body and "Traceback" not in body and "RuntimeError" not in body, body
    assert "/srv/secret/patients/0001.png" in log  # the details are on the server, for whoever runs it
