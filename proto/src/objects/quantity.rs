//! Resource quantities as Kubernetes writes them: `500m`, `2`, `0.5`,
//! `128Mi`, `1G`, `1e3`. Held exactly, in thousandths of a unit, so that
//! CPU (in millicores) and memory (in bytes) add up without rounding drift.

use std::fmt;

/// A parsed quantity, in thousandths of its unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    pub millis: i128,
}

/// Why a string is not a quantity: Kubernetes' own message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotAQuantity;

impl fmt::Display for NotAQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    }
}

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, NotAQuantity> {
        let digits_end = text
            .char_indices()
            .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-'))))
            .map_or(text.len(), |(i, _)| i);
        let (number, suffix) = text.split_at(digits_end);
        let (negative, number) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number.strip_prefix('+').unwrap_or(number)),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || whole.len() + fraction.len() > 30 {
            return Err(NotAQuantity);
        }
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa * 10 + i128::from(digit - b'0');
        }
        let (factor, exponent) = suffix_scale(suffix).ok_or(NotAQuantity)?;
        // millis = mantissa * factor * 10^(exponent + 3 - fraction digits)
        let shift = exponent + 3 - fraction.len() as i32;
        let scaled = mantissa.checked_mul(factor).ok_or(NotAQuantity)?;
        let millis = if shift >= 0 {
            10i128.checked_pow(shift as u32).and_then(|p| scaled.checked_mul(p)).ok_or(NotAQuantity)?
        } else {
            // Below a thousandth: round up, as Kubernetes does.
            let divisor = 10i128.checked_pow((-shift) as u32).unwrap_or(i128::MAX);
            (scaled + divisor - 1) / divisor
        };
        Ok(Quantity { millis: if negative { -millis } else { millis } })
    }

    /// Whole units, rounded up (bytes of memory, whole CPUs).
    pub fn value(&self) -> i64 {
        clamp((self.millis + 999).div_euclid(1000))
    }

    /// Thousandths of a unit (millicores of CPU).
    pub fn milli_value(&self) -> i64 {
        clamp(self.millis)
    }
}

fn clamp(n: i128) -> i64 {
    n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// (multiplier, power of ten) for a suffix.
fn suffix_scale(suffix: &str) -> Option<(i128, i32)> {
    let binary = |power: u32| Some((1024i128.pow(power), 0));
    match suffix {
        "" => Some((1, 0)),
        "n" => Some((1, -9)),
        "u" => Some((1, -6)),
        "m" => Some((1, -3)),
        "k" => Some((1, 3)),
        "M" => Some((1, 6)),
        "G" => Some((1, 9)),
        "T" => Some((1, 12)),
        "P" => Some((1, 15)),
        "E" => Some((1, 18)),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let exponent: i32 = exponent.parse().ok()?;
            (-30..=30).contains(&exponent).then_some((1, exponent))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|_| panic!("{text} parses"))
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("2").milli_value(), 2000);
        assert_eq!(q("0.25").milli_value(), 250);
        assert_eq!(q(".5").milli_value(), 500);
        assert_eq!(q("1500u").milli_value(), 2, "below a millicore rounds up");
    }

    #[test]
    fn memory_forms() {
        assert_eq!(q("128Mi").value(), 128 << 20);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1.5Ki").value(), 1536);
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["", "m", "abc", "1..2", "1Zi", "1e", "--1", "1 Mi", "9999999999999999999999999999999E"] {
            assert_eq!(Quantity::parse(bad), Err(NotAQuantity), "{bad:?}");
        }
        assert!(q("-1").millis < 0, "negative parses; validation refuses it where it matters");
    }
}
