use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Output, ServeArgs};
use crate::ops::serve::{ServeRequest, Serving, start};
use crate::reporter::Reporter;

/// The `--json` line, printed once the server listens.
#[derive(Serialize)]
struct Listening {
    pip_index_url: String,
    pip_trusted_host: String,
    npm_registry: String,
    address: String,
    /// The bundle or the package store directory.
    source: String,
    bundle: bool,
    packages: usize,
    pypi: usize,
    npm: usize,
    signed_by: Option<String>,
}

pub async fn run(args: ServeArgs, output: Output, reporter: &dyn Reporter) -> Result<ExitCode> {
    let print_env = args.print_env;
    let request = ServeRequest {
        bundle: args.bundle,
        key: args.key,
        addr: SocketAddr::new(args.host, args.port),
    };
    // Before anything is printed: a caller that reads the URL and at once sends SIGTERM must
    // find the handlers in place.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let serving = start(&request, reporter)?;
    print_listening(&serving, print_env, output);
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    let requests = serving.server.requests();
    serving.server.stop();
    if !output.quiet && !output.json {
        eprintln!("stopped after {requests} requests");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_listening(serving: &Serving, print_env: bool, output: Output) {
    let listening = Listening {
        pip_index_url: serving.pip_index_url(),
        pip_trusted_host: serving.pip_trusted_host(),
        npm_registry: serving.npm_registry(),
        address: serving.server.addr().to_string(),
        source: serving.source.display().to_string(),
        bundle: serving.bundle,
        packages: serving.pypi + serving.npm,
        pypi: serving.pypi,
        npm: serving.npm,
        signed_by: serving.signed_by.clone(),
    };
    let mut stdout = std::io::stdout().lock();
    if output.json {
        // One line, so a script can read it while the server runs.
        let _ = serde_json::to_writer(&mut stdout, &listening);
        let _ = writeln!(stdout);
        let _ = stdout.flush();
        return;
    }
    let what = if serving.bundle {
        "bundle"
    } else {
        "package store"
    };
    let human = format!(
        "serving {} packages ({} pypi, {} npm) of {what} {}{}\npip: {}\nnpm: {}\nstop with Ctrl-C\n",
        listening.packages,
        listening.pypi,
        listening.npm,
        listening.source,
        match &listening.signed_by {
            Some(key) => format!(", signed by key {key}"),
            None => String::new(),
        },
        listening.pip_index_url,
        listening.npm_registry,
    );
    let human = offpack_bundle::escape_controls_in_lines(&human).into_owned();
    if print_env {
        // stdout is for `eval`: only the settings; the rest goes to stderr.
        let _ = write!(
            stdout,
            "export PIP_INDEX_URL='{}'\nexport PIP_TRUSTED_HOST='{}'\nexport npm_config_registry='{}'\n",
            listening.pip_index_url, listening.pip_trusted_host, listening.npm_registry
        );
        let _ = stdout.flush();
        if !output.quiet {
            eprint!("{human}");
        }
    } else {
        let _ = write!(stdout, "{human}");
        let _ = stdout.flush();
    }
}
