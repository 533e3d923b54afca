//! Value parsers for numeric options, so that clap refuses a bad number (NaN, inf, negative,
//! zero, absurdly large) with a message naming the option, before anything is attached.

/// The longest duration or interval accepted: a year. Longer values are almost always typos
/// (`1e20`), and timers cannot represent some of them.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A number of seconds: finite, above zero, at most [`MAX_SECONDS`]. Fractions are fine.
pub fn seconds(text: &str) -> Result<f64, String> {
    let s: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !s.is_finite() || s <= 0.0 {
        return Err(format!(
            "must be a positive, finite number of seconds, not `{text}`"
        ));
    }
    if s > MAX_SECONDS {
        return Err(format!(
            "`{text}` seconds is more than a year ({MAX_SECONDS} s)"
        ));
    }
    // Below a microsecond a timer cannot tell it from zero.
    if s < 1e-6 {
        return Err(format!("`{text}` seconds is less than a microsecond"));
    }
    Ok(s)
}

/// A count of at least one.
pub fn at_least_one<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    let n: T = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number in range"))?;
    if n < T::from(1) {
        return Err(format!("must be at least 1, not `{text}`"));
    }
    Ok(n)
}

/// Events per second: finite, above zero, at most a million.
pub fn rate(text: &str) -> Result<f64, String> {
    let r: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a rate"))?;
    if !r.is_finite() || r <= 0.0 || r > 1e6 {
        return Err(format!(
            "must be a rate above 0 and at most 1000000 per second, not `{text}`"
        ));
    }
    Ok(r)
}

/// A percentage of the machine's CPU (`--max-overhead`): above 0, at most 100.
pub fn percent(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if !p.is_finite() || p <= 0.0 || p > 100.0 {
        return Err(format!(
            "must be a percentage above 0 and at most 100, not `{text}`"
        ));
    }
    Ok(p)
}

/// A fraction of time: above 0, at most 1.
pub fn fraction(text: &str) -> Result<f64, String> {
    let f: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a fraction"))?;
    if !f.is_finite() || f <= 0.0 || f > 1.0 {
        return Err(format!("must be above 0 and at most 1, not `{text}`"));
    }
    Ok(f)
}

/// Mebibytes of the event queue: 1 to 4096.
pub fn queue_mb(text: &str) -> Result<usize, String> {
    let n: usize = at_least_one(text)?;
    if n > 4096 {
        return Err(format!("at most 4096 MiB, not `{text}`"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_refuse_what_no_timer_can_mean() {
        for bad in [
            "nan", "NaN", "inf", "-inf", "-1", "0", "1e300", "1e20", "", "x", "1e-9",
        ] {
            assert!(seconds(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(seconds("0.5"), Ok(0.5));
        assert_eq!(seconds("3"), Ok(3.0));
        assert_eq!(seconds("31536000"), Ok(MAX_SECONDS));
    }

    #[test]
    fn counts_start_at_one() {
        assert!(at_least_one::<u64>("0").is_err());
        assert!(at_least_one::<u64>("-3").is_err());
        assert!(at_least_one::<u32>("99999999999").is_err());
        assert_eq!(at_least_one::<u64>("7"), Ok(7));
    }

    #[test]
    fn rates_are_finite_and_positive() {
        for bad in ["nan", "inf", "0", "-5", "1e7"] {
            assert!(rate(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(rate("200"), Ok(200.0));
    }

    #[test]
    fn the_queue_is_between_one_and_4096_mib() {
        assert!(queue_mb("0").is_err());
        assert!(queue_mb("5000").is_err());
        assert_eq!(queue_mb("64"), Ok(64));
    }
}
