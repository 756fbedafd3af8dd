//! How long a loaded model stays loaded when unused: the server's idle unload, or what a
//! request asked for with Ollama's `keep_alive` (a Go duration such as `"5m"`, `"1h30m"`,
//! `"0"`, or a number of seconds; negative means for ever). The last request's wish holds
//! until another request changes it, as in Ollama.

use std::time::Duration;

/// How long a model stays loaded when unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Until the server stops (or another model needs the room).
    Forever,
    /// Unloaded this long after its last use (zero: as soon as it is idle).
    For(Duration),
}

/// The longest `keep_alive` taken as a duration; longer is for ever (no timer overflows).
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl KeepAlive {
    /// The idle time after which a model is unloaded (`None`: never), given the server's own
    /// setting and the model's `keep_alive` if a request set one.
    pub fn idle_limit(server: Option<Duration>, model: Option<KeepAlive>) -> Option<Duration> {
        match model {
            None => server,
            Some(KeepAlive::Forever) => None,
            Some(KeepAlive::For(duration)) => Some(duration),
        }
    }

    /// A number of seconds (negative: for ever).
    pub fn from_seconds(seconds: f64) -> Result<KeepAlive, String> {
        if !seconds.is_finite() {
            return Err("must be a finite number of seconds".into());
        }
        if seconds < 0.0 {
            return Ok(KeepAlive::Forever);
        }
        match Duration::try_from_secs_f64(seconds) {
            Ok(duration) if duration <= MAX_KEEP_ALIVE => Ok(KeepAlive::For(duration)),
            _ => Ok(KeepAlive::Forever),
        }
    }

    /// A Go duration (`"5m"`, `"1h30m"`, `"300ms"`, `"-1m"`) or a bare number of seconds.
    pub fn parse(text: &str) -> Result<KeepAlive, String> {
        let text = text.trim();
        if let Ok(seconds) = text.parse::<f64>() {
            return Self::from_seconds(seconds);
        }
        let (negative, mut rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let invalid =
            || format!("{text:?} is not a duration (such as \"5m\", \"1h30m\", \"0\" or \"-1\")");
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut seconds = 0.0f64;
        while !rest.is_empty() {
            let number_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(invalid)?;
            let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
            rest = &rest[number_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_end] {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 1e-3,
                "us" | "µs" => 1e-6,
                "ns" => 1e-9,
                _ => return Err(invalid()),
            };
            seconds += number * scale;
            rest = &rest[unit_end..];
        }
        Self::from_seconds(if negative { -seconds } else { seconds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_seconds_parse_and_negative_is_forever() {
        let secs = |s| KeepAlive::For(Duration::from_secs(s));
        assert_eq!(KeepAlive::parse("5m").unwrap(), secs(300));
        assert_eq!(KeepAlive::parse("1h30m").unwrap(), secs(5400));
        assert_eq!(KeepAlive::parse("10s").unwrap(), secs(10));
        assert_eq!(KeepAlive::parse("0").unwrap(), secs(0));
        assert_eq!(KeepAlive::parse("30").unwrap(), secs(30));
        assert_eq!(
            KeepAlive::parse("1.5s").unwrap(),
            KeepAlive::For(Duration::from_millis(1500))
        );
        assert_eq!(KeepAlive::parse("-1").unwrap(), KeepAlive::Forever);
        assert_eq!(KeepAlive::parse("-1m").unwrap(), KeepAlive::Forever);
        assert_eq!(KeepAlive::parse("99999999h").unwrap(), KeepAlive::Forever);
        for bad in ["", "5 minutes", "m", "5x", "1h-3m", "--1"] {
            assert!(KeepAlive::parse(bad).is_err(), "{bad:?}");
        }
        assert!(KeepAlive::from_seconds(f64::NAN).is_err());
    }

    #[test]
    fn a_requests_keep_alive_overrides_the_servers_idle_unload() {
        let five = Some(Duration::from_secs(300));
        assert_eq!(KeepAlive::idle_limit(five, None), five);
        assert_eq!(KeepAlive::idle_limit(five, Some(KeepAlive::Forever)), None);
        assert_eq!(
            KeepAlive::idle_limit(None, Some(KeepAlive::For(Duration::ZERO))),
            Some(Duration::ZERO)
        );
    }
}
