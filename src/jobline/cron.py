"""Cron expressions and their next ticks, in a time zone (pure: no I/O).

Accepted: the five standard fields with ranges, lists, steps and names (`0 3 * * SUN`,
`*/15 9-17 * * MON-FRI`), `L` and `#` in the day fields, pg_cron's `$` (the last day of the
month, as the whole day-of-month field), the macros `@yearly` (`@annually`), `@monthly`,
`@weekly`, `@daily` (`@midnight`) and `@hourly`, pg_cron's `@restart` (`@reboot`: once per start
of the PostgreSQL server, see schedule.plan_restart) and its interval form `'N seconds'` (1 to 59).
Parsing is cronsim's, a maintained parser that validates eagerly; as in pg_cron, a step may not
exceed its field's largest value (`*/60` minutes is refused, where cronsim reads one value).

Daylight saving time, in the schedule's zone: a tick whose local time does not exist (the
hour skipped in spring) fires once, at the first instant after the gap; a local time that
happens twice (the hour repeated in autumn) fires once, at its first occurrence. So a daily
schedule neither skips nor doubles a day. Ticks are identified by their UTC instant.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo

from cronsim import CronSim, CronSimError

from .errors import InvalidInput

MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
RESTART_MACROS = ("@restart", "@reboot")
_INTERVAL = re.compile(r"\s*(\d+)\s+seconds?\s*", re.IGNORECASE)
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_MAX = (59, 23, 31, 12, 7)     # pg_cron's LAST_MINUTE ... LAST_DOW: a step may not exceed them
_STEP = re.compile(r"[0-9]+")


@dataclasses.dataclass(frozen=True)
class Cron:
    expression: str                    # as the user wrote it
    timezone: str = "UTC"
    interval_seconds: int | None = None  # for the 'N seconds' form
    restart: bool = False                # @restart: once per server start, no ticks in time

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        """Validate an expression and a zone; InvalidInput names the part that is wrong."""
        if not isinstance(expression, str) or not expression.strip():
            raise InvalidInput("the cron expression is empty")
        zone(timezone)
        interval = _INTERVAL.fullmatch(expression)
        if interval:
            seconds = int(interval[1])
            if not 1 <= seconds <= 59:
                raise InvalidInput(f"interval {expression!r}: seconds must be 1 to 59 (use a cron expression "
                                   "for longer periods)")
            return cls(expression, timezone, seconds)
        if " ".join(expression.split()).lower() in RESTART_MACROS:
            return cls(expression, timezone, restart=True)
        standard = _standard(expression)
        try:
            if len(standard.split()) != 5:  # cronsim also takes a seconds field; pg_cron does not
                raise CronSimError("Wrong number of fields")
            _check_steps(standard)
            CronSim(standard, dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
        except CronSimError as exc:
            raise InvalidInput(f"invalid cron expression {expression!r}: {_explain(standard, exc)}") from None
        return cls(expression, timezone)

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``after`` (an aware datetime), in UTC."""
        if after.tzinfo is None:
            raise InvalidInput("next_after needs an aware datetime")
        self._timed()
        if self.interval_seconds:
            start = after.astimezone(dt.timezone.utc)
            epoch = int(start.timestamp()) // self.interval_seconds * self.interval_seconds
            return dt.datetime.fromtimestamp(epoch + self.interval_seconds, dt.timezone.utc)
        local = after.astimezone(zone(self.timezone))
        return next(CronSim(_standard(self.expression), local)).astimezone(dt.timezone.utc)

    def last_at_or_before(self, when: dt.datetime) -> dt.datetime:
        """The latest tick at or before ``when`` (an aware datetime), in UTC."""
        if when.tzinfo is None:
            raise InvalidInput("last_at_or_before needs an aware datetime")
        self._timed()
        if self.interval_seconds:
            epoch = int(when.timestamp()) // self.interval_seconds * self.interval_seconds
            return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
        # cronsim counts a start with microseconds, truncated, as a candidate when going back.
        local = when.astimezone(zone(self.timezone))
        local = local.replace(microsecond=max(local.microsecond, 1))
        return next(CronSim(_standard(self.expression), local, reverse=True)).astimezone(dt.timezone.utc)


    def _timed(self) -> None:
        if self.restart:
            raise InvalidInput(f"{self.expression!r} fires when the PostgreSQL server starts, not at times "
                               "(see schedule.plan_restart)")


def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput(f"unknown time zone {name!r}: use an IANA name such as 'Europe/London'") from None


def _standard(expression: str) -> str:
    """The expression as cronsim reads it: a macro expanded, pg_cron's `$` as `L`."""
    text = " ".join(expression.split())
    text = MACROS.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) == 5 and fields[2] == "$":
        fields[2] = "L"
    return " ".join(fields)


def _check_steps(standard: str) -> None:
    """pg_cron refuses a step larger than its field's largest value (`*/60` minutes); cronsim
    reads it as a single value. The SQL validator (jobline.cron_field_values) has the same rule."""
    for name, largest, field in zip(_FIELDS, _FIELD_MAX, standard.split(" ")):
        for term in field.split(","):
            step = term.split("/", 1)[1] if "/" in term else None
            if step is not None and _STEP.fullmatch(step) and int(step) > largest:
                raise CronSimError(f"Bad {name}")


def _explain(standard: str, exc: CronSimError) -> str:
    message = str(exc)
    fields = standard.split()
    for index, name in enumerate(_FIELDS):
        if name in message.lower() and index < len(fields):
            return f"{message} ({name} field {fields[index]!r})"
    if "number of fields" in message:
        return f"{message}: expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    return message
