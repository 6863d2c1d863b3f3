"""Data: register an image set, see what it holds and what could not be read, and judge the context
augmentations (distinctiveness, alignment) on a few of its samples before training."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import datasets, settings, widgets

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
        st.progress(job["progress"], text=f"Registering: {widgets.plain(job['message'] or job['status'])}")
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
counts = st.columns(5)
counts[0].metric("Images", f"{overview['samples']:,}")
counts[1].metric("Labels", len([label for label in overview["by_label"] if label is not None]))
counts[2].metric("Splits", len([split for split in overview["by_split"] if split is not None]))
counts[3].metric("Unreadable", overview["unreadable"], help="Files that could not be decoded; they never train.")
counts[4].metric("Duplicates", overview["duplicates"], help="Byte-identical copies of another sample.")

st.subheader("Counts by label and split")
table: pd.DataFrame = overview["table"]
if table.empty:
    st.caption("Nothing counted yet.")
else:
    st.dataframe(table, width="stretch")

st.subheader("Quality flags")
flags: pd.DataFrame = datasets.quality_flags(dataset_id)
if flags.empty:
    st.caption("Every image could be read and none is a duplicate.")
else:
    st.dataframe(flags, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(flags)))

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
