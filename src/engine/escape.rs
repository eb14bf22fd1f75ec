//! URL escaping as libcurl's `curl_easy_escape` / `curl_easy_unescape` do it, a path
//! variant that keeps `/`, and XML text escaping.

/// Percent-encodes every byte except RFC 3986 unreserved characters, with uppercase hex.
pub fn escape(input: &[u8]) -> Vec<u8> {
    escape_except(input, b"")
}

/// As [`escape`], but keeps `/`: a path of several segments stays one.
pub fn escape_path(input: &[u8]) -> Vec<u8> {
    escape_except(input, b"/")
}

/// Percent-encodes every byte except RFC 3986 unreserved characters and those of `kept`.
fn escape_except(input: &[u8], kept: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(input.len() * 3);
    for &b in input {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || kept.contains(&b)
        {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    out
}

/// Text for an XML element or attribute value: `& < > " '` become entities, control bytes
/// that XML 1.0 cannot carry (all below 0x20 but tab, LF and CR) are dropped, others stay.
pub fn escape_xml(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 8);
    for &b in input {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            b'\t' | b'\n' | b'\r' => out.push(b),
            0..0x20 => {}
            _ => out.push(b),
        }
    }
    out
}

/// Decodes `%XX` sequences (other bytes, `+` included, stay as they are). Like the C module,
/// the result ends at the first decoded NUL byte.
pub fn unescape(input: &[u8]) -> Vec<u8> {
    decode(input, true)
}

/// Decodes every `%XX` sequence, `%00` included (other bytes stay as they are).
pub(super) fn percent_decode(input: &[u8]) -> Vec<u8> {
    decode(input, false)
}

fn decode(input: &[u8], stop_at_nul: bool) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let decoded = match input.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(0) if stop_at_nul => break,
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(input[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_c_module() {
        assert_eq!(
            escape("a b/&=ü~._-".as_bytes()),
            b"a%20b%2F%26%3D%C3%BC~._-"
        );
    }

    #[test]
    fn escape_path_keeps_slashes_only() {
        assert_eq!(
            escape_path("dir a/b?c#d/ü%/".as_bytes()),
            b"dir%20a/b%3Fc%23d/%C3%BC%25/"
        );
    }

    #[test]
    fn escape_xml_uses_entities_and_drops_what_xml_cannot_carry() {
        assert_eq!(
            escape_xml("<b>Tom & \"Jerry's\"</b>\tü\r\n\0\x1b".as_bytes()),
            "&lt;b&gt;Tom &amp; &quot;Jerry&apos;s&quot;&lt;/b&gt;\tü\r\n".as_bytes()
        );
    }

    #[test]
    fn unescape_reverses_escape_and_keeps_plus_and_bad_sequences() {
        let original = "a b/&=ü~._-".as_bytes();
        assert_eq!(unescape(&escape(original)), original);
        assert_eq!(unescape(b"a+b%2"), b"a+b%2");
        assert_eq!(unescape(b"%zz%41%61"), b"%zzAa");
        assert_eq!(unescape(b"ab%00cd"), b"ab");
        assert_eq!(percent_decode(b"ab%00cd%2"), b"ab\0cd%2");
    }
}
