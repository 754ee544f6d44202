"""Specs and rows hash once per object, and behave as the dataclasses' own hash would."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys

from archkit.spec import apply_overrides, load_spec


def _field_hash(obj) -> int:
    """What the dataclass-generated ``__hash__`` computes: the compared fields as a tuple."""
    return hash(tuple(getattr(obj, f.name) for f in dataclasses.fields(obj) if f.compare))


def test_hash_is_the_hash_of_the_compared_fields():
    from archkit.spec._model import Row, Spec, _HashOnce

    assert Spec.__hash__ is Row.__hash__ is _HashOnce.__hash__  # not dataclass's own
    spec = load_spec("specs/mobilenetv2.yaml")
    assert hash(spec) == _field_hash(spec)
    assert spec.__dict__["_hash"] == _field_hash(spec)  # computed once, kept
    assert all(row.__dict__["_hash"] == _field_hash(row) for row in spec.rows)
    assert all(hash(row) == _field_hash(row) for row in spec.rows)
    again = load_spec("specs/mobilenetv2.yaml")  # equal objects, made apart: equal hashes
    assert again == spec and again is not spec and hash(again) == hash(spec)
    narrow = apply_overrides(spec, width=0.5)
    assert narrow != spec and hash(narrow) == _field_hash(narrow)
    assert {spec: 1, again: 2, narrow: 3} == {spec: 2, narrow: 3}
    # A field outside the comparison (description) changes neither equality nor hash.
    described = dataclasses.replace(spec, description="other words")
    assert described == spec and hash(described) == hash(spec)


def test_a_cached_hash_does_not_travel_to_another_process():
    """String hashes differ between processes: a pickled (or copied) spec hashes anew."""
    spec = load_spec("specs/mobilenetv2.yaml")
    hash(spec)
    for clone in (pickle.loads(pickle.dumps(spec)), copy.deepcopy(spec), copy.copy(spec)):
        assert "_hash" not in clone.__dict__ or clone.__dict__["_hash"] == hash(spec)
        assert clone == spec and hash(clone) == hash(spec)
    assert "_hash" not in pickle.loads(pickle.dumps(spec)).__dict__
    # In a fresh interpreter (another PYTHONHASHSEED) the unpickled spec is a working key.
    code = ("import pickle, sys; from archkit.spec import load_spec; "
            "s = pickle.loads(sys.stdin.buffer.read()); "
            "assert {load_spec('specs/mobilenetv2.yaml'): 1}[s] == 1; "
            "assert all({r: 1}[r] for r in s.rows); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(spec),
                         capture_output=True, check=True, env={"PYTHONHASHSEED": "12345",
                                                              "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == b"ok"
