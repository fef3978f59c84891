"""Where the key and base URL come from: arguments, then the environment, then the config file.

`fluxclaw config` writes the file with `write_config`; everything else only reads. The key is
kept out of reprs so a stray `print(settings)` or a traceback never shows it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fluxclaw import contract, errors, redaction

if TYPE_CHECKING:
    from fluxclaw import credentials

ENV_API_KEY = "RUNAPI_API_KEY"
ENV_BASE_URL = "RUNAPI_BASE_URL"
ENV_CONFIG = "FLUXCLAW_CONFIG"
# Opt-in signing of saved images with the user's own C2PA certificate (the [c2pa] extra).
ENV_C2PA_CERT = "FLUXCLAW_C2PA_CERT"
ENV_C2PA_KEY = "FLUXCLAW_C2PA_KEY"
# Where images go when an agent runs fluxclaw (skill or MCP): inside its workspace, where
# OpenClaw accepts MEDIA: paths.
AGENT_OUTPUT_DIR = "generated/fluxclaw"
# How long an agent's tool call waits before answering with the task id (resumable): under
# OpenClaw's suggested requestTimeoutMs of 300000.
AGENT_WAIT_TIMEOUT = 240.0


@dataclass(frozen=True, slots=True)
class Settings:
    api_key: str | None = field(repr=False)
    base_url: str
    source: str = "default"  # where the key came from: argument, environment, config or none

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "'***'"
        return f"Settings(api_key={key}, base_url={self.base_url!r}, source={self.source!r})"


def config_path() -> Path:
    """`FLUXCLAW_CONFIG` if set, else the platform's user config folder."""
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("fluxclaw")) / "config.json"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The config file's contents; a missing file counts as empty. A file that exists but
    cannot be read or parsed is a `ValidationError` naming it: a silently ignored file would
    drop the user's key, base URL or daily budget without a word."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise errors.ValidationError(
            f"cannot read the config file {path} ({reason}); fix its permissions or remove it."
        ) from exc
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise errors.ValidationError(
            f"the config file {path} is not valid JSON ({exc}); fix it, or remove it and "
            "store its settings again with `fluxclaw config`."
        ) from exc
    if not isinstance(data, dict):
        raise errors.ValidationError(
            f"the config file {path} must hold a JSON object; fix it or remove it."
        )
    _refuse_if_others_can_write(path)
    if isinstance(data.get("api_key"), str):
        redaction.remember(data["api_key"])
    return data


def _refuse_if_others_can_write(path: Path) -> None:
    """A config file another user owns or may write could point the key at their server
    (`base_url`): it is refused, never read. The file's own owner and mode are judged, not its
    folders'. Root's files (mounted secrets) and the user's own group are trusted."""
    if not hasattr(os, "getuid"):
        return  # Windows: no owner and mode bits to judge
    try:
        found = path.stat()
    except OSError:
        return
    if found.st_uid not in (os.getuid(), 0):
        raise errors.ValidationError(
            f"the config file {path} belongs to another user; it could send your key "
            "elsewhere. Remove it, or make it yours with mode 0600."
        )
    if found.st_mode & 0o002 or (found.st_mode & 0o020 and found.st_gid != os.getgid()):
        raise errors.ValidationError(
            f"the config file {path} can be written by other users (mode "
            f"{found.st_mode & 0o777:o}); run `chmod 600 {path}`."
        )


def write_config(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    extra: dict[str, Any] | None = None,
    path: Path | None = None,
) -> Path:
    """Merge the given values into the config file, atomically and readable by the owner only.

    Passing `None` keeps the stored value; passing an empty string removes it (in `extra`,
    None removes).
    """
    path = path or config_path()
    data = load_config(path)
    for name, value in (extra or {}).items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    for name, value in (("api_key", api_key), ("base_url", base_url)):
        if value is None:
            continue
        if value.strip():
            data[name] = value.strip()
        else:
            data.pop(name, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_settings(api_key: str | None = None, base_url: str | None = None) -> Settings:
    """Explicit arguments win, then RUNAPI_API_KEY / RUNAPI_BASE_URL, then the config file."""
    stored: dict[str, Any] | None = None

    def from_file(name: str) -> str | None:
        nonlocal stored
        if stored is None:
            stored = load_config()
        return _stored_text(stored, name)

    key, source = _pick(api_key, ENV_API_KEY, lambda: from_file("api_key"))
    redaction.remember(api_key, os.environ.get(ENV_API_KEY), key)
    url, _ = _pick(base_url, ENV_BASE_URL, lambda: from_file("base_url"))
    url = url or contract.DEFAULT_BASE_URL
    source = "config" if source == "file" else source
    return Settings(api_key=key, base_url=url.rstrip("/"), source=source)


def _pick(
    argument: str | None, variable: str, from_file: Callable[[], str | None]
) -> tuple[str | None, str]:
    """The one order every setting is read in: argument, environment, file (read only when
    needed); the source is "argument", "environment", "file" or "none"."""
    value, source = _first(("argument", argument), ("environment", os.environ.get(variable)))
    if value is None:
        value = from_file()
        source = "file" if value else "none"
    return value, source


def _stored_text(stored: Mapping[str, Any], name: str) -> str | None:
    value = stored.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _first(*candidates: tuple[str, str | None]) -> tuple[str | None, str]:
    for source, value in candidates:
        if value is not None and value.strip():
            return value.strip(), source
    return None, "none"


def signing_identity(
    cert: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None
) -> credentials.Identity | None:
    """The user's C2PA signing certificate and key, if they set them: arguments, then
    FLUXCLAW_C2PA_CERT / FLUXCLAW_C2PA_KEY, then the config file's c2pa_cert / c2pa_key. Both
    or neither; readable; and the [c2pa] extra installed, all checked before anything is paid."""
    chosen = _signing_paths(cert, key)
    if chosen is None:
        return None
    from fluxclaw import credentials  # only a signing user pays for its import

    cert_path, key_path, _ = chosen
    if not (isinstance(cert_path, str) and cert_path and isinstance(key_path, str) and key_path):
        raise errors.ValidationError(
            "signing needs both a certificate chain and its private key: pass --c2pa-cert and "
            "--c2pa-key (or set both in the config), or neither."
        )
    if not credentials.available():
        raise errors.ValidationError(
            f"signing with --c2pa-cert needs the C2PA extra: {credentials.INSTALL}"
        )
    read: list[bytes] = []
    for what, where in (("certificate", cert_path), ("key", key_path)):
        try:
            read.append(Path(where).expanduser().read_bytes())
        except OSError as exc:
            raise errors.ValidationError(
                f"cannot read the C2PA signing {what} {where} ({exc.strerror or exc}); check the "
                "path given to --c2pa-cert / --c2pa-key or the config."
            ) from exc
        if b"-----BEGIN" not in read[-1]:
            raise errors.ValidationError(f"the C2PA signing {what} {where} is not a PEM file.")
    identity = credentials.Identity(read[0], read[1], Path(cert_path).expanduser())
    try:
        identity.check()
    except Exception as exc:  # c2pa's own errors say what is wrong with the pair
        raise errors.ValidationError(
            f"cannot sign with the C2PA certificate {cert_path} and key {key_path} ({exc}); "
            "give a PEM chain (signing certificate first) and its own private key."
        ) from exc
    return identity


def _signing_paths(
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    stored: Mapping[str, Any] | None = None,
) -> tuple[object, object, str] | None:
    """Certificate and key paths as a pair from one source (arguments, then the environment,
    then the file), so a cert from one place never meets a key from another; None if unset."""
    found = [
        ("argument", str(cert) if cert else None, str(key) if key else None),
        ("environment", os.environ.get(ENV_C2PA_CERT), os.environ.get(ENV_C2PA_KEY)),
    ]
    chosen = next(((c, k, source) for source, c, k in found if c or k), None)
    if chosen is None:
        stored = load_config() if stored is None else stored
        chosen = (stored.get("c2pa_cert"), stored.get("c2pa_key"), "file")
        if not any(chosen[:2]):
            return None
    return chosen


# What `fluxclaw config` stores and shows; the daily cap's key and reading rule live here, and
# `spending` (above this module) reads the cap through them.
DAILY_BUDGET_KEY = "daily_budget_usd"
# Above this estimate a run started at a terminal asks first (`fluxclaw config --confirm-above`).
CONFIRM_ABOVE_KEY = "confirm_above_usd"
DEFAULT_CONFIRM_ABOVE = 1.0
_PEM_FILES = {"c2pa_cert": ("--c2pa-cert", "certificate chain"), "c2pa_key": ("--c2pa-key", "key")}


class Effective(NamedTuple):
    """One setting as fluxclaw will use it, and where that came from: "environment", "file" or
    "default". The key's value is never held here (so it cannot be shown), only `is_set`."""

    value: str | float | None
    source: str
    is_set: bool


def effective_settings() -> dict[str, Effective]:
    """Each setting every command would use now, in the order `resolve_settings` and
    `signing_identity` read them (environment, then file, then default), so what
    `fluxclaw config` shows is what a create will do."""
    stored = load_config()

    def source(found: str) -> str:
        return "default" if found == "none" else found

    key, key_from = _pick(None, ENV_API_KEY, lambda: _stored_text(stored, "api_key"))
    redaction.remember(key)
    url, url_from = _pick(None, ENV_BASE_URL, lambda: _stored_text(stored, "base_url"))
    budget = daily_budget_from(stored)
    cert, pem_key, signing_from = _signing_paths(stored=stored) or (None, None, "default")
    return {
        "api_key": Effective(None, source(key_from), key is not None),
        "base_url": Effective(
            (url or contract.DEFAULT_BASE_URL).rstrip("/"), source(url_from), True
        ),
        DAILY_BUDGET_KEY: Effective(budget, "file" if budget else "default", budget is not None),
        CONFIRM_ABOVE_KEY: Effective(
            confirm_above_from(stored),
            "file" if CONFIRM_ABOVE_KEY in stored else "default",
            True,
        ),
        "c2pa_cert": Effective(str(cert) if cert else None, signing_from, bool(cert)),
        "c2pa_key": Effective(str(pem_key) if pem_key else None, signing_from, bool(pem_key)),
    }


def daily_budget_from(stored: Mapping[str, Any]) -> float | None:
    """The daily cap in US dollars as spending.daily_budget reads it: a positive number, or
    None (no cap)."""
    value = stored.get(DAILY_BUDGET_KEY)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def confirm_above_from(stored: Mapping[str, Any]) -> float:
    """The estimate in US dollars above which a run at a terminal asks first (0: always ask)."""
    value = stored.get(CONFIRM_ABOVE_KEY)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return DEFAULT_CONFIRM_ABOVE


def base_url_to_store(value: str) -> str:
    """`value` ready for `write_config` ('' removes it): anything but an http(s) URL is refused
    when it is stored, not at the first paid call."""
    url = value.strip()
    if url and not contract.is_http_url(url):
        raise errors.ValidationError(
            f"--base-url {url} is not an http(s) URL; give one like {contract.DEFAULT_BASE_URL}, "
            "or '' to remove the stored one.",
            errors={"base_url": ["not an http(s) URL"]},
        )
    return url


def needs_allow_http(url: str) -> bool:
    """Plain http to another machine: every client refuses it without --allow-http, since the
    key would cross the network in clear text."""
    return url.strip().lower().startswith("http://") and not contract.is_loopback(url)


def pem_path_to_store(name: str, value: str) -> str:
    """The absolute path `c2pa_cert` / `c2pa_key` is stored as ('' removes it), refused unless
    it is a readable file: a wrong path found now costs nothing, found at a create it stops
    every saved image."""
    option, what = _PEM_FILES[name]
    if not value.strip():
        return ""
    path = Path(value).expanduser().resolve()
    if not path.exists():
        problem = "does not exist"
    elif not path.is_file():
        problem = "is not a file"
    else:
        try:
            with path.open("rb"):
                return str(path)
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or exc})"
    raise errors.ValidationError(
        f"{option} {path} {problem}; give the path of your C2PA {what} (PEM), "
        "or '' to remove the stored one.",
        errors={name: [problem]},
    )
