use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{Output, ServeArgs};
use crate::http::HttpServer;
use crate::ops::serve::{ServeRequest, Serving, start};
use crate::ops::serve_registry::{self, RegistryServing};
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
    // Before anything is printed: a caller that reads the URL and at once sends SIGTERM must
    // find the handlers in place.
    let stop = StopSignals::install()?;
    if let Some(request) = args.registry_request() {
        let serving = serve_registry::start(&request, reporter)?;
        print_registry(&serving, output);
        stop.wait().await;
        return Ok(stopped(serving.server, output));
    }
    let print_env = args.print_env;
    let request = ServeRequest {
        bundle: args.bundle,
        key: args.key,
        addr: SocketAddr::new(args.host, args.port),
    };
    let serving = start(&request, reporter)?;
    print_listening(&serving, print_env, output);
    stop.wait().await;
    Ok(stopped(serving.server.into_http(), output))
}

/// SIGTERM and SIGINT, caught.
struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    fn install() -> Result<Self> {
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

fn stopped(server: HttpServer, output: Output) -> ExitCode {
    let requests = server.requests();
    server.stop();
    if !output.quiet && !output.json {
        eprintln!("stopped after {requests} requests");
    }
    ExitCode::SUCCESS
}

/// The `--json` line of `serve --registry`, printed once the server listens.
#[derive(Serialize)]
struct RegistryListening {
    /// `HOST:PORT`, the prefix of the image names to pull.
    registry: String,
    address: String,
    bundle: String,
    images: usize,
    repositories: Vec<RepositoryListing>,
    /// What is not served, and why.
    skipped: Vec<String>,
    signed_by: Option<String>,
    /// The `.sha256` file the whole bundle was checked against before serving (`null`: none).
    sha256_file: Option<String>,
}

#[derive(Serialize)]
struct RepositoryListing {
    name: String,
    tags: Vec<String>,
}

fn print_registry(serving: &RegistryServing, output: Output) {
    let listening = RegistryListening {
        registry: serving.registry(),
        address: serving.server.addr().to_string(),
        bundle: serving.bundle.display().to_string(),
        images: serving.images,
        repositories: serving
            .repositories
            .iter()
            .map(|(name, tags)| RepositoryListing {
                name: name.clone(),
                tags: tags.clone(),
            })
            .collect(),
        skipped: serving.skipped.clone(),
        signed_by: serving.signed_by.clone(),
        sha256_file: serving.sidecar.as_ref().map(|p| p.display().to_string()),
    };
    if output.json {
        print_json_line(&listening);
        return;
    }
    let mut human = format!(
        "serving {} images of bundle {} as a registry at {}{}\n",
        listening.images,
        listening.bundle,
        listening.registry,
        signed_by_note(&listening.signed_by),
    );
    for repository in &listening.repositories {
        for tag in &repository.tags {
            human.push_str(&format!(
                "  docker pull {}/{}:{tag}\n",
                listening.registry, repository.name
            ));
        }
    }
    human.push_str(&format!(
        "as a mirror of Docker Hub: \"registry-mirrors\": [\"http://{}\"] in /etc/docker/daemon.json\nstop with Ctrl-C\n",
        listening.registry
    ));
    let human = offpack_bundle::escape_controls_in_lines(&human).into_owned();
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{human}");
    let _ = stdout.flush();
}

/// One line, so a script can read it while the server runs.
fn print_json_line(value: &impl Serialize) {
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, value);
    let _ = writeln!(stdout);
    let _ = stdout.flush();
}

fn signed_by_note(signed_by: &Option<String>) -> String {
    match signed_by {
        Some(key) => format!(", signed by key {key}"),
        None => String::new(),
    }
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
    if output.json {
        print_json_line(&listening);
        return;
    }
    let mut stdout = std::io::stdout().lock();
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
        signed_by_note(&listening.signed_by),
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
