"""Data: register an image set, see what it holds; its unreadable files, duplicates and near duplicates with
reasons, sent to the Review page's curation list; the cleaned list as CSV; and the context augmentations
(distinctiveness, alignment) on a few of its samples before training."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from dashboard import auth, curation, datasets, settings, widgets
from dashboard.gallery import display

st.title("Data")
st.caption(
    "Register a folder, a CSV manifest, a .npz or an upload; check counts, thumbnails and unreadable or "
    "duplicate files; look at the context augmentations before you train."
)

with st.expander("Register a dataset"):
    by_path, by_upload = st.tabs(["Path on this machine", "Upload images or a zip"])
    with by_path, st.form("data_register_path"):
        location = st.text_input(
            "Folder, .zip, .csv or .npz",
            placeholder="/data/scans/2024  or  /data/manifest.csv",
            key="data_location",
            help="A folder of images (root/<label>/*, root/<split>/<label>/* or flat), a .zip of one, a CSV "
            "manifest with a path column (and optional label and split), a MedMNIST-style .npz, or 'digits'.",
        )
        name = st.text_input(
            "Name (optional)", key="data_path_name", help="Shown in every list; default: the folder name."
        )
        if st.form_submit_button("Register", type="primary"):
            outcome = datasets.register_location(location, name or None)
            st.session_state["data_outcome"] = outcome
            if outcome.dataset_id is not None:
                st.session_state["data_dataset"] = outcome.dataset_id
    with by_upload, st.form("data_register_upload", clear_on_submit=True):
        files = st.file_uploader(
            f"Images, or one .zip of an image folder (at most {settings.upload_limit_mb():.0f} MB)",
            accept_multiple_files=True,
            type=["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp", "zip"],
            help="Stored in the data directory's uploads folder, then registered like a folder.",
            key="data_upload",
        )
        name = st.text_input("Name (optional)", key="data_upload_name")
        if st.form_submit_button("Upload and register", type="primary"):
            outcome = datasets.register_upload([(f.name, f.getvalue()) for f in files or []], name or None)
            st.session_state["data_outcome"] = outcome
            if outcome.dataset_id is not None:
                st.session_state["data_dataset"] = outcome.dataset_id

outcome = st.session_state.pop("data_outcome", None)
if outcome is not None:
    if outcome.error:
        st.error(widgets.plain(outcome.error), icon=":material/error:")
    else:
        st.success(widgets.plain(outcome.message), icon=":material/check_circle:")
    for warning in outcome.warnings:
        st.warning(widgets.plain(warning), icon=":material/warning:")

watching = datasets.registrations_active()  # read before the datasets, so a registration ending now is seen
with widgets.database_errors("list the datasets"):
    known = datasets.listing()
if known.empty:
    st.info("No dataset yet. Register one above; the bundled demo appears once the worker has started.")
    st.stop()

ids = [int(i) for i in known["id"]]
titles = dict(zip(ids, known["title"], strict=True))
if st.session_state.get("data_dataset") not in ids:
    st.session_state["data_dataset"] = ids[0]
dataset_id = st.selectbox("Dataset", ids, format_func=lambda i: titles[i], key="data_dataset")


@st.fragment(run_every=2 if watching else None)
def registration_status(dataset_id: int, watching: bool) -> None:
    """Live progress while the worker inventories a dataset; a full rerun when the last registration ends."""
    job = datasets.registration(dataset_id)
    if job is not None and job["active"]:
        st.progress(job["progress"], text=widgets.plain(job["text"]))
    elif job is not None and job["status"] == "failed":
        st.error(f"Registration failed: {widgets.plain(job['error'])}", icon=":material/error:")
    if watching and not datasets.registrations_active():
        st.rerun()


registration_status(dataset_id, watching)

overview = datasets.dataset_overview(dataset_id)
st.caption(
    f"{widgets.plain(overview['location'])} · {overview['kind'] or 'not yet inspected'} · "
    f"labels from {overview['label_origin']}"
)
if not overview["samples"]:  # nothing to count, flag or show yet: say why, and what to do, instead of zeros
    registering = datasets.registration(dataset_id)
    if registering is None or registering["status"] in ("queued", "running"):
        st.info(
            "This dataset has not been read yet: its counts, quality flags and thumbnails appear here once the "
            "worker has registered it (progress above).",
            icon=":material/hourglass_top:",
        )
    elif registering["status"] == "failed":
        st.info("Registration failed (above): fix the location, then register it again.", icon=":material/info:")
    elif registering["status"] == "cancelled":
        st.info("Its registration was cancelled: register the location again above.", icon=":material/info:")
    else:
        st.info(
            "No images were found at this location. Check that it holds image files (or a zip, or a CSV "
            "manifest naming them), then register it again above.",
            icon=":material/info:",
        )
    st.stop()
flags: pd.DataFrame = curation.flags(dataset_id)
counts = st.columns(6)
counts[0].metric("Images", f"{overview['samples']:,}")
counts[1].metric("Labels", len([label for label in overview["by_label"] if label is not None]))
counts[2].metric("Splits", len([split for split in overview["by_split"] if split is not None]))
counts[3].metric("Unreadable", overview["unreadable"], help="Files that could not be decoded; they never train.")
counts[4].metric("Duplicates", overview["duplicates"], help="Byte-identical copies of another sample.")
counts[5].metric(
    "Near duplicates",
    int((flags["kind"] == "near duplicate").sum()),
    help=(
        "Files that look like another one: perceptual hashes within 12 bits and pixels closer than nearly any two "
        "other images of this set are. A re-encode, a resize, a slight crop."
    ),
)

if overview["too_small_to_compare"]:
    st.caption(
        f"Near duplicates are not looked for among the {overview['too_small_to_compare']:,} images under "
        f"{overview['near_duplicate_min_side']} px a side: at that size two different images look as alike as a "
        "copy does."
    )

st.subheader("Counts by label and split")
table: pd.DataFrame = overview["table"]
if table.empty:
    st.caption("Nothing counted yet.")
else:
    st.dataframe(table, width="stretch")

st.subheader("Quality flags")
if flags.empty:
    st.caption("Every image could be read, and none is a duplicate or a near duplicate of another.")
else:
    st.caption(
        "Every unreadable file, exact duplicate and near duplicate (it looks like another file: a re-encode, a "
        "slight crop), with its reason. Pick rows to send them to the Review page's curation list."
    )
    picked = st.dataframe(
        flags.drop(columns=["sample_id"]),
        hide_index=True,
        width="stretch",
        height=min(400, 38 + 35 * len(flags)),
        on_select="rerun",
        selection_mode="multi-row",
        key="data_flags",
    )
    chosen = flags.iloc[list(picked.selection.rows)]["sample_id"].tolist() if picked else []
    actions = st.columns(2)
    if actions[0].button(f"Add the {len(chosen)} selected to review", disabled=not chosen, key="data_flags_add"):
        st.toast(curation.add_to_review(chosen, auth.current_user()))
    if actions[1].button(f"Add all {len(flags)} to review", key="data_flags_add_all"):
        st.toast(curation.add_to_review(flags["sample_id"].tolist(), auth.current_user()))

for kind, title in (("exact duplicate", "Exact duplicates"), ("near duplicate", "Near duplicates")):
    groups = curation.duplicate_groups(dataset_id, kind)
    if not groups:
        continue
    st.subheader(f"{title} ({len(groups)} group{'s' if len(groups) != 1 else ''})")
    shown = 20
    for group in groups[:shown]:
        pngs = datasets.thumbnails([m["sample_id"] for m in group])
        with st.container(border=True):
            for cell, member in zip(st.columns(max(len(group), 4)), group, strict=False):
                if member["sample_id"] in pngs:
                    cell.image(display(pngs[member["sample_id"]]), width=96)
                cell.caption(widgets.plain(member["caption"]))
    if len(groups) > shown:
        st.caption(f"The first {shown} groups; every file of every group is in the table above and the export.")

st.subheader("Export a cleaned list")
options, default = curation.leave_out_choices(dataset_id)
leave_out = st.multiselect(
    "Leave out files whose verdict is",
    options,
    default=default,
    key="data_export_leave_out",
    help="Unreadable files are always left out, and of each exact-duplicate group one file is kept (one marked "
    "keep, else the first). Near duplicates stay unless a verdict leaves them out.",
)
EXPORTS = (  # (button, what it writes, file and key suffix, help)
    ("Kept files (CSV)", curation.kept_csv, "kept",
     "path, label, split, key of each kept file: a manifest the Data page and --data read back."),
    ("Flagged files with reasons (CSV)", curation.flagged_csv, "flagged", None),
)  # fmt: skip
for column, (label, csv_of, suffix, help_text) in zip(st.columns(len(EXPORTS)), EXPORTS, strict=True):
    column.download_button(
        label,
        data=functools.partial(csv_of, dataset_id, leave_out),  # written only when clicked
        file_name=f"dataset-{dataset_id}-{suffix}.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key=f"data_export_{suffix}",
        help=help_text,
    )

st.subheader("Thumbnails")
labels = overview["labels"]
columns = st.columns([2, 1])
label = columns[0].selectbox("Label", ["(all)", *labels], key="data_thumb_label")
page_size = 48
pages = max(1, -(-overview["samples"] // page_size))
page = columns[1].number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="data_thumb_page")
grid = datasets.sample_thumbnails(
    dataset_id, label=None if label == "(all)" else label, offset=(page - 1) * page_size, limit=page_size
)
widgets.thumbnail_grid(grid["pngs"], grid["captions"], width=88)

st.subheader("Context augmentations")
st.caption(
    "Each row: one sample and its three candidate context images. A good context makes images clearly "
    "distinct from real ones (**distinctiveness**) while keeping what the image shows recognisable "
    "(**alignment**). Invert is the default; flip suits images with a natural up and down."
)
gallery = datasets.context_gallery(dataset_id, count=4)
if not gallery:
    st.caption("No thumbnails yet: the gallery appears when registration has finished.")
if gallery:
    names = list(gallery[0]["images"])
    for cell, name in zip(st.columns(len(names) + 1), ["sample", *names], strict=True):
        cell.markdown(f"**{name}**")
for row in gallery:
    cells = st.columns(len(row["images"]) + 1)
    cells[0].caption(widgets.plain(row["caption"]))
    for cell, image in zip(cells[1:], row["images"].values(), strict=True):
        cell.image(image, width=120)
