//! [`Stats`] as aligned plain-text tables, for people (`detox annotations stats` without
//! `--json`). Undefined values print as `n/a`.

use crate::likert::Summary;
use crate::stats::Stats;

/// Plain-text rendering of `stats`: counts, then tables of win rates, ratings, Krippendorff's
/// alpha and Cohen's kappa. Lines end with `\n` and carry no trailing spaces.
pub fn render_text(stats: &Stats) -> String {
    let mut out = format!(
        "{} judgments of {} items by {} annotators\n",
        stats.judgments, stats.items, stats.annotators
    );

    out.push_str(
        "\nPreference (a tie counts for both models; rate = wins / (wins + losses), Wilson 95% \
         interval)\n",
    );
    let mut rows = vec![row(&["model", "wins", "losses", "ties", "rate", "95% CI"])];
    for (model, w) in &stats.win_rate {
        rows.push(vec![
            model.clone(),
            w.wins.to_string(),
            w.losses.to_string(),
            w.ties.to_string(),
            num(w.rate, 3),
            w.ci95
                .map(|[lo, hi]| format!("[{lo:.3}, {hi:.3}]"))
                .unwrap_or_else(|| NA.into()),
        ]);
    }
    out.push_str(&table(&rows, "lrrrrl"));

    out.push_str("\nRatings 1-7 (mean ± sample std, n)\n");
    let mut rows = vec![row(&["model", "readability", "coherence"])];
    for (model, l) in &stats.likert {
        rows.push(vec![
            model.clone(),
            summary(&l.readability),
            summary(&l.coherence),
        ]);
    }
    out.push_str(&table(&rows, "lll"));

    let a = &stats.alpha;
    out.push_str("\nKrippendorff's alpha (n/a: undefined)\n");
    let rows = vec![
        row(&["preferred", "nominal", &num(a.preferred_nominal, 3)]),
        row(&["readability", "ordinal", &num(a.readability_ordinal, 3)]),
        row(&["readability", "interval", &num(a.readability_interval, 3)]),
        row(&["coherence", "ordinal", &num(a.coherence_ordinal, 3)]),
        row(&["coherence", "interval", &num(a.coherence_interval, 3)]),
    ];
    out.push_str(&table(&rows, "llr"));

    out.push_str("\nCohen's kappa on preferred (annotator pairs with items in common)\n");
    if stats.cohen_kappa.is_empty() {
        out.push_str("no two annotators judged the same item\n");
    } else {
        let mut rows = vec![row(&["pair", "kappa", "items"])];
        for (pair, k) in &stats.cohen_kappa {
            rows.push(vec![pair.clone(), num(k.kappa, 3), k.items.to_string()]);
        }
        out.push_str(&table(&rows, "lrr"));
    }
    out
}

const NA: &str = "n/a";

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn num(x: Option<f64>, decimals: usize) -> String {
    x.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| NA.into())
}

fn summary(s: &Summary) -> String {
    format!("{} ± {} ({})", num(s.mean, 2), num(s.std, 2), s.n)
}

/// `rows` with each column padded to its widest cell (in chars), `align[i]` `l` or `r`,
/// columns two spaces apart, indented by two.
fn table(rows: &[Vec<String>], align: &str) -> String {
    let align: Vec<char> = align.chars().collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from(" ");
        for (c, cell) in r.iter().enumerate() {
            let pad = " ".repeat(width[c] - cell.chars().count());
            line.push(' ');
            if align.get(c) == Some(&'r') {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
            line.push(' ');
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judgment::{Judgment, Preference, Ratings};

    fn judgment(item: &str, annotator: &str, preferred: Preference, r: u8) -> Judgment {
        Judgment {
            item: item.into(),
            annotator: annotator.into(),
            models: ["base".into(), "ppo-long-name".into()],
            shown: None,
            preferred,
            confidence: 1,
            ratings: [
                Ratings {
                    readability: r,
                    coherence: 4,
                },
                Ratings {
                    readability: 7,
                    coherence: 4,
                },
            ],
            note: String::new(),
            time: None,
            line: 0,
        }
    }

    #[test]
    fn aligned_tables_with_na() {
        let ppo = Preference::Model("ppo-long-name".into());
        let js = vec![
            judgment("1", "ann", ppo.clone(), 2),
            judgment("1", "bob", ppo, 3),
            judgment("2", "ann", Preference::Tie, 5),
        ];
        let text = render_text(&crate::compute(&js));
        assert!(
            text.starts_with("3 judgments of 2 items by 2 annotators\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| l == l.trim_end()), "{text}");
        // Sections are separated by one blank line: counts, preference, ratings, alpha, kappa.
        let sections: Vec<Vec<&str>> = text.split("\n\n").map(|s| s.lines().collect()).collect();
        assert_eq!(sections.len(), 5, "{text}");
        // base: 0 wins, 2 losses, 1 tie; Wilson 0/2: [0, z² / (2 + z²)] = [0, 0.658]. The model
        // column is as wide as the longest name, numbers right-aligned under their headers.
        assert_eq!(
            sections[1][1..],
            [
                "  model          wins  losses  ties   rate  95% CI",
                "  base              0       2     1  0.000  [0.000, 0.658]",
                "  ppo-long-name     2       0     1  1.000  [0.342, 1.000]",
            ],
            "{text}"
        );
        // base readability 2, 3, 5: mean 3.33, sample std 1.53; ppo always 7.
        assert_eq!(
            sections[2][2],
            "  base           3.33 ± 1.53 (3)  4.00 ± 0.00 (3)"
        );
        assert_eq!(
            sections[2][3],
            "  ppo-long-name  7.00 ± 0.00 (3)  4.00 ± 0.00 (3)"
        );
        // Coherence is 4 everywhere, and the only item both judged has one preferred value:
        // those alphas and the kappa are undefined.
        assert_eq!(sections[3][1], "  preferred    nominal     n/a");
        assert_eq!(sections[3][5], "  coherence    interval    n/a");
        assert_eq!(sections[4][2], "  ann|bob    n/a      1");
    }
}
