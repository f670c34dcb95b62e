"""The Poisson log-likelihood of a linear predictor with diagonal blocks and a saturating link,
value and gradient in one pass over the design (the teacher-forced network's data term).

``eta = sat(X_d A + sum_j X_j * D_j + c)`` with ``X = [X_d, X_1, .., X_m]`` (``[T, F]``; each
``X_j`` ``[T, N]`` multiplies its own unit only, as the network's resets and adaptation traces do),
``sat(z) = z - softplus(z - eta_max)`` (:func:`organoid_sim.nn.neurons.saturate`) or the
identity. With ``mu = exp(sat(z)) = 1 / (exp(-z) + exp(-eta_max))``::

    LL        = sum y sat(z) - mu - log(y!)
    dLL/dz    = (y - mu) (1 - mu / mu_max)
    dLL/deta_max = sum_t (y - mu) mu / mu_max

Why not autograd: the design of a long recording at a 2.5 ms step is ~100 MB, and reading it is
what an evaluation costs. Autograd reads it twice (``X A`` forward, ``X^T g`` backward) and walks
about ten elementwise passes over ``[T, N]``; here each block of rows is read once (forward and
gradient while it is in cache), the diagonal blocks cost elementwise products instead of a
product with a mostly zero matrix, and ``y sat(z)`` is formed only where ``y > 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SaturatedPoissonTerm"]

COPY_LIMIT_BYTES = 1 << 30   # designs up to 1 GiB are rearranged into contiguous blocks (a copy)
ROWS_PER_BLOCK = 8192   # rows of the design per pass on the CPU: ~2.6 MB at 80 float32 features, within L2/L3


class SaturatedPoissonTerm:
    """``(A, D, c, eta_max) -> LL`` (nats, summed over bins and units) of counts ``y`` under the
    predictor of the module docstring; differentiable in all four (``eta_max`` may be None).

    Parameters
    ----------
    X : torch.Tensor
        ``[T, F]`` design; its last ``n_diag * N`` columns are the diagonal blocks.
    y : torch.Tensor
        ``[T, N]`` counts per bin.
    n_diag : int
        Number of diagonal blocks ``X_j``.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, n_diag: int) -> None:
        T, N = y.shape
        n_dense = X.shape[1] - n_diag * N
        if X.shape[0] != T or n_dense < 0:
            raise ValueError(f"design {tuple(X.shape)} does not fit counts {tuple(y.shape)} with {n_diag} "
                             "diagonal blocks")
        # the dense part and each diagonal block contiguous: a strided column block costs several
        # times a contiguous one in the elementwise passes; a design over COPY_LIMIT_BYTES is read
        # in place instead (no second copy of a large array)
        copy = X.numel() * X.element_size() <= COPY_LIMIT_BYTES
        dense, diag = X[:, :n_dense], X[:, n_dense:].reshape(T, n_diag, N).permute(1, 0, 2)   # [n_diag, T, N]
        self.X_dense = dense.contiguous() if copy else dense
        self.X_diag = diag.contiguous() if copy else diag
        self.y, self.n_diag, self.n_dense = y, int(n_diag), n_dense
        rows, cols = torch.nonzero(y, as_tuple=True)         # row-major: rows ascending
        self.rows, self.cols, self.y_nz = rows, cols, y[rows, cols]
        # blocks keep the CPU's reads in cache; a GPU does best with one pass over everything
        block = ROWS_PER_BLOCK if y.device.type == "cpu" else max(T, 1)
        bounds = torch.arange(0, T + block, block, device=y.device).clamp_max(T)
        self.nz_bounds = torch.searchsorted(rows, bounds).tolist()
        self.row_bounds = bounds.tolist()
        self.log_factorial = float(torch.lgamma(self.y_nz + 1.0).sum())

    def __call__(self, A: torch.Tensor, D: torch.Tensor, c: torch.Tensor,
                 eta_max: torch.Tensor | None = None) -> torch.Tensor:
        """The log-likelihood (scalar tensor) for readout ``A`` ``[F_dense, N]``, diagonal blocks
        ``D`` ``[n_diag, N]``, offset ``c`` ``[N]`` and saturation ``eta_max`` ``[N]`` or None."""
        if eta_max is None:
            return _Term.apply(self, A, D, c)
        return _Term.apply(self, A, D, c, eta_max)

    def blocks(self):
        """Yield ``(X_dense, X_diag [n_diag, rows, N], rows of the nonzero counts (local), their
        columns, their counts)`` per block of rows."""
        for k in range(len(self.row_bounds) - 1):
            lo, hi = self.row_bounds[k], self.row_bounds[k + 1]
            if hi <= lo:
                continue
            a, b = self.nz_bounds[k], self.nz_bounds[k + 1]
            yield (self.X_dense[lo:hi], self.X_diag[:, lo:hi], self.rows[a:b] - lo, self.cols[a:b], self.y_nz[a:b])


class _Term(torch.autograd.Function):
    """Forward computes the value and, when any input needs it, the gradients; backward scales them."""

    @staticmethod
    def forward(ctx, term, A, D, c, eta_max=None):
        want = any(ctx.needs_input_grad[1:])
        sat = eta_max is not None
        inv_max = torch.exp(-eta_max) if sat else None
        acc = torch.float64 if A.device.type in ("cpu", "cuda") else A.dtype   # MPS has no float64
        ll = torch.zeros((), dtype=acc, device=A.device)
        gA, gD, gc = torch.zeros_like(A), torch.zeros_like(D), torch.zeros_like(c)
        gm = torch.zeros_like(c)
        for Xd, Xg, r, k, yv in term.blocks():
            z = torch.addmm(c, Xd, A) if term.n_dense else c.expand(Xg.shape[1], -1).clone()
            for j in range(term.n_diag):
                z.addcmul_(Xg[j], D[j])
            z_nz = z[r, k]
            if sat:
                mu = torch.exp(-z).add_(inv_max).reciprocal_()
                eta_nz = z_nz - F.softplus(z_nz - eta_max[k])
            else:
                mu = torch.exp(z)
                eta_nz = z_nz
            mu_col = mu.sum(0)
            ll += (yv * eta_nz).sum(dtype=acc) - mu_col.sum(dtype=acc)
            if not want:
                continue
            # g = (y - mu) w, w = 1 - mu / mu_max (1 without saturation): the dense -mu w, then y w where y > 0
            if sat:
                q = mu * inv_max                                  # mu / mu_max
                g = (q - 1.0).mul_(mu)
                g_col = g.sum(0)
                q_nz = q[r, k]
                w_nz = yv * (1.0 - q_nz)
                gm.sub_(g_col + mu_col).index_add_(0, k, yv * q_nz)   # colsum(mu q) = colsum(g) + colsum(mu)
            else:
                g, g_col, w_nz = mu.neg_(), -mu_col, yv
            g.index_put_((r, k), w_nz, accumulate=True)
            gc.add_(g_col).index_add_(0, k, w_nz)
            if term.n_dense:
                gA.addmm_(Xd.T, g)
            for j in range(term.n_diag):
                gD[j].add_((Xg[j] * g).sum(0))
        ctx.save_for_backward(gA, gD, gc, gm)
        ctx.sat = sat
        return (ll - term.log_factorial).to(A.dtype)

    @staticmethod
    def backward(ctx, grad):
        gA, gD, gc, gm = ctx.saved_tensors
        out = (None, grad * gA, grad * gD, grad * gc)
        return out + ((grad * gm,) if ctx.sat else ())
