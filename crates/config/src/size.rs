//! Byte sizes written as `64KiB`, `8KiB`, `1GiB`, `512` (bytes).

/// Parses a size: an integer of bytes, or an integer followed by `B`, `KiB`, `MiB` or `GiB`
/// (powers of 1024; `KB`, `MB`, `GB` are accepted as the same, as nginx's `k` and `m` are).
pub fn parse(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "`{text}` is not a size (expected e.g. `64KiB`, `1MiB`, `512`)"
        ));
    }
    let n: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let unit: u64 = match text[digits..].trim_start() {
        "" | "B" => 1,
        "KiB" | "KB" | "k" | "K" => 1 << 10,
        "MiB" | "MB" | "m" | "M" => 1 << 20,
        "GiB" | "GB" | "g" | "G" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (units: B, KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `n` bytes as written in a configuration: `64KiB`, `1MiB`, or bytes.
pub fn display(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("512"), Ok(512));
        assert_eq!(parse("64KiB"), Ok(65_536));
        assert_eq!(parse("8 KiB"), Ok(8192));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("2m"), Ok(2 << 20));
        assert_eq!(parse("0"), Ok(0));
        assert!(parse("1.5MiB").unwrap_err().contains("unknown unit"));
        assert!(parse("MiB").unwrap_err().contains("not a size"));
        assert!(parse("99999999999GiB").unwrap_err().contains("too large"));
    }
}
