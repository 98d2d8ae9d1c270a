//! The app's pages, rendered on the server: plain HTML forms that work without scripts, one
//! small script for keyboard shortcuts, one style sheet. Every text from the items file or a
//! model goes through [`escape`], so a summary holding `<script>` shows as text.

use crate::db::Page;

pub const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
header { display: flex; justify-content: space-between; align-items: baseline; border-bottom: 1px solid #ddd; }
.progress { font-variant-numeric: tabular-nums; color: #555; }
.dialogue { white-space: pre-wrap; background: #f6f6f6; padding: .75rem 1rem; border-radius: 4px; max-height: 24rem; overflow: auto; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin: 1rem 0; }
.summary { border: 1px solid #ccc; border-radius: 4px; padding: .5rem 1rem; }
.summary p { white-space: pre-wrap; min-height: 3rem; }
fieldset { border: 1px solid #ddd; margin: .5rem 0; }
.scale label { margin-right: .6rem; white-space: nowrap; }
.error { background: #fdd; border: 1px solid #c66; padding: .5rem 1rem; }
kbd { border: 1px solid #aaa; border-radius: 3px; padding: 0 .3rem; font-size: .85em; }
textarea { width: 100%; }
button { font-size: 1.05rem; padding: .4rem 1.4rem; }
"#;

/// Keyboard shortcuts (a / b / t, 1-3, Ctrl+Enter); the page works without it.
pub const SCRIPT: &str = r#"
document.addEventListener('keydown', function (e) {
  var t = e.target;
  if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
    var f = document.getElementById('rate');
    if (f) { e.preventDefault(); f.requestSubmit(); }
    return;
  }
  if (t && (t.tagName === 'TEXTAREA' || t.tagName === 'INPUT' && t.type === 'text')) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  var ids = { a: 'preferred-left', b: 'preferred-right', t: 'preferred-tie', '1': 'confidence-1', '2': 'confidence-2', '3': 'confidence-3' };
  var el = document.getElementById(ids[e.key]);
  if (el) { el.checked = true; e.preventDefault(); }
});
"#;

/// Escapes `s` for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/app.css\"></head>\
         <body>{body}<script src=\"/app.js\"></script></body></html>\n",
        escape(title)
    )
}

/// The message of a refused form above the page, or nothing.
fn error_box(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default()
}

/// The first page: who is annotating.
pub fn start_page(error: Option<&str>) -> String {
    let err = error_box(error);
    layout(
        "detox annotate",
        &format!(
            "<header><h1>Summary evaluation</h1></header>{err}\
             <p>You will see a dialogue and two summaries of it. Choose the better one (or a tie), \
             say how sure you are, and rate each summary's readability and coherence from 1 (poor) to 7 (excellent). \
             Enter the same name again later to continue where you stopped.</p>\
             <form method=\"post\" action=\"/start\"><label>Your name \
             <input type=\"text\" name=\"name\" required maxlength=\"40\" pattern=\"[A-Za-z0-9._\\-]+\" autofocus></label> \
             <button type=\"submit\">Start</button></form>"
        ),
    )
}

fn scale(name: &str, hi: u8) -> String {
    (1..=hi)
        .map(|v| {
            format!(
                "<label><input type=\"radio\" name=\"{name}\" id=\"{name}-{v}\" value=\"{v}\" required> {v}</label>"
            )
        })
        .collect()
}

fn summary_block(letter: &str, side: &str, text: &str) -> String {
    format!(
        "<section class=\"summary\" id=\"summary-{side}\"><h2>Summary {letter}</h2><p>{}</p>\
         <fieldset class=\"scale\"><legend>Readability</legend>{}</fieldset>\
         <fieldset class=\"scale\"><legend>Coherence</legend>{}</fieldset></section>",
        escape(text),
        scale(&format!("{side}_readability"), 7),
        scale(&format!("{side}_coherence"), 7),
    )
}

/// The rating page of `page` for `annotator`, who has judged `done` of `total` items.
pub fn rate_page(
    annotator: &str,
    page: &Page,
    done: usize,
    total: usize,
    error: Option<&str>,
) -> String {
    let err = error_box(error);
    let left = &page.item.summaries[page.left];
    let right = &page.item.summaries[1 - page.left];
    let who = escape(annotator);
    let choice = [("left", "A"), ("right", "B"), ("tie", "Tie")]
        .iter()
        .map(|(v, l)| {
            format!(
                "<label><input type=\"radio\" name=\"preferred\" id=\"preferred-{v}\" value=\"{v}\" required> {l}</label> "
            )
        })
        .collect::<String>();
    let confidence = [(1, "unsure"), (2, "fairly sure"), (3, "sure")]
        .iter()
        .map(|(v, l)| {
            format!(
                "<label><input type=\"radio\" name=\"confidence\" id=\"confidence-{v}\" value=\"{v}\" required> {v} ({l})</label> "
            )
        })
        .collect::<String>();
    layout(
        &format!("Item {} of {total}", done + 1),
        &format!(
            "<header><h1>Summary evaluation</h1><span class=\"progress\" id=\"progress\">{done} / {total}</span></header>{err}\
             <h2>Dialogue</h2><div class=\"dialogue\" id=\"dialogue\">{}</div>\
             <form id=\"rate\" method=\"post\" action=\"/rate/{who}\">\
             <input type=\"hidden\" name=\"page\" value=\"{}\">\
             <div class=\"pair\">{}{}</div>\
             <fieldset><legend>Which summary is better?</legend>{choice}</fieldset>\
             <fieldset><legend>How sure are you?</legend>{confidence}</fieldset>\
             <label>Note (optional)<br><textarea name=\"note\" rows=\"2\" maxlength=\"2000\"></textarea></label>\
             <p><button type=\"submit\" id=\"send\">Submit and next</button></p></form>\
             <p>Keys: <kbd>a</kbd> <kbd>b</kbd> <kbd>t</kbd> choose A, B or tie; <kbd>1</kbd>-<kbd>3</kbd> how sure; \
             <kbd>Ctrl</kbd>+<kbd>Enter</kbd> submit. Signed in as <b>{who}</b>.</p>",
            escape(&page.item.dialogue),
            escape(&page.token),
            summary_block("A", "left", left),
            summary_block("B", "right", right),
        ),
    )
}

/// Shown when `annotator` has judged every item.
pub fn done_page(annotator: &str, done: usize, total: usize) -> String {
    layout(
        "All done",
        &format!(
            "<header><h1>Summary evaluation</h1><span class=\"progress\" id=\"progress\">{done} / {total}</span></header>\
             <p id=\"done\">Thank you, {}: you have judged every item.</p>",
            escape(annotator)
        ),
    )
}

/// An error page (the body of a 400 / 403 / 500 answer).
pub fn error_page(msg: &str) -> String {
    layout(
        "Error",
        &format!(
            "<header><h1>Summary evaluation</h1></header><p class=\"error\" id=\"error\">{}</p><p><a href=\"/\">Start page</a></p>",
            escape(msg)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::Item;

    #[test]
    fn texts_from_items_and_models_are_escaped() {
        let page = Page {
            token: "ab".repeat(16),
            item: Item {
                id: "0".into(),
                dialogue: "#Person1#: <b>hi</b> & bye".into(),
                reference: None,
                models: ["m".into(), "n".into()],
                summaries: ["<script>alert(1)</script>".into(), "it's \"fine\"".into()],
            },
            left: 1,
        };
        let html = rate_page("ann", &page, 3, 10, Some("<oops>"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt; &amp; bye"));
        assert!(html.contains("it&#39;s &quot;fine&quot;"));
        assert!(html.contains("&lt;oops&gt;"));
        // left = models[1]'s summary, shown first as A; the model names are not on the page
        let a = html.find("it&#39;s").unwrap();
        let b = html.find("&lt;script&gt;").unwrap();
        assert!(a < b);
        assert!(!html.contains(">m<") && !html.contains(">n<"));
        assert!(html.contains("3 / 10"));
        assert!(html.contains(&"ab".repeat(16)));
        assert_eq!(html.matches("type=\"radio\"").count(), 3 + 3 + 4 * 7);
    }
}
