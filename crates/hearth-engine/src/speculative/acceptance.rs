//! The rules that decide what a verification step keeps: which guessed tokens are accepted,
//! and how many tokens to guess next.
//!
//! Acceptance is speculative sampling's rejection rule (Leviathan et al., 2023; Chen et al.,
//! 2023): with target probabilities `p` and the guesser's `q`, a guessed token `x` is kept with
//! probability `min(1, p(x)/q(x))`; on a rejection the token is drawn from the residual
//! `max(0, p − q)`, normalised. Whatever `q` is, the token that comes out follows `p` exactly,
//! so speculation changes the speed and never the answer's distribution.
//!
//! Both of Hearth's guessers are deterministic (n-gram lookup, and the draft model's most
//! likely token), so `q` puts all its mass on `x`: the rule becomes "keep `x` with probability
//! `p(x)`, else draw from `p` without `x`", which is exactly "draw `y` from `p` with the
//! request's own sampler chain and keep the guess if `y == x`, else emit `y`". That is what
//! the engine does (`engine::step`): it draws every token with the same sampler it would use
//! without speculation. The tests prove the general rule, and that it reduces to that.

/// Whether the guessed token `x` is kept, given a uniform draw `u` in `[0, 1)`.
pub fn accepts(p: &[f64], q: &[f64], x: usize, u: f64) -> bool {
    let (px, qx) = (p[x], q[x]);
    qx <= 0.0 || u * qx < px
}

/// The distribution a rejected position draws from: `max(0, p − q)` normalised (`p` itself in
/// the degenerate case `p == q`, where no rejection can happen).
pub fn residual(p: &[f64], q: &[f64]) -> Vec<f64> {
    let mut rest: Vec<f64> = p.iter().zip(q).map(|(p, q)| (p - q).max(0.0)).collect();
    let total: f64 = rest.iter().sum();
    if total <= 0.0 {
        return p.to_vec();
    }
    rest.iter_mut().for_each(|r| *r /= total);
    rest
}

/// The index that a uniform `u` in `[0, 1)` picks from a distribution.
pub fn draw(distribution: &[f64], u: f64) -> usize {
    let mut below = 0.0;
    for (index, probability) in distribution.iter().enumerate() {
        below += probability;
        if u < below {
            return index;
        }
    }
    distribution.len().saturating_sub(1)
}

/// One verified position: the guess `x` kept, or the token drawn in its place.
pub fn verify_position(p: &[f64], q: &[f64], x: usize, u_accept: f64, u_draw: f64) -> usize {
    if accepts(p, q, x, u_accept) {
        x
    } else {
        draw(&residual(p, q), u_draw)
    }
}

/// How many tokens to guess next, from how the last verification went: two more after all
/// were kept, one fewer after a rejection (the schedule of Hugging Face's assisted generation),
/// within `1..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DraftLength {
    current: u32,
    max: u32,
}

impl DraftLength {
    pub fn new(max: u32) -> Self {
        let max = max.max(1);
        Self {
            current: max.min(4),
            max,
        }
    }

    pub fn get(self) -> usize {
        self.current as usize
    }

    /// Records a verification of `drafted` guesses of which `accepted` were kept.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        self.current = if accepted >= drafted {
            (self.current + 2).min(self.max)
        } else {
            self.current.saturating_sub(1).max(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: a fixed-seed uniform source, so the statistical test is deterministic.
    struct Uniform(u64);

    impl Uniform {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    const CASES: &[(&[f64], &[f64])] = &[
        (&[0.5, 0.3, 0.2], &[0.2, 0.2, 0.6]),
        (&[0.1, 0.1, 0.1, 0.7], &[0.7, 0.1, 0.1, 0.1]),
        (&[0.25, 0.25, 0.25, 0.25], &[1.0, 0.0, 0.0, 0.0]),
        (&[0.6, 0.0, 0.4], &[0.3, 0.3, 0.4]),
        (&[0.2, 0.8], &[0.2, 0.8]),
    ];

    /// The exact output distribution: sum over guesses x ~ q of
    /// q(x)·[accept x] + q(x)·(1 − accept(x))·residual.
    fn exact_output(p: &[f64], q: &[f64]) -> Vec<f64> {
        let rest = residual(p, q);
        let mut out = vec![0.0; p.len()];
        for x in 0..p.len() {
            let keep = if q[x] > 0.0 {
                (p[x] / q[x]).min(1.0)
            } else {
                1.0
            };
            out[x] += q[x] * keep;
            for (y, r) in rest.iter().enumerate() {
                out[y] += q[x] * (1.0 - keep) * r;
            }
        }
        out
    }

    #[test]
    fn the_rule_gives_the_target_distribution_exactly() {
        for (p, q) in CASES {
            let out = exact_output(p, q);
            for (got, want) in out.iter().zip(p.iter()) {
                assert!((got - want).abs() < 1e-12, "p {p:?} q {q:?}: {out:?}");
            }
        }
    }

    /// Pearson's chi-square of `counts` against `p` (cells with p = 0 must be empty).
    fn chi_square(counts: &[u64], p: &[f64], samples: u64) -> f64 {
        counts
            .iter()
            .zip(p)
            .map(|(&count, &probability)| {
                if probability == 0.0 {
                    assert_eq!(count, 0, "a token of probability 0 was emitted");
                    0.0
                } else {
                    let expected = probability * samples as f64;
                    (count as f64 - expected).powi(2) / expected
                }
            })
            .sum()
    }

    /// The 0.999 quantile of chi-square with 1, 2 or 3 degrees of freedom.
    fn critical(degrees: usize) -> f64 {
        [10.83, 13.82, 16.27][degrees - 1]
    }

    #[test]
    fn sampled_verifications_follow_the_target_distribution() {
        let samples = 200_000u64;
        let mut uniform = Uniform(17);
        for (p, q) in CASES {
            let mut counts = vec![0u64; p.len()];
            for _ in 0..samples {
                let x = draw(q, uniform.next());
                let token = verify_position(p, q, x, uniform.next(), uniform.next());
                counts[token] += 1;
            }
            let degrees = p.iter().filter(|&&v| v > 0.0).count() - 1;
            let statistic = chi_square(&counts, p, samples);
            assert!(
                statistic < critical(degrees),
                "p {p:?} q {q:?}: chi-square {statistic:.2} with {degrees} df: {counts:?}"
            );
        }
    }

    #[test]
    fn a_wrong_target_fails_the_same_check() {
        // The check can fail: the guesser's own distribution is far from the target's.
        let (p, q): (&[f64], &[f64]) = (&[0.5, 0.3, 0.2], &[0.2, 0.2, 0.6]);
        let samples = 200_000u64;
        let mut uniform = Uniform(17);
        let mut counts = vec![0u64; 3];
        for _ in 0..samples {
            counts[draw(q, uniform.next())] += 1;
        }
        assert!(chi_square(&counts, p, samples) > critical(2));
    }

    #[test]
    fn a_deterministic_guess_is_sample_then_compare() {
        // q puts all its mass on x: the rule keeps x with probability p(x) and otherwise
        // draws from p without x, which is what drawing y ~ p and comparing it with x gives.
        let p = [0.1, 0.6, 0.3];
        for x in 0..p.len() {
            let mut q = [0.0; 3];
            q[x] = 1.0;
            let rest = residual(&p, &q);
            assert_eq!(rest[x], 0.0);
            for y in 0..p.len() {
                let through_rule = if y == x { p[x] } else { (1.0 - p[x]) * rest[y] };
                assert!((through_rule - p[y]).abs() < 1e-12, "x {x} y {y}");
            }
        }
    }

    #[test]
    fn the_draft_length_grows_on_success_and_shrinks_on_rejection() {
        let mut length = DraftLength::new(8);
        assert_eq!(length.get(), 4);
        length.record(4, 4);
        assert_eq!(length.get(), 6);
        length.record(6, 6);
        length.record(8, 8);
        assert_eq!(length.get(), 8, "never above the bound");
        length.record(8, 2);
        assert_eq!(length.get(), 7);
        for _ in 0..10 {
            length.record(3, 0);
        }
        assert_eq!(length.get(), 1, "never below one");
        length.record(0, 0);
        assert_eq!(length.get(), 1, "a step without guesses changes nothing");
        assert_eq!(DraftLength::new(0).get(), 1);
    }
}
