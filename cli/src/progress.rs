//! Build progress on the terminal: a spinner per step, then a line with what it did.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        crate::logger::set_bar(Some(bar.clone()));
        Bar { bar }
    }
}

impl hoist_images::build::Progress for Bar {
    fn begin(&self, step: &str) {
        self.bar.set_message(step.to_string());
    }

    fn end(&self, step: &str, detail: &str) {
        let line = format!("  {step}: {detail}");
        // Not a terminal (CI logs, pipes): the bar is hidden, print plain lines instead.
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        crate::logger::set_bar(None);
        self.bar.finish_and_clear();
    }
}
