//! The per-transfer libcurl handler: collects the body (bounded), the response's Content-Type,
//! and the final response's status line and header lines (bounded) for later look-ups.

use curl::easy::{Handler, WriteError};

use super::response_head::{MAX_HEAD_BYTES, ResponseHead};

/// Receives what libcurl reads for one transfer.
#[derive(Debug, Default)]
pub struct Collector {
    body: Vec<u8>,
    max_body_bytes: Option<usize>,
    body_overflowed: bool,
    content_type: Option<Vec<u8>>,
    head: ResponseHead,
}

impl Collector {
    /// Empties the collector for a new transfer.
    pub fn start(&mut self, max_body_bytes: Option<usize>) {
        self.body.clear();
        self.max_body_bytes = max_body_bytes;
        self.body_overflowed = false;
        self.content_type = None;
        self.head.clear();
    }

    /// Whether the transfer was aborted because the body grew past the limit.
    pub fn body_overflowed(&self) -> bool {
        self.body_overflowed
    }

    /// Hands out the body, Content-Type and response head, leaving the collector empty.
    pub fn take(&mut self) -> (Vec<u8>, Option<Vec<u8>>, ResponseHead) {
        (
            std::mem::take(&mut self.body),
            self.content_type.take(),
            std::mem::take(&mut self.head),
        )
    }
}

impl Handler for Collector {
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if let Some(limit) = self.max_body_bytes
            && self.body.len() + data.len() > limit
        {
            self.body_overflowed = true;
            return Ok(0); // anything short of data.len() makes libcurl abort with WRITE_ERROR
        }
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn header(&mut self, line: &[u8]) -> bool {
        if line.starts_with(b"HTTP/") {
            // A new response (interim 1xx, or after a redirect): only the final one counts.
            self.content_type = None;
            self.head.clear();
            self.head.set_status_line(line);
        } else {
            if let Some(value) = header_value(line, b"content-type") {
                self.content_type = Some(value.to_vec());
            }
            self.head.add_line(line, MAX_HEAD_BYTES);
        }
        true
    }
}

/// The value of a raw header line if its name is `name` (ASCII case-insensitive), without the
/// leading blanks and the line end.
pub(super) fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    if !line[..colon].trim_ascii_end().eq_ignore_ascii_case(name) {
        return None;
    }
    let value = &line[colon + 1..];
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(start, |i| i + 1);
    Some(&value[start..end.max(start)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_content_type_in_any_case_with_any_length() {
        let long = format!("Content-Type: {}\r\n", "x".repeat(300));
        assert_eq!(
            header_value(b"content-type: a/b\r\n", b"content-type"),
            Some(&b"a/b"[..])
        );
        assert_eq!(
            header_value(b"CONTENT-TYPE:a/b\r\n", b"content-type"),
            Some(&b"a/b"[..])
        );
        assert_eq!(
            header_value(long.as_bytes(), b"content-type").map(<[u8]>::len),
            Some(300)
        );
        assert_eq!(
            header_value(b"Content-Length: 3\r\n", b"content-type"),
            None
        );
        assert_eq!(
            header_value(b"Content-Type:\r\n", b"content-type"),
            Some(&b""[..])
        );
    }

    #[test]
    fn final_response_content_type_wins() {
        let mut c = Collector::default();
        c.start(None);
        c.header(b"HTTP/1.1 301 Moved\r\n");
        c.header(b"Content-Type: text/html\r\n");
        c.header(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(c.content_type, None);
        c.header(b"Content-Type: application/json\r\n");
        let (_, ctype, head) = c.take();
        assert_eq!(ctype.as_deref(), Some(&b"application/json"[..]));
        assert_eq!(head.reason(), b"OK");
        assert_eq!(
            head.header("content-TYPE"),
            Some(b"application/json".to_vec())
        );
    }

    #[test]
    fn body_over_limit_aborts() {
        let mut c = Collector::default();
        c.start(Some(4));
        assert_eq!(c.write(b"abc").ok(), Some(3));
        assert_eq!(c.write(b"de").ok(), Some(0));
        assert!(c.body_overflowed());
    }
}
