"""A multi-language corpus of real third-party source, fetched once and cached.

Nobody here wrote it: Debian packages (Go's standard library from ``golang-1.19-src``, Rust's
``alloc`` and ``core`` from ``rust-src``, Ruby's standard library from ``libruby3.1``, Symfony
Console from ``php-symfony-console``, Bash from ``bash-completion``'s completion scripts), npm
packages (``rxjs`` 7.8.1, TypeScript sources; ``expo-modules-core`` 2.2.3, whose Android and
iOS sources are Kotlin and Swift), Python source distributions (Brotli 1.1.0, C; greenlet
3.1.1, C++; pythonnet 3.0.5, whose runtime is C#), and what this machine already holds (npm's
own JavaScript, the JDK's ``src.zip`` for Java). Each language's files
are copied under ``~/.cache/victor-corpus/<size>/<language>/`` with a canonical extension, so
every tool sees the same files and classifies them the same way. A source that cannot be had
is left out and named in ``missing``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("VICTOR_CORPUS_DIR", Path.home() / ".cache" / "victor-corpus"))
FILES_PER_LANGUAGE = {"tiny": 8, "small": 30, "default": 30, "full": 400}
EXTENSIONS = {
    "javascript": ".js",
    "typescript": ".ts",
    "go": ".go",
    "rust": ".rs",
    "java": ".java",
    "c": ".c",
    "cpp": ".cpp",
    "ruby": ".rb",
    "php": ".php",
    "csharp": ".cs",
    "kotlin": ".kt",
    "swift": ".swift",
    "shell": ".sh",
}


@dataclass(frozen=True)
class Corpus:
    """Where each language's files are, and the sources that could not be had."""

    root: Path
    languages: dict[str, Path]
    missing: dict[str, str]

    def files(self, language: str) -> list[Path]:
        return sorted(self.languages[language].iterdir())


def build_corpus(size: str = "small") -> Corpus:
    """The corpus at ``size`` (files per language), built on first call and then reused."""
    per_language = FILES_PER_LANGUAGE[size]
    root = CACHE / size
    languages: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for language, finder in _SOURCES.items():
        target = root / language
        # The marker lives outside the corpus, so every file under root is a source file.
        marker = CACHE / "complete" / f"{size}-{language}"
        if not marker.exists():
            try:
                _fill(target, finder(), per_language, EXTENSIONS[language], marker)
            except (OSError, subprocess.CalledProcessError, StopIteration) as exc:
                missing[language] = f"{type(exc).__name__}: {exc}"
                continue
        languages[language] = target
    return Corpus(root, languages, missing)


def _fill(target: Path, sources: Iterator[Path], limit: int, extension: str, marker: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    count = 0
    for source in sources:
        if count >= limit:
            break
        data = source.read_bytes()
        if not data.strip() or b"\0" in data[:8192]:
            continue
        (target / f"{count:04d}-{source.stem[:40]}{extension}").write_bytes(data)
        count += 1
    if count == 0:
        raise FileNotFoundError(f"no source files found for {target.name}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(count))


def _downloads() -> Path:
    path = CACHE / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _unpacked(name: str, fetch: Callable[[Path], None], archive: str) -> Path:
    """``downloads/name``: on first use ``fetch(work)`` downloads one ``archive`` (a glob) into
    a scratch directory, which is unpacked and renamed into place (a failed run leaves none)."""
    unpacked = _downloads() / name
    if unpacked.exists():
        return unpacked
    work = _downloads() / f"{name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    fetch(work)
    (path,) = work.glob(archive)
    if path.suffix == ".deb":
        subprocess.run(["dpkg-deb", "-x", str(path), str(work / "root")], check=True)
    else:
        with tarfile.open(path) as tar:
            tar.extractall(work / "root", filter="data")
    (work / "root").rename(unpacked)
    shutil.rmtree(work)
    return unpacked


def _run(command: list[str], cwd: Path) -> None:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=300)


def _debian(package: str, pattern: str) -> Callable[[], Iterator[Path]]:
    """Files matching ``pattern`` inside Debian ``package`` (downloaded, unpacked, cached)."""

    def find() -> Iterator[Path]:
        fetch = functools.partial(_run, ["apt-get", "download", "-q", package])
        return iter(sorted(_unpacked(package, fetch, "*.deb").glob(pattern)))

    return find


def _npm(package: str, pattern: str) -> Callable[[], Iterator[Path]]:
    def find() -> Iterator[Path]:
        fetch = functools.partial(_run, ["npm", "pack", package, "--silent"])
        unpacked = _unpacked(package.replace("@", "-"), fetch, "*.tgz")
        return (path for path in sorted(unpacked.glob(pattern)) if not path.name.endswith(".d.ts"))

    return find


def _sdist(requirement: str, pattern: str) -> Callable[[], Iterator[Path]]:
    def find() -> Iterator[Path]:
        def fetch(work: Path) -> None:
            _run(
                [
                    *(sys.executable, "-m", "pip", "download", "-q", "--no-deps"),
                    *("--no-binary", ":all:", requirement, "-d", str(work)),
                ],
                work,
            )

        unpacked = _unpacked(requirement.replace("==", "-"), fetch, "*.tar.gz")
        return iter(sorted(unpacked.glob(pattern)))

    return find


def _no_links(finder: Callable[[], Iterator[Path]]) -> Callable[[], Iterator[Path]]:
    """``finder``'s files less its symbolic links (a package that links one script under
    several names would put copies of it in the corpus)."""

    def find() -> Iterator[Path]:
        return (path for path in finder() if not path.is_symlink())

    return find


def _local(directory: str, pattern: str) -> Callable[[], Iterator[Path]]:
    def find() -> Iterator[Path]:
        return iter(sorted(Path(directory).glob(pattern)))

    return find


def _jdk(pattern: str) -> Callable[[], Iterator[Path]]:
    def find() -> Iterator[Path]:
        archives = sorted(Path("/usr/lib/jvm").glob("*/lib/src.zip"))
        if not archives:
            raise FileNotFoundError("no JDK src.zip under /usr/lib/jvm")
        unpacked = _downloads() / "jdk-src"
        if not unpacked.exists():
            with zipfile.ZipFile(archives[0]) as archive:
                names = [name for name in archive.namelist() if Path(name).match(pattern)]
                archive.extractall(unpacked, members=names)
        return iter(sorted(unpacked.glob(pattern)))

    return find


_SOURCES: dict[str, Callable[[], Iterator[Path]]] = {
    "javascript": _local("/usr/lib/node_modules/npm", "lib/**/*.js"),
    "typescript": _npm("rxjs@7.8.1", "package/src/internal/**/*.ts"),
    "go": _debian("golang-1.19-src", "usr/share/go-1.19/src/[bs]*/**/*.go"),
    "rust": _debian("rust-src", "usr/src/rustc-*/library/alloc/src/**/*.rs"),
    "java": _jdk("java.base/java/util/*.java"),
    "c": _sdist("Brotli==1.1.0", "Brotli-1.1.0/c/**/*.c"),
    "cpp": _sdist("greenlet==3.1.1", "greenlet-3.1.1/src/greenlet/**/*.[ch]pp"),
    "ruby": _debian("libruby3.1", "usr/lib/ruby/3.1.0/**/*.rb"),
    "php": _debian("php-symfony-console", "usr/share/php/Symfony/Component/Console/**/*.php"),
    "csharp": _sdist("pythonnet==3.0.5", "pythonnet-3.0.5/src/runtime/**/*.cs"),
    "kotlin": _npm("expo-modules-core@2.2.3", "package/android/**/*.kt"),
    "swift": _npm("expo-modules-core@2.2.3", "package/ios/**/*.swift"),
    "shell": _no_links(_debian("bash-completion", "usr/share/bash-completion/completions/*")),
}
