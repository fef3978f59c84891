"""Unpacks Debian's chromium into .cache/chromium for the gallery test, without root.

Run by install-chromium.sh. It reads the apt sources this machine is configured with, fetches
each suite's InRelease (checked with gpgv against the source's keyring, as apt does) and its
Packages.xz (checked against InRelease's SHA256), resolves chromium's Depends recursively,
leaving out what dpkg says is installed, downloads those .debs (each checked against the
index's SHA256 and size) and unpacks them with `dpkg-deb -x` into .cache/chromium/root.
bin/chromium, written last, runs the unpacked browser with the loader (and fontconfig, when its
fonts came from here) pointed at the unpacked libraries.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

PROJECT = Path(__file__).resolve().parents[2]
CACHE = PROJECT / ".cache" / "chromium"
# Unpacked here even when installed: the wrapper runs this copy, the browser and its resources.
WANTED = ("chromium", "chromium-common")
# Never loaded by headless chromium: the GTK UI (or a desktop portal), and the X tools and
# xdg-open that chromium-common wants for the desktop.
UNUSED = frozenset({"libgtk-3-0", "xdg-desktop-portal-backend", "x11-utils", "xdg-utils"})
APT = Path("/etc/apt")
TRIES = 3


@dataclass(frozen=True)
class Source:
    uri: str
    suite: str
    components: tuple[str, ...]
    keyrings: tuple[str, ...]


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    depends: str
    provides: str
    filename: str
    sha256: str
    size: int
    base: str


# Debian version comparison (deb-version(7)), as `dpkg --compare-versions` does it.


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        di = i
        while i < len(a) and a[i].isdigit():
            i += 1
        dj = j
        while j < len(b) and b[j].isdigit():
            j += 1
        na, nb = int(a[di:i] or 0), int(b[dj:j] or 0)
        if na != nb:
            return na - nb
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def compare(a: str, b: str) -> int:
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    return (ea - eb) or _compare_part(ua, ub) or _compare_part(ra, rb)


def satisfies(version: str | None, op: str | None, wanted: str | None) -> bool:
    if op is None or wanted is None:
        return True
    if version is None:  # an unversioned Provides meets no versioned dependency
        return False
    c = compare(version, wanted)
    return {"<<": c < 0, "<=": c <= 0, "=": c == 0, ">=": c >= 0, ">>": c > 0}[op]


Relation = tuple[str, str | None, str | None]

RELATION = re.compile(
    r"\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?"
    r"\s*(?:\[[^]]*\])?\s*(?:<[^>]*>\s*)*"
)


def relations(field: str) -> list[list[Relation]]:
    """`a (>= 1) | b, c` as [[a, >=, 1], [b]], [[c]]]."""
    groups = []
    for group in filter(str.strip, field.split(",")):
        alternatives: list[Relation] = []
        for alternative in group.split("|"):
            found = RELATION.fullmatch(alternative)
            if not found:
                raise SystemExit(f"install_chromium: cannot read the relation {alternative!r}")
            op = {"<": "<=", ">": ">="}.get(found[2], found[2]) if found[2] else None
            alternatives.append((found[1], op, found[3]))
        groups.append(alternatives)
    return groups


# The apt sources, their verified indexes, and the packages they list.


def _deb822(text: str) -> Iterator[dict[str, str]]:
    for paragraph in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in paragraph.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            yield fields


def sources(arch: str) -> list[Source]:
    entries: list[tuple[list[str], list[str], list[str], str, str]] = []
    lists = [APT / "sources.list", *sorted((APT / "sources.list.d").glob("*.list"))]
    for path in filter(Path.is_file, lists):
        for line in path.read_text(errors="replace").splitlines():
            found = re.match(r"deb\s+(?:\[([^]]*)\]\s+)?(\S+)\s+(\S+)(.*)", line.split("#")[0])
            if found:
                options = dict(o.split("=", 1) for o in (found[1] or "").split() if "=" in o)
                entries.append(
                    (
                        [found[2]],
                        [found[3]],
                        found[4].split(),
                        options.get("signed-by", ""),
                        options.get("arch", ""),
                    )
                )
    for path in sorted((APT / "sources.list.d").glob("*.sources")):
        for fields in _deb822(path.read_text(errors="replace")):
            if fields.get("enabled", "yes") == "no" or "deb" not in fields.get("types", ""):
                continue
            entries.append(
                (
                    fields.get("uris", "").split(),
                    fields.get("suites", "").split(),
                    fields.get("components", "").split(),
                    fields.get("signed-by", ""),
                    fields.get("architectures", ""),
                )
            )
    found_sources = []
    for uris, suites, components, signed_by, archs in entries:
        if archs and arch not in archs.replace(",", " ").split():
            continue
        keyrings = [k for k in re.split(r"[\s,]+", signed_by) if k.startswith("/")]
        if not keyrings:  # apt's default: the keyrings it trusts for every source
            keyrings = [
                str(k)
                for k in [APT / "trusted.gpg", *sorted((APT / "trusted.gpg.d").glob("*.gpg"))]
                if k.is_file()
            ]
        for uri in uris:
            if not uri.startswith(("http://", "https://")):
                continue
            for suite in suites:
                if not suite.endswith("/"):
                    found_sources.append(
                        Source(uri.rstrip("/"), suite, tuple(components), tuple(keyrings))
                    )
    return found_sources


def download(url: str, dest: Path, sha256: str | None = None, size: int | None = None) -> None:
    problem = ""
    for attempt in range(TRIES):
        if attempt:
            time.sleep(2 * attempt)
        digest = hashlib.sha256()
        got = 0
        try:
            with urllib.request.urlopen(url, timeout=60) as answer, dest.open("wb") as out:
                while chunk := answer.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    got += len(chunk)
        except (OSError, http.client.HTTPException) as error:
            problem = str(error)
            continue
        if (sha256 is None or digest.hexdigest() == sha256) and (size is None or got == size):
            return
        problem = f"got {got} bytes with SHA256 {digest.hexdigest()}, want {size} and {sha256}"
    raise SystemExit(f"install_chromium: {url}: {problem}")


def release(source: Source, work: Path) -> str:
    """The suite's InRelease, its signature checked as apt checks it."""
    path = work / "InRelease"
    download(f"{source.uri}/dists/{source.suite}/InRelease", path)
    keyrings = [arg for k in source.keyrings for arg in ("--keyring", k)]
    checked = subprocess.run(
        ["gpgv", "--quiet", *keyrings, "--output", "-", str(path)], capture_output=True
    )
    if checked.returncode != 0 or not keyrings:
        said = checked.stderr.decode(errors="replace")
        raise SystemExit(
            f"install_chromium: {source.uri} {source.suite}: InRelease not signed by a key in"
            f" {' '.join(source.keyrings) or 'no keyring'}\n{said}"
        )
    return checked.stdout.decode()


def indexes(source: Source, arch: str, work: Path) -> Iterator[str]:
    """Each component's Packages index, checked against the suite's signed InRelease."""
    text = release(source, work)
    sums = text.split("\nSHA256:\n", 1)[-1]
    for component in source.components:
        name = f"{component}/binary-{arch}/Packages.xz"
        found = re.search(rf"^ ([0-9a-f]{{64}}) +(\d+) {re.escape(name)}$", sums, re.M)
        if not found:
            continue
        path = work / "Packages.xz"
        url = f"{source.uri}/dists/{source.suite}/{name}"
        download(url, path, found[1], int(found[2]))
        yield lzma.decompress(path.read_bytes()).decode(errors="replace")


FIELDS = {"Package", "Version", "Architecture", "Depends", "Pre-Depends", "Provides"}
FIELDS |= {"Filename", "SHA256", "Size"}


def packages(index: str, base: str, arch: str) -> Iterator[Package]:
    for stanza in index.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            key, _, value = line.partition(": ")
            if key in FIELDS:
                fields[key] = value.strip()
        if "Package" in fields and fields.get("Architecture") in (arch, "all"):
            depends = ", ".join(filter(None, (fields.get("Pre-Depends"), fields.get("Depends"))))
            yield Package(
                fields["Package"],
                fields["Version"],
                depends,
                fields.get("Provides", ""),
                fields["Filename"],
                fields["SHA256"],
                int(fields["Size"]),
                base,
            )


def installed(arch: str) -> dict[str, list[str | None]]:
    """What dpkg has installed: each package's and each provided name's versions."""
    listing = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${Architecture}\t${Package}\t${Version}\t${Provides}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    have: dict[str, list[str | None]] = {}
    for line in listing.splitlines():
        status, package_arch, name, version, provides = (line.split("\t") + [""] * 5)[:5]
        if status[1:2] != "i" or package_arch not in (arch, "all"):
            continue
        have.setdefault(name, []).append(version)
        for group in relations(provides):
            provided, _, provided_version = group[0]
            have.setdefault(provided, []).append(provided_version)
    return have


def resolve(
    available: dict[str, list[Package]], have: dict[str, list[str | None]]
) -> list[Package]:
    """WANTED and, recursively, what they depend on that is neither installed nor chosen."""

    def by_version(a: Package, b: Package) -> int:
        return compare(a.version, b.version)

    newest = functools.cmp_to_key(by_version)
    by_name: dict[str, list[Package]] = {}
    providers: dict[str, list[tuple[Package, str | None]]] = {}
    for name, versions in available.items():
        by_name[name] = sorted(versions, key=newest, reverse=True)
        for package in versions:
            for group in relations(package.provides):
                provided, _, provided_version = group[0]
                providers.setdefault(provided, []).append((package, provided_version))

    chosen: dict[str, Package] = {}
    chosen_provides: dict[str, list[str | None]] = {}

    def choose(package: Package) -> None:
        chosen[package.name] = package
        chosen_provides.setdefault(package.name, []).append(package.version)
        for group in relations(package.provides):
            chosen_provides.setdefault(group[0][0], []).append(group[0][2])
        queue.append(package)

    def met(name: str, op: str | None, version: str | None) -> bool:
        return any(
            satisfies(v, op, version) for v in have.get(name, []) + chosen_provides.get(name, [])
        )

    def candidate(name: str, op: str | None, version: str | None) -> Package | None:
        for package in by_name.get(name, []):
            if satisfies(package.version, op, version):
                return package
        for package, provided_version in providers.get(name, []):
            if satisfies(provided_version, op, version):
                return package
        return None

    queue: list[Package] = []
    for name in WANTED:
        if name not in by_name:
            raise SystemExit(f"install_chromium: no {name} package in the apt sources' indexes")
        choose(by_name[name][0])
    while queue:
        package = queue.pop()
        for group in relations(package.depends):
            usable = [r for r in group if r[0] not in UNUSED]
            if not usable or any(met(*r) for r in group):
                continue
            pick = next(filter(None, (candidate(*r) for r in usable)), None)
            if pick is None or pick.name in chosen:
                raise SystemExit(
                    f"install_chromium: {package.name} needs"
                    f" {' | '.join(' '.join(filter(None, r)) for r in group)}: not in the indexes"
                )
            if pick.name == "libc6":  # the system's loader runs the browser: no other C library
                raise SystemExit(f"install_chromium: {package.name} needs a newer libc6")
            choose(pick)
    return sorted(chosen.values(), key=lambda p: p.name)


# The unpacked tree and its wrapper.

WRAPPER = """#!/bin/sh
# Debian's chromium, unpacked here by tests/setup/install-chromium.sh, run on the libraries
# unpacked beside it and the system's for the rest.
top=$(dirname "$(dirname "$(readlink -f "$0")")")
{environment}export CHROME_VERSION_EXTRA="built on Debian, unpacked by fluxclaw's tests"
# As Debian's launcher does: with a small /dev/shm (a container's) the renderer would crash.
shm=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {{ print $4 }}')
[ "${{shm:-0}}" -ge 3984589 ] || set -- --disable-dev-shm-usage "$@"
exec "$top/root/usr/lib/chromium/chromium" "$@"
"""

FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<!-- The system's fontconfig setup, if any, and the fonts unpacked beside this file. -->
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir>{cache}/root/usr/share/fonts</dir>
  <cachedir>{cache}/fontconfig</cachedir>
</fontconfig>
"""


def library_dirs(root: Path) -> list[str]:
    """Every unpacked folder with shared libraries but the browser's own (found by chromium
    itself), multiarch ones first: libraries with a RUNPATH into a private system folder
    (libpulse's) find it only through LD_LIBRARY_PATH."""
    dirs = {
        path.parent.relative_to(root).as_posix()
        for path in root.rglob("lib*.so*")
        if re.search(r"\.so(\.[0-9.]+)?$", path.name)
    }
    dirs = {d for d in dirs if not d.startswith("usr/lib/chromium")}
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def wrapper(root: Path) -> str:
    lines = []
    dirs = library_dirs(root)
    if dirs:
        joined = ":".join(f"$top/root/{d}" for d in dirs)
        lines.append(f'export LD_LIBRARY_PATH="{joined}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"')
    if (root / "usr/share/fonts").is_dir():
        (root.parent / "fonts.conf").write_text(FONTS_CONF.format(cache=escape(str(root.parent))))
        lines.append('export FONTCONFIG_FILE="$top/fonts.conf"')
    return WRAPPER.format(environment="".join(line + "\n" for line in lines))


def main() -> None:
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    available: dict[str, list[Package]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources(arch):
            for index in indexes(source, arch, Path(tmp)):
                for package in packages(index, source.uri, arch):
                    available.setdefault(package.name, []).append(package)
    needed = resolve(available, installed(arch))

    shutil.rmtree(CACHE, ignore_errors=True)
    debs, root, bin_dir = CACHE / "debs", CACHE / "root", CACHE / "bin"
    for folder in (debs, root, bin_dir):
        folder.mkdir(parents=True)

    def fetch(package: Package) -> Path:
        path = debs / Path(package.filename).name
        download(f"{package.base}/{package.filename}", path, package.sha256, package.size)
        return path

    with ThreadPoolExecutor(max_workers=8) as pool:
        for path in pool.map(fetch, needed):
            subprocess.run(["dpkg-deb", "-x", str(path), str(root)], check=True)
            path.unlink()
    debs.rmdir()
    (CACHE / "packages.txt").write_text("".join(f"{p.name} {p.version}\n" for p in needed))
    script = bin_dir / "chromium.new"
    script.write_text(wrapper(root))
    script.chmod(0o755)
    os.replace(script, bin_dir / "chromium")


if __name__ == "__main__":
    main()
