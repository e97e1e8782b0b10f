"""A cron expression in plain words (pure: no I/O), for the schedules screen.

>>> describe("*/15 * * * *")
'every 15 minutes'
>>> describe("0 3 * * SUN")
'at 03:00 on Sunday'
>>> describe("30 9 * * MON-FRI")
'at 09:30 on Monday to Friday'
"""

from __future__ import annotations

from ..cron import MACROS, RESTART_MACROS

_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_DAY_NAMES = {d[:3].upper(): i for i, d in enumerate(_DAYS[:7])}
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_MONTH_NAMES = {m[:3].upper(): i + 1 for i, m in enumerate(_MONTHS)}
_MACRO_WORDS = {"@yearly": "once a year, at 00:00 on 1 January", "@annually": "once a year, at 00:00 on 1 January",
                "@monthly": "at 00:00 on the first day of every month", "@weekly": "at 00:00 every Sunday",
                "@daily": "every day at 00:00", "@midnight": "every day at 00:00", "@hourly": "every hour, on the hour"}


def describe(expression: str) -> str:
    """Plain words for ``expression``; the expression itself when it is too unusual to word."""
    text = " ".join(expression.split())
    lowered = text.lower()
    if lowered in RESTART_MACROS:
        return "once each time the PostgreSQL server starts"
    if lowered in _MACRO_WORDS:
        return _MACRO_WORDS[lowered]
    parts = lowered.split(" ")
    if len(parts) == 2 and parts[0].isdigit() and parts[1] in ("second", "seconds"):
        n = int(parts[0])
        return "every second" if n == 1 else f"every {n} seconds"
    text = MACROS.get(lowered, text)
    fields = text.upper().split(" ")
    if len(fields) != 5:
        return expression
    try:
        return _words(*fields)
    except (ValueError, IndexError, KeyError):
        return expression


def _words(minute: str, hour: str, dom: str, month: str, dow: str) -> str:
    when = _time(minute, hour)
    days = []
    if dom == "$" or dom == "L":
        days.append("on the last day of the month")
    elif dom != "*":
        days.append(f"on day {_list(dom, str)} of the month")
    if dow != "*":
        days.append(f"on {_list(dow, _day)}")
    if month != "*":
        days.append(f"in {_list(month, _month)}")
    if dom == "*" and dow == "*" and when.startswith("at "):
        when = f"every day {when}"
    return " ".join([when, *days])


def _time(minute: str, hour: str) -> str:
    if minute.isdigit() and hour.isdigit():
        return f"at {int(hour):02d}:{int(minute):02d}"
    if minute == "*" and hour == "*":
        return "every minute"
    if minute.startswith("*/") and hour == "*":
        n = int(minute[2:])
        return "every minute" if n == 1 else f"every {n} minutes"
    if minute.isdigit() and hour == "*":
        return "every hour, on the hour" if int(minute) == 0 else f"every hour at minute {int(minute)}"
    if minute.isdigit() and hour.startswith("*/"):
        n = int(hour[2:])
        return f"every {n} hours at minute {int(minute)}"
    if minute.isdigit():
        return f"at minute {int(minute)} past hour {_list(hour, str)}"
    if minute.startswith("*/"):
        return f"every {int(minute[2:])} minutes during hour {_list(hour, str)}"
    if hour == "*":
        return f"at minute {_list(minute, str)} of every hour"
    return f"at minute {_list(minute, str)} past hour {_list(hour, str)}"


def _list(field: str, name) -> str:
    items = []
    for term in field.split(","):
        step = ""
        if "/" in term:
            term, every = term.split("/", 1)
            step = f" (every {int(every)})"
        if "-" in term:
            low, high = term.split("-", 1)
            items.append(f"{name(low)} to {name(high)}{step}")
        elif "#" in term:
            day, nth = term.split("#", 1)
            items.append(f"the {_ordinal(int(nth))} {name(day)} of the month")
        elif term.endswith("L") and len(term) > 1:
            items.append(f"the last {name(term[:-1])} of the month")
        elif term == "*":
            items.append(f"every value{step}")
            step = ""
        else:
            items.append(f"{name(term)}{step}")
    return _join(items)


def _day(term: str) -> str:
    return _DAYS[_DAY_NAMES[term] if term in _DAY_NAMES else int(term)]


def _month(term: str) -> str:
    return _MONTHS[(_MONTH_NAMES[term] if term in _MONTH_NAMES else int(term)) - 1]


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(n, f"{n}th")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
