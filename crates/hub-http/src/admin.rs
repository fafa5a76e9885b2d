//! Helpers of the `hub-server` administration commands (kept out of the binary).

use std::io::BufRead;

/// `2026-12-30 02:40 UTC` from unix seconds.
pub fn format_utc(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// `in 30 days`, `in 2 hours`, `in 15 minutes`, `in 40 seconds`, or `... ago`.
pub fn format_relative(secs: i64) -> String {
    let (n, past) = (secs.unsigned_abs(), secs < 0);
    let (v, unit) = if n >= 2 * 86_400 {
        (n / 86_400, "days")
    } else if n >= 2 * 3600 {
        (n / 3600, "hours")
    } else if n >= 2 * 60 {
        (n / 60, "minutes")
    } else {
        (n, "seconds")
    };
    if past {
        format!("{v} {unit} ago")
    } else {
        format!("in {v} {unit}")
    }
}

/// `2026-12-30 02:40 UTC (in 30 days)`.
pub fn format_expiry(expires: i64, now: i64) -> String {
    format!(
        "{} ({})",
        format_utc(expires),
        format_relative(expires - now)
    )
}

/// Reads a password: the first line of `input`, without its line end. Refuses an empty one.
pub fn read_password(input: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err("no password on stdin (give it as the first line)".into());
    }
    Ok(pw)
}

/// An error and its causes on one line, each cause shown only when the message before it
/// does not already say it (errors here include their source in their own message).
pub fn one_line(chain: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for m in chain {
        if out.contains(&m) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_well() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_798_675_200), "2026-12-31 00:00 UTC");
        assert_eq!(format_relative(30 * 86_400), "in 30 days");
        assert_eq!(format_relative(3 * 3600 + 5), "in 3 hours");
        assert_eq!(format_relative(-90), "90 seconds ago");
        assert_eq!(
            format_expiry(86_400 * 3, 0),
            "1970-01-04 00:00 UTC (in 3 days)"
        );
    }

    #[test]
    fn causes_are_not_repeated() {
        assert_eq!(
            one_line([
                "binding 127.0.0.1:5555: Address in use (os error 98)".to_string(),
                "Address in use (os error 98)".to_string()
            ]),
            "binding 127.0.0.1:5555: Address in use (os error 98)"
        );
        assert_eq!(one_line(["a".to_string(), "b".to_string()]), "a: b");
    }

    #[test]
    fn passwords_from_stdin() {
        assert_eq!(
            read_password(&mut &b"s3cret pass\n"[..]).as_deref(),
            Ok("s3cret pass")
        );
        assert!(read_password(&mut &b"\n"[..]).is_err());
    }
}
