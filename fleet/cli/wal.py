"""``fleet wal dump | verify | repair``: read and mend a controller's log."""

from __future__ import annotations

import sys

import click
import orjson

from ..errors import EXIT_LOG_UNUSABLE
from ..wal import tools

data_dir_option = click.option(
    "--data-dir", required=True, envvar="FLEET_DATA_DIR",
    type=click.Path(exists=True, file_okay=False), help="The controller's data directory.")


@click.group()
def wal() -> None:
    """Inspect, verify and repair the write-ahead log."""


@wal.command()
@data_dir_option
@click.option("--from-seq", default=0, type=click.IntRange(min=0), help="Start at this seq.")
def dump(data_dir: str, from_seq: int) -> None:
    """Print every record as one JSON line (pipe to jq)."""
    out = sys.stdout.buffer
    for event in tools.dump_events(data_dir, from_seq=from_seq):
        out.write(orjson.dumps(event) + b"\n")
    out.flush()


@wal.command()
@data_dir_option
def verify(data_dir: str) -> None:
    """Check every record, the numbering and every snapshot; exit non-zero at the first
    corruption."""
    result = tools.verify(data_dir)
    span = f" ({result.first_seq}..{result.last_seq})" if result.records else ""
    click.echo(f"{result.segments} segments, {result.records} records{span}, "
               f"{len(result.snapshots_ok)} good snapshots")
    if result.torn_bytes:
        click.echo(f"torn tail: {result.torn_bytes} bytes will be cut when the log is opened")
    for problem in result.snapshots_bad:
        click.echo(f"bad snapshot: {problem}", err=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not result.ok:
        click.echo(f"error: {result.error}", err=True)
        sys.exit(EXIT_LOG_UNUSABLE)


@wal.command()
@data_dir_option
def repair(data_dir: str) -> None:
    """Cut the log at its last good record, keeping .broken copies of what was cut."""
    result = tools.repair(data_dir)
    if result is None:
        click.echo("log is clean; nothing to repair")
        return
    if result.missing is not None:
        first, last = result.missing
        click.echo(f"records {first}..{last} are missing (no file holds them): lost; the log "
                   f"now ends at record {first - 1}")
    if result.records_cut:
        where = (f"from {result.segment} at byte {result.offset}" if result.bytes_cut
                 and result.segment and not result.missing else "after the gap")
        click.echo(f"cut {result.records_cut} records ({result.bytes_cut} bytes) {where}"
                   + (f" and {result.segments_removed} later segments"
                      if result.segments_removed and not result.missing else "")
                   + (f", from record {result.first_cut_seq} on" if result.first_cut_seq
                      else "") + ": lost unless restored from the copies")
    for backup in result.backups:
        click.echo(f"kept a copy: {backup}")
