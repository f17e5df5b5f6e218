"""App-wide default serdes: placeholders the DSL puts wherever no serde was given.

A topology is built before the App (or driver) that runs it exists, so "no serde given" cannot
be resolved at build time. Like Kafka Streams (`default.key.serde`, `default.value.serde`),
each such place gets a `DefaultSerde` for its part (key or value); `App`/the driver bind the
topology's placeholders to `default_key_serde`/`default_value_serde`, or, where those are not
set, to the place's own fallback (raw bytes for topics you name, JSON for internal topics and
stores; docs/serdes.md), which is what kstream did before these settings existed.

Invariant: binding replaces the placeholder's `serialize`/`deserialize` attributes by the
target's bound methods, so a bound placeholder costs no extra call per record. Code that looks
at a serde's type (query key parsing, ordered-key stores, savepoint manifests) must look at
`effective(serde)`.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from kstream.errors import ConfigError
from serdes import BytesSerde, JsonSerde, Serde, SerdeContext, resolve

log = logging.getLogger("kstream.serdes")

Part = Literal["key", "value"]


class DefaultSerde:
    """Stands for the app's default serde of one part, or `fallback` when none is set.

    `where` says which place fell back (logged when that place ends on a fallback that is
    likely a mistake: see `warn`)."""

    def __init__(self, part: Part, fallback: Serde, where: str, warn: bool = False) -> None:
        self.part = part
        self.fallback = fallback
        self.where = where
        self.warn = warn
        self.target: Serde = fallback
        self._use(fallback)

    def _use(self, target: Serde) -> None:
        self.target = target
        self.serialize = target.serialize  # type: ignore[method-assign]
        self.deserialize = target.deserialize  # type: ignore[method-assign]

    def serialize(self, obj: Any, ctx: SerdeContext | None = None) -> bytes | None:
        return self.target.serialize(obj, ctx)  # replaced per instance by _use

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> Any:
        return self.target.deserialize(data, ctx)  # replaced per instance by _use

    def same_as(self, other: object) -> bool:
        return (isinstance(other, DefaultSerde) and other.part == self.part
                and type(other.fallback) is type(self.fallback))

    def __repr__(self) -> str:
        return f"default {self.part} serde ({type(self.target).__name__})"


def effective(serde: Any) -> Any:
    """The serde that actually runs: a placeholder's current target, else `serde` itself."""
    return serde.target if isinstance(serde, DefaultSerde) else serde


def same_serde(a: Any, b: Any) -> bool:
    """Do `a` and `b` write the same bytes? Same object, two placeholders of one part, or two
    instances of one serde class with equal settings (two `StringSerde()` are the same)."""
    if a is b:
        return True
    if a is None or b is None:
        return False
    if isinstance(a, DefaultSerde):
        return a.same_as(b)
    if isinstance(b, DefaultSerde):
        return False
    return type(a) is type(b) and _settings(a) == _settings(b)


def _settings(serde: Any) -> dict[str, Any]:
    """A serde's attributes, from its __dict__ and its classes' __slots__."""
    found = dict(getattr(serde, "__dict__", {}))
    for cls in type(serde).__mro__:
        slots = getattr(cls, "__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            found[slot] = getattr(serde, slot, None)
    return found


class SerdeDefaults:
    """One topology's placeholders, and what they were last bound to."""

    def __init__(self) -> None:
        self._placeholders: list[DefaultSerde] = []
        self._bound: tuple[Any, Any] | None = None

    def key(self, where: str, fallback: Serde | None = None, warn: bool = False) -> DefaultSerde:
        return self.adopt(DefaultSerde("key", fallback or JsonSerde(), where, warn))

    def value(self, where: str, fallback: Serde | None = None,
              warn: bool = False) -> DefaultSerde:
        return self.adopt(DefaultSerde("value", fallback or JsonSerde(), where, warn))

    def raw(self, part: Part, where: str, warn: bool = False) -> DefaultSerde:
        """A topic you name without a serde: raw bytes unless a default is set."""
        return self.adopt(DefaultSerde(part, BytesSerde(), where, warn))

    def adopt(self, serde: Any) -> Any:
        """Register `serde` if it is a placeholder made elsewhere (kv_store(...) of the
        Processor API); bind it at once when the topology is already bound."""
        if isinstance(serde, DefaultSerde) and serde not in self._placeholders:
            self._placeholders.append(serde)
            if self._bound is not None:
                self._bind_one(serde, *self._bound)
        return serde

    def bind(self, key_default: Any, value_default: Any) -> None:
        """Point every placeholder at the app's defaults (names, classes or instances; None:
        the place's fallback). A topology serves one set of defaults: a second App or driver
        with other defaults must build its own topology."""
        key = None if key_default is None else resolve(key_default)
        value = None if value_default is None else resolve(value_default)
        if self._bound is not None:
            old_key, old_value = self._bound
            if not (_same_default(old_key, key) and _same_default(old_value, value)):
                raise ConfigError(
                    "this topology already runs with other default serdes "
                    f"(default_key_serde={old_key!r}, default_value_serde={old_value!r}); "
                    "build one topology per set of defaults")
            return
        self._bound = (key, value)
        for placeholder in self._placeholders:
            self._bind_one(placeholder, key, value)

    @staticmethod
    def _bind_one(placeholder: DefaultSerde, key: Serde | None, value: Serde | None) -> None:
        target = key if placeholder.part == "key" else value
        if target is None:
            placeholder._use(placeholder.fallback)
            if placeholder.warn:
                log.warning("event=serde_fallback where=%s part=%s serde=%s hint=\"give a %s_serde "
                            "there or set default_%s_serde\"", placeholder.where,
                            placeholder.part, type(placeholder.fallback).__name__,
                            placeholder.part, placeholder.part)
        else:
            placeholder._use(target)


def _same_default(a: Serde | None, b: Serde | None) -> bool:
    return (a is None and b is None) or same_serde(a, b)
