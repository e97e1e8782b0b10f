"""The dashboard's durations: two units at most, no zero remainder, rounded once."""

from jobline.dashboard.web import duration


def test_durations_read_as_a_person_would_write_them():
    assert [duration(x) for x in (None, 0.5, 1.2, 59.6, 119.6, 600, 605, 3600, 3660, 86400, 90000)] == [
        "—", "500 ms", "1 s", "1 min", "2 min", "10 min", "10 min 5 s", "1 h", "1 h 1 min", "1 d", "1 d 1 h"]
