"""`anybuild cache ls|prune`: the built-in builder's step cache in the data directory."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from anybuild.builder.build import data_dir, sweep_store
from anybuild.builder.cache import PruneResult, StepStore, StoredEntry
from anybuild.builder.stack import LayerSnapshots, SnapshotUsage
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.oci.layout import LayoutStore, Swept
from anybuild.sizes import parse_size

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["cache", "parse_size"]

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
    from rich.table import Table

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

    --keep-storage applies to the cached layers and, separately, to the snapshots. Blobs of
    built images that nothing needs any more leave the image store too; --all also forgets
    the pulled base images (pulled again when a build needs them).
    """
    limit = parse_size(keep_storage) if keep_storage is not None else None
    from anybuild.builder.ledger import recover_abandoned
    from anybuild.process import SubprocessRunner

    # first what builds killed outright left (their mounts would keep snapshots busy)
    recovered = recover_abandoned(data_dir(session.env) / "tmp", runner=SubprocessRunner())
    for done in recovered:
        session.info(f"anybuild: {done.describe()}")
    result = _store(session).prune(keep_storage=limit, everything=everything)
    snapshots = _snapshots(session)
    unpacked = snapshots.prune(keep_storage=limit, everything=everything)
    swept = _sweep(session, snapshots, everything=everything)
    from anybuild.backends.unchanged import forget

    records = forget(session.env)  # the records of unchanged builds (backends.unchanged) go too
    data: dict[str, object] = {"entries": result.entries, "blobs": result.blobs, "freed": result.freed,
                               "records": records,
                               "snapshots": None if unpacked is None else unpacked.count,
                               "snapshots_freed": None if unpacked is None else unpacked.size,
                               "store_blobs": None if swept is None else swept.blobs,
                               "store_freed": None if swept is None else swept.freed,
                               "recovered": [{"directory": str(r.work), "pid": r.pid, "processes": r.processes,
                                              "mounts": r.mounts, "containers": r.containers} for r in recovered]}
    session.emit(data, lambda console: _render_prune(console, result, unpacked, swept))


def _sweep(session: Session, snapshots: LayerSnapshots, *, everything: bool) -> Swept | None:
    """The image store's blobs nothing reaches (with --all, pulled base images too); None while a build runs."""
    root = data_dir(session.env) / "store"
    if not (root / "oci-layout").is_file():
        return Swept(blobs=0, freed=0)
    return sweep_store(LayoutStore.open(root), snapshots, forget=everything)


def _render_prune(console: Console, result: PruneResult, snapshots: SnapshotUsage | None,
                  swept: Swept | None) -> None:
    console.print(f"removed {result.entries} cached step(s) and {result.blobs} blob(s), "
                  f"freed {result.freed} bytes", markup=False)
    if snapshots is None or swept is None:
        console.print("layer snapshots and the image store not pruned: a build is using them; "
                      "run prune again when it ends", markup=False)
    if snapshots is not None and snapshots.count:
        console.print(f"removed {snapshots.count} layer snapshot(s), freed {snapshots.size} bytes", markup=False)
    if swept is not None and swept.blobs:
        console.print(f"removed {swept.blobs} blob(s) from the image store, freed {swept.freed} bytes", markup=False)
