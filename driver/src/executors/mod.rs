//! Executors as remote processes: the registry of registered executors and
//! their epochs, the `ExecutorControl` service they register with, the
//! assignment of state partitions, and [`RemoteRunner`], the
//! [`TaskRunner`](crate::TaskRunner) that sends tasks to them over gRPC.

pub mod assignment;
pub mod control;
pub mod operators;
pub mod registry;
pub mod remote;

pub use assignment::assign;
pub use control::{always_leader, ControlService, LeaderFn, LeaderState};
pub use registry::{
    EpochAllocator, ExecutorInfo, ExecutorRegistry, MemoryEpochs, Registration, RegistryError,
    RegistryOptions,
};
pub use remote::{RemoteOptions, RemoteRunner};
