//! `donut`: the Distributed Donut server binary.
//!
//! Subcommands:
//! - `render`: print frames as plain text, to see the donut without a browser.

use std::io::{self, Write};

use anyhow::Context;
use clap::{Parser, Subcommand};
use donut_shared::{FRAME_LEN, render};

/// Distributed Donut: a browser render farm for a1k0n's spinning donut.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write frames to stdout as plain text, 1760 bytes each (80×22 with newlines).
    Render {
        /// First absolute frame number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many frames to write.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Render { from, count } => render_frames(from, count),
    }
}

/// Writes `count` frames starting at `from` to stdout.
fn render_frames(from: u64, count: u64) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut frame = [0u8; FRAME_LEN];
    for n in (0..count).map_while(|k| from.checked_add(k)) {
        render(n, &mut frame);
        match out.write_all(&frame) {
            // A closed pipe (`donut render | head`) is a normal way to stop.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.context("writing frame to stdout")?,
        }
    }
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("flushing stdout"),
    }
}
