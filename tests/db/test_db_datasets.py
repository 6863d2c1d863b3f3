"""Datasets and samples: upserts by key keep ids, quality flags, thumbnails, counts."""

import pytest

from db import datasets


@pytest.fixture
def dataset_id(sessions):
    with sessions.begin() as session:
        return datasets.create_dataset(session=session, location="/data/scans/").id


def test_a_dataset_is_named_after_its_folder(sessions, dataset_id):
    with sessions() as session:
        dataset = datasets.get_dataset(session=session, dataset_id=dataset_id)
        assert (dataset.name, dataset.location, dataset.kind) == ("scans", "/data/scans/", None)
    with pytest.raises(ValueError, match="needs a location"):
        with sessions.begin() as session:
            datasets.create_dataset(session=session, location="  ")


def test_registering_again_updates_samples_in_place(sessions, dataset_id):
    first = [{"key": f"no/{i}.png", "label": "no", "readable": True, "position": i} for i in range(3)]
    with sessions.begin() as session:
        ids = datasets.upsert_samples(session=session, dataset_id=dataset_id, samples=first)
    again = [{"key": "no/1.png", "label": "yes", "readable": False, "reason": "truncated image data", "position": 0}]
    again.append({"key": "no/9.png", "label": "no", "readable": True, "reason": None, "position": 1})
    with sessions.begin() as session:
        new_ids = datasets.upsert_samples(session=session, dataset_id=dataset_id, samples=again)
        assert datasets.mark_missing(session=session, dataset_id=dataset_id, present=new_ids) == 2
    assert new_ids["no/1.png"] == ids["no/1.png"]  # results and reviews keep pointing at it
    with sessions() as session:
        table = datasets.read_samples(session=session, dataset_id=dataset_id)
        summary = datasets.dataset_summary(session=session, dataset_id=dataset_id)
    assert table["key"][:2] == ["no/1.png", "no/9.png"]
    assert table["label"][0] == "yes" and table["readable"].tolist()[:2] == [False, True]
    assert summary["samples"] == 4
    assert sorted(u["reason"] for u in summary["unreadable"]) == [
        datasets.GONE,
        datasets.GONE,
        "truncated image data",
    ]


def test_ensure_samples_adds_only_what_is_missing(sessions, dataset_id):
    with sessions.begin() as session:
        ids = datasets.upsert_samples(
            session=session, dataset_id=dataset_id, samples=[{"key": "a", "label": "x", "width": 8}]
        )
        both = datasets.ensure_samples(
            session=session, dataset_id=dataset_id, samples=[{"key": "a", "label": "other"}, {"key": "b", "label": "y"}]
        )
    assert both["a"] == ids["a"] and set(both) == {"a", "b"}
    with sessions() as session:
        table = datasets.read_samples(session=session, dataset_id=dataset_id)
    assert dict(zip(table["key"], table["label"], strict=True)) == {"a": "x", "b": "y"}
    assert table["width"].tolist() == [8, -1]


def test_duplicates_point_at_the_first_of_their_group(sessions, dataset_id):
    samples = [{"key": k, "sha256": "h1" if k != "d" else "h2"} for k in "abcd"]
    with sessions.begin() as session:
        ids = datasets.upsert_samples(session=session, dataset_id=dataset_id, samples=samples)
        datasets.mark_duplicates(session=session, dataset_id=dataset_id, groups=[["a", "b", "c"]])
    with sessions() as session:
        table = datasets.read_samples(session=session, dataset_id=dataset_id)
        assert datasets.dataset_summary(session=session, dataset_id=dataset_id)["duplicates"] == 2
    assert table["duplicate_of"].tolist() == [-1, ids["a"], ids["a"], -1]
    with sessions() as session:
        assert datasets.exact_copies(session=session, sample_id=ids["b"]) == ["a", "c"]
        assert datasets.exact_copies(session=session, sample_id=ids["d"]) == []
        assert datasets.exact_copies(session=session, sample_id=10_000) == []


def test_thumbnails_are_stored_and_replaced(sessions, dataset_id):
    with sessions.begin() as session:
        ids = datasets.upsert_samples(session=session, dataset_id=dataset_id, samples=[{"key": "a"}, {"key": "b"}])
        datasets.write_thumbnails(session=session, pngs={ids["a"]: b"png-a"}, size=64)
        datasets.write_thumbnails(session=session, pngs={ids["a"]: b"png-a2"}, size=64)
    with sessions() as session:
        assert datasets.read_thumbnails(session=session, sample_ids=[ids["a"], ids["b"]]) == {ids["a"]: b"png-a2"}


def test_a_moved_source_keeps_its_samples(sessions, dataset_id):
    with sessions.begin() as session:
        datasets.upsert_samples(session=session, dataset_id=dataset_id, samples=[{"key": "a"}])
        datasets.relocate_dataset(session=session, dataset_id=dataset_id, location="/new/place")
    with sessions() as session:
        assert datasets.get_dataset(session=session, dataset_id=dataset_id).location == "/new/place"
        assert list(datasets.sample_ids(session=session, dataset_id=dataset_id)) == ["a"]


def test_sample_counts_tally_locations_and_keys(sessions, dataset_id):
    with sessions.begin() as session:
        empty = datasets.create_dataset(session=session, location="/data/empty/").id
        assert datasets.sample_tally(session=session, dataset_id=dataset_id) == (0, None)
        ids = datasets.upsert_samples(
            session=session,
            dataset_id=dataset_id,
            samples=[{"key": "a.png", "location": "/data/scans/a.png"}, {"key": "b.png", "location": None}],
        )
    with sessions() as session:
        assert datasets.sample_counts(session=session) == {dataset_id: 2}  # a dataset without samples is absent
        assert empty not in datasets.sample_counts(session=session)
        assert datasets.sample_tally(session=session, dataset_id=dataset_id) == (2, max(ids.values()))
        assert datasets.sample_locations(session=session, dataset_id=dataset_id) == {
            ids["a.png"]: "/data/scans/a.png",
            ids["b.png"]: None,
        }
        assert datasets.sample_key(session=session, sample_id=ids["b.png"]) == "b.png"
        assert datasets.sample_key(session=session, sample_id=max(ids.values()) + 1) is None
