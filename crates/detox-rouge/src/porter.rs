//! The Porter stemmer as NLTK implements it (`nltk.stem.porter.PorterStemmer()`, default
//! `NLTK_EXTENSIONS` mode, nltk 3.9.1).
//!
//! This is *not* the Snowball / "Porter2" English stemmer: NLTK's variant is the original
//! 1980 algorithm plus Martin Porter's later fixes plus NLTK's own extensions:
//!
//! * a pool of irregular forms (`skies` → `sky`, `dying` → `die`, `news` → `news`, ...),
//!   looked up with the word *as given* (before lowercasing);
//! * words of at most 2 characters are only lowercased;
//! * step 1a: `-ies` on a 4-letter word becomes `-ie` (`dies` → `die`, but `flies` → `fli`);
//! * step 1b: `-ied` becomes `-ie` on a 4-letter word, `-i` otherwise;
//! * condition `*o` also holds for a 2-letter vowel+consonant stem;
//! * step 1c: `y` → `i` only after a consonant that is not the first letter;
//! * step 2: `-alli` → `-al` is tried first (and step 2 re-run), `-bli` → `-ble`,
//!   `-fulli` → `-ful`, and `-logi` → `-log` with the measure taken on the stem plus `l`.
//!
//! The code follows the structure of the algorithm (steps 1a…5b, ordered rule lists where the
//! first rule whose suffix matches decides, even when its condition fails), written from the
//! published algorithm and NLTK's documented behaviour; it is checked against NLTK on a few
//! thousand words (`tests/fixtures/rouge/porter.json`).
//!
//! Letters are handled as Unicode scalar values (Python `str` characters); anything other than
//! `a e i o u` (and `y` after a vowel) counts as a consonant, as in NLTK.

/// NLTK's irregular forms: word → stem.
fn irregular_form(word: &str) -> Option<&'static str> {
    Some(match word {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

/// NLTK's Porter stemmer (`NLTK_EXTENSIONS` mode).
///
/// ```
/// use detox_rouge::PorterStemmer;
/// let stemmer = PorterStemmer::new();
/// assert_eq!(stemmer.stem("running"), "run");
/// assert_eq!(stemmer.stem("flies"), "fli");
/// assert_eq!(stemmer.stem("dies"), "die");
/// assert_eq!(stemmer.stem("skies"), "sky");
/// assert_eq!(stemmer.stem("generalizations"), "gener");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PorterStemmer {
    _private: (),
}

impl PorterStemmer {
    /// A stemmer in NLTK's default mode. The stemmer holds no state.
    pub fn new() -> Self {
        Self { _private: () }
    }

    /// Stems one word exactly like `nltk.stem.porter.PorterStemmer().stem(word)`
    /// (which lowercases the word first).
    pub fn stem(&self, word: &str) -> String {
        let lower = word.to_lowercase();
        // NLTK looks the *original* word up in its pool of irregular forms (the pool keys are
        // lowercase, so only an already-lowercase word can hit).
        if let Some(stem) = irregular_form(word) {
            return stem.to_string();
        }
        // ... and checks the length of the original word too.
        if word.chars().count() <= 2 {
            return lower;
        }
        let w: Vec<char> = lower.chars().collect();
        let w = step1a(&w);
        let w = step1b(&w);
        let w = step1c(&w);
        let w = step2(&w);
        let w = step3(&w);
        let w = step4(&w);
        let w = step5a(&w);
        let w = step5b(&w);
        w.into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Letter classes and the conditions of the algorithm
// ---------------------------------------------------------------------------------------------

fn is_vowel_letter(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// Consonant flags for every position: a letter other than a, e, i, o, u, and other than a `y`
/// preceded by a consonant (a leading `y` is a consonant).
fn consonants(w: &[char]) -> Vec<bool> {
    let mut out: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let cons = if is_vowel_letter(c) {
            false
        } else if c == 'y' {
            i == 0 || !out[i - 1]
        } else {
            true
        };
        out.push(cons);
    }
    out
}

/// Whether `w[i]` is a consonant (depends only on `w[..=i]`).
fn is_consonant(w: &[char], i: usize) -> bool {
    consonants(&w[..=i])[i]
}

/// Porter's measure `m`: the number of vowel→consonant transitions in `[C](VC){m}[V]`.
fn measure(stem: &[char]) -> usize {
    let cons = consonants(stem);
    cons.windows(2).filter(|p| !p[0] && p[1]).count()
}

/// `*v*`: the stem contains a vowel.
fn contains_vowel(stem: &[char]) -> bool {
    consonants(stem).iter().any(|&c| !c)
}

/// `*d`: the word ends with a double consonant.
fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// `*o`: the stem ends consonant-vowel-consonant where the last consonant is not w, x or y;
/// NLTK extension: or the stem is exactly vowel + consonant.
fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    if n >= 3 {
        let cons = consonants(w);
        if cons[n - 3] && !cons[n - 2] && cons[n - 1] && !matches!(w[n - 1], 'w' | 'x' | 'y') {
            return true;
        }
    }
    if n == 2 {
        let cons = consonants(w);
        return !cons[0] && cons[1];
    }
    false
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let n = suffix.chars().count();
    n <= w.len() && w[w.len() - n..].iter().copied().eq(suffix.chars())
}

/// `w` without its last `n` letters.
fn strip(w: &[char], n: usize) -> &[char] {
    &w[..w.len() - n]
}

fn join(stem: &[char], replacement: &str) -> Vec<char> {
    let mut out = stem.to_vec();
    out.extend(replacement.chars());
    out
}

/// The condition of a suffix rule.
#[derive(Clone, Copy)]
enum Cond {
    /// Always.
    None,
    /// `m > 0` on the stem (the word minus the suffix).
    M0,
    /// `m > 1` on the stem.
    M1,
    /// Step 4 `-ion`: `m > 1` and the stem ends with `s` or `t`.
    Ion,
    /// Step 2 `-logi` (NLTK): `m > 0` on the word minus its last 3 letters (stem + `l`).
    Logi,
    /// Step 1c (NLTK): the stem is longer than 1 letter and ends with a consonant.
    Y,
    /// Step 5b: `m > 1` on the word minus its last letter.
    Ll,
}

fn holds(cond: Cond, word: &[char], stem: &[char]) -> bool {
    match cond {
        Cond::None => true,
        Cond::M0 => measure(stem) > 0,
        Cond::M1 => measure(stem) > 1,
        Cond::Ion => measure(stem) > 1 && matches!(stem.last(), Some('s' | 't')),
        Cond::Logi => measure(strip(word, 3)) > 0,
        Cond::Y => stem.len() > 1 && is_consonant(stem, stem.len() - 1),
        Cond::Ll => measure(strip(word, 1)) > 1,
    }
}

/// Applies the first rule whose suffix matches: its replacement if the condition holds, else
/// the word unchanged (later rules are not tried).
fn apply_rules(word: &[char], rules: &[(&str, &str, Cond)]) -> Vec<char> {
    for &(suffix, replacement, cond) in rules {
        if ends_with(word, suffix) {
            let stem = strip(word, suffix.chars().count());
            return if holds(cond, word, stem) {
                join(stem, replacement)
            } else {
                word.to_vec()
            };
        }
    }
    word.to_vec()
}

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

fn step1a(w: &[char]) -> Vec<char> {
    // NLTK: 'dies' -> 'die', 'ties' -> 'tie' (but 'flies' -> 'fli').
    if ends_with(w, "ies") && w.len() == 4 {
        return join(strip(w, 3), "ie");
    }
    apply_rules(
        w,
        &[
            ("sses", "ss", Cond::None),
            ("ies", "i", Cond::None),
            ("ss", "ss", Cond::None),
            ("s", "", Cond::None),
        ],
    )
}

fn step1b(w: &[char]) -> Vec<char> {
    // NLTK: 'died' -> 'die', 'spied' -> 'spi'.
    if ends_with(w, "ied") {
        let replacement = if w.len() == 4 { "ie" } else { "i" };
        return join(strip(w, 3), replacement);
    }
    // (m>0) EED -> EE; a word ending in -eed never reaches the -ed rule.
    if ends_with(w, "eed") {
        let stem = strip(w, 3);
        return if measure(stem) > 0 {
            join(stem, "ee")
        } else {
            w.to_vec()
        };
    }
    // (*v*) ED -> , (*v*) ING ->
    let mut stem: Option<&[char]> = None;
    for suffix in ["ed", "ing"] {
        if ends_with(w, suffix) {
            let s = strip(w, suffix.len());
            if contains_vowel(s) {
                stem = Some(s);
                break;
            }
        }
    }
    let Some(stem) = stem else {
        return w.to_vec();
    };
    // Tidying up after -ed / -ing removal; the first matching rule decides.
    for (suffix, replacement) in [("at", "ate"), ("bl", "ble"), ("iz", "ize")] {
        if ends_with(stem, suffix) {
            return join(strip(stem, suffix.len()), replacement);
        }
    }
    // (*d and not (*L or *S or *Z)) -> single letter
    if ends_double_consonant(stem) {
        let last = stem[stem.len() - 1];
        return if matches!(last, 'l' | 's' | 'z') {
            stem.to_vec()
        } else {
            strip(stem, 1).to_vec()
        };
    }
    // (m=1 and *o) -> E
    if measure(stem) == 1 && ends_cvc(stem) {
        return join(stem, "e");
    }
    stem.to_vec()
}

fn step1c(w: &[char]) -> Vec<char> {
    // NLTK: (*c and not c) Y -> I, so 'happy' -> 'happi', 'enjoy' -> 'enjoy', 'spy' -> 'spi'.
    apply_rules(w, &[("y", "i", Cond::Y)])
}

fn step2(w: &[char]) -> Vec<char> {
    // NLTK: -alli -> -al first, then step 2 again on the result.
    if ends_with(w, "alli") && measure(strip(w, 4)) > 0 {
        return step2(&join(strip(w, 4), "al"));
    }
    apply_rules(
        w,
        &[
            ("ational", "ate", Cond::M0),
            ("tional", "tion", Cond::M0),
            ("enci", "ence", Cond::M0),
            ("anci", "ance", Cond::M0),
            ("izer", "ize", Cond::M0),
            ("bli", "ble", Cond::M0),
            ("alli", "al", Cond::M0),
            ("entli", "ent", Cond::M0),
            ("eli", "e", Cond::M0),
            ("ousli", "ous", Cond::M0),
            ("ization", "ize", Cond::M0),
            ("ation", "ate", Cond::M0),
            ("ator", "ate", Cond::M0),
            ("alism", "al", Cond::M0),
            ("iveness", "ive", Cond::M0),
            ("fulness", "ful", Cond::M0),
            ("ousness", "ous", Cond::M0),
            ("aliti", "al", Cond::M0),
            ("iviti", "ive", Cond::M0),
            ("biliti", "ble", Cond::M0),
            ("fulli", "ful", Cond::M0),
            ("logi", "log", Cond::Logi),
        ],
    )
}

fn step3(w: &[char]) -> Vec<char> {
    apply_rules(
        w,
        &[
            ("icate", "ic", Cond::M0),
            ("ative", "", Cond::M0),
            ("alize", "al", Cond::M0),
            ("iciti", "ic", Cond::M0),
            ("ical", "ic", Cond::M0),
            ("ful", "", Cond::M0),
            ("ness", "", Cond::M0),
        ],
    )
}

fn step4(w: &[char]) -> Vec<char> {
    apply_rules(
        w,
        &[
            ("al", "", Cond::M1),
            ("ance", "", Cond::M1),
            ("ence", "", Cond::M1),
            ("er", "", Cond::M1),
            ("ic", "", Cond::M1),
            ("able", "", Cond::M1),
            ("ible", "", Cond::M1),
            ("ant", "", Cond::M1),
            ("ement", "", Cond::M1),
            ("ment", "", Cond::M1),
            ("ent", "", Cond::M1),
            ("ion", "", Cond::Ion),
            ("ou", "", Cond::M1),
            ("ism", "", Cond::M1),
            ("ate", "", Cond::M1),
            ("iti", "", Cond::M1),
            ("ous", "", Cond::M1),
            ("ive", "", Cond::M1),
            ("ize", "", Cond::M1),
        ],
    )
}

fn step5a(w: &[char]) -> Vec<char> {
    // (m>1) E -> ; (m=1 and not *o) E ->   -- both conditions are tried.
    if ends_with(w, "e") {
        let stem = strip(w, 1);
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w.to_vec()
}

fn step5b(w: &[char]) -> Vec<char> {
    // (m>1 and *d and *L) -> single letter
    apply_rules(w, &[("ll", "l", Cond::Ll)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/rouge/porter.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).expect("porter.json is valid JSON")
    }

    #[test]
    fn matches_nltk_on_fixture_words() {
        let fx = fixture();
        let pairs = fx["pairs"].as_array().expect("pairs array");
        assert!(
            pairs.len() >= 3000,
            "fixture has only {} words",
            pairs.len()
        );
        let stemmer = PorterStemmer::new();
        let mut failures = Vec::new();
        for p in pairs {
            let word = p[0].as_str().unwrap();
            let want = p[1].as_str().unwrap();
            let got = stemmer.stem(word);
            if got != want {
                failures.push(format!("{word:?}: got {got:?}, nltk {want:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} words differ from NLTK:\n{}",
            failures.len(),
            pairs.len(),
            failures
                .iter()
                .take(30)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn paper_and_nltk_examples() {
        let s = PorterStemmer::new();
        for (word, want) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("enjoy", "enjoy"),
            ("spied", "spi"),
            ("died", "die"),
            ("relational", "relat"),
            ("radically", "radic"),
            ("archaeology", "archaeolog"),
            ("geology", "geolog"),
            ("controll", "control"),
            ("skies", "sky"),
            ("dying", "die"),
            ("news", "news"),
            ("SKIES", "ski"),
            ("News", "new"),
            ("a", "a"),
            ("IS", "is"),
        ] {
            assert_eq!(s.stem(word), want, "stem({word:?})");
        }
    }

    #[test]
    fn measure_and_conditions() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        for (w, m) in [
            ("tr", 0),
            ("ee", 0),
            ("tree", 0),
            ("y", 0),
            ("by", 0),
            ("trouble", 1),
        ] {
            assert_eq!(measure(&c(w)), m, "m({w})");
        }
        for (w, m) in [
            ("oats", 1),
            ("trees", 1),
            ("ivy", 1),
            ("troubles", 2),
            ("private", 2),
        ] {
            assert_eq!(measure(&c(w)), m, "m({w})");
        }
        assert_eq!(measure(&c("oaten")), 2);
        assert_eq!(measure(&c("orrery")), 2);
        // syzygy: consonants s, z, g (y after a consonant is a vowel).
        assert_eq!(
            consonants(&c("syzygy")),
            vec![true, false, true, false, true, false]
        );
        assert_eq!(consonants(&c("toy")), vec![true, false, true]);
        assert!(ends_cvc(&c("hop")) && !ends_cvc(&c("how")) && ends_cvc(&c("ab")));
        assert!(ends_double_consonant(&c("hopp")) && !ends_double_consonant(&c("tree")));
        // Long runs of 'y' need no recursion.
        let long: String = "y".repeat(100_000);
        assert!(!PorterStemmer::new().stem(&long).is_empty());
    }
}
