"""BLIP-2 (``Blip2ForConditionalGeneration``) with a T5 (encoder-decoder) or OPT (decoder-only) language
model: ``loading`` (checkpoints, devices, dtypes), ``configs`` (architectures built from config),
``passes`` (batched passes with attention captured), ``pixels`` (the image processor's fast path)."""
