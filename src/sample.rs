//! Choosing the next token from logits: greedy, or sampling with temperature, top-k and
//! top-p applied in Hugging Face's order (temperature → top-k → top-p).

/// Sampling settings; `temperature == 0` means greedy.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1 = all).
    pub top_p: f32,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

/// A small seeded generator (SplitMix64): the same seed gives the same text.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Index of the largest logit (the first one on ties, as torch.argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The next token under `s`.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut Rng) -> u32 {
    if s.temperature <= 0.0 {
        return argmax(logits);
    }
    // (logit / temperature, id), most likely first.
    let mut cand: Vec<(f64, u32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 / s.temperature as f64, i as u32))
        .collect();
    cand.sort_by(|a, b| b.0.total_cmp(&a.0));
    if s.top_k > 0 {
        cand.truncate(s.top_k.max(1));
    }
    let max = cand[0].0;
    let mut probs: Vec<f64> = cand.iter().map(|(l, _)| (l - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if s.top_p < 1.0 {
        // Keep tokens until the cumulative probability reaches top_p (always at least one).
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= s.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        cand.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let mut u = rng.next_f64();
    for (p, (_, id)) in probs.iter().zip(&cand) {
        if u < *p {
            return *id;
        }
        u -= p;
    }
    cand[cand.len() - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, -1.0]), 1);
        let s = Sampling::default();
        assert_eq!(sample(&[1.0, 5.0, 2.0], &s, &mut Rng::new(0)), 1);
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.5, 2.0, 1.9, -3.0];
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let k1 = Sampling {
                temperature: 1.0,
                top_k: 1,
                top_p: 1.0,
            };
            assert_eq!(sample(&logits, &k1, &mut rng), 1);
            let p0 = Sampling {
                temperature: 1.0,
                top_k: 0,
                top_p: 1e-6,
            };
            assert_eq!(sample(&logits, &p0, &mut rng), 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let logits = [0.0f32, (3.0f32).ln()]; // probabilities 1/4, 3/4
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        };
        let mut rng = Rng::new(42);
        let ones = (0..10_000)
            .filter(|_| sample(&logits, &s, &mut rng) == 1)
            .count();
        assert!((ones as f64 / 10_000.0 - 0.75).abs() < 0.02, "{ones}");
        let a: Vec<u32> = (0..20)
            .map({
                let mut r = Rng::new(1);
                move |_| sample(&logits, &s, &mut r)
            })
            .collect();
        let b: Vec<u32> = (0..20)
            .map({
                let mut r = Rng::new(1);
                move |_| sample(&logits, &s, &mut r)
            })
            .collect();
        assert_eq!(a, b);
    }
}
