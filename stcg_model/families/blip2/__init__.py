"""BLIP-2 (``Blip2ForConditionalGeneration``) with a T5 (encoder-decoder) or OPT (decoder-only) language
model: ``loading`` (checkpoints, devices, dtypes), ``configs`` (architectures built from config),
``points`` (where attention weights are read), ``teacher_forcing`` (the one teacher-forced path's inputs
and ``Traced``), ``passes`` (batched passes with attention captured, and the traced forward of the
gradient methods), ``pixels`` (the image processor's fast path)."""
