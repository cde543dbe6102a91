//! Writes the `nexus(8)` man page (roff) to stdout, rendered from the clap definition in
//! `nexus::cli`. `packaging/build-packages` runs it and gzips the result into the packages:
//!
//! ```sh
//! cargo run --example gen-man > nexus.8
//! ```

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let command = nexus::cli::Cli::command();
    let man = clap_mangen::Man::new(command)
        .section("8")
        .manual("System Administration");
    man.render(&mut std::io::stdout().lock())
}
