"""The Qwen2-VL / Qwen2.5-VL family (``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``):
merged 2 x 2 patch blocks projected into a decoder-only language model with multimodal (M-RoPE) positions.
``family.py`` is its interface."""
