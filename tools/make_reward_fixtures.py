#!/usr/bin/env python3
"""Reward-model parity fixtures: one trl 0.11.4 `RewardTrainer` step on a tiny one-output RoBERTa.

Run by hand from the repository root, after tools/make_fixtures.py (it reads roberta-tiny):

    /root/venv/bin/python tools/make_reward_fixtures.py      # a few seconds on CPU

Reference stack: torch 2.5.1, transformers 4.46.3, trl 0.11.4 (tools/requirements.txt). CPU only,
one thread, deterministic algorithms, fixed seeds. Writes:

    tests/fixtures/roberta-tiny-reward/     roberta-tiny with a fresh one-output head (num_labels 1,
                                            id2label {0: "preferred"}), dropout 0 so a step is
                                            deterministic; config.json, model.safetensors, tokenizer.json
    tests/fixtures/reference/reward_step.{safetensors,json}
        for each case (`plain`: no margin, no centering; `center`: center_rewards_coefficient 0.1;
        `margin`: a margin column, each pair's own margin, see `Recording`), one RewardTrainer step on the 4 pairs below as one batch
        (lr 1e-3 constant for this step, AdamW eps 1e-8, weight decay 0, max_grad_norm 1.0):
        `{case}.loss`, `{case}.grad_norm` (before clipping), `{case}.rewards_chosen`,
        `{case}.rewards_rejected` (the initial model's rewards), `{case}.grad.<hf name>` (unclipped
        gradients; all in `plain`, all but the word embeddings' in the others), `plain.after.<hf name>`
        (every parameter after the step); and `ids_chosen.{i}` /
        `ids_rejected.{i}` (the token ids of each text, <s> ... </s>).
"""

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["WANDB_DISABLED"] = "true"

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast, RobertaForSequenceClassification
from transformers.utils import logging as hf_logging
import transformers
import trl
from trl import RewardConfig, RewardTrainer

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
hf_logging.set_verbosity_error()
warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "tests" / "fixtures"
BASE = FIX / "roberta-tiny"
OUT_MODEL = FIX / "roberta-tiny-reward"
REF = FIX / "reference"
LABEL = "preferred"
LR = 1e-3

PROMPT = "{d}\nSummary: "
PAIRS = [
    # (dialogue, chosen summary, rejected summary, margin)
    ("#Person1#: hi. #Person2#: hello.", "They greet.", "They greet and talk a lot.", 0.5),
    ("#Person1#: I lost my key.", "A key is lost.", "#Person1# is angry.", 1.0),
    ("#Person1#: Lunch? #Person2#: Sure.", "They go to lunch together.", "Lunch.", 0.0),
    ("#Person1#: The bus is late.", "The bus is late.", "#Person1# and #Person2# talk.", 2.0),
]


def log(*a):
    print(*a, flush=True)


def tokenizer():
    tok = PreTrainedTokenizerFast(tokenizer_file=str(BASE / "tokenizer.json"))
    tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token = "<pad>", "<s>", "</s>", "<unk>"
    assert tok.pad_token_id == 1
    return tok


def build_model():
    torch.manual_seed(0)
    model = RobertaForSequenceClassification.from_pretrained(
        BASE,
        num_labels=1,
        id2label={0: LABEL},
        label2id={LABEL: 0},
        ignore_mismatched_sizes=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    assert model.classifier.out_proj.weight.shape == (1, model.config.hidden_size)
    if OUT_MODEL.exists():
        shutil.rmtree(OUT_MODEL)
    model.save_pretrained(OUT_MODEL, safe_serialization=True)
    shutil.copy(BASE / "tokenizer.json", OUT_MODEL / "tokenizer.json")
    cfg_path = OUT_MODEL / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("_name_or_path", None)  # an absolute path of this machine
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return OUT_MODEL


def encode(tok_raw, text):
    ids = tok_raw.encode(text).ids
    assert ids[0] == 0 and ids[-1] == 2 and len(ids) <= 64, (text, ids)
    return ids


def dataset(tok_raw, with_margin):
    rows = {"input_ids_chosen": [], "attention_mask_chosen": [], "input_ids_rejected": [],
            "attention_mask_rejected": []}
    if with_margin:
        rows["margin"] = []
    for d, c, r, m in PAIRS:
        ic, ir = encode(tok_raw, PROMPT.format(d=d) + c), encode(tok_raw, PROMPT.format(d=d) + r)
        rows["input_ids_chosen"].append(ic)
        rows["attention_mask_chosen"].append([1] * len(ic))
        rows["input_ids_rejected"].append(ir)
        rows["attention_mask_rejected"].append([1] * len(ir))
        if with_margin:
            rows["margin"].append(m)
    return Dataset.from_dict(rows)


class Recording(RewardTrainer):
    """Keeps the loss and the unclipped gradients of the (single) training step.

    trl 0.11.4's `compute_loss` predates transformers 4.46's `num_items_in_batch` argument (fixed in
    trl 0.12): it is accepted here and dropped, which is what trl's own fix does for this loss.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "margin" in inputs:
            # trl 0.11.4 subtracts the margins, shape [B], from rewards of shape [B, 1]: broadcasting
            # gives [B, B], every pair's reward difference minus every pair's margin. detox applies
            # each pair's own margin (the formula as trl documents it): here the margins get the
            # rewards' shape; `broadcast_loss` in the JSON keeps what trl 0.11.4 itself computes.
            inputs = dict(inputs, margin=inputs["margin"].unsqueeze(1))
        return super().compute_loss(model, inputs, return_outputs=return_outputs)

    def training_step(self, model, inputs, *rest):
        loss = super().training_step(model, inputs, *rest)
        self.recorded_loss = loss.detach().clone()
        self.recorded_grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        return loss


def run_case(case, model_dir, tok, tok_raw, with_margin, center):
    model = RobertaForSequenceClassification.from_pretrained(model_dir)
    ds = dataset(tok_raw, with_margin)
    # The initial rewards, as the trainer's forward computes them.
    model.eval()
    with torch.no_grad():
        from trl.trainer.utils import RewardDataCollatorWithPadding
        batch = RewardDataCollatorWithPadding(tok, max_length=64)([ds[i] for i in range(len(ds))])
        rc = model(input_ids=batch["input_ids_chosen"], attention_mask=batch["attention_mask_chosen"]).logits
        rr = model(input_ids=batch["input_ids_rejected"], attention_mask=batch["attention_mask_rejected"]).logits
    with tempfile.TemporaryDirectory() as tmp:
        args = RewardConfig(
            output_dir=tmp,
            per_device_train_batch_size=len(PAIRS),
            max_steps=1,
            learning_rate=LR,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            max_grad_norm=1.0,
            max_length=64,
            center_rewards_coefficient=center,
            remove_unused_columns=False,
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            seed=0,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = Recording(model=model, args=args, tokenizer=tok, train_dataset=ds)
        out = trainer.train()
        grad_norm = next(h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h)
    loss = trainer.recorded_loss
    # the loss of the step, recomputed from the initial rewards by trl's formula
    diff = rc - rr - (torch.tensor([p[3] for p in PAIRS]).unsqueeze(1) if with_margin else 0.0)
    want = -torch.nn.functional.logsigmoid(diff).mean()
    if center is not None:
        want = want + center * torch.mean((rc + rr) ** 2)
    broadcast = None
    if with_margin:
        m = torch.tensor([p[3] for p in PAIRS])
        broadcast = -torch.nn.functional.logsigmoid(rc - rr - m).mean()
        if center is not None:
            broadcast = broadcast + center * torch.mean((rc + rr) ** 2)
        broadcast = broadcast.item()
    assert abs(want.item() - loss.item()) < 1e-6, (want.item(), loss.item())
    tensors = {
        f"{case}.loss": loss.reshape(1).float(),
        f"{case}.grad_norm": torch.tensor([float(grad_norm)]),
        f"{case}.rewards_chosen": rc.reshape(-1).clone(),
        f"{case}.rewards_rejected": rr.reshape(-1).clone(),
    }
    # Every gradient and every updated parameter in `plain`; the other cases differ only in the loss,
    # so they keep the gradients (all but the word embeddings', to keep the file small).
    for n, g in trainer.recorded_grads.items():
        if case == "plain" or "word_embeddings" not in n:
            tensors[f"{case}.grad.{n}"] = g.contiguous()
    if case == "plain":
        for n, p in model.named_parameters():
            tensors[f"{case}.after.{n}"] = p.detach().clone().contiguous()
    log(f"[{case}] loss {loss.item():.6f} grad_norm {grad_norm:.6f} train_loss {out.training_loss:.6f}")
    return tensors, dict(loss=loss.item(), grad_norm=float(grad_norm), center_rewards_coefficient=center,
                         margin=with_margin, broadcast_loss=broadcast)


def main():
    model_dir = build_model()
    tok = tokenizer()
    tok_raw = Tokenizer.from_file(str(BASE / "tokenizer.json"))
    tensors, cases = {}, {}
    for i, (d, c, r, _) in enumerate(PAIRS):
        tensors[f"ids_chosen.{i}"] = torch.tensor(encode(tok_raw, PROMPT.format(d=d) + c), dtype=torch.int64)
        tensors[f"ids_rejected.{i}"] = torch.tensor(encode(tok_raw, PROMPT.format(d=d) + r), dtype=torch.int64)
    for case, with_margin, center in [("plain", False, None), ("center", False, 0.1), ("margin", True, None)]:
        t, meta = run_case(case, model_dir, tok, tok_raw, with_margin, center)
        tensors.update(t)
        cases[case] = meta
    save_file(tensors, REF / "reward_step.safetensors")
    meta = dict(
        name="reward_step",
        model="tests/fixtures/roberta-tiny-reward (roberta-tiny re-headed: num_labels 1, dropout 0)",
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        trl_version=trl.__version__,
        prompt=PROMPT,
        pairs=[dict(dialogue=d, chosen=c, rejected=r, margin=m) for d, c, r, m in PAIRS],
        text="prompt.format(d=dialogue) + summary, tokenized by the model's tokenizer.json (<s> ... </s>)",
        trainer=("trl.RewardTrainer, RewardConfig(per_device_train_batch_size=4, max_steps=1, "
                 f"learning_rate={LR}, lr_scheduler_type='constant', weight_decay=0, max_grad_norm=1.0, "
                 "max_length=64); the 4 pairs are one batch (RewardDataCollatorWithPadding, right padding)"),
        loss="-logsigmoid(r_chosen - r_rejected [- margin]).mean() [+ c * mean((r_chosen + r_rejected)^2)]",
        optimizer="torch AdamW (transformers' adamw_torch: betas 0.9/0.999, eps 1e-8), weight decay 0",
        cases=cases,
    )
    (REF / "reward_step.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log("wrote", REF / "reward_step.safetensors")


if __name__ == "__main__":
    main()
