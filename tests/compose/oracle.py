#!/usr/bin/env python3
"""What the warehouse must hold, computed from the event files alone, compared with what it holds.

    oracle.py warehouse DATA_DIR < dump   users and cards equal the latest version per id of the
                                          events in DATA_DIR/events/done/<type>/<day>/
    oracle.py events DATA_DIR < dump      every file in done/ has its event_id in `events`

`dump` is JSON lines from the warehouse (tests/compose/run makes it with psql):
{"t": "users", "r": {...row...}}, {"t": "cards", "r": {...}}, {"t": "events", "id": "<uuid>"}.

The versions follow etl/src/load/warehouse.rs: a user's row is the event with the greatest
(event_at, event_id); a card's, the greatest (updated_at, event_at, event_id). Timestamps are
'YYYY-MM-DD HH:MM:SS' text (so text order is time order) and PostgreSQL orders uuids as their
lower-case hex text. Prints one line saying what differs; exit 1 if anything does.
"""

import json
import pathlib
import sys


def done_events(data_dir):
    done = pathlib.Path(data_dir) / "events" / "done"
    for folder in ("users", "cards"):
        # Day folders (<YYYY-MM-DD>/), and files directly in the type folder (older versions).
        paths = [*(done / folder).glob("*.json"), *(done / folder).glob("*/*.json")]
        for path in sorted(paths):
            if path.name.startswith("."):
                continue
            yield folder, path, json.loads(path.read_text(encoding="utf-8"))


def expected_rows(data_dir):
    users, cards = {}, {}
    for folder, _path, doc in done_events(data_dir):
        meta, p = doc["metadata"], doc["payload"]
        event_at, event_id = meta["event_at"], meta["event_id"].lower()
        if folder == "users":
            key = (event_at, event_id)
            row = {
                "id": p["id"], "name": p["name"], "address": p["address"], "job": p["job"],
                "score": float(p["score"]), "event_at": event_at, "event_id": event_id,
            }
            table = users
        else:
            key = (p["updated_at"], event_at, event_id)
            row = {
                "id": p["id"], "user_id": p.get("user_id"),
                "created_by_name": p["created_by_name"], "created_at": p["created_at"],
                "updated_at": p["updated_at"], "active": p["active"],
                "event_at": event_at, "event_id": event_id,
            }
            table = cards
        best = table.get(p["id"])
        if best is None or best[0] < key:
            table[p["id"]] = (key, row)
    return ({i: r for i, (_k, r) in users.items()}, {i: r for i, (_k, r) in cards.items()})


def normalise(row):
    """A row as row_to_json gives it, in the files' notation."""
    out = {}
    for name, value in row.items():
        if isinstance(value, str) and name in ("event_at", "updated_at", "created_at"):
            value = value.replace("T", " ")
        elif name == "event_id":
            value = value.lower()
        elif name == "score":
            value = float(value)
        out[name] = value
    return out


def read_dump(stream):
    tables = {"users": {}, "cards": {}}
    events = set()
    for line in stream:
        line = line.strip()
        if not line:
            continue
        item = json.loads(line)
        if item["t"] == "events":
            events.add(item["id"].lower())
        else:
            row = normalise(item["r"])
            tables[item["t"]][row["id"]] = row
    return tables, events


def compare(name, expected, actual):
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(i for i in set(expected) & set(actual) if expected[i] != actual[i])
    if not (missing or extra or differ):
        return None
    first = differ[0] if differ else None
    detail = f"{name}: {len(missing)} missing, {len(extra)} unexpected, {len(differ)} differ"
    if first is not None:
        detail += f" (id {first}: expected {expected[first]}, found {actual[first]})"
    return detail


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("warehouse", "events"):
        sys.exit(__doc__)
    mode, data_dir = sys.argv[1], sys.argv[2]
    tables, events = read_dump(sys.stdin)
    if mode == "warehouse":
        users, cards = expected_rows(data_dir)
        problems = [p for p in (compare("users", users, tables["users"]),
                                compare("cards", cards, tables["cards"])) if p]
        if problems:
            print("; ".join(problems))
            return 1
        print(f"{len(users)} users and {len(cards)} cards as the files in done/ say")
        return 0
    ids = [doc["metadata"]["event_id"].lower() for _f, _p, doc in done_events(data_dir)]
    lost = [i for i in ids if i not in events]
    if lost:
        print(f"{len(lost)} of {len(ids)} files in done/ have no row in events, e.g. {lost[0]}")
        return 1
    print(f"all {len(ids)} files in done/ are in events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
