//! Which lock entries npm installs on a target platform (npm-install-checks'
//! `checkPlatform`: `os`, `cpu`, `libc` lists with `!` negation).

use super::lock::NpmPackage;

/// The platform a build installs for, in Node's terms (`process.platform`,
/// `process.arch`, libc family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmTarget {
    /// `linux`, `win32`, `darwin`, …
    pub os: String,
    /// `x64`, `arm64`, `arm`, `ia32`, `ppc64`, `s390x`, …
    pub cpu: String,
    /// `glibc` or `musl` when known.
    pub libc: Option<String>,
}

impl NpmTarget {
    /// From a Docker platform (`linux/amd64`, `linux/arm/v7`, `linux/arm64/v8`):
    /// amd64→x64, arm64→arm64, arm→arm, 386→ia32, ppc64le→ppc64, s390x→s390x;
    /// other architectures pass through. `windows` becomes `win32`.
    pub fn from_platform(platform: &str, libc: Option<&str>) -> NpmTarget {
        let mut parts = platform.split('/');
        let os = match parts.next().unwrap_or("") {
            "windows" => "win32",
            "" => "linux",
            other => other,
        };
        let cpu = match parts.next().unwrap_or("") {
            "amd64" | "x86_64" => "x64",
            "arm64" | "aarch64" => "arm64",
            "arm" => "arm",
            "386" | "i386" => "ia32",
            "ppc64le" => "ppc64",
            "s390x" => "s390x",
            "mips64le" => "mips64el",
            other => other,
        };
        NpmTarget {
            os: os.to_string(),
            cpu: cpu.to_string(),
            libc: libc.map(str::to_string),
        }
    }
}

/// npm's `checkList`: `["any"]` or an empty list match everything; a `!x`
/// entry equal to the value rejects; otherwise a plain entry must match,
/// unless every entry is negated.
fn check_list(value: &str, list: &[String]) -> bool {
    if list.is_empty() || (list.len() == 1 && list[0] == "any") {
        return true;
    }
    let mut negated = 0;
    let mut matched = false;
    for entry in list {
        match entry.strip_prefix('!') {
            Some(test) => {
                negated += 1;
                if value == test {
                    return false;
                }
            }
            None => matched |= value == entry,
        }
    }
    matched || negated == list.len()
}

impl NpmPackage {
    /// Whether npm installs this entry on `target`. An empty list means any;
    /// a `libc` constraint fails off Linux and when the target's libc is unknown, as in npm.
    pub fn installs_on(&self, target: &NpmTarget) -> bool {
        let libc_ok = if self.libc.is_empty() {
            true
        } else {
            match &target.libc {
                Some(libc) if target.os == "linux" => check_list(libc, &self.libc),
                _ => false,
            }
        };
        check_list(&target.os, &self.os) && check_list(&target.cpu, &self.cpu) && libc_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npm::lock::NpmSource;

    fn pkg(os: &[&str], cpu: &[&str], libc: &[&str]) -> NpmPackage {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        NpmPackage {
            name: "x".into(),
            alias: None,
            version: "1.0.0".into(),
            source: NpmSource::Unknown,
            integrity: None,
            path: "node_modules/x".into(),
            optional: true,
            dev: false,
            in_bundle: false,
            os: v(os),
            cpu: v(cpu),
            libc: v(libc),
        }
    }

    #[test]
    fn maps_docker_platforms() {
        let t = |p| NpmTarget::from_platform(p, None).cpu;
        assert_eq!(t("linux/amd64"), "x64");
        assert_eq!(t("linux/arm64"), "arm64");
        assert_eq!(t("linux/arm64/v8"), "arm64");
        assert_eq!(t("linux/arm/v7"), "arm");
        assert_eq!(t("linux/386"), "ia32");
        assert_eq!(t("linux/ppc64le"), "ppc64");
        assert_eq!(t("linux/s390x"), "s390x");
        assert_eq!(t("linux/riscv64"), "riscv64");
        let w = NpmTarget::from_platform("windows/amd64", Some("glibc"));
        assert_eq!(w.os, "win32");
        assert_eq!(w.libc.as_deref(), Some("glibc"));
    }

    #[test]
    fn filters_like_npm() {
        let amd = NpmTarget::from_platform("linux/amd64", Some("glibc"));
        let arm = NpmTarget::from_platform("linux/arm64", Some("musl"));
        assert!(pkg(&[], &[], &[]).installs_on(&amd));
        assert!(pkg(&["linux"], &["x64"], &[]).installs_on(&amd));
        assert!(!pkg(&["linux"], &["x64"], &[]).installs_on(&arm));
        assert!(!pkg(&["darwin"], &["arm64"], &[]).installs_on(&arm));
        assert!(pkg(&["!win32"], &[], &[]).installs_on(&amd));
        assert!(!pkg(&["!linux"], &[], &[]).installs_on(&amd));
        assert!(pkg(&["!win32", "!darwin"], &[], &[]).installs_on(&amd));
        assert!(pkg(&["darwin", "!win32", "linux"], &[], &[]).installs_on(&amd));
        assert!(!pkg(&["darwin", "!win32"], &[], &[]).installs_on(&amd));
        assert!(pkg(&["any"], &["any"], &[]).installs_on(&amd));
        assert!(pkg(&["linux"], &["x64"], &["glibc"]).installs_on(&amd));
        assert!(!pkg(&["linux"], &["x64"], &["musl"]).installs_on(&amd));
        assert!(pkg(&[], &[], &["!glibc"]).installs_on(&arm));
        // libc constraints fail when the libc is unknown or off Linux.
        let unknown = NpmTarget::from_platform("linux/amd64", None);
        assert!(!pkg(&[], &[], &["glibc"]).installs_on(&unknown));
        let win = NpmTarget::from_platform("windows/amd64", Some("glibc"));
        assert!(!pkg(&[], &[], &["glibc"]).installs_on(&win));
    }
}
