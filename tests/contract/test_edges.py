"""Decisions at their edges (issue 25): each test fails when the rule it names is wrong. The
expected values are worked out here from the contract's published numbers, not copied from the
code that computes them."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from fluxclaw import contract, errors, redaction
from fluxclaw.deadline import Deadline
from fluxclaw.polling import DurationStats, PollPolicy
from fluxclaw.retries import RetryBudget, RetryPolicy, parse_retry_after, patient_backoff

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


# Every retry waits exactly 1 s (with rng=lambda: 1.0), for at most 60 s after the first.
ONE_SECOND = RetryPolicy(max_attempts=10, max_elapsed=60, backoff_base=1.0, backoff_cap=1.0)


def _retryable() -> errors.FluxclawError:
    return errors.ServerError("503 from the API", status=503)


def test_a_retry_that_would_end_past_the_deadline_is_not_made() -> None:
    clock = Clock()
    budget = RetryBudget(ONE_SECOND, deadline=clock.now + 5.0, clock=clock, rng=lambda: 1.0)
    assert budget.next_delay(_retryable()) == pytest.approx(1.0)  # 100 + 1 <= 105
    clock.now = 103.9
    assert budget.next_delay(_retryable()) == pytest.approx(1.0)  # 104.9 <= 105
    clock.now = 104.5
    assert budget.next_delay(_retryable()) is None  # 105.5 > 105: the caller's deadline wins


def test_a_retry_that_ends_exactly_at_the_deadline_is_made() -> None:
    clock = Clock()
    budget = RetryBudget(ONE_SECOND, deadline=clock.now + 5.0, clock=clock, rng=lambda: 1.0)
    clock.now = 104.0
    assert budget.next_delay(_retryable()) == pytest.approx(1.0)  # 105 == 105: still in time


def test_without_a_deadline_the_policy_bounds_the_retries() -> None:
    clock = Clock()
    budget = RetryBudget(ONE_SECOND, clock=clock, rng=lambda: 1.0)
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
# (Each test starts with no remembered keys: tests/conftest.py's _fresh_redaction.)


def test_a_key_of_eight_characters_is_masked_even_inside_a_word() -> None:
    redaction.remember("k8y-abcd")  # exactly 8
    assert "k8y-abcd" not in redaction.scrub("url=https://x.example/?t=zzk8y-abcdzz")
    assert "k8y-abcd" not in redaction.scrub("the key k8y-abcd leaked")


def test_a_key_of_seven_characters_is_masked_only_as_a_whole_word() -> None:
    redaction.remember("abc1234")  # 7: masked where it stands alone, never inside a word
    assert redaction.scrub("key abc1234 here") == "key *** here"
    assert redaction.scrub("xabc1234x") == "xabc1234x"


# -- backoff: full jitter under 0.5 s doubling to an 8 s ceiling ----------------------------------


def test_backoff_is_a_share_of_a_doubling_ceiling() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=8.0)
    assert policy.backoff(1, lambda: 0.5) == pytest.approx(0.25)  # half of 0.5
    assert policy.backoff(3, lambda: 0.25) == pytest.approx(0.5)  # a quarter of 2
    assert policy.backoff(10, lambda: 1.0) == pytest.approx(8.0)  # the ceiling caps it


# -- after a rate limit outlasted the retries: Retry-After (to a minute), or a spread backoff -----


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [
        (0, None, 0.25, 0.75),  # 0.5 s, spread 0.5x to 1.5x
        (3, None, 2.0, 6.0),  # 4 s
        (10, None, 15.0, 45.0),  # capped at 30 s before the spread
        (0, 45.0, 45.0, 45.0),  # the server's word, when longer
        (0, 100.0, 60.0, 60.0),  # but never past a minute
    ],
)
def test_patient_backoff(
    monkeypatch: pytest.MonkeyPatch,
    attempt: int,
    retry_after: float | None,
    low: float,
    high: float,
) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: a)
    assert patient_backoff(attempt, retry_after) == pytest.approx(low)
    monkeypatch.setattr(random, "uniform", lambda a, b: b)
    assert patient_backoff(attempt, retry_after) == pytest.approx(high)


# -- Retry-After as an HTTP date: a zone-less one is UTC, and "now" is UTC too ---------------------


def test_retry_after_dates() -> None:
    now = datetime(2026, 12, 5, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("Sat, 05 Dec 2026 07:28:30 GMT", now) == pytest.approx(30.0)
    assert parse_retry_after("Sat, 05 Dec 2026 07:28:30 -0000", now) == pytest.approx(30.0)
    assert parse_retry_after("Sat, 05 Dec 2026 07:27:00 GMT", now) == 0.0  # past: at once
    soon = datetime.now(UTC) + timedelta(seconds=120)
    header = soon.strftime("%a, %d %b %Y %H:%M:%S -0000")
    assert 115 <= (parse_retry_after(header) or 0) <= 120
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after("nan") is None
    assert parse_retry_after("soon") is None and parse_retry_after("  ") is None


# -- redaction: the whole token around a long key, however long, and a short key touching it ------


def test_the_token_around_a_long_key_is_masked_past_every_window() -> None:
    redaction.remember("sk-LONG-12345678")
    left, right = "a" * 9000, "b" * 9000  # longer than two of the scrubber's 4,096 windows
    assert redaction.scrub(f"x={left}sk-LONG-12345678{right} end") == "x=*** end"
    assert redaction.scrub(f"{left}sk-LONG-12345678") == "***"
    assert redaction.scrub(f"sk-LONG-12345678{right}") == "***"


def test_each_token_holding_a_long_key_goes_and_the_rest_stays() -> None:
    redaction.remember("sk-LONG-12345678", "tk-OTHER-8765432")
    text = "a sk-LONG-12345678 b xsk-LONG-12345678y.tk-OTHER-8765432 c"
    assert redaction.scrub(text) == "a *** b ***.*** c"
    twice = "p:sk-LONG-12345678tk-OTHER-8765432:q"  # two keys in one token: one mask
    assert redaction.scrub(twice) == "p:***:q"
    assert redaction.scrub("nothing to hide here") == "nothing to hide here"


def test_a_short_key_touching_a_long_keys_token_goes_with_it() -> None:
    redaction.remember("ab.cd", ".secret-token-1234", "tok-12345678.", "ef.gh")
    assert redaction.scrub("key=ab.cd.secret-token-1234 end") == "key=*** end"  # before it
    assert redaction.scrub("key=tok-12345678.ef.gh end") == "key=*** end"  # after it
    assert redaction.scrub("ab.cd and ef.gh alone") == "*** and *** alone"
    assert redaction.scrub("xab.cdx ef.ghx") == "xab.cdx ef.ghx"  # inside words: not keys


def test_a_short_key_that_extends_another_is_masked_whole() -> None:
    """The longer of two keys that start alike is tried first, so no tail of it is left."""
    redaction.remember("ab.c", "ab.c.d")
    assert redaction.scrub("x ab.c.d y") == "x *** y"
    assert redaction.scrub("x ab.c y") == "x *** y"


# -- deadlines: passed at the very moment, and no deadline stays none -----------------------------


def test_a_deadline_has_passed_at_its_own_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "monotonic", lambda: 500.0)
    assert Deadline(500.0).passed() and not Deadline(500.5).passed()
    assert not Deadline().passed()
    assert Deadline(501.0).left() == pytest.approx(1.0) and Deadline(499.0).left() == 0.0
    assert Deadline(499.0).left(floor=2.0) == 2.0 and Deadline().left() is None
    assert Deadline(510.0).within(3.0) == 503.0 and Deadline(501.0).within(3.0) == 501.0
    assert Deadline().within(3.0) == 503.0
    assert Deadline.after(0.5).at == 500.5 and Deadline.after(None).at is None
    for refused in (0.0, -1.0, float("nan")):
        with pytest.raises(errors.ValidationError, match="must be more than 0 seconds"):
            Deadline.after(refused)


def test_at_least_extends_a_deadline_and_keeps_none_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "monotonic", lambda: 500.0)
    assert Deadline().at_least(5.0).at is None  # no deadline: nothing to extend
    assert Deadline(501.0).at_least(5.0).at == 505.0
    assert Deadline(510.0).at_least(5.0).at == 510.0
    with pytest.raises(errors.ValidationError, match="more than 0"):
        Deadline.after(0)
    assert Deadline.after(None).at is None and Deadline.after(2.0).at == 502.0


def test_masks_meet_but_do_not_swallow_their_neighbours() -> None:
    """A short key right after a long key's token, or right before it, is its own mask; one
    a word away is too; a long key inside a token already masked does not stop the rest."""
    redaction.remember("tok-12345678.", ".x1", "x1.", ".secret-token-1234", "ab.cd")
    assert redaction.scrub("a tok-12345678..x1 b") == "a ****** b"  # touching, not inside
    assert redaction.scrub("a x1..secret-token-1234 b") == "a ****** b"
    assert redaction.scrub("ab.cd z.secret-token-1234 ab.cd") == "*** *** ***"
    many = "a tok-12345678.tok-12345678. b tok-12345678. c"
    assert redaction.scrub(many) == "a *** b *** c"


def test_an_error_line_and_a_debug_log_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    redaction.remember("sk-LOG-SECRET-99")
    assert redaction.one_line("failed:\n  key sk-LOG-SECRET-99\tagain") == "failed: key *** again"
    logger = logging.getLogger("fluxclaw")
    before = (list(logger.handlers), logger.level)
    try:
        handler = redaction.log_to_stderr("debug: %(message)s", logging.DEBUG)
        assert redaction.log_to_stderr("other: %(message)s", logging.INFO) is handler  # one
        assert logger.level == logging.INFO
        logger.warning("sent sk-LOG-SECRET-99 to the API")
    finally:
        logger.handlers[:] = before[0]
        logger.setLevel(before[1])
    assert capsys.readouterr().err == "debug: sent *** to the API\n"


# -- the contract's tables, as people and agents read them ---------------------------------------


def test_what_each_family_cannot_do_in_words() -> None:
    assert (
        contract.restrictions("max") == "1k only, aspect ratio required, no auto, exactly 1 source"
    )
    assert contract.restrictions("pro") == "" and contract.restrictions("flex") == ""
    assert contract.source_span("max") == "exactly 1"
    assert contract.source_span("pro") == "1 to 8" and contract.source_span() == "1 to 8"


def test_ratios_models_and_prices_per_family_and_action() -> None:
    seven = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
    assert contract.ratios_for("text_to_image") == seven
    assert contract.ratios_for("text_to_image", "pro") == seven  # auto is a remix's only
    assert contract.ratios_for("remix_image", "pro") == (*seven, "auto")
    assert contract.ratios_for("remix_image", "max") == seven
    assert contract.ratios_for("remix_image") == (*seven, "auto")  # some family takes it
    assert contract.models_for("remix_image") == [
        "flux-2-pro-remix-image",
        "flux-2-flex-remix-image",
        "flux-2-max-remix-image",
    ]
    assert contract.price_cents("pro", "2k") == 7 and contract.price_cents("flex", "1k") == 14
    assert contract.price_cents("max", "1k") is None and contract.price_cents("pro", "4k") is None
    sibling = contract.resolve_model("flux-2-pro-text-to-image", "remix_image")
    assert sibling.id == "flux-2-pro-remix-image"
    assert contract.resolve_model(" FLUX-2-Max ", "text_to_image").id == "flux-2-max-text-to-image"


def test_sandbox_image_sizes_are_about_one_or_four_megapixels_in_sixteens() -> None:
    # 16:9 at 1 MP: height sqrt(2**20 * 9/16) = 768, width 768 * 16/9 = 1365.3 -> 1360
    assert contract.image_size("16:9", "1k") == (1360, 768)
    assert contract.image_size("1:1", "2k") == (2048, 2048)
    assert contract.image_size("auto", "1k") == (1024, 1024)
    assert contract.image_size("1:10000", "1k") == (16, 102400)  # never below 16
    assert contract.image_size("4:3", "8k") == (1184, 880)  # unknown: 1 MP (886.8 -> 880)


@pytest.mark.parametrize(
    ("value", "speed"),
    [("10", 10.0), ("0.01", 0.01), ("10000", 10000.0), (" 3 ", 3.0)]
    + [("10".zfill(32), 10.0)]  # 32 characters: the longest value read
    + [
        (v, None) for v in ("0.009", "10001", "0", "-5", "nan", "inf", "fast", "10".zfill(33), None)
    ],
)
def test_a_stated_sandbox_speed_is_believed_only_within_bounds(
    value: str | None, speed: float | None
) -> None:
    assert contract.sandbox_speed(value) == speed


def test_one_spelling_per_api_base_and_what_is_loopback() -> None:
    assert contract.canonical_base("HTTP://LocalHost:80/api/../") == "http://loopback"
    assert contract.canonical_base("https://Runapi.ai:443/") == "https://runapi.ai"
    assert contract.canonical_base("https://runapi.ai:8443/v1/") == "https://runapi.ai:8443/v1"
    assert contract.canonical_base("http://[::1]:9000") == "http://loopback:9000"
    assert contract.canonical_base("http://[2001:db8::1]/") == "http://[2001:db8::1]"
    for url in ("http://127.0.0.2:5/x", "http://localhost", "http://[::1]/", "http://LocalHost./"):
        assert contract.is_loopback(url), url
    for url in ("http://example.com", "http://10.0.0.1", "not a url", "http://loopback"):
        assert not contract.is_loopback(url), url
    assert not contract.is_loopback("http://[::1/")  # not a URL at all


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://LocalHost./v1/", "http://loopback/v1"),  # a host's final dot is the same host
        ("http://Example.COM./x", "http://example.com/x"),
        ("http://h/a/../", "http://h"),
        ("http://h//x/..", "http://h"),
        ("http://h/Xa/b//X/", "http://h/Xa/b/X"),  # paths keep their case and letters
        ("http://h", "http://h"),
        ("file:///srv/x/", "file:///srv/x"),  # no host: none is made up
        ("http:a/..", "http://"),  # a path that collapses to nothing adds nothing
        # Not URLs (a bad IPv6 host, a port out of range): only the trailing slash goes.
        (" http://[::1/X/ ", "http://[::1/X"),
        ("HTTP://h:99999/X//", "HTTP://h:99999/X"),
    ],
)
def test_a_base_url_written_another_way_is_the_same_base(url: str, canonical: str) -> None:
    assert contract.canonical_base(url) == canonical


@pytest.mark.parametrize(
    ("action", "body", "field", "says"),
    [
        ("text_to_image", {"prompt": "a cat"}, "model", "model is required"),
        ("text_to_image", {"model": "flux-3", "prompt": "a cat"}, "model", "not a Flux 2 model"),
        (
            "remix_image",
            {"model": PRO, "prompt": "a cat", "source_image_urls": ["https://a.example/x.png"]},
            "model",
            "does not belong to",
        ),
        ("text_to_image", {"model": PRO, "prompt": "a cat", "seed": 1}, "seed", "not a field"),
        ("text_to_image", {"model": PRO, "prompt": 42}, "prompt", "must be a string"),
        ("text_to_image", {"model": PRO, "prompt": "  "}, "prompt", "prompt is required"),
        (
            "text_to_image",
            {"model": "flux-2-max-text-to-image", "prompt": "a cat"},
            "aspect_ratio",
            "requires aspect_ratio",
        ),
        (
            "text_to_image",
            {"model": PRO, "prompt": "a cat", "aspect_ratio": "auto"},
            "aspect_ratio",
            "is not allowed",
        ),
        (
            "text_to_image",
            {"model": PRO, "prompt": "a cat", "callback_url": "ftp://x"},
            "callback_url",
            "must be an http(s) URL",
        ),
    ],
)
def test_each_rule_names_its_field(
    action: contract.Action, body: dict[str, object], field: str, says: str
) -> None:
    found = contract.validate_request(action, body)
    assert [v.field for v in found] == [field], found
    assert says in found[0].message


# -- every rule's exact words: what a user or an agent reads back --------------------------------

MAX = "flux-2-max-text-to-image"
PRO_REMIX = "flux-2-pro-remix-image"
MAX_REMIX = "flux-2-max-remix-image"
URL = "https://a.example/x.png"
SEVEN = "1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3"
T2I_MODELS = "flux-2-pro-text-to-image, flux-2-flex-text-to-image, flux-2-max-text-to-image"
REMIX_MODELS = "flux-2-pro-remix-image, flux-2-flex-remix-image, flux-2-max-remix-image"
T2I_FIELDS = (
    "aspect_ratio, callback_url, enable_safety_checker, model, output_count, output_resolution, "
    "prompt"
)
NEEDS_MODEL = ("model", f"model is required; use one of: {T2I_MODELS}.")


@pytest.mark.parametrize(
    ("action", "body", "expected"),
    [
        (
            T2I,
            {"prompt": "a cat", "width": 2, "seed": 1},
            [
                ("seed", f"seed is not a field of text_to_image; allowed: {T2I_FIELDS}."),
                ("width", f"width is not a field of text_to_image; allowed: {T2I_FIELDS}."),
                NEEDS_MODEL,
            ],
        ),
        (
            "remix_image",
            {"model": PRO_REMIX, "prompt": "a cat", "source_image_urls": [URL], "seed": 1},
            [
                (
                    "seed",
                    f"seed is not a field of remix_image; allowed: {T2I_FIELDS}, "
                    "source_image_urls.",
                )
            ],
        ),
        (T2I, {"model": None, "prompt": "a cat"}, [NEEDS_MODEL]),
        (
            T2I,
            {"model": 7, "prompt": "a cat"},
            [("model", f"model=7 is not a Flux 2 model; use one of: {T2I_MODELS}.")],
        ),
        (
            T2I,
            {"model": "pro", "prompt": "a cat"},  # the wire takes full ids only
            [("model", f"model=pro is not a Flux 2 model; use one of: {T2I_MODELS}.")],
        ),
        (
            "remix_image",
            {"model": PRO, "prompt": "a cat", "source_image_urls": [URL]},
            [("model", f"model={PRO} does not belong to remix_image; use one of: {REMIX_MODELS}.")],
        ),
        (T2I, {"model": PRO}, [("prompt", "prompt is required (3 to 5000 characters).")]),
        (T2I, {"model": PRO, "prompt": 42}, [("prompt", "prompt must be a string.")]),
        (
            T2I,
            {"model": PRO, "prompt": "ab"},
            [("prompt", "prompt has 2 characters; it must have 3 to 5000.")],
        ),
        (
            T2I,
            {"model": MAX, "prompt": "a cat", "aspect_ratio": " "},
            [("aspect_ratio", f"model={MAX} requires aspect_ratio; use one of: {SEVEN}.")],
        ),
        (
            T2I,
            {"model": MAX, "prompt": "a cat", "aspect_ratio": "5:4"},
            [
                (
                    "aspect_ratio",
                    f"aspect_ratio=5:4 is not allowed for model={MAX}; use one of: {SEVEN}.",
                )
            ],
        ),
        (
            T2I,
            {"prompt": "a cat", "aspect_ratio": "5:4"},
            [
                NEEDS_MODEL,
                (
                    "aspect_ratio",
                    f"aspect_ratio=5:4 is not allowed for text_to_image; use one of: {SEVEN}.",
                ),
            ],
        ),
        (
            "remix_image",
            {
                "model": MAX_REMIX,
                "prompt": "a cat",
                "aspect_ratio": "auto",
                "source_image_urls": [URL],
            },
            [
                (
                    "aspect_ratio",
                    f"aspect_ratio=auto is not allowed for model={MAX_REMIX}; use one of: {SEVEN}.",
                )
            ],
        ),
        (
            T2I,
            {"model": MAX, "prompt": "a cat", "aspect_ratio": "1:1", "output_resolution": "2k"},
            [
                (
                    "output_resolution",
                    f"output_resolution=2k is not allowed for model={MAX}; use 1k.",
                )
            ],
        ),
        (
            T2I,
            {"model": PRO, "prompt": "a cat", "output_resolution": "4k"},
            [("output_resolution", "output_resolution=4k is not allowed; use one of: 1k, 2k.")],
        ),
        (
            T2I,
            {"prompt": "a cat", "output_resolution": "4k"},
            [
                NEEDS_MODEL,
                ("output_resolution", "output_resolution=4k is not allowed; use one of: 1k, 2k."),
            ],
        ),
        (
            T2I,
            {"model": PRO, "prompt": "a cat", "output_count": 1},
            [("output_count", f"model={PRO} must not include output_count.")],
        ),
        (
            T2I,
            {"model": MAX, "prompt": "a cat", "aspect_ratio": "1:1", "output_count": 2},
            [("output_count", "output_count=2 is not allowed; use 1.")],
        ),
        (
            T2I,
            {"model": MAX, "prompt": "a cat", "aspect_ratio": "1:1", "output_count": True},
            [("output_count", "output_count=True is not allowed; use 1.")],  # True == 1 in Python
        ),
        (
            T2I,
            {"prompt": "a cat", "output_count": 2},
            [NEEDS_MODEL, ("output_count", "output_count=2 is not allowed; use 1.")],
        ),
        (
            T2I,
            {
                "model": MAX,
                "prompt": "a cat",
                "aspect_ratio": "1:1",
                "enable_safety_checker": False,
            },
            [("enable_safety_checker", f"model={MAX} must not include enable_safety_checker.")],
        ),
        (
            T2I,
            {"model": PRO, "prompt": "a cat", "enable_safety_checker": "no"},
            [("enable_safety_checker", "enable_safety_checker=no must be true or false.")],
        ),
        (
            T2I,
            {"prompt": "a cat", "enable_safety_checker": 1},
            [
                NEEDS_MODEL,
                ("enable_safety_checker", "enable_safety_checker=1 must be true or false."),
            ],
        ),
        (
            "remix_image",
            {"model": PRO_REMIX, "prompt": "a cat"},
            [("source_image_urls", "source_image_urls is required: 1 to 8 public http(s) URLs.")],
        ),
        (
            "remix_image",
            {
                "model": MAX_REMIX,
                "prompt": "a cat",
                "aspect_ratio": "1:1",
                "source_image_urls": None,
            },
            [
                (
                    "source_image_urls",
                    "source_image_urls is required: exactly 1 public http(s) URL.",
                )
            ],
        ),
        (
            "remix_image",
            {"model": PRO_REMIX, "prompt": "a cat", "source_image_urls": URL},
            [
                (
                    "source_image_urls",
                    "source_image_urls must be a list of 1 to 8 public http(s) URLs.",
                )
            ],
        ),
        (
            "remix_image",
            {"model": PRO_REMIX, "prompt": "a cat", "source_image_urls": []},
            [
                (
                    "source_image_urls",
                    f"source_image_urls has 0 URLs; model={PRO_REMIX} takes 1 to 8.",
                )
            ],
        ),
        (
            "remix_image",
            {"model": PRO_REMIX, "prompt": "a cat", "source_image_urls": [URL] * 9},
            [
                (
                    "source_image_urls",
                    f"source_image_urls has 9 URLs; model={PRO_REMIX} takes 1 to 8.",
                )
            ],
        ),
        (
            "remix_image",
            {
                "model": MAX_REMIX,
                "prompt": "a cat",
                "aspect_ratio": "1:1",
                "source_image_urls": [URL] * 2,
            },
            [
                (
                    "source_image_urls",
                    f"source_image_urls has 2 URLs; model={MAX_REMIX} takes exactly 1.",
                )
            ],
        ),
        (
            "remix_image",
            {"prompt": "a cat", "source_image_urls": [URL] * 9},
            [
                ("model", f"model is required; use one of: {REMIX_MODELS}."),
                ("source_image_urls", "source_image_urls has 9 URLs; remix_image takes 1 to 8."),
            ],
        ),
        (
            "remix_image",
            {
                "model": PRO_REMIX,
                "prompt": "a cat",
                "source_image_urls": [URL, "file:///x", "ftp://y"],
            },
            [("source_image_urls", "source_image_urls item 'file:///x' is not an http(s) URL.")],
        ),
        (
            T2I,
            {"model": PRO, "prompt": "a cat", "callback_url": "ftp://x"},
            [("callback_url", "callback_url=ftp://x must be an http(s) URL.")],
        ),
    ],
)
def test_each_refusal_in_its_exact_words(
    action: contract.Action, body: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    assert [tuple(v) for v in contract.validate_request(action, body)] == expected


@pytest.mark.parametrize(
    ("action", "body"),
    [
        (
            T2I,
            {
                "model": MAX,
                "prompt": "a cat",
                "aspect_ratio": "1:1",
                "output_resolution": "1k",
                "output_count": 1,
            },
        ),
        (
            T2I,
            {
                "model": PRO,
                "prompt": "a cat",
                "output_resolution": "2k",
                "enable_safety_checker": False,
                "callback_url": "https://h.example/cb",
                "output_count": None,  # null counts as absent
                "aspect_ratio": "",
            },
        ),
        (T2I, {"prompt": "a cat", "model": PRO, "output_resolution": "1k"}),
        (
            "remix_image",
            {
                "model": PRO_REMIX,
                "prompt": "a cat",
                "aspect_ratio": "auto",
                "source_image_urls": [URL] * 8,
            },
        ),
        (
            "remix_image",
            {
                "model": MAX_REMIX,
                "prompt": "a cat",
                "aspect_ratio": "1:1",
                "source_image_urls": [URL],
            },
        ),
        ("remix_image", {"model": PRO_REMIX, "prompt": "a cat", "source_image_urls": [URL]}),
    ],
)
def test_what_the_contract_takes_passes(action: contract.Action, body: dict[str, object]) -> None:
    assert contract.validate_request(action, body) == []


def test_without_a_model_any_resolution_of_the_contract_passes() -> None:
    assert contract.resolution_violations(None, "2k") == []
    assert contract.resolution_violations(None, None) == []
    max_model = contract.MODELS[MAX]
    assert contract.resolution_violations(max_model, "1k") == []
    assert contract.resolution_violations(max_model, " ") == []


def test_a_wrong_model_name_is_answered_with_a_guess_or_the_names() -> None:
    with pytest.raises(ValueError) as guessed:
        contract.resolve_model("prp", T2I)
    assert str(guessed.value) == (
        "model='prp' is not a Flux 2 model (did you mean pro?); use one of: pro, flex, max, "
        "or a full model id (`fluxclaw models` lists them)."
    )
    with pytest.raises(ValueError) as unknown:
        contract.resolve_model("zzzzzz", "remix_image")
    assert str(unknown.value) == (
        "model='zzzzzz' is not a Flux 2 model; use one of: pro, flex, max, "
        "or a full model id (`fluxclaw models` lists them)."
    )
    for near, name in [
        ("flux-2-flexx", "flux-2-flex"),
        ("flux-2-max-remix-imag", "flux-2-max-remix-image"),
    ]:
        with pytest.raises(ValueError, match=rf"\(did you mean {name}\?\)"):
            contract.resolve_model(near, "remix_image")
    assert contract.resolve_model("Flux-2-Flex", "remix_image").id == "flux-2-flex-remix-image"
    assert contract.resolve_model(" max ", T2I) == contract.Model(MAX, "max", T2I)


def test_the_model_catalog_states_each_familys_rules() -> None:
    """What `fluxclaw models` and agents read: written out here from the contract's tables."""
    ratios = SEVEN.split(", ")

    def family(name: str, sources: int, *, max_rules: bool) -> dict[str, object]:
        span = "exactly 1" if sources == 1 else f"1 to {sources}"
        return {
            "family": name,
            "resolutions": ["1k"] if max_rules else ["1k", "2k"],
            "aspect_ratio_required": max_rules,
            "output_count": 1 if max_rules else None,
            "safety_checker": not max_rules,
            "restrictions": "1k only, aspect ratio required, no auto, exactly 1 source"
            if max_rules
            else "",
            "models": [
                {
                    "id": f"flux-2-{name}-text-to-image",
                    "action": "text_to_image",
                    "aspect_ratios": ratios,
                    "source_images": None,
                },
                {
                    "id": f"flux-2-{name}-remix-image",
                    "action": "remix_image",
                    "aspect_ratios": ratios if max_rules else [*ratios, "auto"],
                    "source_images": {"min": 1, "max": sources, "text": span},
                },
            ],
        }

    assert contract.model_catalog() == [
        family("pro", 8, max_rules=False),
        family("flex", 8, max_rules=False),
        family("max", 1, max_rules=True),
    ]


def test_routes_of_the_contract() -> None:
    assert contract.create_path("remix_image") == "/api/v1/flux_2/remix_image"
    assert contract.status_path(T2I, "t-1") == "/api/v1/flux_2/text_to_image/t-1"
    assert contract.page_create_path(T2I) == "/v1/text_to_image"
    assert contract.model_for("flex", "remix_image").id == "flux-2-flex-remix-image"
    assert contract.resolutions_for("max") == ("1k",)
