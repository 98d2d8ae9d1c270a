//! The rating form's fields, checked: anything malformed or forged is refused with a message
//! that says which field and what was expected (the server answers 400 with it).

use crate::db::{Ratings, Side, Submission};

/// Longest note kept, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// The form's field names.
pub const FIELDS: [&str; 8] = [
    "page",
    "preferred",
    "confidence",
    "left_readability",
    "left_coherence",
    "right_readability",
    "right_coherence",
    "note",
];

/// Checks the posted `(name, value)` pairs: every field but `note` present exactly once, no
/// others, values in range.
pub fn parse_submission(pairs: &[(String, String)]) -> Result<Submission, String> {
    for (k, _) in pairs {
        if !FIELDS.contains(&k.as_str()) {
            return Err(format!(
                "unknown form field `{k}`; expected {}",
                FIELDS.join(", ")
            ));
        }
        if pairs.iter().filter(|(j, _)| j == k).count() > 1 {
            return Err(format!("form field `{k}` is given more than once"));
        }
    }
    let get = |k: &str| pairs.iter().find(|(j, _)| j == k).map(|(_, v)| v.as_str());
    let need = |k: &str| get(k).ok_or_else(|| format!("form field `{k}` is missing"));
    let token = need("page")?;
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("form field `page` is not a page token (32 hex digits)".into());
    }
    let preferred = match need("preferred")? {
        "left" => Side::Left,
        "right" => Side::Right,
        "tie" => Side::Tie,
        v => {
            return Err(format!(
                "form field `preferred` is `{v}`; expected left, right or tie (choose A, B or tie)"
            ))
        }
    };
    let scale = |k: &str, hi: u8| -> Result<u8, String> {
        let v = need(k)?;
        match v.parse::<u8>() {
            Ok(x) if (1..=hi).contains(&x) => Ok(x),
            _ => Err(format!(
                "form field `{k}` is `{v}`; expected a whole number from 1 to {hi}"
            )),
        }
    };
    let note = get("note").unwrap_or("").trim().to_string();
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(format!(
            "the note is longer than {MAX_NOTE_CHARS} characters"
        ));
    }
    Ok(Submission {
        token: token.to_ascii_lowercase(),
        preferred,
        confidence: scale("confidence", 3)?,
        left: Ratings {
            readability: scale("left_readability", 7)?,
            coherence: scale("left_coherence", 7)?,
        },
        right: Ratings {
            readability: scale("right_readability", 7)?,
            coherence: scale("right_coherence", 7)?,
        },
        note,
    })
}

/// An annotator's name: 1-40 letters, digits, `.`, `_` or `-` (it is part of the page's
/// address and of the exported judgments).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the name `{name}` is not allowed; use 1-40 letters, digits, '.', '_' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(extra: &[(&str, &str)], without: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            ("page", "0123456789abcdef0123456789abcdef"),
            ("preferred", "left"),
            ("confidence", "3"),
            ("left_readability", "7"),
            ("left_coherence", "1"),
            ("right_readability", "4"),
            ("right_coherence", "5"),
            ("note", "  fine  "),
        ]
        .iter()
        .filter(|(k, _)| *k != without)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, val) in extra {
            v.retain(|(j, _)| j != k);
            v.push((k.to_string(), val.to_string()));
        }
        v
    }

    #[test]
    fn a_complete_form_parses() {
        let s = parse_submission(&form(&[], "")).unwrap();
        assert_eq!(s.preferred, Side::Left);
        assert_eq!(s.confidence, 3);
        assert_eq!((s.left.readability, s.left.coherence), (7, 1));
        assert_eq!((s.right.readability, s.right.coherence), (4, 5));
        assert_eq!(s.note, "fine");
        assert_eq!(parse_submission(&form(&[], "note")).unwrap().note, "");
    }

    #[test]
    fn malformed_forms_say_which_field() {
        for (extra, without, expect) in [
            (vec![], "preferred", "`preferred` is missing"),
            (vec![("preferred", "M1")], "", "expected left, right or tie"),
            (vec![("confidence", "4")], "", "`confidence` is `4`"),
            (vec![("left_coherence", "0")], "", "from 1 to 7"),
            (vec![("right_readability", "x")], "", "`right_readability`"),
            (vec![("page", "../etc")], "", "page token"),
            (vec![("admin", "1")], "", "unknown form field `admin`"),
        ] {
            let e = parse_submission(&form(&extra, without)).unwrap_err();
            assert!(e.contains(expect), "{e} / {expect}");
        }
        let mut twice = form(&[], "");
        twice.push(("confidence".into(), "1".into()));
        assert!(parse_submission(&twice)
            .unwrap_err()
            .contains("more than once"));
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        assert!(parse_submission(&form(&[("note", &long)], ""))
            .unwrap_err()
            .contains("longer"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ann_1.b-c").is_ok());
        for bad in ["", "a b", "<script>", "é", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
