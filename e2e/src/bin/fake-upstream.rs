//! `fake-upstream`: a fast fake OpenAI chat completions server for benchmarks.
//!
//! `fake-upstream --listen 127.0.0.1:0 --chunks 20 --chunk-delay-us 5000` prints
//! `fake-upstream listening addr=ADDR` once bound, then serves until killed.

use clap::Parser;

#[derive(Parser)]
#[command(name = "fake-upstream")]
struct Cli {
    #[command(flatten)]
    args: modelroute_e2e::fake_upstream::Args,
}

fn main() -> anyhow::Result<()> {
    modelroute_e2e::fake_upstream::run(&Cli::parse().args)
}
