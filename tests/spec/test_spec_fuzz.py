"""Fuzzing the spec boundary: thousands of broken specs must fail cleanly.

Each fuzz test runs its hypothesis examples, classifies every outcome and prints the counts:

- ``rejected``: ``SpecError`` (the only acceptable outcome for a broken spec);
- ``accepted``: a broken spec came back as a ``Spec`` (must be 0);
- ``crash``: any other exception, i.e. a traceback for the user (must be 0);
- ``hang``: one parse took longer than ``HANG_SECONDS`` (must be 0).

Mutations are invalid by construction (see ``_row_mutation`` and friends), so "accepted" is a
bug, not a judgement call. Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import collections
import contextlib
import math
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SHIPPED, SPECS_DIR, DataChooser, dump_yaml, random_spec_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archkit.errors import SpecError
from archkit.ops import OPERATORS
from archkit.spec import load_spec, parse_spec

HANG_SECONDS = 3.0
SOURCE = "fuzz.yaml"
SHIPPED_TEXTS = {name: (SPECS_DIR / f"{name}.yaml").read_text() for name in SHIPPED}
SHIPPED_DICTS = {name: yaml.safe_load(text) for name, text in SHIPPED_TEXTS.items()}


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise _Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Outcomes:
    """Counts of what happened to each broken input, with a few examples of each failure."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)
        self.slowest = 0.0

    def run(
        self,
        parse: Callable[[], Any],
        text: str,
        *,
        must_reject: bool = True,
        check: Callable[[SpecError], str | None] | None = None,
    ) -> None:
        start = time.perf_counter()
        try:
            with _time_limit(HANG_SECONDS):
                spec = parse()
        except _Hang:
            self._bad("hang", text, f"over {HANG_SECONDS}s")
            return
        except SpecError as exc:
            self.counts["rejected"] += 1
            problem = check(exc) if check else None
            if problem:
                self._bad("bad message", text, f"{problem}: {exc}")
            if len(str(exc)) > 20_000:
                self._bad("huge message", text, f"{len(str(exc))} characters")
        except Exception as exc:  # noqa: BLE001 - that is the point: count every traceback
            self._bad("crash", text, f"{type(exc).__name__}: {exc}"[:300])
        else:
            if must_reject:
                self._bad("accepted", text, f"accepted as {spec.name!r}")
            else:
                self.counts["accepted (valid)"] += 1
        finally:
            self.slowest = max(self.slowest, time.perf_counter() - start)

    def _bad(self, kind: str, text: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < 3:
            self.examples[kind].append(f"{detail}\n--- input ---\n{text[:600]}")

    def report(self) -> None:
        print(f"\n[{self.name}] {dict(self.counts)}; slowest parse {self.slowest * 1000:.1f} ms")
        for kind, examples in self.examples.items():
            for example in examples:
                print(f"  {kind}: {example}")
        failures = {
            k: v
            for k, v in self.counts.items()
            if k in ("accepted", "crash", "hang", "bad message", "huge message")
        }
        assert not failures, f"{self.name}: {failures}; first: " + "; ".join(
            self.examples[k][0].splitlines()[0] for k in failures
        )


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# --------------------------------------------------------------------------- invalid values

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
# Unknown keys: no YAML line-break characters (U+0085 in a plain key folds to a space on the way
# through the dumper, and the test could no longer find the key in the message).
_KEY_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12)
_NUMBERS_OUT_OF_ANY_RANGE = (-1, -(10**6), 10**9, 10**30)


def _invalid_values(rule, draw: Callable[[Any], Any]) -> list[tuple[str, Any]]:
    """Values that break ``rule`` (a FieldRule) by construction: wrong types, out of range, not a
    choice, NaN/inf, huge."""
    kind = rule.kind
    out: list[tuple[str, Any]] = [("list", [1, 2]), ("mapping", {"a": 1})]
    word = draw(_TEXT.filter(lambda s: s != "num_classes"))
    if kind is bool:
        out += [
            ("int for bool", draw(st.integers(-5, 5))),
            ("string for bool", word or "x"),
            ("float for bool", 0.5),
        ]
    elif kind is str:
        out += [("int for string", 3), ("bool for string", True), ("float for string", 1.5)]
        if rule.choices:
            out.append(("not a choice", "zz" + word))
    else:
        out += [
            ("string for number", word),
            ("bool for number", draw(st.booleans())),
            ("nan", math.nan),
            ("inf", math.inf),
            ("-inf", -math.inf),
        ]
        if kind is int:
            out.append(("fraction for int", draw(st.integers(-100, 100)) + 0.5))
        if rule.choices:
            out.append(
                ("not a choice", draw(st.integers(-50, 50).filter(lambda v: v not in rule.choices)))
            )
        if rule.minimum is not None:
            low = (
                rule.minimum
                if rule.exclusive_minimum
                else rule.minimum - (1 if kind is int else 0.5)
            )
            out.append(("below minimum", low))
            out.append(("negative", -abs(draw(st.integers(1, 10**6)))))
            if rule.minimum > 0 or rule.exclusive_minimum:
                out.append(("zero", 0))
        if rule.maximum is not None:
            out.append(
                ("above maximum", (int(rule.maximum) + 1) if kind is int else rule.maximum + 0.5)
            )
            out.append(("huge", 10 ** draw(st.integers(7, 40))))
            out.append(("astronomic", 10**400))
    return out


def _valid_spec_dict(data) -> dict[str, Any]:
    if data.draw(st.booleans()):
        name = data.draw(st.sampled_from(SHIPPED))
        return yaml.safe_load(SHIPPED_TEXTS[name])  # a fresh copy
    # A random spec archkit accepts.
    from conftest import try_parse

    for _ in range(20):
        spec_dict = random_spec_dict(DataChooser(data))
        if try_parse(spec_dict)[0] is not None:
            return spec_dict
    return yaml.safe_load(SHIPPED_TEXTS[SHIPPED[0]])


# --------------------------------------------------------------------------- mutations


def _row_mutation(data, spec: dict[str, Any]):
    """Break one field of one row; returns (row index, field) the error must name."""
    rows = spec["layers"]
    index = data.draw(st.integers(0, len(rows) - 1))
    row = rows[index]
    op = OPERATORS[row["op"]]
    kind = data.draw(
        st.sampled_from(
            ("field", "field", "field", "unknown key", "operator", "not a mapping", "op missing")
        )
    )
    if kind == "field" and op.fields:
        rule = data.draw(st.sampled_from(op.fields))
        label, value = data.draw(st.sampled_from(_invalid_values(rule, data.draw)))
        row[rule.key] = value
        return index, rule.key, f"{rule.key}: {label}"
    if kind == "unknown key" or kind == "field":
        key = "zz_" + data.draw(_KEY_TEXT)
        row[key] = data.draw(st.integers())
        return index, key, "unknown row key"
    if kind == "operator":
        row["op"] = data.draw(
            st.one_of(
                _TEXT.filter(lambda s: s not in OPERATORS),
                st.integers(),
                st.just(None),
                st.lists(st.integers(), max_size=2),
            )
        )
        return index, "op", "unknown operator"
    if kind == "op missing":
        del row["op"]
        return index, "op", "op missing"
    rows[index] = data.draw(
        st.one_of(st.integers(), _TEXT, st.lists(st.integers(), max_size=3), st.just(None))
    )
    return index, None, "row not a mapping"


_TOP_INVALID: dict[tuple[str, ...], list[Any]] = {
    ("input", "resolution"): [0, -5, 4097, 10**12, 1.5, "224", True, [224], math.nan, None],
    ("input", "channels"): [0, -1, 1.5, "3", True, [3], 10**9],
    ("num_classes",): [0, -1, 1.5, "many", True, 10**9, [10]],
    ("width",): [0, -0.5, math.nan, math.inf, "1.0", True, [1.0], 100, 10**400],
    ("channel_rounding", "divisor"): [0, -8, 1.5, "8", True, 10**6],
    ("channel_rounding", "min_ratio"): [-0.1, 1.5, math.nan, "0.9", True],
    ("name",): ["", "   ", 5, ["a"], True, None],
    ("description",): [5, ["a"], True, {"a": 1}],
    ("input",): ["224", [224], 5],
    ("channel_rounding",): ["8", [8], 5],
    ("layers",): [[], "conv", {}, 5, None, [{"op": "dropout"}] * 300],
}


def _top_mutation(data, spec: dict[str, Any]):
    kind = data.draw(st.sampled_from(("value", "value", "unknown key", "unknown nested key")))
    if kind == "value":
        path = data.draw(st.sampled_from(sorted(_TOP_INVALID)))
        value = data.draw(st.sampled_from(_TOP_INVALID[path]))
        target = spec
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = value
        return None, path[-1], f"top {'.'.join(path)}"
    key = "zz_" + data.draw(_KEY_TEXT)
    if kind == "unknown key":
        spec[key] = 1
        return None, key, "unknown top key"
    section = data.draw(st.sampled_from(("input", "channel_rounding")))
    if not isinstance(spec.get(section), dict):
        spec[section] = {}
    spec[section][key] = 1
    return None, key, f"unknown {section} key"


def _network_mutation(data, spec: dict[str, Any]):
    """Rows that are each valid alone but do not fit the tensor they receive."""
    rows = spec["layers"]
    ops = [r.get("op") for r in rows]
    choices = ["fc first", "groups", "kernel on 1x1"]
    if "fc" in ops:
        choices.append("after fc")
    kind = data.draw(st.sampled_from(choices))
    channels = spec.get("input", {}).get("channels", 3)
    if kind == "fc first":  # the input map is larger than 1x1
        rows.insert(0, {"op": "fc"})
        return 0, "op", "fc on a feature map"
    if kind == "groups":  # groups > input channels cannot divide them
        groups = channels + data.draw(st.integers(1, 5))
        rows.insert(0, {"op": "conv2d", "c": groups * 2, "groups": groups, "width_scaling": "none"})
        return 0, "groups", "groups do not divide"
    if kind == "kernel on 1x1":
        at = ops.index("fc") if "fc" in ops else len(rows)
        kernel = data.draw(st.sampled_from((2, 4, 6, 8)))
        rows.insert(at, {"op": "avgpool"})
        rows.insert(at + 1, {"op": "conv2d", "c": 8, "kernel": kernel})
        return at + 1, "kernel", "spatial size reaches zero"
    rows.append({"op": "conv2d", "c": 8, "kernel": 1})
    return len(rows) - 1, "op", "conv after fc"


def _message_check(row: int | None, field: str | None) -> Callable[[SpecError], str | None]:
    def check(exc: SpecError) -> str | None:
        message = str(exc)
        if not message.startswith(SOURCE):
            return "message does not name the file"
        if row is not None and f"row {row}" not in message:
            return f"message does not name row {row}"
        # A long key may be shortened in the message ("zz_abc...xyz"): its start must be there.
        if field is not None and not any(
            form in message for form in (field, repr(field), field[:10], repr(field)[:10])
        ):
            return f"message does not name the field {field!r}"
        return None

    return check


def test_fuzz_mutated_specs():
    outcomes = Outcomes("mutated valid specs")
    mutations: collections.Counter[str] = collections.Counter()

    @fuzz_settings(2000)
    @given(data=st.data())
    def run(data):
        spec = _valid_spec_dict(data)
        where = data.draw(st.sampled_from(("row", "row", "top", "network")))
        mutate = {"row": _row_mutation, "top": _top_mutation, "network": _network_mutation}
        row, field, label = mutate[where](data, spec)
        mutations[label.split(":")[0]] += 1
        try:
            text = dump_yaml(spec)
        except yaml.YAMLError:
            return
        outcomes.run(
            lambda: parse_spec(text, source=SOURCE),
            f"[{label}]\n{text}",
            check=_message_check(row, field),
        )

    run()
    print(f"\nmutations applied: {dict(mutations)}")
    outcomes.report()
    assert outcomes.counts["rejected"] >= 1500


@pytest.mark.parametrize("name", SHIPPED)
def test_fuzz_truncated_shipped_specs(name):
    """Prefixes of every shipped spec: rejected cleanly, or (a prefix that ends between rows)
    accepted as a genuinely valid, smaller network. A cut inside a ``{...}`` row must be
    rejected."""
    from archkit.cost import count

    outcomes = Outcomes(f"truncated {name}")
    text = SHIPPED_TEXTS[name]
    # Every position of a short spec; about 700 evenly spread cuts of a long one.
    for cut in range(0, len(text), max(1, len(text) // 700)):
        prefix = text[:cut]
        last_line = prefix.rsplit("\n", 1)[-1].split("#", 1)[0]
        inside_row = last_line.count("{") > last_line.count("}")
        outcomes.run(
            lambda prefix=prefix: count(parse_spec(prefix, source=SOURCE)),
            prefix,
            must_reject=inside_row,
            check=_message_check(None, None),
        )
    outcomes.report()


def test_fuzz_random_text_and_bytes():
    outcomes = Outcomes("random text and bytes")
    tmp = Path(tempfile.mkdtemp(prefix="archkit-fuzz-"))
    yamlish = st.text(alphabet="{}[]:,-&*!|>'\"#%@`?~ \n\tabcopnlayers0123.=<", max_size=300)

    @fuzz_settings(1500)
    @given(st.one_of(st.binary(max_size=600), st.text(max_size=300), yamlish))
    def run(blob):
        if isinstance(blob, bytes):
            path = tmp / SOURCE
            path.write_bytes(blob)
            must_reject = b"layers" not in blob
            outcomes.run(
                lambda: load_spec(path),
                repr(blob[:200]),
                must_reject=must_reject,
                check=lambda exc: (
                    None if str(exc).startswith(str(path)) else "message does not name the file"
                ),
            )
        else:
            outcomes.run(
                lambda: parse_spec(blob, source=SOURCE),
                blob,
                must_reject="layers" not in blob,
                check=_message_check(None, None),
            )

    run()
    outcomes.report()


# --------------------------------------------------------------------------- hostile YAML

CODE_TAGS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    "!!python/object/apply:os.system\n  - touch {marker}",
    "!!python/name:os.system",
    "!!python/module:os",
    '!!python/object/new:os.system ["touch {marker}"]',
    "!!python/object:archkit.spec.Spec {{name: x}}",
    '!!python/object/apply:subprocess.check_output [["touch", "{marker}"]]',
    "!!binary aGVsbG8=",
    "!!set {{a, b}}",
    "!!omap [a: 1]",
    "!custom_tag 3",
]


@pytest.mark.parametrize("tag", CODE_TAGS)
@pytest.mark.parametrize("place", ["name", "resolution", "row field", "row", "layers", "top"])
def test_yaml_tags_never_run_code(tag, place, tmp_path):
    marker = tmp_path / "pwned"
    value = tag.format(marker=marker)
    base = {
        "name": "name: {v}\nlayers: [{{op: avgpool}}]",
        "resolution": "input:\n  resolution: {v}\nlayers: [{{op: avgpool}}]",
        "row field": "layers:\n  - op: conv2d\n    c: {v}",
        "row": "layers:\n  - {v}",
        "layers": "layers: {v}",
        "top": "{v}",
    }[place]
    text = base.format(v=value)
    outcomes = Outcomes(f"tag {tag.split()[0]} at {place}")
    outcomes.run(lambda: parse_spec(text, source=SOURCE), text, check=_message_check(None, None))
    outcomes.report()
    assert not marker.exists()


@pytest.mark.parametrize("depth", [10, 100, 1_000, 10_000, 100_000])
@pytest.mark.parametrize("shape", ["list", "mapping", "row value", "block"])
def test_deep_nesting(depth, shape):
    if shape == "list":
        text = "layers: " + "[" * depth + "]" * depth
    elif shape == "mapping":
        text = "layers: " + "{a: " * depth + "1" + "}" * depth
    elif shape == "row value":
        text = "layers: [{op: conv2d, c: " + "[" * depth + "]" * depth + "}]"
    else:
        text = "layers:\n" + "".join(" " * i + "- \n" for i in range(min(depth, 2000)))
    outcomes = Outcomes(f"nesting {shape} {depth}")
    outcomes.run(
        lambda: parse_spec(text, source=SOURCE), text[:200], check=_message_check(None, None)
    )
    outcomes.report()


def _laughs(levels: int) -> str:
    """A flow list holding ``levels`` anchors, each ten aliases of the previous one: a few hundred
    bytes of YAML, 10**levels leaves when expanded."""
    parts = ["&a0 [" + ",".join(["lol"] * 10) + "]"]
    parts += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@pytest.mark.parametrize(
    "template",
    [
        "input: {{resolution: {v}}}\nlayers: [{{op: avgpool}}]",
        "name: {v}\nlayers: [{{op: avgpool}}]",
        "width: {v}\nlayers: [{{op: avgpool}}]",
        "layers: [{{op: bottleneck, c: {v}}}]",
        "layers: [{{op: conv2d, c: 8, activation: {v}}}]",
        "layers: {v}",
    ],
    ids=["resolution", "name", "width", "row c", "row activation", "layers"],
)
def test_alias_expansion_is_bounded(template):
    """Billion laughs: aliases share one object, so parsing is cheap, but an error message that
    ``repr()``s the value expands it. Six levels (a 300-byte file) must give a short message;
    nine levels would otherwise need gigabytes."""
    text = template.format(v=_laughs(6))
    assert len(text) < 500
    outcomes = Outcomes("billion laughs")
    outcomes.run(lambda: parse_spec(text, source=SOURCE), text, check=_message_check(None, None))
    outcomes.report()
    with pytest.raises(SpecError) as info:
        parse_spec(text, source=SOURCE)
    assert len(str(info.value)) < 2_000, f"error message of {len(str(info.value))} characters"


def test_aliases_of_valid_rows_are_accepted():
    """Anchors and aliases are ordinary YAML: a repeated row may be written once."""
    text = (
        "input: {resolution: 32}\n"
        "layers:\n"
        "  - &block {op: bottleneck, t: 6, c: 16, s: 1}\n"
        "  - *block\n"
        "  - {op: avgpool}\n"
        "  - {op: fc}\n"
    )
    spec = parse_spec(text, source=SOURCE)
    assert [row.op for row in spec.rows] == ["bottleneck", "bottleneck", "avgpool", "fc"]


@pytest.mark.parametrize(
    ("label", "text", "row", "field"),
    [
        # 0x... is a YAML 1.1 int; Python refuses str() of ints over 4300 decimal digits.
        (
            "hex int resolution",
            "input: {resolution: 0x" + "f" * 4000 + "}\nlayers: [{op: avgpool}]",
            None,
            "resolution",
        ),
        ("hex int channels", "layers: [{op: bottleneck, c: 0x" + "f" * 4000 + "}]", 0, "c"),
        ("hex int repeats", "layers: [{op: bottleneck, c: 8, n: 0x" + "f" * 4000 + "}]", 0, "n"),
        # math.isfinite(int) converts to float: OverflowError above ~1.8e308.
        ("huge int width", "width: " + "9" * 400 + "\nlayers: [{op: avgpool}]", None, "width"),
        ("huge int expansion", "layers: [{op: bottleneck, t: " + "9" * 400 + ", c: 8}]", 0, "t"),
        ("huge int dropout", "layers: [{op: dropout, p: " + "9" * 400 + "}]", 0, "p"),
        (
            "huge int min_ratio",
            "channel_rounding: {min_ratio: " + "9" * 400 + "}\nlayers: [{op: avgpool}]",
            None,
            "min_ratio",
        ),
        (
            "decimal int over the str limit",
            "num_classes: " + "9" * 5000 + "\nlayers: [{op: avgpool}]",
            None,
            None,
        ),
        (
            "sexagesimal",
            "input: {resolution: 1:2:3:4:5:6:7:8:9}\nlayers: [{op: avgpool}]",
            None,
            "resolution",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_huge_numbers_fail_cleanly(label, text, row, field):
    outcomes = Outcomes(label)
    outcomes.run(
        lambda: parse_spec(text, source=SOURCE), text[:120], check=_message_check(row, field)
    )
    outcomes.report()
