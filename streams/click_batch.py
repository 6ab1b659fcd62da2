"""One batch's view of the click state (streams/click_state.py): the click consumer counts a batch
against this overlay and writes the tables once, after the batch is counted.

Reads answer from the batch's own writes first, then from ClickState (its not yet flushed writes,
then RocksDB), so a click sees the event ids, visitors, counters and workspace shares of the
clicks before it in the same batch. Writes are collected here, one per key with its last value,
and handed to ClickState by `commit`: each key is encoded and changelogged once per batch, and a
batch that fails before `commit` leaves the state as it was.

Link counters (LinkStats) are counted in place: `link_stats` loads a link's value once per batch,
`stats_changed` marks it for writing. Workspace shares (`{"count", "offset"}`) are replaced, never
changed in place. Both remember every value the batch read, written or not: the live mirror and
the sinks get every counter the batch touched (a replay rewrites the same numbers).
"""

from __future__ import annotations

from typing import Any

from engine.clicks.counting import LinkStats
from engine.naming import STATE_STATS as STATS
from engine.naming import STATE_WORKSPACE as WORKSPACE
from streams.click_state import ClickState

_MISSING = object()


class BatchOverlay:
    """The batch's pending writes over ClickState (see the module docstring)."""

    def __init__(self, state: ClickState) -> None:
        self.state = state
        # (partition, key) -> value, in the order first written.
        self.writes: dict[tuple[int, str], Any] = {}
        # RocksDB-only writes (ClickState.set_local), e.g. the expiry index of new event ids.
        self.local: dict[tuple[int, str], bytes | None] = {}
        # Every link counter the batch read, by link id (a link's clicks are on one partition),
        # its partition, and the links whose counters changed.
        self.stats: dict[str, LinkStats] = {}
        self.stats_partition: dict[str, int] = {}
        self.changed_stats: set[str] = set()
        # Every workspace share the batch read, by (workspace id, partition).
        self.shares: dict[tuple[str, int], dict[str, int]] = {}

    def get(self, partition: int, key: str) -> Any:
        value = self.writes.get((partition, key), _MISSING)
        return self.state.get(partition, key) if value is _MISSING else value

    def remember(self, partition: int, key: str, value: Any) -> Any:
        """The key's value as of this point of the batch; if it has none, `value` is written and
        None returned (one call for "seen before?" and "remember it", the per-click case)."""
        found = self.writes.get((partition, key), _MISSING)
        if found is _MISSING:
            found = self.state.get(partition, key)
            if found is None:
                self.writes[(partition, key)] = value
        return found

    def set(self, partition: int, key: str, value: Any) -> None:
        self.writes[(partition, key)] = value

    def set_local(self, partition: int, key: str, value: bytes | None) -> None:
        self.local[(partition, key)] = value

    def link_stats(self, partition: int, link_id: str) -> LinkStats:
        """The link's counters as of this point of the batch, to be counted in place."""
        stats = self.stats.get(link_id)
        if stats is None:
            stats = self.stats[link_id] = LinkStats.from_dict(self.get(partition, STATS + link_id))
            self.stats_partition[link_id] = partition
        return stats

    def stats_changed(self, link_id: str) -> None:
        """Write the link's counters (as they are at `commit`) with the batch."""
        self.changed_stats.add(link_id)

    def workspace_share(self, partition: int, workspace_id: str) -> dict[str, int]:
        """The workspace's share of the partition: its click count and the position of the last
        click counted into it."""
        key = (workspace_id, partition)
        share = self.shares.get(key)
        if share is None:
            share = self.shares[key] = self.get(partition, WORKSPACE + workspace_id) or {
                "count": 0,
                "offset": -1,
            }
        return share

    def set_workspace_share(self, partition: int, workspace_id: str, share: dict[str, int]) -> None:
        self.shares[(workspace_id, partition)] = share
        self.writes[(partition, WORKSPACE + workspace_id)] = share

    def commit(self) -> int:
        """Hand every write to ClickState (buffered there until its `flush`); returns how many
        changelogged keys were written."""
        state = self.state
        for (partition, key), value in self.writes.items():
            state.set(partition, key, value)
        for link_id in self.changed_stats:
            state.set(self.stats_partition[link_id], STATS + link_id, self.stats[link_id].to_dict())
        for (partition, key), local in self.local.items():
            state.set_local(partition, key, local)
        written = len(self.writes) + len(self.changed_stats)
        self.writes.clear()
        self.changed_stats.clear()
        self.local.clear()
        return written
