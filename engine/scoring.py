"""Anomaly scores on encoder features for one test-time augmentation t (paper §3.4).

Both scorers follow one contract: `fit(bank) -> self` on the training features under t, then
`anomaly_scores(queries, exclude=...) -> (M,)`, **higher = more anomalous**. `exclude[i]` is the
bank row of query i when the query is itself a training sample (curation, or the training normals'
own score distribution for thresholds), else −1: that sample is then left out of its own reference,
so an image is never its own nearest neighbour or part of its own Gaussian.

`fit(bank, copies=...)` may also say which bank rows are exact copies of each other (`copies[j]`, the
copy group of row j, from `engine.copies.copy_groups`): leaving a sample out then leaves out its whole
group, so a duplicated image is not scored against its own copy at distance 0. Excluding a group is a
comparison of group ids inside each similarity chunk (NND) and a rank-one downdate by the group's size
(LH: copies have the same features), so memory stays bounded however large the groups are. A group that
is the whole bank (every image the same) cannot be left out: its rows fall back to leaving out only
themselves.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sklearn.covariance import ledoit_wolf_shrinkage

# Ridges tried, in units of 1/D, when the shrunk covariance is singular: the first that factorises wins.
RIDGES = (1e-8, 1e-6, 1e-4, 1e-2, 1.0)


class NonFiniteFeatures(ValueError):
    """The encoder gave NaN or infinite features (its weights diverged): no score would mean anything."""


def _no_exclusions(m: int, device: torch.device) -> torch.Tensor:
    return torch.full((m,), -1, dtype=torch.long, device=device)


def _copy_groups(copies: torch.Tensor | None, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(group, size): the copy group of each of n bank rows as a row index, and its size, both (n,) long.

    Without `copies` every row is its own group. A group of all n rows is split into single rows: leaving
    it out would leave nothing to score against.
    """
    rows = torch.arange(n, device=device)
    if copies is None:
        return rows, torch.ones(n, dtype=torch.long, device=device)
    copies = torch.as_tensor(copies, dtype=torch.long, device=device)
    if copies.shape != (n,):
        raise ValueError(f"copies must hold one group per bank row: {tuple(copies.shape)} for {n} rows")
    _, group, counts = torch.unique(copies, return_inverse=True, return_counts=True)
    size = counts[group]
    whole = size >= n
    return torch.where(whole, rows, n + group), torch.where(whole, torch.ones_like(size), size)


class NNDScorer:
    """S_NND (Eq. 12): minus the mean cosine similarity to the k nearest training features.

    Exact search in chunks of queries × bank rows, so a 100k-image bank needs no more than
    `query_chunk × bank_chunk` similarities in memory at once.
    """

    def __init__(self, k: int = 1, query_chunk: int = 1024, bank_chunk: int = 16384) -> None:
        self.k = k
        self.query_chunk = query_chunk
        self.bank_chunk = bank_chunk

    def fit(self, bank: torch.Tensor, copies: torch.Tensor | None = None) -> NNDScorer:
        """bank: (n, D) training features under t; copies: (n,) copy group of each row (module docstring)."""
        if bank.shape[0] < 1:
            raise ValueError("S_NND needs at least one training feature")
        self.bank_ = F.normalize(bank.float(), dim=1)
        self.group_, self.group_size_ = _copy_groups(copies, bank.shape[0], self.bank_.device)
        return self

    def neighbours(
        self, queries: torch.Tensor, k: int, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k cosine similarities and bank rows of each query: two (M, k) tensors, best first."""
        bank = self.bank_
        q_all = F.normalize(queries.float().to(bank.device), dim=1)
        m, n = q_all.shape[0], bank.shape[0]
        if exclude is None:
            exclude = _no_exclusions(m, bank.device)
        exclude = exclude.to(bank.device)
        inside = exclude >= 0
        # each query leaves out the group of its own bank row (−1: none, and no group id is negative)
        left_out = torch.where(inside, self.group_[exclude.clamp(min=0)], -1)
        largest = int(self.group_size_[exclude[inside]].max()) if bool(inside.any()) else 0
        k = min(k, n - largest)
        if k < 1:
            raise ValueError("S_NND leave-one-out needs at least two training features")
        sims_out = torch.empty(m, k, device=bank.device)
        rows_out = torch.empty(m, k, dtype=torch.long, device=bank.device)
        for qs in range(0, m, self.query_chunk):
            q = q_all[qs : qs + self.query_chunk]
            ex = left_out[qs : qs + self.query_chunk]
            any_ex = bool((ex >= 0).any())
            best_s = torch.full((q.shape[0], k), -math.inf, device=bank.device)
            best_i = torch.zeros((q.shape[0], k), dtype=torch.long, device=bank.device)
            for bs in range(0, n, self.bank_chunk):
                sims = q @ bank[bs : bs + self.bank_chunk].T  # (q, b) cosine similarities
                if any_ex:  # leave the sample and its copies out of its own bank
                    sims.masked_fill_(ex[:, None] == self.group_[None, bs : bs + sims.shape[1]], -math.inf)
                s, i = sims.topk(min(k, sims.shape[1]), dim=1)
                cand_s = torch.cat([best_s, s], dim=1)
                cand_i = torch.cat([best_i, i + bs], dim=1)
                best_s, pick = cand_s.topk(k, dim=1)
                best_i = cand_i.gather(1, pick)
            sims_out[qs : qs + q.shape[0]] = best_s
            rows_out[qs : qs + q.shape[0]] = best_i
        return sims_out, rows_out

    def anomaly_scores(self, queries: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """queries: (M, D) → (M,) = −mean of the k largest cosine similarities (higher = more anomalous)."""
        sims, _ = self.neighbours(queries, self.k, exclude)
        return -sims.mean(dim=1)


class LHScorer:
    """S_LH (Eq. 13–15): negative log-likelihood of L2-normalised features under a Gaussian.

    The covariance is shrunk towards a scaled identity, Σ = (1 − ρ)·S + ρ·(tr S / D)·I, with ρ from
    Ledoit–Wolf (or Σ = S + εI with `shrinkage="fixed"`), because with fewer normals than feature
    dimensions S is singular. Everything is computed in float64 via Cholesky. When even the shrunk Σ is
    not positive definite (a bank of identical images has S = 0 and tr S = 0), the smallest ridge
    `floor_`·I from `RIDGES` (relative to 1/D, the variance per dimension of unit vectors spread evenly)
    that makes it so is added, and every query still gets a finite score. A training sample
    scored against its own bank gets the exact leave-one-out Gaussian (mean and covariance refitted
    without it, ρ held at the full-bank value) through a rank-one downdate in S's eigenbasis.
    """

    def __init__(self, shrinkage: str = "ledoit_wolf", epsilon: float = 1e-3) -> None:
        self.shrinkage = shrinkage
        self.epsilon = epsilon

    def fit(self, bank: torch.Tensor, copies: torch.Tensor | None = None) -> LHScorer:
        """bank: (n, D) training features under t, n ≥ 2; copies: (n,) copy group of each row (module docstring)."""
        z = F.normalize(bank.double(), dim=1)
        n, d = z.shape
        if n < 2:
            raise ValueError("S_LH needs at least two training features")
        if not bool(torch.isfinite(z).all()):
            raise NonFiniteFeatures(
                "training diverged: the encoder's features hold NaN or infinite values, so nothing can be scored; "
                "train again with a lower learning rate"
            )
        self.n_, self.d_ = n, d
        self.mean_ = z.mean(dim=0)
        centred = z - self.mean_
        self.cov_ = centred.T @ centred / n  # (D, D) maximum-likelihood covariance, as Ledoit–Wolf uses
        if self.shrinkage == "ledoit_wolf":
            self.rho_ = float(ledoit_wolf_shrinkage(centred.cpu().numpy(), assume_centered=True))
        elif self.shrinkage == "fixed":
            self.rho_ = 0.0
        else:
            raise ValueError(f"unknown shrinkage {self.shrinkage!r}")
        self.sigma_ = self._shrunk(self.cov_, torch.trace(self.cov_) / d)
        self.floor_ = 0.0
        self.chol_, info = torch.linalg.cholesky_ex(self.sigma_)
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        for ridge in RIDGES:
            if int(info) == 0:
                break
            self.floor_ = ridge / d
            self.chol_, info = torch.linalg.cholesky_ex(self.sigma_ + self.floor_ * eye)
        if int(info) != 0:  # unreachable with finite features: Σ + 1/D·I is positive definite
            raise ValueError("S_LH: the covariance of the training features cannot be factorised")
        self.sigma_ = self.sigma_ + self.floor_ * eye
        self.logdet_ = 2 * torch.log(torch.diagonal(self.chol_)).sum()
        self.train_ = z
        _, self.group_size_ = _copy_groups(copies, n, z.device)
        self.eigh_: tuple[torch.Tensor, torch.Tensor] | None = None  # S's eigenbasis, on first leave-one-out
        return self

    def _shrunk(self, cov: torch.Tensor, nu: torch.Tensor | float) -> torch.Tensor:
        eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        if self.shrinkage == "fixed":
            return cov + self.epsilon * eye
        return (1 - self.rho_) * cov + self.rho_ * nu * eye

    def _nll(self, maha: torch.Tensor, logdet: torch.Tensor | float) -> torch.Tensor:
        return 0.5 * (self.d_ * math.log(2 * math.pi) + logdet + maha)

    def anomaly_scores(self, queries: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """queries: (M, D) → (M,) = −log N(q/‖q‖; μ, Σ) (higher = more anomalous), float32."""
        z = F.normalize(queries.double().to(self.mean_.device), dim=1)
        if exclude is None:
            return self._full_bank(z).float()
        exclude = exclude.to(self.mean_.device)
        inside = exclude >= 0
        if not bool(inside.any()):
            return self._full_bank(z).float()
        # excluded rows get the leave-one-out Gaussian instead, so solving them against the full bank is wasted
        scores = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
        scores[inside] = self._leave_one_out(exclude[inside], z[inside])
        rest = z[~inside]
        if rest.shape[0]:  # a reference is all leave-one-out: skip an empty solve (its size is known, no sync)
            scores[~inside] = self._full_bank(rest)
        return scores.float()

    def _full_bank(self, z: torch.Tensor) -> torch.Tensor:
        """NLL of normalised queries z (M, D) under the Gaussian of the whole bank."""
        solved = torch.linalg.solve_triangular(self.chol_, (z - self.mean_).T, upper=False)  # L⁻¹(z − μ): (D, M)
        return self._nll((solved**2).sum(dim=0), self.logdet_)

    def _leave_one_out(self, rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Exact NLL of normalised queries z (R, D) under the Gaussian fitted without bank rows `rows` and
        their c copies in all (c = 1 without copies; ρ fixed).

        Copies have the same features x_i, so with v = x_i − μ: μ₋ = μ − c·v/(n−c) and
        S₋ = n/(n−c)·S − c·n/(n−c)²·vvᵀ, so Σ₋ = (1−ρ)S₋ + ρ·tr(S₋)/D·I (+ the full bank's ridge `floor_`·I,
        held like ρ). In S's eigenbasis Σ₋ is diagonal plus rank one: Sherman–Morrison and the matrix
        determinant lemma give the Mahalanobis term and log-determinant in O(D).
        """
        n, d = self.n_, self.d_
        c = self.group_size_[rows].double()  # (R,) rows left out per query
        a = (n / (n - c))[:, None]  # (R, 1)
        b = c * n / (n - c) ** 2  # (R,)
        if self.eigh_ is None:  # cov_ is fixed at fit, and a view scores queries and reference against it
            self.eigh_ = torch.linalg.eigh(self.cov_)
        eigval, eigvec = self.eigh_
        v = self.train_[rows] - self.mean_  # (R, D)
        w = v @ eigvec  # v in the eigenbasis
        u = (z - self.mean_ + v * (c / (n - c))[:, None]) @ eigvec  # residual z − μ₋ in the eigenbasis
        vv = (v**2).sum(dim=1)  # ‖v‖²
        if self.shrinkage == "fixed":
            diag = a * eigval[None, :] + self.epsilon  # (R, D)
            rank_one = -b
        else:
            nu = (a[:, 0] * eigval.sum() - b * vv) / d  # tr(S₋)/D, (R,)
            diag = (1 - self.rho_) * a * eigval[None, :] + self.rho_ * nu[:, None]
            rank_one = -(1 - self.rho_) * b
        diag = diag + self.floor_
        q = (w**2 / diag).sum(dim=1)  # wᵀD⁻¹w
        p = (u * w / diag).sum(dim=1)  # uᵀD⁻¹w
        maha = (u**2 / diag).sum(dim=1) - rank_one * p**2 / (1 + rank_one * q)
        logdet = torch.log(diag).sum(dim=1) + torch.log1p(rank_one * q)
        return self._nll(maha, logdet)
