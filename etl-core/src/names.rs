//! How a file name (or a path) from outside the process is written wherever it is stored or
//! shown: `events.source_file`, a reason file's `file`, log lines, `etl status`, `etl check`,
//! `etl replay`'s messages and metric labels.
//!
//! Linux file names are bytes, not text. Writing them with `to_string_lossy` turned every byte
//! that is not UTF-8 into `�`, so `bad\xff.json` and `bad\xfe.json` were both `bad�.json`: one
//! row could not be told from the other, and their reason files collided. [`encode`] is
//! lossless instead: a byte that is not part of valid UTF-8 becomes `%XX` (two upper-case hex
//! digits), and `%` itself becomes `%25` so that an encoded name can always be decoded back
//! ([`decode`]). Every other character, non-ASCII ones included, is written as it is, so a name
//! that is UTF-8 and has no `%` reads exactly as before.
//!
//! On disk nothing is encoded: files, and the reason files beside them, keep the real bytes of
//! their names (`OsStr`), so each maps back to its own file.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// The one text form of a file name or path: `%XX` for each byte that is not valid UTF-8,
/// `%25` for `%`, everything else as it is. Borrows when there is nothing to encode (the
/// common case: no allocation on the hot path).
pub fn encode(name: &OsStr) -> Cow<'_, str> {
    let bytes = name.as_bytes();
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.contains('%') {
            return Cow::Borrowed(text);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    Cow::Owned(out)
}

/// [`encode`] for a path (a path's text is its bytes, `/` included).
pub fn encode_path(path: &Path) -> Cow<'_, str> {
    encode(path.as_os_str())
}

/// The name an [`encode`]d text stands for, or `None` if the text is not one (a `%` not
/// followed by two hex digits). `decode(&encode(n)) == Some(n)` for every name `n`.
pub fn decode(text: &str) -> Option<OsString> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(bytes: &[u8]) -> &OsStr {
        OsStr::from_bytes(bytes)
    }

    #[test]
    fn a_utf8_name_without_a_percent_sign_is_unchanged_and_borrowed() {
        for text in ["a.json", "café-été.json", "0d133695-4b1e.json", "日本.json"] {
            let encoded = encode(name(text.as_bytes()));
            assert_eq!(encoded, text);
            assert!(matches!(encoded, Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn invalid_bytes_and_the_percent_sign_are_percent_encoded() {
        assert_eq!(encode(name(b"bad\xff.json")), "bad%FF.json");
        assert_eq!(encode(name(b"bad\xfe.json")), "bad%FE.json");
        assert_eq!(encode(name(b"caf\xe9-valid.json")), "caf%E9-valid.json");
        assert_eq!(encode(name(b"50%.json")), "50%25.json");
        assert_eq!(encode(name(b"%FF.json")), "%25FF.json");
        // A truncated multi-byte sequence is invalid byte by byte; valid text around it stays.
        assert_eq!(encode(name(b"\xc3\xa9\xe2\x82.json")), "é%E2%82.json");
        assert_eq!(
            encode_path(Path::new("/d/inbox/cards/a%.json")),
            "/d/inbox/cards/a%25.json"
        );
    }

    #[test]
    fn two_names_that_differ_only_in_an_invalid_byte_stay_distinct() {
        assert_ne!(encode(name(b"bad\xff.json")), encode(name(b"bad\xfe.json")));
        // …and the former ambiguity with a name that really contains the text `%FF` is gone.
        assert_ne!(encode(name(b"bad\xff.json")), encode(name(b"bad%FF.json")));
    }

    #[test]
    fn every_encoded_name_decodes_back_to_its_bytes() {
        let names: [&[u8]; 8] = [
            b"a.json",
            b"bad\xff.json",
            b"bad\xfe.json",
            b"50%.json",
            b"%FF.json",
            b"\xc3\xa9\xe2\x82.json",
            b"\x80\x80\x80",
            b"",
        ];
        for bytes in names {
            let encoded = encode(name(bytes));
            assert_eq!(decode(&encoded).as_deref(), Some(name(bytes)), "{encoded}");
        }
        // Every single byte, alone and between text.
        for byte in 0..=255u8 {
            let bytes = [b'x', byte, b'y'];
            assert_eq!(decode(&encode(name(&bytes))).as_deref(), Some(name(&bytes)));
        }
    }

    #[test]
    fn text_that_is_not_an_encoding_is_refused() {
        assert_eq!(decode("50%.json"), None);
        assert_eq!(decode("%G0"), None);
        assert_eq!(decode("%"), None);
        assert_eq!(decode("%é"), None);
    }
}
