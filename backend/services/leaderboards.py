"""Leaderboards: residents ranked by certified grams, per community or region, per China week or month.

What a board counts (the decisions behind it):

* **Grams**: certified reductions attributed to the resident (``reductions.resident_id``), the same
  grams as ``reduction_g`` of ``/me/balance``; a reversed reduction no longer counts.
* **Period**: the China (Asia/Shanghai) week, Monday to Sunday, or calendar month the activity
  happened in (``occurred_at``), whenever it was reported.
* **Region board**: reductions recorded in the region *or any region below it* (a city's board
  includes its districts), wherever the resident lives now.
* **Community board**: the community's current members, by their grams in the period, whenever they
  joined: a resident's grams of a week are the same number on each of their communities' boards,
  and a newcomer appears at once. Memberships keep no history, so one who leaves leaves every board
  of the community, past periods' too, and one who joins appears on them.
* **Ranks**: residents with more than 0 g; equal grams share a rank ("1, 2, 2, 4"); among equal
  grams the lower resident id (the earlier sign-up) is listed first.

The database is the truth (DESIGN invariant 8). Redis keeps each board as a sorted set so that a
read costs a few Redis calls instead of a scan of the period's reductions, and the cached board is
kept equal to a recount by construction:

* Nothing is ever *incremented*. A change marks the resident dirty on each board it touches, after
  the commit (a rolled-back transaction marks nothing). A reader recomputes dirty residents from
  the database and writes absolute totals, each only if the resident's mark is still the one it
  read (marks are numbered): a late, repeated or out-of-order write cannot double or lose grams.
* A board is built from a recount and the mark number taken *before* the recount: marks up to it
  are covered and cleared, later ones stay for the next reader.
* Before its commit a transaction registers itself as pending on the boards it touches; its commit
  hook turns that into marks. A pending entry a minute old means a process died or lost Redis
  between commit and hook: readers turn it into marks.
* Redis unreachable during a hook: the process keeps the marks and applies them when Redis answers
  again (too many: it moves the generation on, which retires every cached board).
* A board missing, of another format or generation, malformed, or (for a community) built for
  another membership is never trusted: the reader rebuilds it, or answers from the database when
  it cannot (Redis down, another process building it).

Redis must not evict these keys (``maxmemory-policy noeviction``, as for the job locks).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import secrets
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import current_app
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import and_, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from backend.db import db, utcnow
from backend.errors import Forbidden, NotFound, field_error
from backend.methodology import start_of_day
from backend.models import Community, CommunityMember, Reduction, Region, Resident, User
from backend.services.ledger import among, china_day
from backend.services.regions import ancestors
from backend.services.scope import descendants, require_in_scope
from backend.signals import reductions_changed

log = logging.getLogger(__name__)

PERIODS = ("week", "month")
SCOPES = ("community", "region")
EARLIEST = date(2000, 1, 1)          # boards before this are refused rather than computed
FORMAT = "1"                         # what a cached board's layout is; another value is rebuilt
PREFIX = "carbon:lb"
GENERATION_KEY = f"{PREFIX}:generation"
RETAIN = timedelta(days=35)          # cached boards outlive their period: late reports, last month's board
PENDING_GRACE_MS = 60_000            # a commit's hook runs within milliseconds; a minute means it never will
REFRESH_MAX = 2000                   # more dirty residents than this on one board: rebuild it instead
BUILD_LOCK_MS = 60_000
CHUNK = 5000
BACKLOG_MAX = 50_000                 # marks kept in memory while Redis is down, before retiring every board
MAX_GRAMS = 2**53                    # Redis scores are doubles: integers are exact up to here
MEMBER_BASE = 10**19 - 1             # members are MEMBER_BASE - resident id, 19 digits (see _member)

_NOTES = "leaderboards.notes"        # session.info: subjects noted in the open transaction
_TOUCHED = "leaderboards.touched"    # session.info: (tx, boards) resolved at before_commit
_LISTENING = "leaderboards.listening"
_KEY = re.compile(r"^carbon:lb:\{(region|community):(\d{1,19}):(week|month):(\d{4}-\d{2}-\d{2})\}:meta$")
_TOKEN = re.compile(r"^[0-9a-f]{16}$")


class Malformed(Exception):
    """A cached value that is not what this module writes: discarded, never trusted."""


# --- periods and boards ------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Period:
    kind: str  # week | month
    first: date  # its first China day
    next: date  # the first China day after it

    @classmethod
    def containing(cls, kind: str, day: date) -> Period:
        if kind == "week":
            first = day - timedelta(days=day.weekday())
            return cls(kind, first, first + timedelta(days=7))
        first = day.replace(day=1)
        return cls(kind, first, (first + timedelta(days=32)).replace(day=1))

    @property
    def last(self) -> date:
        return self.next - timedelta(days=1)

    @property
    def starts_at(self) -> datetime:
        return start_of_day(self.first).astimezone(UTC)

    @property
    def ends_at(self) -> datetime:
        return start_of_day(self.next).astimezone(UTC)


@dataclass(frozen=True, order=True)
class Board:
    scope: str  # region | community
    ident: str  # the region code, or the community id
    period: Period

    @property
    def tag(self) -> str:
        # One hash tag per board: its keys share a Redis Cluster slot, so its scripts may touch them all.
        return f"{PREFIX}:{{{self.scope}:{self.ident}:{self.period.kind}:{self.period.first.isoformat()}}}"

    def key(self, part: str) -> str:
        return f"{self.tag}:{part}"

    @property
    def expire_at(self) -> int:
        return int(max(self.period.ends_at + RETAIN, utcnow() + timedelta(days=1)).timestamp())


def period_for(kind: str, day: date | None) -> Period:
    today = china_day(utcnow())
    day = today if day is None else day
    if day > today:
        raise field_error("date", "is in the future", location="query")
    if day < EARLIEST:
        raise field_error("date", f"must be on or after {EARLIEST.isoformat()}", location="query")
    return Period.containing(kind, day)


def _member(resident_id: int) -> str:
    """Fixed-width and inverted, so that Redis's reverse order of equal scores (by member, descending)
    lists the lower resident id first, as the database query does."""
    return f"{MEMBER_BASE - resident_id:019d}"


def _resident_of(member: Any) -> int:
    if not (isinstance(member, str) and len(member) == 19 and member.isdigit()):
        raise Malformed(f"member {member!r}")
    resident_id = MEMBER_BASE - int(member)
    if resident_id < 1:
        raise Malformed(f"member {member!r}")
    return resident_id


def _grams(value: Any) -> int:
    """A score as written here: a positive whole number of grams (Redis prints those as digits)."""
    if not (isinstance(value, str) and value.isdigit()) or not 0 < int(value) <= MAX_GRAMS:
        raise Malformed(f"score {value!r}")
    return int(value)


def kg(grams: int) -> Decimal:
    return (Decimal(grams) / 1000).quantize(Decimal("0.001"))


# --- the recount (the truth) ---------------------------------------------------------------------------


def _totals(board: Board, residents: Iterable[int] | None = None) -> dict[int, int]:
    """Grams per resident on ``board`` from the registry (only ``residents``, when given)."""
    period = board.period
    query = select(Reduction.resident_id, func.sum(Reduction.grams)).where(
        Reduction.status == "certified", Reduction.resident_id.is_not(None),
        Reduction.occurred_at >= period.starts_at, Reduction.occurred_at < period.ends_at)
    if board.scope == "region":
        query = query.where(among(Reduction.region_code, sorted(descendants(board.ident))))
    else:
        query = query.join(CommunityMember, and_(CommunityMember.resident_id == Reduction.resident_id,
                                                 CommunityMember.community_id == int(board.ident)))
    if residents is not None:
        query = query.where(among(Reduction.resident_id, sorted(residents)))
    rows = db.session.execute(query.group_by(Reduction.resident_id))
    return {resident_id: int(grams) for resident_id, grams in rows if grams and int(grams) > 0}


def recount(board: Board) -> dict[int, int]:
    """The board as the database has it: ``{resident_id: grams}`` of everyone above 0 g."""
    return _totals(board)


def _membership(board: Board) -> str:
    """A fingerprint of a community's members: any join or leave changes it (a join moves the
    latest ``joined_at``, a leave the count), so a board built for other members is not trusted."""
    if board.scope != "community":
        return ""
    count, ids, latest = db.session.execute(
        select(func.count(), func.coalesce(func.sum(CommunityMember.resident_id), 0),
               func.max(CommunityMember.joined_at)).where(CommunityMember.community_id == int(board.ident))).one()
    return f"{count}:{ids}:{latest.isoformat() if isinstance(latest, datetime) else latest}"


# --- standings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    top: list[tuple[int, int]]  # (resident_id, grams), best first
    me: tuple[int | None, int] | None  # (rank, grams) of the asking resident; rank None below 1 g
    participants: int
    source: str  # cache | database
    names: dict[int, str] = field(default_factory=dict)  # display names of those in ``top``


def _ranked(totals: Mapping[int, int], resident_id: int | None, limit: int, source: str) -> Standing:
    order = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    me = None
    if resident_id is not None:
        grams = totals.get(resident_id, 0)
        me = (1 + sum(1 for g in totals.values() if g > grams) if grams > 0 else None, grams)
    return Standing(order[:limit], me, len(totals), source)


def standing(board: Board, *, resident_id: int | None, limit: int) -> Standing:
    """The top ``limit`` and the resident's own place: from the cached board when it can be trusted,
    else from a recount (which rebuilds the cached board when Redis answers)."""
    membership = _membership(board)  # before anything is read: a later change then shows as a mismatch
    try:
        result = _cached_standing(board, resident_id, limit, membership)
        names = _names(result.top)
        if len(names) == len(result.top):
            return replace(result, names=names)
        log.warning("leaderboard %s: discarding a cached board naming residents that do not exist", board.tag)
        _reset(board)
        result = _ranked(_build(board, _generation(), membership)[0], resident_id, limit, "database")
    except RedisError as exc:
        log.warning("leaderboard %s answered from the database: Redis unavailable (%s)", board.tag, exc)
        result = _ranked(_totals(board), resident_id, limit, "database")
    return replace(result, names=_names(result.top))


def _names(top: list[tuple[int, int]]) -> dict[int, str]:
    ids = [resident_id for resident_id, _ in top]
    if not ids:
        return {}
    return dict(db.session.execute(select(Resident.id, Resident.display_name).where(among(Resident.id, ids))).all())


@dataclass(frozen=True)
class _State:
    token: str
    participants: int
    dirty: int
    overdue: int  # pending entries older than the grace
    top: list[tuple[int, int]]
    mine: int | None
    above: int


def _cached_standing(board: Board, resident_id: int | None, limit: int, membership: str) -> Standing:
    _flush_backlog()
    generation = _generation()
    refreshed = False
    while True:
        try:
            state = _read(board, generation, membership, resident_id, limit)
        except Malformed as exc:
            log.warning("leaderboard %s: discarding a malformed cached board (%s)", board.tag, exc)
            _reset(board)
            state = None
        if state is None:
            return _ranked(_build(board, generation, membership)[0], resident_id, limit, "database")
        if refreshed or not (state.dirty or state.overdue):
            break
        refreshed = True
        if state.overdue:
            _script(_PROMOTE)(keys=[board.key("seq"), board.key("dirty"), board.key("pending"), board.key("meta")],
                              args=[_now_ms() - PENDING_GRACE_MS, board.expire_at])
        if not _refresh(board, state.token):
            return _ranked(_build(board, generation, membership)[0], resident_id, limit, "database")
    # Marks that arrived after the refresh began belong to commits concurrent with this read.
    me = None
    if resident_id is not None:
        me = (state.above + 1, state.mine) if state.mine else (None, 0)
    return Standing(state.top, me, state.participants, "cache")


def _read(board: Board, generation: str, membership: str, resident_id: int | None, limit: int) -> _State | None:
    """The cached board in one atomic script; None when it is missing or outdated."""
    try:
        raw = _script(_READ)(keys=[board.key("meta"), board.key("z"), board.key("dirty"), board.key("pending")],
                             args=[limit, _member(resident_id) if resident_id else "", _now_ms() - PENDING_GRACE_MS])
    except ResponseError as exc:  # a key of the wrong type, say
        raise Malformed(str(exc)) from None
    meta_list, zcard, dirty, overdue, top, mine, above = raw
    meta = dict(zip(meta_list[::2], meta_list[1::2], strict=True))
    if not meta:
        return None
    if meta.get("v") != FORMAT or meta.get("gen") != generation or meta.get("fp") != membership:
        return None
    token, count = meta.get("token", ""), meta.get("n", "")
    if not _TOKEN.match(token) or not count.isdigit() or int(count) != zcard:
        raise Malformed(f"meta {meta!r} for {zcard} members")
    pairs = [(_resident_of(member), _grams(score)) for member, score in zip(top[::2], top[1::2], strict=True)]
    if any(a[1] < b[1] for a, b in itertools.pairwise(pairs)):
        raise Malformed("scores out of order")
    return _State(token, zcard, int(dirty), int(overdue), pairs, _grams(mine) if mine else None, int(above))


def _refresh(board: Board, token: str) -> bool:
    """Recompute the dirty residents and write their totals; False when the board should be rebuilt
    instead (too many, or unreadable marks)."""
    client = _redis()
    if client.zcard(board.key("dirty")) > REFRESH_MAX:
        return False
    marks = client.zrange(board.key("dirty"), 0, REFRESH_MAX - 1, withscores=True, score_cast_func=_text)
    dirty: dict[int, tuple[str, int]] = {}
    unreadable = []
    for member, score in marks:
        try:
            dirty[_resident_of(member)] = (member, _mark(score))
        except Malformed:
            unreadable.append(member)
    if unreadable:  # an unknown change: drop the marks, and let a rebuild cover whatever they were
        log.warning("leaderboard %s: discarding unreadable marks %r", board.tag, unreadable[:5])
        client.zrem(board.key("dirty"), *unreadable)
        return False
    totals = _totals(board, dirty)
    args: list[Any] = [token, board.expire_at]
    for resident_id, (member, mark) in dirty.items():
        args += [member, mark, totals.get(resident_id, 0)]
    _script(_REFRESH)(keys=[board.key("meta"), board.key("z"), board.key("dirty")], args=args)
    # -1 (the board was rebuilt meanwhile) needs nothing: the new board covers these marks or keeps them.
    return True


def _text(raw: Any) -> str:
    """A score as Redis sent it (redis-py hands a score cast function bytes, decoded or not)."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _mark(score: Any) -> int:
    text = str(score)
    text = text[:-2] if text.endswith(".0") else text
    if not text.isdigit():
        raise Malformed(f"mark {score!r}")
    return int(text)


def _build(board: Board, generation: str, membership: str) -> tuple[dict[int, int], bool]:
    """Recount the board and store it, unless another process is building it. Returns the recount,
    and whether it was stored.

    The mark number is taken before the recount: marks up to it are for commits the recount sees.
    A newer build already stored (a higher mark number) is not overwritten by an older one.
    """
    client = _redis()
    token = secrets.token_hex(8)
    if not client.set(board.key("build"), token, nx=True, px=BUILD_LOCK_MS):
        return _totals(board), False
    try:
        pipe = client.pipeline(transaction=False)
        pipe.incr(board.key("seq"))
        pipe.expireat(board.key("seq"), board.expire_at)
        seq = pipe.execute()[0]
    except ResponseError:  # the mark counter is not a number: repair it first
        _reset(board)
        seq = client.incr(board.key("seq"))
    totals = _totals(board)
    stored = False
    try:
        tmp = board.key(f"tmp:{token}")
        items = [(_member(r), g) for r, g in totals.items()]
        for start in range(0, len(items), CHUNK):
            pipe = client.pipeline(transaction=False)
            pipe.zadd(tmp, dict(items[start:start + CHUNK]))
            pipe.expire(tmp, 600)
            pipe.execute()
        _script(_SWAP)(keys=[board.key("meta"), board.key("z"), board.key("dirty"), tmp],
                       args=[token, seq, generation, utcnow().isoformat(), membership, board.expire_at,
                             len(totals), FORMAT])
        stored = True
    except RedisError as exc:  # the recount is the answer either way
        log.warning("leaderboard %s not stored: %s", board.tag, exc)
    finally:
        with contextlib.suppress(RedisError):  # else it expires
            _script(_UNLOCK)(keys=[board.key("build")], args=[token])
    return totals, stored


def _reset(board: Board) -> None:
    _script(_RESET)(keys=[board.key("meta"), board.key("z"), board.key("dirty"), board.key("pending"),
                          board.key("seq")], args=[])


def rebuild(board: Board) -> int | None:
    """Recount one board and store it; the number of residents on it, or None when another process
    is building it. Raises ``RedisError`` when Redis is unreachable."""
    if board.scope == "community" and db.session.get(Community, int(board.ident)) is None:
        return 0
    membership = _membership(board)
    generation = _generation()
    if _redis().exists(board.key("build")):  # being built: no second recount
        return None
    totals, stored = _build(board, generation, membership)
    return len(totals) if stored else None


def rebuild_all() -> dict[str, int]:
    """The scheduler's "leaderboard rebuild": recount and store every cached board of the last
    ``RETAIN``, and the current week's and month's board of every region (so the first reader does
    not wait). The backstop for what the marks cannot know: marks lost with a process that died while
    Redis was unreachable, or a well-formed wrong value written into Redis by hand.

    A job, never part of a unit of work: it ends its read transaction after each board, so that on
    SQLite writers are not held up for the whole run.
    """
    counts = {"boards": 0, "residents": 0, "busy": 0, "redis_unreachable": 0}
    today = china_day(utcnow())
    try:
        _flush_backlog()
        # A board whose period ended long ago is left to expire (a reader rebuilds it on demand).
        boards = {b for b in _cached_boards() if b.period.next + RETAIN > today}
    except RedisError as exc:
        log.warning("leaderboard rebuild skipped: Redis unavailable (%s)", exc)
        counts["redis_unreachable"] = 1
        return counts
    for code in db.session.scalars(select(Region.code)):
        boards.update(Board("region", code, Period.containing(kind, today)) for kind in PERIODS)
    db.session.rollback()
    for board in sorted(boards):
        try:
            size = rebuild(board)
        except RedisError as exc:
            log.warning("leaderboard rebuild stopped: Redis unavailable (%s)", exc)
            counts["redis_unreachable"] = 1
            break
        finally:
            db.session.rollback()
        if size is None:
            counts["busy"] += 1
        else:
            counts["boards"] += 1
            counts["residents"] += size
    return counts


def _cached_boards() -> Iterator[Board]:
    for key in _redis().scan_iter(match=f"{PREFIX}:{{*}}:meta", count=1000):
        found = _KEY.match(key)
        if found is None:
            continue
        scope, ident, kind, first = found.groups()
        try:
            yield Board(scope, ident, Period.containing(kind, date.fromisoformat(first)))
        except ValueError:
            continue


# --- the API's two boards -----------------------------------------------------------------------------


def community_leaderboard(viewer: int | User, community_id: int, *, period: str, day: date | None,
                          limit: int) -> dict[str, Any]:
    """Members see their community's board; operators, auditors and admins those in their scope.
    ``viewer``: the asking resident's id, or the staff user."""
    community = db.session.get(Community, community_id)
    if community is None:
        raise NotFound(f"No community {community_id}.")
    caller = _resident_id(viewer)
    if caller is None:
        require_in_scope(_staff(viewer), community.region_code)
    elif db.session.get(CommunityMember, (community.id, caller)) is None:
        raise Forbidden("Only members see a community's leaderboard.", error="not_a_member")
    board = Board("community", str(community.id), period_for(period, day))
    return _present(board, standing(board, resident_id=caller, limit=limit), caller=caller, name=community.name,
                    region=community.region_code, community_id=community.id)


def region_leaderboard(viewer: int | User, code: str, *, period: str, day: date | None,
                       limit: int) -> dict[str, Any]:
    """Any resident sees any region's board; operators, auditors and admins those in their scope.
    ``viewer``: the asking resident's id, or the staff user."""
    if not (isinstance(code, str) and len(code) == 6 and code.isdigit()):
        raise field_error("code", "must be a six-digit GB/T 2260 region code", location="path")
    region = db.session.get(Region, code)
    if region is None:
        raise NotFound(f"No region {code}.")
    caller = _resident_id(viewer)
    if caller is None:
        require_in_scope(_staff(viewer), region.code)
    board = Board("region", region.code, period_for(period, day))
    return _present(board, standing(board, resident_id=caller, limit=limit), caller=caller, name=region.name,
                    region=region.code, community_id=None)


def _resident_id(viewer: int | User) -> int | None:
    """The resident asking (their id given, or their user), or None for staff."""
    if isinstance(viewer, int):
        return viewer
    if viewer.kind != "resident":
        return None
    return db.session.scalar(select(Resident.id).where(Resident.user_id == viewer.id))


def _staff(viewer: int | User) -> User:
    assert isinstance(viewer, User), "a resident id was given for a staff viewer"
    return viewer


def _present(board: Board, result: Standing, *, caller: int | None, name: str, region: str,
             community_id: int | None) -> dict[str, Any]:
    """Display names only: other people appear by the name they chose, never by id or username."""
    names = result.names
    entries: list[dict[str, Any]] = []
    rank, previous = 0, None
    for position, (resident_id, grams) in enumerate(result.top, start=1):
        if grams != previous:
            rank, previous = position, grams
        entries.append({"rank": rank, "display_name": names.get(resident_id, ""), "grams": grams,
                        "kg": kg(grams), "is_me": resident_id == caller})
    period, me = board.period, result.me
    return {
        "scope": board.scope, "name": name, "region": region, "community_id": community_id,
        "period": period.kind, "start": period.first, "end": period.last,
        "starts_at": period.starts_at, "ends_at": period.ends_at, "timezone": "Asia/Shanghai",
        "participants": result.participants, "entries": entries,
        "me": None if me is None else {"rank": me[0], "grams": me[1], "kg": kg(me[1])},
        "source": result.source, "as_of": utcnow(),
    }


# --- after the commit: marks -----------------------------------------------------------------------------


def connect_signals() -> None:
    """Listen to ``reductions_changed`` (idempotent: blinker keeps one connection per receiver)."""
    reductions_changed.connect(_noted, weak=False)


def _noted(_sender: Any, *, subjects: Iterable[tuple[int | None, str, datetime]], **_: Any) -> None:
    """Keep the subjects on the session until its commit; never act before it."""
    session = db.session
    session.info.setdefault(_NOTES, []).extend(s for s in subjects if s[0] is not None)
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session, "before_commit", _before_commit)
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_soft_rollback", _after_soft_rollback)


def _touched(subjects: list[tuple[int, str, datetime]]) -> dict[Board, set[int]]:
    """The boards the subjects' reductions are on: their region and every region above it, and the
    communities the resident is in."""
    residents = sorted({s[0] for s in subjects})
    communities: dict[int, list[int]] = defaultdict(list)
    for resident_id, community_id in db.session.execute(
            select(CommunityMember.resident_id, CommunityMember.community_id)
            .where(among(CommunityMember.resident_id, residents))):
        communities[resident_id].append(community_id)
    # A batch has thousands of subjects on a handful of boards: work out each board once.
    chains: dict[str, list[str]] = {}
    on_boards: dict[tuple[str, date], list[Board]] = {}
    boards: dict[Board, set[int]] = defaultdict(set)
    for resident_id, region_code, occurred_at in subjects:
        key = (region_code, china_day(occurred_at))
        regional = on_boards.get(key)
        if regional is None:
            chain = chains.get(region_code) or chains.setdefault(region_code, ancestors(region_code))
            periods = [Period.containing(kind, key[1]) for kind in PERIODS]
            regional = on_boards[key] = [Board("region", code, period) for period in periods for code in chain]
        for board in regional:
            boards[board].add(resident_id)
        for community_id in communities[resident_id]:
            for period in {board.period for board in regional}:
                boards[Board("community", str(community_id), period)].add(resident_id)
    return dict(boards)


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():  # SQLAlchemy sends it when a savepoint is released too
        return
    subjects = session.info.pop(_NOTES, None)
    if not subjects:
        return
    boards = _touched(subjects)
    earlier = session.info.get(_TOUCHED)
    if earlier is not None:  # a commit that failed after its before_commit, then retried
        for board, residents in earlier[1].items():
            boards.setdefault(board, set()).update(residents)
    tx = secrets.token_hex(8)
    session.info[_TOUCHED] = (tx, boards)
    try:
        pipe = _redis().pipeline(transaction=False)
        pending = _script(_PENDING)
        now = _now_ms()
        for board, residents in boards.items():
            pending(keys=[board.key("seq"), board.key("pending")],
                    args=[board.expire_at, now, tx, *(_member(r) for r in sorted(residents))], client=pipe)
        pipe.execute(raise_on_error=False)
    except RedisError as exc:  # the hook after the commit will try again, then keep the marks
        log.warning("leaderboards: could not register a pending change (%s)", exc)


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a released savepoint: the transaction may still roll back
        return
    touched = session.info.pop(_TOUCHED, None)
    if touched is None:
        return
    tx, boards = touched
    try:
        _flush_backlog()
        _apply_marks(boards, tx)
    except Exception as exc:  # committed already: the caller must not fail, the marks must not be lost
        if not isinstance(exc, RedisError):
            log.exception("leaderboards: marking after a commit failed")
        else:
            log.warning("leaderboards: Redis unavailable after a commit; marks kept for later (%s)", exc)
        _backlog().keep(boards)


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    if previous.parent is not None:  # a savepoint: the transaction goes on, and so do its notes
        return
    session.info.pop(_NOTES, None)
    touched = session.info.pop(_TOUCHED, None)
    if touched is None:
        return
    tx, boards = touched
    try:  # tidy only: a pending entry left behind just turns into a harmless recount later
        pipe = _redis().pipeline(transaction=False)
        for board, residents in boards.items():
            pipe.zrem(board.key("pending"), *(f"{tx}:{_member(r)}" for r in residents))
        pipe.execute(raise_on_error=False)
    except RedisError:
        pass


def _apply_marks(boards: Mapping[Board, set[int]], tx: str) -> None:
    client = _redis()
    mark = _script(_MARK)
    pipe = client.pipeline(transaction=False)
    order = list(boards.items())
    for board, residents in order:
        mark(keys=[board.key("seq"), board.key("dirty"), board.key("pending"), board.key("meta")],
             args=[board.expire_at, tx, *(_member(r) for r in sorted(residents))], client=pipe)
    results = pipe.execute(raise_on_error=False) if order else []
    for (board, _), result in zip(order, results, strict=True):
        if isinstance(result, ResponseError):  # a key of the wrong type: the board cannot be kept
            log.warning("leaderboard %s: discarding a malformed cached board (%s)", board.tag, result)
            _reset(board)
        elif isinstance(result, Exception):
            raise result


@dataclass
class _Backlog:
    """Marks this process could not write while Redis was unreachable (per app)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    marks: dict[Board, set[int]] = field(default_factory=dict)
    size: int = 0
    retire_all: bool = False

    def keep(self, boards: Mapping[Board, set[int]]) -> None:
        with self.lock:
            for board, residents in boards.items():
                self.marks.setdefault(board, set()).update(residents)
            self.size = sum(len(r) for r in self.marks.values())
            if self.size > BACKLOG_MAX:
                self.marks, self.size, self.retire_all = {}, 0, True

    def take(self) -> tuple[dict[Board, set[int]], bool]:
        with self.lock:
            marks, retire = self.marks, self.retire_all
            self.marks, self.size, self.retire_all = {}, 0, False
            return marks, retire


def _backlog() -> _Backlog:
    return current_app.extensions.setdefault("leaderboards.backlog", _Backlog())


def _flush_backlog() -> None:
    """Write what an outage kept back, before anything else reads or writes the boards."""
    backlog = _backlog()
    if not backlog.marks and not backlog.retire_all:
        return
    marks, retire = backlog.take()
    try:
        if retire:
            _redis().incr(GENERATION_KEY)
            log.warning("leaderboards: too many marks were lost to an outage; every cached board retired")
        elif marks:
            _apply_marks(marks, "")
    except RedisError:
        if retire:
            backlog.retire_all = True
        else:
            backlog.keep(marks)
        raise


# --- Redis --------------------------------------------------------------------------------------------------


def _redis() -> Any:
    return current_app.extensions["redis_store"]


def _script(source: str) -> Any:
    return _redis().register_script(source)


def _generation() -> str:
    try:
        value = _redis().get(GENERATION_KEY)
    except ResponseError:  # not a string
        value = ""
    if value is None or (isinstance(value, str) and value.isdigit()):  # INCR writes digits
        return value or "0"
    _redis().delete(GENERATION_KEY)  # malformed: a new generation (every board is rebuilt)
    return "0"


def _now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


# KEYS: seq, pending. ARGV: expire_at, now_ms, tx, member... Only boards kept in Redis (seq exists).
_PENDING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 4, #ARGV do redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3] .. ':' .. ARGV[i]) end
redis.call('EXPIREAT', KEYS[2], ARGV[1])
return #ARGV - 3
"""

# KEYS: seq, dirty, pending, meta. ARGV: expire_at, tx ('' for none), member...
_MARK = """
if ARGV[2] ~= '' then
  for i = 3, #ARGV do redis.call('ZREM', KEYS[3], ARGV[2] .. ':' .. ARGV[i]) end
end
local seq = redis.call('GET', KEYS[1])
if not seq then return 0 end
if not string.match(seq, '^%d+$') then
  redis.call('DEL', KEYS[4])
  return redis.error_reply('mark counter is not a number')
end
for i = 3, #ARGV do redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[1]), ARGV[i]) end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[2], ARGV[1])
return #ARGV - 2
"""

# KEYS: seq, dirty, pending, meta. ARGV: cutoff_ms, expire_at. Overdue pending entries become marks.
_PROMOTE = """
local overdue = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
for _, entry in ipairs(overdue) do
  local member = string.match(entry, ':(%d+)$')
  if member and redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[1]), member)
  else
    redis.call('DEL', KEYS[4])
  end
  redis.call('ZREM', KEYS[3], entry)
end
if #overdue > 0 then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
  redis.call('EXPIREAT', KEYS[2], ARGV[2])
end
return #overdue
"""

# KEYS: meta, z, dirty, pending. ARGV: limit, member of the asking resident or '', overdue cutoff_ms.
_READ = """
local meta = redis.call('HGETALL', KEYS[1])
local top = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local mine = false
local above = 0
if ARGV[2] ~= '' then
  mine = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if mine then above = redis.call('ZCOUNT', KEYS[2], '(' .. mine, '+inf') end
end
return {meta, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
        redis.call('ZCOUNT', KEYS[4], '-inf', ARGV[3]), top, mine, above}
"""

# KEYS: meta, z, dirty. ARGV: token, expire_at, then (member, mark, grams) triples. A total is
# written only while the member's mark is the one it was computed for.
_REFRESH = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return -1 end
local applied = 0
for i = 3, #ARGV, 3 do
  local mark = redis.call('ZSCORE', KEYS[3], ARGV[i])
  if mark and tonumber(mark) == tonumber(ARGV[i + 1]) then
    if tonumber(ARGV[i + 2]) > 0 then
      redis.call('ZADD', KEYS[2], ARGV[i + 2], ARGV[i])
    else
      redis.call('ZREM', KEYS[2], ARGV[i])
    end
    redis.call('ZREM', KEYS[3], ARGV[i])
    applied = applied + 1
  end
end
redis.call('HSET', KEYS[1], 'n', redis.call('ZCARD', KEYS[2]))
redis.call('EXPIREAT', KEYS[2], ARGV[2])
return applied
"""

# KEYS: meta, z, dirty, tmp. ARGV: token, seq, generation, built_at, membership, expire_at, n, format.
_SWAP = """
local cur = redis.call('HMGET', KEYS[1], 'v', 'gen', 'fp', 'as_of')
if cur[1] == ARGV[8] and cur[2] == ARGV[3] and cur[3] == ARGV[5] and cur[4]
   and string.match(cur[4], '^%d+$') and tonumber(cur[4]) > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[4])
  return 0
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[8], 'token', ARGV[1], 'gen', ARGV[3], 'as_of', ARGV[2],
           'built_at', ARGV[4], 'fp', ARGV[5], 'n', ARGV[7])
for i = 1, 3 do redis.call('EXPIREAT', KEYS[i], ARGV[6]) end
return 1
"""

# KEYS: meta, z, dirty, pending, seq. Drops the board itself. Marks and pending entries stay (a build
# in progress relies on them); only keys of the wrong type go, and a counter that is not a number
# restarts from the clock (microseconds), above any mark number it could have handed out.
_RESET = """
redis.call('DEL', KEYS[1], KEYS[2])
for i = 3, 4 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'zset' and t ~= 'none' then redis.call('DEL', KEYS[i]) end
end
local t = redis.call('TYPE', KEYS[5])['ok']
if t ~= 'none' and not (t == 'string' and string.match(redis.call('GET', KEYS[5]), '^%d+$')) then
  local now = redis.call('TIME')
  redis.call('DEL', KEYS[5])
  redis.call('SET', KEYS[5], now[1] .. string.format('%06d', tonumber(now[2])))
end
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
