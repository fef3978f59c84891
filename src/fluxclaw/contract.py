"""The RunAPI Flux 2 wire contract as data: the one source of truth.

Client, CLI, sandbox, MCP server and OpenClaw skill all read models, ratios, rules, prices and
image sizes from here, so a change to the contract is a change to this file only; what a family
may send differently (Max: 1k only, one source, no `auto`) lives in FAMILY_RULES alone. It imports
nothing beyond the standard library, so every layer (and `fluxclaw --help`) can load it cheaply.
docs/contract.md is the prose this mirrors; tests/contract checks the texts that restate it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal, NamedTuple
from urllib.parse import urlsplit

Action = Literal["text_to_image", "remix_image"]
Family = Literal["pro", "flex", "max"]

ACTIONS: Final[tuple[Action, ...]] = ("text_to_image", "remix_image")
FAMILIES: Final[tuple[Family, ...]] = ("pro", "flex", "max")
DEFAULT_BASE_URL: Final = "https://runapi.ai"
SERVICE: Final = "flux_2"


class Model(NamedTuple):
    id: str
    family: Family
    action: Action


_SUFFIX: Final[dict[Action, str]] = {"text_to_image": "text-to-image", "remix_image": "remix-image"}

MODELS: Final[dict[str, Model]] = {
    model.id: model
    for action in ACTIONS
    for family in FAMILIES
    for model in [Model(f"flux-2-{family}-{_SUFFIX[action]}", family, action)]
}

ASPECT_RATIOS: Final[tuple[str, ...]] = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
AUTO_RATIO: Final = "auto"
DEFAULT_ASPECT_RATIO: Final = "1:1"
RESOLUTIONS: Final[tuple[str, ...]] = ("1k", "2k")
DEFAULT_RESOLUTION: Final = "1k"
# The wire has no default model; this is fluxclaw's when none is named (fast and cheapest).
DEFAULT_FAMILY: Final[Family] = "pro"
PROMPT_MIN: Final = 3
PROMPT_MAX: Final = 5000
MAX_SOURCES: Final = 8  # the most source images any family takes
OUTPUT_COUNT: Final = 1  # the only output_count the contract allows, and only where allowed
HEADER_VALUE_MAX: Final = 512  # Idempotency-Key and X-Client-Request-Id
# RunAPI publishes no size limit for uploaded files; the client refuses and the sandbox rejects
# anything larger than this, so both fail the same way before money is involved.
UPLOAD_MAX_BYTES: Final = 25 * 1024 * 1024
# Provenance. Flux 2 images from BFL's API carry C2PA Content Credentials (PNG `caBX` chunk, JPEG
# APP11 JUMBF segment, WebP `C2PA` chunk) whose hard binding covers every other byte: a file that
# carries them is written exactly as received. One that does not is labelled AI-made with IPTC
# XMP (inserted bytes, never a re-encode).
DIGITAL_SOURCE_TYPE: Final = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
)
IPTC_EXT_NS: Final = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XMP_NS: Final = "http://ns.adobe.com/xap/1.0/"
BFL_SIGNER: Final = "Black Forest Labs Inc."
# A task makes one image (output_count is 1 at most); an answer with more keeps this many.
TASK_MAX_IMAGES: Final = 4
# fluxclaw's own limits on a batch file: a line (JSON Lines) or a CSV cell, and JSON nesting.
BATCH_MAX_LINE_BYTES: Final = 1024 * 1024
BATCH_MAX_NESTING: Final = 32
# Rows of one batch file: a plan keeps a few hundred bytes per row (never the row itself), so
# this many stay far below 300 MB; a larger catalogue is split into several batches.
BATCH_MAX_ROWS: Final = 100_000

_COMMON_FIELDS: Final = frozenset(
    {
        "model",
        "prompt",
        "aspect_ratio",
        "output_resolution",
        "output_count",
        "enable_safety_checker",
        "callback_url",
    }
)
FIELDS: Final[dict[Action, frozenset[str]]] = {
    "text_to_image": _COMMON_FIELDS,
    "remix_image": _COMMON_FIELDS | {"source_image_urls"},
}


class FamilyRules(NamedTuple):
    """What one family accepts: the per-family half of the contract, stated once."""

    resolutions: tuple[str, ...]
    max_sources: int  # a remix takes 1 to this many source_image_urls
    auto_ratio: bool  # a remix may send aspect_ratio=auto
    ratio_required: bool
    output_count: bool  # may send output_count (only OUTPUT_COUNT)
    safety_checker: bool  # may send enable_safety_checker


_PRO_AND_FLEX: Final = FamilyRules(
    resolutions=RESOLUTIONS,
    max_sources=MAX_SOURCES,
    auto_ratio=True,
    ratio_required=False,
    output_count=False,
    safety_checker=True,
)
FAMILY_RULES: Final[dict[Family, FamilyRules]] = {
    "pro": _PRO_AND_FLEX,
    "flex": _PRO_AND_FLEX,
    "max": FamilyRules(
        resolutions=("1k",),
        max_sources=1,
        auto_ratio=False,
        ratio_required=True,
        output_count=True,
        safety_checker=False,
    ),
}

STATUSES: Final[tuple[str, ...]] = ("pending", "processing", "completed", "failed")
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"completed", "failed"})

# USD cents per generated image. Max is unknown on purpose: never guess a price.
PRICES_CENTS: Final[dict[Family, dict[str, int] | None]] = {
    "pro": {"1k": 5, "2k": 7},
    "flex": {"1k": 14, "2k": 24},
    "max": None,
}

# Not published: the sandbox's image sizes (about this many megapixels per resolution).
MEGAPIXELS: Final[dict[str, int]] = {"1k": 1, "2k": 4}

# Typical generation seconds (medians) at 1k; 2k takes TWO_K_FACTOR times longer. The sandbox
# draws from these and the client's poll schedule starts from them.
TYPICAL_SECONDS: Final[dict[Family, float]] = {"pro": 6.0, "flex": 10.0, "max": 15.0}
TWO_K_FACTOR: Final = 1.4

# Headers
H_REQUEST_ID: Final = "X-Request-Id"
H_TASK_ID: Final = "X-RunAPI-Task-Id"
H_CLIENT_REQUEST_ID: Final = "X-Client-Request-Id"
H_IDEMPOTENCY_KEY: Final = "Idempotency-Key"
H_RETRY_AFTER: Final = "Retry-After"
# fluxclaw's own, not RunAPI's: the sandbox states its speed on every answer, because Retry-After
# counts whole seconds and cannot say "poll in 60 ms". Clients scale their poll schedule by
# 1/speed; a value outside SANDBOX_SPEEDS (or not a number) is ignored, and the sandbox refuses
# to run at one.
H_SANDBOX_SPEED: Final = "X-Fluxclaw-Sandbox-Speed"
SANDBOX_SPEEDS: Final = (0.01, 10_000.0)

# CLI exit codes, as RunAPI's official CLI uses them.
EXIT_OK: Final = 0
EXIT_OTHER: Final = 1
EXIT_AUTH: Final = 2
EXIT_CREDITS: Final = 3
EXIT_INVALID: Final = 4  # validation, not found, conflict
EXIT_TIMEOUT: Final = 5
EXIT_RATE_LIMITED: Final = 6
EXIT_TASK_FAILED: Final = 7
EXIT_BUDGET: Final = 8  # fluxclaw's own: a spending cap (daily budget, batch --budget) refused it


# Every route of the contract, for the client and the sandbox alike.
API_PREFIX: Final = "/api/v1"
FILES_PATH: Final = f"{API_PREFIX}/files"
FILES_PREPARE_PATH: Final = f"{API_PREFIX}/files/prepare"
FILES_CONFIRM_PATH: Final = f"{API_PREFIX}/files/confirm"
PRICE_SCHEDULES_PATH: Final = f"{API_PREFIX}/price_schedules"
PRICE_QUOTES_PATH: Final = f"{API_PREFIX}/price_quotes"
ME_PATH: Final = f"{API_PREFIX}/me"
BALANCE_PATH: Final = f"{API_PREFIX}/me/balance"
# Routes that need no key.
OPEN_PATHS: Final = frozenset({PRICE_SCHEDULES_PATH, PRICE_QUOTES_PATH})
# The product page's routes (model in the body), which the sandbox serves too.
PAGE_PREFIX: Final = "/v1"
PAGE_STATUS_PATH: Final = f"{PAGE_PREFIX}/tasks/{{task_id}}"


def page_create_path(action: Action) -> str:
    return f"{PAGE_PREFIX}/{action}"


def create_path(action: Action) -> str:
    return f"{API_PREFIX}/{SERVICE}/{action}"


def status_path(action: Action, task_id: str) -> str:
    return f"{API_PREFIX}/{SERVICE}/{action}/{task_id}"


def model_for(family: Family, action: Action) -> Model:
    return MODELS[f"flux-2-{family}-{_SUFFIX[action]}"]


def resolve_model(name: str, action: Action) -> Model:
    """Map `pro`, `flex`, `max` (any case, or as `flux-2-pro`) or a full model id to the model
    for `action`.

    A full id of the other action maps to its sibling, so `flux-2-pro-text-to-image` works for a
    remix; anything else raises ValueError with the allowed names.
    """
    key = name.strip().lower()
    for family in FAMILIES:
        if key in (family, f"flux-2-{family}"):  # `flux-2-pro`: the OpenClaw plugin's name
            return model_for(family, action)
    model = MODELS.get(key)
    if model is None:
        from difflib import get_close_matches  # only for a name that is wrong

        names = [*FAMILIES, *models_for(action)]
        near = get_close_matches(key, [*names, *(f"flux-2-{f}" for f in FAMILIES)])
        guess = f" (did you mean {near[0]}?)" if near else ""
        raise ValueError(
            f"model={name!r} is not a Flux 2 model{guess}; use one of: {', '.join(FAMILIES)}, "
            "or a full model id (`fluxclaw models` lists them)."
        )
    return model_for(model.family, action)


def models_for(action: Action) -> list[str]:
    return [m.id for m in MODELS.values() if m.action == action]


def resolutions_for(family: Family) -> tuple[str, ...]:
    return FAMILY_RULES[family].resolutions


def ratios_for(action: Action, family: Family | None = None) -> tuple[str, ...]:
    """Aspect ratios `family` may send to `action`; None means any family (their union)."""
    families = FAMILIES if family is None else (family,)
    auto = action == "remix_image" and any(FAMILY_RULES[f].auto_ratio for f in families)
    return (*ASPECT_RATIOS, AUTO_RATIO) if auto else ASPECT_RATIOS


def source_span(family: Family | None = None) -> str:
    """How many source images a remix takes, in words: `1 to 8`, or `exactly 1` for Max."""
    high = MAX_SOURCES if family is None else FAMILY_RULES[family].max_sources
    return f"exactly {high}" if high == 1 else f"1 to {high}"


def restrictions(family: Family) -> str:
    """What `family` cannot do that another can, in words for help texts (`1k only, ...`)."""
    rules = FAMILY_RULES[family]
    out = []
    if rules.resolutions != RESOLUTIONS:
        out.append(f"{', '.join(rules.resolutions)} only")
    if rules.ratio_required:
        out.append("aspect ratio required")
    if not rules.auto_ratio:
        out.append(f"no {AUTO_RATIO}")
    if rules.max_sources != MAX_SOURCES:
        out.append(f"{source_span(family)} source")
    return ", ".join(out)


def price_cents(family: Family, resolution: str) -> int | None:
    """Contract price of one image in cents, or None where the contract does not know it."""
    table = PRICES_CENTS[family]
    return None if table is None else table.get(resolution)


def typical_seconds(family: Family, resolution: str) -> float:
    base = TYPICAL_SECONDS[family]
    return base * TWO_K_FACTOR if resolution == "2k" else base


def sandbox_speed(value: str | None) -> float | None:
    """The speed an H_SANDBOX_SPEED value states, or None unless it is a number in
    SANDBOX_SPEEDS (not 0, negative, NaN, infinite or huge: a server cannot rush the client)."""
    if value is None or len(value) > 32:
        return None
    try:
        speed = float(value)
    except ValueError:
        return None
    low, high = SANDBOX_SPEEDS
    return speed if low <= speed <= high else None  # NaN fails both comparisons


def image_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Width and height of the sandbox's images: about 1 or 4 megapixels, sides multiples of 16."""
    if aspect_ratio == AUTO_RATIO:
        aspect_ratio = DEFAULT_ASPECT_RATIO
    w_ratio, h_ratio = (int(part) for part in aspect_ratio.split(":"))
    pixels = (1024 * 1024) * MEGAPIXELS.get(resolution, 1)
    height = math.sqrt(pixels * h_ratio / w_ratio)
    width = height * w_ratio / h_ratio
    return _round16(width), _round16(height)


def _round16(value: float) -> int:
    return max(16, round(value / 16) * 16)


# ---------------------------------------------------------------------------------------------
# Rules


class Violation(NamedTuple):
    field: str
    message: str


def is_present(value: object) -> bool:
    """The contract counts a value as present unless it is null or a blank string."""
    return not (value is None or (isinstance(value, str) and not value.strip()))


def is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def is_loopback(url: str) -> bool:
    """Whether `url` points at this machine (`localhost`, 127.0.0.0/8, ::1), judged from its
    host as written (a host really named `loopback` is not this machine)."""
    import ipaddress

    try:
        host = (urlsplit(url.strip()).hostname or "").rstrip(".")
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def canonical_base(url: str) -> str:
    """One spelling per API, so money counted per API cannot be split by how a URL is written:
    lower-case scheme and host, no default port, no trailing slash or dot segments, and every
    loopback name (`localhost`, 127.0.0.0/8, ::1) as `loopback`."""
    import posixpath

    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text.rstrip("/")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if is_loopback(text):
        host = "loopback"
    elif ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    path = posixpath.normpath(parts.path or "/").rstrip("/")  # "/a/.." is "/", "" is "."
    return f"{scheme}://{netloc}{'' if path == '.' else path}"


def validate_request(action: Action, body: Mapping[str, Any]) -> list[Violation]:
    """Every contract rule for a create body; an empty list means the request is valid."""
    out: list[Violation] = []
    unknown = sorted(set(body) - FIELDS[action])
    for name in unknown:
        out.append(
            Violation(name, f"{name} is not a field of {action}; allowed: {_join(FIELDS[action])}.")
        )

    model_id = body.get("model")
    model: Model | None = None
    if not is_present(model_id):
        allowed = _join(models_for(action))
        out.append(Violation("model", f"model is required; use one of: {allowed}."))
    elif not isinstance(model_id, str) or model_id not in MODELS:
        out.append(
            Violation(
                "model",
                f"model={model_id} is not a Flux 2 model; use one of: {_join(models_for(action))}.",
            )
        )
    elif MODELS[model_id].action != action:
        out.append(
            Violation(
                "model",
                f"model={model_id} does not belong to {action}; use one of: "
                f"{_join(models_for(action))}.",
            )
        )
    else:
        model = MODELS[model_id]

    prompt = body.get("prompt")
    if not is_present(prompt):
        span = f"{PROMPT_MIN} to {PROMPT_MAX} characters"
        out.append(Violation("prompt", f"prompt is required ({span})."))
    elif not isinstance(prompt, str):
        out.append(Violation("prompt", "prompt must be a string."))
    elif not PROMPT_MIN <= len(prompt) <= PROMPT_MAX:
        out.append(
            Violation(
                "prompt",
                f"prompt has {len(prompt)} characters; it must have {PROMPT_MIN} to {PROMPT_MAX}.",
            )
        )

    out.extend(_ratio_rules(action, model, body.get("aspect_ratio")))
    out.extend(resolution_violations(model, body.get("output_resolution")))
    out.extend(_family_only_rules(model, body))
    if action == "remix_image":
        out.extend(_source_rules(model, body.get("source_image_urls")))

    callback = body.get("callback_url")
    if is_present(callback) and not is_http_url(callback):
        out.append(Violation("callback_url", f"callback_url={callback} must be an http(s) URL."))
    return out


def _ratio_rules(action: Action, model: Model | None, ratio: object) -> list[Violation]:
    allowed = ratios_for(action, model.family if model else None)
    if model is not None and FAMILY_RULES[model.family].ratio_required and not is_present(ratio):
        return [
            Violation(
                "aspect_ratio",
                f"model={model.id} requires aspect_ratio; use one of: {_join(allowed)}.",
            )
        ]
    if is_present(ratio) and ratio not in allowed:
        who = f"model={model.id}" if model else action
        return [
            Violation(
                "aspect_ratio",
                f"aspect_ratio={ratio} is not allowed for {who}; use one of: {_join(allowed)}.",
            )
        ]
    return []


def resolution_violations(model: Model | None, resolution: object) -> list[Violation]:
    """The output_resolution rules alone, for callers (price estimates) that check nothing else."""
    if not is_present(resolution):
        return []
    allowed = resolutions_for(model.family) if model else RESOLUTIONS
    if model is not None and allowed != RESOLUTIONS:
        if resolution not in allowed:
            return [
                Violation(
                    "output_resolution",
                    f"output_resolution={resolution} is not allowed for model={model.id}; "
                    f"use {_join(allowed)}.",
                )
            ]
        return []
    if resolution not in RESOLUTIONS:
        return [
            Violation(
                "output_resolution",
                f"output_resolution={resolution} is not allowed; use one of: {_join(RESOLUTIONS)}.",
            )
        ]
    return []


def _family_only_rules(model: Model | None, body: Mapping[str, Any]) -> list[Violation]:
    out: list[Violation] = []
    count = body.get("output_count")
    checker = body.get("enable_safety_checker")
    if is_present(count):
        if model is not None and not FAMILY_RULES[model.family].output_count:
            message = f"model={model.id} must not include output_count."
            out.append(Violation("output_count", message))
        elif count != OUTPUT_COUNT or isinstance(count, bool):
            message = f"output_count={count} is not allowed; use {OUTPUT_COUNT}."
            out.append(Violation("output_count", message))
    if is_present(checker):
        if model is not None and not FAMILY_RULES[model.family].safety_checker:
            out.append(
                Violation(
                    "enable_safety_checker",
                    f"model={model.id} must not include enable_safety_checker.",
                )
            )
        elif not isinstance(checker, bool):
            out.append(
                Violation(
                    "enable_safety_checker",
                    f"enable_safety_checker={checker} must be true or false.",
                )
            )
    return out


def _source_rules(model: Model | None, urls: object) -> list[Violation]:
    field = "source_image_urls"
    family = model.family if model else None
    low, high = 1, MAX_SOURCES if family is None else FAMILY_RULES[family].max_sources
    span = source_span(family)
    wanted = f"{span} public http(s) URL{'' if high == 1 else 's'}"
    if not is_present(urls):
        return [Violation(field, f"{field} is required: {wanted}.")]
    if not isinstance(urls, list):
        return [Violation(field, f"{field} must be a list of {wanted}.")]
    if not low <= len(urls) <= high:
        who = f"model={model.id}" if model else "remix_image"
        return [Violation(field, f"{field} has {len(urls)} URLs; {who} takes {span}.")]
    bad = [u for u in urls if not is_http_url(u)]
    if bad:
        return [Violation(field, f"{field} item {bad[0]!r} is not an http(s) URL.")]
    return []


def _join(values: Any) -> str:
    return ", ".join(sorted(values) if isinstance(values, (set, frozenset)) else values)


def model_catalog() -> list[dict[str, Any]]:
    """Every family with its models and rules as plain data (for `fluxclaw models`); prices
    are added by `pricing.priced_catalog`."""
    out: list[dict[str, Any]] = []
    for family in FAMILIES:
        rules = FAMILY_RULES[family]
        models = []
        for action in ACTIONS:
            sources = {"min": 1, "max": rules.max_sources, "text": source_span(family)}
            models.append(
                {
                    "id": model_for(family, action).id,
                    "action": action,
                    "aspect_ratios": list(ratios_for(action, family)),
                    "source_images": sources if action == "remix_image" else None,
                }
            )
        out.append(
            {
                "family": family,
                "resolutions": list(rules.resolutions),
                "aspect_ratio_required": rules.ratio_required,
                # The one output_count the family may send, or None: it must not send one.
                "output_count": OUTPUT_COUNT if rules.output_count else None,
                "safety_checker": rules.safety_checker,
                "restrictions": restrictions(family),
                "models": models,
            }
        )
    return out
