"""Curation for the pages: every flagged file of a dataset with its reason (unreadable, an exact duplicate, a
near duplicate), the duplicate groups side by side, the curation list the Review page works through, and the
export of the cleaned dataset (kept files) and of the flagged files with reasons, as CSV.

What is kept: every readable file, less those whose current verdict is one the curator leaves out (default
"remove"), and of each exact-duplicate group one file (one marked "keep", else the first not left out).
Near duplicates are kept unless the curator leaves them out by a verdict: they differ, and which to keep is
the curator's call, made on the Review page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import pandas as pd

from dashboard import connection
from dashboard.datasets import _sample_frame
from dashboard.reviews import with_reviews
from db import curation as db_curation

KINDS = ("unreadable", "exact duplicate", "near duplicate")
LEAVE_OUT = ("remove", "anomaly")  # verdicts that leave a file out of the kept list by default, where offered
KEEP = "keep"  # the verdict that keeps a copy of an exact-duplicate group besides (or instead of) its first
FLAG_COLUMNS = ["sample_id", "sample", "kind", "problem", "location", "group", "on_review_list"]


def flags(dataset_id: int) -> pd.DataFrame:
    """One row per flagged file: sample_id, sample (key), kind (one of KINDS), problem (the reason in words),
    location, group (the key of the group's first file; empty for unreadable), on_review_list."""
    samples = _sample_frame(dataset_id)
    if samples.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    by_id = samples.set_index("id")
    on_list = set(_item_ids(dataset_id))
    rows = []
    for r in samples[~samples["readable"]].itertuples():
        rows.append((r.id, r.key, "unreadable", f"unreadable: {r.reason or 'unknown reason'}", r.location, ""))
    for r in samples[samples["duplicate_of"] >= 0].itertuples():
        first = by_id.loc[r.duplicate_of, "key"] if r.duplicate_of in by_id.index else str(r.duplicate_of)
        rows.append((r.id, r.key, "exact duplicate", f"duplicate of {first} (the same bytes)", r.location, first))
    for r in samples[samples["near_duplicate_of"] >= 0].itertuples():
        if r.near_duplicate_of not in by_id.index:
            continue
        first = by_id.loc[r.near_duplicate_of]
        bits = _bits(r.phash, first["phash"]), _bits(r.dhash, first["dhash"])
        problem = f"near duplicate of {first['key']} (phash {bits[0]} bits, dhash {bits[1]} bits apart)"
        rows.append((r.id, r.key, "near duplicate", problem, r.location, first["key"]))
    frame = pd.DataFrame(rows, columns=FLAG_COLUMNS[:-1])
    frame["on_review_list"] = frame["sample_id"].isin(on_list)
    return frame.astype({"sample_id": "int64"}).reset_index(drop=True)


def _bits(a: str | None, b: str | None) -> str:
    """Bits apart of two hex hashes (engine.near_duplicates.hash_distance; that module's imagehash is too heavy
    for the pages)."""
    return "?" if not a or not b else str((int(a, 16) ^ int(b, 16)).bit_count())


def duplicate_groups(dataset_id: int, kind: str) -> list[list[dict]]:
    """Groups of `kind` ("exact duplicate" or "near duplicate"), each a list of its files (the first one
    first): sample_id, key, caption."""
    samples = _sample_frame(dataset_id)
    if samples.empty:
        return []
    column = "duplicate_of" if kind == "exact duplicate" else "near_duplicate_of"
    by_id = samples.set_index("id")
    members: dict[int, list[int]] = {}
    for sample_id, first in zip(samples["id"], samples[column], strict=True):
        if first >= 0 and first in by_id.index:
            members.setdefault(int(first), [int(first)]).append(int(sample_id))
    groups = []
    for first, ids in members.items():
        group = []
        for i in ids:
            caption = by_id.loc[i, "key"]
            if kind == "near duplicate" and i != first:
                caption += f" · phash {_bits(by_id.loc[i, 'phash'], by_id.loc[first, 'phash'])} bits"
            group.append({"sample_id": i, "key": by_id.loc[i, "key"], "caption": caption})
        groups.append(group)
    return groups


def _item_ids(dataset_id: int) -> list[int]:
    with connection.session() as session:
        return db_curation.item_ids(session=session, dataset_id=dataset_id)


def add_to_review(sample_ids: Sequence[int], added_by: str) -> str:
    """Put flagged files on the Review page's curation list; returns what happened, in words."""
    if not len(sample_ids):
        return "Nothing selected."
    with connection.session() as session:
        added = db_curation.add_items(session=session, sample_ids=sample_ids, added_by=added_by)
    already = len(set(sample_ids)) - added
    return f"Added {added} file{'s' if added != 1 else ''} to the review list" + (
        f" ({already} already there)." if already else "."
    )


def review_items(dataset_id: int) -> pd.DataFrame:
    """The curation list of a dataset, in the order added: sample_id, key, location, label, reasons (every
    flag of the file, joined), readable, verdict, note, reviewer, reviewed_at."""
    ids = _item_ids(dataset_id)
    columns = ["sample_id", "key", "location", "label", "reasons", "readable"]
    if not ids:
        return with_reviews(pd.DataFrame(columns=columns).astype({"sample_id": "int64"}))
    samples = _sample_frame(dataset_id).set_index("id")
    reasons = flags(dataset_id).groupby("sample_id")["problem"].agg("; ".join)
    rows = [
        {
            "sample_id": i,
            "key": samples.loc[i, "key"],
            "location": samples.loc[i, "location"],
            "label": samples.loc[i, "label"],
            "reasons": reasons.get(i, "sent to review by hand"),
            "readable": bool(samples.loc[i, "readable"]),
        }
        for i in ids
        if i in samples.index
    ]
    return with_reviews(pd.DataFrame(rows, columns=columns))


def leave_out_choices(dataset_id: int, verdicts: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The verdicts the export may leave out (those in use in the dataset, `verdicts`, and "remove") and the
    default choice among them."""
    # Only the verdicts in use: every file's current review, not every file's fate (decisions walks the
    # duplicate groups, seconds at 100k files, and the Data page asks this on every load).
    ids = _sample_frame(dataset_id)["id"]
    reviewed = with_reviews(pd.DataFrame({"sample_id": ids.astype("int64")}), fresh=True)
    used = reviewed["verdict"].dropna().unique().tolist()
    options = list(dict.fromkeys(["remove", *verdicts, *sorted(used)]))
    return options, [v for v in LEAVE_OUT if v in options]


def decisions(dataset_id: int, leave_out: Sequence[str]) -> pd.DataFrame:
    """Every file of the dataset with its fate: sample_id, key, location, label, split, kept (bool), reasons
    (every flag, joined), decision (why it is kept or left out), verdict, note, reviewer."""
    samples = _sample_frame(dataset_id)
    columns = ["sample_id", "key", "location", "label", "split", "readable", "duplicate_of"]
    if samples.empty:
        frame = pd.DataFrame(columns=columns)
    else:
        frame = samples.rename(columns={"id": "sample_id"})[columns]
    frame = with_reviews(frame.astype({"sample_id": "int64"}), fresh=True)
    reasons = flags(dataset_id).groupby("sample_id")["problem"].agg("; ".join)
    frame["reasons"] = [reasons.get(i, "") for i in frame["sample_id"]]
    left_out = frame["verdict"].isin(list(leave_out))
    decision = pd.Series("kept", index=frame.index, dtype=object)
    decision[left_out] = [f"left out: verdict {v}" for v in frame.loc[left_out, "verdict"]]
    decision[~frame["readable"]] = "left out: unreadable"
    out = left_out | ~frame["readable"]
    keys = dict(zip(frame["sample_id"], frame["key"], strict=True))
    group = frame["duplicate_of"].where(frame["duplicate_of"] >= 0, frame["sample_id"])  # the group's first id
    copied = frame["readable"] & group.duplicated(keep=False)  # only groups of two or more: a Python loop
    for _, members in frame[copied].groupby(group[copied]):
        survivors = members[~out[members.index]]
        chosen = survivors[survivors["verdict"] == KEEP]
        kept = chosen.index if len(chosen) else survivors.index[:1]
        for index in survivors.index.difference(kept):
            decision[index] = f"left out: exact duplicate of {keys[frame.loc[kept[0], 'sample_id']]}"
            out[index] = True
    frame["kept"] = ~out
    frame["decision"] = decision
    return frame.drop(columns=["duplicate_of"])


def kept_csv(dataset_id: int, leave_out: Sequence[str]) -> bytes:
    """The cleaned dataset: one row per kept file, as a manifest (path, label, split, key) that
    `--data` and the Data page read back."""
    frame = decisions(dataset_id, leave_out)
    kept = frame[frame["kept"]]
    out = pd.DataFrame({"path": kept["location"], "label": kept["label"], "split": kept["split"], "key": kept["key"]})
    return _csv(out)


def flagged_csv(dataset_id: int, leave_out: Sequence[str]) -> bytes:
    """Every flagged or left-out file with its reasons: key, path, reasons, decision, verdict, note, reviewer."""
    frame = decisions(dataset_id, leave_out)
    flagged = frame[(frame["reasons"] != "") | ~frame["kept"]]
    out = pd.DataFrame(
        {
            "key": flagged["key"],
            "path": flagged["location"],
            "label": flagged["label"],
            "reasons": flagged["reasons"],
            "decision": flagged["decision"],
            "verdict": flagged["verdict"],
            "note": flagged["note"],
            "reviewer": flagged["reviewer"],
        }
    )
    return _csv(out)


def _csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    return buffer.getvalue().encode("utf-8")
