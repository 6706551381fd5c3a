//! Durations (`30s`, `5m`, `4h`, `5d`) and sizes (`25MiB`, `1MB`, `512KiB`, `1000`) as written in
//! the configuration file.

use std::time::Duration;

/// Parse `30s`, `5m`, `4h`, `5d` (also `250ms`, `2w`). A bare number is refused: a duration
/// without a unit is a common and silent mistake.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (write 30s, 5m, 4h or 5d)"))?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        "" => {
            return Err(format!(
                "'{s}' has no unit (write {s}s, {s}m, {s}h or {s}d)"
            ))
        }
        other => return Err(format!("'{s}': unknown unit '{other}' (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

/// Parse `25MiB`, `10MB`, `512KiB`, `1GiB` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (write 25MiB, 512KiB or a byte count)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "'{s}': unknown size unit '{other}' (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Print a duration the way the configuration file writes it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A size for people to read: `512 B`, `1.2 KiB`, `3.4 MiB`, `5.6 GiB` (the queue listing, the
/// status page).
pub fn format_size(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    match bytes {
        0..=1023 => format!("{bytes} B"),
        1024..=1_048_575 => format!("{:.1} KiB", b / K),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", b / K / K),
        _ => format!("{:.1} GiB", b / K / K / K),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_in_the_largest_unit_that_is_at_least_one() {
        use super::format_size;
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1260), "1.2 KiB");
        assert_eq!(format_size(3 * 1_048_576 + 500_000), "3.5 MiB");
        assert_eq!(format_size(2 * 1_073_741_824), "2.0 GiB");
    }

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14_400)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(432_000)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("25MiB"), Ok(25 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
