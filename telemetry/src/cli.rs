//! What both binaries do before anything else: parse the command line (a
//! usage error exits 64, EX_USAGE, with its first line) and start logging.

/// Parses `args` as `T`. Help and version print and exit 0; anything else
/// wrong exits 64 with `program: <the first line of clap's message>`.
pub fn parse_cli<T: clap::Parser>(program: &str, args: Vec<String>) -> T {
    match T::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let rendered = e.to_string();
                let first = rendered.lines().next().unwrap_or("invalid arguments");
                exit_usage(program, first.trim_start_matches("error: "))
            }
        },
    }
}

/// A configuration error like a bad flag: `program: message`, exit 64.
pub fn exit_usage(program: &str, message: &str) -> ! {
    eprintln!("{program}: {message}");
    std::process::exit(64)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as JSON lines
/// when `json`.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
