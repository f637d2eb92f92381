"""Bulk load: ``stcg ingest --sink csv:DIR`` (``ingest.sinks.csv_files.CsvSink``) writes ``neo4j-admin database import`` files, ``stcg load DIR``
imports them into the local server (docs/bulk.md).

The files hold exactly what the Bolt writer would write: the rows come from ``ingest.rows.flat_rows``
(the same uids, labels, relationship types and properties, None left out), the Example completion
markers (``complete``, ``completed_at``) are on the Example rows themselves, and the Run node carries
the properties the Bolt path's Run bookkeeping (``ingest.runs``: claim, params, finish) would set.

Layout of DIR (owner-only: folders 0700, files 0600)::

    headers/<GROUP>.<sig>.csv         one header line per node label / relationship group and column
                                      signature (the columns a row has and their types: a property a row
                                      lacks, or holds as None, is absent, as with Bolt's ``SET n += row``)
    parts/<time>-<id>/                one committed batch: data files ``<GROUP>.<sig>[.failed].csv`` (no
                                      header) and ``manifest.json`` (which examples, which files, how many
                                      rows, the longest record in bytes); written in ``parts/.tmp-<id>/`` and
                                      renamed into place, so a killed ingest leaves only whole batches (and
                                      ``.tmp-*`` leftovers, never read)
    runs/<run hash>/run.json          the Run node's properties, changed under ``.lock`` as the Bolt
    runs/<run hash>/Run.csv           statements change them; Run.csv is that node, header and row
    runs/<run hash>/writers.json      the writer leases (``ingest.lease``) of the commands writing the run
    import.args                       written by ``prepare_import``: the neo4j-admin arguments (paths
                                      relative to DIR), for ``stcg load`` and for a Docker container
    .load/                            filtered copies of failure files whose examples later succeeded

ID spaces are per label (``uid:ID(Example)``, ``:START_ID(Token)``), so a uid is unique per label as the
uniqueness constraints require. Several commands (``--shard i/N`` workers) write to one DIR at once:
parts have unique names, header files are identical whoever writes them, and the Run's bookkeeping is
serialised by an exclusive lock on ``DIR/.lock``.

``prepare_import`` trusts nothing in DIR: every folder, file name, group, header, manifest entry and run
must be exactly what ``CsvSink`` writes (no symbolic links, nothing group- or world-writable).

``load_csv`` (``stcg load``) holds an exclusive lock on the server home (``<home>/run/stcg-load.lock``),
moves the database's store folders aside before the import and puts them back if anything fails, and
records its progress in ``<home>/run/stcg-load.json`` so an interrupted load can be finished
(``finish_load``) or undone (``undo_load``).

What neo4j-admin cannot express: an empty list property (written as absent), a list holding an empty
string or the array delimiter U+001F (refused in one line).

Modules: ``csv_format`` (the file format and ``CsvFolder``), ``prepare`` (``prepare_import``), ``server``
(counts, the neo4j-admin command, the load's lock and record), ``load`` (``load_csv``, ``finish_load``,
``undo_load``). The writing sink is ``ingest.sinks.csv_files.CsvSink``.
"""

from ingest.bulk.csv_format import CsvFolder, read_buffer_size
from ingest.bulk.load import finish_load, load_csv, undo_load
from ingest.bulk.prepare import prepare_import
from ingest.bulk.server import database_counts, load_command, load_lock, read_load_record

__all__ = [
    "CsvFolder",
    "database_counts",
    "finish_load",
    "load_command",
    "load_csv",
    "load_lock",
    "prepare_import",
    "read_buffer_size",
    "read_load_record",
    "undo_load",
]
