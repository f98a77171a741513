//! The air gap for end-to-end tests: cuts the network of build containers for the far-side part of
//! a test, and proves the cut before the test relies on it.
//!
//! Measured on this engine (Docker 20.10, `scripts/test-env`): a BuildKit `RUN` (over
//! `POST /build?version=2`) and a classic-builder `RUN` both run in a container on the default
//! bridge: `eth0` 172.17.0.2/16, default route via 172.17.0.1 (`docker0`), DNS from the host's
//! resolv.conf (10.255.255.53, reached through the bridge, since the default bridge has no embedded
//! DNS). So every packet of a `RUN` step either leaves through `docker0` and is forwarded (the
//! internet, PyPI through the workplace's TLS proxy, DNS) or is addressed to the host itself
//! (172.17.0.1, any service listening on the host's addresses). The cut is two rules tagged with
//! the comment [`RULE_COMMENT`]:
//!
//! - `DOCKER-USER -i docker0 ! -o docker0 -s 172.17.0.0/16 -j REJECT`: forwarded traffic, the chain
//!   Docker evaluates before its own rules (container-to-container traffic on `docker0` stays);
//! - `INPUT -i docker0 -s 172.17.0.0/16 -j REJECT`: the host's own services, e.g. a registry.
//!
//! REJECT rather than DROP, so that a step trying the network fails at once instead of after a
//! timeout. The bridge's name and subnet are read from the engine (`docker network inspect bridge`);
//! the default bridge has no IPv6 here, which the cut checks, so IPv4 rules are enough.
//! The engine itself (dockerd pulling from a registry on 127.0.0.1) is not behind `docker0`: a test
//! that needs "no registry" stops the registry it started.
//!
//! Concurrency: tests of one binary run in parallel, so a process-wide `RwLock` (a cut is a writer,
//! a networked step a reader) keeps every networked step ([`build_network`]) out of a cut. An
//! advisory lock file (`flock`, exclusive for a cut, shared for a use) does the same between
//! processes, which also makes it safe for a new cut to remove rules an earlier, killed run left:
//! while a cut holds the exclusive lock no other cut is live.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The comment every rule of the cut carries; rules with it are the cut's and nothing else's.
pub const RULE_COMMENT: &str = "offpack-test-offline";
/// The image the probes run in (made by `scripts/test-env`; carries the workplace's CA).
pub const PROBE_IMAGE: &str = "python:3.11-slim";
const LOCK_FILE: &str = "/run/lock/offpack-test-network.lock";
const PROBE_LIMIT: Duration = Duration::from_secs(120);

static NETWORK: RwLock<()> = RwLock::new(());

/// The network of build containers is cut while this lives; dropping it removes the rules.
pub struct NetworkCut {
    bridge: Bridge,
    // Declared last: the rules go (in `drop`) before the locks are released.
    _file: File,
    _lock: RwLockWriteGuard<'static, ()>,
}

/// A networked step (bundle, pull, push) is running: no cut starts while this lives.
pub struct NetworkUse {
    _file: File,
    _lock: RwLockReadGuard<'static, ()>,
}

/// The default bridge, which build containers use.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub interface: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
}

/// What a probe container reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// `https://pypi.org/simple/` answered (through the workplace's proxy).
    pub pypi: bool,
    /// A TCP listener of this test process on the bridge's gateway address accepted the connection.
    pub host: bool,
}

impl Reach {
    pub const NOTHING: Reach = Reach {
        pypi: false,
        host: false,
    };
    pub const EVERYTHING: Reach = Reach {
        pypi: true,
        host: true,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeBuilder {
    BuildKit,
    Classic,
}

/// Cuts the network of build containers and proves it: a BuildKit build and a classic build whose
/// `RUN` tries PyPI and the host must reach neither. Waits for running networked steps to end.
pub fn cut_build_network() -> NetworkCut {
    let lock = NETWORK.write().unwrap_or_else(|e| e.into_inner());
    let file = lock_file(rustix::fs::FlockOperation::LockExclusive);
    let bridge = default_bridge();
    // Under the exclusive lock no other cut is live: tagged rules are a killed run's leftovers.
    remove_tagged_rules();
    let cut = NetworkCut {
        bridge,
        _file: file,
        _lock: lock,
    };
    for (chain, rule) in cut.rules() {
        let mut args = vec!["-I", chain.as_str(), "1"];
        args.extend(rule.iter().map(String::as_str));
        iptables(&args);
    }
    for builder in [ProbeBuilder::BuildKit, ProbeBuilder::Classic] {
        let reach = probe(builder, &cut.bridge);
        assert_eq!(
            reach,
            Reach::NOTHING,
            "the network cut does not hold: a {builder:?} RUN step still reached {reach:?}; rules: {:?}",
            tagged_rules()
        );
    }
    cut
}

/// For a step that needs the network (bundle, a push to a test registry): no cut overlaps it.
pub fn build_network() -> NetworkUse {
    let lock = NETWORK.read().unwrap_or_else(|e| e.into_inner());
    let file = lock_file(rustix::fs::FlockOperation::LockShared);
    NetworkUse {
        _file: file,
        _lock: lock,
    }
}

impl NetworkCut {
    /// The rules as `(chain, match and target)`.
    fn rules(&self) -> Vec<(String, Vec<String>)> {
        let b = &self.bridge;
        let tag = |mut rule: Vec<String>| {
            rule.extend(
                ["-m", "comment", "--comment", RULE_COMMENT, "-j", "REJECT"].map(String::from),
            );
            rule
        };
        vec![
            (
                "DOCKER-USER".to_string(),
                tag(
                    ["-i", &b.interface, "!", "-o", &b.interface, "-s", &b.subnet]
                        .map(String::from)
                        .to_vec(),
                ),
            ),
            (
                "INPUT".to_string(),
                tag(["-i", &b.interface, "-s", &b.subnet]
                    .map(String::from)
                    .to_vec()),
            ),
        ]
    }

    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// Lets build steps reach the host's TCP `port` on the bridge through the cut, as a far side's
    /// firewall must for offpack's package server (decision 0085); removed with the cut.
    pub fn allow_host_port(&self, port: u16) {
        let b = &self.bridge;
        let port = port.to_string();
        iptables(&[
            "-I",
            "INPUT",
            "1",
            "-i",
            &b.interface,
            "-s",
            &b.subnet,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-m",
            "comment",
            "--comment",
            RULE_COMMENT,
            "-j",
            "ACCEPT",
        ]);
    }
}

impl Drop for NetworkCut {
    fn drop(&mut self) {
        let left = remove_tagged_rules_quietly();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("could not remove the network cut's rules: {left:?}");
        }
    }
}

fn lock_file(operation: rustix::fs::FlockOperation) -> File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("cannot open the network lock file {LOCK_FILE}: {e}"));
    rustix::fs::flock(&file, operation).unwrap_or_else(|e| panic!("cannot lock {LOCK_FILE}: {e}"));
    file
}

/// The default bridge's interface, subnet and gateway, as the engine reports them.
pub fn default_bridge() -> Bridge {
    let out = checked(Command::new("docker").args([
        "network",
        "inspect",
        "bridge",
        "--format",
        r#"{{index .Options "com.docker.network.bridge.name"}} {{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}"#,
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [interface, ipv6, subnet, ref rest @ ..] = fields[..] else {
        panic!("unexpected `docker network inspect bridge` answer: {text:?}");
    };
    assert_eq!(
        ipv6, "false",
        "the default bridge has IPv6: the cut would need ip6tables rules too"
    );
    // The default bridge's IPAM config names no gateway on 20.10: the interface's address is it.
    let gateway = match rest.first() {
        Some(gateway) => gateway.to_string(),
        None => {
            let out =
                checked(Command::new("ip").args(["-4", "-o", "addr", "show", "dev", interface]));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .and_then(|cidr| cidr.split('/').next())
                .unwrap_or_else(|| panic!("no IPv4 address on {interface}: {text:?}"))
                .to_string()
        }
    };
    Bridge {
        interface: interface.to_string(),
        subnet: subnet.to_string(),
        gateway: gateway
            .parse()
            .unwrap_or_else(|e| panic!("bridge gateway {gateway:?}: {e}")),
    }
}

/// Every rule tagged [`RULE_COMMENT`], as `iptables -S` prints it.
pub fn tagged_rules() -> Vec<String> {
    let mut rules = Vec::new();
    for chain in ["DOCKER-USER", "INPUT"] {
        let out = iptables(&["-S", chain]);
        rules.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|line| line.contains(RULE_COMMENT))
                .map(str::to_string),
        );
    }
    rules
}

/// Removes every rule tagged [`RULE_COMMENT`]; panics when one stays.
pub fn remove_tagged_rules() {
    let left = remove_tagged_rules_quietly();
    assert!(left.is_empty(), "could not remove tagged rules: {left:?}");
}

fn remove_tagged_rules_quietly() -> Vec<String> {
    for rule in tagged_rules() {
        // `-A CHAIN spec…` as printed; the comment has no spaces, so the words are the arguments.
        let mut words: Vec<&str> = rule.split_whitespace().collect();
        if words.first() == Some(&"-A") {
            words[0] = "-D";
            let out = iptables_unchecked(&words);
            if !out.status.success() {
                eprintln!(
                    "iptables {words:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    tagged_rules()
}

/// Adds a tagged rule that matches nothing a test uses, as a killed run would have left one.
pub fn add_stray_tagged_rule() {
    iptables(&[
        "-A",
        "INPUT",
        "-i",
        "offpack-none0",
        "-m",
        "comment",
        "--comment",
        RULE_COMMENT,
        "-j",
        "REJECT",
    ]);
}

fn iptables(args: &[&str]) -> Output {
    let out = iptables_unchecked(args);
    assert!(
        out.status.success(),
        "iptables {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn iptables_unchecked(args: &[&str]) -> Output {
    // -w: wait for the xtables lock dockerd also takes.
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run iptables ({e}): the offline tests need it (Debian package `iptables`, \
                 installed by scripts/test-env) and root"
            )
        })
}

/// Runs a `RUN` step with `builder` that tries PyPI and a TCP listener of this process on the
/// bridge's gateway, and says what it reached. The step's exit code carries the answer
/// (10 + 1 for PyPI + 2 for the host), so the build always fails and leaves no image.
pub fn probe(builder: ProbeBuilder, bridge: &Bridge) -> Reach {
    let listener = TcpListener::bind((bridge.gateway, 0))
        .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", bridge.gateway));
    let port = listener.local_addr().expect("listener address").port();
    let script = format!(
        "import socket, urllib.request\n\
         code = 10\n\
         try:\n    urllib.request.urlopen('https://pypi.org/simple/', timeout=20).read(64); code += 1\n\
         except Exception as e: print('pypi:', e)\n\
         try:\n    socket.create_connection(('{gateway}', {port}), timeout=5).close(); code += 2\n\
         except Exception as e: print('host:', e)\n\
         raise SystemExit(code)\n",
        gateway = bridge.gateway,
    );
    // The script travels hex-encoded inside the one RUN line: no COPY or ARG step, so the failed
    // build leaves no intermediate image (classic) and no cache record (BuildKit) behind.
    let hex: String = script.bytes().map(|b| format!("{b:02x}")).collect();
    let dockerfile =
        format!("FROM {PROBE_IMAGE}\nRUN python3 -c \"exec(bytes.fromhex('{hex}').decode())\"\n");
    let context = tempfile::tempdir().expect("tempdir");
    let tar_path = context.path().join("context.tar");
    {
        let mut tar = tar::Builder::new(File::create(&tar_path).expect("create context tar"));
        let mut header = tar::Header::new_ustar();
        header.set_size(dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
            .expect("write context tar");
        tar.finish().expect("finish context tar");
    }
    let query = format!(
        "nocache=1&rm=1&forcerm=1{}",
        match builder {
            ProbeBuilder::BuildKit => "&version=2",
            ProbeBuilder::Classic => "&version=1",
        }
    );
    let out = engine_post(&format!("/build?{query}"), &tar_path);
    drop(listener);
    let stream = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = exit_code_in(&stream).unwrap_or_else(|| {
        panic!("the {builder:?} probe build did not end with the probe's exit code:\n{stream}")
    });
    assert!(
        (10..=13).contains(&code),
        "the {builder:?} probe failed before probing (exit code {code}):\n{stream}"
    );
    let bits = code - 10;
    Reach {
        pypi: bits & 1 == 1,
        host: bits & 2 == 2,
    }
}

/// The exit code in a failed build's error (BuildKit: `… exit code: 13`; classic: `… returned a
/// non-zero code: 13`).
fn exit_code_in(stream: &str) -> Option<u32> {
    stream
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|doc| {
            doc.get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
        })
        .find_map(|error| {
            let at = error.rfind("code: ")?;
            error[at + "code: ".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
}

/// POSTs a file to the engine API on its socket (the docker CLI here has no buildx, so it cannot
/// start a BuildKit build).
fn engine_post(path: &str, body: &Path) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--unix-socket",
        "/var/run/docker.sock",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/x-tar",
        "--data-binary",
    ])
    .arg(format!("@{}", body.display()))
    .arg(format!("http://localhost/v1.41{path}"));
    let out = run_within(&mut cmd, PROBE_LIMIT);
    assert!(out.status.success(), "curl to the engine failed: {cmd:?}");
    out
}

fn checked(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command, killing it and failing the test when it takes longer than `limit`; prints its
/// output like `common::run`.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    run_limited(cmd, limit, true)
}

/// [`run_within`] that prints only the command and its status (for answers too long to read).
pub fn run_quietly_within(cmd: &mut Command, limit: Duration) -> Output {
    run_limited(cmd, limit, false)
}

fn run_limited(cmd: &mut Command, limit: Duration, print: bool) -> Output {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("stdout pipe")));
    let stderr = reader(Box::new(child.stderr.take().expect("stderr pipe")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
            let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!("{cmd:?} took longer than {limit:?} and was killed\n{out}{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    let _ = writeln!(
        std::io::stderr(),
        "$ {cmd:?}\n-> {} in {:.1}s\n{}{}",
        out.status,
        started.elapsed().as_secs_f64(),
        if print {
            String::from_utf8_lossy(&out.stdout)
        } else {
            "".into()
        },
        if print || !out.status.success() {
            String::from_utf8_lossy(&out.stderr)
        } else {
            "".into()
        }
    );
    out
}
