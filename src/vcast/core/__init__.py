"""The pure algorithm: tensors in, selections out. Knows nothing about any model library."""

from vcast.core.budget import allocate_frames, total_budget
from vcast.core.curvature import CURVATURES, angle_curvature, robust_curvature
from vcast.core.select import dual_anchor_scores, select_tokens
from vcast.core.selection import Selection

__all__ = [
    "CURVATURES",
    "Selection",
    "allocate_frames",
    "angle_curvature",
    "dual_anchor_scores",
    "robust_curvature",
    "select_tokens",
    "total_budget",
]
