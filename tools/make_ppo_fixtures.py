#!/usr/bin/env python3
"""Whole-step PPO references: trl 0.11.4's real `PPOTrainer.step` on t5-tiny + LoRA + value head.

Run by hand from the repository root with the reference venv (tools/requirements.txt):

    /work/venv/bin/python tools/make_ppo_fixtures.py

CPU only, single-threaded torch, deterministic algorithms, fixed seeds: the output is
deterministic. Nothing here re-implements trl: `PPOTrainer.step` runs unmodified; the script only
wraps trainer methods (call the original, keep a copy of what it returned) and
`numpy.random.permutation` (call the original, keep its result) to record intermediate values.

Setup of every case
-------------------
* base: T5ForConditionalGeneration.from_pretrained("tests/fixtures/t5-tiny", dropout_rate=0.0)
* LoRA: peft get_peft_model(LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"],
  lora_dropout=0.0, task_type="SEQ_2_SEQ_LM")); lora_A is peft's init under the case's torch seed,
  every lora_B is then overwritten with normal(0, 0.3) (so the policy differs from the
  adapter-disabled reference and the KL is non-zero). Saved as <case>/adapter/ (peft
  save_pretrained; base_model_name_or_path "tests/fixtures/t5-tiny"; peft's README.md removed).
* policy: trl AutoModelForSeq2SeqLMWithValueHead.from_pretrained(peft_model,
  summary_dropout_prob=0.0) (is_peft_model == True, so with ref_model=None trl's reference is the
  same model under `pretrained_model.disable_adapter()`); v_head.summary.weight [1, 64] ~
  normal(0, 0.5), v_head.summary.bias [1] = 0.1. Saved as <case>/v_head.safetensors.
* tokenizer: PreTrainedTokenizerFast(tokenizer_file="tests/fixtures/t5-tiny/tokenizer.json",
  pad "<pad>"=0, eos "</s>"=1), padding_side "right". Only pad id / padding side matter (trl's
  DataCollatorForLanguageModeling pads queries and responses separately, right, with 0 and
  attention_mask 0).
* PPOTrainer(config, model=policy, ref_model=None, tokenizer=tok); numpy is re-seeded with the
  case seed right after the constructor (trl's constructor calls set_seed(config.seed)).
* `step` is called twice, with different queries / responses / scores.

Files (per case <case> in {default, full_scaled}) under tests/fixtures/ppo/<case>/
---------------------------------------------------------------------------------------
* adapter/adapter_config.json, adapter/adapter_model.safetensors   initial LoRA adapter (lora_A: peft's
                            init; lora_B ~ normal(0, 0.3))
* v_head.safetensors        initial value head: v_head.summary.weight [1, 64], v_head.summary.bias [1]
* params_step1.safetensors  trainable parameters after step 1: every name of
                            peft.get_peft_model_state_dict (e.g.
                            base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight)
                            plus v_head.summary.weight / v_head.summary.bias
* params_step2.safetensors  the same after step 2
* step.json                 see below

step.json (tensor-derived floats are float32 values written as full-precision JSON numbers; the
config, kl_coef_init / kl_coef_used / kl_coef_after and stats["objective/kl_coef"] are Python
float64; every value is finite; "2-D" means a list of rows, one per batch row; T = longest
response (decoder_input_ids width) - 1)
-------------------------------------------------------------------------------------------
{
  "case": str,
  "notes": [str, ...],                      free text: what was changed from the brief and why
  "config": {batch_size, mini_batch_size, gradient_accumulation_steps, backward_batch_size,
             ppo_epochs, learning_rate, adap_kl_ctrl, init_kl_coef, kl_penalty, target, horizon,
             gamma, lam, cliprange, cliprange_value, vf_coef, max_grad_norm (null if None),
             early_stopping, target_kl, ratio_threshold, score_clip (null if None),
             whiten_rewards, use_score_scaling, use_score_norm, seed},
  "lora": {"r", "lora_alpha", "target_modules", "scaling"},
  "kl_coef_init": float,
  "steps": [ {                              one per `step` call, in order
    "queries":   [[int]] ragged, each ends with eos 1,
    "responses": [[int]] ragged, each starts with decoder start 0; all but one end with eos 1,
    "scores":    [float] bs, as passed to step,
    "scores_used": [float] bs, after trl's scaling / clipping (what compute_rewards received),
    "model_inputs": {"input_ids", "attention_mask", "decoder_input_ids",
                     "decoder_attention_mask"}: 2-D ints, trl's collator output (right padded),
    "permutations": [[int] bs, ...]         np.random.permutation(bs) results, one per epoch run,
    "logprobs":       2-D [bs, T]  rollout logprobs (policy, no grad) = batched_forward_pass #1,
    "values_rollout": 2-D [bs, T]  rollout values as batched_forward_pass returned them (unmasked),
    "masks":          2-D [bs, T]  ints, batched_forward_pass #1 masks,
    "ref_logprobs":   2-D [bs, T]  batched_forward_pass #2 (adapter disabled),
    "rewards", "non_score_reward", "kls": 2-D [bs, T]  compute_rewards outputs (for kl_penalty
                   "full" the kls are F.kl_div over the vocab summed, computed from full logits),
    "kl_coef_used": float, kl_ctl.value during this step,
    "values", "advantages", "returns": 2-D [bs, T]  compute_advantages outputs (values masked),
    "minibatches": [ {                      one per `loss` call, in order
        "epoch": int, "rows": [int]        (row indices into the batch, from the permutation),
        "new_logprobs": 2-D [mb, T], "vpreds": 2-D [mb, T]  (the training forward pass),
        "pg_loss": float, "vf_loss": float  (the second value `loss` returned = vf_coef * vf_loss),
        "stats": {scalar entries of `loss`'s flattened stats: loss/policy, loss/value, loss/total,
                  policy/entropy, policy/approxkl, policy/policykl, policy/clipfrac,
                  policy/advantages_mean, returns/mean, returns/var, val/vpred, val/error,
                  val/clipfrac, val/mean, val/var},
        "avg_ratio": float                 masked_mean(exp(new_logprobs - old logprobs), mask), the value
                                           `loss` compares with ratio_threshold,
        "ratio_threshold_hit": bool        avg_ratio > ratio_threshold: trl multiplied pg_loss, vf_loss and
                                           the total loss by 0.0 (zero grads; Adam still steps on momentum),
        "sync_gradients": bool             (accelerate: optimizer.step really applied after it),
        "clip": null | {"total_norm": float, "n_params": int}  (accelerate.clip_grad_norm_ call
                 made after this minibatch's backward, if any; n_params = params it saw)
      } ],
    "early_stop_checks": [ {"epoch": int, "policykl": float, "stop": bool} ]  (_early_stop calls; none
                   unless early_stopping),
    "early_stopped": bool                   trl's `early_stop` at the end of step (any check said stop; the
                   number of epochs actually run is len(permutations)),
    "stats": {every scalar entry of the dict `step` returned, keys starting with "time/" left out},
    "kl_coef_after": float                  kl_ctl.value after the step
  } ],
  "sensitivity_rel_perturbation": 1e-7,
  "sensitivity": [ {path: {"abs": float, "scale": float}} ]   one per step. The case is run a second time
                   with every initial trainable parameter multiplied by (1 + 1e-7 * N(0, 1)) (about an
                   f32 rounding error); "abs" is the largest |difference| of that run's values from the
                   stored ones over all leaves under path ("logprobs", "minibatches.new_logprobs",
                   "minibatches.stats.val/error", "stats.ppo/val/error", "kl_coef_after", ..., and
                   "params": the step's params_step*.safetensors), "scale" the largest stored |value|.
                   A comparison tolerance much below "abs" is testing luck, not parity. The script
                   asserts that no discrete decision (permutation rows, ratio_threshold, early stop,
                   sync, clip) flips under the perturbation and that ratio / early-stop tests are not
                   within 5% / 0.01 of their thresholds.
}

trl behaviour worth copying (checked in trl 0.11.4 / accelerate 1.1.1 / torch 2.5.1 source)
-------------------------------------------------------------------------------------------
* np.random.permutation is called with `bs` = config.batch_size, once per PPO epoch; then
  backward batches of backward_batch_size = mini_batch_size * gradient_accumulation_steps, each
  split into minibatches of mini_batch_size.
* every forward pass runs in eval mode: batched_forward_pass calls model.eval() first, and
  train_minibatch's model.train() comes after that forward (the model is left in train mode).
* the training forward uses the minibatch's rows of the *full-batch* padded model_inputs (padding
  width of the whole batch), split into chunks of mini_batch_size.
* encoder-decoder masks: logprobs[:, i] is log p(decoder_input_ids[:, i+1]); mask = 1 for
  1 <= i < (number of decoder tokens) - 1, i.e. the first response token after the start token 0
  is never scored, the last one (eos or not) is.
* accelerate divides each minibatch loss by gradient_accumulation_steps before backward; the
  optimizer (torch Adam, lr, betas 0.9/0.999, eps 1e-8) only steps / zeroes grads when
  sync_gradients (every gradient_accumulation_steps-th minibatch; the counter lives in the
  accelerator and persists across step calls).
* clip_grad_norm_ is called as accelerator.clip_grad_norm_(self.model_params, max_grad_norm) where
  self.model_params is a `filter(...)` iterator created once in __init__: only the first call
  sees the parameters; every later call gets an exhausted iterator and clips nothing (returns 0).
* early stopping: checked once per epoch on the last minibatch's policy/policykl
  (> 1.5 * target_kl); that epoch's updates are already applied; optimizer.zero_grad() there is a
  no-op on grads already zeroed; the remaining epochs are skipped.
* the adaptive KL controller is updated after the stats (which report the coefficient used in this
  step), with objective/kl (float32) and n_steps = batch_size:
  value *= 1 + clip(kl / target - 1, -0.2, 0.2) * batch_size / horizon, in float64.
* responses go to the decoder as given, decoder start token 0 included (trl adds nothing), padded
  right with 0 / attention 0 by the collator; queries likewise (encoder input).
* rollout values are returned unmasked by batched_forward_pass; compute_advantages multiplies
  values and rewards by the mask, whitens rewards (whiten_rewards, shift_mean=False) and the
  advantages (masked_whiten over the whole batch); `loss` gets these masked values as old values.
* kl_penalty "full": compute_rewards gets log_softmax(logits[:, :-1]) of policy and reference
  (trl's logprobs_from_logits(..., gather=False)); kl = F.kl_div(ref, logp, log_target=True).sum(-1)
  = sum_v exp(logp) (logp - ref); record_step_stats still uses the gathered logprobs.
* ratio_threshold: when masked_mean(ratio) > ratio_threshold, loss returns pg_loss * 0, vf_loss * 0:
  the backward gives zero grads but the optimizer still steps (Adam moves on its momentum).
* use_score_scaling=True crashes in 0.11.4 (RunningMoments keeps floats; step calls .to on them).
* masked_var's Bessel factor n / (n - 1): a minibatch with one scored token gives NaN var stats
  (inf * 0); with zero scored tokens trl raises. Responses here always score >= 2 tokens per
  minibatch.
"""

import json
import os
import shutil
import tempfile
import warnings

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "ppo")
BASE_REL = "tests/fixtures/t5-tiny"
os.chdir(ROOT)  # so the base model's name_or_path is the relative "tests/fixtures/t5-tiny"

import peft  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict  # noqa: E402
from transformers import PreTrainedTokenizerFast, T5ForConditionalGeneration  # noqa: E402
from trl import AutoModelForSeq2SeqLMWithValueHead, PPOConfig, PPOTrainer  # noqa: E402
from trl.core import masked_mean  # noqa: E402

assert trl.__version__ == "0.11.4", trl.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__
assert peft.__version__ == "0.13.2", peft.__version__
assert torch.__version__.startswith("2.5.1"), torch.__version__

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

VOCAB = 312
LORA = dict(r=4, lora_alpha=8, target_modules=["q", "v"], lora_dropout=0.0, task_type="SEQ_2_SEQ_LM")

CONFIG_KEYS = ["batch_size", "mini_batch_size", "gradient_accumulation_steps", "backward_batch_size", "ppo_epochs",
               "learning_rate", "adap_kl_ctrl", "init_kl_coef", "kl_penalty", "target", "horizon", "gamma", "lam",
               "cliprange", "cliprange_value", "vf_coef", "max_grad_norm", "early_stopping", "target_kl",
               "ratio_threshold", "score_clip", "whiten_rewards", "use_score_scaling", "use_score_norm", "seed"]

# t5-tiny's logits are very sharp (response logprobs around -40), so the policy is very sensitive to its
# parameters. With learning_rate 1e-3 one Adam step moved logprobs by up to ~20 nats, most minibatches hit
# ratio_threshold, and a 1e-7 relative perturbation of the initial trainable parameters moved step-2 values by
# ~2.4e-3 (logprobs) -- useless for a 1e-4 comparison. 1e-4 still changes logprobs by 0.01-2 nats per epoch.
LR = 1e-4
LR_NOTE = ("learning_rate is 1e-4, not 1e-3: with 1e-3 t5-tiny's sharp logits (logprobs ~ -40) made one Adam step "
           "move logprobs by up to ~20 nats (most minibatches skipped by ratio_threshold) and a 1e-7 relative "
           "perturbation of the initial trainable parameters moved step-2 logprobs by 2.4e-3. See 'sensitivity'.")
SENS_REL = 1e-7  # relative perturbation of the trainable parameters for the sensitivity run

CASES = {
    "default": dict(
        seed=13,  # step 1: objective/kl -14.0 (controller's error clipped at -0.2); step 2: 5.94 (not clipped)
        config=dict(batch_size=4, mini_batch_size=2, gradient_accumulation_steps=1, ppo_epochs=2, learning_rate=LR,
                    adap_kl_ctrl=True, init_kl_coef=0.2, target=6, horizon=100, kl_penalty="kl", max_grad_norm=0.5),
        # response lengths in tokens (decoder start 0 .. eos 1); min 3
        resp_lens=[[7, 3, 10, 5], [4, 9, 6, 8]],
        truncated=[1, 2],  # the row of each step whose response has no eos
        query_lens=[[5, 12, 8, 10], [11, 6, 9, 7]],
        scores=[[1.25, -0.75, 0.4, -1.9], [-0.3, 2.2, -1.1, 0.85]],
        notes=[LR_NOTE],
    ),
    "full_scaled": dict(
        seed=30,
        config=dict(batch_size=4, mini_batch_size=1, gradient_accumulation_steps=2, ppo_epochs=2, learning_rate=LR,
                    adap_kl_ctrl=False, init_kl_coef=0.1, kl_penalty="full", use_score_scaling=False,
                    use_score_norm=True, score_clip=1.5, whiten_rewards=True, early_stopping=True,
                    target_kl=None,  # filled in below (TARGET_KL_FULL)
                    max_grad_norm=None),
        # mini_batch_size 1: every response needs >= 2 scored tokens (length >= 4), else masked_var's
        # Bessel factor 1/(n-1) makes returns/var and val/var NaN.
        resp_lens=[[6, 4, 9, 7], [10, 5, 4, 8]],
        truncated=[3, 0],
        query_lens=[[9, 6, 12, 5], [7, 10, 8, 11]],
        scores=[[2.4, -0.6, -2.1, 0.9], [0.3, -1.7, 1.6, -0.2]],
        notes=[
            "use_score_scaling is False, not True: in trl 0.11.4 PPOTrainer.step with use_score_scaling=True raises "
            "AttributeError (\"'float' object has no attribute 'to'\") because RunningMoments.update stores "
            "mean/std as Python floats and step calls self.running.std.to(...). use_score_norm=True is kept but is "
            "only read under use_score_scaling, so it has no effect. Scores are only clipped to +-score_clip.",
            "target_kl 0.05 (and the case seed) chosen so that _early_stop triggers after the first epoch of step 1 "
            "(policykl 0.136 > 1.5 * 0.05), skipping its second epoch; step 2 runs both epochs and its second check "
            "also says stop (a no-op: nothing is left to skip and the grads are already zero).",
            LR_NOTE,
        ],
    ),
}
# chosen by looking at policy/policykl of the last minibatch of the first epoch of step 1 (see notes)
TARGET_KL_FULL = 0.05


def tolist(t):
    t = t.detach().cpu()
    if t.is_floating_point():
        assert t.dtype == torch.float32, t.dtype
        assert torch.isfinite(t).all(), t
    return t.tolist()


def fl(x):
    if isinstance(x, torch.Tensor):
        assert x.numel() == 1
        x = x.item()
    elif isinstance(x, np.ndarray):
        assert x.size == 1
        x = x.item()
    x = float(x)
    assert np.isfinite(x), x
    return x


def load_tokenizer():
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(BASE_REL, "tokenizer.json"), pad_token="<pad>",
                                  eos_token="</s>", unk_token="<unk>")
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1, (tok.pad_token_id, tok.eos_token_id)
    assert tok.padding_side == "right", tok.padding_side
    return tok


def build_policy(case_dir, seed):
    torch.manual_seed(seed)
    base = T5ForConditionalGeneration.from_pretrained(BASE_REL, dropout_rate=0.0)
    assert base.name_or_path == BASE_REL, base.name_or_path
    assert base.config.vocab_size == VOCAB and base.config.d_model == 64
    assert base.config.eos_token_id == 1 and base.config.pad_token_id == 0 and base.config.decoder_start_token_id == 0
    pm = get_peft_model(base, LoraConfig(**LORA))
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    d = os.path.join(case_dir, "adapter")
    pm.save_pretrained(d)
    os.unlink(os.path.join(d, "README.md"))  # peft's model-card template; not part of the adapter
    assert sorted(os.listdir(d)) == ["adapter_config.json", "adapter_model.safetensors"], os.listdir(d)
    cfg_path = os.path.join(d, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    assert cfg["base_model_name_or_path"] == BASE_REL, cfg["base_model_name_or_path"]
    # peft keeps target_modules as a set, so its order follows the interpreter's string hashing: sort it
    # (re-written the way peft writes the file) so the fixture is byte-for-byte reproducible
    assert sorted(cfg["target_modules"]) == ["q", "v"], cfg["target_modules"]
    cfg["target_modules"] = ["q", "v"]
    with open(cfg_path, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))
    lora0 = {k: v.clone() for k, v in get_peft_model_state_dict(pm).items()}

    policy = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(pm, summary_dropout_prob=0.0)
    assert policy.is_peft_model is True
    assert isinstance(policy.v_head.dropout, torch.nn.Identity)
    g = torch.Generator().manual_seed(seed + 2000)
    with torch.no_grad():
        policy.v_head.summary.weight.copy_(torch.randn(policy.v_head.summary.weight.shape, generator=g) * 0.5)
        policy.v_head.summary.bias.fill_(0.1)
    # wrapping must not have touched the adapter
    for k, v in get_peft_model_state_dict(policy.pretrained_model).items():
        assert torch.equal(v, lora0[k]), k
    head = {"v_head.summary.weight": policy.v_head.summary.weight.detach().clone().contiguous(),
            "v_head.summary.bias": policy.v_head.summary.bias.detach().clone().contiguous()}
    assert list(head["v_head.summary.weight"].shape) == [1, 64] and list(head["v_head.summary.bias"].shape) == [1]
    save_file(head, os.path.join(case_dir, "v_head.safetensors"), metadata={"format": "pt"})
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert all(("lora_" in n) or n.startswith("v_head.") for n in trainable), trainable
    assert len(trainable) == len(lora0) + 2, (len(trainable), len(lora0))
    return policy


def trainable_state(policy):
    sd = {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(policy.pretrained_model).items()}
    sd["v_head.summary.weight"] = policy.v_head.summary.weight.detach().clone().contiguous()
    sd["v_head.summary.bias"] = policy.v_head.summary.bias.detach().clone().contiguous()
    return sd


def make_batch(g, q_lens, r_lens, truncated, scores):
    queries, responses = [], []
    for n in q_lens:
        assert 5 <= n <= 12
        ids = torch.randint(2, VOCAB, (n - 1,), generator=g)
        queries.append(torch.cat([ids, torch.tensor([1])]).long())
    for j, n in enumerate(r_lens):
        assert 3 <= n <= 10
        if j == truncated:
            body = torch.randint(2, VOCAB, (n - 1,), generator=g)
            responses.append(torch.cat([torch.tensor([0]), body]).long())
        else:
            body = torch.randint(2, VOCAB, (n - 2,), generator=g)
            responses.append(torch.cat([torch.tensor([0]), body, torch.tensor([1])]).long())
    sc = [torch.tensor(s, dtype=torch.float32) for s in scores]
    return queries, responses, sc


class Recorder:
    """Wraps trainer methods / np.random.permutation; each wrapper calls the original unchanged."""

    def __init__(self, trainer):
        self.t = trainer
        self.reset()
        self.epoch = -1
        self._orig_perm = np.random.permutation
        o_bfp, o_cr, o_ca, o_loss = (trainer.batched_forward_pass, trainer.compute_rewards,
                                     trainer.compute_advantages, trainer.loss)
        o_es, o_clip = trainer._early_stop, trainer.accelerator.clip_grad_norm_
        rec = self

        def perm(*a, **k):
            out = rec._orig_perm(*a, **k)
            rec.cur["perm_args"].append([int(x) for x in a])
            rec.cur["permutations"].append([int(x) for x in out])
            rec.epoch += 1
            return out

        def bfp(*a, **k):
            out = o_bfp(*a, **k)
            rec.cur["bfp"].append(dict(logprobs=out[0].detach().clone(), values=out[2].detach().clone(),
                                       masks=out[3].detach().clone(),
                                       model_inputs={kk: v.clone() for kk, v in a[3].items()}))
            return out

        def cr(scores, logprobs, ref_logprobs, masks):
            out = o_cr(scores, logprobs, ref_logprobs, masks)
            rec.cur["scores_used"] = scores.detach().clone()
            rec.cur["kl_coef_used"] = rec.t.kl_ctl.value
            rec.cur["rewards"] = [x.detach().clone() for x in out]
            rec.cur["cr_logprobs_shape"] = list(logprobs.shape)
            return out

        def ca(values, rewards, mask):
            out = o_ca(values, rewards, mask)
            rec.cur["advantages"] = [x.detach().clone() for x in out]
            return out

        def loss(old_logprobs, values, logits, vpreds, logprobs, mask, advantages, returns):
            out = o_loss(old_logprobs, values, logits, vpreds, logprobs, mask, advantages, returns)
            pg, vf, stats = out
            # the same expression trl's loss uses for its ratio_threshold test
            avg_ratio = masked_mean(torch.exp(logprobs - old_logprobs), mask).item()
            rec.cur["minibatches"].append(dict(
                avg_ratio=avg_ratio, ratio_threshold_hit=bool(avg_ratio > rec.t.config.ratio_threshold),
                epoch=rec.epoch, old_logprobs=old_logprobs.detach().clone(), new_logprobs=logprobs.detach().clone(),
                vpreds=vpreds.detach().clone(), pg_loss=fl(pg), vf_loss=fl(vf),
                stats={k: fl(v) for k, v in stats.items() if v.numel() == 1},
                sync_gradients=bool(rec.t.accelerator.sync_gradients), clip=None))
            return out

        def early_stop(policykl):
            out = o_es(policykl)
            rec.cur["early_stop_checks"].append(dict(epoch=rec.epoch, policykl=fl(policykl), stop=bool(out)))
            return out

        def clip(parameters, max_norm, norm_type=2):
            params = list(parameters)  # what torch would iterate; the filter is consumed either way
            total = o_clip(params, max_norm, norm_type=norm_type)
            rec.cur["minibatches"][-1]["clip"] = dict(total_norm=fl(total), n_params=len(params))
            return total

        trainer.batched_forward_pass = bfp
        trainer.compute_rewards = cr
        trainer.compute_advantages = ca
        trainer.loss = loss
        trainer._early_stop = early_stop
        trainer.accelerator.clip_grad_norm_ = clip
        self._perm = perm

    def reset(self):
        self.cur = dict(bfp=[], permutations=[], perm_args=[], minibatches=[], early_stop_checks=[])
        self.epoch = -1

    def step(self, queries, responses, scores):
        self.reset()
        np.random.permutation = self._perm
        try:
            stats = self.t.step(queries, responses, scores)
        finally:
            np.random.permutation = self._orig_perm
        return stats, self.cur


def minibatch_rows(perms, cfg):
    bs, bbs, mbs = cfg.batch_size, cfg.backward_batch_size, cfg.mini_batch_size
    out = []
    for e, p in enumerate(perms):
        for bstart in range(0, bs, bbs):
            back = p[bstart:bstart + bbs]
            for mstart in range(0, bbs, mbs):
                out.append((e, back[mstart:mstart + mbs]))
    return out


def run_case(name, spec, target_kl, out_root, perturb=False):
    """Runs one case, writes its files under out_root/name; returns (step.json document, params per step).
    perturb: multiply the initial trainable parameters by (1 + SENS_REL * N(0, 1)) after saving them."""
    case_dir = os.path.join(out_root, name)
    if os.path.exists(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)
    seed = spec["seed"]
    kw = dict(spec["config"])
    if "target_kl" in kw:
        kw["target_kl"] = target_kl
    policy = build_policy(case_dir, seed)
    if perturb:
        g = torch.Generator().manual_seed(seed + 4000)
        with torch.no_grad():
            for p in policy.parameters():
                if p.requires_grad:
                    p.mul_(1 + SENS_REL * torch.randn(p.shape, generator=g))
    tok = load_tokenizer()
    config = PPOConfig(seed=seed, exp_name="make_ppo_fixtures", **kw)
    trainer = PPOTrainer(config, model=policy, ref_model=None, tokenizer=tok)
    assert trainer.is_peft_model and trainer.ref_model is None and trainer.is_encoder_decoder
    assert trainer.current_device.type == "cpu"
    np.random.seed(seed)
    rec = Recorder(trainer)
    kl_init = float(trainer.kl_ctl.value)
    g = torch.Generator().manual_seed(seed + 3000)
    prev = trainable_state(policy)
    steps, all_params = [], []
    for s in range(2):
        queries, responses, scores = make_batch(g, spec["query_lens"][s], spec["resp_lens"][s], spec["truncated"][s],
                                                spec["scores"][s])
        stats, cur = rec.step(queries, responses, scores)
        assert all(a == [config.batch_size] for a in cur["perm_args"]), cur["perm_args"]
        # batched_forward_pass calls: #0 rollout (policy), #1 reference, then one per minibatch
        roll, ref = cur["bfp"][0], cur["bfp"][1]
        mi = roll["model_inputs"]
        # right padding with 0 / attention 0, decoder start token kept in the responses
        for j, (q, r) in enumerate(zip(queries, responses)):
            for ids_key, am_key, seq in (("input_ids", "attention_mask", q), ("decoder_input_ids",
                                                                              "decoder_attention_mask", r)):
                n = len(seq)
                assert torch.equal(mi[ids_key][j, :n], seq) and (mi[ids_key][j, n:] == 0).all()
                assert (mi[am_key][j, :n] == 1).all() and (mi[am_key][j, n:] == 0).all()
        T = roll["logprobs"].shape[1]
        assert T == max(len(r) for r in responses) - 1
        for j, r in enumerate(responses):  # trl's enc-dec mask: positions 1 .. len-2
            want = torch.zeros(T, dtype=torch.long)
            want[1:len(r) - 1] = 1
            assert torch.equal(roll["masks"][j], want), (j, roll["masks"][j])
        assert torch.equal(ref["masks"], roll["masks"])
        rows = minibatch_rows(cur["permutations"], config)
        assert len(rows) == len(cur["minibatches"]), (len(rows), len(cur["minibatches"]))
        assert len(cur["bfp"]) == 2 + len(rows)
        mbs_out = []
        for (e, idx), mb in zip(rows, cur["minibatches"]):
            assert e == mb["epoch"]
            assert torch.equal(mb["old_logprobs"], roll["logprobs"][idx]), "minibatch rows mismatch"
            mbs_out.append(dict(epoch=e, rows=[int(i) for i in idx], new_logprobs=tolist(mb["new_logprobs"]),
                                vpreds=tolist(mb["vpreds"]), pg_loss=mb["pg_loss"], vf_loss=mb["vf_loss"],
                                stats=mb["stats"], avg_ratio=mb["avg_ratio"],
                                ratio_threshold_hit=mb["ratio_threshold_hit"], sync_gradients=mb["sync_gradients"],
                                clip=mb["clip"]))
        rewards, nsr, kls = cur["rewards"]
        values, adv, ret = cur["advantages"]
        step_stats = {}
        for k, v in stats.items():
            if k.startswith("time/"):
                continue
            if isinstance(v, (np.ndarray, torch.Tensor)) and np.size(v) != 1:
                continue
            step_stats[k] = fl(v)
        early = any(c["stop"] for c in cur["early_stop_checks"])
        steps.append(dict(
            queries=[q.tolist() for q in queries], responses=[r.tolist() for r in responses],
            scores=[float(x) for x in scores], scores_used=tolist(cur["scores_used"]),
            model_inputs={k: v.tolist() for k, v in mi.items()},
            permutations=cur["permutations"],
            logprobs=tolist(roll["logprobs"]), values_rollout=tolist(roll["values"]), masks=roll["masks"].tolist(),
            ref_logprobs=tolist(ref["logprobs"]),
            rewards=tolist(rewards), non_score_reward=tolist(nsr), kls=tolist(kls),
            kl_coef_used=float(cur["kl_coef_used"]),
            values=tolist(values), advantages=tolist(adv), returns=tolist(ret),
            minibatches=mbs_out, early_stop_checks=cur["early_stop_checks"], early_stopped=early,
            stats=step_stats, kl_coef_after=float(trainer.kl_ctl.value)))
        params = trainable_state(policy)
        save_file(params, os.path.join(case_dir, f"params_step{s + 1}.safetensors"), metadata={"format": "pt"})
        all_params.append(params)
        dmax = max((params[k] - prev[k]).abs().max().item() for k in params)
        prev = params
        if perturb:
            continue
        print(f"[{name}] step {s + 1}: epochs {len(cur['permutations'])} early_stop {early} "
              f"kl_coef {cur['kl_coef_used']:.6f} -> {trainer.kl_ctl.value:.6f} "
              f"objective/kl {step_stats['objective/kl']:.5f}")
        for m in mbs_out:
            print(f"    epoch {m['epoch']} rows {m['rows']} pg {m['pg_loss']:+.5f} vf {m['vf_loss']:.5f} "
                  f"policykl {m['stats']['policy/policykl']:+.6f} avg_ratio {m['avg_ratio']:.4f} "
                  f"sync {m['sync_gradients']} clip {m['clip']}")
        print(f"    early-stop checks {cur['early_stop_checks']}  max |param change| {dmax:.3e}")
    cfg_out = {}
    for k in CONFIG_KEYS:
        v = getattr(config, k)
        cfg_out[k] = float(v) if isinstance(v, float) or k in ("target", "horizon") and v is not None else v
    doc = dict(case=name, notes=spec["notes"], config=cfg_out,
               lora=dict(r=LORA["r"], lora_alpha=LORA["lora_alpha"], target_modules=LORA["target_modules"],
                         scaling=LORA["lora_alpha"] / LORA["r"]),
               kl_coef_init=kl_init, steps=steps)
    return doc, all_params


def check_margins(doc):
    """Discrete decisions must not sit on a knife edge (a reimplementation's rounding could flip them)."""
    cfg = doc["config"]
    for st in doc["steps"]:
        for m in st["minibatches"]:
            assert abs(m["avg_ratio"] - cfg["ratio_threshold"]) > 0.05 * cfg["ratio_threshold"], m["avg_ratio"]
        for c in st["early_stop_checks"]:
            assert abs(c["policykl"] - 1.5 * cfg["target_kl"]) > 0.01, c


def structure(doc):
    return [(st["permutations"], [(m["rows"], m["ratio_threshold_hit"], m["sync_gradients"], m["clip"] is None)
                                  for m in st["minibatches"]], st["early_stop_checks"] and
             [c["stop"] for c in st["early_stop_checks"]]) for st in doc["steps"]]


def max_dev(a, b, path, out):
    """out[path] = [max |a - b|, max |a|] over the float leaves below path (lists of rows / minibatches merged)."""
    if isinstance(a, dict):
        for k in a:
            max_dev(a[k], b[k], f"{path}.{k}" if path else k, out)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for x, y in zip(a, b):
            max_dev(x, y, path, out)
    elif isinstance(a, float):
        d, m = out.get(path, (0.0, 0.0))
        out[path] = (max(d, abs(a - b)), max(m, abs(a)))


def sensitivity(doc, params, pdoc, pparams):
    assert structure(doc) == structure(pdoc), "a discrete decision flipped under the perturbation"
    sens = []
    for st, pst, pa, pb in zip(doc["steps"], pdoc["steps"], params, pparams):
        out = {}
        skip = ("queries", "responses", "scores", "model_inputs", "permutations", "masks")
        max_dev({k: v for k, v in st.items() if k not in skip}, {k: v for k, v in pst.items() if k not in skip}, "",
                out)
        for k in ("early_stop_checks.epoch", "minibatches.epoch"):
            out.pop(k, None)
        out["params"] = (max((pa[k] - pb[k]).abs().max().item() for k in pa),
                         max(v.abs().max().item() for v in pa.values()))
        sens.append({k: {"abs": float(d), "scale": float(m)} for k, (d, m) in sorted(out.items())})
    return sens


def confirm_score_scaling_crash():
    """The note in full_scaled says use_score_scaling=True cannot run in trl 0.11.4: check that it still holds."""
    spec = CASES["full_scaled"]
    with tempfile.TemporaryDirectory() as td:
        os.makedirs(os.path.join(td, "x"))
        policy = build_policy(os.path.join(td, "x"), spec["seed"])
    kw = dict(spec["config"], use_score_scaling=True, target_kl=TARGET_KL_FULL)
    trainer = PPOTrainer(PPOConfig(seed=0, exp_name="make_ppo_fixtures", **kw), model=policy, ref_model=None,
                         tokenizer=load_tokenizer())
    q, r, sc = make_batch(torch.Generator().manual_seed(0), spec["query_lens"][0], spec["resp_lens"][0],
                          spec["truncated"][0], spec["scores"][0])
    try:
        trainer.step(q, r, sc)
    except AttributeError as e:
        assert "'float' object has no attribute 'to'" in str(e), e
        print(f"use_score_scaling=True: AttributeError({e}) as expected")
        return
    raise AssertionError("use_score_scaling=True ran: update the full_scaled case and its note")


def main():
    confirm_score_scaling_crash()
    for name, spec in CASES.items():
        with tempfile.TemporaryDirectory() as td:
            pdoc, pparams = run_case(name, spec, TARGET_KL_FULL, td, perturb=True)
        doc, params = run_case(name, spec, TARGET_KL_FULL, OUT)
        check_margins(doc)
        doc["sensitivity_rel_perturbation"] = SENS_REL
        doc["sensitivity"] = sensitivity(doc, params, pdoc, pparams)
        for s, sens in enumerate(doc["sensitivity"]):
            worst = sorted(sens.items(), key=lambda kv: -kv[1]["abs"])[:4]
            print(f"[{name}] step {s + 1} sensitivity (largest): "
                  + ", ".join(f"{k} {v['abs']:.1e} (|x| <= {v['scale']:.3g})" for k, v in worst))
        if name == "full_scaled":
            assert doc["steps"][0]["early_stopped"], "pick TARGET_KL_FULL so early stopping triggers in step 1"
            assert len(doc["steps"][0]["permutations"]) == 1
            assert any(m["ratio_threshold_hit"] for st in doc["steps"] for m in st["minibatches"])
        with open(os.path.join(OUT, name, "step.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"), allow_nan=False)
            f.write("\n")
    total = 0
    for dp, _, fs in os.walk(OUT):
        for fn in sorted(fs):
            p = os.path.join(dp, fn)
            total += os.path.getsize(p)
            print(f"wrote {os.path.relpath(p, ROOT)} ({os.path.getsize(p)} bytes)")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
