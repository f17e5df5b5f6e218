"""The public API documents itself and is typed precisely enough for completion through a chain.

Public API: every class and function `kstream` and `serdes` export, plus the
TopologyTestDriver and its input/output topics. Every public method (and property) needs a
docstring, and none may return `Any` unless it hands back user data (listed below, with why).
The examples in the docstrings run (doctest), and mypy infers the precise class at every step
of a DSL chain. No broker needed.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import pydoc
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kstream
import kstream.testing
import serdes

REPO = Path(__file__).resolve().parents[1]

DRIVER_CLASSES = (kstream.testing.TopologyTestDriver, kstream.testing.TestInputTopic,
                  kstream.testing.TestOutputTopic)

# Methods whose result is user data whose type the library cannot know (a deserialized value,
# a store whose kind depends on its name), so `Any` is the honest annotation. Anything else
# returning Any fails test_no_public_method_returns_any.
RETURNS_USER_DATA = {
    "Serde.deserialize": "whatever the serde decodes",
    "AvroSerde.deserialize": "the datum the Avro schema describes",
    "ConfluentAvroSerde.deserialize": "the datum the Avro schema describes",
    "TupleKeySerde.deserialize": "a key: None, bool, int, float, str, bytes or a tuple of them",
    "KeyValueView.get": "a stored value, decoded by the store's serde",
    "ProcessorContext.get_store": "KeyValueStore, WindowStore or SessionStore, by the name",
    "TopologyTestDriver.get_store": "KeyValueStore, WindowStore or SessionStore, by the name",
    "TestOutputTopic.read_value": "a record value, decoded by the reader's serde",
}


def _ours(obj: object) -> bool:
    return getattr(obj, "__module__", "").split(".")[0] in ("kstream", "serdes")


def public_classes() -> list[type]:
    found: dict[type, None] = {}
    for module in (kstream, serdes):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and _ours(obj):
                found[obj] = None
    found.update(dict.fromkeys(DRIVER_CLASSES))
    return list(found)


def public_functions() -> list[Callable[..., Any]]:
    return [obj for module in (kstream, serdes) for obj in
            (getattr(module, name) for name in module.__all__)
            if inspect.isfunction(obj) and _ours(obj)]


def public_methods(cls: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    """(name, function) of every public method and property `cls` has from kstream/serdes
    classes (its own and inherited), properties as their getter."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _ours(klass):
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(attr, property):
                func = attr.fget
            elif isinstance(attr, (classmethod, staticmethod)):
                func = attr.__func__
            else:
                func = attr
            if inspect.isfunction(func):
                yield name, func


def _all_methods() -> list[tuple[str, Callable[..., Any]]]:
    return [(f"{cls.__name__}.{name}", func) for cls in public_classes()
            for name, func in public_methods(cls)]


def test_the_public_api_is_large_enough_to_mean_something() -> None:
    # Guards the walk itself: if it found nothing, every test below would pass vacuously.
    names = {name for name, _ in _all_methods()}
    assert len(names) > 150
    assert {"Stream.filter", "Table.map_values", "GroupedStream.windowed_by",
            "WindowedGroupedStream.count", "TopologyTestDriver.advance_wall_clock",
            "TestOutputTopic.read_key_values_to_dict", "JsonSerde.deserialize"} <= names


def test_every_public_method_has_a_docstring() -> None:
    missing = [name for name, func in _all_methods() if not (func.__doc__ or "").strip()]
    missing += [f.__name__ for f in public_functions() if not (f.__doc__ or "").strip()]
    missing += [cls.__name__ for cls in public_classes() if not (cls.__doc__ or "").strip()]
    assert not missing, f"public API without a docstring: {missing}"


def _namespace() -> dict[str, Any]:
    """Names the annotations may use that their modules import only for type checking."""
    ns: dict[str, Any] = {}
    for module_name in ("kstream.dsl.stream", "kstream.dsl.table", "kstream.dsl.grouped",
                        "kstream.dsl.windowed", "kstream.dsl.cogroup", "kstream.state",
                        "kstream.windows", "kstream.runtime.task", "kstream.runtime.meters"):
        module = importlib.import_module(module_name)
        ns.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
    prometheus = pytest.importorskip("prometheus_client")
    ns["CollectorRegistry"] = prometheus.CollectorRegistry
    return ns


def _return_type(func: Callable[..., Any], ns: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(func, localns=ns)
    assert "return" in hints, f"{func.__qualname__} has no return annotation"
    return hints["return"]


def _mentions_any(tp: Any) -> bool:
    """Any itself, or a union with Any in it (`Any | None` is as opaque as Any)."""
    if tp is Any:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(arg is Any for arg in typing.get_args(tp))
    return False


def test_no_public_method_returns_any() -> None:
    ns = _namespace()
    returning_any = []
    for name, func in _all_methods():
        if _mentions_any(_return_type(func, ns)) and name not in RETURNS_USER_DATA:
            returning_any.append(name)
    assert not returning_any, (
        f"public methods returning Any (annotate the precise type, or add them to "
        f"RETURNS_USER_DATA with the reason): {returning_any}")
    stale = [name for name in RETURNS_USER_DATA
             if name not in dict(_all_methods())
             or not _mentions_any(_return_type(dict(_all_methods())[name], ns))]
    assert not stale, f"RETURNS_USER_DATA entries that no longer return Any: {stale}"


def _classes_in(tp: Any) -> Iterator[type]:
    if inspect.isclass(tp) and typing.get_origin(tp) is None:
        yield tp
    for arg in typing.get_args(tp):
        yield from _classes_in(arg)


def test_every_class_a_dsl_chain_reaches_is_exported() -> None:
    """From StreamBuilder, follow the return types of public methods through the DSL: every
    class reached can be named from `kstream` (for annotations and IDE completion).

    Classes of underscore modules are internal by the package's rule (kstream/__init__.py);
    only helpers like Table.require_getter return them."""
    ns = _namespace()
    todo: list[type] = [kstream.StreamBuilder]
    reached: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls in reached:
            continue
        reached.add(cls)
        for _name, func in public_methods(cls):
            for target in _classes_in(_return_type(func, ns)):
                module = target.__module__
                if module.startswith("kstream.dsl.") and "._" not in module:
                    todo.append(target)
    exported = {getattr(kstream, name) for name in kstream.__all__}
    assert {kstream.Stream, kstream.Table, kstream.GroupedStream,
            kstream.WindowedGroupedStream, kstream.GroupedTable, kstream.CogroupedStream,
            kstream.BranchedStream, kstream.GlobalTable} <= reached
    assert not reached - exported, f"not exported from kstream: {reached - exported}"


def test_help_documents_every_method_of_every_public_class() -> None:
    for cls in public_classes():
        text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
        for name, func in public_methods(cls):
            first_line = (func.__doc__ or "").strip().splitlines()[0].strip()
            assert name in text and first_line in text, (cls.__name__, name)


def test_help_of_stream_from_the_command_line() -> None:
    env = {**os.environ, "PAGER": "cat", "MANPAGER": "cat", "TERM": "dumb"}
    done = subprocess.run([sys.executable, "-c", "import kstream; help(kstream.Stream)"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    for name, func in public_methods(kstream.Stream):
        assert f"{name}(self" in done.stdout or f"{name}\n" in done.stdout, name
        assert (func.__doc__ or "").strip().splitlines()[0].strip() in done.stdout, name


def _modules_with_examples() -> list[types.ModuleType]:
    modules = {sys.modules[cls.__module__] for cls in public_classes()}
    return sorted((m for m in modules if ">>>" in inspect.getsource(m)),
                  key=lambda m: m.__name__)


@pytest.mark.parametrize("module", _modules_with_examples(), ids=lambda m: m.__name__)
def test_docstring_examples_run(module: types.ModuleType) -> None:
    """The examples in public docstrings are doctests: each builds its topology and runs it
    on the TopologyTestDriver, so a changed API or semantics shows here."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module.__name__}"


CHAIN = '''
from kstream import SessionWindows, StreamBuilder, TumblingWindows
from kstream.testing import TopologyTestDriver

builder = StreamBuilder()
source = builder.stream("in", "string", "json")
reveal_type(source.filter(lambda k, v: True).map_values(str).select_key(lambda k, v: v))
reveal_type(source.group_by(lambda k, v: v).windowed_by(TumblingWindows(10)).count("a"))
reveal_type(source.group_by_key().windowed_by(SessionWindows(10)))
reveal_type(source.group_by_key().cogroup(lambda k, v, a: a).aggregate(lambda: 0, "b"))
reveal_type(builder.table("t", name="t").group_by(lambda k, v: (k, v)).count("c").to_stream())
reveal_type(source.split().branch(lambda k, v: True, "x").default_branch())
reveal_type(source.join(builder.table("u", name="u"), lambda a, b: a).group_by_key())
reveal_type(TopologyTestDriver(builder).output_topic("out").read_record())
reveal_type(source.left_join(builder.global_table("g", name="g"), lambda k, v: v, lambda a, b: a))
'''

EXPECTED = [
    "kstream.dsl.stream.Stream",
    "kstream.dsl.table.Table",
    "kstream.dsl.windowed.WindowedGroupedStream",
    "kstream.dsl.table.Table",
    "kstream.dsl.stream.Stream",
    "dict[str, kstream.dsl.stream.Stream]",
    "kstream.dsl.grouped.GroupedStream",
    "kstream.record.Record",
    "kstream.dsl.stream.Stream",
]


def test_mypy_infers_every_step_of_a_chain(tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    """What an IDE completes is what a type checker infers: no step of a chain is Any."""
    pytest.importorskip("mypy")
    (tmp_path / "chain.py").write_text(CHAIN)
    pytest_cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    cache = pytest_cache.mkdir("mypy-chain") if pytest_cache is not None else tmp_path
    env = {**os.environ, "MYPYPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
         "--no-error-summary", "--cache-dir", str(cache), "chain.py"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    revealed = [line.split('Revealed type is "', 1)[1].rstrip('"').replace("builtins.", "")
                for line in done.stdout.splitlines() if "Revealed type is" in line]
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert not errors, done.stdout
    assert revealed == EXPECTED, done.stdout
