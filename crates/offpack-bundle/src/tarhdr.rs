//! ustar headers: the canonical ones offpack writes, and a strict parser.

/// Size of a tar block.
pub(crate) const BLOCK: u64 = 512;

/// Sizes from 8 GiB on use GNU base-256 (spec 4.3).
const OCTAL_SIZE_LIMIT: u64 = 1 << 33;

/// Entry types a header may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryType {
    Regular,
    Directory,
    Hardlink,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Other(u8),
}

/// What a header says.
#[derive(Debug, Clone)]
pub(crate) struct ParsedHeader {
    pub path: String,
    pub size: u64,
    pub entry_type: EntryType,
}

/// Padding after `size` data bytes up to the next block.
pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn put_octal(field: &mut [u8], value: u64) {
    // field.len()-1 digits, then NUL.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

/// The canonical header offpack writes for a regular file (spec 4.2). `name` must be at most 100 bytes.
pub(crate) fn regular_header(name: &str, size: u64) -> [u8; 512] {
    header_with_type(name, size, b'0')
}

/// Like [`regular_header`] with any type flag (test vectors use this for invalid entries).
pub(crate) fn header_with_type(name: &str, size: u64, typeflag: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name.as_bytes()[..n]);
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    if size < OCTAL_SIZE_LIMIT {
        put_octal(&mut h[124..136], size);
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    put_octal(&mut h[136..148], 0);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put_octal(&mut h[329..337], 0);
    put_octal(&mut h[337..345], 0);
    set_checksum(&mut h);
    h
}

/// Recomputes the checksum field (6 octal digits, NUL, space).
pub(crate) fn set_checksum(h: &mut [u8; 512]) {
    let sum = checksum(h);
    let s = format!("{sum:06o}");
    let s = &s.as_bytes()[s.len().saturating_sub(6)..];
    h[148..154].copy_from_slice(s);
    h[154] = 0;
    h[155] = b' ';
}

fn checksum(h: &[u8; 512]) -> u64 {
    h.iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let end = field
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(field.len());
    let digits = &field[..end];
    if digits.is_empty() || !field[end..].iter().all(|&b| b == 0 || b == b' ') {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        acc.checked_mul(8)?.checked_add(u64::from(d - b'0'))
    })
}

fn parse_size(field: &[u8]) -> Result<u64, String> {
    match field.first() {
        Some(0x80) => {
            let (high, low) = field[1..].split_at(3);
            if high.iter().any(|&b| b != 0) {
                return Err("base-256 size does not fit in 64 bits".into());
            }
            let mut v = [0u8; 8];
            v.copy_from_slice(low);
            Ok(u64::from_be_bytes(v))
        }
        Some(b) if *b & 0x80 != 0 => Err("negative base-256 size".into()),
        _ => parse_octal(field).ok_or_else(|| "size field is not octal".into()),
    }
}

fn c_string(field: &[u8]) -> Result<String, String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).map_err(|_| "name is not UTF-8".to_owned())
}

/// True for the two zero blocks of the end-of-archive marker.
pub(crate) fn is_zero_block(h: &[u8]) -> bool {
    h.iter().all(|&b| b == 0)
}

/// Parses a header strictly: checksum format and value, ustar magic, size.
pub(crate) fn parse_header(h: &[u8; 512]) -> Result<ParsedHeader, String> {
    let field = &h[148..156];
    let well_formed =
        field[..6].iter().all(|b| (b'0'..=b'7').contains(b)) && field[6] == 0 && field[7] == b' ';
    if !well_formed {
        return Err("checksum field is malformed".into());
    }
    let stored = parse_octal(&field[..6]).ok_or("checksum field is malformed")?;
    if stored != checksum(h) {
        return Err(format!(
            "checksum mismatch (stored {stored:o}, computed {:o})",
            checksum(h)
        ));
    }
    if &h[257..263] != b"ustar\0" || &h[263..265] != b"00" {
        return Err("not a POSIX ustar header (magic/version)".into());
    }
    let size = parse_size(&h[124..136])?;
    let name = c_string(&h[..100])?;
    let prefix = c_string(&h[345..500])?;
    let path = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    let entry_type = match h[156] {
        b'0' | 0 => EntryType::Regular,
        b'1' => EntryType::Hardlink,
        b'2' => EntryType::Symlink,
        b'3' => EntryType::CharDevice,
        b'4' => EntryType::BlockDevice,
        b'5' => EntryType::Directory,
        b'6' => EntryType::Fifo,
        other => EntryType::Other(other),
    };
    Ok(ParsedHeader {
        path,
        size,
        entry_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_header_parses_back() {
        let h = regular_header("blobs/sha256/abc", 1234);
        let p = parse_header(&h).unwrap();
        assert_eq!(p.path, "blobs/sha256/abc");
        assert_eq!(p.size, 1234);
        assert_eq!(p.entry_type, EntryType::Regular);
        assert_eq!(&h[124..136], b"00000002322\0");
    }

    #[test]
    fn large_sizes_use_base256() {
        let size = 9 * (1u64 << 30);
        let h = regular_header("x", size);
        assert_eq!(h[124], 0x80);
        assert_eq!(parse_header(&h).unwrap().size, size);
        let mut neg = h;
        neg[124] = 0xff;
        set_checksum(&mut neg);
        assert!(parse_header(&neg).unwrap_err().contains("negative"));
    }

    #[test]
    fn tar_crate_agrees_with_our_header() {
        let h = regular_header("index.json", 77);
        let theirs = tar::Header::from_byte_slice(&h);
        assert_eq!(theirs.size().unwrap(), 77);
        assert_eq!(theirs.cksum().unwrap(), {
            let mut c = tar::Header::new_ustar();
            c.as_mut_bytes().copy_from_slice(&h);
            c.set_cksum();
            c.cksum().unwrap()
        });
        assert_eq!(&*theirs.path_bytes(), b"index.json");
    }

    #[test]
    fn any_single_byte_change_is_detected() {
        let h = regular_header("blobs/sha256/abc", 99);
        for i in 0..512 {
            let mut bad = h;
            bad[i] ^= 0x20;
            assert!(parse_header(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn padding_rounds_to_blocks() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
    }
}
