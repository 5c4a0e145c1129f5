"""build_ep helpers that need no network: mirror discovery from apt sources, the library path, up-to-date check."""

from __future__ import annotations

from pathlib import Path

from sparsec.runtime import build_ep


def test_mirror_from_deb822(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n"
    )
    assert build_ep.apt_mirror_uri(d, tmp_path / "none") == "http://mirror.example/debian"


def test_mirror_from_legacy_list(tmp_path: Path) -> None:
    legacy = tmp_path / "sources.list"
    legacy.write_text("# comment\ndeb [arch=amd64 signed-by=/k.gpg] https://m.example/debian bookworm main\n")
    assert build_ep.apt_mirror_uri(tmp_path / "none", legacy) == "https://m.example/debian"


def test_mirror_default(tmp_path: Path) -> None:
    assert build_ep.apt_mirror_uri(tmp_path / "none", tmp_path / "none") == "http://deb.debian.org/debian"


def test_library_path() -> None:
    assert build_ep.ep_library_path().name == "libsparsec_ep.so"
    assert build_ep.ep_library_path().parent.name == "lib"


def test_sources_listed() -> None:
    names = {p.name for p in build_ep._sources()}
    assert {"CMakeLists.txt", "ep.cc", "ep_factory.cc", "compute.cc", "weights.cc"} <= names
