//! `tollgate-authority check-filter-config FILE...`: the filter's own
//! validation (`tollgate::config::Config::parse`, what the filter runs at
//! configure), natively, for CI pipelines. Prints one line per file: `ok`,
//! or the field path and the reason. Exit 0: every file accepted; 1: one
//! refused; 2: a file could not be read (or no file given).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Filter configuration documents (JSON).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Treat every `secret_env` / `credential_env` variable as set to a valid
    /// placeholder (for CI, where the VM's secrets are not at hand). Without
    /// it the variables are read from this process's environment.
    #[arg(long)]
    pub assume_env: bool,
    /// Print the JSON Schema of the document (docs/filter-config.schema.json) and exit.
    #[arg(long, conflicts_with = "files")]
    pub print_schema: bool,
}

/// A placeholder as long as the longest key needs (HS512: 64 bytes), base64url;
/// also a valid edge credential.
fn placeholder() -> String {
    tollgate::token::b64::encode(&[0x5a; 64])
}

pub fn run(args: &Args) -> ExitCode {
    let mut out = std::io::stdout().lock();
    if args.print_schema {
        let _ = out.write_all(tollgate::config::schema_text().as_bytes());
        return ExitCode::SUCCESS;
    }
    let env = |name: &str| if args.assume_env { Some(placeholder()) } else { std::env::var(name).ok() };
    let mut code = 0u8;
    for path in &args.files {
        let shown = path.display();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{shown}: cannot read: {e}");
                code = 2;
                continue;
            }
        };
        match tollgate::config::Config::parse(&bytes, &env) {
            Ok(_) => {
                let _ = writeln!(out, "{shown}: ok");
            }
            Err(e) if e.field.is_empty() => {
                let _ = writeln!(out, "{shown}: {}", e.message);
                code = code.max(1);
            }
            Err(e) => {
                let _ = writeln!(out, "{shown}: {}: {}", e.field, e.message);
                code = code.max(1);
            }
        }
    }
    ExitCode::from(code)
}
