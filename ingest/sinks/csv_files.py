"""``--sink csv:<folder>``: neo4j-admin import files, loaded by ``stcg load`` (docs/bulk.md); no database
is touched while the run is written. The sink itself is ``ingest.bulk.CsvSink`` (the file format and
its loader live there)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ingest.bulk import CsvSink
from ingest.sinks.registry import SinkKind, register_sink


@contextmanager
def open_csv(arg: str, settings, log: Callable[[str], None]) -> Iterator[CsvSink]:
    yield CsvSink(arg, log=log)


register_sink(
    SinkKind(
        "csv",
        "csv:<folder>",
        "neo4j-admin import files, loaded with `stcg load`",
        open_csv,
        takes_arg=True,
        database=False,
    )
)
