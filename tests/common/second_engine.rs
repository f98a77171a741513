//! A second Docker engine of the test's own, for settings the shared engine cannot be given
//! without a restart (`registry-mirrors`): its own daemon.json, socket, data root (vfs storage),
//! exec root (it starts its own containerd there) and bridge, and no iptables rules, so the
//! shared engine and its networks are untouched. Stopped, and its files and bridge removed, when
//! dropped (also when the test panics).
//!
//! Not `--bridge none`: a dockerd started so deletes the host's `docker0` (moby's
//! `removeDefaultBridgeInterface`), which cut every container of the shared engine off.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct SecondEngine {
    child: Child,
    socket: PathBuf,
    bridge: String,
    dir: tempfile::TempDir,
}

impl SecondEngine {
    /// Starts dockerd with `daemon_json` as its configuration file; waits until it answers.
    pub fn start(daemon_json: &serde_json::Value) -> SecondEngine {
        assert!(
            Path::new("/usr/sbin/dockerd").exists(),
            "/usr/sbin/dockerd is missing: these tests need Docker Engine on the machine"
        );
        // Short: the engine's sockets (and its containerd's) must fit a Unix socket path.
        let dir = tempfile::Builder::new()
            .prefix("op-eng")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path();
        let config = root.join("daemon.json");
        std::fs::write(&config, serde_json::to_vec_pretty(daemon_json).unwrap())
            .expect("write daemon.json");
        let socket = root.join("docker.sock");
        // An interface name has at most 15 characters.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let bridge = format!(
            "opk{}-{}",
            std::process::id() % 1_000_000,
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        let added = Command::new("ip")
            .args(["link", "add", &bridge, "type", "bridge"])
            .output()
            .expect("run ip (iproute2)");
        assert!(
            added.status.success(),
            "cannot add bridge {bridge}: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let log = std::fs::File::create(root.join("dockerd.log")).expect("log file");
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args(["--storage-driver", "vfs", "--bridge", &bridge])
            .args(["--iptables=false", "--ip-masq=false", "--ip-forward=false"])
            .args(["--containerd-namespace", "offpack-second-engine"])
            .args([
                "--containerd-plugins-namespace",
                "offpack-second-engine-plugins",
            ])
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let docker0 = Path::new("/sys/class/net/docker0");
        let had_docker0 = docker0.exists();
        let engine = SecondEngine {
            child,
            socket,
            bridge,
            dir,
        };
        let since = Instant::now();
        while !engine.docker(&["version"]).status.success() {
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "the second engine did not answer within 60 s; its log:\n{}",
                engine.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            !had_docker0 || docker0.exists(),
            "the second engine took the shared engine's docker0 away"
        );
        engine
    }

    /// `docker` against this engine, whatever its exit status.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .expect("run docker")
    }

    /// The image ID `reference` has in this engine.
    pub fn image_id(&self, reference: &str) -> Option<String> {
        let out = self.docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops the containerd it started; SIGKILL would leave that running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let since = Instant::now();
        while since.elapsed() < Duration::from_secs(30) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount")
            .arg("--recursive")
            .arg(self.dir.path().join("exec"))
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}
