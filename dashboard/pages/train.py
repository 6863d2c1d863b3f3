"""Train: pick the normal images, keep or change the settings (every field explains itself), submit,
and watch the queue and the running job live: progress, ETA, the context, content and total losses and α."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, datasets, jobs, presets, runs, settings, widgets

ALPHA_CAPTIONS = {
    "constant": "α weights the content-alignment loss; it is 1 from the first step (the CPU recipe: with α near 0 "
    "the context loss collapses the features first, docs/quality.md).",
    "linear": "α weights the content-alignment loss and rises from 0 to 1 (the paper): early steps only separate "
    "the two contexts, so the content loss does not pull everything together before the clusters exist.",
}

st.title("Train")
st.caption(
    "The worker trains in the background: leave this page or close the browser, and come back later. "
    "The settings start from a preset; hover the ? of any field for what it does."
)

registered = datasets.listing(registered_only=True)
if registered.empty:
    st.info("Register a dataset on the Data page first.")
    st.stop()

ids = [int(i) for i in registered["id"]]
titles = dict(zip(ids, registered["title"], strict=True))
top = st.columns([3, 2, 2])
dataset_id = top[0].selectbox("Dataset", ids, format_func=lambda i: titles[i], key="train_dataset")
facts = datasets.dataset_facts(dataset_id)
with top[1]:
    normal = widgets.normal_label_choice(facts["labels"], facts["default_normal"], key=f"train_normal_{dataset_id}")
preset = top[2].radio(
    "Preset",
    list(presets.PRESETS),
    index=1 if settings.has_gpu() else 0,
    key="train_preset",
    help="Starting values for the form; every field stays editable.",
)
st.caption(presets.PRESET_NOTES[preset])
if normal is None:
    st.caption(
        "All samples train and are scored leave-one-out (an image is never its own nearest neighbour): "
        "the most out-of-place ones rank first."
    )

base = jobs.suggested_config(dataset_id, preset, normal, facts=facts)
form_key = f"train_{dataset_id}_{preset}_{normal}".replace(" ", "_")
config = widgets.train_form(base, splits=facts["splits"], key=form_key)
if config is not None:
    submitted = jobs.submit_training(dataset_id, config)
    if submitted.error:
        st.error(submitted.error, icon=":material/error:")
    else:
        st.session_state["train_watch"] = submitted.job_id
        st.success(submitted.message, icon=":material/check_circle:")

st.divider()


watching = jobs.jobs_active()


@st.fragment(run_every=2 if watching else None)
def live(watching: bool) -> None:
    """The queue and one job's live status, refreshed every 2 s while anything is queued or running;
    a full rerun when the last job ends, which also stops the timer."""
    queue = jobs.queue()
    st.subheader("Queue")
    if queue.empty:
        st.caption("Nothing queued or running.")
    else:
        for job in queue.itertuples():
            row = st.columns([5, 2, 1])
            row[0].write(f"**#{job.id}** {job.kind} · {widgets.plain(job.name)} · {widgets.plain(job.state)}")
            row[1].progress(float(job.progress))
            if row[2].button("Cancel", key=f"train_cancel_{job.id}", disabled=bool(job.cancel_requested)):
                st.toast(jobs.cancel(int(job.id)))
    trained = runs.listing(kinds=("train",))
    if trained.empty:
        if watching and not jobs.jobs_active():
            st.rerun()
        return
    st.subheader("Progress")
    run_ids = [int(i) for i in trained["id"]]
    watch = st.session_state.get("train_watch")
    # the run just queued here, else one that runs or has finished: a queued one has nothing to show yet
    default = watch if watch in run_ids else runs.default_runs(trained)[0]
    job_id = st.selectbox(
        "Training run",
        run_ids,
        index=run_ids.index(default),
        format_func=dict(zip(run_ids, trained["title"], strict=True)).get,
        key="train_watch_pick",
    )
    status = jobs.job_status(job_id)
    cols = st.columns(4)
    cols[0].metric("Status", status["status"])
    cols[1].metric("Phase", status["phase"] or "–")
    cols[2].metric("ETA", status["eta"] or "–", help="Time left in the current phase, at the pace so far.")
    cols[3].metric("Device", status["device"] or "–")
    st.progress(status["progress"], text=widgets.plain(status["state"]))
    if status["error"]:
        st.error(status["error"], icon=":material/error:")
    chance = charts.content_chance(status["train"])
    st.plotly_chart(
        charts.training_curves(jobs.step_metrics(job_id), chance=chance, method=status["train"].get("method")),
        key="train_curves",
        width="stretch",
    )
    st.caption(ALPHA_CAPTIONS.get(status["train"].get("alpha_schedule", "constant"), ""))
    if chance is not None:
        st.caption(
            "Dashed: the content loss of a head that tells no image apart. The content loss leaves it once the "
            "encoder tells this run's images apart; on one-class data that takes a while: every image looks alike."
        )
    if status["finished"] and status["status"] == "succeeded":
        st.success(status["summary_line"], icon=":material/check_circle:")
        st.page_link("dashboard/pages/review.py", label="Review the ranked list", icon=":material/fact_check:")
    if watching and not jobs.jobs_active():
        st.rerun()


live(watching)
