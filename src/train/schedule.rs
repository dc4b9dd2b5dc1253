//! Learning-rate schedules as transformers defines them (`get_scheduler`): linear decay to 0,
//! cosine to 0, or constant, each after a linear warmup from 0.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    Linear,
    Cosine,
    Constant,
}

impl std::fmt::Display for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Linear => "linear",
            Self::Cosine => "cosine",
            Self::Constant => "constant",
        })
    }
}

impl std::str::FromStr for Scheduler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            "constant" => Ok(Self::Constant),
            _ => Err(format!(
                "unknown scheduler {s:?}: use linear, cosine or constant"
            )),
        }
    }
}

/// Learning rate of optimizer step `step` (0-based, as the scheduler's counter when that step
/// runs) out of `total`, peak `lr`, `warmup` warmup steps.
pub fn lr_at(s: Scheduler, lr: f32, step: usize, warmup: usize, total: usize) -> f32 {
    if step < warmup {
        return lr * step as f32 / warmup.max(1) as f32;
    }
    let factor = match s {
        Scheduler::Constant => 1.0,
        Scheduler::Linear => ((total.saturating_sub(step)) as f64
            / (total.saturating_sub(warmup)).max(1) as f64)
            .max(0.0),
        Scheduler::Cosine => {
            let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
            (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
        }
    };
    (lr as f64 * factor) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_transformers() {
        // warmup 2 of 10: 0, lr/2, then decay
        assert_eq!(lr_at(Scheduler::Linear, 1.0, 0, 2, 10), 0.0);
        assert_eq!(lr_at(Scheduler::Linear, 1.0, 1, 2, 10), 0.5);
        assert_eq!(lr_at(Scheduler::Linear, 1.0, 2, 2, 10), 1.0);
        assert_eq!(lr_at(Scheduler::Linear, 1.0, 6, 2, 10), 0.5);
        assert!((lr_at(Scheduler::Cosine, 1.0, 6, 2, 10) - 0.5).abs() < 1e-6);
        assert!(lr_at(Scheduler::Cosine, 1.0, 10, 2, 10).abs() < 1e-6);
        assert_eq!(lr_at(Scheduler::Constant, 2e-4, 9, 0, 10), 2e-4);
    }
}
