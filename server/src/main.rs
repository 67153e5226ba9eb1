//! `donut`: the Distributed Donut server binary.
//!
//! Subcommands:
//! - `serve` (the default): the server on :8080.
//! - `work`: a native worker for a server.
//! - `render`: print frames as plain text, to see the donut without a browser.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use donut_server::app::Server;
use donut_server::config::{Cli, Command, ServeConfig};
use donut_shared::{FRAME_LEN, render};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .init();
    let command = cli.command.unwrap_or_else(|| {
        // `donut` alone serves with flags from the environment.
        Command::Serve(match Cli::parse_from(["donut", "serve"]).command {
            Some(Command::Serve(c)) => c,
            _ => ServeConfig::for_tests(),
        })
    });
    match command {
        Command::Render { from, count } => render_frames(from, count),
        Command::Serve(cfg) => runtime()?.block_on(serve(cfg)),
        Command::Work(cfg) => runtime()?.block_on(donut_server::native_worker::run(cfg)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let server = Server::start(cfg).await?;
    // Tests read the bound address from this line.
    println!("listening on {}", server.addr);
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(3)).await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT"),
        _ = term.recv() => Ok(()),
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
