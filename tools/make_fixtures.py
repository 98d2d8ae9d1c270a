#!/usr/bin/env python3
"""Build the tiny random-init parity fixtures and the reference numbers transformers computes for them.

Run by hand from the repository root (see tools/README.md):

    python tools/make_fixtures.py

Reads ../shared (DialogSum text, the real T5 / RoBERTa tokenizers) and writes only under tests/fixtures/:

    t5-tiny/            T5ForConditionalGeneration, gated-gelu, untied, f32, single model.safetensors
    t5-tiny-bf16/       same architecture, other seed, bf16, sharded (model-0000i-of-0000N + index)
    t5-tiny-relu/       original-T5 style: relu FF, tied embeddings (d_model**-0.5 before the head)
    roberta-tiny/       RobertaForSequenceClassification, 2 labels (nothate / hate)
    reference/<name>.safetensors + reference/<name>.json   per model
    reference/param_counts.json, reference/tokenizer_parity.json
    configs/{flan-t5-base,flan-t5-small,roberta-hate-speech}.json

Every model dir also holds the tiny tokenizer.json trained here on DialogSum train dialogues.
Deterministic: fixed seeds, single-threaded torch and tokenizers; running it twice gives identical files.
"""

import os

# Before importing tokenizers / torch: single-threaded, so training and float sums are reproducible.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import math
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram
from tokenizers.trainers import BpeTrainer, UnigramTrainer
from transformers import (
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
    T5TokenizerFast,
)
from transformers.models.roberta.modeling_roberta import create_position_ids_from_input_ids
from transformers.utils import logging as hf_logging

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
hf_logging.set_verbosity_error()
warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO / ".." / "shared").resolve()
FIX = REPO / "tests" / "fixtures"
REF = FIX / "reference"
CFG = FIX / "configs"

MIN_MARGIN = 0.05
MAX_NEW_TOKENS = 20
LOGIT_STD = 10.0
T5_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "

# Relative-attention geometry of the tiny T5s (see check_buckets): with 16 buckets and max_distance 24,
#   encoder (bidirectional: 8 buckets per direction, max_exact 4): exact |d| < 4, log 4 <= |d| < 24,
#       clamp |d| >= 24 (the log formula gives 8 there, clamped to 7)  -> needs S >= 25
#   decoder (causal: 16 buckets, max_exact 8): exact d < 8, log 8 <= d < 24, clamp d >= 24 -> needs T >= 25
NUM_BUCKETS = 16
MAX_DISTANCE = 24
ENC_LEN = 40  # tokens of the longer encoder text (incl. </s>); the shorter one is ~26
DEC_LEN = 30


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def compact_json(path, obj):
    """JSON with one list of ids per line (tokenizer_parity.json is mostly ids)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        keys = list(obj)
        for i, k in enumerate(keys):
            v = obj[k]
            f.write(f" {json.dumps(k)}: ")
            if isinstance(v, list) and v and isinstance(v[0], list):
                f.write("[\n")
                f.write(",\n".join("  " + json.dumps(x, separators=(",", ":")) for x in v))
                f.write("\n ]")
            else:
                f.write(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if i + 1 < len(keys) else "\n")
        f.write("}\n")


# ----------------------------------------------------------------------------------------------
# 1. tiny tokenizers
# ----------------------------------------------------------------------------------------------

def training_text():
    rows = read_jsonl(SHARED / "data" / "dialogsum" / "train.jsonl")
    # First 2000 train dialogues, plus the prompt words, so the lab prompt tokenizes sensibly.
    texts = [r["dialogue"] for r in rows[:2000]]
    texts += [T5_PROMPT.format(dialogue="")] * 50
    return texts


def build_t5_tokenizer(texts):
    """Unigram, <pad>=0 </s>=1 <unk>=2, structure of the real T5 tokenizer.json.

    The real one's normalizer is a SentencePiece `Precompiled` charsmap (~NFKC plus a few maps);
    here NFKC stands in for it (a precompiled charsmap cannot be built from Python without sentencepiece
    model files, and the real blob must not be copied into the repo).
    """
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = UnigramTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        shrinking_factor=0.75,
        max_piece_length=8,
        n_sub_iterations=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("</s>") == 1 and tok.token_to_id("<unk>") == 2
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    # Round-trip through JSON to normalise the added-token flags like the real file
    # (special, not normalized, no strip).
    j = json.loads(tok.to_str())
    assert j["model"]["type"] == "Unigram" and j["model"]["unk_id"] == 2, j["model"].get("unk_id")
    for at in j["added_tokens"]:
        at.update(single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
    j["model"]["vocab"] = canonical_unigram_vocab(j["model"]["vocab"])
    tok = Tokenizer.from_str(json.dumps(j))
    return tok


def canonical_unigram_vocab(vocab):
    """Make the trained Unigram vocab reproducible.

    The trainer's piece set is stable, but its scores carry float noise (~1e-14, hash-map summation order), and
    the required characters it could not score get min_score - 0.0001*k in hash-map order. So: keep the
    specials (ids 0..2), round scores to 6 decimals, order pieces by (-score, piece), and give the fallback
    characters (scores within 0.01 of the lowest) fixed scores in sorted order.
    """
    specials, rest = vocab[:3], vocab[3:]
    assert [p for p, _ in specials] == ["<pad>", "</s>", "<unk>"]
    low = min(sc for _, sc in rest)
    fallback = sorted(p for p, sc in rest if sc < low + 0.01)
    normal = sorted(((p, round(sc, 6)) for p, sc in rest if sc >= low + 0.01), key=lambda x: (-x[1], x[0]))
    base = round(low + 0.01, 2) - 0.01
    fallback = [(p, round(base - 0.0001 * i, 6)) for i, p in enumerate(fallback)]
    out = [[p, sc] for p, sc in specials] + [[p, sc] for p, sc in normal + fallback]
    assert len(out) == len(vocab) and len({p for p, _ in out}) == len(out)
    return out


def build_roberta_tokenizer(texts):
    """Byte-level BPE, <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> = last id; structure of roberta-base's file."""
    tok = Tokenizer(BPE(dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                        fuse_unk=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True)
    trainer = BpeTrainer(
        vocab_size=399,
        min_frequency=2,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(
        sep=("</s>", 2), cls=("<s>", 0), trim_offsets=True, add_prefix_space=False
    )
    j = json.loads(tok.to_str())
    # like roberta-base's file: empty strings rather than null for the (unused) affixes
    j["model"]["continuing_subword_prefix"] = ""
    j["model"]["end_of_word_suffix"] = ""
    vocab = j["model"]["vocab"]
    mask_id = len(vocab)
    vocab["<mask>"] = mask_id  # the real vocab.json also lists <mask> (as its last id)
    for at in j["added_tokens"]:
        at.update(single_word=False, lstrip=False, rstrip=False, normalized=True, special=True)
    j["added_tokens"].append(dict(id=mask_id, content="<mask>", single_word=False, lstrip=True, rstrip=False,
                                  normalized=True, special=True))
    tok = Tokenizer.from_str(json.dumps(j))
    for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"]):
        assert tok.token_to_id(t) == i
    assert tok.token_to_id("<mask>") == tok.get_vocab_size() - 1
    return tok


def hf_tok(path, kind):
    if kind == "t5":
        return PreTrainedTokenizerFast(tokenizer_file=str(path), pad_token="<pad>", eos_token="</s>",
                                       unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                   mask_token="<mask>")


def fit_text(tok, words, target):
    """Longest prefix of `words` (joined by spaces) whose encoding (with specials) has <= target ids."""
    best = None
    for n in range(1, len(words) + 1):
        t = " ".join(words[:n])
        if len(tok(t)["input_ids"]) <= target:
            best = t
        else:
            break
    assert best is not None
    return best


# ----------------------------------------------------------------------------------------------
# 2. helpers shared by the model builders
# ----------------------------------------------------------------------------------------------

def top2_margin(x):
    """top-1 minus top-2 along the last axis."""
    v = torch.topk(x.float(), 2, dim=-1).values
    return v[..., 0] - v[..., 1]


def round_bf16_(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def capture(modules):
    """Register forward hooks; returns (store, remove)."""
    store, handles = {}, []
    for name, mod in modules.items():
        def hook(m, inp, out, name=name):
            store[name] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        handles.append(mod.register_forward_hook(hook))

    def remove():
        for h in handles:
            h.remove()
    return store, remove


def calibrate_qk(model, attn_modules, run, target_std=2.0, scale=1.0, passes=4):
    """Scale q and k of every attention so that q.k^T * scale (pre-softmax, before bias/mask) has ~target std.

    attn_modules: list of (name, q_linear, k_linear, n_heads, head_dim)."""
    for _ in range(passes):
        mods = {}
        for name, q, k, _, _ in attn_modules:
            mods[name + ".q"] = q
            mods[name + ".k"] = k
        store, remove = capture(mods)
        with torch.no_grad():
            run()
        remove()
        with torch.no_grad():
            for name, q, k, h, dh in attn_modules:
                qs, ks = store[name + ".q"], store[name + ".k"]
                b = qs.shape[0]
                qs = qs.view(b, -1, h, dh).transpose(1, 2)
                ks = ks.view(b, -1, h, dh).transpose(1, 2)
                std = (qs @ ks.transpose(-1, -2) * scale).std().item()
                f = math.sqrt(target_std / std)
                q.weight.mul_(f)
                k.weight.mul_(f)
                if getattr(q, "bias", None) is not None:
                    q.bias.mul_(f)
                    k.bias.mul_(f)


def bucket_regions(rel, bidirectional, num_buckets, max_distance):
    """Which of exact / log / clamp each relative position falls in (mirror of HF's formula)."""
    nb = num_buckets // 2 if bidirectional else num_buckets
    d = rel.abs() if bidirectional else (-torch.clamp(rel, max=0))
    max_exact = nb // 2
    small = d < max_exact
    large_unclamped = max_exact + (torch.log(d.float().clamp(min=1) / max_exact)
                                   / math.log(max_distance / max_exact) * (nb - max_exact)).long()
    clamped = (~small) & (large_unclamped > nb - 1)
    logr = (~small) & (~clamped)
    return small, logr, clamped


# ----------------------------------------------------------------------------------------------
# 3. T5
# ----------------------------------------------------------------------------------------------

def t5_config(vocab_size, ff, tied, dtype):
    return T5Config(
        vocab_size=vocab_size,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=3,
        num_heads=4,
        relative_attention_num_buckets=NUM_BUCKETS,
        relative_attention_max_distance=MAX_DISTANCE,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        initializer_factor=1.0,
        feed_forward_proj=ff,
        is_encoder_decoder=True,
        use_cache=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=tied,
        architectures=["T5ForConditionalGeneration"],
        torch_dtype=dtype,
    )


def t5_attn_modules(model):
    cfg = model.config
    out = []
    for side, stack in (("enc", model.encoder), ("dec", model.decoder)):
        for i, blk in enumerate(stack.block):
            out.append((f"{side}{i}.self", blk.layer[0].SelfAttention.q, blk.layer[0].SelfAttention.k,
                        cfg.num_heads, cfg.d_kv))
            if side == "dec":
                out.append((f"{side}{i}.cross", blk.layer[1].EncDecAttention.q, blk.layer[1].EncDecAttention.k,
                            cfg.num_heads, cfg.d_kv))
    return out


class T5Case:
    def __init__(self, tok_hf, texts, cli_prompt, dec_ids):
        self.tok = tok_hf
        self.texts = texts
        enc = tok_hf(texts, padding=True, return_tensors="pt")
        self.input_ids = enc["input_ids"].long()
        self.attention_mask = enc["attention_mask"].long()
        self.decoder_input_ids = dec_ids
        self.cli_prompt = cli_prompt
        self.cli_ids = tok_hf(cli_prompt, return_tensors="pt")["input_ids"].long()
        self.tok_size = len(tok_hf)


def t5_forward(model, case, **kw):
    return model(input_ids=case.input_ids, attention_mask=case.attention_mask,
                 decoder_input_ids=case.decoder_input_ids, **kw)


def t5_generate(model, input_ids, attention_mask, min_new_tokens=None):
    kw = dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1, output_scores=True,
              return_dict_in_generate=True)
    if min_new_tokens is not None:
        kw["min_new_tokens"] = min_new_tokens
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=attention_mask, **kw)
    ids = out.sequences[:, 1:]
    scores = torch.stack(out.scores, dim=1)  # [B, N, V], after logits processors (min_new_tokens masks EOS)
    margins, finished = [], []
    for b in range(ids.shape[0]):
        row, done = [], None
        for s in range(ids.shape[1]):
            row.append(top2_margin(scores[b, s]).item())
            assert scores[b, s].argmax().item() == ids[b, s].item()
            if ids[b, s].item() == 1:
                done = s + 1  # 1-based step that emitted EOS
                break
        margins.append(row)
        finished.append(done)
    return ids, margins, finished


def t5_check(model, case, want_eos):
    """Returns (ok, reason, info)."""
    eos = 1
    with torch.no_grad():
        logits = t5_forward(model, case).logits
    lm = top2_margin(logits)
    if lm.min().item() < MIN_MARGIN:
        return False, f"logits margin {lm.min().item():.3f}", None
    ids, margins, finished = t5_generate(model, case.input_ids, case.attention_mask)
    info = dict(ids=ids, margins=margins, finished=finished, logits_margin=lm.min().item())
    allm = [m for row in margins for m in row]
    if min(allm) < MIN_MARGIN:
        return False, f"greedy margin {min(allm):.3f}", info
    # generated tokens (before EOS) must be real, non-pad tokens of the tokenizer
    for b in range(ids.shape[0]):
        n = finished[b] or ids.shape[1]
        for t in ids[b, :n].tolist():
            if t == 0 or t >= case.tok_size:
                return False, f"generated id {t}", info
    if any(f == 1 for f in finished):
        return False, "EOS at step 1", info
    if want_eos:
        early = [(f, b) for b, f in enumerate(finished) if f is not None]
        if not early:
            return False, "no EOS", info
        f0, b0 = min(early)
        other = finished[1 - b0]
        if not (2 <= f0 <= MAX_NEW_TOKENS - 4) or (other is not None and other <= f0 + 1):
            return False, f"EOS pattern {finished}", info
        min_new = f0 + 2
        ids_m, margins_m, finished_m = t5_generate(model, case.input_ids, case.attention_mask, min_new)
        allm = [m for row in margins_m for m in row]
        if min(allm) < MIN_MARGIN:
            return False, f"min_new margin {min(allm):.3f}", info
        if not torch.equal(ids_m[b0, :f0 - 1], ids[b0, :f0 - 1]) or ids_m[b0, f0 - 1].item() == eos:
            return False, "min_new_tokens did not change the early row", info
        for b in range(ids_m.shape[0]):
            n = finished_m[b] or ids_m.shape[1]
            if any(t == 0 or t >= case.tok_size for t in ids_m[b, :n].tolist()):
                return False, "generated bad id (min_new)", info
        info.update(min_new=min_new, ids_min=ids_m, margins_min=margins_m, finished_min=finished_m,
                    early_row=b0)
    cli_ids, cli_m, cli_f = t5_generate(model, case.cli_ids, torch.ones_like(case.cli_ids))
    if min(cli_m[0]) < MIN_MARGIN:
        return False, f"cli margin {min(cli_m[0]):.3f}", info
    if cli_f[0] == 1:
        return False, "cli EOS at step 1", info
    n = cli_f[0] or cli_ids.shape[1]
    if any(t == 0 or t >= case.tok_size for t in cli_ids[0, :n].tolist()):
        return False, "cli bad id", info
    info.update(cli_ids=cli_ids[0, :n], cli_margins=cli_m[0], cli_finished=cli_f[0])
    return True, "ok", info


def build_t5(name, case, vocab_size, ff, tied, bf16, seed0, want_eos=True, max_tries=200):
    for seed in range(seed0, seed0 + max_tries):
        torch.manual_seed(seed)
        cfg = t5_config(vocab_size, ff, tied, "bfloat16" if bf16 else "float32")
        model = T5ForConditionalGeneration(cfg).eval()
        with torch.no_grad():
            # layer norms: not all ones
            for n, p in model.named_parameters():
                if "layer_norm" in n:
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
            # relative attention bias: large, so a wrong bucket visibly changes the output
            for stack in (model.encoder, model.decoder):
                rab = stack.block[0].layer[0].SelfAttention.relative_attention_bias
                rab.weight.copy_(2.5 * torch.randn_like(rab.weight))
            if tied:
                # Tied head: with embeddings as large as the sublayer outputs, h_t . e(x_t) dominates and the
                # model only ever repeats its input token (decoder start 0 -> emits 0 forever). Small
                # embeddings (std 0.1) keep the residual stream dominated by the sublayers; the logit scale
                # then comes from the decoder's final layer norm weight instead.
                model.shared.weight.mul_(0.1)
        calibrate_qk(model, t5_attn_modules(model), lambda: t5_forward(model, case))
        # head: teacher-forced logits std ~LOGIT_STD (wide top-1/top-2 gaps)
        with torch.no_grad():
            std = t5_forward(model, case).logits.std().item()
            if tied:
                model.decoder.final_layer_norm.weight.mul_(LOGIT_STD / std)
            else:
                model.lm_head.weight.mul_(LOGIT_STD / std)
        if bf16:
            round_bf16_(model)
        # EOS search: shift the EOS row of the head along the mean final hidden direction.
        with torch.no_grad():
            out = t5_forward(model, case, output_hidden_states=True)
            h = out.decoder_hidden_states[-1]  # after final_layer_norm (HF applies it before storing the last)
            if tied:
                h = h * cfg.d_model ** -0.5
            u = h.mean(dim=(0, 1))
            m = (h @ (u / u.norm())).mean().item()
            u_hat = u / u.norm()
            logit_std = out.logits.std().item()
            head = model.shared.weight if tied else model.lm_head.weight
            base_row = head[1].clone()
        alphas = [0.0] + [k * 0.2 * logit_std / m for k in range(1, 31)]
        reasons = []
        for alpha in alphas:
            with torch.no_grad():
                head[1].copy_(base_row + alpha * u_hat)
                if bf16:
                    head[1].copy_(head[1].to(torch.bfloat16).float())
            ok, why, info = t5_check(model, case, want_eos)
            reasons.append(why)
            if ok:
                log(f"[{name}] seed {seed}: ok with eos alpha {alpha:.3f} (finished {info['finished']})")
                return model, dict(seed=seed, eos_alpha=alpha, eos_direction_dot=m)
        log(f"[{name}] seed {seed}: rejected ({sorted(set(reasons))[:4]})")
    raise SystemExit(f"{name}: no seed satisfied the constraints")


def save_t5(model, out_dir, tok, bf16):
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if bf16:
        m = T5ForConditionalGeneration(model.config)
        m.load_state_dict(model.state_dict())
        m = m.to(torch.bfloat16)
        m.save_pretrained(out_dir, safe_serialization=True, max_shard_size="200KB")
    else:
        model.save_pretrained(out_dir, safe_serialization=True)
    tok.save(str(out_dir / "tokenizer.json"))


def check_buckets(enc_b, dec_b, S, T):
    rel_e = torch.arange(S)[None, :] - torch.arange(S)[:, None]
    rel_d = torch.arange(T)[None, :] - torch.arange(T)[:, None]
    for what, rel, b, bi in (("enc", rel_e, enc_b, True), ("dec", rel_d, dec_b, False)):
        small, logr, clamped = bucket_regions(rel, bi, NUM_BUCKETS, MAX_DISTANCE)
        assert small.any() and logr.any() and clamped.any(), what
        nb = NUM_BUCKETS // 2 if bi else NUM_BUCKETS
        if bi:
            # both directions reach the clamp
            assert (clamped & (rel > 0)).any() and (clamped & (rel < 0)).any(), what
            assert (b[clamped & (rel > 0)] == NUM_BUCKETS - 1).all() and (b[clamped & (rel < 0)] == nb - 1).all()
            assert (b[small & (rel > 0)] == rel[small & (rel > 0)] + nb).all()
        else:
            assert (b[clamped] == NUM_BUCKETS - 1).all()
            assert (b[rel > 0] == 0).all()  # future positions: bucket 0 (masked anyway)
        # the log region produces several distinct buckets
        assert len(set(b[logr].tolist())) >= 3, (what, sorted(set(b[logr].tolist())))
        log(f"  {what} buckets: exact {small.sum().item()} / log {logr.sum().item()} / clamp "
            f"{clamped.sum().item()}; distinct {sorted(set(b.flatten().tolist()))}")


def t5_references(name, model_dir, case, build_info, bf16):
    # Load back what was saved (bf16: upcast to f32), and compute everything from that.
    model = T5ForConditionalGeneration.from_pretrained(model_dir, torch_dtype=torch.bfloat16 if bf16 else None)
    if bf16:
        assert next(model.parameters()).dtype == torch.bfloat16
        model = model.float()
    model.eval()
    cfg = model.config
    S, T = case.input_ids.shape[1], case.decoder_input_ids.shape[1]
    tensors = {}
    tensors["input_ids"] = case.input_ids
    tensors["attention_mask"] = case.attention_mask
    tensors["decoder_input_ids"] = case.decoder_input_ids

    ea = model.encoder.block[0].layer[0].SelfAttention
    da = model.decoder.block[0].layer[0].SelfAttention
    rel_e = torch.arange(S)[None, :] - torch.arange(S)[:, None]
    rel_d = torch.arange(T)[None, :] - torch.arange(T)[:, None]
    enc_b = ea._relative_position_bucket(rel_e, bidirectional=True, num_buckets=cfg.relative_attention_num_buckets,
                                         max_distance=cfg.relative_attention_max_distance)
    dec_b = da._relative_position_bucket(rel_d, bidirectional=False,
                                         num_buckets=cfg.relative_attention_num_buckets,
                                         max_distance=cfg.relative_attention_max_distance)
    check_buckets(enc_b, dec_b, S, T)
    tensors["enc_buckets"] = enc_b.long()
    tensors["dec_buckets"] = dec_b.long()
    with torch.no_grad():
        tensors["enc_position_bias"] = ea.compute_bias(S, S)
        tensors["dec_position_bias"] = da.compute_bias(T, T)
        tensors["enc_embeddings"] = model.encoder.embed_tokens(case.input_ids)
        tensors["dec_embeddings"] = model.decoder.embed_tokens(case.decoder_input_ids)

    mods = {}
    eb0, db0 = model.encoder.block[0], model.decoder.block[0]
    mods["enc_block0_ln0_out"] = eb0.layer[0].layer_norm
    mods["enc_block0_layer0_out"] = eb0.layer[0]
    mods["enc_block0_layer1_out"] = eb0.layer[1]
    for i, blk in enumerate(model.encoder.block):
        mods[f"enc_block{i}_out"] = blk
    mods["enc_last_hidden"] = model.encoder.final_layer_norm
    mods["dec_block0_layer0_out"] = db0.layer[0]
    mods["dec_block0_layer1_out"] = db0.layer[1]
    mods["dec_block0_layer2_out"] = db0.layer[2]
    for i, blk in enumerate(model.decoder.block):
        mods[f"dec_block{i}_out"] = blk
    mods["dec_last_hidden"] = model.decoder.final_layer_norm
    store, remove = capture(mods)
    with torch.no_grad():
        out = t5_forward(model, case, output_hidden_states=True)
    remove()
    # cross-checks of the hooks against HF's own outputs
    assert torch.equal(store["enc_last_hidden"], out.encoder_last_hidden_state)
    assert torch.equal(store["dec_last_hidden"], out.decoder_hidden_states[-1])
    assert torch.equal(tensors["enc_embeddings"], out.encoder_hidden_states[0])
    assert torch.equal(tensors["dec_embeddings"], out.decoder_hidden_states[0])
    for i in range(cfg.num_layers - 1):
        assert torch.equal(store[f"enc_block{i}_out"], out.encoder_hidden_states[i + 1])
    for i in range(cfg.num_decoder_layers - 1):
        assert torch.equal(store[f"dec_block{i}_out"], out.decoder_hidden_states[i + 1])
    order = ["enc_embeddings", "enc_block0_ln0_out", "enc_block0_layer0_out", "enc_block0_layer1_out"]
    order += [f"enc_block{i}_out" for i in range(cfg.num_layers)] + ["enc_last_hidden"]
    order += ["dec_embeddings", "dec_block0_layer0_out", "dec_block0_layer1_out", "dec_block0_layer2_out"]
    order += [f"dec_block{i}_out" for i in range(cfg.num_decoder_layers)] + ["dec_last_hidden"]
    for k in order:
        if k not in tensors:
            tensors[k] = store[k]
    tensors["logits"] = out.logits
    lm = top2_margin(out.logits)

    ok, why, info = t5_check(model, case, want_eos=True)
    assert ok, (name, why)
    ids, ids_min = info["ids"], info["ids_min"]
    tensors["greedy_ids"] = ids.long()
    tensors["greedy_min_ids"] = ids_min.long()

    # The CLI path: the prompt alone, tokenized by PreTrainedTokenizerFast(tokenizer_file=...).
    cli_tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    cli_prompt_ids = cli_tok(case.cli_prompt)["input_ids"]
    assert cli_prompt_ids == case.cli_ids[0].tolist()
    with torch.no_grad():
        cli_out = model.generate(torch.tensor([cli_prompt_ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    cli_greedy = cli_out[0, 1:].tolist()
    assert cli_greedy == info["cli_ids"].tolist(), (cli_greedy, info["cli_ids"])

    tensors = {k: (v.contiguous().long() if not v.is_floating_point() else v.contiguous().float())
               for k, v in tensors.items()}
    save_file(tensors, str(REF / f"{name}.safetensors"))

    meta = dict(
        model=name,
        fixture_dir=f"tests/fixtures/{name}",
        weights_dtype="bfloat16" if bf16 else "float32",
        reference_dtype="float32",
        note=("weights stored as bf16 (sharded); references computed by transformers from those bf16 weights "
              "upcast to float32 (model.float())") if bf16 else "weights and references float32",
        transformers_version=__import__("transformers").__version__,
        torch_version=torch.__version__,
        seed=build_info["seed"],
        eos_row_shift=dict(alpha=build_info["eos_alpha"], note=(
            "after init, the EOS row (id 1) of the output head was moved by alpha along the mean final decoder "
            "hidden direction, so that one batch row stops early")),
        config=dict(vocab_size=cfg.vocab_size, tokenizer_vocab_size=case.tok_size, d_model=cfg.d_model,
                    d_kv=cfg.d_kv, num_heads=cfg.num_heads, d_ff=cfg.d_ff, num_layers=cfg.num_layers,
                    num_decoder_layers=cfg.num_decoder_layers, feed_forward_proj=cfg.feed_forward_proj,
                    dense_act_fn=cfg.dense_act_fn, tie_word_embeddings=cfg.tie_word_embeddings,
                    relative_attention_num_buckets=cfg.relative_attention_num_buckets,
                    relative_attention_max_distance=cfg.relative_attention_max_distance),
        texts=case.texts,
        input_lengths=case.attention_mask.sum(1).tolist(),
        decoder_input_ids_note="decoder_start_token_id 0 then random ids in [3, tokenizer_vocab_size); "
                               "no decoder attention mask (all ones, causal)",
        generation=dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1, decoder_start_token_id=0,
                        eos_token_id=1, pad_token_id=0, use_cache=True,
                        note="greedy_ids = generate(input_ids, attention_mask, ...).sequences[:, 1:]; rows "
                             "that emitted EOS are padded with pad id 0 by transformers"),
        greedy_ids=ids.tolist(),
        greedy_finished_at_step=info["finished"],
        greedy_margins=[[round(m, 4) for m in row] for row in info["margins"]],
        greedy_margin_min=round(min(m for row in info["margins"] for m in row), 4),
        early_row=info["early_row"],
        min_new_tokens=info["min_new"],
        greedy_min_ids=ids_min.tolist(),
        greedy_min_finished_at_step=info["finished_min"],
        greedy_min_margins=[[round(m, 4) for m in row] for row in info["margins_min"]],
        greedy_min_margins_note="margins of the processed scores (EOS set to -inf before min_new_tokens)",
        logits_argmax=out.logits.argmax(-1).tolist(),
        logits_min_margin=round(lm.min().item(), 4),
        logits_margin_note="top-1 minus top-2 of every [row, position] of `logits` is >= this",
        cli_prompt=case.cli_prompt,
        cli_prompt_ids=cli_prompt_ids,
        cli_greedy_ids=cli_greedy,
        cli_finished_at_step=info["cli_finished"],
        cli_margins=[round(m, 4) for m in info["cli_margins"]],
        cli_note="generate(prompt_ids, max_new_tokens=20, do_sample=False)[0, 1:]; EOS kept if generated",
        margin_threshold=MIN_MARGIN,
        tensors={k: dict(shape=list(v.shape), dtype=str(v.dtype).replace("torch.", "")) for k, v in tensors.items()},
        tensor_notes=dict(
            enc_buckets="T5Attention._relative_position_bucket(memory - query, bidirectional=True), [S,S]",
            dec_buckets="same with bidirectional=False, [T,T]",
            enc_position_bias="encoder block 0 compute_bias(S,S), mask NOT added, [1,H,S,S]",
            dec_position_bias="decoder block 0 compute_bias(T,T), causal mask NOT added, [1,H,T,T]",
            enc_block0_ln0_out="encoder block 0 layer 0 T5LayerNorm output",
            enc_block0_layer0_out="encoder block 0 T5LayerSelfAttention output hidden (residual added)",
            enc_block0_layer1_out="encoder block 0 T5LayerFF output",
            dec_block0_layer0_out="decoder block 0 self-attention layer output",
            dec_block0_layer1_out="decoder block 0 cross-attention layer output",
            dec_block0_layer2_out="decoder block 0 FF layer output",
            enc_last_hidden="after encoder final_layer_norm (encoder_last_hidden_state)",
            dec_last_hidden="after decoder final_layer_norm, before any tied-embedding scaling",
            logits="lm logits (tied: computed from dec_last_hidden * d_model**-0.5)",
        ),
    )
    write_json(REF / f"{name}.json", meta)
    return meta


# ----------------------------------------------------------------------------------------------
# 4. RoBERTa
# ----------------------------------------------------------------------------------------------

def roberta_config(vocab_size):
    return RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=66,
        type_vocab_size=1,
        initializer_range=0.02,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        position_embedding_type="absolute",
        num_labels=2,
        id2label={0: "nothate", 1: "hate"},
        label2id={"nothate": 0, "hate": 1},
        architectures=["RobertaForSequenceClassification"],
        torch_dtype="float32",
    )


def build_roberta(tok_hf, texts, score_texts, vocab_size, seed0, max_tries=200):
    enc = tok_hf(texts, padding=True, return_tensors="pt")
    singles = [tok_hf(t, return_tensors="pt") for t in score_texts]

    def run_all(model):
        with torch.no_grad():
            a = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            b = torch.cat([model(**{k: v for k, v in s.items() if k != "token_type_ids"}).logits
                           for s in singles])
        return a, b

    for seed in range(seed0, seed0 + max_tries):
        torch.manual_seed(seed)
        cfg = roberta_config(vocab_size)
        model = RobertaForSequenceClassification._from_config(cfg, attn_implementation="eager").eval()
        H = cfg.hidden_size
        with torch.no_grad():
            for n, mod in model.named_modules():
                if isinstance(mod, torch.nn.Linear):
                    mod.weight.normal_(0.0, mod.in_features ** -0.5)
                    mod.bias.normal_(0.0, 0.1)
                elif isinstance(mod, torch.nn.LayerNorm):
                    mod.weight.copy_(1.0 + 0.2 * torch.randn_like(mod.weight))
                    mod.bias.normal_(0.0, 0.1)
                elif isinstance(mod, torch.nn.Embedding):
                    mod.weight.normal_(0.0, 0.5)
                    if mod.padding_idx is not None:
                        mod.weight[mod.padding_idx].zero_()
        attn = []
        for i, layer in enumerate(model.roberta.encoder.layer):
            sa = layer.attention.self
            attn.append((f"l{i}", sa.query, sa.key, sa.num_attention_heads, sa.attention_head_size))
        calibrate_qk(model, attn, lambda: model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]),
                     scale=1.0 / math.sqrt(H // cfg.num_attention_heads))
        a, b = run_all(model)
        d = torch.cat([a, b])
        diff = (d[:, 1] - d[:, 0])
        with torch.no_grad():
            model.classifier.out_proj.weight.mul_(3.0 / max(diff.abs().mean().item(), 1e-6))
        a, b = run_all(model)
        ma, mb = (a[:, 1] - a[:, 0]).abs(), (b[:, 1] - b[:, 0]).abs()
        why = None
        if min(ma.min().item(), mb.min().item()) < MIN_MARGIN:
            why = "margin"
        elif a.argmax(-1)[0] == a.argmax(-1)[1]:
            why = "batch rows same label"
        elif len(set(b.argmax(-1).tolist())) < 2:
            why = "score texts all same label"
        if why is None:
            log(f"[roberta-tiny] seed {seed}: ok")
            return model, dict(seed=seed)
        log(f"[roberta-tiny] seed {seed}: rejected ({why})")
    raise SystemExit("roberta: no seed satisfied the constraints")


def roberta_references(model_dir, tok_hf, texts, score_texts, build_info):
    name = "roberta-tiny"
    model = RobertaForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    cfg = model.config
    enc = tok_hf(texts, padding=True, return_tensors="pt")
    input_ids, attention_mask = enc["input_ids"].long(), enc["attention_mask"].long()
    pos = create_position_ids_from_input_ids(input_ids, cfg.pad_token_id, 0)
    mods = {"embeddings": model.roberta.embeddings,
            "layer0_attention_out": model.roberta.encoder.layer[0].attention}
    for i, layer in enumerate(model.roberta.encoder.layer):
        mods[f"layer{i}_out"] = layer
    store, remove = capture(mods)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    remove()
    assert torch.equal(store["embeddings"], out.hidden_states[0])
    for i in range(cfg.num_hidden_layers):
        assert torch.equal(store[f"layer{i}_out"], out.hidden_states[i + 1])
    tensors = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos.long())
    for k in ["embeddings", "layer0_attention_out"] + [f"layer{i}_out" for i in range(cfg.num_hidden_layers)]:
        tensors[k] = store[k]
    tensors["logits"] = out.logits
    tensors = {k: (v.contiguous().long() if not v.is_floating_point() else v.contiguous().float())
               for k, v in tensors.items()}
    save_file(tensors, str(REF / f"{name}.safetensors"))

    # `detox score --text ...`: one text at a time, tokenizer.json via PreTrainedTokenizerFast
    cli_tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    score_ids, score_logits, score_probs = [], [], []
    for t in score_texts:
        ids = cli_tok(t)["input_ids"]
        with torch.no_grad():
            lg = model(input_ids=torch.tensor([ids])).logits[0]
        score_ids.append(ids)
        score_logits.append([float(x) for x in lg])
        score_probs.append([float(x) for x in torch.softmax(lg, -1)])
    margins = (out.logits[:, 1] - out.logits[:, 0]).abs().tolist()
    meta = dict(
        model=name,
        fixture_dir=f"tests/fixtures/{name}",
        transformers_version=__import__("transformers").__version__,
        torch_version=torch.__version__,
        seed=build_info["seed"],
        config=dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                    num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
                    max_position_embeddings=cfg.max_position_embeddings, pad_token_id=cfg.pad_token_id,
                    id2label={str(k): v for k, v in cfg.id2label.items()}),
        texts=texts,
        input_lengths=attention_mask.sum(1).tolist(),
        logits=out.logits.tolist(),
        labels=[cfg.id2label[i] for i in out.logits.argmax(-1).tolist()],
        logit_margins=[round(m, 4) for m in margins],
        score_texts=score_texts,
        score_ids=score_ids,
        score_logits=score_logits,
        score_probs=score_probs,
        score_labels=[cfg.id2label[int(torch.tensor(l).argmax())] for l in score_logits],
        score_note="each text alone (no padding), tokenizer.json with RobertaProcessing (<s> ... </s>); "
                   "probs = softmax(logits); label index 1 = 'hate'",
        margin_threshold=MIN_MARGIN,
        tensors={k: dict(shape=list(v.shape), dtype=str(v.dtype).replace("torch.", "")) for k, v in tensors.items()},
        tensor_notes=dict(
            position_ids="create_position_ids_from_input_ids(input_ids, padding_idx=1): pads get 1, tokens 2..",
            embeddings="RobertaEmbeddings output (word + position + token_type, LayerNorm)",
            layer0_attention_out="layer 0 RobertaAttention output (self-attn + dense + residual + LayerNorm)",
            logits="RobertaClassificationHead on the <s> token: dense, tanh, out_proj",
        ),
    )
    write_json(REF / f"{name}.json", meta)
    return meta


# ----------------------------------------------------------------------------------------------
# 5. real architectures: configs and parameter counts
# ----------------------------------------------------------------------------------------------

FLAN_TASK_PARAMS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 200, "min_length": 30,
                      "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to German: "},
    "translation_en_to_fr": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to French: "},
    "translation_en_to_ro": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to Romanian: "},
}


def real_configs():
    base = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12,
                    num_heads=12, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    dropout_rate=0.1, layer_norm_epsilon=1e-6, initializer_factor=1.0,
                    feed_forward_proj="gated-gelu", is_encoder_decoder=True, use_cache=True, pad_token_id=0,
                    eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False,
                    architectures=["T5ForConditionalGeneration"], torch_dtype="float32",
                    n_positions=512, output_past=True, task_specific_params=FLAN_TASK_PARAMS)
    small = T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8,
                     num_heads=6, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     dropout_rate=0.1, layer_norm_epsilon=1e-6, initializer_factor=1.0,
                     feed_forward_proj="gated-gelu", is_encoder_decoder=True, use_cache=True, pad_token_id=0,
                     eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False,
                     architectures=["T5ForConditionalGeneration"], torch_dtype="float32",
                     n_positions=512, output_past=True, task_specific_params=FLAN_TASK_PARAMS)
    rob = RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                        attention_probs_dropout_prob=0.1, max_position_embeddings=514, type_vocab_size=1,
                        initializer_range=0.02, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, position_embedding_type="absolute", num_labels=2,
                        id2label={0: "nothate", 1: "hate"}, label2id={"nothate": 0, "hate": 1},
                        architectures=["RobertaForSequenceClassification"], torch_dtype="float32",
                        gradient_checkpointing=False)
    return {"flan-t5-base": (base, T5ForConditionalGeneration, 247_577_856),
            "flan-t5-small": (small, T5ForConditionalGeneration, 76_961_152),
            "roberta-hate-speech": (rob, RobertaForSequenceClassification, 124_647_170)}


def write_real_configs_and_counts():
    counts = {}
    hub = {"flan-t5-base": "google/flan-t5-base", "flan-t5-small": "google/flan-t5-small",
           "roberta-hate-speech": "facebook/roberta-hate-speech-dynabench-r4-target"}
    for name, (cfg, cls, expected) in real_configs().items():
        with tempfile.TemporaryDirectory() as td:
            cfg.save_pretrained(td)  # exactly what save_pretrained writes (use_diff, transformers_version)
            text = (Path(td) / "config.json").read_text(encoding="utf-8")
        CFG.mkdir(parents=True, exist_ok=True)
        (CFG / f"{name}.json").write_text(text, encoding="utf-8")
        with torch.device("meta"):
            model = cls(cfg)
        named = list(model.named_parameters())  # de-duplicated: shared tensors appear once
        total = sum(p.numel() for _, p in named)
        sd = model.state_dict()
        by_top = {}
        for n, p in named:
            top = n.split(".")[0]
            if top in ("roberta",):
                top = ".".join(n.split(".")[:2])
            by_top[top] = by_top.get(top, 0) + p.numel()
        assert total == expected, (name, total, expected)
        counts[name] = dict(
            hub_id=hub[name],
            config=f"tests/fixtures/configs/{name}.json",
            architecture=cls.__name__,
            total=total,
            trainable=sum(p.numel() for _, p in named if p.requires_grad),
            num_parameter_tensors=len(named),
            by_module=by_top,
            state_dict_keys=len(sd),
            state_dict_numel=sum(v.numel() for v in sd.values()),
        )
        if cls is T5ForConditionalGeneration:
            counts[name]["state_dict_note"] = (
                "total counts each tensor once; state_dict also lists shared.weight as encoder.embed_tokens.weight "
                "and decoder.embed_tokens.weight (hence state_dict_numel); lm_head is a separate (untied) matrix")
        log(f"[params] {name}: {total:,}")
    write_json(REF / "param_counts.json", counts)


# ----------------------------------------------------------------------------------------------
# 6. tokenizer parity against the real tokenizers
# ----------------------------------------------------------------------------------------------

def write_tokenizer_parity():
    rows = read_jsonl(SHARED / "data" / "dialogsum" / "test.jsonl")
    idx = list(range(0, 600, 3))  # rows 0,3,...,597: test_N_1 of the first 200 dialogues
    for i in idx:
        assert rows[i]["dialogue"] == rows[i + 1]["dialogue"] == rows[i + 2]["dialogue"]
        assert rows[i]["id"].endswith("_1"), rows[i]["id"]
    t5 = T5TokenizerFast.from_pretrained(str(SHARED / "tokenizers" / "t5"))
    rb = RobertaTokenizerFast.from_pretrained(str(SHARED / "tokenizers" / "roberta"))
    t5_ids = [t5(T5_PROMPT.format(dialogue=rows[i]["dialogue"]))["input_ids"] for i in idx]
    rb_ids = [rb(rows[i]["dialogue"])["input_ids"] for i in idx]
    # the fast tokenizers must agree with the raw tokenizer.json (what Rust loads)
    raw_t5 = Tokenizer.from_file(str(SHARED / "tokenizers" / "t5" / "tokenizer.json"))
    raw_rb = Tokenizer.from_file(str(SHARED / "tokenizers" / "roberta" / "tokenizer.json"))
    for i, a, b in zip(idx, t5_ids, rb_ids):
        assert raw_t5.encode(T5_PROMPT.format(dialogue=rows[i]["dialogue"])).ids == a
        assert raw_rb.encode(rows[i]["dialogue"]).ids == b
    compact_json(REF / "tokenizer_parity.json", {
        "source": "../shared/data/dialogsum/test.jsonl",
        "rows_note": "0-based line numbers; each dialogue appears on 3 consecutive lines (test_N_1..3), "
                     "so every 3rd line (test_N_1) gives the first 200 distinct dialogues",
        "t5_tokenizer": "../shared/tokenizers/t5 via T5TokenizerFast.from_pretrained, add_special_tokens=True "
                        "(trailing </s>), no truncation",
        "t5_input": "Summarize the following conversation.\\n\\n{dialogue}\\n\\nSummary: ",
        "roberta_tokenizer": "../shared/tokenizers/roberta via RobertaTokenizerFast.from_pretrained, "
                             "add_special_tokens=True (<s> ... </s>), no truncation",
        "roberta_input": "{dialogue} (raw)",
        "transformers_version": __import__("transformers").__version__,
        "tokenizers_version": __import__("tokenizers").__version__,
        "rows": idx,
        "t5": t5_ids,
        "roberta": rb_ids,
    })
    log(f"[parity] {len(idx)} dialogues; max t5 len {max(map(len, t5_ids))}, max roberta len "
        f"{max(map(len, rb_ids))}")


# ----------------------------------------------------------------------------------------------

def safetensors_names(d):
    from safetensors import safe_open
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            out[f.name] = {k: [list(h.get_slice(k).get_shape()), h.get_slice(k).get_dtype()] for k in sorted(h.keys())}
    return out


def main():
    REF.mkdir(parents=True, exist_ok=True)
    texts = training_text()
    t5_tok = build_t5_tokenizer(texts)
    rb_tok = build_roberta_tokenizer(texts)
    n_t5 = t5_tok.get_vocab_size()
    n_rb = rb_tok.get_vocab_size()
    t5_vocab = ((n_t5 + 7) // 8) * 8 + 8  # like 32100 -> 32128: some ids the tokenizer never produces
    log(f"tokenizers: t5 {n_t5} (model vocab {t5_vocab}), roberta {n_rb}")

    tmp = Path(tempfile.mkdtemp())
    t5_tok.save(str(tmp / "t5.json"))
    rb_tok.save(str(tmp / "rb.json"))
    t5_hf = hf_tok(tmp / "t5.json", "t5")
    rb_hf = hf_tok(tmp / "rb.json", "roberta")

    val = read_jsonl(SHARED / "data" / "dialogsum" / "validation.jsonl")
    words_a = val[0]["dialogue"].split()
    words_b = val[1]["dialogue"].split()
    texts_t5 = [fit_text(t5_hf, words_a, ENC_LEN), fit_text(t5_hf, words_b, 26)]
    lens = [len(t5_hf(t)["input_ids"]) for t in texts_t5]
    assert lens[0] == ENC_LEN and 20 <= lens[1] < lens[0], lens
    cli_prompt = T5_PROMPT.format(dialogue="#Person1#: Hi, how are you?\n#Person2#: Fine, thanks. And you?")
    g = torch.Generator().manual_seed(1234)
    dec = torch.randint(3, n_t5, (2, DEC_LEN), generator=g)
    dec[:, 0] = 0
    case = T5Case(t5_hf, texts_t5, cli_prompt, dec)
    log(f"t5 inputs: lengths {lens}, S={case.input_ids.shape[1]}, T={DEC_LEN}, cli prompt {case.cli_ids.shape[1]} ids")

    variants = [
        ("t5-tiny", dict(ff="gated-gelu", tied=False, bf16=False, seed0=1000)),
        ("t5-tiny-bf16", dict(ff="gated-gelu", tied=False, bf16=True, seed0=2000)),
        ("t5-tiny-relu", dict(ff="relu", tied=True, bf16=False, seed0=3000)),
    ]
    summary = {}
    for name, v in variants:
        model, info = build_t5(name, case, t5_vocab, v["ff"], v["tied"], v["bf16"], v["seed0"])
        d = FIX / name
        save_t5(model, d, t5_tok, v["bf16"])
        meta = t5_references(name, d, case, info, v["bf16"])
        summary[name] = meta

    words_r1 = val[2]["dialogue"].split()
    words_r2 = val[3]["dialogue"].split()
    texts_rb = [fit_text(rb_hf, words_r1, 40), fit_text(rb_hf, words_r2, 22)]
    score_texts = ["Thank you so much for your help, I really appreciate it.",
                   "I can't stand people like you, get out of here.",
                   "The meeting is moved to Tuesday at ten."]
    rmodel, rinfo = build_roberta(rb_hf, texts_rb, score_texts, n_rb, 4000)
    d = FIX / "roberta-tiny"
    if d.exists():
        shutil.rmtree(d)
    rmodel.save_pretrained(d, safe_serialization=True)
    rb_tok.save(str(d / "tokenizer.json"))
    roberta_references(d, rb_hf, texts_rb, score_texts, rinfo)

    write_real_configs_and_counts()
    write_tokenizer_parity()
    shutil.rmtree(tmp)

    for name in ["t5-tiny", "t5-tiny-bf16", "t5-tiny-relu", "roberta-tiny"]:
        log(f"== {name}: {sorted(p.name for p in (FIX / name).iterdir())}")
        for f, names in safetensors_names(FIX / name).items():
            log(f"   {f}: {names}")
    log("done")


if __name__ == "__main__":
    main()
