"""Float32 vs W8A8 vs W4A16 on this machine: tokens/s at 1, 8 and 16 streams, and memory.

``python -m bench.quantization`` measures each variant in its own subprocess (one vLLM engine
at a time, offline API, engine in-process, eager or with ``--compile`` torch.compile, every
core bound, greedy, ``ignore_eos``) and writes
``bench/results/<date>-<cores>cpu-[<tag>-]quantization.{json,md}``. The llama.cpp row is the
single-stream figure measured on this box earlier (platform notes), for comparison only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "llm-gateway" / "models"
BASE = "smollm2-135m-instruct"
VARIANTS = {  # name -> (folder, serving dtype)
    "float32": (CACHE / BASE, "float32"),
    "w8a8-int8": (CACHE / f"{BASE}-w8a8", "float32"),
    "w4a16-awq": (CACHE / f"{BASE}-w4a16", "bfloat16"),
}
LLAMA_CPP = {"single_stream_tok_s": "65-90", "8_streams_tok_s": "62-81"}
PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."


def _measure(llm: Any, streams: int, tokens: int) -> dict[str, float]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
    prompts = [f"{PROMPT} (Story {i + 1}.)" for i in range(streams)]
    llm.generate(prompts, params, use_tqdm=False)  # warm-up at this batch size
    started = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - started
    produced = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"streams": streams, "tokens": produced, "seconds": round(wall, 2),
            "tok_s": round(produced / wall, 1)}


def _folder_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 1e6, 1)


def measure_one(folder: Path, dtype: str, tokens: int, compiled: bool) -> dict[str, Any]:
    """Runs in a fresh subprocess: load once, then 1, 8 and 16 concurrent streams."""
    from vllm import LLM

    from engine.config import CpuConfig

    os.environ.update(CpuConfig(kv_cache_gib=1).environment())
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # one process: its max RSS is the engine's
    from engine.quantization.capability import detect_hardware, scheme_of, serving_dtype

    dtype = serving_dtype(scheme_of(folder), dtype, detect_hardware())  # W8A8 on AMX: bf16
    started = time.perf_counter()
    dtype_arg: Any = dtype
    llm = LLM(model=str(folder), dtype=dtype_arg, enforce_eager=not compiled,
              max_model_len=2048, max_num_seqs=16, seed=0)
    load_s = time.perf_counter() - started
    levels = [_measure(llm, n, tokens) for n in (1, 8, 16)]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"dtype": dtype, "weights_mb": _folder_mb(folder), "load_s": round(load_s, 1),
            "max_rss_mb": round(rss_mb), "levels": levels}


def _run_child(name: str, tokens: int, compiled: bool) -> dict[str, Any]:
    from engine.quantization.capability import detect_hardware, scheme_of, servable

    folder, dtype = VARIANTS[name]
    reason = servable(scheme_of(folder), dtype, detect_hardware())
    if reason is not None:
        return {"skipped": reason}
    cmd = [sys.executable, "-m", "bench.quantization", "--child", name, "--tokens", str(tokens)]
    cmd += ["--compile"] if compiled else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} ({folder}) failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _machine() -> dict[str, Any]:
    flags: list[str] = []
    model = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            present = set(line.split(":", 1)[1].split())
            flags = [f for f in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
                     if f in present]
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "cpu_flags": flags,
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def markdown(doc: dict[str, Any]) -> str:
    rows = ["| variant | serving dtype | weights MB | max RSS MB | tok/s 1 stream | "
            "tok/s 8 streams | tok/s 16 streams | vs float32 (1 / 16) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = {lv["streams"]: lv["tok_s"] for lv in doc["variants"]["float32"]["levels"]}
    for name, res in doc["variants"].items():
        if "skipped" in res:
            rows.append(f"| {name} | not servable here: {res['skipped']} | | | | | | |")
            continue
        tok = {lv["streams"]: lv["tok_s"] for lv in res["levels"]}
        rows.append(f"| {name} | {res['dtype']} | {res['weights_mb']} | {res['max_rss_mb']} | "
                    f"{tok[1]} | {tok[8]} | {tok[16]} | "
                    f"{tok[1] / base[1]:.2f}x / {tok[16] / base[16]:.2f}x |")
    peer = LLAMA_CPP
    rows.append(f"| llama.cpp Q4_1 (platform notes) | - | - | - | {peer['single_stream_tok_s']}"
                f" | {peer['8_streams_tok_s']} (total) | - | - |")
    m = doc["machine"]
    note = (f"{m['cores']} cores of {m['cpu']} ({', '.join(m['cpu_flags'])}), {doc['date']}; "
            f"vLLM offline API, {doc.get('mode', 'eager')}, {doc['tokens']} tokens per stream, "
            f"greedy, ignore_eos; "
            f"load average at start {m['load_average_start']}. {doc['note']}")
    return "\n".join(rows) + "\n\n" + note + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--child", choices=sorted(VARIANTS))
    parser.add_argument("--note", default="")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile mode instead of eager (slower start)")
    parser.add_argument("--tag", default="", help="added to the result file names")
    args = parser.parse_args(argv)
    if args.child:
        folder, dtype = VARIANTS[args.child]
        print(json.dumps(measure_one(folder, dtype, args.tokens, args.compile)), flush=True)
        return 0
    mode = "torch.compile" if args.compile else "eager"
    doc = {"date": dt.date.today().isoformat(), "machine": _machine(), "tokens": args.tokens,
           "mode": mode, "note": args.note, "llama_cpp_reference": LLAMA_CPP,
           "variants": {name: _run_child(name, args.tokens, args.compile) for name in VARIANTS}}
    tag = f"{args.tag}-" if args.tag else ""
    name = f"{doc['date']}-{doc['machine']['cores']}cpu-{tag}quantization"
    stem = REPO / "bench" / "results" / name
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
