"""The reference docs (docs/*.md) say what the code does: every AppConfig field is in the
configuration table with its real type, default and environment variable; every driver option
and member is on the testing page; every serde name is in the serdes page; the README links
them. A setting or option added without its documentation fails here. No broker needed.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest

import serdes
from kstream import StreamBuilder
from kstream.config import _RESERVED_CONSUMER, _RESERVED_PRODUCER, AppConfig, ConfigError
from kstream.testing import TestInputTopic, TestOutputTopic, TopologyTestDriver

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = DOCS.parent / "README.md"
REFERENCE = ("configuration.md", "serdes.md", "testing.md", "unsupported.md")

_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_CODE = re.compile(r"`([^`]+)`")


def _rows(markdown: str, section: str) -> dict[str, list[str]]:
    """The table rows of `section` (a `## ` heading) by their first cell's code name."""
    body = markdown.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in body.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line.strip())[1:-1]]
        rows[_CODE.findall(cells[0])[0]] = cells
    return rows


def _code(cell: str) -> str | None:
    found = _CODE.findall(cell)
    return found[0] if found else None


# -- configuration.md ---------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("KSTREAM_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _reads_env(monkeypatch: pytest.MonkeyPatch, field: str) -> bool:
    """Whether `KSTREAM_<FIELD>` changes what AppConfig.from_kwargs builds (by behaviour, so
    this check follows the code rather than restating its rule)."""
    var = f"KSTREAM_{field.upper()}"
    kwargs = {"application_id": "probe", "bootstrap_servers": "probe:9092"}
    kwargs.pop(field, None)

    def outcome(env: str | None) -> tuple[str, Any]:
        if env is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, env)
        try:
            return "value", getattr(AppConfig.from_kwargs(**kwargs), field)
        except ConfigError as exc:
            return "error", str(exc)
        finally:
            monkeypatch.delenv(var, raising=False)

    baseline = outcome(None)
    return any(outcome(probe) != baseline for probe in ("1", "zz"))


def _suggested_row(f: dataclasses.Field[Any], env: bool) -> str:
    if f.default is not dataclasses.MISSING:
        default = f"`{f.default!r}`"
    elif f.default_factory is not dataclasses.MISSING:
        default = f"`{f.default_factory()!r}`"
    else:
        default = "required"
    env_cell = f"`KSTREAM_{f.name.upper()}`" if env else "—"
    typ = str(f.type).replace("|", "\\|")
    return f"| `{f.name}` | `{typ}` | {default} | {env_cell} | <what it does> |"


def test_configuration_md_documents_every_appconfig_field(clean_env: pytest.MonkeyPatch
                                                          ) -> None:
    rows = _rows((DOCS / "configuration.md").read_text(), "Settings")
    fields = {f.name: f for f in dataclasses.fields(AppConfig)}
    reads_env = {name: _reads_env(clean_env, name) for name in fields}
    missing = [_suggested_row(f, reads_env[name]) for name, f in fields.items()
               if name not in rows]
    assert not missing, ("AppConfig fields missing from docs/configuration.md; add these rows "
                         "(and say what they do):\n" + "\n".join(missing))
    stale = sorted(set(rows) - set(fields))
    assert not stale, f"docs/configuration.md documents settings that do not exist: {stale}"
    wrong = []
    for name, f in fields.items():
        setting, typ, default, env, what = rows[name]
        if _code(typ) != str(f.type):
            wrong.append(f"{name}: type {typ} != `{f.type}`")
        if f.default is not dataclasses.MISSING:
            if _code(default) is None or ast.literal_eval(_code(default) or "") != f.default:
                wrong.append(f"{name}: default {default} != `{f.default!r}`")
        elif f.default_factory is not dataclasses.MISSING:
            actual = f.default_factory()
            text = _code(default) or ""
            try:
                documented: Any = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                documented = Path(text).expanduser()
            if documented != actual:
                wrong.append(f"{name}: default {default} != {actual!r}")
        elif default != "required":
            wrong.append(f"{name}: required, documented default {default}")
        expected_env = f"KSTREAM_{name.upper()}" if reads_env[name] else None
        if _code(env) != expected_env:
            wrong.append(f"{name}: environment {env} != {expected_env or '—'}")
        if len(what) < 20:
            wrong.append(f"{name}: say what it does")
    assert not wrong, "docs/configuration.md disagrees with AppConfig:\n" + "\n".join(wrong)


def test_configuration_md_lists_the_keys_kstream_refuses() -> None:
    text = (DOCS / "configuration.md").read_text()
    unlisted = sorted(k for k in _RESERVED_CONSUMER | _RESERVED_PRODUCER if f"`{k}`" not in text)
    assert not unlisted, f"refused consumer/producer keys not in docs/configuration.md: {unlisted}"


# -- testing.md ---------------------------------------------------------------------------------
def test_testing_md_documents_every_driver_option_and_member(tmp_path: Path) -> None:
    text = (DOCS / "testing.md").read_text()
    params = [p for p in inspect.signature(TopologyTestDriver).parameters if p != "topology"]
    builder = StreamBuilder()
    builder.stream("in").to("out")
    with TopologyTestDriver(builder, state_dir=tmp_path) as driver:
        pipe_in, pipe_out = driver.input_topic("in"), driver.output_topic("out")
        members = {
            "TopologyTestDriver": _members(driver),
            "TestInputTopic": _members(pipe_in),
            "TestOutputTopic": _members(pipe_out),
        }
    undocumented = [f"option {p}" for p in params if f"`{p}`" not in text]
    undocumented += [f"{owner}.{name}" for owner, names in members.items() for name in names
                     if not re.search(rf"[`.]{name}[`(]", text)]
    assert not undocumented, f"missing from docs/testing.md: {undocumented}"
    assert TestInputTopic.__name__ in text and TestOutputTopic.__name__ in text


def _members(obj: object) -> set[str]:
    """Public attributes, properties and methods of an instance."""
    names = {n for n in vars(obj) if not n.startswith("_")}
    names |= {n for n in dir(type(obj)) if not n.startswith("_")}
    return names


# -- serdes.md, unsupported.md, README ----------------------------------------------------------
def test_serdes_md_names_every_serde_name_resolve_accepts() -> None:
    text = (DOCS / "serdes.md").read_text()
    unnamed = sorted(n for n in serdes.SERDE_NAMES if f"`{n}`" not in text)
    assert not unnamed, f"serde names missing from docs/serdes.md: {unnamed}"


def test_readme_links_every_reference_page() -> None:
    readme = README.read_text()
    for page in REFERENCE:
        assert (DOCS / page).is_file(), page
        assert f"(docs/{page})" in readme, f"README does not link docs/{page}"


@pytest.mark.parametrize("page", REFERENCE)
def test_links_between_reference_pages_resolve(page: str) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", (DOCS / page).read_text()):
        assert (DOCS / target).exists(), f"docs/{page} links {target}, which does not exist"
