#!/usr/bin/env python3
"""Writes the parity fixtures for the `detox-rl` crate (trl 0.11.4's PPO math).

Run from the repository root with the reference venv:

    /work/venv/bin/python tools/make_rl_fixtures.py

Reference stack: torch==2.5.1, trl==0.11.4, accelerate==1.1.1, numpy==1.26.4
(tools/requirements.txt). CPU only, single-threaded torch, fixed seeds: the output is
deterministic.

Every number stored as an *output* is computed by trl's (or torch's) OWN code:

* trl.core: logprobs_from_logits, entropy_from_logits, masked_mean, masked_var,
  masked_whiten, whiten, clip_by_value, stack_dicts, flatten_dict (through `loss`)
* trl.trainer.ppo_trainer.PPOTrainer: compute_rewards (+ _kl_penalty), compute_advantages,
  loss, record_step_stats, batched_forward_pass -- called as unbound methods on a small
  stand-in object carrying only the attributes they read (`config=PPOConfig(...)`,
  `kl_ctl=...`, `is_encoder_decoder`, ...)
* trl.trainer.utils: AdaptiveKLController, FixedKLController
* torch.nn.utils.clip_grad_norm_ (what accelerate's clip_grad_norm_ calls on one process)

Files written under tests/fixtures/rl/ (JSON; tensors are {"shape": [...], "data": [...]}
flat row-major; non-finite floats are written as the strings "NaN", "Infinity",
"-Infinity"):

* core.json        logprobs / entropy / masked_mean (all, axis 0, axis 1) / masked_var
                   (unbiased and not; single-token mask -> NaN; empty mask -> error) /
                   masked_whiten (shift_mean true/false) / clip_by_value / whiten (unmasked)
* rewards.json     compute_rewards for kl_penalty kl, abs, mse, full (full: from logits, as
                   PPOTrainer.step does), two kl coefficients
* advantages.json  compute_advantages for (gamma, lam, whiten_rewards) combinations
* loss.json        loss (pg loss, scaled vf loss, every scalar stat, ratio) with clipping
                   active, ratio_threshold triggered and not; plus torch autograd gradients of
                   pg_loss + vf_loss w.r.t. the logits (through logprobs_from_logits) and vpreds
* step_stats.json  a whole step's bookkeeping: compute_rewards -> compute_advantages -> two
                   minibatch `loss` calls -> stack_dicts -> record_step_stats (scalar entries)
* kl_ctl.json      AdaptiveKLController / FixedKLController trajectories
* grad_clip.json   clip_grad_norm_ total norm and the coefficient it multiplied the grads by,
                   plus a demonstration that trl's `model_params` filter is exhausted after
                   the first clip (later minibatches are never clipped)
* forward_pass.json batched_forward_pass for an encoder-decoder (the masks / slicing trl
                   applies to decoder logits and values)
* config_defaults.json  PPOConfig() defaults of the fields detox-rl's PpoConfig mirrors
"""

import importlib.machinery
import json
import math
import os
import sys
import types
import warnings

import numpy as np
import torch


# ---------------------------------------------------------------------------------------
# Import shims. The reference venv's `datasets` may be unimportable (pyarrow built against
# NumPy 2 next to numpy 1.26.4) and `rich` may be missing; trl's ppo_trainer imports both at
# module level but the PPO math never touches them. Only when the real import FAILS do we
# put an inert stand-in module in sys.modules.
# ---------------------------------------------------------------------------------------


def _stub(name, **attrs):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    m.__path__ = []
    for k, v in attrs.items():
        setattr(m, k, v)
    sys.modules[name] = m
    return m


try:
    import rich.console  # noqa: F401
    import rich.table  # noqa: F401
except ImportError:

    class _Inert:
        def __init__(self, *a, **k):
            pass

    for _n in ["rich", "rich.console", "rich.table", "rich.live", "rich.panel", "rich.progress", "rich.text",
               "rich.logging"]:
        _stub(_n, Console=_Inert, Table=_Inert, Group=_Inert, Live=_Inert, Panel=_Inert, Progress=_Inert,
              Text=_Inert, RichHandler=_Inert, print=print)

try:
    import datasets  # noqa: F401
except ImportError:

    class _Dataset:
        pass

    _stub("datasets", Dataset=_Dataset, __version__="0")

import trl  # noqa: E402
from trl.core import (  # noqa: E402
    clip_by_value,
    entropy_from_logits,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    stack_dicts,
    whiten,
)
from trl.trainer.ppo_config import PPOConfig  # noqa: E402
from trl.trainer.ppo_trainer import PPOTrainer  # noqa: E402
from trl.trainer.utils import AdaptiveKLController, FixedKLController  # noqa: E402

assert trl.__version__ == "0.11.4", trl.__version__

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "rl")

B, T, V = 3, 7, 11
# Row 0: full length; row 1: shorter; row 2: starts late (like an encoder-decoder response
# whose index 0 trl masks out) and ends early.
MASK = torch.tensor(
    [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0],
    ],
    dtype=torch.long,
)


# ---------------------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------------------


def fnum(x):
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def ten(t):
    t = torch.as_tensor(t).detach()
    if t.is_floating_point():
        assert t.dtype == torch.float32, t.dtype
        data = [fnum(v) for v in t.reshape(-1).tolist()]
    else:
        data = [int(v) for v in t.reshape(-1).tolist()]
    return {"shape": list(t.shape), "data": data}


def scal(t):
    if isinstance(t, torch.Tensor):
        assert t.numel() == 1
        return fnum(t.item())
    return fnum(t)


def dump(name, obj):
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes)")


def fake_trainer(**config_kwargs):
    """Stand-in `self` for PPOTrainer's unbound methods: a real PPOConfig + kl_ctl."""
    config = PPOConfig(**config_kwargs)
    if config.adap_kl_ctrl:
        kl_ctl = AdaptiveKLController(config.init_kl_coef, config.target, config.horizon)
    else:
        kl_ctl = FixedKLController(config.init_kl_coef)
    fake = types.SimpleNamespace(config=config, kl_ctl=kl_ctl)
    # compute_rewards calls self._kl_penalty: bind trl's own method to the stand-in
    fake._kl_penalty = types.MethodType(PPOTrainer._kl_penalty, fake)
    return fake


def gen(seed):
    g = torch.Generator().manual_seed(seed)
    return g


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale


# ---------------------------------------------------------------------------------------
# core.json
# ---------------------------------------------------------------------------------------


def make_core():
    g = gen(1)
    logits = randn(g, B, T, V, scale=2.0)
    labels = torch.randint(0, V, (B, T), generator=g)
    x = randn(g, B, T, scale=1.5) + 0.7
    lo = randn(g, B, T) - 0.5
    hi = lo + torch.rand(B, T, generator=g) * 1.5
    mask = MASK.clone()
    mask_one = torch.zeros(B, T, dtype=torch.long)
    mask_one[1, 3] = 1
    mask_zero = torch.zeros(B, T, dtype=torch.long)
    try:
        masked_var(x, mask_zero)
        zero_err = None
    except ValueError as e:
        zero_err = str(e)
    assert zero_err is not None

    out = {
        "logits": ten(logits),
        "labels": ten(labels),
        "x": ten(x),
        "mask": ten(mask),
        "mask_one": ten(mask_one),
        "lo": ten(lo),
        "hi": ten(hi),
        "logprobs": ten(logprobs_from_logits(logits, labels)),
        "logprobs_full": ten(logprobs_from_logits(logits, None, gather=False)),
        "entropy": ten(entropy_from_logits(logits)),
        "masked_mean": scal(masked_mean(x, mask)),
        "masked_mean_axis0": ten(masked_mean(x, mask, axis=0)),
        "masked_mean_axis1": ten(masked_mean(x, mask, axis=1)),
        "masked_var_unbiased": scal(masked_var(x, mask)),
        "masked_var_biased": scal(masked_var(x, mask, unbiased=False)),
        "masked_var_one_unbiased": scal(masked_var(x, mask_one)),
        "masked_var_one_biased": scal(masked_var(x, mask_one, unbiased=False)),
        "masked_var_zero_error": zero_err,
        "masked_whiten_shift": ten(masked_whiten(x, mask, shift_mean=True)),
        "masked_whiten_noshift": ten(masked_whiten(x, mask, shift_mean=False)),
        "clip_by_value": ten(clip_by_value(x, lo, hi)),
        "whiten_shift": ten(whiten(x, shift_mean=True)),
        "whiten_noshift": ten(whiten(x, shift_mean=False)),
    }
    dump("core.json", out)


# ---------------------------------------------------------------------------------------
# rewards.json
# ---------------------------------------------------------------------------------------


def make_rewards():
    g = gen(2)
    logits = randn(g, B, T, V, scale=2.0)
    ref_logits = logits + randn(g, B, T, V, scale=0.7)
    labels = torch.randint(0, V, (B, T), generator=g)
    logprobs = logprobs_from_logits(logits, labels)
    ref_logprobs = logprobs_from_logits(ref_logits, labels)
    scores = randn(g, B, scale=2.0)
    cases = []
    for kl_coef in [0.2, 0.0371]:
        for mode in ["kl", "abs", "mse", "full"]:
            fake = fake_trainer(kl_penalty=mode, init_kl_coef=kl_coef)
            if mode == "full":
                # exactly what PPOTrainer.step does for kl_penalty == "full"
                active_full = logprobs_from_logits(logits, None, gather=False)
                ref_full = logprobs_from_logits(ref_logits, None, gather=False)
                r, nsr, kls = PPOTrainer.compute_rewards(fake, scores, active_full, ref_full, MASK)
            else:
                r, nsr, kls = PPOTrainer.compute_rewards(fake, scores, logprobs, ref_logprobs, MASK)
            cases.append(
                {
                    "kl_penalty": mode,
                    "kl_coef": kl_coef,
                    "rewards": ten(r),
                    "non_score_rewards": ten(nsr),
                    "kls": ten(kls),
                }
            )
    out = {
        "logits": ten(logits),
        "ref_logits": ten(ref_logits),
        "labels": ten(labels),
        "logprobs": ten(logprobs),
        "ref_logprobs": ten(ref_logprobs),
        "scores": ten(scores),
        "mask": ten(MASK),
        "cases": cases,
    }
    dump("rewards.json", out)


# ---------------------------------------------------------------------------------------
# advantages.json
# ---------------------------------------------------------------------------------------


def make_advantages():
    g = gen(3)
    values = randn(g, B, T)
    rewards = randn(g, B, T, scale=0.3)
    rewards[0, 6] += 2.0
    rewards[1, 3] -= 1.5
    rewards[2, 4] += 0.8
    cases = []
    for gamma, lam, whiten_rewards in [(1.0, 0.95, False), (0.99, 0.9, False), (0.97, 0.8, True)]:
        fake = fake_trainer(gamma=gamma, lam=lam, whiten_rewards=whiten_rewards)
        v, a, r = PPOTrainer.compute_advantages(fake, values, rewards, MASK)
        cases.append(
            {
                "gamma": gamma,
                "lam": lam,
                "whiten_rewards": whiten_rewards,
                "values_out": ten(v),
                "advantages": ten(a),
                "returns": ten(r),
            }
        )
    dump("advantages.json", {"values": ten(values), "rewards": ten(rewards), "mask": ten(MASK), "cases": cases})


# ---------------------------------------------------------------------------------------
# loss.json
# ---------------------------------------------------------------------------------------

LOSS_STAT_KEYS = [
    "loss/policy",
    "loss/value",
    "loss/total",
    "policy/entropy",
    "policy/approxkl",
    "policy/policykl",
    "policy/clipfrac",
    "policy/advantages_mean",
    "returns/mean",
    "returns/var",
    "val/vpred",
    "val/error",
    "val/clipfrac",
    "val/mean",
    "val/var",
]


def run_loss(fake, old_logprobs, values, logits, vpreds, labels, mask, advantages, returns):
    """trl's loss + the autograd gradients train_minibatch's backward would produce."""
    logits = logits.clone().requires_grad_(True)
    vpreds = vpreds.clone().requires_grad_(True)
    logprobs = logprobs_from_logits(logits, labels)
    pg_loss, vf_loss, stats = PPOTrainer.loss(
        fake, old_logprobs, values, logits, vpreds, logprobs, mask, advantages, returns
    )
    loss = pg_loss + vf_loss
    loss.backward()
    assert set(stats.keys()) == set(LOSS_STAT_KEYS) | {"policy/advantages", "policy/ratio"}, stats.keys()
    return {
        "logprobs": ten(logprobs),
        "pg_loss": scal(pg_loss),
        "vf_loss": scal(vf_loss),
        "stats": {k: scal(stats[k]) for k in LOSS_STAT_KEYS},
        "ratio": ten(stats["policy/ratio"]),
        "grad_logits": ten(logits.grad),
        "grad_vpreds": ten(vpreds.grad),
    }


def make_loss():
    g = gen(4)
    logits = randn(g, B, T, V, scale=2.0)
    labels = torch.randint(0, V, (B, T), generator=g)
    logprobs = logprobs_from_logits(logits, labels)
    old_logprobs = logprobs - 0.1 + randn(g, B, T, scale=0.35)
    values = randn(g, B, T) * MASK
    vpreds = values + randn(g, B, T, scale=0.3)
    returns = vpreds + randn(g, B, T, scale=0.4)
    advantages = masked_whiten(randn(g, B, T), MASK)
    # mean ratio of this batch (what the ratio_threshold test looks at)
    avg_ratio = masked_mean(torch.exp(logprobs - old_logprobs), MASK).item()
    # a second batch whose policy moved far: ratios well above 1
    old_logprobs_far = logprobs - 1.2 + randn(g, B, T, scale=0.2)
    avg_ratio_far = masked_mean(torch.exp(logprobs - old_logprobs_far), MASK).item()
    cases = []
    specs = [
        ("defaults", dict(), old_logprobs),
        ("tight_clip", dict(cliprange=0.05, cliprange_value=0.1, vf_coef=0.5), old_logprobs),
        ("threshold_not_triggered", dict(ratio_threshold=avg_ratio_far + 0.25), old_logprobs_far),
        ("threshold_triggered", dict(ratio_threshold=avg_ratio_far - 0.25), old_logprobs_far),
    ]
    for name, kw, old in specs:
        fake = fake_trainer(**kw)
        res = run_loss(fake, old, values, logits, vpreds, labels, MASK, advantages, returns)
        res.update(
            {
                "name": name,
                "old_logprobs": ten(old),
                "cliprange": fake.config.cliprange,
                "cliprange_value": fake.config.cliprange_value,
                "vf_coef": fake.config.vf_coef,
                "ratio_threshold": fake.config.ratio_threshold,
                "avg_ratio": masked_mean(torch.exp(logprobs - old), MASK).item(),
            }
        )
        cases.append(res)
    print([(c["name"], c["stats"]["policy/clipfrac"], c["stats"]["val/clipfrac"]) for c in cases])
    assert cases[0]["stats"]["policy/clipfrac"] > 0 and cases[1]["stats"]["val/clipfrac"] > 0
    assert cases[2]["pg_loss"] != 0.0 and cases[3]["pg_loss"] == 0.0
    print(f"loss: avg_ratio {avg_ratio:.4f}, far {avg_ratio_far:.4f}")
    out = {
        "logits": ten(logits),
        "labels": ten(labels),
        "values": ten(values),
        "vpreds": ten(vpreds),
        "returns": ten(returns),
        "advantages": ten(advantages),
        "mask": ten(MASK),
        "cases": cases,
    }
    dump("loss.json", out)


# ---------------------------------------------------------------------------------------
# step_stats.json
# ---------------------------------------------------------------------------------------


def make_step_stats():
    g = gen(5)
    kl_coef = 0.1537
    fake = fake_trainer(init_kl_coef=kl_coef, gamma=1.0, lam=0.95)
    logits = randn(g, B, T, V, scale=2.0)
    ref_logits = logits + randn(g, B, T, V, scale=0.5)
    labels = torch.randint(0, V, (B, T), generator=g)
    all_logprobs = logprobs_from_logits(logits, labels)
    ref_logprobs = logprobs_from_logits(ref_logits, labels)
    scores = randn(g, B, scale=2.0)
    values = randn(g, B, T)
    rewards, non_score_reward, kls = PPOTrainer.compute_rewards(fake, scores, all_logprobs, ref_logprobs, MASK)
    values, advantages, returns = PPOTrainer.compute_advantages(fake, values, rewards, MASK)
    # two minibatches: rows [2, 0] then [1] (a permutation like np.random.permutation gives)
    minibatches = [[2, 0], [1]]
    all_stats = []
    new_logits = logits + randn(g, B, T, V, scale=0.3)
    vpreds = values + randn(g, B, T, scale=0.3)
    for inds in minibatches:
        lg = new_logits[inds]
        lp = logprobs_from_logits(lg, labels[inds])
        _, _, st = PPOTrainer.loss(
            fake, all_logprobs[inds], values[inds], lg, vpreds[inds], lp, MASK[inds], advantages[inds], returns[inds]
        )
        all_stats.append(st)
    # exactly PPOTrainer.step's post-processing
    train_stats = stack_dicts(all_stats)
    train_stats["policy/advantages"] = torch.flatten(train_stats["policy/advantages"]).unsqueeze(0)
    train_stats["policy/advantages"] = torch.nan_to_num(train_stats["policy/advantages"], -1)
    train_stats["policy/ratio"] = torch.flatten(train_stats["policy/ratio"]).unsqueeze(0)
    query_lens = [5, 9, 4]
    response_lens = [8, 5, 5]
    queries = [torch.zeros(n, dtype=torch.long) for n in query_lens]
    responses = [torch.zeros(n, dtype=torch.long) for n in response_lens]
    stats = PPOTrainer.record_step_stats(
        fake,
        scores=scores,
        logprobs=all_logprobs,
        ref_logprobs=ref_logprobs,
        non_score_reward=non_score_reward,
        train_stats=train_stats,
        kl_coef=fake.kl_ctl.value,
        masks=MASK,
        queries=queries,
        responses=responses,
        kls=kls,
    )
    scalar_stats = {}
    for k, v in stats.items():
        if isinstance(v, (float, int)) or (hasattr(v, "numel") and v.numel() == 1) or np.ndim(v) == 0:
            scalar_stats[k] = scal(v if not isinstance(v, torch.Tensor) else v.item())
    minibatch_stats = [{k: scal(st[k]) for k in LOSS_STAT_KEYS} for st in all_stats]
    # the KL controller update PPOTrainer.step does next (stats_to_np turns objective/kl into
    # a 0-d float32 array)
    kl_np = stats["objective/kl"].detach().cpu().numpy()
    ctl = AdaptiveKLController(kl_coef, fake.config.target, fake.config.horizon)
    ctl.update(kl_np, fake.config.batch_size)
    out = {
        "kl_coef": kl_coef,
        "scores": ten(scores),
        "logprobs": ten(all_logprobs),
        "ref_logprobs": ten(ref_logprobs),
        "non_score_reward": ten(non_score_reward),
        "kls": ten(kls),
        "mask": ten(MASK),
        "query_lens": query_lens,
        "response_lens": response_lens,
        "minibatch_stats": minibatch_stats,
        "stats": scalar_stats,
        "array_stat_keys": sorted(k for k in stats if k not in scalar_stats),
        "batch_size": fake.config.batch_size,
        "target": fake.config.target,
        "horizon": fake.config.horizon,
        "kl_coef_after_update": float(ctl.value),
    }
    dump("step_stats.json", out)


# ---------------------------------------------------------------------------------------
# kl_ctl.json
# ---------------------------------------------------------------------------------------


def make_kl_ctl():
    rng = np.random.RandomState(6)
    trajectories = []
    for init, target, horizon in [(0.2, 6.0, 10000.0), (0.05, 0.5, 300.0), (1.0, 3.0, 128.0)]:
        ctl = AdaptiveKLController(init, target, horizon)
        steps = []
        for i in range(12):
            # PPOTrainer.step passes stats["objective/kl"]: a 0-d float32 numpy array
            current = np.asarray(rng.uniform(-1.0, 3.0 * target), dtype=np.float32)
            n_steps = int([64, 128, 256, 7][i % 4])
            ctl.update(current, n_steps)
            steps.append({"current": float(current), "n_steps": n_steps, "value": float(ctl.value)})
        trajectories.append({"init": init, "target": target, "horizon": horizon, "steps": steps})
    fixed = FixedKLController(0.3)
    fixed.update(np.float32(9.0), 256)
    dump("kl_ctl.json", {"adaptive": trajectories, "fixed_init": 0.3, "fixed_after": float(fixed.value)})


# ---------------------------------------------------------------------------------------
# grad_clip.json
# ---------------------------------------------------------------------------------------


def make_grad_clip():
    g = gen(7)
    shapes = [(5, 4), (4,), (3, 2, 2), (1,)]
    cases = []
    for scale, max_norm in [(1.0, 1.0), (1.0, 100.0), (0.01, 1.0), (3.0, 0.5)]:
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p in params:
            p.grad = randn(g, *p.shape, scale=scale)
        params[-1].grad = torch.ones(1)  # after clipping this element IS the coefficient
        sq_sums = [float((p.grad.float() ** 2).sum()) for p in params]
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        coef = params[-1].grad.item()
        cases.append({"max_norm": max_norm, "sq_sums": sq_sums, "total_norm": float(total), "coef": coef})
    # trl 0.11.4: self.model_params = filter(lambda p: p.requires_grad, model.parameters()).
    # A filter is an iterator: the first clip_grad_norm_ consumes it, every later call sees
    # no parameters, returns 0 and clips nothing.
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]
    model_params = filter(lambda p: p.requires_grad, params)
    seen = []
    for _ in range(3):
        for p in params:
            p.grad = torch.full((3,), 10.0)
        total = torch.nn.utils.clip_grad_norm_(model_params, 1.0)
        seen.append({"total_norm": float(total), "grad_after": params[0].grad[0].item()})
    dump("grad_clip.json", {"cases": cases, "trl_filter_exhausted": seen})


# ---------------------------------------------------------------------------------------
# forward_pass.json
# ---------------------------------------------------------------------------------------


class _FakeSeq2SeqValueModel:
    """Returns precomputed (logits, loss, values) like AutoModelForSeq2SeqLMWithValueHead."""

    def __init__(self, logits, values):
        self.logits = logits
        self.values = values
        self.calls = 0

    def eval(self):
        return self

    def __call__(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask):
        n = decoder_input_ids.shape[0]
        i = self.calls
        self.calls += n
        return self.logits[i : i + n], None, self.values[i : i + n]


def make_forward_pass():
    g = gen(8)
    # T5-like responses as trl's generate returns them: decoder start (pad 0) first, eos (1)
    # last, right-padded with 0 by the collator. Lengths 7, 5, 3 (incl. start token).
    lens = [7, 5, 3]
    dec_ids = torch.zeros(B, T, dtype=torch.long)
    dec_mask = torch.zeros(B, T, dtype=torch.long)
    for j, n in enumerate(lens):
        dec_ids[j, 1 : n - 1] = torch.randint(2, V, (n - 2,), generator=g)
        dec_ids[j, n - 1] = 1
        dec_mask[j, :n] = 1
    logits = randn(g, B, T, V, scale=2.0)
    values = randn(g, B, T)
    fake = types.SimpleNamespace(
        config=PPOConfig(mini_batch_size=2, batch_size=4), is_encoder_decoder=True
    )
    queries = [torch.ones(4, dtype=torch.long) for _ in range(B)]
    responses = [dec_ids[j, : lens[j]] for j in range(B)]
    model_inputs = {
        "input_ids": torch.ones(B, 4, dtype=torch.long),
        "attention_mask": torch.ones(B, 4, dtype=torch.long),
        "decoder_input_ids": dec_ids,
        "decoder_attention_mask": dec_mask,
    }
    model = _FakeSeq2SeqValueModel(logits, values)
    lp, lg, vals, masks = PPOTrainer.batched_forward_pass(
        fake, model, queries, responses, model_inputs, return_logits=True
    )
    assert torch.equal(lg, logits[:, :-1])
    out = {
        "decoder_input_ids": ten(dec_ids),
        "decoder_attention_mask": ten(dec_mask),
        "logits": ten(logits),
        "values": ten(values),
        "logprobs_out": ten(lp),
        "values_out": ten(vals),
        "masks_out": ten(masks),
    }
    dump("forward_pass.json", out)


# ---------------------------------------------------------------------------------------
# config_defaults.json
# ---------------------------------------------------------------------------------------

CONFIG_FIELDS = [
    "steps", "learning_rate", "adap_kl_ctrl", "init_kl_coef", "kl_penalty", "target", "horizon", "gamma", "lam",
    "cliprange", "cliprange_value", "vf_coef", "batch_size", "mini_batch_size", "gradient_accumulation_steps",
    "ppo_epochs", "max_grad_norm", "early_stopping", "target_kl", "ratio_threshold", "score_clip",
    "whiten_rewards",
]


def make_config():
    c = PPOConfig()
    dump("config_defaults.json", {k: getattr(c, k) for k in CONFIG_FIELDS})


def main():
    torch.manual_seed(0)
    make_core()
    make_rewards()
    make_advantages()
    make_loss()
    make_step_stats()
    make_kl_ctl()
    make_grad_clip()
    make_forward_pass()
    make_config()


if __name__ == "__main__":
    main()
