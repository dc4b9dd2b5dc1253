//! The sampling settings of the Try section (the training settings are the core's
//! `TrainSettings`, which the Settings section edits as they are).

/// How Try samples (`wgtune generate`'s flags of the same names).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleSettings {
    pub max_new_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
    /// Prompt with the raw text, not as a user message of the model's chat template
    /// (`--ignore-chat-template`).
    #[serde(default)]
    pub ignore_chat_template: bool,
}

impl Default for SampleSettings {
    fn default() -> Self {
        Self {
            max_new_tokens: 48,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 42,
            ignore_chat_template: false,
        }
    }
}
