"""PyTorch + transformers side of BENCHMARKS.md, measured the way `detox bench` measures.

Random-init flan-t5-base / roberta-base shapes (no download), fp32, fixed-length random prompts,
EOS suppressed (min_new_tokens = max_new_tokens) so exactly N tokens are generated, one warm-up,
median of R runs. Run by hand:  python benches/pytorch_bench.py --threads 2
"""
import argparse
import json
import statistics
import time

import torch
from transformers import RobertaConfig, RobertaForSequenceClassification, T5Config, T5ForConditionalGeneration

FLAN_T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12,
                    num_heads=12, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                    pad_token_id=1, num_labels=2)


def median_secs(repeats, fn):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", default="1,16")
    p.add_argument("--prompt-len", type=int, default=200)
    p.add_argument("--new-tokens", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--beam-batch", default="1,4")
    p.add_argument("--what", default="t5-encoder,t5-greedy,t5-sample,t5-beam4,roberta")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    what = a.what.split(",")
    dev = torch.device(a.device)
    results = []
    if any(w.startswith("t5") for w in what):
        model = T5ForConditionalGeneration(T5Config(**FLAN_T5_BASE)).eval().to(dev)
        for batch in map(int, a.batch.split(",")):
            ids = torch.randint(3, 32000, (batch, a.prompt_len), device=dev)
            mask = torch.ones_like(ids)
            with torch.inference_mode():
                if "t5-encoder" in what:
                    s = median_secs(a.repeats, lambda: model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.cpu())
                    results.append(("t5-encoder", batch, s, batch * a.prompt_len / s, "prompt tokens/s"))
                for name, sample in (("t5-greedy", False), ("t5-sample", True)):
                    if name not in what:
                        continue
                    kw = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=sample, top_k=0, top_p=1.0)
                    s = median_secs(a.repeats, lambda: model.generate(input_ids=ids, attention_mask=mask, **kw).cpu())
                    results.append((name, batch, s, batch * a.new_tokens / s, "new tokens/s"))
        if "t5-beam4" in what:
            kw = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, num_beams=4, do_sample=False)
            for batch in map(int, a.beam_batch.split(",")):
                ids = torch.randint(3, 32000, (batch, a.prompt_len), device=dev)
                mask = torch.ones_like(ids)
                with torch.inference_mode():
                    s = median_secs(a.repeats, lambda: model.generate(input_ids=ids, attention_mask=mask, **kw).cpu())
                results.append(("t5-beam4", batch, s, batch * a.new_tokens / s, "new tokens/s"))
    if "roberta" in what:
        model = RobertaForSequenceClassification(RobertaConfig(**ROBERTA_BASE)).eval().to(dev)
        ids = torch.randint(3, 50000, (16, 256), device=dev)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            s = median_secs(a.repeats, lambda: model(input_ids=ids, attention_mask=mask).logits.cpu())
        results.append(("roberta-16x256", 16, s, 16 / s, "sequences/s"))
    for name, batch, s, tput, unit in results:
        print(f"{name:<16} batch {batch:>3}  {s:>9.3f} s  {tput:>9.2f} {unit}")
        print(json.dumps(dict(name=name, batch=batch, seconds_median=s, throughput=tput, unit=unit,
                              torch=torch.__version__, threads=a.threads, device=a.device)))


if __name__ == "__main__":
    main()
