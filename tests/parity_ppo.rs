//! A whole trl 0.11.4 `PPOTrainer.step` (`tools/make_ppo_fixtures.py`): t5-tiny + a peft LoRA
//! adapter (q, v) + value head, reference = adapter disabled, two `step` calls per case. The
//! Rust trainer replays trl's minibatch permutations and must reproduce every intermediate
//! tensor (log-probs, reference log-probs, values, masks, rewards, KL, advantages, returns),
//! each minibatch's losses and stats, the step stats, the KL controller, and the parameters
//! after each step.
//!
//! Cases: `default` (adaptive KL, `kl` penalty, max_grad_norm with trl's first-call-only
//! clipping, 2 epochs of 2 minibatches) and `full_scaled` (`full` KL penalty, whitened rewards,
//! score clipping, mini_batch_size 1 with 2 accumulation steps, early stopping that triggers).
//!
//! Tolerance: 1e-4 plus the value's own sensitivity recorded by the fixture script (how far
//! trl's output moves when the starting parameters are perturbed by 1e-7 relative — t5-tiny's
//! logits are sharp, log-probs around -40..-80).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use common::fixtures;
use detox_ppo::lab::write_policy;
use detox_ppo::{replay_rollout, PpoTrainer};
use serde_json::Value;

type Cpu = burn::backend::NdArray<f32>;
type Ad = Autodiff<Cpu>;

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        Value::Bool(b) => vec![*b as u8 as f32],
        other => panic!("not numeric: {other}"),
    }
}

fn rows_u32(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

struct Tol<'a> {
    sens: &'a serde_json::Map<String, Value>,
    worst: BTreeMap<String, (f32, f32)>,
}

impl Tol<'_> {
    fn tol(&self, path: &str) -> f32 {
        let s = self
            .sens
            .get(path)
            .and_then(|s| s["abs"].as_f64())
            .unwrap_or(0.0) as f32;
        1e-4 + 4.0 * s
    }

    fn check(&mut self, path: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{path}: length");
        let base = self.tol(path);
        let mut worst = 0.0f32;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let d = (g - w).abs();
            // relative 1e-4 for magnitudes above 1 (f32 sums of squares of values ~30)
            let tol = base + 1e-4 * (w.abs() - 1.0).max(0.0);
            assert!(
                d <= tol,
                "{path}[{i}]: detox {g} vs trl {w} (|diff| {d} > {tol})"
            );
            worst = worst.max(d);
        }
        let e = self.worst.entry(path.to_string()).or_insert((0.0, base));
        e.0 = e.0.max(worst);
    }
}

fn safetensors_map(file: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, data)
        })
        .collect()
}

/// trl's `PPOConfig` fields of the fixture (it also records `backward_batch_size` and `seed`,
/// which are derived / numpy's).
/// How the step gets the policy's rollout log-probs and values.
#[derive(Clone, Copy, PartialEq)]
enum Rollout {
    /// trl's `batched_forward_pass` over queries and responses.
    Recomputed,
    /// Kept from the cached decode loop, the fixture's responses replayed through it
    /// (`detox ppo --rollout-from-generation true`).
    FromDecodeLoop,
}

/// `m` with the positions past each row's response (padding) set to 0: where the rollout
/// kept from the decode loop has no value (trl's forward pass computes some on the padding;
/// every use masks them out).
fn real_positions_only(m: &[f32], responses: &[Vec<u32>]) -> Vec<f32> {
    let cols = m.len() / responses.len();
    let mut out = m.to_vec();
    for (r, resp) in responses.iter().enumerate() {
        for c in resp.len().saturating_sub(1)..cols {
            out[r * cols + c] = 0.0;
        }
    }
    out
}

fn run_case(case: &str) {
    run_case_with::<Ad>(case, Rollout::Recomputed)
}

fn run_case_with<B: AutodiffBackend>(case: &str, rollout: Rollout) {
    let (mut trainer, fx, lora) = common::ppo_fixture_trainer::<B>(case);
    let dir = fixtures().join("ppo").join(case);
    let config = trainer.config.clone();
    assert!(trainer.trl_clip_quirk);
    let initial = safetensors_map(&dir.join("adapter/adapter_model.safetensors"));

    for (k, st) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let sens = fx["sensitivity"][k].as_object().unwrap();
        let mut tol = Tol {
            sens,
            worst: BTreeMap::new(),
        };
        let perms: Vec<Vec<usize>> = st["permutations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect()
            })
            .collect();
        // trl draws one permutation per epoch it runs; pad for the epochs early stopping skipped
        let mut perms_all = perms.clone();
        while perms_all.len() < config.ppo_epochs {
            perms_all.push((0..config.batch_size).collect());
        }
        let scores = flat(&st["scores"]);
        let kl_before = trainer.state.kl_ctl.value();
        assert!((kl_before - st["kl_coef_used"].as_f64().unwrap()).abs() < 1e-12);
        let (queries, responses) = (rows_u32(&st["queries"]), rows_u32(&st["responses"]));
        let out = match rollout {
            Rollout::Recomputed => {
                trainer.step_with_permutations(&queries, &responses, &scores, Some(&perms_all))
            }
            Rollout::FromDecodeLoop => {
                let q: Vec<&[u32]> = queries.iter().map(|q| q.as_slice()).collect();
                let device = trainer.device().clone();
                let known = replay_rollout(&trainer.policy().valid(), &q, &responses, &device);
                trainer.step_reusing(&queries, &responses, &scores, &known, Some(&perms_all))
            }
        }
        .unwrap();
        let r = &out.record;
        tol.check("scores_used", &r.scores, &flat(&st["scores_used"]));
        tol.check("masks", &r.masks.data, &flat(&st["masks"]));
        for (name, got) in [
            ("logprobs", &r.logprobs),
            ("ref_logprobs", &r.ref_logprobs),
            ("values_rollout", &r.values_rollout),
            ("rewards", &r.rewards),
            ("non_score_reward", &r.non_score_reward),
            ("kls", &r.kls),
            ("values", &r.values),
            ("advantages", &r.advantages),
            ("returns", &r.returns),
        ] {
            let want = flat(&st[name]);
            let padding_differs = rollout == Rollout::FromDecodeLoop
                && matches!(
                    name,
                    "logprobs" | "values_rollout" | "rewards" | "non_score_reward" | "kls"
                );
            if padding_differs {
                tol.check(
                    name,
                    &real_positions_only(&got.data, &responses),
                    &real_positions_only(&want, &responses),
                );
            } else {
                tol.check(name, &got.data, &want);
            }
        }
        let mbs = st["minibatches"].as_array().unwrap();
        assert_eq!(r.minibatches.len(), mbs.len(), "step {k}: minibatch count");
        for (m, want) in r.minibatches.iter().zip(mbs) {
            let rows: Vec<usize> = want["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(m.rows, rows, "step {k}: minibatch rows");
            tol.check(
                "minibatches.pg_loss",
                &[m.pg_loss],
                &[want["pg_loss"].as_f64().unwrap() as f32],
            );
            tol.check(
                "minibatches.vf_loss",
                &[m.vf_loss],
                &[want["vf_loss"].as_f64().unwrap() as f32],
            );
            for (key, v) in want["stats"].as_object().unwrap() {
                let got = *m
                    .stats
                    .get(key)
                    .unwrap_or_else(|| panic!("minibatch stat {key}"));
                tol.check(
                    &format!("minibatches.stats.{key}"),
                    &[got as f32],
                    &[v.as_f64().unwrap() as f32],
                );
            }
        }
        assert_eq!(
            r.early_stopped,
            st["early_stopped"].as_bool().unwrap(),
            "step {k}: early stopping"
        );
        for (key, v) in st["stats"].as_object().unwrap() {
            let got = *out
                .stats
                .get(key)
                .unwrap_or_else(|| panic!("step stat {key} missing"));
            tol.check(
                &format!("stats.{key}"),
                &[got as f32],
                &[v.as_f64().unwrap() as f32],
            );
        }
        let kl_after = st["kl_coef_after"].as_f64().unwrap();
        let kl = trainer.state.kl_ctl.value();
        assert!(
            (kl - kl_after).abs() <= 1e-6 * kl_after.abs().max(1.0),
            "kl_coef after step {k}: {kl} vs {kl_after}"
        );

        // parameters after the step: the update (after - initial) must be trl's
        // a directory of this call's own: several tests replay the same case at once
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = std::env::temp_dir().join(format!(
            "detox-parity-ppo-{case}-{k}-{}-{call}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        write_policy(
            &trainer.policy().valid(),
            lora.as_ref(),
            &fixtures().join("t5-tiny"),
            &tmp,
        )
        .unwrap();
        let mut ours = safetensors_map(&tmp.join("adapter_model.safetensors"));
        ours.extend(safetensors_map(&tmp.join("model.safetensors")));
        let _ = std::fs::remove_dir_all(&tmp);
        let want = safetensors_map(&dir.join(format!("params_step{}.safetensors", k + 1)));
        let start_vhead = safetensors_map(&dir.join("v_head.safetensors"));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "trainable parameter names"
        );
        let mut worst_rel = 0.0f32;
        let (mut sum_diff, mut sum_update) = (0.0f64, 0.0f64);
        for (name, w) in &want {
            let g = &ours[name];
            let init = initial.get(name).or_else(|| start_vhead.get(name)).unwrap();
            let max_update = w
                .iter()
                .zip(init)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                let d = (gv - wv).abs();
                // the 1e-4, per element (Adam's sign-like update of an element with a
                // near-zero gradient is as sensitive as the gradient's sign) ...
                assert!(
                    d <= 1e-4,
                    "step {k} {name}[{i}]: detox {gv} vs trl {wv} (update {max_update}, |diff| {d})"
                );
                sum_diff += d as f64;
                sum_update += (wv - init[i]).abs() as f64;
                if max_update > 0.0 {
                    worst_rel = worst_rel.max(d / max_update);
                }
            }
        }
        // ... and, since 1e-4 is about one step's update at lr 1e-4, in aggregate: the total
        // difference must be a small fraction of trl's total update
        let rel = sum_diff / sum_update;
        eprintln!(
            "{case} step {}: parameters: sum|diff| / sum|update| = {rel:.2e}, worst element diff / tensor's max update {worst_rel:.2e}",
            k + 1
        );
        assert!(
            rel < 0.01,
            "step {k}: parameters drift from trl's update ({rel:.3e})"
        );
        for (p, (w, t)) in &tol.worst {
            if *w > 1e-5 {
                eprintln!("  {p}: max |diff| {w:.2e} (tol {t:.2e})");
            }
        }
    }
}

#[test]
fn ppo_step_matches_trl_default_case() {
    run_case("default");
}

/// The policy's log-probs and values kept from the decode loop (one cached token per step)
/// instead of recomputed by the rollout pass: the two steps still match trl's record.
#[test]
fn ppo_step_with_the_rollout_from_the_decode_loop_matches_trl() {
    run_case_with::<Ad>("default", Rollout::FromDecodeLoop);
}

/// The same on burn-flex (`--device cpu`), whose decode loop runs the fused few-row and
/// cached-attention kernels.
#[test]
fn ppo_step_with_the_rollout_from_the_decode_loop_matches_trl_on_flex() {
    run_case_with::<Autodiff<burn_flex::Flex>>("default", Rollout::FromDecodeLoop);
}

#[test]
fn ppo_step_matches_trl_full_kl_whitened_accumulated_early_stopped() {
    run_case("full_scaled");
}

fn default_trainer() -> (PpoTrainer<Ad>, Value) {
    let (t, fx, _) = common::ppo_fixture_trainer::<Ad>("default");
    (t, fx)
}

#[test]
fn an_empty_response_gets_its_reward_and_does_not_crash_the_step() {
    let (mut trainer, fx) = default_trainer();
    let st = &fx["steps"][0];
    let queries = rows_u32(&st["queries"]);
    let mut responses = rows_u32(&st["responses"]);
    responses[1] = vec![0, 1]; // start token + EOS: no scored token
    let out = trainer
        .step(&queries, &responses, &flat(&st["scores"]))
        .unwrap();
    assert_eq!(out.record.empty_rows, vec![1]);
    assert!(out.record.masks.row(1).iter().all(|&m| m == 0.0));
    assert!(out.record.advantages.data.iter().all(|v| v.is_finite()));
    assert!(out.stats["ppo/loss/total"].is_finite());
}

#[test]
fn non_finite_scores_stop_the_step_naming_the_tensor() {
    let (mut trainer, fx) = default_trainer();
    let st = &fx["steps"][0];
    let mut scores = flat(&st["scores"]);
    scores[2] = f32::NAN;
    let before = trainer.state.clone();
    let err = trainer
        .step(
            &rows_u32(&st["queries"]),
            &rows_u32(&st["responses"]),
            &scores,
        )
        .unwrap_err();
    assert!(err.to_string().contains("`scores`"), "{err}");
    assert_eq!(trainer.state, before, "nothing changed");
    // a wrong batch is refused with trl's message
    let err = trainer
        .step(
            &rows_u32(&st["queries"])[..3],
            &rows_u32(&st["responses"]),
            &flat(&st["scores"]),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match number of examples"),
        "{err}"
    );
}

#[test]
fn the_reference_is_the_base_model_and_shares_its_weights() {
    let (trainer, fx) = default_trainer();
    let st = &fx["steps"][0];
    // the reference log-probs are the adapter-disabled model's: trl's ref_logprobs, computed
    // as trl's `batched_forward_pass` does, in chunks of `mini_batch_size` rows of the padded batch
    // (a different chunking changes the GEMM shapes and so the float32 rounding of t5-tiny's sharp
    // log-probs by more than 1e-4)
    let batch =
        detox_ppo::PaddedBatch::new(&rows_u32(&st["queries"]), &rows_u32(&st["responses"]), 0);
    let device = Default::default();
    let chunk = fx["config"]["mini_batch_size"].as_u64().unwrap() as usize;
    let rows: Vec<usize> = (0..batch.batch).collect();
    let mut got = Vec::new();
    for part in rows.chunks(chunk) {
        let out = detox_ppo::trainer::reference_forward(trainer.reference(), &batch, part, &device)
            .unwrap();
        got.extend(detox_rl::to_vec_f32(out.logprobs));
    }
    let mut tol = Tol {
        sens: fx["sensitivity"][0].as_object().unwrap(),
        worst: BTreeMap::new(),
    };
    tol.check("ref_logprobs", &got, &flat(&st["ref_logprobs"]));
    // no LoRA layers in the reference, the same base weight tensors as the policy
    let mut r = trainer.reference().clone();
    use detox_models::LoraTarget;
    assert_eq!(r.lora_param_count(), 0);
}
