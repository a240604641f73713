"""Model-free benchmarks: synthetic clips from real photos with ground truth, a pixel token
feature extractor, and the coverage benchmark that scores every registered method on them."""

from vcast.bench.clips import CLIP_KINDS, Clip, make_clip
from vcast.bench.features import FEATURE_DIM, pixel_token_features

__all__ = ["CLIP_KINDS", "FEATURE_DIM", "Clip", "make_clip", "pixel_token_features"]
