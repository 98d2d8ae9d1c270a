//! SIGINT / SIGTERM during a long run (`finetune`, `ppo`). The first signal asks the run to stop
//! at the end of its current step: the training loop saves a checkpoint (or names the one it has)
//! and returns [`Interrupted`], so `--resume` continues where it stopped. A second signal gives
//! up at once: the save in progress, if any, is abandoned (its temporary directory removed, the
//! earlier checkpoints untouched) and the process exits with 130.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The exit status of a run stopped by a signal (128 + SIGINT, as shells report it).
pub const EXIT_CODE: u8 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// The run stopped early, on request, at a resumable point.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted after step {step}: {} holds the run; continue it with --resume",
    checkpoint.display()
)]
pub struct Interrupted {
    pub step: usize,
    pub checkpoint: PathBuf,
}

/// Starts listening for SIGINT and SIGTERM (once per process; later calls do nothing). Until
/// then the signals keep their default effect (the process ends at once).
pub fn install() -> std::io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| match Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for signal in signals.forever() {
                    on_signal(signal);
                }
            });
        }
        Err(e) => result = Err(e),
    });
    result
}

/// Whether a stop was asked for: training loops check this between steps.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

fn on_signal(signal: i32) {
    let name = if signal == SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    };
    if !REQUESTED.swap(true, Ordering::SeqCst) {
        eprintln!(
            "\n{name}: stopping after the current step (a checkpoint is saved first); \
             send it again to stop at once"
        );
        return;
    }
    let abandoned = detox_hub::atomic::abandon_in_progress();
    let what = if abandoned.is_empty() {
        String::new()
    } else {
        " (the save in progress is abandoned; earlier checkpoints are untouched)".into()
    };
    eprintln!("{name} again: stopping now{what}");
    std::process::exit(EXIT_CODE.into());
}
