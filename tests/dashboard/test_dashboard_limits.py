"""The dashboard's /limits screen: a user sees the limits on their own jobs; only the service sets
or removes one, through forms carrying the CSRF token; bad values answer with what was wrong."""

from __future__ import annotations

import pytest
from dashboard_support import post
from dashboard_support import server, service, alice  # noqa: F401  (fixtures)


def test_the_service_sets_and_removes_limits_and_a_user_only_sees_them(service, alice, sql):
    made = post(service, "/limits/set", scope="function", target="post", concurrency="1", rate="30/1m",
                per_key="on")
    assert made.status_code == 303 and made.headers["location"] == "/limits?done=set"
    assert sql("SELECT scope, target, per_key, concurrency, rate_count, rate_seconds FROM jobline.limits") == [
        ("function", "post", True, 1, 30, 60.0)]
    page = service.get("/limits").text
    assert "at most 1 running, 30 starts per 60 s, per key" in page and "Remove the limit on function post" in page
    sql("SELECT jobline.enqueue('post', owner => 'alice')")  # a user sees the limits on her own jobs
    seen = alice.get("/limits")
    assert seen.status_code == 200 and "at most 1 running" in seen.text
    assert "Remove the limit" not in seen.text and "Set a limit" not in seen.text
    assert post(alice, "/limits/remove", scope="function", target="post", per_key="on").status_code == 403
    assert post(alice, "/limits/set", scope="queue", target="x", concurrency="9").status_code == 403
    assert post(service, "/limits/remove", scope="function", target="post", per_key="on").status_code == 303
    assert sql("SELECT count(*) FROM jobline.limits") == [(0,)]


@pytest.mark.parametrize("fields, message", [
    ({"scope": "function", "target": "post"}, "needs a concurrency, a rate, or both"),
    ({"scope": "function", "target": "post", "concurrency": "two"}, "concurrency must be a whole number"),
    ({"scope": "function", "target": "post", "concurrency": "²"}, "concurrency must be a whole number"),
    ({"scope": "function", "target": "post", "rate": "30"}, "COUNT/PERIOD"),
    ({"scope": "table", "target": "post", "concurrency": "1"}, "scope must be"),
])
def test_a_bad_limit_form_says_what_was_wrong(service, sql, fields, message):
    answer = post(service, "/limits/set", **fields)
    assert answer.status_code == 422 and message in answer.text
    assert sql("SELECT count(*) FROM jobline.limits") == [(0,)]
