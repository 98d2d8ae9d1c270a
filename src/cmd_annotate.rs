//! `detox annotate` (the human-evaluation web app, crate detox-annotate) and `detox annotations
//! export | stats` (the judgments as JSONL; agreement statistics, crate detox-agreement).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use detox_hub::atomic::write_file_atomic;

#[derive(clap::Args, Debug)]
pub struct AnnotateArgs {
    /// Items to judge: a `detox evaluate` evaluation.json (every pair of its models per
    /// dialogue), a `detox ppo` comparison.json (before vs after), or JSONL of
    /// `{"id", "dialogue", "summaries": {MODEL: TEXT, ...}}`.
    #[arg(long, value_name = "FILE")]
    pub items: PathBuf,
    /// The SQLite database of this evaluation (created if missing; reopened to resume).
    #[arg(long, value_name = "FILE.sqlite")]
    pub db: PathBuf,
    /// Address to listen on. Anything but a loopback address needs a shared token (`--token`,
    /// or one generated and printed). Port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Each item goes to at least this many annotators before any item goes to more.
    #[arg(long, value_name = "K", default_value_t = 2)]
    pub overlap: usize,
    /// The shared access token every request must carry (`?token=`, cookie or
    /// `X-Detox-Token`). Generated when binding beyond loopback without one.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct AnnotationsArgs {
    #[command(subcommand)]
    pub command: AnnotationsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AnnotationsCommand {
    /// Write every judgment of a `detox annotate` database as JSONL (one per line).
    Export {
        #[arg(long, value_name = "FILE.sqlite")]
        db: PathBuf,
        /// The JSONL file to write (replaced atomically).
        #[arg(long, value_name = "FILE.jsonl")]
        out: PathBuf,
    },
    /// Win rates (Wilson 95% intervals), rating means, Krippendorff's alpha and Cohen's kappa
    /// of exported judgments.
    Stats {
        #[arg(long, value_name = "FILE.jsonl")]
        ratings: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `detox annotate` until Ctrl-C / SIGTERM.
pub fn run_annotate(a: &AnnotateArgs) -> Result<()> {
    if a.overlap == 0 {
        bail!("--overlap 0: expected 1 or more annotators per item");
    }
    let token = match &a.token {
        Some(t) if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic() && b != b';') => {
            bail!("--token: expected printable ASCII without spaces or ';'")
        }
        Some(t) => Some(t.clone()),
        None if !a.bind.ip().is_loopback() => Some(detox_annotate::db::new_token(&mut rand::rng())),
        None => None,
    };
    let _lock = detox_annotate::lock_db(&a.db)?;
    let items = detox_annotate::read_items(&a.items)?;
    let db = detox_annotate::Db::open_for_items(&a.db, &items)?;
    let judged = db.judgment_count()?;
    let cfg = detox_annotate::ServerConfig {
        overlap: a.overlap,
        token: token.clone(),
    };
    let n = items.len();
    detox_annotate::serve_until_signal(a.bind, db, cfg, |addr| {
        let url = match &token {
            Some(t) => format!("http://{addr}/?token={t}"),
            None => format!("http://{addr}/"),
        };
        eprintln!(
            "{n} items from {}, {judged} judgment(s) so far in {}; each item to >= {} annotators",
            a.items.display(),
            a.db.display(),
            a.overlap
        );
        // stdout, one line, flushed: scripts and tests read the address from it
        println!("serving on {url}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    eprintln!("stopped; every submitted judgment is in {}", a.db.display());
    Ok(())
}

pub fn run_annotations(a: &AnnotationsArgs) -> Result<()> {
    match &a.command {
        AnnotationsCommand::Export { db, out } => {
            let db = detox_annotate::Db::open_existing(db)?;
            let (jsonl, n) = detox_annotate::export_jsonl(&db)?;
            write_file_atomic(out, jsonl.as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("wrote {n} judgment(s) to {}", out.display());
        }
        AnnotationsCommand::Stats { ratings, json } => {
            let stats = detox_agreement::stats_from_file(ratings)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", detox_agreement::render_text(&stats));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Cmd {
        Annotate(AnnotateArgs),
        Annotations(AnnotationsArgs),
    }

    #[test]
    fn clap_definition_and_defaults() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let Cmd::Annotate(a) =
            Cli::try_parse_from(["d", "annotate", "--items", "e.json", "--db", "r.sqlite"])
                .unwrap()
                .cmd
        else {
            panic!()
        };
        assert_eq!(a.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((a.overlap, a.token), (2, None));
        let Cmd::Annotations(a) = Cli::try_parse_from([
            "d",
            "annotations",
            "stats",
            "--ratings",
            "r.jsonl",
            "--json",
        ])
        .unwrap()
        .cmd
        else {
            panic!()
        };
        assert!(matches!(
            a.command,
            AnnotationsCommand::Stats { json: true, .. }
        ));
    }

    #[test]
    fn bad_settings_are_refused_before_anything_starts() {
        let a = AnnotateArgs {
            items: "missing.json".into(),
            db: "r.sqlite".into(),
            bind: "127.0.0.1:0".parse().unwrap(),
            overlap: 0,
            token: None,
        };
        assert!(run_annotate(&a)
            .unwrap_err()
            .to_string()
            .contains("--overlap 0"));
        let a = AnnotateArgs {
            overlap: 2,
            token: Some("has space".into()),
            ..a
        };
        assert!(run_annotate(&a)
            .unwrap_err()
            .to_string()
            .contains("--token"));
    }
}
