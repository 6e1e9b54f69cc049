"""`anybuild cache ls|prune`: the built-in builder's step cache in the data directory."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from anybuild.builder.build import data_dir
from anybuild.builder.cache import PruneResult, StepStore, StoredEntry
from anybuild.builder.stack import LayerSnapshots, SnapshotUsage
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.errors import UsageError

__all__ = ["cache", "parse_size"]

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
          "t": 1024**4, "tb": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_size(text: str) -> int:
    """``512MB``, ``10g``, ``1.5GB``, ``4096`` → bytes (binary units, as docker's --keep-storage)."""
    match = _SIZE.match(text.lower())
    unit = match[2] if match is not None else ""
    if unit.endswith("ib"):
        unit = unit[:-2] + "b"
    if match is None or unit not in _UNITS:
        raise UsageError(f"--keep-storage {text!r} is not a size", hint="write e.g. 512MB or 10GB")
    return int(float(match[1]) * _UNITS[unit])


def _store(session: Session) -> StepStore:
    return StepStore(data_dir(session.env) / "cache" / "steps")


def _snapshots(session: Session) -> LayerSnapshots:
    return LayerSnapshots(data_dir(session.env) / "snapshots")


def _entry_dict(stored: StoredEntry) -> dict[str, object]:
    layer = stored.entry.layer
    return {
        "key": stored.entry.key,
        "created_by": stored.created_by,
        "layer": str(layer.digest) if layer is not None else None,
        "size": stored.size,
        "last_used": datetime.fromtimestamp(stored.last_used, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@click.group()
def cache() -> None:
    """Inspect and prune the built-in builder's step cache."""


@cache.command(
    "ls",
    epilog="""\b
Examples:
  anybuild cache ls
  anybuild cache ls --json | jq '.entries[] | select(.size > 1000000)'
""",
)
@output_options
@pass_session
def ls(session: Session) -> None:
    """List cached steps, most recently used first."""
    store = _store(session)
    entries = [_entry_dict(e) for e in store.entries()]
    snapshots = _snapshots(session).usage()
    data = {"directory": str(store.root), "entries": entries, "storage": store.usage(),
            "snapshots": {"count": snapshots.count, "storage": snapshots.size}}
    session.emit(data, lambda console: _render_ls(console, data, entries, snapshots))


def _render_ls(console: Console, data: dict[str, object], entries: list[dict[str, object]],
               snapshots: SnapshotUsage) -> None:
    table = Table(title=f"{len(entries)} cached step(s), {data['storage']} bytes in {data['directory']}",
                  title_justify="left")
    for column in ("key", "size", "last used", "step"):
        table.add_column(column)
    for entry in entries:
        key = str(entry["key"]).removeprefix("sha256:")[:12]
        table.add_row(key, str(entry["size"]), str(entry["last_used"]), str(entry["created_by"])[:60])
    console.print(table)
    console.print(f"{snapshots.count} unpacked layer snapshot(s), {snapshots.size} bytes", markup=False)


@cache.command(
    "prune",
    epilog="""\b
Examples:
  anybuild cache prune --keep-storage 5GB
  anybuild cache prune --all
""",
)
@click.option("--keep-storage", "keep_storage", default=None,
              help="Keep the most recently used steps whose layers fit this size (e.g. 5GB).")
@click.option("--all", "everything", is_flag=True, help="Remove every cached step.")
@output_options
@pass_session
def prune(session: Session, keep_storage: str | None, everything: bool) -> None:
    """Remove least recently used steps (and blobs no step uses) and unpacked layer snapshots.

    --keep-storage applies to the cached layers and, separately, to the snapshots.
    """
    limit = parse_size(keep_storage) if keep_storage is not None else None
    result = _store(session).prune(keep_storage=limit, everything=everything)
    snapshots = _snapshots(session).prune(keep_storage=limit, everything=everything)
    data: dict[str, object] = {"entries": result.entries, "blobs": result.blobs, "freed": result.freed,
                               "snapshots": None if snapshots is None else snapshots.count,
                               "snapshots_freed": None if snapshots is None else snapshots.size}
    session.emit(data, lambda console: _render_prune(console, result, snapshots))


def _render_prune(console: Console, result: PruneResult, snapshots: SnapshotUsage | None) -> None:
    console.print(f"removed {result.entries} cached step(s) and {result.blobs} blob(s), "
                  f"freed {result.freed} bytes", markup=False)
    if snapshots is None:
        console.print("layer snapshots not pruned: a build is using them; run prune again when it ends",
                      markup=False)
    elif snapshots.count:
        console.print(f"removed {snapshots.count} layer snapshot(s), freed {snapshots.size} bytes", markup=False)
