//! What a GPT-2 block is: its Linear (Conv1D) modules, keyed by the Hugging Face module
//! names ([`Module`]), and its weights ([`Block`]: two LayerNorms and the four Linears, paired
//! with their modules by [`Block::linear`]). The one function that records a block is
//! `Gpt2::record_block`, in `forward`.

use crate::gpu::{Commands, Tensor};
use crate::kernels::layernorm::LayerNorm;
use crate::kernels::matmul::{Weight, linear_forward};

/// The Linear modules LoRA adapts, of both families, keyed by their Hugging Face names:
/// GPT-2's four Conv1D ([`Module::GPT2`]) and Llama's seven nn.Linear ([`Module::LLAMA`]),
/// each family in PEFT's module order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    CAttn,
    AttnProj,
    CFc,
    MlpProj,
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl Module {
    pub const GPT2: [Module; 4] = [
        Module::CAttn,
        Module::AttnProj,
        Module::CFc,
        Module::MlpProj,
    ];

    pub const LLAMA: [Module; 7] = [
        Module::QProj,
        Module::KProj,
        Module::VProj,
        Module::OProj,
        Module::GateProj,
        Module::UpProj,
        Module::DownProj,
    ];

    /// Whether it is one of GPT-2's modules.
    pub fn is_gpt2(self) -> bool {
        (self as usize) < Module::GPT2.len()
    }

    /// Its index within its family's list (what a block's `linears` is indexed by).
    pub fn index(self) -> usize {
        if self.is_gpt2() {
            self as usize
        } else {
            self as usize - Module::GPT2.len()
        }
    }

    /// Path inside a block, as in Hugging Face names.
    pub fn path(self) -> &'static str {
        match self {
            Module::CAttn => "attn.c_attn",
            Module::AttnProj => "attn.c_proj",
            Module::CFc => "mlp.c_fc",
            Module::MlpProj => "mlp.c_proj",
            Module::QProj => "self_attn.q_proj",
            Module::KProj => "self_attn.k_proj",
            Module::VProj => "self_attn.v_proj",
            Module::OProj => "self_attn.o_proj",
            Module::GateProj => "mlp.gate_proj",
            Module::UpProj => "mlp.up_proj",
            Module::DownProj => "mlp.down_proj",
        }
    }

    /// (in, out) features of a GPT-2 module for embedding width `c` (Llama's come from its
    /// config: `model::llama::module_dims`).
    pub fn dims(self, c: usize) -> (usize, usize) {
        match self {
            Module::CAttn => (c, 3 * c),
            Module::AttnProj => (c, c),
            Module::CFc => (c, 4 * c),
            Module::MlpProj => (4 * c, c),
            _ => panic!("{self:?} is a Llama module: its shape comes from llama::module_dims"),
        }
    }

    /// Its full name in the base model (`transformer.h.{layer}.attn.c_attn`,
    /// `model.layers.{layer}.self_attn.q_proj`), as PEFT matches and saves it.
    pub fn full_name(self, layer: usize) -> String {
        if self.is_gpt2() {
            format!("transformer.h.{layer}.{}", self.path())
        } else {
            format!("model.layers.{layer}.{}", self.path())
        }
    }
}

/// A Conv1D layer `y = x·W (+ b)` with `W (in,out)` (Llama's nn.Linear weights are stored
/// so too, transposed when loaded; most of them have no bias).
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    pub k_in: usize,
    pub n_out: usize,
    /// ‖W‖_F of the checkpoint's weight, before any quantization: what `inspect` compares a
    /// LoRA update's norm with (the GPU copy may be NF4).
    pub weight_norm: f64,
}

impl Linear {
    /// Record `y (rows, out) (+)= x·W + b`.
    pub fn record(&self, cmd: &mut Commands, y: &Tensor, x: &Tensor, rows: usize, acc: bool) {
        let (w, b) = (&self.weight, self.bias.as_ref());
        linear_forward(cmd, y, x, w, b, rows, self.k_in, self.n_out, acc);
    }

    pub fn size_bytes(&self) -> u64 {
        self.weight.size_bytes() + self.bias.as_ref().map_or(0, Tensor::size_bytes)
    }
}

/// One transformer block's weights.
pub struct Block {
    pub ln_1: LayerNorm,
    pub ln_2: LayerNorm,
    /// The Linears, indexed by [`Module`]: see [`Self::linear`].
    pub linears: [Linear; 4],
}

impl Block {
    /// The Linear of module `m`: the one table that pairs the modules LoRA adapts with the
    /// block's weights.
    pub fn linear(&self, m: Module) -> &Linear {
        &self.linears[m.index()]
    }

    pub fn size_bytes(&self) -> u64 {
        let linears: u64 = self.linears.iter().map(Linear::size_bytes).sum();
        self.ln_1.size_bytes() + self.ln_2.size_bytes() + linears
    }
}
