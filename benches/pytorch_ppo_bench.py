"""PyTorch + trl side of the PPO benchmark (the Python counterpart of `detox bench-ppo`).

Random-init FLAN-T5 (config from tests/fixtures/configs/flan-t5-{base,small}.json, no download), fp32 on
CPU, LoRA r=32 / alpha 32 on q,v (dropout 0.05) + trl's value head, adapter-disabled reference
(`ref_model=None`), `PPOConfig(learning_rate=1.41e-5, batch_size=16, mini_batch_size=4, ppo_epochs=1)`.

`step`:      seconds per trl 0.11.4 `PPOTrainer.step` alone on 16 queries of 200 random tokens (last one
             EOS) and 16 responses of 101 tokens (decoder start 0 + 100 random tokens), random scores.
             The first step includes warm-up; the mean is over the steps after it.
`iteration`: (with --iteration) one whole lab iteration: the 16 responses generated one by one with
             `ppo_trainer.generate(query, max_new_tokens=L, top_k=0, top_p=1.0, do_sample=True,
             min_length=5)`, L from `LengthSampler(100, 400)`; reward from a random-init roberta-hate-speech
             sized classifier on 16 random-token texts of the combined length (truncated to 512); then
             `step`.

Run by hand:  python benches/pytorch_ppo_bench.py --threads 2 --model base --repeats 2 --iteration \
                  --json ppo_bench_pytorch.json
"""
import argparse
import datetime
import json
import platform
import random
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import transformers
import trl
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (AutoTokenizer, PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification,
                          T5Config, T5ForConditionalGeneration)
from trl import AutoModelForSeq2SeqLMWithValueHead, PPOConfig, PPOTrainer
from trl.core import LengthSampler

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "fixtures" / "configs"
SHARED_T5_TOKENIZER = ROOT.parent / "shared" / "tokenizers" / "t5"
TIMING_KEYS = ("time/ppo/total", "time/ppo/forward_pass", "time/ppo/optimize_step")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_tokenizer():
    """The T5 tokenizer from ../shared when present, else a minimal in-memory one (pad 0, eos 1)."""
    if (SHARED_T5_TOKENIZER / "tokenizer.json").exists():
        tok = AutoTokenizer.from_pretrained(str(SHARED_T5_TOKENIZER))
        source = str(SHARED_T5_TOKENIZER)
    else:
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import Whitespace
        t = Tokenizer(WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2}, unk_token="<unk>"))
        t.pre_tokenizer = Whitespace()
        tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
        source = "in-memory minimal"
    tok.padding_side = "right"
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1, (tok.pad_token_id, tok.eos_token_id)
    return tok, source


def count_params(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", choices=("base", "small"), default="base")
    p.add_argument("--repeats", type=int, default=2, help="PPO steps to time (the first includes warm-up)")
    p.add_argument("--iteration", action="store_true", help="also time one whole lab iteration")
    p.add_argument("--query-len", type=int, default=200)
    p.add_argument("--response-len", type=int, default=100)
    p.add_argument("--json", help="write all numbers to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    # Smoke test only: short sequences and generation lengths.
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    gen_min, gen_max = 100, 400
    if a.tiny:
        a.query_len, a.response_len, gen_min, gen_max = 16, 8, 4, 12

    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)

    t5_config_path = CONFIGS / f"flan-t5-{a.model}.json"
    base = T5ForConditionalGeneration(T5Config.from_json_file(str(t5_config_path)))
    lora = LoraConfig(r=32, lora_alpha=32, target_modules=["q", "v"], lora_dropout=0.05, bias="none",
                      task_type=TaskType.SEQ_2_SEQ_LM)
    peft_model = get_peft_model(base, lora)
    ppo_model = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(peft_model, torch_dtype=torch.float32,
                                                                   is_trainable=True)
    trainable, all_params = count_params(ppo_model)
    tokenizer, tok_source = make_tokenizer()
    config = PPOConfig(model_name=f"flan-t5-{a.model}-random", learning_rate=1.41e-5, ppo_epochs=1,
                       mini_batch_size=4, batch_size=16, seed=a.seed)
    trainer = PPOTrainer(config=config, model=ppo_model, ref_model=None, tokenizer=tokenizer)
    bs = config.batch_size

    g = torch.Generator().manual_seed(a.seed)
    queries = [torch.cat([torch.randint(3, 32000, (a.query_len - 1,), generator=g), torch.tensor([1])])
               for _ in range(bs)]
    responses = [torch.cat([torch.tensor([0]), torch.randint(3, 32000, (a.response_len,), generator=g)])
                 for _ in range(bs)]

    info = dict(
        benchmark="pytorch_ppo_bench", model=f"flan-t5-{a.model} (random init, {t5_config_path.name})",
        dtype="float32", device="cpu", threads=a.threads, torch_threads=torch.get_num_threads(),
        cpu=cpu_model(), torch=torch.__version__, transformers=transformers.__version__, trl=trl.__version__,
        python=platform.python_version(), date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        tokenizer=tok_source, tiny=a.tiny, query_len=a.query_len, response_len=a.response_len, batch_size=bs,
        mini_batch_size=config.mini_batch_size, ppo_epochs=config.ppo_epochs, trainable_params=trainable,
        all_params=all_params,
    )
    print(f"flan-t5-{a.model} random init, fp32, CPU ({info['cpu']}), {a.threads} threads, "
          f"torch {torch.__version__} / transformers {transformers.__version__} / trl {trl.__version__}")
    print(f"trainable model parameters: {trainable}, all model parameters: {all_params} "
          f"({100 * trainable / all_params:.2f}% trainable)")
    print(f"step: {bs} queries x {a.query_len} tokens, {bs} responses x {a.response_len + 1} tokens, "
          f"mini-batch {config.mini_batch_size}, {config.ppo_epochs} epoch")

    steps = []
    for i in range(max(1, a.repeats)):
        scores = [torch.tensor(float(s)) for s in torch.empty(bs).uniform_(-2.0, 2.0, generator=g)]
        t = time.perf_counter()
        stats = trainer.step(queries, responses, scores)
        s = time.perf_counter() - t
        row = dict(seconds=s, **{k.split("/")[-1]: float(stats[k]) for k in TIMING_KEYS})
        steps.append(row)
        print(f"ppo step {i}: {s:.2f} s  (trl total {row['total']:.2f} s, forward_pass {row['forward_pass']:.2f} s, "
              f"optimize_step {row['optimize_step']:.2f} s)")
    mean_after_first = statistics.mean(r["seconds"] for r in steps[1:]) if len(steps) > 1 else None
    if mean_after_first is not None:
        print(f"ppo step mean after the first ({len(steps) - 1}): {mean_after_first:.2f} s")
    out = dict(info, steps=steps, step_seconds_mean_after_first=mean_after_first,
               peak_rss_mb_after_steps=peak_rss_mb())

    if a.iteration:
        rconf = RobertaConfig.from_json_file(str(CONFIGS / "roberta-hate-speech.json"))
        reward_model = RobertaForSequenceClassification(rconf).eval()
        sampler = LengthSampler(gen_min, gen_max)
        np.random.seed(a.seed + 5)
        torch.manual_seed(a.seed + 5)
        gen_kwargs = dict(min_length=5, top_k=0.0, top_p=1.0, do_sample=True)
        t0 = time.perf_counter()
        gen_responses, limits = [], []
        for q in queries:  # one by one, as the lab does
            max_new_tokens = int(sampler())
            limits.append(max_new_tokens)
            summary = trainer.generate(q, max_new_tokens=max_new_tokens, **gen_kwargs)
            gen_responses.append(summary.squeeze()[-max_new_tokens:])
        t_gen = time.perf_counter() - t0
        new_tokens = sum(len(r) for r in gen_responses)

        t1 = time.perf_counter()
        length = min(max(a.query_len + len(r) for r in gen_responses), 512)
        rids = torch.randint(3, 50000, (bs, length), generator=g)
        with torch.inference_mode():
            logits = reward_model(input_ids=rids, attention_mask=torch.ones_like(rids)).logits
        rewards = [torch.tensor(float(x)) for x in logits[:, 0]]  # the "nothate" logit
        t_reward = time.perf_counter() - t1

        t2 = time.perf_counter()
        stats = trainer.step(queries, gen_responses, rewards)
        t_step = time.perf_counter() - t2
        total = time.perf_counter() - t0
        out["iteration"] = dict(seconds=total, generate=t_gen, reward=t_reward, step=t_step, new_tokens=new_tokens,
                                limits=limits, reward_len=length,
                                **{"step_" + k.split("/")[-1]: float(stats[k]) for k in TIMING_KEYS})
        print(f"lab iteration: {total:.1f} s = generate {t_gen:.1f} s ({new_tokens} new tokens, lengths {limits}) "
              f"+ reward {t_reward:.1f} s ({bs} x {length} tokens) + step {t_step:.1f} s")

    out["peak_rss_mb"] = peak_rss_mb()
    print(f"trainable {trainable} / all {all_params} parameters; peak RSS {out['peak_rss_mb']:.0f} MB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
