//! `detox inspect`: a checkpoint's architecture, parameter count (from its config) and the
//! tensors on disk, as a table or one JSON object.

use std::path::Path;

use anyhow::Result;

#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    #[arg(long)]
    pub model: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `detox inspect`.
pub fn run(args: &InspectArgs) -> Result<()> {
    let dir = detox_hub::resolve_model(&args.model)?;
    let info = detox_hub::models::inspect(Path::new(&dir))?;
    if args.json {
        println!("{}", serde_json::to_string(&info)?);
        return Ok(());
    }
    println!("model_type:   {}", info.model_type);
    println!("architecture: {}", info.architecture);
    println!("parameters:   {}", group_thousands(info.parameters));
    println!("dtype on disk: {}", info.dtypes.join(", "));
    println!("files:        {}", info.files.join(", "));
    println!("tensors ({}):", info.tensors.len());
    for (name, dtype, shape) in &info.tensors {
        println!("  {name:<70} {dtype:<5} {shape:?}");
    }
    Ok(())
}

/// `n` with a comma between each group of three digits (`294,976`).
fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    // Digits left before the next comma; the first group takes the remainder.
    let mut left = (digits.len() - 1) % 3 + 1;
    for c in digits.chars() {
        if left == 0 {
            out.push(',');
            left = 3;
        }
        out.push(c);
        left -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group_thousands;

    #[test]
    fn thousands_are_grouped_with_commas() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(294_976), "294,976");
        assert_eq!(group_thousands(247_577_856), "247,577,856");
    }
}
