//! What must never leave the module in clear: in log lines, MI output, traces and cache
//! entries.

use super::escape::unescape;

/// Query parameters whose value a log line replaces by `***`: those whose name (decoded,
/// any case) contains one of these.
const SECRET_PARAMETER_MARKERS: [&str; 7] =
    ["token", "key", "secret", "pass", "pwd", "sig", "auth"];

/// The URL for log lines: any `user:password@` becomes `***@`, and the value of every query
/// parameter whose name looks like a credential (see [`SECRET_PARAMETER_MARKERS`]) `***`.
pub fn redact_url(url: &str) -> String {
    let (address, query) = url.split_once('?').unwrap_or((url, ""));
    let mut redacted = match address.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => address.to_string(),
            }
        }
        None => address.to_string(),
    };
    if !url.contains('?') {
        return redacted;
    }
    let (query, fragment) = query
        .split_once('#')
        .map_or((query, None), |(q, f)| (q, Some(f)));
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
            _ => parameter.to_string(),
        })
        .collect();
    redacted.push('?');
    redacted.push_str(&parameters.join("&"));
    if let Some(fragment) = fragment {
        redacted.push('#');
        redacted.push_str(fragment);
    }
    redacted
}

fn is_secret_name(name: &str) -> bool {
    let name = String::from_utf8_lossy(&unescape(name.as_bytes())).to_ascii_lowercase();
    SECRET_PARAMETER_MARKERS.iter().any(|m| name.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_and_secret_query_parameters() {
        assert_eq!(redact_url("http://u:p@h:80/a@b"), "http://***@h:80/a@b");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_url("h/a"), "h/a");
        assert_eq!(
            redact_url("https://u:p@h/x?page=2&access_token=T&API_KEY=K&sig=S&passwd=P&q#f=1"),
            "https://***@h/x?page=2&access_token=***&API_KEY=***&sig=***&passwd=***&q#f=1"
        );
        assert_eq!(redact_url("h:1/x?%74oken=T&a="), "h:1/x?%74oken=***&a=");
        assert_eq!(redact_url("http://h/?"), "http://h/?");
        assert_eq!(redact_url("http://h?u@x=1"), "http://h?u@x=1");
    }
}
