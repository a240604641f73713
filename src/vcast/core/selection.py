"""The result every selection method returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Selection:
    """Which tokens of one video survive.

    Tokens are indexed flat in raster order over a ``[T, N]`` grid (frame-major), the layout the
    LLM sees after the vision merger.

    Attributes:
        keep_index: ``LongTensor[K]``, strictly increasing flat indices into ``T*N``.
        frame_budget: ``LongTensor[T]``, tokens kept per frame; ``frame_budget.sum() == K``.
        curvature: ``FloatTensor[T]``, the per-frame temporal score that drove the budget (methods
            without one report zeros).
        num_frames: T.
        tokens_per_frame: N.
        retain_ratio: the ratio actually used, ``K / (T*N)``.
        merged_features: ``Tensor[K, D]`` or None. Merging methods return the features that replace
            ``features.flatten(0, 1)[keep_index]``; each merged token sits at the original grid
            position ``keep_index[i]``. Pure pruning methods leave it None.
    """

    keep_index: torch.Tensor
    frame_budget: torch.Tensor
    curvature: torch.Tensor
    num_frames: int
    tokens_per_frame: int
    merged_features: torch.Tensor | None = None

    @property
    def num_kept(self) -> int:
        """K, the number of tokens kept."""
        return int(self.keep_index.numel())

    @property
    def retain_ratio(self) -> float:
        """The fraction of the video's tokens kept, ``K / (T*N)``."""
        return self.num_kept / float(self.num_frames * self.tokens_per_frame)

    def keep_mask(self) -> torch.Tensor:
        """``BoolTensor[T, N]``, True where a token is kept."""
        mask = torch.zeros(self.num_frames * self.tokens_per_frame, dtype=torch.bool, device=self.keep_index.device)
        mask[self.keep_index] = True
        return mask.view(self.num_frames, self.tokens_per_frame)

    def kept_features(self, features: torch.Tensor) -> torch.Tensor:
        """``Tensor[K, D]``: the features that reach the LLM (merged ones for merging methods).

        Args:
            features: ``Tensor[T, N, D]`` or ``Tensor[T*N, D]``, the video's tokens.
        """
        if self.merged_features is not None:
            return self.merged_features
        return features.reshape(self.num_frames * self.tokens_per_frame, -1).index_select(
            0, self.keep_index.to(features.device)
        )

    def summary(self) -> dict:
        """Plain-Python stats for logs and ``--json`` output."""
        return {
            "frames": self.num_frames,
            "tokens_per_frame": self.tokens_per_frame,
            "tokens_before": self.num_frames * self.tokens_per_frame,
            "tokens_kept": self.num_kept,
            "ratio_used": round(self.retain_ratio, 6),
            "kept_per_frame": self.frame_budget.tolist(),
            "curvature": [round(float(c), 6) for c in self.curvature.tolist()],
        }
