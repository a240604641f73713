"""Real-time video: prune a live stream as its frames arrive, answer at any moment, bounded memory.

::

    stream = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=0.25), max_video_tokens=4096)
    for frames, ts in camera_chunks():          # uint8 [t, H, W, 3] and their times in seconds
        stream.add_frames(frames, timestamps=ts)
        if something_happens:
            print(stream.ask("What just happened?", max_new_tokens=64))   # the stream goes on after
    stream.stats                                # per chunk: frames, kept per frame, curvature, cache length

How it works:

- ``add_frames`` encodes only the new frames (the vision tower runs once per frame; Qwen models pair
  frames into temporal patches of 2, so an odd frame waits for its partner). Each LLM frame waits
  for its lookahead (the next frame, :data:`vcast.core.causal.LOOKAHEAD_FRAMES`), which the next
  chunk provides; then the causal V-CAST rule (:mod:`vcast.core.causal`) picks its tokens and only
  those are prefilled into the KV cache, with the position ids they have in the whole video:
  MRoPE ``(t, h, w)`` and the ``<t seconds>`` text Qwen3-VL writes before each temporal patch, the
  temporal ids Qwen2.5-VL derives from the frame times, 1-D ids for LLaVA-OneVision. A frame, once
  committed, is never revisited: later frames change nothing about it except by eviction.
- ``ask`` commits the frames still waiting (as the current end of the video), prefills the
  question after the video, decodes greedily and cuts the cache back: **the question and the answer
  do not stay in the context**, so every question sees the video alone and the next frames follow
  the video as if nothing had been asked. (Keeping a running dialogue in the context would make the
  video a multi-turn conversation with later frames in new turns; that is not implemented.)
- ``max_video_tokens``: a hard cap on the cache slots the video holds (tokens and frame text). When a
  commit would exceed it, tokens are evicted by :mod:`vcast.core.evict` before anything is prefilled, so the cache never
  holds more: a frame keeps a prefix of its dual-anchor ranking, frames share the cap in proportion
  to ``exp(c / tau)`` times a recency factor (D'Hondt apportionment; the order is fixed when a token
  arrives, so nothing thrashes), and a power-of-two skeleton keeps one token of every ``s``-th frame
  of the whole past. Survivors keep their KV entries, hence their positions. The cache (and the
  stream's memory) stays flat however long the stream runs: video tokens <= the cap, plus the
  prompt prefix. The cap counts the text a processor writes around each frame (Qwen3-VL's
  timestamps) with the frame's first token, so the cache never holds more than the prefix plus the cap.

Bad input raises :class:`~vcast.errors.InputError` and leaves the stream unchanged: frames of another
size than the first chunk, timestamps that do not increase, an empty chunk, ``ask`` before any frame.

What was taken from the streaming literature (ideas, not code):

- **TimeChat-Online** (DTD, arXiv 2504.17343) scores each arriving frame only against the frames just
  before it, never re-processing history, keeps the kept tokens' MRoPE positions, and finds that a
  frame's drop ratio marks scene changes. Here too a frame is scored from a short causal window and
  positions are preserved; the score is V-CAST's curvature (a budget per frame that rises at turns),
  not DTD's same-position similarity threshold.
- **StreamingVLM** (arXiv 2510.09608) reuses the KV states of an attention sink (the prompt), a
  window of recent vision tokens and of recent text. Here the prompt prefix is never evicted and the
  eviction keys favour recent frames; StreamingVLM's contiguous RoPE re-indexing (which keeps
  positions inside the trained range) is *not* used: vcast keeps every token's position from the
  whole video, so a very long stream reaches the positions a video of that length would.
- **LiveVLM** (arXiv 2505.15269) separates an encoding phase that builds a compressed streaming KV
  cache as frames arrive from an answering phase that only prefills the question. That is the
  shape of ``add_frames`` / ``ask``; its query-time retrieval of long-term KV pages is not used.
- **VideoLLM-online** (LIVE, CVPR'24) keeps one continuous KV cache across the stream and encodes
  frames as they come. Here the cache is likewise appended frame by frame and never rebuilt.
- **InfiniPot-V** (arXiv 2506.15745) enforces a hard, length-independent cap during encoding with a
  query-agnostic compression that removes temporally redundant tokens and keeps spatially salient
  ones. Here the cap is enforced before each prefill (the cache never exceeds it) with V-CAST's
  temporal (curvature) and spatial (dual-anchor) criteria instead of TaR and value norms.
"""

from __future__ import annotations

from vcast.config import VCastConfig
from vcast.streaming.config import StreamConfig
from vcast.streaming.families import NOT_STREAMED, SPECS, streamed_model_types
from vcast.streaming.session import Answer, VideoStream, check_config


def stream(model, processor, config: VCastConfig | None = None, max_video_tokens: int | None = None, *,
           half_life: float | None = None, skeleton: float = 0.1, fps: float = 2.0,
           template: str | None = None) -> VideoStream:
    """Start pruning a live video into ``model``'s KV cache (this stream's cache; weights untouched).

    Args:
        model: a supported transformers Video LLM (``vcast.streaming.streamed_model_types()``; families the
            family layer supports but streams cannot serve say why in ``vcast.streaming.NOT_STREAMED``),
            without a ``vcast.apply`` handle.
        processor: its processor (tokenizer, video processor, chat template).
        config: a :class:`VCastConfig` with a numeric ``retain_ratio`` (default 0.25).
        max_video_tokens: hard cap on the cache slots the video holds, its tokens and the text around
            its frames (None: none).
        half_life, skeleton: eviction options, see :class:`StreamConfig`.
        fps: frame rate assumed for chunks added without timestamps.
        template: the prompt text with the processor's video token (e.g. ``"<|video_pad|>"``) where the
            video goes and ``{question}`` where questions go; default: the processor's chat template
            with one user turn holding the video, then the question.

    Returns:
        A :class:`VideoStream`.

    Raises:
        UnsupportedModelError: another architecture. ConfigError: bad or unsupported options.
    """
    options = StreamConfig(max_video_tokens=max_video_tokens, half_life=half_life, skeleton=skeleton, fps=fps)
    return VideoStream(model, processor, check_config(config), options, template)


__all__ = ["NOT_STREAMED", "SPECS", "Answer", "StreamConfig", "VideoStream", "stream", "streamed_model_types"]
