"""Runs: every training and scoring run with its status, config, time, device, AUROC and silhouette;
two runs side by side; and scoring another dataset (a screening batch) with a finished model."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, datasets, jobs, runs

st.title("Runs")
st.caption("Training runs and screening batches scored with them. AUROC and silhouette appear where labels exist.")

listed = runs.listing()
if listed.empty:
    st.info("No runs yet: start one on the Train page.")
    st.stop()

st.dataframe(
    listed[runs.RUN_COLUMNS],
    hide_index=True,
    width="stretch",
    column_config=runs.RUN_COLUMN_CONFIG,
    key="runs_table",
)

st.subheader("Side by side")
ids = [int(i) for i in listed["id"]]
titles = dict(zip(ids, listed["title"], strict=True))
picked = st.multiselect(
    "Pick two runs",
    ids,
    default=runs.default_runs(listed, 2),  # running or finished runs: a queued one has nothing to compare yet
    max_selections=2,
    format_func=titles.get,
    key="runs_compare",
)
if picked:
    comparison = runs.compare_runs(picked)
    st.plotly_chart(charts.run_comparison(comparison["metrics"]), key="runs_compare_chart", width="stretch")
    st.dataframe(comparison["config"], width="stretch", key="runs_compare_config")
    st.caption("Settings that differ between the runs come first.")
    columns = st.columns(len(picked))
    for column, job_id in zip(columns, picked, strict=True):
        with column:
            st.markdown(f"**{titles[job_id]}**")
            st.plotly_chart(
                charts.training_curves(jobs.step_metrics(job_id)), key=f"runs_curves_{job_id}", width="stretch"
            )

st.subheader("Score another dataset with a finished model")
st.caption("No retraining: the run's encoder and its training images score the new batch.")
# a classical reference trains no model: it has nothing to score another dataset with
finished = listed[(listed["kind"] == "train") & (listed["status"] == "succeeded") & listed["has_model"]]
registered = datasets.listing(registered_only=True)
if finished.empty or registered.empty:
    st.caption("Needs a succeeded training run (not a classical reference: it has no model) and a registered dataset.")
else:
    with st.form("runs_score"):
        model_ids = [int(i) for i in finished["id"]]
        model = st.selectbox("Model (training run)", model_ids, format_func=titles.get, key="runs_score_model")
        dataset_titles = dict(zip((int(i) for i in registered["id"]), registered["title"], strict=True))
        dataset_id = st.selectbox(
            "Dataset to score", list(dataset_titles), format_func=dataset_titles.get, key="runs_score_dataset"
        )
        split = st.text_input(
            "Only this split (optional)", help="Empty = score every image of the dataset.", key="runs_score_split"
        )
        normal = st.text_input(
            "Label of normal images (optional)",
            help="When the batch is labelled, to report AUROC; empty = unlabelled.",
            key="runs_score_normal",
        )
        if st.form_submit_button("Queue scoring", type="primary"):
            outcome = jobs.submit_scoring(model, dataset_id, split=split or None, normal_label=normal or None)
            if outcome.error:
                st.error(outcome.error, icon=":material/error:")
            else:
                st.success(outcome.message, icon=":material/check_circle:")
            for warning in outcome.warnings:  # e.g. training images inside the batch
                st.warning(warning, icon=":material/warning:")
