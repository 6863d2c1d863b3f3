"""S_NND and S_LH against brute-force references; leave-one-out is exact."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import multivariate_normal

from engine.scoring import LHScorer, NNDScorer, NonFiniteFeatures


@pytest.fixture
def bank():
    return torch.randn(60, 6, generator=torch.Generator().manual_seed(0))


def seeded(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def ledoit_wolf_rho(z: np.ndarray) -> float:
    """Ledoit & Wolf (2004), Lemma 3.2–3.4, with loops over the samples: the shrinkage ρ = b²/d² of the
    sample covariance S = (1/n)·Σ_k x_k x_kᵀ of the centred rows x_k towards m·I, m = ⟨S, I⟩, where
    ⟨A, B⟩ = tr(ABᵀ)/p, d² = ‖S − m·I‖², b̄² = (1/n²)·Σ_k ‖x_k x_kᵀ − S‖² and b² = min(b̄², d²).
    Written from the paper, not with the implementation's (scikit-learn's) function."""
    x = z - z.mean(axis=0)
    n, p = x.shape
    s = sum(np.outer(row, row) for row in x) / n
    m = np.trace(s) / p
    d2 = np.sum((s - m * np.eye(p)) ** 2) / p
    b2_bar = sum(np.sum((np.outer(row, row) - s) ** 2) / p for row in x) / n**2
    return min(b2_bar, d2) / d2


@pytest.mark.parametrize("k", [1, 3])
def test_nnd_chunked_equals_brute_force(bank, k):
    queries = torch.randn(25, 6, generator=torch.Generator().manual_seed(1))
    scorer = NNDScorer(k=k, query_chunk=7, bank_chunk=11).fit(bank)
    sims = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T
    expected = -sims.topk(k, dim=1).values.mean(dim=1)
    assert torch.allclose(scorer.anomaly_scores(queries), expected, atol=1e-6)


def test_nnd_leaves_the_sample_out_of_its_own_bank(bank):
    scorer = NNDScorer(k=2, query_chunk=5, bank_chunk=13).fit(bank)
    rows = torch.tensor([0, 17, 59, -1])
    queries = torch.cat([bank[[0, 17, 59]], seeded(1, 6, seed=8)])
    scores = scorer.anomaly_scores(queries, rows)
    for i, row in enumerate(rows.tolist()):
        keep = [j for j in range(len(bank)) if j != row]
        sims = F.normalize(queries[i : i + 1], dim=1) @ F.normalize(bank[keep], dim=1).T
        assert scores[i].item() == pytest.approx(-sims.topk(2).values.mean().item(), abs=1e-6)
    # without exclusion a training sample is its own nearest neighbour: similarity 1
    _, nearest = scorer.neighbours(bank[[5]], 1)
    assert nearest.item() == 5


def test_nnd_higher_means_more_anomalous(bank):
    scorer = NNDScorer().fit(bank)
    near = bank[:1] + 0.01
    far = -bank[:1]
    assert scorer.anomaly_scores(far) > scorer.anomaly_scores(near)


@pytest.mark.parametrize("shrinkage", ["ledoit_wolf", "fixed"])
def test_lh_is_the_gaussian_negative_log_likelihood(bank, shrinkage):
    scorer = LHScorer(shrinkage, epsilon=1e-2).fit(bank)
    z = F.normalize(bank.double(), dim=1).numpy()
    mean = z.mean(axis=0)
    cov = np.cov(z, rowvar=False, bias=True)
    if shrinkage == "fixed":
        sigma = cov + 1e-2 * np.eye(6)
    else:
        rho = ledoit_wolf_rho(z)  # from the formula: a wrong ρ in the scorer cannot pass
        assert 0 < rho < 1 and scorer.rho_ == pytest.approx(rho, rel=1e-9)
        sigma = (1 - rho) * cov + rho * np.trace(cov) / 6 * np.eye(6)
    queries = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    qn = F.normalize(queries.double(), dim=1).numpy()
    expected = -multivariate_normal(mean, sigma).logpdf(qn)
    assert np.allclose(scorer.anomaly_scores(queries).numpy(), expected, rtol=1e-5)


def test_ledoit_wolf_shrinkage_is_the_papers_where_features_are_few_and_many():
    """ρ against the formula on the regimes the scorer meets: n ≫ D (little shrinkage) and n < D (strong)."""
    for n, d, seed in [(200, 4, 10), (12, 40, 11)]:
        z = F.normalize(seeded(n, d, seed=seed).double(), dim=1)
        assert LHScorer().fit(z).rho_ == pytest.approx(ledoit_wolf_rho(z.numpy()), rel=1e-9), (n, d)
    # correlated features shrink less than isotropic noise of the same size: ρ follows the data
    base = seeded(40, 1, seed=12).double()
    correlated = F.normalize(base @ torch.ones(1, 8, dtype=torch.float64) + 0.1 * seeded(40, 8, seed=13).double())
    isotropic = F.normalize(seeded(40, 8, seed=14).double(), dim=1)
    assert LHScorer().fit(correlated).rho_ < LHScorer().fit(isotropic).rho_


def _refit_nll(keep: torch.Tensor, query: torch.Tensor, shrinkage: str, rho: float) -> float:
    """S_LH of one query against a Gaussian fitted afresh to `keep` (the bank without the left-out rows), with
    scipy: the fixed shrinkage Σ + 0.01·I, or Ledoit–Wolf's at the full bank's ρ (leave-one-out keeps it)."""
    z = F.normalize(keep.double(), dim=1).numpy()
    d = z.shape[1]
    cov = np.cov(z, rowvar=False, bias=True)
    sigma = cov + 1e-2 * np.eye(d) if shrinkage == "fixed" else (1 - rho) * cov + rho * np.trace(cov) / d * np.eye(d)
    q = F.normalize(query[None].double(), dim=1).numpy()[0]
    return float(-multivariate_normal(z.mean(axis=0), sigma).logpdf(q))


def full_bank_rho(bank: torch.Tensor) -> float:
    """ρ of the whole bank's normalised features, which leave-one-out holds fixed."""
    return ledoit_wolf_rho(F.normalize(bank.double(), dim=1).numpy())


@pytest.mark.parametrize("shrinkage", ["ledoit_wolf", "fixed"])
def test_lh_leave_one_out_equals_a_refit_without_the_sample(bank, shrinkage):
    scorer = LHScorer(shrinkage, epsilon=1e-2).fit(bank)
    rows = torch.tensor([3, 40])
    other = torch.randn(2, 6, generator=torch.Generator().manual_seed(3))
    for queries in (bank[rows], other):  # the sample itself, and another view of it
        loo = scorer.anomaly_scores(queries, rows)
        for i, row in enumerate(rows.tolist()):
            keep = torch.cat([bank[:row], bank[row + 1 :]])
            expected = _refit_nll(keep, queries[i], shrinkage, full_bank_rho(bank))
            assert loo[i].item() == pytest.approx(expected, rel=1e-5)


def test_lh_survives_fewer_samples_than_dimensions():
    few = torch.randn(10, 128, generator=torch.Generator().manual_seed(4))
    scores = LHScorer().fit(few).anomaly_scores(seeded(3, 128, seed=9))
    assert torch.isfinite(scores).all()


def test_lh_higher_means_more_anomalous(bank):
    scorer = LHScorer().fit(bank)
    centre = bank.mean(dim=0, keepdim=True)
    assert scorer.anomaly_scores(-centre * 50 + seeded(1, 6, seed=15)) > scorer.anomaly_scores(centre)


@pytest.mark.parametrize("shrinkage", ["ledoit_wolf", "fixed"])
def test_lh_scores_a_bank_of_identical_features(shrinkage):
    # identical images give identical features: S = 0 and tr S = 0, so the shrunk covariance is 0 too
    same = torch.ones(6, 16, dtype=torch.float32)
    scorer = LHScorer(shrinkage, epsilon=0.0).fit(same)
    assert scorer.floor_ > 0
    inside = scorer.anomaly_scores(same[:2])
    loo = scorer.anomaly_scores(same[:2], torch.tensor([0, 1]))
    outside = scorer.anomaly_scores(torch.randn(2, 16, generator=torch.Generator().manual_seed(5)))
    assert torch.isfinite(torch.cat([inside, loo, outside])).all()
    assert (outside > inside.max()).all()  # anything unlike the bank is more anomalous than the bank itself


def test_lh_without_a_ridge_when_the_covariance_factorises(bank):
    assert LHScorer().fit(bank).floor_ == 0.0  # the ridge is a fallback, never a change to ordinary scores


def test_lh_leave_one_out_of_a_two_feature_bank_is_finite():
    # leaving one of two samples out leaves a single point: its covariance is 0 in every direction
    two = torch.randn(2, 16, generator=torch.Generator().manual_seed(6))
    scores = LHScorer().fit(two).anomaly_scores(two, torch.tensor([0, 1]))
    assert torch.isfinite(scores).all()


def test_lh_refuses_non_finite_features_with_a_sentence():
    broken = seeded(6, 4, seed=16)
    broken[2, 1] = float("nan")
    with pytest.raises(NonFiniteFeatures, match="^training diverged: the encoder's features hold NaN"):
        LHScorer().fit(broken)


@pytest.fixture
def bank_with_copies(bank):
    """The bank with row 0 three times (rows 0, 60, 61) and row 17 twice (rows 17, 62)."""
    copied = torch.cat([bank, bank[[0, 0, 17]]])
    return copied, torch.tensor([*range(60), 0, 0, 17])


def _refit_rows(n: int, row: int, copies: torch.Tensor) -> list[int]:
    return [j for j in range(n) if copies[j] != copies[row]]


def test_nnd_leaves_every_copy_of_the_sample_out(bank_with_copies):
    bank, copies = bank_with_copies
    scorer = NNDScorer(k=2, query_chunk=3, bank_chunk=7).fit(bank, copies)
    rows = torch.tensor([0, 61, 17, 5, -1])
    queries = torch.cat([bank[[0, 61, 17, 5]], seeded(1, 6, seed=17)])
    scores = scorer.anomaly_scores(queries, rows)
    sims, found = scorer.neighbours(queries, 3, rows)
    for i, row in enumerate(rows.tolist()):
        keep = _refit_rows(len(bank), row, copies) if row >= 0 else list(range(len(bank)))
        expected = F.normalize(queries[i : i + 1], dim=1) @ F.normalize(bank[keep], dim=1).T
        assert scores[i].item() == pytest.approx(-expected.topk(2).values.mean().item(), abs=1e-6)
        assert set(found[i].tolist()) <= set(keep)  # no copy is shown as a neighbour either
    # without copies the duplicate finds its copy at similarity 1: the bug this guards against
    plain = NNDScorer(k=1).fit(bank).anomaly_scores(bank[[0]], torch.tensor([0]))
    assert plain.item() == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("shrinkage", ["ledoit_wolf", "fixed"])
def test_lh_leaves_every_copy_of_the_sample_out(bank_with_copies, shrinkage):
    bank, copies = bank_with_copies
    scorer = LHScorer(shrinkage, epsilon=1e-2).fit(bank, copies)
    rows = torch.tensor([0, 62, 5])
    other = torch.randn(3, 6, generator=torch.Generator().manual_seed(7))
    for queries in (bank[rows], other):
        loo = scorer.anomaly_scores(queries, rows)
        for i, row in enumerate(rows.tolist()):
            keep = bank[_refit_rows(len(bank), row, copies)]
            expected = _refit_nll(keep, queries[i], shrinkage, full_bank_rho(bank))
            assert loo[i].item() == pytest.approx(expected, rel=1e-5)


def test_a_bank_that_is_all_one_image_falls_back_to_leaving_out_the_sample_alone():
    same = torch.ones(4, 8)
    copies = torch.zeros(4, dtype=torch.long)
    rows = torch.tensor([0, 3])
    nnd = NNDScorer(k=2).fit(same, copies).anomaly_scores(same[:2], rows)
    lh = LHScorer().fit(same, copies).anomaly_scores(same[:2], rows)
    assert torch.isfinite(torch.cat([nnd, lh])).all()
    assert torch.allclose(nnd, NNDScorer(k=2).fit(same).anomaly_scores(same[:2], rows))
