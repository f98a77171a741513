//! The client against Debian's distribution registry that `scripts/test-env up` runs on
//! 127.0.0.1:5000 (plain HTTP): upload, HEAD, mount, manifests by tag and digest, blob GET.

use std::io::Read;

use offpack_registry::{Client, ClientOptions, MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST};
use sha2::{Digest as _, Sha256};

fn client() -> Client {
    let client = Client::with_credentials(
        "127.0.0.1:5000",
        &ClientOptions {
            insecure: true,
            ..ClientOptions::default()
        },
        None,
    )
    .unwrap();
    client
        .ping("offpack-client-test")
        .expect("the registry on 127.0.0.1:5000 answers: run `scripts/test-env up`");
    client
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn upload_head_mount_manifest_and_get_back() {
    let client = client();
    let pid = std::process::id();
    let repo = format!("offpack-client-test-{pid}/a");
    let other = format!("offpack-client-test-{pid}/b");
    // Unique content: no other test's blob.
    let blob: Vec<u8> = format!(
        "{{\"offpack-client-test\":{pid},\"nanos\":{:?}}}",
        std::time::Instant::now()
    )
    .into_bytes();
    let blob_digest = digest(&blob);

    assert_eq!(client.blob_size(&repo, &blob_digest).unwrap(), None);
    let mut opened = 0;
    let up = client
        .upload_blob(
            &repo,
            Some(&blob_digest),
            &mut || {
                opened += 1;
                Ok(Box::new(&blob[..]))
            },
            &|_| {},
        )
        .unwrap();
    assert_eq!(
        (up.digest.as_str(), up.size),
        (blob_digest.as_str(), blob.len() as u64)
    );
    assert_eq!(opened, 1);
    assert_eq!(
        client.blob_size(&repo, &blob_digest).unwrap(),
        Some(blob.len() as u64)
    );

    assert!(client.mount_blob(&other, &blob_digest, &repo).unwrap());
    assert!(client.blob_size(&other, &blob_digest).unwrap().is_some());

    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": blob_digest, "size": blob.len()},
        "layers": [],
    }))
    .unwrap();
    let pushed = client
        .put_manifest(&repo, "v1", MEDIA_OCI_MANIFEST, &manifest)
        .unwrap();
    assert_eq!(pushed, digest(&manifest));

    let by_tag = client.get_manifest(&repo, "v1").unwrap();
    assert_eq!(by_tag.bytes, manifest);
    assert_eq!(by_tag.digest, pushed);
    assert_eq!(by_tag.media_type, MEDIA_OCI_MANIFEST);
    let by_digest = client.get_manifest(&repo, &pushed).unwrap();
    assert_eq!(by_digest.bytes, manifest);

    let mut back = Vec::new();
    client
        .get_blob(&other, &blob_digest)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, blob);

    let missing = client.get_manifest(&repo, "no-such-tag").unwrap_err();
    let text = format!("{missing:#}");
    assert!(
        text.contains("127.0.0.1:5000") && text.contains(&repo) && text.contains("404"),
        "{text}"
    );
}

#[test]
fn a_wrong_expected_digest_is_refused_before_the_registry_keeps_it() {
    let client = client();
    let repo = format!("offpack-client-test-{}/c", std::process::id());
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = client
        .upload_blob(
            &repo,
            Some(&wrong),
            &mut || Ok(Box::new(&b"data"[..])),
            &|_| {},
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains(&wrong), "{err:#}");
}

/// A registry behind a proxy that limits request bodies (nginx's default 1 MiB): it answers the
/// upload's `POST`, then cuts the `PATCH` off with a 413 that the client, still sending, never
/// reads. The error must say what to change, not only "broken pipe".
#[test]
fn a_proxy_that_cuts_an_upload_off_is_named_with_what_to_change() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            if request.starts_with("PATCH") {
                let mut some = vec![0u8; 64 << 10];
                let _ = reader.read(&mut some);
                let _ = stream.write_all(
                    b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 202 Accepted\r\nLocation: /v2/r/blobs/uploads/1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            // Closing with the rest of the body unread resets the connection, as a proxy does.
        }
    });
    let client = Client::with_credentials(
        &host,
        &ClientOptions {
            insecure: true,
            attempts: 2,
            first_backoff: std::time::Duration::from_millis(10),
            ..ClientOptions::default()
        },
        None,
    )
    .unwrap();
    let err = client
        .upload_blob(
            "r",
            None,
            &mut || Ok(Box::new(std::io::repeat(7).take(64 << 20))),
            &|_| {},
        )
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("PATCH") && text.contains("client_max_body_size"),
        "{text}"
    );
}
