//! Go's `go-units.BytesSize`, which classic used for `docker info`'s "Reserved Memory":
//! binary units and `%.4g` (four significant digits, trailing zeros dropped).

const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// `1073741824` -> `"1 GiB"`, `8330768384` -> `"7.759 GiB"`.
pub fn bytes_size(bytes: i64) -> String {
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{} {}", g4(size), UNITS[unit])
}

/// `%.4g` for the values `bytes_size` produces: below 1024 in magnitude (a negative
/// reservation, impossible in practice, is left as it comes), so never in exponent form.
fn g4(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let int_digits = (x.abs().log10().floor() as i32 + 1).max(1);
    let decimals = (4 - int_digits).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_units_bytes_size() {
        assert_eq!(bytes_size(0), "0 B");
        assert_eq!(bytes_size(512), "512 B");
        assert_eq!(bytes_size(1024), "1 KiB");
        assert_eq!(bytes_size(1536), "1.5 KiB");
        assert_eq!(bytes_size(1 << 30), "1 GiB");
        assert_eq!(bytes_size(2 << 30), "2 GiB");
        assert_eq!(bytes_size(8330768384), "7.759 GiB");
        assert_eq!(bytes_size(536870912), "512 MiB");
        assert_eq!(
            bytes_size(1048575),
            "1024 KiB",
            "rounds to four digits as %.4g"
        );
        assert_eq!(bytes_size(123456789), "117.7 MiB");
    }
}
