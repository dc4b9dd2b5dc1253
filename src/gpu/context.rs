//! Creating the wgpu instance, adapter and device: the one place that knows about backends.
//!
//! Native honours `WGPU_BACKEND` (vulkan, metal, dx12, gl) and `WGPU_ADAPTER_NAME` (a substring
//! of the adapter name), prefers a discrete GPU, and falls back to any adapter (Mesa lavapipe on
//! a machine without a GPU). The device gets the adapter's real limits — the WebGPU defaults
//! (128 MiB bindings, 256 MiB buffers) are far too small for GPT-2 — and the optional features
//! the kernels can use.

use super::GpuError;

/// Optional features we ask for when the adapter has them.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY
}

/// Adapter, device and queue, plus what we learnt about them.
pub struct DeviceBundle {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
}

/// An instance over `backends`, unless WGPU_BACKEND says otherwise (`with_env` reads it;
/// `Instance::default()` would ignore it).
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc.with_env())
}

#[cfg(not(target_arch = "wasm32"))]
/// Rank adapters: discrete GPU first, then integrated, virtual, other, CPU (lavapipe) last.
fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The adapters of Vulkan / Metal / DX12, or, only when those have none, of every backend:
/// probing GL when a primary adapter exists gains nothing and costs an EGL error line on
/// headless Linux. `WGPU_BACKEND` replaces the choice (`with_env`).
#[cfg(not(target_arch = "wasm32"))]
async fn enumerate() -> Vec<wgpu::Adapter> {
    let adapters = instance(wgpu::Backends::PRIMARY)
        .enumerate_adapters(wgpu::Backends::all())
        .await;
    if !adapters.is_empty() {
        return adapters;
    }
    instance(wgpu::Backends::all())
        .enumerate_adapters(wgpu::Backends::all())
        .await
}

#[cfg(not(target_arch = "wasm32"))]
async fn pick_adapter() -> Result<wgpu::Adapter, GpuError> {
    let mut adapters = enumerate().await;
    if let Ok(want) = std::env::var("WGPU_ADAPTER_NAME") {
        let want = want.to_lowercase();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&want));
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter(format!(
                "no adapter name contains WGPU_ADAPTER_NAME={want:?}; run `wgtune info` to list them"
            )));
        }
    }
    // Stable sort keeps the instance's backend order within one device type.
    adapters.sort_by_key(|a| type_rank(a.get_info().device_type));
    adapters.into_iter().next().ok_or_else(|| {
        GpuError::NoAdapter(
            "no GPU adapter found; on Linux without a GPU install Mesa's lavapipe \
             (apt-get install mesa-vulkan-drivers libvulkan1)"
                .into(),
        )
    })
}

#[cfg(target_arch = "wasm32")]
async fn pick_adapter() -> Result<wgpu::Adapter, GpuError> {
    instance(wgpu::Backends::BROWSER_WEBGPU)
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            GpuError::NoAdapter(format!(
                "this browser offers no WebGPU adapter ({e}); use a recent Chrome or Edge"
            ))
        })
}

/// The adapters wgtune chooses from (for `wgtune info`): those of Vulkan / Metal / DX12, or
/// of GL when those have none (`WGPU_BACKEND=gl` lists GL's).
#[cfg(not(target_arch = "wasm32"))]
pub async fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    enumerate().await.iter().map(|a| a.get_info()).collect()
}

/// Create the device with the adapter's full limits and the optional features it supports.
pub async fn create_device() -> Result<DeviceBundle, GpuError> {
    let adapter = pick_adapter().await?;
    let features = adapter.features() & wanted_features();
    let limits = adapter.limits();
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("wgtune"),
            required_features: features,
            required_limits: limits,
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        })
        .await
        .map_err(|e| GpuError::Device(e.to_string()))?;
    Ok(DeviceBundle {
        adapter,
        device,
        queue,
    })
}
