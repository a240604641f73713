"""An accuracy proxy: a small Qwen3-VL trained from scratch on verifiable video questions.

- :mod:`vcast.proxy.tasks`: the seeded question generator (8 families, disjoint splits).
- :mod:`vcast.proxy.model`: config, tokenizer, processor, load/save of the committed weights.
- :mod:`vcast.proxy.train`: the deterministic two-stage CPU training behind ``vcast proxy train``,
  with :mod:`~vcast.proxy.batching` (processor-identical batches, per-token targets, thinning),
  :mod:`~vcast.proxy.attention` (the answer position's attention, for the evidence loss) and
  :mod:`~vcast.proxy.fastpath` (training-only speed-ups of the vision tower).
- :mod:`vcast.proxy.evaluate`: accuracy per family, unpruned and through ``vcast.apply`` per method,
  with the 0/1 correctness of every question.
- :mod:`vcast.proxy.stats`: Wilson intervals and the paired, stratified bootstrap (numpy only).
- :mod:`vcast.proxy.report`: pooling several test seeds: intervals, comparisons, rankings, targets.
"""
