//! The page: escaping, tables, figures, the settings block and the document around them. The
//! page is one file — inline CSS, inline SVG, no script, no external resource (its
//! Content-Security-Policy forbids any) — and well-formed XML as well as HTML, so a test can
//! parse it whole.
//!
//! Every text that comes from a file (summaries, queries, model names, paths, setting keys and
//! values) goes through [`escape`].

use std::fmt::Write as _;

use serde_json::Value;

use crate::charts::Chart;
use crate::runs::SettingsFile;

/// `s` with `&`, `<`, `>`, `"` and `'` as character references: safe in text and in quoted
/// attribute values, in HTML and in XML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // not allowed in XML 1.0 (a control character in a summary would break the page)
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A table cell: plain text, a number (right-aligned), or a long text (scrolls inside a box
/// of bounded height).
pub enum Cell {
    Text(String),
    Num(String),
    Long(String),
}

/// A table with a header row; every text escaped. A column whose first cell is a number has a
/// `num` header (narrow in a `wide` table).
pub fn table(class: &str, head: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut s = format!("<table class=\"{class}\"><thead><tr>");
    for (i, h) in head.iter().enumerate() {
        let numeric = rows
            .first()
            .and_then(|r| r.get(i))
            .is_some_and(|c| matches!(c, Cell::Num(_)));
        let _ = match numeric {
            true => write!(s, "<th class=\"num\">{}</th>", escape(h)),
            false => write!(s, "<th>{}</th>", escape(h)),
        };
    }
    s.push_str("</tr></thead><tbody>");
    for row in rows {
        s.push_str("<tr>");
        for cell in row {
            let _ = match cell {
                Cell::Text(t) => write!(s, "<td>{}</td>", escape(t)),
                Cell::Num(t) => write!(s, "<td class=\"num\">{}</td>", escape(t)),
                Cell::Long(t) => write!(s, "<td><div class=\"long\">{}</div></td>", escape(t)),
            };
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// A chart as a `<figure>`: the title as caption, the HTML legend, the SVG.
pub fn figure(chart: &Chart) -> String {
    let mut s = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption>",
        escape(&chart.title)
    );
    if !chart.legend.is_empty() {
        s.push_str("<ul class=\"legend\">");
        for e in &chart.legend {
            let _ = write!(
                s,
                "<li><span class=\"swatch\" style=\"background:{}\"></span><b>{}</b>",
                escape(&e.color),
                escape(&e.name)
            );
            if !e.note.is_empty() {
                let _ = write!(s, " <span class=\"note\">{}</span>", escape(&e.note));
            }
            s.push_str("</li>");
        }
        s.push_str("</ul>");
    }
    s.push_str(&chart.svg);
    if let Some(c) = &chart.caption {
        let _ = write!(s, "<p class=\"caption\">{}</p>", escape(c));
    }
    s.push_str("</figure>");
    s
}

/// A paragraph of escaped text.
pub fn para(class: &str, text: &str) -> String {
    format!("<p class=\"{class}\">{}</p>", escape(text))
}

/// Arrays longer than this are shown by their length and first items.
const LONG_ARRAY: usize = 12;

/// `value` flattened to `(dotted key, text)` rows: objects recursed into, short arrays of
/// scalars as JSON, long arrays by their length.
pub fn flatten_json(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        Value::Array(items) if items.len() > LONG_ARRAY => {
            let head: Vec<String> = items.iter().take(3).map(scalar_text).collect();
            out.push((
                prefix.to_string(),
                format!("[{} items: {}, …]", items.len(), head.join(", ")),
            ));
        }
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            for (i, v) in items.iter().enumerate() {
                flatten_json(&format!("{prefix}[{i}]"), v, out);
            }
        }
        v => out.push((prefix.to_string(), scalar_text(v))),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Setting names shown first, in the block's summary line, wherever they are nested.
const KEY_FACTS: [&str; 9] = [
    "base_model",
    "mode",
    "seed",
    "device",
    "step",
    "total_steps",
    "model_type",
    "transformers_version",
    "peft_version",
];

/// The run's settings as one collapsible block: the key facts in the summary line, then each
/// file's flattened settings as a table.
pub fn settings_block(files: &[SettingsFile]) -> String {
    if files.is_empty() {
        return "<details class=\"settings\"><summary>Settings: none recorded</summary>\
                <p class=\"note\">No checkpoint with trainer_state.json or ppo_state.json, and \
                no final model config, in this directory.</p></details>"
            .into();
    }
    let mut facts: Vec<String> = Vec::new();
    let mut tables = String::new();
    for f in files {
        let mut rows = Vec::new();
        flatten_json("", &f.value, &mut rows);
        for (k, v) in &rows {
            let leaf = k.rsplit('.').next().unwrap_or(k);
            let fact = format!("{leaf} {v}");
            if KEY_FACTS.contains(&leaf) && !facts.contains(&fact) && facts.len() < 8 {
                facts.push(fact);
            }
        }
        let cells: Vec<Vec<Cell>> = rows
            .into_iter()
            .map(|(k, v)| vec![Cell::Text(k), Cell::Long(v)])
            .collect();
        let _ = write!(
            tables,
            "<h4>{}</h4>{}",
            escape(&f.name),
            table("settings", &["setting", "value"], &cells)
        );
    }
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    format!(
        "<details class=\"settings\"><summary>Settings ({}){}</summary>{tables}</details>",
        escape(&names.join(", ")),
        if facts.is_empty() {
            String::new()
        } else {
            format!(": {}", escape(&facts.join(" · ")))
        }
    )
}

const CSS: &str = "
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif;
  color: #222; background: #f6f7f9; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 0 0 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
h4 { font-size: 14px; margin: 12px 0 4px; font-family: ui-monospace, 'DejaVu Sans Mono', monospace; }
nav ul { margin: 4px 0 0; padding-left: 20px; }
code, .path { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 13px; }
section.run { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 14px 18px;
  margin: 18px 0; }
.summary { color: #444; margin: 2px 0 8px; }
.note, .caption { color: #666; font-size: 13px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
figure.chart { margin: 0; border: 1px solid #e3e6ea; border-radius: 6px; padding: 8px 10px;
  background: #fff; min-width: 0; }
figure.chart figcaption { font-weight: 600; font-size: 14px; }
figure.chart svg { display: block; width: 100%; height: auto; }
ul.legend { list-style: none; margin: 2px 0 4px; padding: 0; font-size: 12.5px; }
ul.legend li { margin: 1px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: -1px; margin-right: 5px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13.5px; }
th, td { border: 1px solid #dde1e6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.wide { width: 100%; table-layout: fixed; }
table.wide th.num { width: 6.5em; }
table.wide th:first-child { width: 2.5em; }
div.long { max-height: 9em; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
table.settings td:first-child { font-family: ui-monospace, 'DejaVu Sans Mono', monospace;
  font-size: 12.5px; white-space: nowrap; }
details { margin: 8px 0; }
details > summary { cursor: pointer; font-weight: 600; }
details.settings > summary { font-weight: normal; }
footer { color: #777; font-size: 12.5px; margin-top: 24px; }
";

/// The whole document: title, the inputs and their runs as a table of contents, the sections.
pub fn page(title: &str, toc: &[(String, String)], sections: &[String]) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>");
    s.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\"/>",
    );
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>");
    let _ = write!(
        s,
        "<title>{}</title><style>{CSS}</style></head>\n<body><main>",
        escape(title)
    );
    let _ = write!(s, "<h1>{}</h1>", escape(title));
    s.push_str("<nav><ul>");
    for (id, heading) in toc {
        let _ = write!(
            s,
            "<li><a href=\"#{}\">{}</a></li>",
            escape(id),
            escape(heading)
        );
    }
    s.push_str("</ul></nav>\n");
    for section in sections {
        s.push_str(section);
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "<footer>Written by detox report {} — one self-contained file: inline CSS and SVG, no \
         scripts, nothing fetched.</footer></main></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{1}b\nc"), "a\u{FFFD}b\nc");
    }

    #[test]
    fn settings_are_flattened_and_long_arrays_shortened() {
        let v = serde_json::json!({
            "step": 30,
            "config": {"seed": 7, "lr": 0.001, "lora": {"r": 8}, "targets": ["q", "v"]},
            "optimizer_params": (0..40).map(|i| format!("p{i}")).collect::<Vec<_>>(),
        });
        let mut rows = Vec::new();
        flatten_json("", &v, &mut rows);
        let get = |k: &str| rows.iter().find(|r| r.0 == k).map(|r| r.1.as_str());
        assert_eq!(get("config.seed"), Some("7"));
        assert_eq!(get("config.lora.r"), Some("8"));
        assert_eq!(get("config.targets"), Some("[\"q\",\"v\"]"));
        assert_eq!(get("optimizer_params"), Some("[40 items: p0, p1, p2, …]"));
        let block = settings_block(&[SettingsFile {
            name: "checkpoint-30/trainer_state.json".into(),
            value: v,
        }]);
        assert!(block.starts_with("<details"), "{block}");
        assert!(
            block.contains("seed 7") && block.contains("step 30"),
            "{block}"
        );
    }
}
