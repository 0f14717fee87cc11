"""The sandbox's world on disk, as a real Codat account keeps it across restarts.

One JSON file, ``world.json``, in the data directory: the clock, every change made by
``/_sandbox/advance`` or ``--change-every``, the companies and connections created through the
API with their links and syncs, sync settings, and literal record sets. Run-time faults
(``/_sandbox/faults``, ``--error-rate``…) are not world state and are not kept.

A new data directory draws a random salt that every id of its world is made from, so two worlds
never share a company, connection or sync id: a bookmark from another world cannot silently
match. Records themselves are generated from the seed, as before.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from .catalog import PLATFORM_BY_KEY
from .records import ConnectionData, LiteralCollection, Sizes
from .world import Company, Connection, PullOperation, Settings, World

FORMAT = 1
FILE_NAME = "world.json"
# Settings that shape the world; a saved world is only reopened with the same ones.
SHAPE = ("seed", "companies", "orders", "accounting_every")
FLAG_OF = {"seed": "--seed", "companies": "--companies", "orders": "--orders",
           "accounting_every": "--accounting-every", "api_key": "--api-key"}


class WorldStoreError(Exception):
    """The data directory cannot be used; the message is one line for the user."""


class WorldStore:
    """Load a world from ``data_dir`` (or make a new one there) and save it after changes."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / FILE_NAME
        self.resumed = False  # True when the world came from disk

    def reset(self) -> None:
        """Forget the saved world (``--reset``)."""
        self.path.unlink(missing_ok=True)

    def open(self, settings: Settings, base_url: str) -> World:
        """The saved world if there is one (same shape as ``settings``), else a new one, saved now.
        Raises WorldStoreError in one line naming the directory and what differs."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorldStoreError(f"--data-dir {self.dir}: cannot create it ({exc.strerror})") from None
        if not self.path.exists():
            world = World(settings, base_url, salt=secrets.randbits(63) | 1)
            self.save(world)
            return world
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WorldStoreError(f"--data-dir {self.dir}: {FILE_NAME} cannot be read ({exc}); "
                                  "start over with --reset") from None
        if saved.get("format") != FORMAT:
            raise WorldStoreError(f"--data-dir {self.dir}: {FILE_NAME} has format {saved.get('format')!r}, not "
                                  f"{FORMAT}; start over with --reset")
        shape = saved.get("shape") or {}
        wanted = {**{name: getattr(settings, name) for name in SHAPE}, "api_key": settings.key}
        differs = [f"{FLAG_OF[name]} {shape.get(name)!r} (asked: {wanted[name]!r})" for name in wanted
                   if shape.get(name) != wanted[name] and name != "api_key"]
        if shape.get("api_key") != settings.key:
            differs.append("--api-key (another key)")
        if differs:
            raise WorldStoreError(f"--data-dir {self.dir} holds a world made with {', '.join(differs)}; start "
                                  "it with the same flags, choose another --data-dir, or start over with --reset")
        world = restore(saved, settings, base_url)
        self.resumed = True
        return world

    def save(self, world: World) -> None:
        """Write the world atomically (a crash leaves the previous save, never half of one)."""
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(snapshot(world), separators=(",", ":")), encoding="utf-8")
        os.replace(temporary, self.path)


def snapshot(world: World) -> dict[str, Any]:
    """Everything that makes the world what it is, as JSON."""
    return {
        "format": FORMAT, "salt": world.salt, "base_url": world.base_url,
        "shape": {**{name: getattr(world.settings, name) for name in SHAPE}, "api_key": world.settings.key},
        "clock": world.clock, "advances": world.advances, "created_companies": world.created_companies,
        "profile_settings": world.profile_settings, "data_pages": world.data_pages, "restamps": world.restamps,
        "events": world.events,
        "companies": [_company(c) for c in world.companies.values()],
    }


def _company(company: Company) -> dict[str, Any]:
    return {"id": company.id, "name": company.name, "description": company.description, "tags": company.tags,
            "created": company.created, "redirect": company.redirect, "sync_settings": company.sync_settings,
            "connections": [_connection(c) for c in company.connections.values()]}


def _connection(connection: Connection) -> dict[str, Any]:
    data = connection.data
    return {
        "id": connection.id, "platform": connection.platform.key, "created": connection.created,
        "link_url": connection.link_url, "status": connection.status,
        "syncs": [{"id": s.id, "data_type": s.data_type, "requested_at": s.requested_at, "delay": s.delay,
                   "final_status": s.final_status} for s in connection.syncs],
        "data": None if data is None else {
            "salt": data.salt, "base_start": data.base_start, "company_name": data.company_name,
            "collections": {name: {"inserted": c.inserted, "changed": [[i, v, ts] for i, (v, ts) in c.changed.items()]}
                            for name, c in data.collections.items() if c.inserted or c.changed},
            "literals": {name: {"records": lit.records, "ordered": lit.ordered} for name, lit in data.literals.items()},
        },
    }


def restore(saved: dict[str, Any], settings: Settings, base_url: str) -> World:
    """The world a :func:`snapshot` describes, served from ``base_url`` (links follow the new port)."""
    world = World(settings, base_url, salt=int(saved["salt"]), seeded=False)
    old_base = str(saved.get("base_url") or "")

    def rebased(url: str) -> str:
        return base_url + url[len(old_base):] if old_base and url.startswith(old_base) else url

    for name in ("clock", "advances", "created_companies", "data_pages", "restamps", "events"):
        setattr(world, name, int(saved.get(name, 0)))
    world.profile_settings = saved["profile_settings"]
    for raw in saved["companies"]:
        company = Company(raw["id"], raw["name"], raw["description"], raw["tags"], raw["created"],
                          rebased(raw["redirect"]), sync_settings=raw["sync_settings"])
        world.companies[company.id] = company
        for rc in raw["connections"]:
            connection = Connection(rc["id"], company.id, PLATFORM_BY_KEY[rc["platform"]], rc["created"],
                                    rebased(rc["link_url"]), rc["status"])
            connection.syncs = [PullOperation(s["id"], company.id, connection.id, s["data_type"], s["requested_at"],
                                              s["delay"], s["final_status"]) for s in rc["syncs"]]
            if rc["data"] is not None:
                data = rc["data"]
                connection.data = ConnectionData(connection.platform, int(data["salt"]), Sizes(settings.orders),
                                                 int(data["base_start"]), data["company_name"])
                for name, state in data["collections"].items():
                    collection = connection.data.collections[name]
                    collection.inserted = int(state["inserted"])
                    collection.changed = {int(i): (int(v), int(ts)) for i, v, ts in state["changed"]}
                for name, literal in data["literals"].items():
                    connection.data.literals[name] = LiteralCollection(literal["records"], bool(literal["ordered"]))
            company.connections[connection.id] = connection
    return world
