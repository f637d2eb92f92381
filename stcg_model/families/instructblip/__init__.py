"""The InstructBLIP family (``InstructBlipForConditionalGeneration``): BLIP-2's layout, with a Q-Former that
reads the instruction (the prompt with the question) beside its queries. ``family.py`` is its interface."""
