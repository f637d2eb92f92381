"""Attribution methods: how much each image region explains the answer (docs/spec.md section 6)."""
