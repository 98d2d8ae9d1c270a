"""Joins the outputs of benches/side_by_side.sh into one markdown table with ratios.

Ratio = how many times faster detox is (throughput detox / PyTorch, or seconds PyTorch / detox);
memory ratio = detox / PyTorch peak RSS. Also prints the CPU model, its widest vector ISA, the
thread count and the date, which every number in BENCHMARKS.md carries.
"""
import argparse
import datetime
import json
import os
import platform

TARGETS = {
    "t5-greedy": 1.5, "t5-sample": 1.5, "t5-beam4": 1.5, "t5-encoder": 1.0, "roberta-16x256": 1.0,
    "sft-lora": 1.0, "sft-full": 1.0, "ppo-step": 1.2, "lab-iteration": 3.0,
}


def cpu_info():
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if "avx512f" in flags:
        isa = "AVX-512" + (" + AMX" if "amx_tile" in flags else "")
    elif "avx2" in flags:
        isa = "AVX2 + FMA" if "fma" in flags else "AVX2"
    else:
        isa = "SSE/other"
    return model, isa


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    detox = {(r["name"], r["batch"]): r for r in read_jsonl(os.path.join(a.dir, "detox.jsonl"))}
    torch_rows = {(r["name"], r["batch"]): r for r in read_jsonl(os.path.join(a.dir, "torch.jsonl"))}
    model, isa = cpu_info()
    print(f"CPU: {model} ({isa}), {os.cpu_count()} logical CPUs, {a.threads} threads; "
          f"detox --device {a.device}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print()
    print("| benchmark | batch | PyTorch | detox | unit | detox speed-up | target | peak RSS detox / PyTorch, MB |")
    print("|---|---|---|---|---|---|---|---|")
    for key in sorted(set(detox) | set(torch_rows), key=lambda k: (k[0], k[1])):
        d, t = detox.get(key), torch_rows.get(key)
        name, batch = key
        unit = (d or t)["unit"]
        dv = f"{d['throughput']:.2f}" if d else "-"
        tv = f"{t['throughput']:.2f}" if t else "-"
        ratio = f"{d['throughput'] / t['throughput']:.2f}x" if d and t else "-"
        target = TARGETS.get(name)
        ok = ""
        if target and d and t:
            ok = " ✔" if d["throughput"] / t["throughput"] >= target else " ✘"
        mem = "-"
        if d and t and d.get("peak_rss_mb") and t.get("peak_rss_mb"):
            mem = f"{d['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f}"
        print(f"| {name} | {batch} | {tv} | {dv} | {unit} | {ratio} | "
              f"{'>= %.1fx' % target if target else ''}{ok} | {mem} |")
    dp = read_jsonl(os.path.join(a.dir, "detox_ppo.jsonl"))
    tp_path = os.path.join(a.dir, "torch_ppo.json")
    if dp and os.path.exists(tp_path):
        with open(tp_path) as f:
            tp = json.load(f)
        d = dp[-1]
        d_step = min(s["seconds"] for s in d["steps"][1:] or d["steps"])
        t_step = min(s["seconds"] for s in tp["steps"][1:] or tp["steps"])
        rows = [("ppo-step", t_step, d_step, d.get("peak_rss_mb_after_steps"), tp.get("peak_rss_mb_after_steps"))]
        if "iteration" in d and "iteration" in tp:
            rows.append(("lab-iteration", tp["iteration"]["seconds"], d["iteration"]["seconds"],
                         d.get("peak_rss_mb"), tp.get("peak_rss_mb")))
            for part in ("generate", "reward", "step"):
                rows.append((f"  {part}", tp["iteration"][part], d["iteration"][part], None, None))
        for name, ts, ds, dm, tm in rows:
            target = TARGETS.get(name)
            ok = (" ✔" if ts / ds >= target else " ✘") if target else ""
            mem = f"{dm:.0f} / {tm:.0f}" if dm and tm else "-"
            print(f"| {name} | 16 | {ts:.2f} | {ds:.2f} | s | {ts / ds:.2f}x | "
                  f"{'>= %.1fx' % target if target else ''}{ok} | {mem} |")


if __name__ == "__main__":
    main()
