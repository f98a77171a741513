//! A containerd of the test's own: socket, root and state in a temporary directory, the CRI
//! plugin off; killed when dropped (also when the test panics). `ctr` talks to it in the
//! `k8s.io` namespace, the kubelet's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub struct Containerd {
    pub child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Containerd {
        for tool in ["/usr/bin/containerd", "/usr/bin/ctr"] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: run `scripts/test-env up` (it installs containerd)"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let socket = root.join("containerd.sock");
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}/root\"\nstate = \"{root}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{root}/opt\"\n",
                root = root.display(),
                sock = socket.display()
            ),
        )
        .expect("write config.toml");
        let log = std::fs::File::create(root.join("containerd.log")).expect("log file");
        let child = Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let containerd = Containerd { child, socket, dir };
        let since = Instant::now();
        loop {
            let up = Command::new("ctr")
                .arg("-a")
                .arg(&containerd.socket)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return containerd;
            }
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "containerd did not answer within 30 s; its log:\n{}",
                std::fs::read_to_string(containerd.dir.path().join("containerd.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ctr` on this containerd, namespace k8s.io, whatever its exit status.
    pub fn run_ctr(&self, args: &[&str]) -> Output {
        super::run(
            Command::new("ctr")
                .arg("-a")
                .arg(&self.socket)
                .args(["-n", "k8s.io"])
                .args(args),
        )
    }

    /// `ctr` on this containerd, namespace k8s.io, which must succeed.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let out = self.run_ctr(args);
        assert!(out.status.success(), "ctr {args:?} failed");
        out
    }

    pub fn ctr_text(&self, args: &[&str]) -> String {
        super::stdout(&self.ctr(args))
    }

    pub fn address(&self) -> &str {
        self.socket.to_str().expect("utf-8 path")
    }

    /// A directory of the test's own, for `ctr images pull --hosts-dir`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Snapshots may hold mounts of their own; the directory goes with the temporary dir.
        let _ = Command::new("umount")
            .arg("--recursive")
            .arg(self.dir.path().join("root"))
            .output();
    }
}
