//! [`NcclCollective`]: the ranks of a CUDA run all-reduce on device memory through NCCL, whether
//! they are threads of one process (`--devices N`) or processes (a launched run).
//!
//! burn 0.21 has NCCL only inside one process, through its `distributed` feature, and that
//! feature makes `Autodiff<B>` require `B: DistributedBackend`, which the CPU backend does not
//! implement: a binary with both backends would not build. So lvface talks to NCCL itself,
//! through cudarc (the bindings cubecl already loads): rank 0 makes the unique id, the other
//! ranks receive it (from the process, or over the launch's authenticated TCP ring, the role
//! torchrun's store plays), and every rank joins one communicator.
//!
//! An all-reduce hands NCCL the tensor's own device memory:
//! 1. the tensor is copied once into a buffer no other tensor shares, and fusion's queue for it
//!    is drained, so that the buffer exists;
//! 2. the GPU is waited for (cubecl's streams are private, so NCCL runs on a stream of its own);
//! 3. NCCL sums in place; this thread polls the stream until the sum is done, and gives up
//!    after [`WAIT`] (or `LVFACE_NCCL_TIMEOUT_S`) with an error that names the rank and says a
//!    peer is lost, instead of blocking forever as a bare NCCL call does when a peer dies.
// Pointers into cubecl's memory and the calls into NCCL are foreign by nature.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::prelude::*;
use burn::tensor::DType;
use burn_cubecl::CubeBackend;
use cubecl::cuda::{CudaDevice, CudaRuntime};
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result as nccl, sys};
use lvface_pfc::{broadcast_bytes, BurnCollective, Collective, PfcError, Traffic, TrafficCounter};

use super::Backend;

/// The backend under burn's fusion layer, whose tensors own the device memory.
type Cube = CubeBackend<CudaRuntime, f32, i32, u8>;

/// How long one collective waits for the other ranks before it reports one of them lost, by
/// default: long enough for a slow rank's checkpoint or evaluation, which the others wait for.
pub const WAIT: Duration = Duration::from_secs(30 * 60);

/// The variable that sets that wait in seconds, for evaluations longer than [`WAIT`].
pub const WAIT_VARIABLE: &str = "LVFACE_NCCL_TIMEOUT_S";

/// [`WAIT`], or what [`WAIT_VARIABLE`] says.
fn wait_limit(rank: usize) -> Result<Duration, PfcError> {
    match std::env::var(WAIT_VARIABLE) {
        Err(_) => Ok(WAIT),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
            _ => Err(failed_with(
                "all_reduce",
                rank,
                format!("{WAIT_VARIABLE}={text:?}: expected a whole number of seconds above 0"),
            )),
        },
    }
}

/// NCCL's unique id of a group: made by rank 0, known to every rank before they join.
#[derive(Clone, Copy)]
pub struct NcclId(sys::ncclUniqueId);

/// The length of a NCCL unique id, in bytes.
pub const ID_BYTES: usize = 128;

impl NcclId {
    /// A fresh id (`ncclGetUniqueId`; this loads libnccl, and on rank 0 opens the socket the
    /// other ranks' NCCL contacts first).
    pub fn new(rank: usize) -> Result<Self, PfcError> {
        nccl::get_uniqueid()
            .map(Self)
            .map_err(|e| failed("ncclGetUniqueId", rank, &e))
    }

    /// Rank 0's fresh id on every rank of a launched group, sent over its TCP ring.
    pub fn share(ring: &BurnCollective<Backend>, device: &CudaDevice) -> Result<Self, PfcError> {
        let rank = ring.rank();
        let mine = match rank {
            0 => Self::new(rank)?.bytes(),
            _ => [0; ID_BYTES],
        };
        let shared = broadcast_bytes::<Backend, _>(ring, &mine, 0, device)?;
        let bytes: [u8; ID_BYTES] = shared.try_into().map_err(|got: Vec<u8>| {
            failed_with(
                "broadcast of the NCCL id",
                rank,
                format!("{} bytes arrived", got.len()),
            )
        })?;
        Ok(Self::from_bytes(bytes))
    }

    fn bytes(&self) -> [u8; ID_BYTES] {
        self.0.internal.map(|c| c as u8)
    }

    fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        Self(sys::ncclUniqueId {
            internal: bytes.map(|b| b as std::ffi::c_char),
        })
    }
}

/// A NCCL communicator. NCCL lets any thread use it, one at a time; the mutex around it in
/// [`NcclCollective`] sees to the "one at a time".
struct Comm(sys::ncclComm_t);

// SAFETY: a NCCL communicator is a handle that any thread may use; every use is under a mutex.
unsafe impl Send for Comm {}

impl Drop for Comm {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialised by `ncclCommInitRank` and is dropped once.
        // Abort rather than destroy: destroy waits for the peers, which may be gone.
        unsafe {
            let _ = nccl::comm_abort(self.0);
        }
    }
}

/// One rank of a group of CUDA ranks, one GPU each, whose all-reduce is NCCL's.
pub struct NcclCollective {
    rank: usize,
    world: usize,
    comm: Mutex<Comm>,
    stream: Arc<CudaStream>,
    wait: Duration,
    traffic: TrafficCounter,
}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCollective")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

impl NcclCollective {
    /// Joins the group of `world` ranks that share `id` as `rank`, on `device`. Blocks until
    /// every rank has joined, so call it from each rank's thread or process at once. NCCL
    /// refuses two ranks of one group on the same GPU.
    pub fn join(
        rank: usize,
        world: usize,
        id: &NcclId,
        device: &CudaDevice,
    ) -> Result<Self, PfcError> {
        let context = CudaContext::new(device.index).map_err(|e| {
            failed_with("cuda context", rank, format!("GPU {}: {e:?}", device.index))
        })?;
        // The primary context of the GPU, which cubecl uses too: its pointers are valid here.
        let stream = context
            .new_stream()
            .map_err(|e| failed_with("cuda stream", rank, format!("{e:?}")))?;
        let wait = wait_limit(rank)?;
        let mut comm = std::mem::MaybeUninit::uninit();
        let (ranks, me) = (as_c_int(world, rank)?, as_c_int(rank, rank)?);
        // SAFETY: `comm` is written by NCCL before it is read; `id` came from ncclGetUniqueId on
        // rank 0, byte for byte.
        let comm = unsafe {
            nccl::comm_init_rank(comm.as_mut_ptr(), ranks, id.0, me)
                .map_err(|e| failed("ncclCommInitRank", rank, &e))?;
            comm.assume_init()
        };
        Ok(Self {
            rank,
            world,
            comm: Mutex::new(Comm(comm)),
            stream,
            wait,
            traffic: TrafficCounter::default(),
        })
    }

    /// Sums `buffer` over the ranks, in place, and waits (at most `self.wait`) until it is done.
    fn all_reduce_in_place(
        &self,
        buffer: &burn_cubecl::tensor::CubeTensor<CudaRuntime>,
    ) -> Result<(), PfcError> {
        let rank = self.rank;
        let dtype = match buffer.dtype {
            DType::F32 => sys::ncclDataType_t::ncclFloat32,
            DType::BF16 => sys::ncclDataType_t::ncclBfloat16,
            DType::F16 => sys::ncclDataType_t::ncclFloat16,
            other => {
                return Err(failed_with(
                    "all_reduce",
                    rank,
                    format!("NCCL sums f32, bf16 and f16 tensors here, not {other:?}"),
                ))
            }
        };
        let count = buffer.meta.shape.num_elements();
        // Everything queued for the GPU, the tensor's values included, is done: cubecl's queue
        // is flushed by its sync, and whichever of its streams fusion ran the kernels on is
        // idle once the whole context is (the primary context, shared with this collective).
        cubecl::future::block_on(buffer.client.sync())
            .map_err(|e| failed_with("all_reduce", rank, format!("waiting for the GPU: {e:?}")))?;
        self.stream
            .context()
            .synchronize()
            .map_err(|e| failed_with("all_reduce", rank, format!("waiting for the GPU: {e:?}")))?;
        let resource = buffer
            .client
            .get_resource(buffer.handle.clone())
            .map_err(|e| failed_with("all_reduce", rank, format!("the tensor's memory: {e:?}")))?;
        let (ptr, bytes) = (resource.resource().ptr, resource.resource().size);
        let wanted = (count * buffer.dtype.size()) as u64;
        if bytes < wanted {
            return Err(failed_with(
                "all_reduce",
                rank,
                format!("the buffer holds {bytes} bytes, {wanted} needed"),
            ));
        }
        let comm = self.comm.lock().map_err(|_| {
            failed_with("all_reduce", rank, "an earlier all-reduce panicked".into())
        })?;
        // SAFETY: `ptr` is the device memory of `buffer` (alive while `resource` is held), at
        // least `count` elements of `dtype`, not shared with another tensor, and idle (cubecl's
        // stream was synchronised); NCCL reads and writes it on `self.stream` only.
        unsafe {
            nccl::all_reduce(
                ptr as *const std::ffi::c_void,
                ptr as *mut std::ffi::c_void,
                count,
                dtype,
                sys::ncclRedOp_t::ncclSum,
                comm.0,
                self.stream.cu_stream() as sys::cudaStream_t,
            )
            .map_err(|e| failed("ncclAllReduce", rank, &e))?;
        }
        self.wait_for_stream(&comm)?;
        drop(resource);
        Ok(())
    }

    /// Polls the stream until NCCL's work on it is done, NCCL reports an error, or `self.wait`
    /// has passed; in the last two cases the communicator is aborted, so that no rank waits on.
    fn wait_for_stream(&self, comm: &Comm) -> Result<(), PfcError> {
        let start = Instant::now();
        loop {
            // SAFETY: the stream belongs to this collective and outlives the call.
            let state = unsafe { cudarc::driver::sys::cuStreamQuery(self.stream.cu_stream()) };
            match state {
                cudarc::driver::sys::CUresult::CUDA_SUCCESS => return Ok(()),
                cudarc::driver::sys::CUresult::CUDA_ERROR_NOT_READY => {}
                other => {
                    return Err(failed_with(
                        "all_reduce",
                        self.rank,
                        format!("the NCCL stream failed: {other:?}"),
                    ))
                }
            }
            let mut async_error = sys::ncclResult_t::ncclSuccess;
            // SAFETY: `comm` is a live communicator; NCCL writes one result.
            unsafe { sys::ncclCommGetAsyncError(comm.0, &mut async_error) };
            if !matches!(
                async_error,
                sys::ncclResult_t::ncclSuccess | sys::ncclResult_t::ncclInProgress
            ) {
                return Err(failed(
                    "all_reduce",
                    self.rank,
                    &nccl::NcclError(async_error),
                ));
            }
            if start.elapsed() > self.wait {
                return Err(PfcError::Collective {
                    op: "all_reduce",
                    rank: self.rank,
                    reason: format!(
                        "NCCL did not finish within {} s ({WAIT_VARIABLE}): another rank of the \
                         {} is lost or out of step; resume the run from its latest checkpoint",
                        self.wait.as_secs(),
                        self.world
                    ),
                });
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

impl Collective<Backend> for NcclCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum<const D: usize>(
        &self,
        tensor: Tensor<Backend, D>,
    ) -> lvface_pfc::Result<Tensor<Backend, D>> {
        let dims = tensor.dims();
        let len = tensor.shape().num_elements();
        self.traffic.record(len);
        // A fresh 1-D tensor: its memory is contiguous, unpitched and this tensor's alone, so
        // summing into it in place changes no other tensor.
        let fresh = tensor.reshape([len]).add_scalar(0.0);
        let keep = fresh.clone();
        let primitive = fresh.into_primitive().tensor();
        let client = primitive.client.clone();
        // `keep` still refers to the tensor, so fusion hands out its memory and keeps it.
        let buffer = client.resolve_tensor_float::<Cube>(primitive);
        self.all_reduce_in_place(&buffer)?;
        drop(buffer);
        Ok(keep.reshape(dims))
    }

    fn traffic(&self) -> Traffic {
        self.traffic.get()
    }
}

/// NCCL speaks `int`.
fn as_c_int(value: usize, rank: usize) -> Result<std::ffi::c_int, PfcError> {
    value
        .try_into()
        .map_err(|_| failed_with("ncclCommInitRank", rank, format!("{value} is too large")))
}

fn failed(op: &'static str, rank: usize, error: &nccl::NcclError) -> PfcError {
    // SAFETY: NCCL returns a static, NUL-terminated string for every result code.
    let text = unsafe { CStr::from_ptr(sys::ncclGetErrorString(error.0)) };
    failed_with(op, rank, format!("NCCL: {}", text.to_string_lossy()))
}

fn failed_with(op: &'static str, rank: usize, reason: String) -> PfcError {
    PfcError::Collective { op, rank, reason }
}
