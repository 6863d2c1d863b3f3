"""Reusable pieces of the pages: the Train form built from the engine's config, a thumbnail grid,
verdict buttons and a run picker.

The form is generated from the fields of `DataConfig`, `TrainConfig` and `ScoreConfig`: every field is a
widget whose help text is the field's own `help`, with its `choices`, `min` and `max`. Adding a field to
the engine's config adds it to the form.

About 400 lines: the pieces every page shares, each a few dozen lines; the form is the largest of them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import formatting
from dashboard.gallery import display
from db.session import DatabaseError
from engine.config import CLASSICAL_METHODS, ROTATION_METHODS, SECTIONS, ConfigError, DataConfig, RunConfig, build

# Characters that can open Markdown, HTML, LaTeX or Streamlit syntax anywhere in a line (links, images, tags,
# emphasis, code, tables, strikethrough, math, `:color[...]` directives, entities); CommonMark lets a backslash
# make each of them literal. Sentence punctuation (. , ; ' " / ? -) stays as it is.
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]()<>!|~$:&])")
_LINE_START = re.compile(r"^(\d*)([#+=>.)-])")  # a heading, list item, quote or rule where a line begins


def plain(text: Any) -> str:
    """User text (a note, file name, label, verdict, dataset name) to place inside Markdown, shown literally.

    Streamlit renders captions, toasts, alerts, button labels and image captions as Markdown: a note holding
    `![x](http://host/pixel)` would make every reviewer's browser fetch that URL. After escaping, no link,
    image, HTML tag, emphasis, code span, LaTeX or directive can form; line breaks become spaces, so the text
    stays on its line.
    """
    escaped = _MARKDOWN_SYNTAX.sub(r"\\\1", " ".join(str(text).split()))
    return _LINE_START.sub(r"\1\\\2", escaped)


SECTION_TITLES = {"data": "Data settings", "train": "Training settings", "score": "Scoring settings"}
# The few settings most users touch; everything else sits in the "more settings" expanders.
ESSENTIAL = (
    ("train", "method"),
    ("train", "context"),
    ("train", "encoder"),
    ("data", "image_size"),
    ("train", "epochs"),
    ("train", "batch_size"),
    ("score", "tta"),
    ("train", "device"),
)
# Chosen above the form from the dataset itself (which label is normal, which splits train and score).
CHOSEN_OUTSIDE = {("data", "source"), ("data", "normal_label"), ("data", "train_split"), ("data", "score_split")}
LABELS = {
    ("train", "method"): "Method",
    ("train", "context"): "Context augmentation",
    ("train", "encoder"): "Encoder",
    ("data", "image_size"): "Image size (px)",
    ("train", "epochs"): "Epochs",
    ("train", "batch_size"): "Batch size (0 = auto)",
    ("score", "tta"): "Test-time views (A)",
    ("score", "tta_augment"): "Augment the test-time views (paper)",
    ("train", "device"): "Device",
    ("train", "lr"): "Learning rate",
    ("train", "rotation_weight"): "Rotation task weight (-1 = auto)",
    ("train", "amp"): "Mixed precision (AMP)",
    ("train", "precision"): "Precision (auto = chosen for this machine)",
    ("score", "k"): "k (S_NND neighbours)",
    ("score", "lh_pooled"): "S_LH adds the pooled output's Gaussian",
    ("score", "nnd_pooled"): "S_NND adds the pooled output's nearest normal (auto = colour photographs)",
    ("score", "lh_shrinkage"): "S_LH covariance shrinkage",
    ("score", "lh_epsilon"): "S_LH ε",
    ("score", "batch_size"): "Scoring batch size",
    ("score", "seed"): "Scoring seed",
    ("data", "seed"): "Holdout seed",
    ("train", "seed"): "Training seed",
}

ALL_SAMPLES = "(all images: every image is normal, or nearly)"
EVERY_SPLIT = "(every split)"


def field_label(section: str, name: str) -> str:
    return LABELS.get((section, name), name.replace("_", " ").capitalize())


def _widget(section: str, f: dataclasses.Field, value: Any, key: str) -> Any:
    """One config field as a widget, with the field's help, choices and range."""
    meta = f.metadata
    label = field_label(section, f.name)
    help_text = meta["help"] + f" (engine default: {f.default})"
    if isinstance(f.default, bool):
        return st.checkbox(label, value=bool(value), help=help_text, key=key)
    if "choices" in meta:
        choices = list(meta["choices"])
        return st.selectbox(
            label, choices, index=choices.index(value) if value in choices else 0, help=help_text, key=key
        )
    if isinstance(f.default, int | float):
        number = type(f.default)  # the value, range and step follow the field's type: whole steps for an int
        return st.number_input(
            label,
            value=number(value),
            min_value=number(meta["min"]) if "min" in meta else None,
            max_value=number(meta["max"]) if "max" in meta else None,
            step=1 if number is int else None,
            format=None if number is int else "%g",
            help=help_text,
            key=key,
        )
    return st.text_input(label, value="" if value is None else str(value), help=help_text, key=key)


def _choice(label: str, options: Sequence[str], value: str | None, empty: str, help_text: str, key: str) -> str | None:
    shown = [empty, *options]
    index = shown.index(value) if value in shown else 0
    picked = st.selectbox(label, shown, index=index, help=help_text, key=key)
    return None if picked == empty else picked


def train_form(
    base: RunConfig,
    *,
    splits: Sequence[str],
    key: str,
) -> RunConfig | None:
    """The training form, pre-filled from `base` (a preset with the chosen normal label).

    Returns the submitted RunConfig (validated by the engine), or None when not submitted or invalid
    (the problem is shown). `splits`: the dataset's split names, for the train/score split choices.
    `key` must change when `base` does (another dataset or preset), so the widgets take the new values.
    """
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    fields = {(s, f.name): f for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}

    def current(section: str, name: str) -> Any:
        return getattr(getattr(base, section), name)

    with st.form(key=f"{key}_form"):
        st.markdown("**Which images train and which are scored**")
        left, right = st.columns(2)
        with left:
            help_train = fields[("data", "train_split")].metadata["help"]
            values["data"]["train_split"] = _choice(
                "Training split", splits, current("data", "train_split"), EVERY_SPLIT, help_train, f"{key}_train_split"
            )
        with right:
            help_score = fields[("data", "score_split")].metadata["help"]
            values["data"]["score_split"] = _choice(
                "Scored split", splits, current("data", "score_split"), EVERY_SPLIT, help_score, f"{key}_score_split"
            )
        st.markdown("**Model and schedule**")
        st.caption(
            "The classical references (" + ", ".join(CLASSICAL_METHODS) + ") train nothing: epochs, encoder, "
            "context and the other training and test-time settings are ignored for them (see the Method's help). "
            "The peer methods (" + ", ".join(ROTATION_METHODS) + ") ignore the context and assume a rotated normal "
            "image is abnormal: wrong for rotation-invariant data such as cell microscopy."
        )
        columns = st.columns(4)
        for i, (section, name) in enumerate(ESSENTIAL):
            with columns[i % 4]:
                values[section][name] = _widget(
                    section, fields[(section, name)], current(section, name), f"{key}_{name}"
                )
        for section, cls in SECTIONS.items():
            rest = [f for f in dataclasses.fields(cls) if (section, f.name) not in CHOSEN_OUTSIDE | set(ESSENTIAL)]
            with st.expander(f"More {SECTION_TITLES[section].lower()}"):
                columns = st.columns(3)
                for i, f in enumerate(rest):
                    with columns[i % 3]:
                        values[section][f.name] = _widget(
                            section, f, current(section, f.name), f"{key}_{section}_{f.name}"
                        )
        submitted = st.form_submit_button("Queue training run", type="primary")
    if not submitted:
        return None
    values["data"]["source"] = base.data.source
    values["data"]["normal_label"] = base.data.normal_label
    try:
        return RunConfig(*(build(cls, values[section]) for section, cls in SECTIONS.items()))
    except ConfigError as error:
        st.error(f"This configuration cannot run: {error}")
        return None


def normal_label_choice(labels: Sequence[str], default: str | None, *, key: str) -> str | None:
    """Which label is normal (only those images train), or every sample for curation (None)."""
    help_text = DataConfig.__dataclass_fields__["normal_label"].metadata["help"]
    options = [*labels, ALL_SAMPLES]
    index = options.index(default) if default in options else (0 if labels else len(options) - 1)
    picked = st.selectbox(
        "Normal class (what the model learns as normal)", options, index=index, help=help_text, key=key
    )
    return None if picked == ALL_SAMPLES else picked


def thumbnail_grid(pngs: Sequence[bytes], captions: Sequence[str], *, width: int = 96) -> None:
    """Thumbnails as one flowing grid of images with captions (one element, cheap for a page of them)."""
    if not pngs:
        st.caption("No thumbnails to show.")
        return
    st.image([display(p) for p in pngs], caption=[plain(c) for c in captions], width=width)


def verdict_buttons(
    verdicts: Sequence[str],
    current: str | None,
    *,
    key: str,
    on_pick: Callable[..., None],
    args: Sequence[Any] = (),
    shortcuts: bool = False,
) -> None:
    """One button per verdict; the current verdict is highlighted; a click calls `on_pick(verdict, *args)`.

    `on_pick` runs as the button's callback, before the rerun: it must write without calling Streamlit first
    (see dashboard/outbox.py), and gets everything it needs through `args`. `shortcuts`: the keys 1, 2, 3, ...
    press the buttons in order (one set of such buttons on a page: a key presses every button bound to it).
    """
    columns = st.columns(len(verdicts))
    for number, (column, verdict) in enumerate(zip(columns, verdicts, strict=True), start=1):
        column.button(
            plain(verdict),
            key=f"{key}_{verdict}",
            type="primary" if verdict == current else "secondary",
            on_click=on_pick,
            args=(verdict, *args),
            width="stretch",
            shortcut=verdict_key(number) if shortcuts else None,
        )


def verdict_key(number: int) -> str:
    """The key that gives the `number`-th verdict of a set (1-based): 1 … 9."""
    if not 1 <= number <= 9:
        raise ValueError(f"no key for verdict {number}; a set holds at most 9")
    return str(number)


VERDICT_SETS = {
    "anomaly / normal / unsure": ("anomaly", "normal", "unsure"),
    "remove / keep / relabel": ("remove", "keep", "relabel"),
}
CUSTOM = "custom…"


def verdict_set(
    *,
    key: str,
    default: str | None = None,
    stored: Sequence[str] | None = None,
    on_change: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """The verdicts a reviewer picks from: a screening set, a curation set, or their own list.

    `default`: a comma-separated list (e.g. from CON2_VERDICTS) offered as a choice. `stored`: the set kept
    with the dataset, chosen when the page opens. `on_change(verdicts)`: called when the reviewer picks
    another set (to store it).
    """
    sets = dict(VERDICT_SETS)
    for own in (tuple(v.strip() for v in (default or "").split(",") if v.strip()), tuple(stored or ())):
        if own and own not in sets.values():
            sets = {" / ".join(own): own, **sets}
    names = [*sets, CUSTOM]
    chosen = next((name for name, value in sets.items() if stored and value == tuple(stored)), names[0])

    def changed() -> None:
        if on_change is not None:
            on_change(_picked(st.session_state[key], sets, st.session_state.get(f"{key}_custom")))

    name = st.selectbox(
        "Verdicts",
        names,
        index=names.index(chosen),
        key=key,
        on_change=changed,
        help="Anomaly / normal / unsure for screening; remove / keep / relabel for curating a dataset. Kept with "
        "the dataset: the same set after a reload, for every reviewer and on the Explore page.",
    )
    if name != CUSTOM:
        return list(sets[name])
    text = st.text_input("Your verdicts, comma-separated", value="flag, fine", key=f"{key}_custom", on_change=changed)
    return _picked(name, sets, text)


def verdict_set_default(default: str | None = None) -> list[str]:
    """The set a page uses before any is stored: `default` (comma-separated, e.g. CON2_VERDICTS), else the first."""
    own = [v.strip() for v in (default or "").split(",") if v.strip()]
    return own or list(next(iter(VERDICT_SETS.values())))


def _picked(name: str, sets: Mapping[str, tuple[str, ...]], text: str | None) -> list[str]:
    if name != CUSTOM:
        return list(sets[name])
    return [v.strip() for v in (text or "").split(",") if v.strip()][:6] or ["flag", "fine"]


@contextmanager
def database_errors(what: str) -> Iterator[None]:
    """Around a page's reads: a database that cannot answer ends the page with one sentence; the details
    (URL, driver message, traceback) go to the server log, not to the browser."""
    try:
        yield
    except DatabaseError:
        logging.getLogger(__name__).exception("the database could not %s", what)
        st.error(f"The database could not {what} just now. Reload the page in a moment.", icon=":material/error:")
        st.stop()


SHARED_RUN = "shared_run_id"  # the run last picked on any page; the next page starts from it
NO_FINISHED_RUN = "No finished run yet: train one on the Train page."


def require_runs(runs: pd.DataFrame, message: str = NO_FINISHED_RUN) -> pd.DataFrame:
    """`runs` unchanged, or the page stops here with `message` when there is none."""
    if runs.empty:
        st.info(message)
        st.stop()
    return runs


def run_picker(runs: pd.DataFrame, *, key: str) -> int | None:
    """Pick one run from `runs` (columns id, title); defaults to the run last picked on another page."""
    if runs.empty:
        return None
    ids = [int(i) for i in runs["id"]]
    titles: Mapping[int, str] = dict(zip(ids, runs["title"], strict=True))
    shared = st.session_state.get(SHARED_RUN)
    if key in st.session_state and st.session_state[key] not in ids:
        del st.session_state[key]  # the run it held is gone
    index = ids.index(shared) if shared in ids else 0
    picked = st.selectbox("Run", ids, index=index, format_func=lambda i: titles[i], key=key)
    st.session_state[SHARED_RUN] = picked
    return picked


def review_history(changes: Sequence[Any]) -> None:
    """A sample's reviews, newest first, in a table to scroll and sort: when, who, and which of the verdict and
    the note each changed (`changes`: db.reviews.ReviewChange). Notes stay text (a table cell is never Markdown)."""
    if not changes:
        return
    with st.expander(f"Review history ({len(changes)})"):
        rows = [
            {
                "when": formatting.when(c.at),
                "who": c.reviewer,
                "verdict": (
                    f"{c.verdict_before or '–'} → {c.verdict}"
                    if c.verdict_changed
                    else (f"{c.verdict} (again)" if c.gave_verdict else "")
                ),
                "note": (c.note or "(cleared)") if c.note_changed else "",
                "note before": (c.note_before or "") if c.note_changed else "",
            }
            for c in changes
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def case_view(case: dict[str, Any] | None) -> None:
    """One scored sample: image, context image, both scores, rank, where each stands among the training normals,
    and its nearest training images."""
    if case is None:
        st.warning("This sample is not part of the run.")
        return
    st.markdown(f"**{plain(case['key'])}** · {plain(case['location'] or '')}")
    columns = st.columns([1, 1, 2])
    if case["image"] is not None:
        columns[0].image(case["image"], caption="image", width=160)
        if case["context_image"] is not None:
            columns[1].image(case["context_image"], caption=f"context image ({case['context']})", width=160)
        else:
            columns[1].caption(f"No context image: this run did not record its context ({case['context']}).")
    with columns[2]:
        st.markdown(
            f"S_NND **{case['nnd_text']}** (rank {case['rank_nnd']:,} of {case['scored']:,}) · "
            f"{case['standing_nnd']}  \n"
            f"S_LH **{case['lh_text']}** (rank {case['rank_lh']:,}) · {case['standing_lh']}  \n"
            f"label {plain(case['label'] or '–')} · split {plain(case['split'] or '–')}"
        )
        if case.get("copies"):
            shown = ", ".join(plain(key) for key in case["copies"][:5]) + (" …" if len(case["copies"]) > 5 else "")
            st.markdown(
                f"Exact copies of this file in the dataset: {shown}. A sample that trained is scored without its "
                "copies (they would be its nearest neighbours at distance 0), so they are not among its neighbours."
            )
        if case["verdict"]:
            st.markdown(f"Verdict **{plain(case['verdict'])}** by {plain(case['reviewer'])}")
        if case["note"]:
            st.text(f"Note: {case['note']}")  # plain text: never Markdown, never HTML
            if case.get("noted_by"):
                st.caption(f"note by {plain(case['noted_by'])} · {formatting.when(case['noted_at'])}")
        review_history(case.get("history") or [])
    neighbours = case["neighbours"]
    if neighbours:
        st.markdown(
            "**Nearest training images**: the closest images the model learned as normal. A sample ranks high "
            "when even these are not alike (low cosine similarity; S_NND is minus the best one, averaged over the "
            "test-time views, and on colour photographs also over the best match of the pooled features)."
        )
        st.image(
            [n["image"] for n in neighbours],
            caption=[f"{plain(n['key'])} · cos {n['similarity']:.3f}" for n in neighbours],
            width=96,
        )
