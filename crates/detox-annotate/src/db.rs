//! The ratings database (SQLite in WAL mode, `synchronous = FULL`): the items, which annotator
//! was shown which item in which left/right order (an *assignment*, named by a random page
//! token), and the judgments. Every submission is one transaction committed before the server
//! answers, so a killed server loses nothing that was acknowledged; a judgment is keyed by
//! (annotator, item), so a second submit of the same page changes nothing.
//!
//! Assignment: an annotator first gets back the page they were shown and did not submit
//! (closing the browser resumes); otherwise an item they have never been shown, preferring
//! items that fewer than `overlap` annotators have been shown (the most-covered of those
//! first, so items reach `overlap` early), then the least-covered of the rest; ties by the
//! item's position in the file.

use std::path::{Path, PathBuf};

use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::AnnotateError;
use crate::items::Item;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    dialogue TEXT NOT NULL,
    reference TEXT,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    summary_a TEXT NOT NULL,
    summary_b TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    token TEXT PRIMARY KEY,
    annotator TEXT NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(id),
    left_model TEXT NOT NULL,
    right_model TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (annotator, item_id)
);
CREATE INDEX IF NOT EXISTS assignments_by_item ON assignments(item_id);
CREATE TABLE IF NOT EXISTS judgments (
    annotator TEXT NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(id),
    token TEXT NOT NULL UNIQUE REFERENCES assignments(token),
    preferred TEXT NOT NULL,
    confidence INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 3),
    readability_a INTEGER NOT NULL CHECK (readability_a BETWEEN 1 AND 7),
    coherence_a INTEGER NOT NULL CHECK (coherence_a BETWEEN 1 AND 7),
    readability_b INTEGER NOT NULL CHECK (readability_b BETWEEN 1 AND 7),
    coherence_b INTEGER NOT NULL CHECK (coherence_b BETWEEN 1 AND 7),
    note TEXT NOT NULL,
    time TEXT NOT NULL,
    PRIMARY KEY (annotator, item_id)
);
";

/// The columns [`item_from_row`] reads, in its order.
const ITEM_COLUMNS: &str = "id, dialogue, reference, model_a, model_b, summary_a, summary_b";

fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        id: r.get(0)?,
        dialogue: r.get(1)?,
        reference: r.get(2)?,
        models: [r.get(3)?, r.get(4)?],
        summaries: [r.get(5)?, r.get(6)?],
    })
}

/// Current time as RFC 3339 UTC with milliseconds, as SQLite computes it.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

pub struct Db {
    conn: Connection,
    path: PathBuf,
}

/// The page an annotator is shown: the item, which of its models is on the left, and the
/// token the form posts back.
#[derive(Debug, Clone)]
pub struct Page {
    pub token: String,
    pub item: Item,
    /// Index into `item.models` of the summary shown on the left.
    pub left: usize,
}

/// What the annotator answered, with the left/right of the page they saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub token: String,
    pub preferred: Side,
    pub confidence: u8,
    pub left: Ratings,
    pub right: Ratings,
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
    Tie,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratings {
    pub readability: u8,
    pub coherence: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now.
    Stored,
    /// This page had been submitted before: nothing changed.
    AlreadyStored,
}

/// A submission that does not belong to this annotator's pages (unknown or forged token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub String);

/// One stored judgment, in the items file's model order.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgmentRow {
    pub item: String,
    pub annotator: String,
    pub models: [String; 2],
    pub shown: [String; 2],
    pub preferred: String,
    pub confidence: u8,
    pub ratings: [Ratings; 2],
    pub note: String,
    pub time: String,
}

impl Db {
    /// Opens (creating if needed) the database at `path` for serving `items`: a new database
    /// takes the items; one that has items already must hold exactly these (same IDs, order
    /// and texts), so judgments never silently refer to other texts.
    pub fn open_for_items(path: &Path, items: &[Item]) -> Result<Db, AnnotateError> {
        let mut db = Db::open(path, true)?;
        if db.item_count()? == 0 {
            let tx = db
                .conn
                .transaction()
                .map_err(|e| AnnotateError::db(path, e))?;
            {
                let mut ins = tx
                    .prepare("INSERT INTO items (id, position, dialogue, reference, model_a, model_b, summary_a, summary_b) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                    .map_err(|e| AnnotateError::db(path, e))?;
                for (pos, it) in items.iter().enumerate() {
                    ins.execute(params![
                        it.id,
                        pos as i64,
                        it.dialogue,
                        it.reference,
                        it.models[0],
                        it.models[1],
                        it.summaries[0],
                        it.summaries[1]
                    ])
                    .map_err(|e| AnnotateError::db(path, e))?;
                }
            }
            tx.commit().map_err(|e| AnnotateError::db(path, e))?;
        } else {
            let stored = db.items()?;
            if stored.as_slice() != items {
                let first = stored
                    .iter()
                    .zip(items)
                    .position(|(a, b)| a != b)
                    .unwrap_or(stored.len().min(items.len()));
                return Err(AnnotateError::db(
                    path,
                    format!(
                        "holds {} items that differ from the {} of the items file (first difference at position {first}); use a new --db for other items",
                        stored.len(),
                        items.len()
                    ),
                ));
            }
        }
        Ok(db)
    }

    /// Opens an existing database to read it (export).
    pub fn open_existing(path: &Path) -> Result<Db, AnnotateError> {
        if !path.is_file() {
            return Err(AnnotateError::db(
                path,
                "no such database; expected the --db file of a `detox annotate` session",
            ));
        }
        Db::open(path, false)
    }

    fn open(path: &Path, create: bool) -> Result<Db, AnnotateError> {
        let conn = Connection::open(path).map_err(|e| AnnotateError::db(path, e))?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| db.err(e))?;
        let mode: String = db
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| db.err(format!("not an SQLite database ({e})")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(db.err(format!("cannot switch to WAL mode (got {mode})")));
        }
        db.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| db.err(e))?;
        if create {
            db.conn.execute_batch(SCHEMA).map_err(|e| db.err(e))?;
        } else {
            let tables: i64 = db
                .conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('items', 'assignments', 'judgments')",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| db.err(e))?;
            if tables != 3 {
                return Err(db.err("not a `detox annotate` database (its tables are missing)"));
            }
        }
        Ok(db)
    }

    fn err(&self, e: impl std::fmt::Display) -> AnnotateError {
        AnnotateError::db(&self.path, e)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The items in file order.
    pub fn items(&self) -> Result<Vec<Item>, AnnotateError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {ITEM_COLUMNS} FROM items ORDER BY position"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], item_from_row).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The single number `sql` (a `SELECT COUNT(*) ...`) gives.
    fn count(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, AnnotateError> {
        let n: i64 = self
            .conn
            .query_row(sql, params, |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(n as usize)
    }

    pub fn item_count(&self) -> Result<usize, AnnotateError> {
        self.count("SELECT COUNT(*) FROM items", [])
    }

    /// How many judgments are stored, by anyone.
    pub fn judgment_count(&self) -> Result<usize, AnnotateError> {
        self.count("SELECT COUNT(*) FROM judgments", [])
    }

    /// How many items `annotator` has judged.
    pub fn judged_by(&self, annotator: &str) -> Result<usize, AnnotateError> {
        self.count(
            "SELECT COUNT(*) FROM judgments WHERE annotator = ?1",
            [annotator],
        )
    }

    /// The page to show `annotator` now: the one shown before and not submitted, else a new
    /// assignment (stored before it is returned); `None` when they have judged every item.
    pub fn next_page(
        &mut self,
        annotator: &str,
        overlap: usize,
        rng: &mut impl Rng,
    ) -> Result<Option<Page>, AnnotateError> {
        let path = self.path.clone();
        let dberr = |e: rusqlite::Error| AnnotateError::db(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(dberr)?;
        let open: Option<(String, String, String)> = tx
            .query_row(
                "SELECT a.token, a.item_id, a.left_model FROM assignments a
                 WHERE a.annotator = ?1
                   AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.token = a.token)
                 ORDER BY a.rowid LIMIT 1",
                [annotator],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(dberr)?;
        let (token, item_id, left_model) = match open {
            Some(o) => o,
            None => {
                let next: Option<(String, String, String)> = tx
                    .query_row(
                        "SELECT i.id, i.model_a, i.model_b FROM items i
                         LEFT JOIN (SELECT item_id, COUNT(*) AS c FROM assignments GROUP BY item_id) n
                           ON n.item_id = i.id
                         WHERE NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.annotator = ?1)
                         ORDER BY CASE WHEN IFNULL(n.c, 0) < ?2 THEN 0 ELSE 1 END,
                                  CASE WHEN IFNULL(n.c, 0) < ?2 THEN -IFNULL(n.c, 0) ELSE IFNULL(n.c, 0) END,
                                  i.position
                         LIMIT 1",
                        params![annotator, overlap as i64],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(dberr)?;
                let Some((item_id, a, b)) = next else {
                    tx.commit().map_err(dberr)?;
                    return Ok(None);
                };
                let (left, right) = if rng.random_bool(0.5) { (a, b) } else { (b, a) };
                let token = new_token(rng);
                tx.execute(
                    &format!("INSERT INTO assignments (token, annotator, item_id, left_model, right_model, created) VALUES (?1, ?2, ?3, ?4, ?5, {NOW})"),
                    params![token, annotator, item_id, left, right],
                )
                .map_err(dberr)?;
                (token, item_id, left)
            }
        };
        let item = tx
            .query_row(
                &format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = ?1"),
                [&item_id],
                item_from_row,
            )
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        let left = if item.models[0] == left_model { 0 } else { 1 };
        Ok(Some(Page { token, item, left }))
    }

    /// Stores `sub` for `annotator`, committed before this returns. A token that is not one
    /// of `annotator`'s pages is [`Rejected`]; a page submitted before is left as it was.
    pub fn submit(
        &mut self,
        annotator: &str,
        sub: &Submission,
    ) -> Result<Result<Outcome, Rejected>, AnnotateError> {
        let path = self.path.clone();
        let dberr = |e: rusqlite::Error| AnnotateError::db(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(dberr)?;
        let page: Option<(String, String, String, String, String)> = tx
            .query_row(
                "SELECT a.annotator, a.item_id, a.left_model, a.right_model, i.model_a FROM assignments a
                 JOIN items i ON i.id = a.item_id WHERE a.token = ?1",
                [&sub.token],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(dberr)?;
        let Some((owner, item_id, left_model, right_model, model_a)) = page else {
            return Ok(Err(Rejected(
                "this form's page token is not one this server issued; reload the page".into(),
            )));
        };
        if owner != annotator {
            return Ok(Err(Rejected(
                "this form's page token belongs to another annotator; reload your own page".into(),
            )));
        }
        let preferred = match sub.preferred {
            Side::Left => left_model.clone(),
            Side::Right => right_model.clone(),
            Side::Tie => "tie".to_string(),
        };
        // Ratings in the items file's order (a = models[0]).
        let (ra, rb) = if left_model == model_a {
            (sub.left, sub.right)
        } else {
            (sub.right, sub.left)
        };
        let changed = tx
            .execute(
                &format!(
                    "INSERT INTO judgments (annotator, item_id, token, preferred, confidence, readability_a, coherence_a, readability_b, coherence_b, note, time)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, {NOW})
                     ON CONFLICT DO NOTHING"
                ),
                params![
                    annotator,
                    item_id,
                    sub.token,
                    preferred,
                    sub.confidence,
                    ra.readability,
                    ra.coherence,
                    rb.readability,
                    rb.coherence,
                    sub.note
                ],
            )
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(Ok(if changed == 1 {
            Outcome::Stored
        } else {
            Outcome::AlreadyStored
        }))
    }

    /// Every judgment, in the order they were stored.
    pub fn judgments(&self) -> Result<Vec<JudgmentRow>, AnnotateError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT j.item_id, j.annotator, i.model_a, i.model_b, a.left_model, a.right_model, j.preferred,
                        j.confidence, j.readability_a, j.coherence_a, j.readability_b, j.coherence_b, j.note, j.time
                 FROM judgments j JOIN assignments a ON a.token = j.token JOIN items i ON i.id = j.item_id
                 ORDER BY j.rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(JudgmentRow {
                    item: r.get(0)?,
                    annotator: r.get(1)?,
                    models: [r.get(2)?, r.get(3)?],
                    shown: [r.get(4)?, r.get(5)?],
                    preferred: r.get(6)?,
                    confidence: r.get(7)?,
                    ratings: [
                        Ratings {
                            readability: r.get(8)?,
                            coherence: r.get(9)?,
                        },
                        Ratings {
                            readability: r.get(10)?,
                            coherence: r.get(11)?,
                        },
                    ],
                    note: r.get(12)?,
                    time: r.get(13)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

/// 128 random bits as 32 hex digits.
pub fn new_token(rng: &mut impl Rng) -> String {
    let bytes: [u8; 16] = rng.random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn items(n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                id: format!("i{i}"),
                dialogue: format!("dialogue {i}"),
                reference: None,
                models: ["m".into(), "n".into()],
                summaries: [format!("m says {i}"), format!("n says {i}")],
            })
            .collect()
    }

    fn temp_db(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("detox-annotate-db-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("ratings.sqlite")
    }

    fn answer(page: &Page, preferred: Side) -> Submission {
        Submission {
            token: page.token.clone(),
            preferred,
            confidence: 2,
            left: Ratings {
                readability: 7,
                coherence: 6,
            },
            right: Ratings {
                readability: 2,
                coherence: 1,
            },
            note: String::new(),
        }
    }

    #[test]
    fn overlap_is_filled_first_and_nobody_sees_an_item_twice() {
        let path = temp_db("overlap");
        let mut db = Db::open_for_items(&path, &items(4)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut seen = std::collections::HashMap::<String, Vec<String>>::new();
        // Three annotators take turns; with overlap 2 the first items each get two annotators
        // before later items get any.
        for round in 0..4 {
            for who in ["ann", "bob", "cy"] {
                if let Some(p) = db.next_page(who, 2, &mut rng).unwrap() {
                    seen.entry(who.into()).or_default().push(p.item.id.clone());
                    let _ = round;
                    assert_eq!(
                        db.submit(who, &answer(&p, Side::Tie)).unwrap(),
                        Ok(Outcome::Stored)
                    );
                }
            }
        }
        for (who, ids) in &seen {
            let mut u = ids.clone();
            u.sort();
            u.dedup();
            assert_eq!(u.len(), ids.len(), "{who} saw an item twice: {ids:?}");
            assert_eq!(ids.len(), 4, "{who} judged every item");
        }
        // the first three pages handed out cover i0, i0, i1 (i0 reaches overlap 2 first)
        assert_eq!(seen["ann"][0], "i0");
        assert_eq!(seen["bob"][0], "i0");
        assert_eq!(seen["cy"][0], "i1");
        assert!(db.next_page("ann", 2, &mut rng).unwrap().is_none());
        assert_eq!(db.judgments().unwrap().len(), 12);
    }

    #[test]
    fn an_unsubmitted_page_comes_back_and_double_submits_are_kept_once() {
        let path = temp_db("resume");
        let mut db = Db::open_for_items(&path, &items(3)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p1 = db.next_page("ann", 2, &mut rng).unwrap().unwrap();
        let again = db.next_page("ann", 2, &mut rng).unwrap().unwrap();
        assert_eq!(
            (p1.token.as_str(), p1.left),
            (again.token.as_str(), again.left)
        );
        let sub = answer(&p1, Side::Left);
        assert_eq!(db.submit("ann", &sub).unwrap(), Ok(Outcome::Stored));
        let mut changed = sub.clone();
        changed.preferred = Side::Right;
        assert_eq!(
            db.submit("ann", &changed).unwrap(),
            Ok(Outcome::AlreadyStored)
        );
        let rows = db.judgments().unwrap();
        assert_eq!(rows.len(), 1);
        // the left summary was preferred and rated 7/6, whichever model it was
        let left_model = &p1.item.models[p1.left];
        assert_eq!(&rows[0].preferred, left_model);
        assert_eq!(rows[0].shown[0], *left_model);
        let k = p1.left;
        assert_eq!(rows[0].ratings[k].readability, 7);
        assert_eq!(rows[0].ratings[1 - k].readability, 2);
        assert_eq!(rows[0].models, ["m".to_string(), "n".to_string()]);
        // reopened (a restarted server), the judgment is there and the next page is new
        drop(db);
        let mut db = Db::open_for_items(&path, &items(3)).unwrap();
        assert_eq!(db.judged_by("ann").unwrap(), 1);
        let p2 = db.next_page("ann", 2, &mut rng).unwrap().unwrap();
        assert_ne!(p2.item.id, p1.item.id);
    }

    #[test]
    fn forged_tokens_and_other_annotators_pages_are_rejected() {
        let path = temp_db("forged");
        let mut db = Db::open_for_items(&path, &items(2)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let p = db.next_page("ann", 2, &mut rng).unwrap().unwrap();
        let mut forged = answer(&p, Side::Tie);
        forged.token = "0".repeat(32);
        assert!(db.submit("ann", &forged).unwrap().is_err());
        assert!(db.submit("bob", &answer(&p, Side::Tie)).unwrap().is_err());
        assert!(db.judgments().unwrap().is_empty());
    }

    #[test]
    fn a_database_of_other_items_is_refused() {
        let path = temp_db("other");
        drop(Db::open_for_items(&path, &items(2)).unwrap());
        let e = Db::open_for_items(&path, &items(3))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("ratings.sqlite") && e.contains("differ"), "{e}");
        let missing = path.with_file_name("missing.sqlite");
        assert!(Db::open_existing(&missing)
            .err()
            .unwrap()
            .to_string()
            .contains("no such database"));
    }
}
