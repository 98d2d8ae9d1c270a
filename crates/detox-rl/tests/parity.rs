//! Parity with trl 0.11.4: every expected number below was computed by trl's (or torch's) own
//! code in `tools/make_rl_fixtures.py` and stored under `tests/fixtures/rl/`.

use std::path::PathBuf;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde_json::Value;

use detox_rl::*;

type B = NdArray<f32>;
type AD = Autodiff<NdArray<f32>>;

const TOL: f64 = 1e-5;

// ------------------------------------------------------------------------------------------
// fixture helpers
// ------------------------------------------------------------------------------------------

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/rl")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => panic!("not a number: {other}"),
        },
        other => panic!("not a number: {other}"),
    }
}

fn shape(v: &Value) -> Vec<usize> {
    v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| num(x) as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn ten<Bk: Backend, const D: usize>(v: &Value) -> Tensor<Bk, D> {
    let s = shape(v);
    assert_eq!(s.len(), D, "rank");
    // masks are stored as int64 in the fixtures; as float tensors they hold 0.0 / 1.0
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| num(x) as f32)
        .collect();
    Tensor::from_data(TensorData::new(data, s), &Default::default())
}

fn int_ten<Bk: Backend, const D: usize>(v: &Value) -> Tensor<Bk, D, Int> {
    let s = shape(v);
    assert_eq!(s.len(), D, "rank");
    Tensor::from_data(TensorData::new(ints(v), s), &Default::default())
}

fn close(a: f64, e: f64) -> bool {
    if e.is_nan() {
        return a.is_nan();
    }
    if e.is_infinite() {
        return a == e;
    }
    (a - e).abs() <= TOL * e.abs().max(1.0)
}

fn assert_scalar(actual: f64, expected: f64, what: &str) {
    assert!(
        close(actual, expected),
        "{what}: got {actual}, trl {expected}"
    );
}

fn assert_vec(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(close(*a as f64, *e as f64), "{what}[{i}]: got {a}, trl {e}");
    }
}

fn assert_tensor<Bk: Backend, const D: usize>(actual: Tensor<Bk, D>, expected: &Value, what: &str) {
    let exp_shape = shape(expected);
    // keep-dim reductions may carry extra size-1 dims
    let act_shape: Vec<usize> = actual.dims().to_vec();
    let strip = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    assert_eq!(
        strip(&act_shape),
        strip(&exp_shape),
        "{what}: shape {act_shape:?} vs trl {exp_shape:?}"
    );
    assert_vec(&to_vec_f32(actual), &floats(expected), what);
}

// ------------------------------------------------------------------------------------------
// trl.core
// ------------------------------------------------------------------------------------------

/// On ndarray (burn's composition), burn-flex and autodiff over burn-flex (the fused
/// per-row kernels of `detox_models::kernels_logits`).
#[test]
fn core_logprobs_and_entropy() {
    core_logprobs_and_entropy_on::<B>("ndarray");
    core_logprobs_and_entropy_on::<burn::backend::Flex>("flex");
    core_logprobs_and_entropy_on::<Autodiff<burn::backend::Flex>>("autodiff flex");
}

fn core_logprobs_and_entropy_on<Bk: Backend>(backend: &str) {
    let f = load("core.json");
    let logits: Tensor<Bk, 3> = ten(&f["logits"]);
    let labels: Tensor<Bk, 2, Int> = int_ten(&f["labels"]);
    assert_tensor(
        logprobs_from_logits(logits.clone(), labels),
        &f["logprobs"],
        &format!("logprobs_from_logits on {backend}"),
    );
    assert_tensor(
        logprobs_full_from_logits(logits.clone()),
        &f["logprobs_full"],
        &format!("logprobs (gather=False) on {backend}"),
    );
    assert_tensor(
        entropy_from_logits(logits),
        &f["entropy"],
        &format!("entropy_from_logits on {backend}"),
    );
}

#[test]
fn core_masked_mean() {
    let f = load("core.json");
    let x: Tensor<B, 2> = ten(&f["x"]);
    let mask: Tensor<B, 2> = ten(&f["mask"]);
    let all = masked_mean(x.clone(), mask.clone(), None);
    assert_eq!(all.dims(), [1, 1]);
    assert_scalar(item(all) as f64, num(&f["masked_mean"]), "masked_mean");
    let a0 = masked_mean(x.clone(), mask.clone(), Some(0));
    assert_eq!(a0.dims(), [1, 7]);
    assert_tensor(a0, &f["masked_mean_axis0"], "masked_mean axis 0");
    let a1 = masked_mean(x, mask, Some(1));
    assert_eq!(a1.dims(), [3, 1]);
    assert_tensor(a1, &f["masked_mean_axis1"], "masked_mean axis 1");
}

#[test]
fn core_masked_var() {
    let f = load("core.json");
    let x: Tensor<B, 2> = ten(&f["x"]);
    let mask: Tensor<B, 2> = ten(&f["mask"]);
    let one: Tensor<B, 2> = ten(&f["mask_one"]);
    let v = |m: &Tensor<B, 2>, unbiased| {
        item(masked_var(x.clone(), m.clone(), unbiased).unwrap()) as f64
    };
    assert_scalar(
        v(&mask, true),
        num(&f["masked_var_unbiased"]),
        "masked_var unbiased",
    );
    assert_scalar(
        v(&mask, false),
        num(&f["masked_var_biased"]),
        "masked_var biased",
    );
    // a single unmasked element: trl's Bessel factor is 1/0 and the variance NaN
    assert_scalar(
        v(&one, true),
        num(&f["masked_var_one_unbiased"]),
        "masked_var one element",
    );
    assert_scalar(
        v(&one, false),
        num(&f["masked_var_one_biased"]),
        "masked_var one element biased",
    );
    // an empty mask: trl raises ValueError
    assert!(f["masked_var_zero_error"]
        .as_str()
        .unwrap()
        .starts_with("The sum of the mask is zero"));
    let zero = Tensor::<B, 2>::zeros([3, 7], &Default::default());
    let err = masked_var(x.clone(), zero.clone(), true).unwrap_err();
    assert_eq!(err, RlError::ZeroMaskSum);
    assert_eq!(
        err.to_string(),
        f["masked_var_zero_error"].as_str().unwrap()
    );
    // unbiased=False does not check (0/0 = NaN)
    assert!(item(masked_var(x, zero, false).unwrap()).is_nan());
}

#[test]
fn core_masked_whiten_and_clip() {
    let f = load("core.json");
    let x: Tensor<B, 2> = ten(&f["x"]);
    let mask: Tensor<B, 2> = ten(&f["mask"]);
    assert_tensor(
        masked_whiten(x.clone(), mask.clone(), true).unwrap(),
        &f["masked_whiten_shift"],
        "masked_whiten",
    );
    assert_tensor(
        masked_whiten(x.clone(), mask, false).unwrap(),
        &f["masked_whiten_noshift"],
        "masked_whiten noshift",
    );
    let lo: Tensor<B, 2> = ten(&f["lo"]);
    let hi: Tensor<B, 2> = ten(&f["hi"]);
    assert_tensor(
        clip_by_value(x.clone(), lo, hi),
        &f["clip_by_value"],
        "clip_by_value",
    );
    assert_tensor(whiten(x.clone(), true), &f["whiten_shift"], "whiten");
    assert_tensor(whiten(x, false), &f["whiten_noshift"], "whiten noshift");
}

#[test]
fn core_works_on_autodiff_backend() {
    let f = load("core.json");
    let logits: Tensor<AD, 3> = ten::<AD, 3>(&f["logits"]).require_grad();
    let labels: Tensor<AD, 2, Int> = int_ten(&f["labels"]);
    let mask: Tensor<AD, 2> = ten(&f["mask"]);
    let lp = logprobs_from_logits(logits.clone(), labels);
    assert_tensor(lp.clone(), &f["logprobs"], "logprobs (autodiff)");
    assert_tensor(
        entropy_from_logits(logits.clone()),
        &f["entropy"],
        "entropy (autodiff)",
    );
    let w = masked_whiten(lp, mask, true).unwrap();
    let grads = w.sum().backward();
    assert!(logits.grad(&grads).is_some());
}

// ------------------------------------------------------------------------------------------
// PPOTrainer.compute_rewards
// ------------------------------------------------------------------------------------------

#[test]
fn rewards_every_kl_penalty_mode() {
    let f = load("rewards.json");
    let scores: Tensor<B, 1> = ten(&f["scores"]);
    let logprobs: Tensor<B, 2> = ten(&f["logprobs"]);
    let ref_logprobs: Tensor<B, 2> = ten(&f["ref_logprobs"]);
    let logits: Tensor<B, 3> = ten(&f["logits"]);
    let ref_logits: Tensor<B, 3> = ten(&f["ref_logits"]);
    let mask: Tensor<B, 2> = ten(&f["mask"]);
    // the stored gathered log-probs are trl's; ours must agree before they are used
    let labels: Tensor<B, 2, Int> = int_ten(&f["labels"]);
    assert_tensor(
        logprobs_from_logits(logits.clone(), labels.clone()),
        &f["logprobs"],
        "logprobs",
    );
    assert_tensor(
        logprobs_from_logits(ref_logits.clone(), labels),
        &f["ref_logprobs"],
        "ref logprobs",
    );

    let cases = f["cases"].as_array().unwrap();
    let mut modes = std::collections::BTreeSet::new();
    for case in cases {
        let mode: KlPenalty = case["kl_penalty"].as_str().unwrap().parse().unwrap();
        let kl_coef = num(&case["kl_coef"]);
        modes.insert(mode.as_str());
        let r = if mode == KlPenalty::Full {
            assert_eq!(
                compute_rewards(
                    scores.clone(),
                    logprobs.clone(),
                    ref_logprobs.clone(),
                    mask.clone(),
                    kl_coef,
                    mode
                )
                .unwrap_err(),
                RlError::FullKlNeedsLogits
            );
            compute_rewards_full(
                scores.clone(),
                logits.clone(),
                ref_logits.clone(),
                mask.clone(),
                kl_coef,
            )
            .unwrap()
        } else {
            compute_rewards(
                scores.clone(),
                logprobs.clone(),
                ref_logprobs.clone(),
                mask.clone(),
                kl_coef,
                mode,
            )
            .unwrap()
        };
        let what = format!("{mode} kl_coef {kl_coef}");
        assert_tensor(r.kls, &case["kls"], &format!("{what}: kls"));
        assert_tensor(
            r.non_score_rewards,
            &case["non_score_rewards"],
            &format!("{what}: non_score_rewards"),
        );
        assert_tensor(r.rewards, &case["rewards"], &format!("{what}: rewards"));
    }
    assert_eq!(modes.len(), 4, "every kl_penalty mode covered");
}

#[test]
fn rewards_empty_row_is_an_error() {
    let d = Default::default();
    let scores = Tensor::<B, 1>::from_floats([1.0, 2.0], &d);
    let lp = Tensor::<B, 2>::zeros([2, 3], &d);
    let mask = Tensor::<B, 2>::from_floats([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], &d);
    let err = compute_rewards(scores, lp.clone(), lp, mask, 0.2, KlPenalty::Kl).unwrap_err();
    assert_eq!(err, RlError::EmptyRowMask(1));
}

// ------------------------------------------------------------------------------------------
// PPOTrainer.compute_advantages
// ------------------------------------------------------------------------------------------

#[test]
fn advantages_gae_and_whitening() {
    let f = load("advantages.json");
    let values: Tensor<B, 2> = ten(&f["values"]);
    let rewards: Tensor<B, 2> = ten(&f["rewards"]);
    let mask: Tensor<B, 2> = ten(&f["mask"]);
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.iter().any(|c| c["whiten_rewards"].as_bool().unwrap()));
    for case in cases {
        let gamma = num(&case["gamma"]);
        let lam = num(&case["lam"]);
        let wr = case["whiten_rewards"].as_bool().unwrap();
        let a = compute_advantages(
            values.clone(),
            rewards.clone(),
            mask.clone(),
            gamma,
            lam,
            wr,
        )
        .unwrap();
        let what = format!("gamma {gamma} lam {lam} whiten_rewards {wr}");
        assert_tensor(a.values, &case["values_out"], &format!("{what}: values"));
        assert_tensor(
            a.advantages,
            &case["advantages"],
            &format!("{what}: advantages"),
        );
        assert_tensor(a.returns, &case["returns"], &format!("{what}: returns"));
    }
}

#[test]
fn advantages_are_detached_on_autodiff() {
    let f = load("advantages.json");
    let values: Tensor<AD, 2> = ten::<AD, 2>(&f["values"]).require_grad();
    let rewards: Tensor<AD, 2> = ten(&f["rewards"]);
    let mask: Tensor<AD, 2> = ten(&f["mask"]);
    let case = &f["cases"][0];
    let a = compute_advantages(values.clone(), rewards, mask, 1.0, 0.95, false).unwrap();
    assert_tensor(
        a.advantages.clone(),
        &case["advantages"],
        "advantages (autodiff)",
    );
    // trl detaches the advantages but not the returns
    let g = a.advantages.sum().backward();
    assert!(values.grad(&g).is_none(), "advantages must be detached");
    let g = a.returns.sum().backward();
    assert!(values.grad(&g).is_some(), "returns keep the graph");
}

// ------------------------------------------------------------------------------------------
// PPOTrainer.loss
// ------------------------------------------------------------------------------------------

#[test]
fn loss_values_stats_and_threshold() {
    let f = load("loss.json");
    let logits: Tensor<B, 3> = ten(&f["logits"]);
    let labels: Tensor<B, 2, Int> = int_ten(&f["labels"]);
    let cases = f["cases"].as_array().unwrap();
    let mut skipped_seen = [false, false];
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let cfg = PpoLossConfig {
            cliprange: num(&case["cliprange"]),
            cliprange_value: num(&case["cliprange_value"]),
            vf_coef: num(&case["vf_coef"]),
            ratio_threshold: num(&case["ratio_threshold"]),
        };
        let logprobs = logprobs_from_logits(logits.clone(), labels.clone());
        assert_tensor(
            logprobs.clone(),
            &case["logprobs"],
            &format!("{name}: logprobs"),
        );
        let out = ppo_loss::<B>(
            ten(&case["old_logprobs"]),
            ten(&f["values"]),
            logits.clone(),
            ten(&f["vpreds"]),
            logprobs,
            ten(&f["mask"]),
            ten(&f["advantages"]),
            ten(&f["returns"]),
            &cfg,
        )
        .unwrap();
        assert_scalar(
            out.avg_ratio as f64,
            num(&case["avg_ratio"]),
            &format!("{name}: avg_ratio"),
        );
        let expect_skip = num(&case["avg_ratio"]) > cfg.ratio_threshold;
        assert_eq!(out.skipped, expect_skip, "{name}: skipped");
        skipped_seen[expect_skip as usize] = true;
        assert_scalar(
            item(out.pg_loss) as f64,
            num(&case["pg_loss"]),
            &format!("{name}: pg_loss"),
        );
        assert_scalar(
            item(out.vf_loss) as f64,
            num(&case["vf_loss"]),
            &format!("{name}: vf_loss"),
        );
        let trl_stats = case["stats"].as_object().unwrap();
        assert_eq!(out.stats.len(), trl_stats.len(), "{name}: stat keys");
        for (k, v) in trl_stats {
            let got = *out
                .stats
                .get(k)
                .unwrap_or_else(|| panic!("{name}: missing stat {k}"));
            assert_scalar(got, num(v), &format!("{name}: {k}"));
        }
        assert_tensor(out.ratio, &case["ratio"], &format!("{name}: ratio"));
    }
    assert_eq!(
        skipped_seen,
        [true, true],
        "ratio_threshold both triggered and not"
    );
    // clipping is exercised
    assert!(num(&cases[0]["stats"]["policy/clipfrac"]) > 0.0);
    assert!(num(&cases[1]["stats"]["val/clipfrac"]) > 0.0);
}

#[test]
fn loss_gradients_match_torch_autograd() {
    let f = load("loss.json");
    let labels: Tensor<AD, 2, Int> = int_ten(&f["labels"]);
    for case in f["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let cfg = PpoLossConfig {
            cliprange: num(&case["cliprange"]),
            cliprange_value: num(&case["cliprange_value"]),
            vf_coef: num(&case["vf_coef"]),
            ratio_threshold: num(&case["ratio_threshold"]),
        };
        let logits: Tensor<AD, 3> = ten::<AD, 3>(&f["logits"]).require_grad();
        let vpreds: Tensor<AD, 2> = ten::<AD, 2>(&f["vpreds"]).require_grad();
        let logprobs = logprobs_from_logits(logits.clone(), labels.clone());
        let out = ppo_loss::<AD>(
            ten(&case["old_logprobs"]),
            ten(&f["values"]),
            logits.clone(),
            vpreds.clone(),
            logprobs,
            ten(&f["mask"]),
            ten(&f["advantages"]),
            ten(&f["returns"]),
            &cfg,
        )
        .unwrap();
        assert_scalar(
            item(out.pg_loss.clone()) as f64,
            num(&case["pg_loss"]),
            &format!("{name}: pg_loss (ad)"),
        );
        let loss = out.pg_loss + out.vf_loss;
        let grads = loss.backward();
        assert_tensor(
            logits.grad(&grads).unwrap(),
            &case["grad_logits"],
            &format!("{name}: d loss / d logits"),
        );
        assert_tensor(
            vpreds.grad(&grads).unwrap(),
            &case["grad_vpreds"],
            &format!("{name}: d loss / d vpreds"),
        );
    }
}

// ------------------------------------------------------------------------------------------
// PPOTrainer.record_step_stats (+ stack_dicts averaging, + the KL controller update)
// ------------------------------------------------------------------------------------------

#[test]
fn step_stats_match_record_step_stats() {
    let f = load("step_stats.json");
    let lens = |k: &str| -> Vec<usize> {
        f[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let minibatch: Vec<Stats> = f["minibatch_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), num(v)))
                .collect()
        })
        .collect();
    let kl_coef = num(&f["kl_coef"]);
    let stats = record_step_stats::<B>(
        kl_coef,
        ten(&f["scores"]),
        ten(&f["logprobs"]),
        ten(&f["non_score_reward"]),
        ten(&f["kls"]),
        ten(&f["mask"]),
        &lens("query_lens"),
        &lens("response_lens"),
        &minibatch,
    );
    let trl = f["stats"].as_object().unwrap();
    let ours: Vec<&String> = stats.keys().collect();
    let mut theirs: Vec<&String> = trl.keys().collect();
    theirs.sort();
    assert_eq!(ours, theirs, "scalar stat keys");
    for (k, v) in trl {
        assert_scalar(stats[k], num(v), k);
    }
    let arrays: Vec<&str> = f["array_stat_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(arrays, ARRAY_STAT_KEYS.to_vec());

    // PPOTrainer.step: kl_ctl.update(stats["objective/kl"], batch_size)
    let mut ctl = AdaptiveKLController::new(kl_coef, num(&f["target"]), num(&f["horizon"]));
    ctl.update(
        stats["objective/kl"],
        f["batch_size"].as_u64().unwrap() as usize,
    );
    assert_scalar(
        ctl.value,
        num(&f["kl_coef_after_update"]),
        "kl_coef after update",
    );
}

// ------------------------------------------------------------------------------------------
// KL controllers
// ------------------------------------------------------------------------------------------

#[test]
fn kl_controllers_follow_trl() {
    let f = load("kl_ctl.json");
    for traj in f["adaptive"].as_array().unwrap() {
        let mut ctl = KlController::new(
            true,
            num(&traj["init"]),
            num(&traj["target"]),
            num(&traj["horizon"]),
        );
        for (i, step) in traj["steps"].as_array().unwrap().iter().enumerate() {
            ctl.update(
                num(&step["current"]),
                step["n_steps"].as_u64().unwrap() as usize,
            );
            let e = num(&step["value"]);
            assert!(
                (ctl.value() - e).abs() <= 1e-12 * e.abs(),
                "adaptive step {i}: {} vs trl {e}",
                ctl.value()
            );
        }
    }
    let mut fixed = KlController::new(false, num(&f["fixed_init"]), 6.0, 10000.0);
    fixed.update(9.0, 256);
    assert_eq!(fixed.value(), num(&f["fixed_after"]));
}

// ------------------------------------------------------------------------------------------
// clip_grad_norm_
// ------------------------------------------------------------------------------------------

#[test]
fn grad_clip_coefficient_matches_torch() {
    let f = load("grad_clip.json");
    let mut clipped_and_not = [false, false];
    for case in f["cases"].as_array().unwrap() {
        let sq: Vec<f32> = case["sq_sums"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| num(x) as f32)
            .collect();
        let max_norm = num(&case["max_norm"]) as f32;
        let total = global_grad_norm(&sq) as f64;
        let coef = global_norm_scale(&sq, max_norm) as f64;
        let (et, ec) = (num(&case["total_norm"]), num(&case["coef"]));
        assert!(
            (total - et).abs() <= 1e-6 * et,
            "total norm {total} vs torch {et}"
        );
        assert!((coef - ec).abs() <= 1e-6 * ec, "coef {coef} vs torch {ec}");
        clipped_and_not[(ec < 1.0) as usize] = true;
    }
    assert_eq!(clipped_and_not, [true, true]);
    assert_eq!(global_norm_scale(&[], 1.0), 1.0);
    assert!(global_norm_scale(&[f32::NAN], 1.0).is_nan());
    assert_eq!(global_norm_scale(&[f32::INFINITY], 1.0), 0.0);
    // trl's `model_params` filter: only the first clip_grad_norm_ call sees the parameters
    for (i, call) in f["trl_filter_exhausted"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let clipped = num(&call["total_norm"]) > 0.0;
        assert_eq!(trl_clips_this_call(i), clipped, "call {i}");
        if clipped {
            // 6 elements of 10.0: norm sqrt(600); the grads were multiplied by the coefficient
            let coef = global_norm_scale(&[300.0, 300.0], 1.0) as f64;
            assert_scalar(10.0 * coef, num(&call["grad_after"]), "clipped grad");
        }
    }
}

// ------------------------------------------------------------------------------------------
// batched_forward_pass (encoder-decoder)
// ------------------------------------------------------------------------------------------

#[test]
fn seq2seq_forward_pass_slicing_and_masks() {
    let f = load("forward_pass.json");
    let out = seq2seq_forward_outputs::<B>(
        ten(&f["logits"]),
        ten(&f["values"]),
        int_ten(&f["decoder_input_ids"]),
        int_ten(&f["decoder_attention_mask"]),
    )
    .unwrap();
    assert_tensor(out.logprobs, &f["logprobs_out"], "logprobs");
    assert_tensor(out.values, &f["values_out"], "values");
    assert_tensor(out.masks, &f["masks_out"], "masks");
    let logits: Tensor<B, 3> = ten(&f["logits"]);
    assert_eq!(
        to_vec_f32(out.logits),
        to_vec_f32(logits.slice([0..3, 0..6, 0..11]))
    );
}

// ------------------------------------------------------------------------------------------
// PPOConfig
// ------------------------------------------------------------------------------------------

#[test]
fn config_defaults_match_ppo_config() {
    let f = load("config_defaults.json");
    let trl: PpoConfig = serde_json::from_value(f).unwrap();
    assert_eq!(trl, PpoConfig::default());
    assert_eq!(PpoConfig::default().loss_config(), PpoLossConfig::default());
    assert!(PpoConfig::default().validate().is_ok());
}

#[test]
fn epoch_minibatches_partition_the_batch() {
    use rand::SeedableRng;
    let cfg = PpoConfig {
        batch_size: 12,
        mini_batch_size: 2,
        gradient_accumulation_steps: 3,
        ..PpoConfig::default()
    };
    cfg.validate().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mbs = cfg.epoch_minibatches(&mut rng);
    assert_eq!(mbs.len(), 6);
    assert!(mbs.iter().all(|m| m.len() == 2));
    let mut all: Vec<usize> = mbs.concat();
    all.sort();
    assert_eq!(all, (0..12).collect::<Vec<_>>());
    let bad = PpoConfig {
        batch_size: 10,
        mini_batch_size: 4,
        ..PpoConfig::default()
    };
    assert!(bad.validate().is_err());
}
