//! `detox`: summarize dialogues with FLAN-T5, score text with a RoBERTa classifier, inspect
//! checkpoints, compute ROUGE — on the CPU (default), wgpu or CUDA.

mod backend;
mod bench;
mod bench_ppo;
mod cmd_annotate;
mod cmd_convert;
mod cmd_evaluate;
mod cmd_finetune;
mod cmd_init;
mod cmd_inspect;
mod cmd_ppo;
mod cmd_report;
mod cmd_rouge;
mod cmd_score;
mod cmd_summarize;
mod cmd_train_classifier;
mod cmd_train_reward;
mod generation_args;
mod malloc;
mod parallel_args;
mod prompt;
mod shipped;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "detox",
    version,
    about = "FLAN-T5 summarization, fine-tuning and PPO detoxification in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Summarize a dialogue (or run any prompt) with a T5 / FLAN-T5 model.
    Summarize(cmd_summarize::SummarizeArgs),
    /// Classify texts with a RoBERTa sequence classifier: logits and probabilities per label.
    Score(cmd_score::ScoreArgs),
    /// A randomly initialized model directory (T5 or RoBERTa, transformers' initialization) from a
    /// config.json and a tokenizer: the start of training from scratch.
    Init(cmd_init::InitArgs),
    /// Copy a model directory with its weights in another float type (bf16, f16, f32).
    Convert(cmd_convert::ConvertArgs),
    /// Show a checkpoint's architecture, parameter count and tensors.
    Inspect(cmd_inspect::InspectArgs),
    /// ROUGE-1/2/L/Lsum exactly as rouge_score computes it.
    Rouge(cmd_rouge::RougeArgs),
    /// Side-by-side summaries of several models on the first N dialogues, with ROUGE; CSV + JSON.
    Evaluate(cmd_evaluate::EvaluateArgs),
    /// Throughput benchmarks at flan-t5-base / roberta-base size (random weights).
    Bench(bench::BenchArgs),
    /// Seconds per PPO step and per lab iteration at flan-t5-base size (random weights), peak memory.
    BenchPpo(bench_ppo::PpoBenchArgs),
    /// Fine-tune a T5 / FLAN-T5 model (full or LoRA) on DialogSum-style JSONL.
    Finetune(Box<cmd_finetune::FinetuneArgs>),
    /// Train a RoBERTa sequence classifier on labeled texts (CSV / JSONL); best model by
    /// validation, scored on test beside a Naive Bayes baseline.
    TrainClassifier(Box<cmd_train_classifier::TrainClassifierArgs>),
    /// Train a reward model (a one-output RoBERTa) on human preferences as trl's RewardTrainer
    /// does; its directory feeds `detox ppo --reward-model DIR --reward-label LABEL`.
    TrainReward(Box<cmd_train_reward::TrainRewardArgs>),
    /// PPO detoxification as the lab runs it with trl: LoRA policy + value head, RoBERTa reward.
    Ppo(Box<cmd_ppo::PpoArgs>),
    /// Toxicity (probability of `hate`) of a model's summaries on the lab's test prompts.
    Toxicity(cmd_ppo::ToxicityArgs),
    /// One self-contained HTML page (inline SVG charts) of fine-tuning runs, PPO runs and
    /// `evaluate` outputs: curves against step, toxicity, ROUGE, comparison, settings.
    Report(cmd_report::ReportArgs),
    /// A local web app for human evaluation: annotators compare two models' summaries of a
    /// dialogue (A / B / tie, confidence, readability and coherence 1-7), stored in SQLite.
    Annotate(cmd_annotate::AnnotateArgs),
    /// Judgments of `detox annotate`: `export` them as JSONL, `stats` (win rates, ratings,
    /// Krippendorff's alpha, Cohen's kappa).
    Annotations(cmd_annotate::AnnotationsArgs),
}

fn main() -> ExitCode {
    malloc::tune_for_tensors();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Summarize(a) => a.device.run(cmd_summarize::Summarize(a)),
        Command::Score(a) => a.device.run(cmd_score::Score(a)),
        Command::Init(a) => cmd_init::run(&a),
        Command::Convert(a) => cmd_convert::run(&a),
        Command::Inspect(a) => cmd_inspect::run(&a),
        Command::Rouge(a) => cmd_rouge::run(&a),
        Command::Evaluate(a) => a.device.run(cmd_evaluate::Evaluate(a)),
        Command::Bench(a) => a.device.run_autodiff(bench::Bench(a)),
        Command::Finetune(a) => cmd_finetune::run(*a),
        Command::BenchPpo(a) => a.device.run_autodiff(bench_ppo::PpoBench(a)),
        Command::TrainClassifier(a) => a
            .device
            .run_autodiff(cmd_train_classifier::TrainClassifier(*a)),
        Command::TrainReward(a) => a.device.run_autodiff(cmd_train_reward::TrainReward(*a)),
        Command::Ppo(a) => cmd_ppo::run(*a),
        Command::Toxicity(a) => a.device.run(cmd_ppo::Toxicity(a)),
        Command::Report(a) => cmd_report::run(&a),
        Command::Annotate(a) => cmd_annotate::run_annotate(&a),
        Command::Annotations(a) => cmd_annotate::run_annotations(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if detox_train::interrupt::requested() {
                ExitCode::from(detox_train::interrupt::EXIT_CODE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
