"""Evaluate, where labels exist: ROC curves with AUROC for S_NND and S_LH, score histograms by label, the
silhouette of the two context clusters; and other runs on the same data for comparison."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, formatting, results, runs, widgets

st.title("Evaluate")
st.caption(
    "Needs labels and a normal class: anomalous = every other label. AUROC 0.5 is chance, 1.0 perfect. "
    "The silhouette measures how cleanly the encoder separates images from their context images (> 0: apart)."
)

succeeded = widgets.require_runs(
    runs.listing(status="succeeded", labelled_only=True),
    "No finished run with labels yet. A run needs a normal class and labelled scored images.",
)

job_id = widgets.run_picker(succeeded, key="evaluate_run")
assert job_id is not None
evaluation = results.evaluation(job_id)
metrics = st.columns(5)
metrics[0].metric("AUROC S_NND", formatting.number(evaluation["auroc_nnd"]))
metrics[1].metric("AUROC S_LH", formatting.number(evaluation["auroc_lh"]))
metrics[2].metric(
    "AUROC raw pixels",
    formatting.number(evaluation["auroc_pixels"]),
    help="Nearest neighbour on raw pixels, no training: the floor. A run below it did not pay off.",
)
metrics[3].metric(
    "Silhouette", formatting.number(evaluation["silhouette"]), help="Of the two context clusters (App. E.4)."
)
metrics[4].metric("Normal / anomalous", f"{evaluation['normal']:,} / {evaluation['anomalous']:,}")

left, right = st.columns(2)
with left:
    st.subheader("ROC")
    st.plotly_chart(charts.roc_curves(evaluation["scores"]), key="evaluate_roc", width="stretch")
with right:
    st.subheader("Scores by label")
    score = st.radio("Score", ["s_nnd", "s_lh"], format_func=charts.SCORES.get, horizontal=True, key="evaluate_score")
    by = st.radio(
        "Group by", ["label", "kind"], format_func={"label": "label", "kind": "normal / anomalous"}.get,
        horizontal=True, key="evaluate_by",
    )  # fmt: skip
    st.plotly_chart(charts.score_histograms(evaluation["scores"], score, by), key="evaluate_hist", width="stretch")

st.subheader("Compare with other runs on the same data")
same = succeeded[succeeded["dataset_id"] == evaluation["dataset_id"]]  # the page's runs on this run's dataset
others = [int(i) for i in same["id"] if int(i) != job_id]
titles = dict(zip((int(i) for i in same["id"]), same["title"], strict=True))
if not others:
    st.caption(
        "No other labelled run on this dataset: train an ablation (context_only, content_only), SimCLR, or a "
        "classical reference (pixels_knn, pixels_pca_knn, pixels_iforest)."
    )
else:
    picked = st.multiselect("Runs", others, default=others[:3], format_func=titles.get, key="evaluate_compare")
    compare_score = st.radio(
        "Score", ["s_nnd", "s_lh"], format_func=charts.SCORES.get, horizontal=True, key="evaluate_compare_score"
    )
    st.plotly_chart(
        charts.roc_comparison(
            results.roc_frames([job_id, *picked], titles=titles, scores={job_id: evaluation["scores"]}), compare_score
        ),
        key="evaluate_roc_compare",
        width="stretch",
    )
