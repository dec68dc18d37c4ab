"""The demo world: the seed's examples as real rows, placed around `now`.

- creator_001 "Chris Spencer" (verified), channel ch_101 "Chris Spencer 24/7"
  (number 101, free to watch for any signed-in user), live stream
  stream_abc123 "Behind the Laughs" started 75 minutes before `now`.
  Its guide: prog_001, then prog_002 "Behind the Laughs" on air (16 minutes
  in, 29 to go, as in the seed's heartbeat), prog_003 "Chris Spencer
  Presents" next, and two-hour fillers (prog_004.. after, prog_e01.. before)
  so the guide covers `now` ± 36 h, i.e. the whole local day in any zone.
  Nine on-demand items: ep_001 "E1: Pilot Episode" (free, season 1 episode 1,
  24:32, 1.2M views) and five more free episodes over two seasons, prem_001
  "Behind the Scenes" and prem_002 (premium), ppv_001 "Live Comedy Special"
  (PPV, 1:15:00, 3.99 USD).
- creator_002 "Dana Reyes": channel ch_102 (number 102) requires a
  subscription; live stream stream_def456. Watching it without one is the
  seed's 403.
- creator_003 "Maya Brooks": channel ch_103 (number 103), offline: the
  offline variant of endpoint 28.
- Users: user_123 has no entitlements (as in the seed's user_state);
  user_vip follows creator_001, subscribes to creator_001 and creator_002
  and bought ppv_001, so every unlocked path can be seen too.

No viewers or peaks are invented: counts come from real watch sessions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import asyncpg

from protocol.format import require_aware

DEMO_CREATORS: Final = ("creator_001", "creator_002", "creator_003")
HORIZON: Final = timedelta(hours=36)
FILLER: Final = timedelta(hours=2)
FILLER_TITLES: Final = (
    "Stand-Up Classics",
    "Late Night Replay",
    "Crowd Work",
    "Open Mic Night",
    "Road Stories",
    "The Green Room",
)

_CREATORS: Final = (
    ("creator_001", "Chris Spencer", True),
    ("creator_002", "Dana Reyes", True),
    ("creator_003", "Maya Brooks", False),
)
_CHANNELS: Final = (
    ("ch_101", "creator_001", "Chris Spencer 24/7", 101, False),
    ("ch_102", "creator_002", "Dana Reyes Live", 102, True),
    ("ch_103", "creator_003", "Maya Brooks Radio", 103, False),
)
# content_id, type, title, duration_seconds, season, episode, views, price, currency, days_ago
_CONTENT: Final = (
    ("ep_001", "free", "E1: Pilot Episode", 1472, 1, 1, 1_200_000, None, None, 60),
    ("ep_002", "free", "E2: The Open Mic", 1515, 1, 2, 845_300, None, None, 53),
    ("ep_003", "free", "E3: Road Trip", 1388, 1, 3, 610_020, None, None, 46),
    ("ep_004", "free", "E4: Heckler's Night", 1602, 1, 4, 502_400, None, None, 39),
    ("ep_005", "free", "E1: Back on Stage", 1490, 2, 1, 330_900, None, None, 20),
    ("ep_006", "free", "E2: The Tour Bus", 1544, 2, 2, 212_750, None, None, 13),
    ("prem_001", "premium", "Behind the Scenes", 2700, None, None, 98_400, None, None, 30),
    ("prem_002", "premium", "Writers' Room", 2220, None, None, 45_100, None, None, 9),
    ("ppv_001", "ppv", "Live Comedy Special", 4500, None, None, 27_300, 3.99, "USD", 5),
)


def _guide(
    channel_id: str,
    anchor: datetime,
    fixed: list[tuple[str, str, int, int]],
    prefix: str,
    after_from: int,
) -> list[tuple[str, str, str, datetime, datetime]]:
    """`fixed` (id, title, start offset min, length min) around `anchor`, then fillers both ways."""
    rows = [
        (
            pid,
            channel_id,
            title,
            anchor + timedelta(minutes=start),
            anchor + timedelta(minutes=start + length),
        )
        for pid, title, start, length in fixed
    ]
    first, last = rows[0][3], rows[-1][4]
    n = 0
    while last < anchor + HORIZON:
        rows.append(
            (
                f"{prefix}{after_from + n:03d}",
                channel_id,
                FILLER_TITLES[n % len(FILLER_TITLES)],
                last,
                last + FILLER,
            )
        )
        last += FILLER
        n += 1
    n = 1
    while first > anchor - HORIZON:
        rows.append(
            (
                f"{prefix}e{n:02d}",
                channel_id,
                FILLER_TITLES[-n % len(FILLER_TITLES)],
                first - FILLER,
                first,
            )
        )
        first -= FILLER
        n += 1
    return rows


async def load_demo(pool: asyncpg.Pool, *, now: datetime, force: bool = False) -> bool:
    """Load the demo world unless any creator exists (or `force`); return whether it loaded.

    With `force`, the demo creators (and everything hanging off them, by
    cascade) are replaced; other data is kept. One transaction: a failure
    leaves the database as it was.
    """
    at = require_aware(now, "now").replace(second=0, microsecond=0)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("lock table creators in exclusive mode")
        if not force and await conn.fetchval("select exists(select 1 from creators)"):
            return False
        await conn.execute(
            "delete from creators where creator_id = any($1::text[])", list(DEMO_CREATORS)
        )
        await conn.executemany(
            "insert into creators (creator_id, name, is_verified) values ($1, $2, $3)", _CREATORS
        )
        await conn.executemany(
            "insert into channels (channel_id, creator_id, channel_name, channel_number,"
            " requires_subscription) values ($1, $2, $3, $4, $5)",
            _CHANNELS,
        )
        await conn.executemany(
            "insert into streams (stream_id, channel_id, title, started_at) values ($1, $2, $3, $4)",
            [
                ("stream_abc123", "ch_101", "Behind the Laughs", at - timedelta(minutes=75)),
                ("stream_def456", "ch_102", "Late Night Sets", at - timedelta(minutes=40)),
            ],
        )
        programs = (
            _guide(
                "ch_101",
                at,
                [
                    ("prog_001", "Morning Set", -76, 60),
                    ("prog_002", "Behind the Laughs", -16, 45),
                    ("prog_003", "Chris Spencer Presents", 29, 60),
                ],
                "prog_",
                4,
            )
            + _guide("ch_102", at, [("prog_102_001", "Late Night Sets", -40, 90)], "prog_102_", 2)
            + _guide("ch_103", at, [("prog_103_001", "Maya's Mixtape", -30, 120)], "prog_103_", 2)
        )
        await conn.executemany(
            "insert into programs (program_id, channel_id, title, starts_at, ends_at)"
            " values ($1, $2, $3, $4, $5)",
            programs,
        )
        await conn.executemany(
            "insert into content (content_id, creator_id, type, title, duration_seconds, season,"
            " episode_number, views, price, currency, published_at)"
            " values ($1, 'creator_001', $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [(*row[:9], at - timedelta(days=row[9])) for row in _CONTENT],
        )
        await conn.executemany(
            "insert into subscriptions (user_id, creator_id) values ($1, $2)",
            [("user_vip", "creator_001"), ("user_vip", "creator_002")],
        )
        await conn.execute(
            "insert into follows (user_id, creator_id) values ('user_vip', 'creator_001')"
        )
        await conn.execute(
            "insert into ppv_purchases (user_id, content_id) values ('user_vip', 'ppv_001')"
        )
    return True
