"""PyTorch + peft side of `detox bench --what sft-lora,sft-full`, measured the same way.

One supervised fine-tuning step of random-init flan-t5-base shapes (no download), fp32, train
mode (dropout 0.1, LoRA dropout 0.05): forward with labels, backward, clip_grad_norm_(1.0), AdamW
(eps 1e-8), zero_grad. Random sources of --source-len tokens and targets of --target-len tokens,
batch --batch. One warm-up step, then the median of --repeats steps. LoRA is the lab's: r 32,
alpha 32, q and v. Peak memory is the process's ru_maxrss. Run by hand:
    python benches/pytorch_sft_bench.py --threads 2 --what sft-lora,sft-full
"""
import argparse
import json
import resource
import statistics
import time

import torch
from transformers import T5Config, T5ForConditionalGeneration

FLAN_T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12,
                    num_heads=12, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--source-len", type=int, default=512)
    p.add_argument("--target-len", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--what", default="sft-lora,sft-full")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name in a.what.split(","):
        torch.manual_seed(0)
        model = T5ForConditionalGeneration(T5Config(**FLAN_T5_BASE))
        if name == "sft-lora":
            from peft import LoraConfig, TaskType, get_peft_model
            model = get_peft_model(model, LoraConfig(r=32, lora_alpha=32, target_modules=["q", "v"],
                                                     lora_dropout=0.05, bias="none",
                                                     task_type=TaskType.SEQ_2_SEQ_LM))
        elif name != "sft-full":
            raise SystemExit(f"--what: unknown benchmark {name!r} (expected sft-lora or sft-full)")
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=1e-5, eps=1e-8, weight_decay=0.0)
        ids = torch.randint(3, 32000, (a.batch, a.source_len))
        mask = torch.ones_like(ids)
        labels = torch.randint(3, 32000, (a.batch, a.target_len))

        def step():
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            optim.zero_grad()

        step()
        times = []
        for _ in range(max(1, a.repeats)):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        s = statistics.median(times)
        tput = a.batch * (a.source_len + a.target_len) / s
        print(f"{name:<16} batch {a.batch:>3}  {s:>9.3f} s  {tput:>9.2f} tokens/s  peak RSS {peak_rss_mb():.0f} MB")
        print(json.dumps(dict(name=name, batch=a.batch, seconds_median=s, throughput=tput, unit="tokens/s",
                              peak_rss_mb=peak_rss_mb(), torch=torch.__version__, threads=a.threads)))
        del model, optim, params


if __name__ == "__main__":
    main()
