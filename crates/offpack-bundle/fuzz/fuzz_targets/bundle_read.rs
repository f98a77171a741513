//! Any bytes as a bundle file: opening it, reading every entry through the index and verifying it (with and
//! without a required key, split in two parts, extracted) end in a value or a clear error, never a panic,
//! and nothing is written outside the extraction directory.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use offpack_bundle::{BundleReader, VerifyingKey, extract, verify, verify_with_key};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("f.offpack");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(reader) = BundleReader::open(&path) {
        for entry in reader.index().entries.clone() {
            if let Ok(mut r) = reader.entry(&entry.path) {
                let mut sink = [0u8; 65_536];
                while let Ok(n) = r.read(&mut sink) {
                    if n == 0 {
                        break;
                    }
                }
            }
        }
        let _ = reader.manifest().images.len();
    }
    let verified = verify(&path, &mut |_| {}).is_ok();
    let key = VerifyingKey::from_text(
        "offpack-ed25519-public:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n",
    );
    if let Ok(key) = key {
        let _ = verify_with_key(&path, &key, &mut |_| {});
    }
    let out = dir.path().join("out");
    let extracted = extract(&path, &out).is_ok();
    assert_eq!(verified, extracted, "verify and extract disagree");

    // The same bytes as two split parts.
    let cut = data.len() / 2;
    let base = dir.path().join("s.offpack");
    if std::fs::write(dir.path().join("s.offpack.001"), &data[..cut]).is_ok()
        && std::fs::write(dir.path().join("s.offpack.002"), &data[cut..]).is_ok()
    {
        let split_ok = verify(&base, &mut |_| {}).is_ok();
        if cut > 0 {
            assert_eq!(split_ok, verified, "split and single-file verify disagree");
        }
        let _ = BundleReader::open(&base);
    }
});
