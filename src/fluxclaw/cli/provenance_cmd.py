"""`fluxclaw provenance FILE...`: what each image says about itself (Content Credentials and the
IPTC label); the reading is `fluxclaw.credentials.describe`, this module only prints it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from fluxclaw import contract
from fluxclaw.cli.common import fail, handle_errors
from fluxclaw.files import MAX_IMAGE_BYTES


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trust",
    "trust",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate(s) to trust as signers (replaces the built-in trust list).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@handle_errors
def command(files: tuple[Path, ...], trust: Path | None, as_json: bool) -> None:
    """Say whether each image carries Content Credentials (C2PA) and an AI label (IPTC).

    A plain install reports whether credentials are present; with `fluxclaw[c2pa]` they are
    verified (valid, trusted, signer, digital source type). Exit 4 if a file cannot be read.
    """
    from fluxclaw import credentials

    anchors = _anchors(trust) if trust else None
    unread = 0
    for path in files:  # a catalogue is checked whole: one bad file is said and skipped
        try:
            report = credentials.describe(_read(path), trust_anchors=anchors)
        except OSError as exc:
            report = {"format": None, "error": f"cannot read it ({exc.strerror or exc})"}
        except ValueError as exc:  # a container that does not hold together, or too large
            report = {"format": None, "error": f"not a whole image ({exc})"}
        if report["format"] is None:
            unread += 1
            why = report.get("error") or "not a PNG, JPEG or WebP image"
            click.echo(f"error: {path}: {why}", err=True)
            continue
        if as_json:
            click.echo(json.dumps({"file": str(path), **report}, ensure_ascii=False))
        else:
            click.echo(_text(path, report))
    if unread:
        sys.exit(contract.EXIT_INVALID)


def _read(path: Path) -> bytes:
    """At most MAX_IMAGE_BYTES (Flux 2 images are a few MB): /dev/zero is refused, not read."""
    with path.open("rb") as handle:
        data = handle.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    return data


def _anchors(trust: Path) -> bytes:
    data = trust.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data:
        fail(
            f"{trust} holds no PEM certificate; give the signer's root CA as PEM.",
            contract.EXIT_INVALID,
        )
    return data


def _text(path: Path, report: dict[str, Any]) -> str:
    c2pa, iptc = report["c2pa"], report["iptc"]
    if not c2pa["present"]:
        credentials = "none"
    elif "state" not in c2pa:
        credentials = f"present ({c2pa['note']})"
    else:
        who = f", signed by {c2pa['signer']}" if c2pa.get("signer") else ""
        codes = f" ({', '.join(c2pa['codes'])})" if c2pa.get("codes") else ""
        kind = _kind(c2pa.get("digital_source_type"))
        credentials = f"{c2pa['state']}{codes}{who}{kind}"
    label = (
        f"AI-made ({iptc['ai_system'] or 'model not named'}"
        f"{', by ' + iptc['creator_tool'] if iptc['creator_tool'] else ''})"
        if iptc["ai_generated"]
        else "none"
    )
    return (
        f"{path}: {report['format'].upper()}\n"
        f"  Content Credentials (C2PA): {credentials}\n"
        f"  IPTC label: {label}"
    )


def _kind(source_type: str | None) -> str:
    if not source_type:
        return ""
    return f", {source_type.rsplit('/', 1)[-1]}"
