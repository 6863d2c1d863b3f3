"""The app's settings from its environment and its machine: the default reviewer and verdict set, the
upload limit, whether a GPU is there.

Environment: CON2_REVIEWER (default reviewer name), CON2_VERDICTS (a default verdict set, comma-separated).
"""

from __future__ import annotations

import getpass
import os

import streamlit as st

from dashboard.intake import upload_limit_bytes

REVIEWER_ENV = "CON2_REVIEWER"
VERDICTS_ENV = "CON2_VERDICTS"


def default_reviewer() -> str:
    """CON2_REVIEWER, else the user name of the process."""
    try:
        return os.environ.get(REVIEWER_ENV) or getpass.getuser()
    except Exception:  # no user name in some containers
        return "reviewer"


def default_verdicts() -> str | None:
    return os.environ.get(VERDICTS_ENV) or None


def upload_limit_mb() -> float:
    return upload_limit_bytes() / (1024 * 1024)


@st.cache_resource(show_spinner=False)
def has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())
