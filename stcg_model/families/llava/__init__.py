"""The LLaVA family (``LlavaForConditionalGeneration``): a ViT's patch features, projected, fill one language-model
slot per patch inside the chat template; ``C`` is the identity (docs/spec.md section 8)."""
