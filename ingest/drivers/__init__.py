"""Drivers of the model work of one run, picked by ``ingest.pipeline.pick_driver``: ``threads`` (one
process: model thread + writer thread) and ``ray_data`` (Ray Data: read tasks, model actors, write tasks;
what runs in Ray's workers is ``ray_stages``). Each is ``f(cfg, model_name, examples, total, sink, log,
progress) -> IngestSummary``; both use ``ingest.lifecycle`` and ``ingest.steps`` and never import each other."""
