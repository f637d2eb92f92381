"""Attribution methods: how much each image region explains the answer (STCG_SPEC section 6)."""
