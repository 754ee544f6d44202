"""``archkit compare``, ``export`` and ``devices``; shell completion; options that would do
nothing; spec names that work from any folder."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archkit import reference as paper

ROOT = Path(__file__).resolve().parents[2]
ARCHKIT = [sys.executable, "-m", "archkit.cli"]


def run(*args: str, rc: int | None = 0, cwd: Path = ROOT, env: dict | None = None,
        timeout: int = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*ARCHKIT, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)
    if rc is not None:
        assert proc.returncode == rc, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def _tfslim(rows, width: float, resolution: int):
    return next(r for r in rows if (r.width, r.resolution) == (width, resolution))


# --------------------------------------------------------------------------- compare


def test_compare_totals_and_differences_match_tf_slims_published_table():
    doc = json.loads(run("compare", "mobilenetv2", "mobilenetv1",
                         "mobilenetv2@width=0.5,resolution=160", "--convention", "tf-slim",
                         "--format", "json").stdout)
    v2, v1, small = doc["totals"]
    assert doc["baseline"] == "mobilenetv2"
    # TF-slim's README: MobileNetV2 truncates MACs to millions, MobileNetV1's table rounds them.
    assert v2["madds"] // 10**6 == _tfslim(paper.TFSLIM_MOBILENET_V2, 1.0, 224).macs_m
    assert round(v1["madds"] / 1e6) == _tfslim(paper.TFSLIM_MOBILENET_V1, 1.0, 224).macs_m
    assert small["madds"] // 10**6 == _tfslim(paper.TFSLIM_MOBILENET_V2, 0.5, 160).macs_m
    assert (small["width"], small["resolution"]) == (0.5, 160)
    assert round(v2["params"] / 1e6, 2) == _tfslim(paper.TFSLIM_MOBILENET_V2, 1.0, 224).params_m
    for entry in doc["totals"]:
        assert entry["madds_difference"] == entry["madds"] - v2["madds"]
        assert entry["params_difference"] == entry["params"] - v2["params"]
    # Per stage: each spec's stages add up to its total; rows it lacks are null.
    for i, total in enumerate(doc["totals"]):
        stages = [s["specs"][i] for s in doc["stages"] if s["specs"][i]["madds"] is not None]
        assert sum(s["madds"] for s in stages) == total["madds"]
        assert sum(s["params"] for s in stages) == total["params"]
    assert len(doc["stages"]) == 12  # MobileNetV2 has 12 rows, MobileNetV1 9
    assert doc["stages"][11]["specs"][1]["op"] is None


def test_compare_csv_and_table_show_the_same_numbers():
    out = run("compare", "mobilenetv2", "shufflenet_g3", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    totals = [r for r in rows if r["stage"] == "total"]
    assert [r["spec"] for r in totals] == ["mobilenetv2", "shufflenet_g3"]
    stages = [r for r in rows if r["stage"] != "total" and r["spec"] == "shufflenet_g3"]
    assert sum(int(r["madds"]) for r in stages if r["madds"]) == int(totals[1]["madds"])
    table = run("compare", "mobilenetv2", "shufflenet_g3").stdout
    assert "Per stage" in table and "shufflenet_g3" in table
    assert f"{int(totals[1]['params']):,}" not in table or "params" in table


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["mobilenetv2"], "at least two specs"),
        (["mobilenetv2", "mobilenetv2@depth=2"], "key=value pairs of width"),
        (["mobilenetv2", "mobilenetv2@width=wide"], "width must be a number"),
        (["mobilenetv2", "nope"], "no spec file or shipped spec named 'nope'"),
    ],
)
def test_compare_bad_input_exits_2(args, needle):
    assert needle in run("compare", *args, rc=2).stderr


# --------------------------------------------------------------------------- export


def test_export_writes_an_onnx_file_that_onnxruntime_runs_as_pytorch_does(tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from archkit import apply_overrides, load_spec
    from archkit.build import build_model

    out = tmp_path / "sub" / "v2.onnx"
    proc = run("export", "mobilenetv2", "--width", "0.35", "--resolution", "96", "-o", str(out),
               "--seed", "3", cwd=tmp_path)
    assert "onnxruntime matches PyTorch" in proc.stdout
    assert proc.stderr == ""  # no exporter notices, no FutureWarning
    # The same seed builds the same weights here; onnxruntime must compute what PyTorch does.
    spec = apply_overrides(load_spec(ROOT / "specs/mobilenetv2.yaml"), width=0.35,
                           resolution=96)
    torch.manual_seed(3)
    model = build_model(spec).eval()
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    (got,) = session.run(None, {"input": x.numpy()})
    assert got.shape == (1, 1000)
    # Freshly initialized logits are small, but not zero: compare relative to their size.
    scale = abs(expected).max()
    assert scale > 0 and len(set(expected.ravel().tolist())) > 900
    assert abs(got - expected).max() <= 1e-4 * scale
    assert got.argmax() == expected.argmax()


def test_export_bad_input(tmp_path: Path):
    assert "must end in .onnx" in run("export", "mobilenetv2", "-o", "x.txt", rc=2,
                                      cwd=tmp_path).stderr
    assert "--expansion" in run("export", "mobilenetv1", "--expansion", "4", rc=2,
                                cwd=tmp_path).stderr
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- devices


def test_devices_lists_every_shipped_profile_and_how_it_is_reached(tmp_path: Path):
    env = {**os.environ, "ARCHKIT_DEVICE_HOST": "10.1.2.3"}
    env.pop("ARCHKIT_DEVICES_DIR", None)
    docs = json.loads(run("devices", "--format", "json", cwd=tmp_path, env=env).stdout)
    shipped = sorted(p.stem for p in (ROOT / "archkit/data/devices").glob("*.yaml"))
    assert [d["name"] for d in docs] == shipped
    by_name = {d["name"]: d for d in docs}
    assert by_name["rpi4"]["connection"] == "rpc 10.1.2.3:9090"
    env.pop("ARCHKIT_DEVICE_HOST")
    docs = json.loads(run("devices", "--format", "json", cwd=tmp_path, env=env).stdout)
    assert {d["name"]: d["connection"] for d in docs}["host"] == "local"
    table = run("devices", cwd=tmp_path, env=env).stdout
    for name in shipped:
        assert name in table
    assert "give --host" in table  # a board without a host says how to give one


# --------------------------------------------------------------------------- completion


def test_shell_completion_prints_a_script_and_completes_commands():
    env = {**os.environ, "_ARCHKIT_COMPLETE": "bash_source"}
    script = run(env=env).stdout
    assert "_archkit_completion()" in script and "complete " in script
    env = {**os.environ, "_ARCHKIT_COMPLETE": "bash_complete", "COMP_WORDS": "archkit co",
           "COMP_CWORD": "1"}
    words = run(env=env).stdout.split()
    assert "plain,compare" in words


# --------------------------------------------------------------------------- do-nothing options


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tune", "5"], "--tune only applies with --device"),
        (["--host", "10.0.0.1", "--port", "9090"], "--host, --port only apply with --device"),
        (["--no-baselines"], "--no-baselines only applies"),
    ],
)
def test_device_options_without_a_device_are_usage_errors(args, needle):
    assert needle in run("profile", "mobilenetv2", *args, rc=2).stderr


def test_expansion_on_a_network_without_bottlenecks():
    proc = run("profile", "mobilenetv1", "--expansion", "4", rc=2)
    assert "--expansion: this network has no bottleneck" in proc.stderr
    # Among several specs, the others still get it: a warning names the one it skips.
    proc = run("profile", "mobilenetv1", "mobilenetv2", "--expansion", "4", "--format", "json")
    assert "warning" in proc.stderr and "mobilenetv1" in proc.stderr
    v1, v2 = json.loads(proc.stdout)
    assert round(v1["totals"]["madds"] / 1e6) == _tfslim(paper.TFSLIM_MOBILENET_V1, 1.0, 224).macs_m


# --------------------------------------------------------------------------- profile output


def test_json_is_a_list_and_per_layer_rows_carry_bytes_of_the_dtype():
    (doc,) = json.loads(run("profile", "shufflenet_g3", "--per-layer", "--dtype", "fp16",
                            "--format", "json").stdout)
    for layer in doc["layers"]:
        assert layer["live_bytes"] == 2 * layer["live_elements"]
        assert layer["output_bytes"] == 2 * layer["output_elements"]
    assert max(la["live_bytes"] for la in doc["layers"]) == doc["totals"]["peak_activation_bytes"]
    out = run("profile", "shufflenet_g3", "--per-layer", "--dtype", "int8", "--format",
              "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["dtype"] for r in rows} == {"int8"}
    assert all(r["live_bytes"] == r["live_elements"] for r in rows)


def test_shipped_names_work_from_any_folder(tmp_path: Path):
    (doc,) = json.loads(run("profile", "mobilenetv2", "--format", "json", cwd=tmp_path).stdout)
    assert doc["totals"]["madds"] // 10**6 == 300  # TF-slim's MobileNetV2 1.0/224: 300M MACs
    proc = run("profile", "mobilenet", rc=2, cwd=tmp_path)
    assert "shipped: " in proc.stderr and "mobilenetv2" in proc.stderr


def test_profile_table_path_imports_no_pandas():
    code = (
        "import sys\n"
        "from archkit.cli import main\n"
        "rc = main(['profile', 'mobilenetv2', '--per-layer'])\n"
        "print(rc, [m for m in ('pandas', 'torch', 'numpy') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip().splitlines()[-1] == "0 []"


def test_a_missing_optional_dependency_names_the_extra(tmp_path: Path):
    # A module that raises ModuleNotFoundError on import stands in for an uninstalled optuna.
    cases = [
        ("optuna", ["search", "--budget-madds", "150M", "--trials", "1"], "archkit[search]"),
        ("torch", ["export", "mobilenetv2", "-o", str(tmp_path / "m.onnx")], "archkit[torch]"),
        ("plotly", ["plot", "--no-png", "-o", str(tmp_path / "p")], "archkit[report]"),
    ]
    for module, args, extra in cases:
        blocker = tmp_path / f"block_{module}"
        blocker.mkdir()
        (blocker / "sitecustomize.py").write_text(
            "import sys\n"
            "class _Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] == {module!r}:\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, _Block())\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}
        proc = run(*args, rc=2, cwd=tmp_path, env=env)
        assert f"pip install '{extra}'" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
