//! The final response's status line and header lines, kept (bounded) so that a script can read
//! any header and the reason phrase after the transfer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most bytes of header lines kept per response; lines past it are dropped.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Status line and raw header lines of one response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    status_line: Vec<u8>,
    /// Header lines, each ending with its line end, as received.
    lines: Vec<u8>,
}

impl ResponseHead {
    pub(crate) fn clear(&mut self) {
        self.status_line.clear();
        self.lines.clear();
    }

    pub(crate) fn set_status_line(&mut self, line: &[u8]) {
        self.status_line.clear();
        self.status_line
            .extend_from_slice(&line[..line.len().min(MAX_HEAD_BYTES)]);
    }

    pub(crate) fn add_line(&mut self, line: &[u8], max_bytes: usize) {
        if line.contains(&b':') && self.lines.len() + line.len() <= max_bytes {
            self.lines.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                self.lines.push(b'\n');
            }
        }
    }

    /// The status line and the header lines, as kept (for a cache to store).
    pub(crate) fn parts(&self) -> (&[u8], &[u8]) {
        (&self.status_line, &self.lines)
    }

    /// A head from [`ResponseHead::parts`] of another.
    pub(crate) fn from_parts(status_line: &[u8], lines: &[u8]) -> Self {
        Self {
            status_line: status_line.to_vec(),
            lines: lines.to_vec(),
        }
    }

    /// Bytes held (status line and header lines).
    pub fn byte_len(&self) -> usize {
        self.status_line.len() + self.lines.len()
    }

    /// The status line, with its line end.
    pub fn status_line(&self) -> &[u8] {
        &self.status_line
    }

    /// The header lines, each with its line end.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.lines.split_inclusive(|&b| b == b'\n')
    }

    /// Whether a response (a status line) was received.
    pub fn received(&self) -> bool {
        !self.status_line.is_empty()
    }

    /// The reason phrase of the status line (`OK` in `HTTP/1.1 200 OK`; empty for HTTP/2).
    pub fn reason(&self) -> &[u8] {
        let line = self.status_line.trim_ascii();
        let mut parts = line.splitn(3, |&b| b == b' ');
        let (_version, _code) = (parts.next(), parts.next());
        parts.next().unwrap_or_default().trim_ascii()
    }

    /// The value of header `name` (ASCII case-insensitive); several occurrences are joined
    /// with `, `. `None` if the response had no such header.
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        let mut found: Option<Vec<u8>> = None;
        for line in self.lines() {
            if let Some(value) = header_value(line, name.as_bytes()) {
                let value = value.trim_ascii_end();
                match &mut found {
                    Some(joined) => {
                        joined.extend_from_slice(b", ");
                        joined.extend_from_slice(value);
                    }
                    None => found = Some(value.to_vec()),
                }
            }
        }
        found
    }
}

impl ResponseHead {
    /// The wait a `Retry-After` header asks for, counted from `now`: delta-seconds, or an
    /// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, the form RFC 9110 has senders write).
    /// `None` without one, or with one that is neither.
    pub fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        let value = self.header("retry-after")?;
        let value = std::str::from_utf8(&value).ok()?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        let at = UNIX_EPOCH + Duration::from_secs(imf_fixdate(value)?);
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// Seconds since the Unix epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn imf_fixdate(text: &str) -> Option<u64> {
    let (_weekday, rest) = text.split_once(", ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = fields[..] else {
        return None;
    };
    let month = 1 + [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as i64;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<u64> = time
        .split(':')
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let [hours, minutes, seconds] = hms[..] else {
        return None;
    };
    if !(1..=31).contains(&day) || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm), the year starting in March.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = u64::try_from(era * 146_097 + day_of_era - 719_468).ok()?;
    Some(days * 86_400 + hours * 3600 + minutes * 60 + seconds)
}

/// The value of a raw header line if its name is `name` (ASCII case-insensitive), without the
/// leading blanks and the line end.
pub(crate) fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
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
    fn retry_after_in_seconds_or_as_a_date() {
        let head = |value: &str| {
            let mut head = ResponseHead::default();
            head.set_status_line(b"HTTP/1.1 503 Service Unavailable\r\n");
            head.add_line(
                format!("Retry-After: {value}\r\n").as_bytes(),
                MAX_HEAD_BYTES,
            );
            head
        };
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(head("120").retry_after(now), Some(Duration::from_secs(120)));
        assert_eq!(
            head("Sun, 06 Nov 1994 08:49:37 GMT").retry_after(now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            head("Sun, 06 Nov 1994 08:51:37 GMT").retry_after(now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            head("Thu, 01 Jan 1970 00:00:00 GMT").retry_after(UNIX_EPOCH),
            Some(Duration::ZERO)
        );
        assert_eq!(
            imf_fixdate("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        for bad in [
            "soon",
            "-1",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:00:00 GMT",
        ] {
            assert_eq!(head(bad).retry_after(now), None, "{bad}");
        }
        assert_eq!(ResponseHead::default().retry_after(now), None);
    }

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
    fn finds_headers_case_insensitively_and_joins_repeats() {
        let mut head = ResponseHead::default();
        head.set_status_line(b"HTTP/1.1 201 Created Here\r\n");
        head.add_line(b"Location: /v2/devices/7\r\n", MAX_HEAD_BYTES);
        head.add_line(b"Link: <a>\r\n", MAX_HEAD_BYTES);
        head.add_line(b"link: <b>\r\n", MAX_HEAD_BYTES);
        head.add_line(b"\r\n", MAX_HEAD_BYTES);
        assert_eq!(head.reason(), b"Created Here");
        assert_eq!(head.header("location"), Some(b"/v2/devices/7".to_vec()));
        assert_eq!(head.header("LINK"), Some(b"<a>, <b>".to_vec()));
        assert_eq!(head.header("Retry-After"), None);
    }

    #[test]
    fn keeps_at_most_the_bound() {
        let mut head = ResponseHead::default();
        let line = format!("X-Big: {}\r\n", "v".repeat(100));
        for _ in 0..100 {
            head.add_line(line.as_bytes(), 1000);
        }
        assert!(head.lines.len() <= 1000);
        assert_eq!(ResponseHead::default().reason(), b"");
    }
}
