"""Decisions at their edges (issue 25): each test fails when the rule it names is wrong. The
expected values are worked out here from the contract's published numbers, not copied from the
code that computes them."""

from __future__ import annotations

import pytest

from fluxclaw import contract, errors, redaction
from fluxclaw.polling import DurationStats, PollPolicy
from fluxclaw.retries import RetryBudget, RetryPolicy

T2I: contract.Action = "text_to_image"
PRO = "flux-2-pro-text-to-image"


# -- the prompt's length: 3 to 5,000 characters, both ends included ------------------------------


@pytest.mark.parametrize(("length", "ok"), [(2, False), (3, True), (5000, True), (5001, False)])
def test_prompt_length_edges(length: int, ok: bool) -> None:
    body = {"model": PRO, "prompt": "x" * length}
    found = contract.validate_request(T2I, body)
    assert (found == []) is ok, found
    if not ok:
        [violation] = found
        assert violation.field == "prompt" and f"has {length} characters" in violation.message


# -- typical times: Pro 6 s at 1k, 40% longer at 2k; the poll plan follows ----------------------


def test_typical_seconds_at_2k_are_40_percent_longer() -> None:
    assert contract.typical_seconds("pro", "1k") == pytest.approx(6.0)
    assert contract.typical_seconds("pro", "2k") == pytest.approx(8.4)
    assert contract.typical_seconds("max", "2k") == pytest.approx(21.0)


def test_a_2k_task_is_first_polled_later_by_the_same_factor() -> None:
    stats = DurationStats(PollPolicy())
    one_k = stats.plan((PRO, "1k"), "pro", "1k")
    two_k = stats.plan((PRO, "2k"), "pro", "2k")
    assert two_k.first == pytest.approx(one_k.first * 1.4)
    assert two_k.late_after == pytest.approx(one_k.late_after * 1.4)


# -- URLs: only http(s) with a host, and nothing that is not a string ----------------------------


@pytest.mark.parametrize(
    "value",
    [None, 42, b"https://a.example/x.png", "ftp://a.example/x", "https:///x", "http://[::1"],
)
def test_is_http_url_refuses_what_is_not_one(value: object) -> None:
    assert contract.is_http_url(value) is False


def test_is_http_url_takes_http_and_https() -> None:
    assert contract.is_http_url("http://127.0.0.1:8080/x.png")
    assert contract.is_http_url("https://cdn.example/a/b.png?sig=1")


# -- a retry budget keeps the caller's deadline ---------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _retryable() -> errors.FluxclawError:
    return errors.ServerError("503 from the API", status=503)


def test_a_retry_that_would_end_past_the_deadline_is_not_made() -> None:
    clock = Clock()
    policy = RetryPolicy(max_attempts=10, max_elapsed=60, backoff_base=1.0, backoff_cap=1.0)
    budget = RetryBudget(policy, deadline=clock.now + 5.0, clock=clock, rng=lambda: 1.0)
    assert budget.next_delay(_retryable()) == pytest.approx(1.0)  # 100 + 1 <= 105
    clock.now = 103.9
    assert budget.next_delay(_retryable()) == pytest.approx(1.0)  # 104.9 <= 105
    clock.now = 104.5
    assert budget.next_delay(_retryable()) is None  # 105.5 > 105: the caller's deadline wins


def test_without_a_deadline_the_policy_bounds_the_retries() -> None:
    clock = Clock()
    policy = RetryPolicy(max_attempts=10, max_elapsed=60, backoff_base=1.0, backoff_cap=1.0)
    budget = RetryBudget(policy, clock=clock, rng=lambda: 1.0)
    clock.now = 158.5
    assert budget.next_delay(_retryable()) == pytest.approx(1.0)  # 159.5 <= 160
    clock.now = 159.5
    assert budget.next_delay(_retryable()) is None  # 160.5 > 100 + 60


def test_a_retry_after_past_the_deadline_is_not_waited_for() -> None:
    clock = Clock()
    error = errors.RateLimitError("slow down", status=429, retry_after=10.0)
    near = RetryBudget(RetryPolicy(), deadline=clock.now + 5.0, clock=clock)
    assert near.next_delay(error) is None
    far = RetryBudget(RetryPolicy(), deadline=clock.now + 30.0, clock=clock)
    assert far.next_delay(error) == pytest.approx(10.0)


# -- redaction: 8 characters is where a key is masked inside other text --------------------------


def test_a_key_of_eight_characters_is_masked_even_inside_a_word(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redaction, "_secrets", set())
    monkeypatch.setattr(redaction, "_pattern", None)
    redaction.remember("k8y-abcd")  # exactly 8
    assert "k8y-abcd" not in redaction.scrub("url=https://x.example/?t=zzk8y-abcdzz")
    assert "k8y-abcd" not in redaction.scrub("the key k8y-abcd leaked")


def test_a_key_of_seven_characters_is_masked_only_as_a_whole_word(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redaction, "_secrets", set())
    monkeypatch.setattr(redaction, "_pattern", None)
    redaction.remember("abc1234")  # 7: masked where it stands alone, never inside a word
    assert redaction.scrub("key abc1234 here") == "key *** here"
    assert redaction.scrub("xabc1234x") == "xabc1234x"
