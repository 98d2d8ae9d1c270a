//! `detox annotate`: human evaluation of summaries in the browser. Annotators enter a name, see
//! one dialogue and two models' summaries (names hidden, left/right order random and stored),
//! choose A, B or a tie with a confidence of 1-3, rate each summary's readability and
//! coherence from 1 to 7, may leave a note, and get the next item. Judgments live in SQLite
//! (WAL, committed before the next page); `detox annotations export` writes them as JSONL for
//! `detox annotations stats` (crate detox-agreement).
//!
//! - [`items`]: the items file (`detox evaluate`'s evaluation.json, `detox ppo`'s
//!   comparison.json, or JSONL);
//! - [`db`]: the database, assignment (overlap, never the same item twice, resume) and
//!   idempotent submission;
//! - [`form`]: the rating form's checks; [`pages`]: the HTML;
//! - [`server`]: routes, tokens, headers, start and stop; [`export`]: the JSONL.

pub mod db;
pub mod error;
pub mod export;
pub mod form;
pub mod items;
pub mod pages;
pub mod server;

pub use db::Db;
pub use error::AnnotateError;
pub use export::export_jsonl;
pub use items::{read_items, Item};
pub use server::{lock_db, runtime, serve, serve_until_signal, RunningServer, ServerConfig};
