"""The study's SQLite file: what is rated (items), by whom (raters), in which order (assignments), and the
ratings. Every other study module goes through `Study`; every write is one committed transaction.

Blinding lives here: a rater reaches an item only through a `handle`, a random string made for that rater
and that item alone, so neither a URL nor a file name carries the method or the clip, and one rater's
handles mean nothing to another. Raters are known by the SHA-256 of their token: the database holds no
link that would let a reader of the file rate as someone else.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

CRITERIA = ("visual_quality", "lip_sync", "realness")  # the paper's three questions (Sec. 4.4, Table 3)
SCORES = range(1, 6)
DB_NAME = "study.sqlite"
MEDIA = "media"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, clip TEXT NOT NULL, method TEXT NOT NULL, media TEXT NOT NULL UNIQUE,
                    UNIQUE (clip, method));
CREATE TABLE raters (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_sha256 TEXT NOT NULL UNIQUE,
                     invited TEXT NOT NULL);
CREATE TABLE assignments (rater INTEGER NOT NULL REFERENCES raters (id), position INTEGER NOT NULL,
                          item INTEGER NOT NULL REFERENCES items (id), handle TEXT NOT NULL UNIQUE,
                          PRIMARY KEY (rater, position), UNIQUE (rater, item));
CREATE TABLE ratings (rater INTEGER NOT NULL, item INTEGER NOT NULL,
                      visual_quality INTEGER NOT NULL CHECK (visual_quality BETWEEN 1 AND 5),
                      lip_sync INTEGER NOT NULL CHECK (lip_sync BETWEEN 1 AND 5),
                      realness INTEGER NOT NULL CHECK (realness BETWEEN 1 AND 5),
                      submitted TEXT NOT NULL, PRIMARY KEY (rater, item),
                      FOREIGN KEY (rater, item) REFERENCES assignments (rater, item));
"""


class RatingError(Exception):
    """A refused request: `status` is the HTTP status the server answers with, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Current:
    """Where a rater stands: the next item to rate (None when all are rated), its position (from 1)."""
    position: int
    total: int
    handle: str | None


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def validate_scores(body: object) -> dict[str, int]:
    """The three scores of a submission, each an integer 1-5; anything else is refused (400)."""
    if not isinstance(body, dict):
        raise RatingError(400, "expected a JSON object {clip, visual_quality, lip_sync, realness}")
    extra = sorted(set(body) - {"clip", *CRITERIA})
    if extra:
        raise RatingError(400, f"unknown fields: {', '.join(extra)}")
    scores = {}
    for c in CRITERIA:
        v = body.get(c)
        if isinstance(v, bool) or not isinstance(v, int) or v not in SCORES:
            raise RatingError(400, f"{c} must be an integer from 1 to 5, got {v!r}")
        scores[c] = v
    return scores


class Study:
    """One study folder: study.sqlite and media/ (the re-encoded videos under random names)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.db = self.folder / DB_NAME
        if not self.db.is_file():
            raise FileNotFoundError(f"no study in {self.folder}: make one with `g4g study create --study "
                                    f"{self.folder} --method NAME=FOLDER ...`")

    @classmethod
    def create(cls, folder: str | Path, items: list[tuple[str, str, str]], meta: dict) -> Study:
        """A new study of (clip, method, media file name) items; the file is written under a temporary name
        and renamed, so a study exists complete or not at all."""
        folder = Path(folder)
        tmp = folder / f".tmp-{DB_NAME}"
        tmp.unlink(missing_ok=True)
        with closing(sqlite3.connect(tmp)) as con, con:
            con.executescript(SCHEMA)
            con.executemany("INSERT INTO items (clip, method, media) VALUES (?, ?, ?)", items)
            con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        tmp.rename(folder / DB_NAME)
        with closing(sqlite3.connect(folder / DB_NAME)) as con:
            con.execute("PRAGMA journal_mode=WAL")  # readers (page loads, video range requests) never wait
        return cls(folder)

    def connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode: each `with con:` block below is one transaction. A writer
        waits up to 30 s for another (two raters submitting at once are serialised, not refused)."""
        con = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        con.execute("PRAGMA foreign_keys=ON")
        return con

    def meta(self) -> dict:
        with closing(self.connect()) as con:
            return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}

    def items(self) -> list[tuple[int, str, str, str]]:
        with closing(self.connect()) as con:
            return con.execute("SELECT id, clip, method, media FROM items ORDER BY id").fetchall()

    def invite(self, name: str, renew: bool = False) -> str:
        """A new rater's token (their own random order of every item), or with `renew` a fresh token for a
        known rater, keeping their ratings (a lost link; the old one stops working)."""
        token = secrets.token_urlsafe(32)
        with closing(self.connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute("SELECT id FROM raters WHERE name = ?", (name,)).fetchone()
                if renew:
                    if row is None:
                        raise KeyError(f"no rater named {name!r} in {self.folder}")
                    con.execute("UPDATE raters SET token_sha256 = ? WHERE id = ?", (_sha(token), row[0]))
                else:
                    if row is not None:
                        raise ValueError(f"rater {name!r} is already invited (--renew makes a new link)")
                    rater = con.execute("INSERT INTO raters (name, token_sha256, invited) VALUES (?, ?, ?)",
                                        (name, _sha(token), _now())).lastrowid
                    items = [i for i, *_ in con.execute("SELECT id FROM items")]
                    random.SystemRandom().shuffle(items)  # order and position in the session: per rater
                    con.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?)",
                                    [(rater, pos, item, secrets.token_urlsafe(12))
                                     for pos, item in enumerate(items, start=1)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return token

    def rater_for(self, token: str | None) -> int | None:
        if not token:
            return None
        with closing(self.connect()) as con:
            row = con.execute("SELECT id FROM raters WHERE token_sha256 = ?", (_sha(token),)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _current(con: sqlite3.Connection, rater: int) -> Current:
        total = con.execute("SELECT count(*) FROM assignments WHERE rater = ?", (rater,)).fetchone()[0]
        row = con.execute("SELECT a.position, a.handle FROM assignments a LEFT JOIN ratings r "
                          "ON r.rater = a.rater AND r.item = a.item WHERE a.rater = ? AND r.item IS NULL "
                          "ORDER BY a.position LIMIT 1", (rater,)).fetchone()
        return Current(row[0], total, row[1]) if row else Current(total, total, None)

    def current(self, rater: int) -> Current:
        with closing(self.connect()) as con:
            return self._current(con, rater)

    def media_for(self, rater: int, handle: str) -> Path | None:
        """The file behind one of this rater's handles; None for any other handle."""
        with closing(self.connect()) as con:
            row = con.execute("SELECT i.media FROM assignments a JOIN items i ON i.id = a.item "
                              "WHERE a.rater = ? AND a.handle = ?", (rater, handle)).fetchone()
        return self.folder / MEDIA / row[0] if row else None

    def rate(self, rater: int, body: object) -> Current:
        """Record one submission {clip: handle, visual_quality, lip_sync, realness} of the rater's current
        item; returns where the rater stands next. Refused, with nothing written: bad scores (400), a
        handle that is not this rater's (404), an item already rated (409: a replay counts once) or not
        the current one (409: the order is part of the design)."""
        scores = validate_scores(body)
        handle = body.get("clip")
        with closing(self.connect()) as con:
            con.execute("BEGIN IMMEDIATE")  # the checks and the insert see one state, whoever else writes
            try:
                row = con.execute("SELECT item, position FROM assignments WHERE rater = ? AND handle = ?",
                                  (rater, handle if isinstance(handle, str) else "")).fetchone()
                if row is None:
                    raise RatingError(404, f"unknown clip {handle!r}")
                if con.execute("SELECT 1 FROM ratings WHERE rater = ? AND item = ?", (rater, row[0])).fetchone():
                    raise RatingError(409, "this clip is already rated: a submission counts once")
                cur = self._current(con, rater)
                if row[1] != cur.position:
                    raise RatingError(409, f"clip {row[1]} of {cur.total} is not the current one "
                                           f"({cur.position}): clips are rated in order")
                con.execute("INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?)",
                            (rater, row[0], *(scores[c] for c in CRITERIA), _now()))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return self._current(con, rater)

    def ratings(self) -> list[dict]:
        """Every rating with its rater, clip and method (for the table; never served)."""
        with closing(self.connect()) as con:
            rows = con.execute("SELECT r.rater, i.clip, i.method, " + ", ".join(f"r.{c}" for c in CRITERIA) +
                               " FROM ratings r JOIN items i ON i.id = r.item ORDER BY r.rater, i.id").fetchall()
        return [dict(zip(("rater", "clip", "method", *CRITERIA), r)) for r in rows]

    def progress(self) -> list[tuple[str, int, int]]:
        """(rater name, items rated, items assigned) per rater."""
        with closing(self.connect()) as con:
            return con.execute("SELECT name, (SELECT count(*) FROM ratings WHERE rater = raters.id), "
                               "(SELECT count(*) FROM assignments WHERE rater = raters.id) FROM raters "
                               "ORDER BY id").fetchall()
