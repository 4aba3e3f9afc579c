//! Just enough DER to read the URIs of a certificate's subject alternative
//! name: the identities Weir's processes and clients present.
//!
//! Only certificates that rustls has already verified against the CA reach
//! this reader, but it still treats its input as hostile: every length is
//! checked against what is left, nothing recurses, and anything it does not
//! understand ends the walk with no URIs.

/// DER tags met on the way to the SAN URIs.
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `extensions [3] EXPLICIT` in `TBSCertificate`.
const EXTENSIONS: u8 = 0xa3;
/// `uniformResourceIdentifier [6] IMPLICIT IA5String` in `GeneralName`.
const URI: u8 = 0x86;
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// One tag-length-value and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        // High tag numbers never occur on this path.
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 {
            return None;
        }
        let mut len = 0usize;
        for _ in 0..bytes {
            let (&b, r) = rest.split_first()?;
            len = (len << 8) | usize::from(b);
            rest = r;
        }
        len
    };
    if len > rest.len() {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

/// The elements of a constructed value, in order, as (tag, value).
fn children(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, value, rest) = element(input)?;
        input = rest;
        Some((tag, value))
    })
}

/// The URIs in the subject alternative name of a DER certificate, in the
/// order they appear; empty when it has none or cannot be read.
pub fn san_uris(certificate: &[u8]) -> Vec<String> {
    let Some((SEQUENCE, cert, _)) = element(certificate) else {
        return Vec::new();
    };
    let Some((SEQUENCE, tbs, _)) = element(cert) else {
        return Vec::new();
    };
    let Some((_, extensions)) = children(tbs).find(|(tag, _)| *tag == EXTENSIONS) else {
        return Vec::new();
    };
    let Some((SEQUENCE, extensions, _)) = element(extensions) else {
        return Vec::new();
    };
    for (tag, extension) in children(extensions) {
        if tag != SEQUENCE {
            continue;
        }
        let mut parts = children(extension);
        if parts.next() != Some((OID, SUBJECT_ALT_NAME)) {
            continue;
        }
        let mut value = parts.next();
        if matches!(value, Some((BOOLEAN, _))) {
            value = parts.next();
        }
        let Some((OCTET_STRING, names)) = value else {
            return Vec::new();
        };
        let Some((SEQUENCE, names, _)) = element(names) else {
            return Vec::new();
        };
        return children(names)
            .filter(|(tag, _)| *tag == URI)
            .filter_map(|(_, uri)| std::str::from_utf8(uri).ok().map(String::from))
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_past_the_input_end_the_walk() {
        assert_eq!(element(&[0x30, 0x05, 1, 2]), None);
        assert_eq!(element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(element(&[0x30, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(element(&[0x1f, 0x01, 0]), None);
        assert_eq!(
            element(&[0x30, 0x81, 0x01, 7]),
            Some((0x30, &[7u8][..], &[][..]))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = san_uris(&bytes);
        }
    }
}
