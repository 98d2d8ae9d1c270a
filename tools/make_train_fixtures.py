#!/usr/bin/env python3
"""Training-side parity fixtures: PEFT LoRA adapters, the seq2seq SFT loss, one/two AdamW steps.

Run by hand from the repository root, after tools/make_fixtures.py (it reads the t5-tiny fixture):

    /work/venv/bin/python tools/make_train_fixtures.py      # or .venv/bin/python; ~10 s on CPU

Reference stack: torch 2.5.1, transformers 4.46.3, peft 0.13.2 (tools/requirements.txt). CPU only,
single-threaded, deterministic algorithms, fixed seeds, PYTHONHASHSEED=0 (the script re-executes itself with
it: peft writes `target_modules` from a Python set, whose order depends on string hashing). Running it twice
gives byte-identical files. Reads only tests/fixtures/t5-tiny and tests/fixtures/reference/t5-tiny.safetensors;
writes only new files:

    tests/fixtures/lora/t5-tiny-lora-qv/     PeftModel.save_pretrained output (adapter_config.json,
    tests/fixtures/lora/t5-tiny-lora-qvwo/   adapter_model.safetensors; peft's README.md model card removed)
    tests/fixtures/reference/lora-qv.{safetensors,json}, lora-qvwo.{safetensors,json}
    tests/fixtures/reference/peft_param_counts.json      flan-t5-base + LoRA r=32 / r=8 (meta device)
    tests/fixtures/reference/sft.{safetensors,json}      3-example SFT batch, labels, loss, logits
    tests/fixtures/reference/adamw_full.{safetensors,json}  full fine-tune: 2 AdamW steps with grad clipping
    tests/fixtures/reference/adamw_lora.{safetensors,json}  LoRA (qv adapter) : 2 AdamW steps with grad clipping
"""

import os
import sys

# peft serialises LoraConfig.target_modules (a set) with list(set): make its order reproducible.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration
from transformers import get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
hf_logging.set_verbosity_error()
warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parent.parent
os.chdir(REPO)  # so the base model's name_or_path is the relative "tests/fixtures/t5-tiny"
BASE_REL = "tests/fixtures/t5-tiny"
BASE = REPO / BASE_REL
FIX = REPO / "tests" / "fixtures"
LORA = FIX / "lora"
REF = FIX / "reference"

MIN_MARGIN = 0.05
MAX_NEW_TOKENS = 20
T5_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
ADAPTER = "default"

LORA_CASES = {
    # name: (fixture dir, LoraConfig kwargs, first seed)
    "lora-qv": ("t5-tiny-lora-qv", dict(r=4, lora_alpha=8, target_modules=["q", "v"]), 5000),
    "lora-qvwo": ("t5-tiny-lora-qvwo", dict(r=2, lora_alpha=4, target_modules=["q", "v", "wo"]), 6000),
}
LORA_REL_SCALE = 0.5  # std(scaling * B @ A) = LORA_REL_SCALE * std(W) for every adapted W

ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
MAX_NORM_FULL = 0.5
MAX_NORM_LORA = 0.5
AFTER2_FULL = ["shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight", "lm_head.weight",
               "decoder.block.2.layer.2.layer_norm.weight", "decoder.final_layer_norm.weight"]

SFT_DIALOGUES = [
    "#Person1#: Hi, Tom. Are you free this evening?\n#Person2#: Yes, why?\n"
    "#Person1#: Let's go to the movies together.\n#Person2#: Good idea. See you at seven.",
    "#Person1#: Excuse me, where is the bank?\n#Person2#: It is next to the post office.",
    "#Person1#: How was your trip to the beach?\n#Person2#: It was great, but the weather was too hot.\n"
    "#Person1#: Did you swim?\n#Person2#: Yes, every day. I also read two books.\n"
    "#Person1#: That sounds nice. I want to go next summer.",
]
SFT_SUMMARIES = [
    "#Person1# invites Tom to the movies this evening.",
    "#Person2# tells #Person1# the way.",
    "#Person2# had a great trip to the beach and #Person1# wants to go next summer.",
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def save_tensors(name, tensors):
    tensors = {k: (v.detach().contiguous().long() if not v.is_floating_point() else v.detach().contiguous().float())
               for k, v in tensors.items()}
    save_file(tensors, str(REF / f"{name}.safetensors"))
    return {k: dict(shape=list(v.shape), dtype=str(v.dtype).replace("torch.", "")) for k, v in tensors.items()}


def stored_names(path):
    with safe_open(str(path), "pt") as h:
        return {k: dict(shape=list(h.get_slice(k).get_shape()), dtype=h.get_slice(k).get_dtype())
                for k in sorted(h.keys())}


def top2_margin(x):
    v = torch.topk(x.float(), 2, dim=-1).values
    return v[..., 0] - v[..., 1]


def load_base(**kw):
    model = T5ForConditionalGeneration.from_pretrained(BASE_REL, **kw)
    assert model.name_or_path == BASE_REL, model.name_or_path
    return model


def tokenizer():
    return PreTrainedTokenizerFast(tokenizer_file=str(BASE / "tokenizer.json"), pad_token="<pad>",
                                   eos_token="</s>", unk_token="<unk>")


def lora_config(kw):
    return LoraConfig(lora_dropout=0.05, bias="none", task_type="SEQ_2_SEQ_LM", **kw)


def lora_layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def disable_dropout(model):
    """Every nn.Dropout (T5's own and peft's lora_dropout) gets p = 0; returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
            n += 1
    return n


# ----------------------------------------------------------------------------------------------
# 1. LoRA adapters
# ----------------------------------------------------------------------------------------------

def randomize_lora(pm, seed):
    """Overwrite lora_A and lora_B (peft: kaiming A, zero B) with seeded values, per adapted Linear W:
    A = N(0,1)/sqrt(in), B = c * N(0,1) with c so that std(scaling * B @ A) = LORA_REL_SCALE * std(W)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, mod in lora_layers(pm):
            A = mod.lora_A[ADAPTER].weight
            B = mod.lora_B[ADAPTER].weight
            W = mod.get_base_layer().weight
            s = mod.scaling[ADAPTER]
            a = torch.randn(A.shape, generator=g) / A.shape[1] ** 0.5
            b = torch.randn(B.shape, generator=g)
            c = LORA_REL_SCALE * W.std() / (s * (b @ a).std())
            A.copy_(a)
            B.copy_(b * c)


def greedy(model, inp):
    with torch.no_grad():
        out = model.generate(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"],
                             max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1, output_scores=True,
                             return_dict_in_generate=True)
    ids = out.sequences[:, 1:]
    scores = torch.stack(out.scores, dim=1)
    margins, finished = [], []
    for b in range(ids.shape[0]):
        row, done = [], None
        for s in range(ids.shape[1]):
            assert scores[b, s].argmax().item() == ids[b, s].item()
            row.append(top2_margin(scores[b, s]).item())
            if ids[b, s].item() == 1:
                done = s + 1
                break
        margins.append(row)
        finished.append(done)
    return ids, margins, finished


def check_lora(pm, inp, base_ids, tok_size):
    with torch.no_grad():
        logits = pm(**inp).logits
    lm = top2_margin(logits).min().item()
    if lm < MIN_MARGIN:
        return f"logits margin {lm:.3f}", None
    ids, margins, finished = greedy(pm, inp)
    gm = min(m for row in margins for m in row)
    if gm < MIN_MARGIN:
        return f"greedy margin {gm:.3f}", None
    if any(f == 1 for f in finished):
        return "EOS at step 1", None
    for b in range(ids.shape[0]):
        n = finished[b] or ids.shape[1]
        if any(t == 0 or t >= tok_size for t in ids[b, :n].tolist()):
            return "generated pad / out-of-tokenizer id", None
    if max(f or MAX_NEW_TOKENS + 1 for f in finished) < 8:
        return f"greedy too short {finished}", None
    for b in range(ids.shape[0]):
        n = min(5, ids.shape[1])
        if torch.equal(ids[b, :n], base_ids[b, :n]):
            return f"row {b} starts like the base model", None
    return "ok", dict(ids=ids, margins=margins, finished=finished, logits_margin=lm)


def build_lora(name, ref_in, base_ids, tok_size):
    dirname, kw, seed0 = LORA_CASES[name]
    for seed in range(seed0, seed0 + 100):
        pm = get_peft_model(load_base(), lora_config(kw)).eval()
        randomize_lora(pm, seed)
        why, info = check_lora(pm, ref_in, base_ids, tok_size)
        if info is not None:
            log(f"[{name}] seed {seed}: ok (finished {info['finished']})")
            break
        log(f"[{name}] seed {seed}: rejected ({why})")
    else:
        raise SystemExit(f"{name}: no seed satisfied the constraints")
    d = LORA / dirname
    if d.exists():
        shutil.rmtree(d)
    pm.save_pretrained(str(d))
    (d / "README.md").unlink()  # peft's model-card template; not part of the adapter
    assert sorted(p.name for p in d.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    cfg = json.loads((d / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == BASE_REL, cfg["base_model_name_or_path"]
    return seed


def lora_references(name, ref_in, base_ids, tok_size, seed):
    dirname, kw, _ = LORA_CASES[name]
    d = LORA / dirname
    pm = PeftModel.from_pretrained(load_base(), str(d)).eval()
    # which Linear layers are adapted
    adapted = [n for n, _ in lora_layers(pm)]
    assert adapted, name
    for n, m in pm.named_modules():
        leaf = n.split(".")[-1]
        if leaf in ("q", "v") or (leaf == "wo" and "wo" in kw["target_modules"]):
            assert isinstance(m, LoraLayer), (name, n)
        if leaf in ("k", "o", "wi_0", "wi_1", "lm_head") or (leaf == "wo" and "wo" not in kw["target_modules"]):
            assert not isinstance(m, LoraLayer), (name, n)
    why, info = check_lora(pm, ref_in, base_ids, tok_size)
    assert info is not None, (name, why)
    with torch.no_grad():
        logits = pm(**ref_in).logits
    # the saved adapter round-trips exactly
    sd = get_peft_model_state_dict(pm)
    stored = load_file(str(d / "adapter_model.safetensors"))
    assert sorted(sd) == sorted(stored) and all(torch.equal(sd[k], stored[k]) for k in sd)
    merged = pm.merge_and_unload()
    assert not lora_layers(merged)
    with torch.no_grad():
        merged_logits = merged(**ref_in).logits
    merge_diff = (merged_logits - logits).abs().max().item()
    assert merge_diff < 1e-3, merge_diff
    m_ids, _, _ = greedy(merged, ref_in)
    assert torch.equal(m_ids, info["ids"])
    base = load_base().eval()
    with torch.no_grad():
        base_logits = base(**ref_in).logits
    tensors = dict(input_ids=ref_in["input_ids"], attention_mask=ref_in["attention_mask"],
                   decoder_input_ids=ref_in["decoder_input_ids"], logits=logits, greedy_ids=info["ids"],
                   merged_logits=merged_logits)
    shapes = save_tensors(name, tensors)
    cfg = json.loads((d / "adapter_config.json").read_text())
    meta = dict(
        name=name,
        adapter_dir=f"tests/fixtures/lora/{dirname}",
        base_model=BASE_REL,
        peft_version=__import__("peft").__version__,
        transformers_version=__import__("transformers").__version__,
        torch_version=torch.__version__,
        seed=seed,
        lora_config=dict(r=cfg["r"], lora_alpha=cfg["lora_alpha"], scaling=cfg["lora_alpha"] / cfg["r"],
                         target_modules=sorted(cfg["target_modules"]), lora_dropout=cfg["lora_dropout"],
                         bias=cfg["bias"], task_type=cfg["task_type"], use_rslora=cfg["use_rslora"],
                         use_dora=cfg["use_dora"], fan_in_fan_out=cfg["fan_in_fan_out"]),
        init_note=(f"peft's init replaced: lora_A = N(0,1)/sqrt(in_features), lora_B = c*N(0,1), c per layer so "
                   f"that std(scaling * B @ A) = {LORA_REL_SCALE} * std(W) (torch.Generator seeded with `seed`, "
                   "layers in named_modules order, A drawn before B)"),
        delta_note="adapted Linear: y = W x + scaling * B (A (dropout(x))), scaling = lora_alpha / r; "
                   "lora_A.weight [r, in], lora_B.weight [out, r]",
        adapted_modules=[n.removeprefix("base_model.model.") for n in adapted],
        adapter_tensors=stored_names(d / "adapter_model.safetensors"),
        inputs_note="input_ids / attention_mask / decoder_input_ids are those of reference/t5-tiny.safetensors",
        eval_note="model.eval(): dropout (incl. lora_dropout) off",
        generation=dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1, decoder_start_token_id=0,
                        eos_token_id=1, pad_token_id=0,
                        note="greedy_ids = generate(...).sequences[:, 1:]; rows that emitted EOS are padded with 0"),
        greedy_ids=info["ids"].tolist(),
        greedy_finished_at_step=info["finished"],
        greedy_margins=[[round(m, 4) for m in row] for row in info["margins"]],
        greedy_margin_min=round(min(m for row in info["margins"] for m in row), 4),
        base_greedy_ids=base_ids.tolist(),
        logits_argmax=logits.argmax(-1).tolist(),
        logits_min_margin=round(info["logits_margin"], 4),
        logits_margin_note="top-1 minus top-2 of every [row, position] of `logits` is >= this",
        logits_max_abs_diff_vs_base=round((logits - base_logits).abs().max().item(), 4),
        logits_argmax_changed_vs_base=int((logits.argmax(-1) != base_logits.argmax(-1)).sum().item()),
        merged_max_abs_diff=merge_diff,
        merged_note="merged_logits: PeftModel.merge_and_unload() (W += scaling * B @ A), same inputs; greedy "
                    "ids of the merged model equal greedy_ids",
        margin_threshold=MIN_MARGIN,
        tensors=shapes,
    )
    write_json(REF / f"{name}.json", meta)
    log(f"[{name}] greedy {info['ids'].tolist()}  merged diff {merge_diff:.2e}")
    return meta


# ----------------------------------------------------------------------------------------------
# 2. flan-t5-base + LoRA parameter counts
# ----------------------------------------------------------------------------------------------

def peft_param_counts():
    out = {}
    expected = {32: (3_538_944, 251_116_800), 8: (884_736, 248_462_592)}
    for r in (32, 8):
        cfg = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
                       feed_forward_proj="gated-gelu", tie_word_embeddings=False)
        with torch.device("meta"):
            model = T5ForConditionalGeneration(cfg)
            base_total = sum(p.numel() for p in model.parameters())
            pm = get_peft_model(model, LoraConfig(r=r, lora_alpha=32, target_modules=["q", "v"], lora_dropout=0.05,
                                                  bias="none", task_type="SEQ_2_SEQ_LM"))
        trainable, total = pm.get_nb_trainable_parameters()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            pm.print_trainable_parameters()
        assert (trainable, total) == expected[r], (r, trainable, total)
        n_layers = len(lora_layers(pm))
        out[f"r{r}"] = dict(
            lora_config=dict(r=r, lora_alpha=32, target_modules=["q", "v"], lora_dropout=0.05, bias="none",
                             task_type="SEQ_2_SEQ_LM"),
            trainable=trainable,
            all=total,
            base_total=base_total,
            adapted_linears=n_layers,
            per_linear=r * (768 + 768),
            print_trainable_parameters=buf.getvalue(),
        )
        log(f"[peft counts] r={r}: {buf.getvalue().strip()}")
    doc = dict(
        model="google/flan-t5-base shapes: T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, "
              "num_layers=12 (decoder 12), num_heads=12, feed_forward_proj='gated-gelu', tie_word_embeddings=False)",
        built_on="torch.device('meta')",
        peft_version=__import__("peft").__version__,
        note="trainable/all = PeftModel.get_nb_trainable_parameters(); all = base 247,577,856 + LoRA params; "
             "adapted Linears: 12 encoder self-attn + 12 decoder self-attn + 12 decoder cross-attn, q and v each "
             "= 72, each r*(768+768); print_trainable_parameters is the exact stdout text (trailing newline)",
        **out,
    )
    write_json(REF / "peft_param_counts.json", doc)


# ----------------------------------------------------------------------------------------------
# 3. SFT batch and loss
# ----------------------------------------------------------------------------------------------

def sft_batch(tok):
    sources = [T5_PROMPT.format(dialogue=d) for d in SFT_DIALOGUES]
    enc = tok(sources, padding="longest", truncation=True, max_length=512, return_tensors="pt")
    tgt = tok(text_target=SFT_SUMMARIES, padding="longest", truncation=True, max_length=128, return_tensors="pt")
    labels = tgt["input_ids"].clone()
    labels[labels == tok.pad_token_id] = -100
    for ids in (enc["input_ids"], tgt["input_ids"]):
        assert (ids != tok.unk_token_id).all(), "texts must tokenize without <unk>"
    # the batch must exercise padding on both sides
    assert len(set(enc["attention_mask"].sum(1).tolist())) == 3
    assert len(set(tgt["attention_mask"].sum(1).tolist())) == 3
    return dict(sources=sources, input_ids=enc["input_ids"].long(), attention_mask=enc["attention_mask"].long(),
                labels=labels.long(), target_attention_mask=tgt["attention_mask"].long())


def sft_reference(tok, batch):
    model = load_base().eval()
    dec = model._shift_right(batch["labels"])
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out2 = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=dec)
    assert torch.equal(out.logits, out2.logits)
    logits = out.logits
    # loss = mean token NLL over labels != -100
    mask = batch["labels"] != -100
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                                            ignore_index=-100, reduction="none").view(batch["labels"].shape)
    assert torch.allclose(nll[mask].mean(), out.loss, atol=1e-6, rtol=1e-6)
    tensors = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                   decoder_input_ids=dec, loss=out.loss.reshape(1), logits=logits, token_nll=nll * mask)
    shapes = save_tensors("sft", tensors)
    meta = dict(
        name="sft",
        base_model=BASE_REL,
        transformers_version=__import__("transformers").__version__,
        torch_version=torch.__version__,
        tokenizer=f"PreTrainedTokenizerFast(tokenizer_file={BASE_REL}/tokenizer.json, pad_token='<pad>', "
                  "eos_token='</s>', unk_token='<unk>')",
        prompt_template=T5_PROMPT,
        dialogues=SFT_DIALOGUES,
        sources=batch["sources"],
        summaries=SFT_SUMMARIES,
        source_tokenization="tok(sources, padding='longest', truncation=True, max_length=512) (trailing </s>)",
        target_tokenization="tok(text_target=summaries, padding='longest', truncation=True, max_length=128); "
                            "labels = input_ids with pad (0) replaced by -100",
        source_lengths=batch["attention_mask"].sum(1).tolist(),
        target_lengths=batch["target_attention_mask"].sum(1).tolist(),
        input_ids=batch["input_ids"].tolist(),
        labels=batch["labels"].tolist(),
        decoder_input_ids_note="model._shift_right(labels): decoder_start_token_id 0 prepended, last label "
                               "dropped, -100 -> pad 0; no decoder_attention_mask (positions past the target end see "
                               "pads but are ignored by the loss; causal, so earlier positions are unaffected)",
        loss=out.loss.item(),
        loss_note="model(input_ids, attention_mask, labels).loss in eval mode (dropout off): "
                  "CrossEntropyLoss(ignore_index=-100), mean over the non-ignored label tokens of the whole batch",
        num_label_tokens=int(mask.sum().item()),
        token_nll_note="token_nll[b, t] = -log softmax(logits[b, t])[labels[b, t]], 0 where labels == -100",
        tensors=shapes,
    )
    write_json(REF / "sft.json", meta)
    log(f"[sft] loss {out.loss.item():.6f}, src {batch['input_ids'].shape}, labels {batch['labels'].shape}")
    return out.loss.item()


# ----------------------------------------------------------------------------------------------
# 4. AdamW steps
# ----------------------------------------------------------------------------------------------

def train_step(model, params, opt, batch, max_norm):
    opt.zero_grad(set_to_none=True)
    loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    loss.backward()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm)
    assert total.item() > max_norm, (total.item(), max_norm)
    opt.step()
    return loss.detach(), total.detach()


def schedule_values():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], **ADAMW)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=10)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    return lrs


def adamw_full(batch, sft_loss):
    torch.manual_seed(0)
    model = load_base(dropout_rate=0.0)
    model.train()
    n_drop = disable_dropout(model)
    assert model.config.dropout_rate == 0.0 and n_drop > 0
    named = list(model.named_parameters())  # shared.weight once (encoder/decoder embed_tokens are the same tensor)
    names = [n for n, _ in named]
    assert "shared.weight" in names and "lm_head.weight" in names and "encoder.embed_tokens.weight" not in names
    assert model.encoder.embed_tokens.weight is model.shared.weight
    assert model.lm_head.weight is not model.shared.weight
    params = [p for _, p in named]
    before = {n: p.detach().clone() for n, p in named}
    opt = torch.optim.AdamW(params, foreach=False, **ADAMW)
    loss1, norm1 = train_step(model, params, opt, batch, MAX_NORM_FULL)
    assert abs(loss1.item() - sft_loss) < 1e-5, (loss1.item(), sft_loss)  # train mode w/o dropout == eval
    tensors = {"loss": loss1.reshape(1), "grad_norm": norm1.reshape(1)}
    for n, p in named:
        tensors[f"after.{n}"] = p.detach().clone()
    grads_kept = {}
    for n, p in named:
        if n in AFTER2_FULL:
            grads_kept[n] = p.grad.detach().clone()  # clipped grads of step 1
    loss2, norm2 = train_step(model, params, opt, batch, MAX_NORM_FULL)
    tensors["loss2"] = loss2.reshape(1)
    tensors["grad_norm2"] = norm2.reshape(1)
    pd = dict(named)
    for n in AFTER2_FULL:
        tensors[f"after2.{n}"] = pd[n].detach().clone()
        tensors[f"clipped_grad.{n}"] = grads_kept[n]
    changed = sum(1 for n, p in named if not torch.equal(tensors[f"after.{n}"], before[n]))
    assert changed == len(named)
    shapes = save_tensors("adamw_full", tensors)
    lrs = schedule_values()
    meta = dict(
        name="adamw_full",
        base_model=BASE_REL,
        torch_version=torch.__version__,
        transformers_version=__import__("transformers").__version__,
        batch="the SFT batch of reference/sft.safetensors (input_ids, attention_mask, labels)",
        mode="model.train() with T5Config.dropout_rate = 0 and every nn.Dropout p = 0 (so loss == sft loss)",
        dropout_modules_zeroed=n_drop,
        optimizer=dict(type="torch.optim.AdamW", params="model.parameters() (no decay groups: weight decay applies "
                       "to every tensor, incl. layer norms and embeddings)", foreach=False, amsgrad=False,
                       maximize=False, **{k: list(v) if isinstance(v, tuple) else v for k, v in ADAMW.items()}),
        adamw_note="torch AdamW, per tensor, step t: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; "
                   "p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps); constant lr (no scheduler)",
        step="zero_grad; loss = model(input_ids, attention_mask, labels).loss; loss.backward(); "
             f"total = clip_grad_norm_(params, max_norm={MAX_NORM_FULL}); opt.step()",
        max_norm=MAX_NORM_FULL,
        clip_note="grad_norm = L2 norm over all grads before clipping (clip_grad_norm_'s return); grads were "
                  "multiplied by max_norm / (grad_norm + 1e-6) (clip triggered)",
        loss=loss1.item(),
        grad_norm=norm1.item(),
        clip_coef=MAX_NORM_FULL / (norm1.item() + 1e-6),
        loss2=loss2.item(),
        grad_norm2=norm2.item(),
        clip_coef2=MAX_NORM_FULL / (norm2.item() + 1e-6),
        param_names=names,
        num_param_tensors=len(names),
        tied_note="shared.weight is encoder.embed_tokens.weight and decoder.embed_tokens.weight (one tensor, stored "
                  "once as after.shared.weight; its grad sums both uses); lm_head.weight is untied (separate)",
        after2_params=AFTER2_FULL,
        tensor_notes={
            "after.<name>": "every parameter after step 1 (HF state-dict names)",
            "after2.<name>": "selected parameters after step 2 (same batch again; bias correction t=2)",
            "clipped_grad.<name>": "grad of step 1 after clipping (what AdamW step 1 consumed)",
            "loss, grad_norm": "step 1 (before the update)", "loss2, grad_norm2": "step 2 (after update 1)",
        },
        linear_schedule=dict(
            call="get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=10), base lr 1e-3",
            note="lr[k] = scheduler.get_last_lr() after k scheduler.step() calls (k = 0..10); lr[0] = 0 is the lr "
                 "used by the first optimizer step (LambdaLR sets it at construction)",
            lr=lrs,
        ),
        tensors=shapes,
    )
    write_json(REF / "adamw_full.json", meta)
    log(f"[adamw_full] loss {loss1.item():.6f} norm {norm1.item():.4f} -> loss2 {loss2.item():.6f} "
        f"norm2 {norm2.item():.4f}; lrs {lrs}")


def adamw_lora(batch):
    torch.manual_seed(0)
    dirname = LORA_CASES["lora-qv"][0]
    base = load_base(dropout_rate=0.0)
    pm = PeftModel.from_pretrained(base, str(LORA / dirname), is_trainable=True)
    pm.train()
    lora_drops = [m.lora_dropout[ADAPTER] for _, m in lora_layers(pm)]
    assert all(isinstance(d, torch.nn.Dropout) and d.p == 0.05 for d in lora_drops)
    n_drop = disable_dropout(pm)
    assert all(d.p == 0.0 for d in lora_drops)
    named = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    assert all(".lora_A." in n or ".lora_B." in n for n, _ in named)
    key_of = {n: n.replace(f".{ADAPTER}.", ".") for n, _ in named}  # peft drops the adapter name when saving
    stored = load_file(str(LORA / dirname / "adapter_model.safetensors"))
    assert sorted(key_of.values()) == sorted(stored)
    frozen_before = {n: p.detach().clone() for n, p in pm.named_parameters() if not p.requires_grad}
    params = [p for _, p in named]
    opt = torch.optim.AdamW(params, foreach=False, **ADAMW)
    loss1, norm1 = train_step(pm, params, opt, batch, MAX_NORM_LORA)
    tensors = {"loss": loss1.reshape(1), "grad_norm": norm1.reshape(1)}
    sd = get_peft_model_state_dict(pm)
    for n, p in named:
        k = key_of[n]
        assert torch.equal(sd[k], p)
        assert not torch.equal(p, stored[k])
        tensors[f"after.{k}"] = p.detach().clone()
    loss2, norm2 = train_step(pm, params, opt, batch, MAX_NORM_LORA)
    tensors["loss2"] = loss2.reshape(1)
    tensors["grad_norm2"] = norm2.reshape(1)
    for n, p in named:
        tensors[f"after2.{key_of[n]}"] = p.detach().clone()
    for n, p in pm.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen_before[n]), n
    shapes = save_tensors("adamw_lora", tensors)
    meta = dict(
        name="adamw_lora",
        adapter_dir=f"tests/fixtures/lora/{dirname}",
        base_model=BASE_REL,
        peft_version=__import__("peft").__version__,
        torch_version=torch.__version__,
        load="PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base, dropout_rate=0), adapter, "
             "is_trainable=True); .train(); every nn.Dropout (T5's and lora_dropout's) p = 0",
        dropout_modules_zeroed=n_drop,
        batch="the SFT batch of reference/sft.safetensors (input_ids, attention_mask, labels)",
        optimizer=dict(type="torch.optim.AdamW", params="trainable parameters only (lora_A / lora_B)",
                       foreach=False, **{k: list(v) if isinstance(v, tuple) else v for k, v in ADAMW.items()}),
        step="zero_grad; loss = model(input_ids, attention_mask, labels).loss; loss.backward(); "
             f"total = clip_grad_norm_(trainable, max_norm={MAX_NORM_LORA}); opt.step()",
        max_norm=MAX_NORM_LORA,
        loss=loss1.item(),
        grad_norm=norm1.item(),
        clip_coef=MAX_NORM_LORA / (norm1.item() + 1e-6),
        loss2=loss2.item(),
        grad_norm2=norm2.item(),
        clip_coef2=MAX_NORM_LORA / (norm2.item() + 1e-6),
        adapter_keys=sorted(key_of.values()),
        key_note="after.<key> / after2.<key>: key exactly as in adapter_model.safetensors "
                 "(named_parameters name minus the '.default' adapter name); base weights unchanged (asserted)",
        tensors=shapes,
    )
    write_json(REF / "adamw_lora.json", meta)
    log(f"[adamw_lora] loss {loss1.item():.6f} norm {norm1.item():.4f} -> loss2 {loss2.item():.6f} "
        f"norm2 {norm2.item():.4f}")


def main():
    REF.mkdir(parents=True, exist_ok=True)
    LORA.mkdir(parents=True, exist_ok=True)
    t5ref = load_file(str(REF / "t5-tiny.safetensors"))
    ref_in = dict(input_ids=t5ref["input_ids"], attention_mask=t5ref["attention_mask"],
                  decoder_input_ids=t5ref["decoder_input_ids"])
    base_ids = t5ref["greedy_ids"]
    tok = tokenizer()
    tok_size = len(tok)
    base = load_base().eval()
    b_ids, _, _ = greedy(base, ref_in)
    assert torch.equal(b_ids, base_ids), "t5-tiny fixture does not reproduce its greedy_ids"

    for name in LORA_CASES:
        seed = build_lora(name, ref_in, base_ids, tok_size)
        lora_references(name, ref_in, base_ids, tok_size, seed)

    peft_param_counts()
    batch = sft_batch(tok)
    sft_loss = sft_reference(tok, batch)
    adamw_full(batch, sft_loss)
    adamw_lora(batch)
    log("done")


if __name__ == "__main__":
    main()
