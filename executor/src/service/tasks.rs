//! `ExecutorService`: the leader's tasks, fenced by epoch, run on the
//! blocking pool; and the shuffle blocks other executors fetch.

use super::fence::Fence;
use super::status::{missing_shuffle, task_panicked};
use crate::metrics::ExecutorMetrics;
use crate::operators::aggregate::ShuffleBlock;
use crate::runtime::Executor;
use crate::shuffle::{ipc, ShuffleKey};
use crate::state::Tenure;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::{debug, instrument, warn};
use weir_proto::failpoint;
use weir_proto::pb::executor_service_client::ExecutorServiceClient;
use weir_proto::pb::executor_service_server::ExecutorService;
use weir_proto::pb::{self, FetchShuffleRequest, ShuffleChunk};
use weir_security::{Identity, Transport};

/// The largest shuffle block a stage-B task fetches from another executor.
pub const MAX_SHUFFLE_BLOCK_BYTES: usize = 1 << 30;
/// Channels to other executors kept at once.
const MAX_PEER_CHANNELS: usize = 1024;

/// The executor's gRPC service.
pub struct TaskService {
    executor: Arc<Executor>,
    fence: Arc<Fence>,
    /// Channels to other executors, by executor id and address.
    peers: Mutex<HashMap<(String, String), Channel>>,
    transport: Transport,
    metrics: ExecutorMetrics,
}

impl TaskService {
    /// A service running tasks on `executor`, fenced by `fence`, dialing
    /// other executors for shuffle blocks with `transport`, timing tasks
    /// in `metrics`.
    pub fn new(
        executor: Arc<Executor>,
        fence: Arc<Fence>,
        transport: Transport,
        metrics: ExecutorMetrics,
    ) -> Self {
        TaskService {
            executor,
            fence,
            peers: Mutex::new(HashMap::new()),
            transport,
            metrics,
        }
    }

    fn check(&self, epoch: u64, what: &str) -> Result<(), Status> {
        self.fence.check(epoch).inspect_err(|s| {
            warn!(
                request_epoch = epoch,
                task = what,
                reason = s.message(),
                "rejected a task of a stale epoch"
            );
        })
    }

    /// What a task of `epoch` may change in the state store: nothing once
    /// the epoch loses its lease.
    fn tenure(&self, epoch: u64) -> Tenure {
        Tenure::new(self.fence.clone(), epoch)
    }

    /// Runs a task on the blocking pool if `epoch` is current before and
    /// after: a result computed across an epoch change is not returned.
    async fn run<T: Send + 'static>(
        &self,
        epoch: u64,
        (what, job): (&'static str, &str),
        f: impl FnOnce(&Executor) -> Result<T, crate::ExecError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        self.check(epoch, what)?;
        let started = std::time::Instant::now();
        let executor = self.executor.clone();
        let out = tokio::task::spawn_blocking(move || f(&executor))
            .await
            .map_err(|e| task_panicked(what, e))?
            .map_err(|e| {
                debug!(epoch, task = what, error = %e, "task failed");
                Status::from(&e)
            })?;
        self.check(epoch, what)?;
        self.metrics.task(job, what, started);
        Ok(Response::new(out))
    }

    /// A client of executor `id` at `address`; with TLS its certificate
    /// must name `id` (the location came over the wire).
    fn peer(&self, id: &str, address: &str) -> Result<ExecutorServiceClient<Channel>, String> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let key = (id.to_string(), address.to_string());
        let channel = match peers.get(&key) {
            Some(c) => c.clone(),
            None => {
                let c = self
                    .transport
                    .channel_to(address, Some(Identity::Executor(id.to_string())), |e| {
                        e.connect_timeout(Duration::from_secs(1))
                            .timeout(Duration::from_secs(30))
                    })
                    .map_err(|e| format!("bad executor address {address}: {e}"))?;
                if peers.len() >= MAX_PEER_CHANNELS {
                    // Executors come and go on new ports; keep the map
                    // bounded by starting over.
                    peers.clear();
                }
                peers.insert(key, c.clone());
                c
            }
        };
        Ok(ExecutorServiceClient::new(channel)
            .max_decoding_message_size(2 * ipc::MAX_CHUNK_BYTES + 1024))
    }

    /// Fetches one shuffle block from `location`, at most
    /// [`MAX_SHUFFLE_BLOCK_BYTES`].
    async fn fetch_remote(
        &self,
        location: &pb::ShuffleLocation,
        request: FetchShuffleRequest,
        stride: usize,
    ) -> Result<ShuffleBlock, String> {
        let address = &location.executor_address;
        let mut client = self.peer(&location.executor_id, address)?;
        let mut stream = client
            .fetch_shuffle(request)
            .await
            .map_err(|s| format!("fetch from {address} failed: {}", s.message()))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| format!("fetch from {address} failed: {}", s.message()))?
        {
            if bytes.len() + chunk.data.len() > MAX_SHUFFLE_BLOCK_BYTES {
                return Err(format!(
                    "the block from {address} is over {MAX_SHUFFLE_BLOCK_BYTES} bytes"
                ));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        tokio::task::spawn_blocking(move || ipc::decode(&bytes, stride))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("block from {address} is unreadable: {e}"))
    }

    /// The blocks of a stage-B task that this executor does not hold.
    async fn fetch_blocks(
        &self,
        task: &pb::StageBTask,
        locations: &[pb::ShuffleLocation],
    ) -> Result<HashMap<u32, Arc<ShuffleBlock>>, Status> {
        let stride = self
            .executor
            .shuffle_stride(&task.job)
            .map_err(|e| Status::from(&e))?;
        let mut fetches = Vec::new();
        for range in &task.sources {
            let source = range.partition;
            let key = ShuffleKey::new(task.batch_id, range, task.watermark_ms);
            let local = self
                .executor
                .shuffle_block(&task.job, &key, task.partition)
                .map_err(|e| Status::from(&e))?;
            if local.is_some() {
                continue;
            }
            let Some(location) = locations.iter().find(|l| l.source_partition == source) else {
                return Err(missing_shuffle(
                    &task.job,
                    task.batch_id,
                    source,
                    "no location given and not held here",
                ));
            };
            let request = FetchShuffleRequest {
                job: task.job.clone(),
                batch_id: task.batch_id,
                source_partition: source,
                partition: task.partition,
                start: range.start,
                end: range.end,
                watermark_ms: task.watermark_ms,
                epoch: location.epoch,
            };
            fetches.push(async move {
                let r = self.fetch_remote(location, request, stride).await;
                (source, r)
            });
        }
        let mut out = HashMap::new();
        for (source, result) in futures_join(fetches).await {
            match result {
                Ok(block) => {
                    out.insert(source, Arc::new(block));
                }
                Err(detail) => {
                    return Err(missing_shuffle(&task.job, task.batch_id, source, &detail))
                }
            }
        }
        Ok(out)
    }
}

/// Runs futures concurrently and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::with_capacity(futures.len());
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<ShuffleChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ExecutorService for TaskService {
    #[instrument(skip_all, fields(epoch = request.get_ref().epoch))]
    async fn deploy(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::DeployResponse>, Status> {
        let r = request.into_inner();
        let job = r
            .job
            .ok_or_else(|| Status::invalid_argument("deploy without a job"))?;
        let name = job
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        self.run(r.epoch, ("deploy", &name), move |ex| {
            ex.deploy(&job).map(|()| pb::DeployResponse {})
        })
        .await
    }

    #[instrument(skip_all, fields(epoch = request.get_ref().epoch))]
    async fn undeploy(
        &self,
        request: Request<pb::UndeployRequest>,
    ) -> Result<Response<pb::UndeployResponse>, Status> {
        let r = request.into_inner();
        let name = r.job.clone();
        let response = self
            .run(r.epoch, ("undeploy", &name), move |ex| {
                Ok(pb::UndeployResponse {
                    was_deployed: ex.undeploy(&r.job),
                })
            })
            .await;
        self.metrics.forget(&name);
        response
    }

    #[instrument(skip_all, fields(epoch = request.get_ref().epoch))]
    async fn stage_a(
        &self,
        request: Request<pb::StageARequest>,
    ) -> Result<Response<pb::StageAResult>, Status> {
        let r = request.into_inner();
        let task = r
            .task
            .ok_or_else(|| Status::invalid_argument("stage A without a task"))?;
        let tenure = self.tenure(r.epoch);
        let name = task.job.clone();
        self.run(r.epoch, ("stage a", &name), move |ex| {
            let started = std::time::Instant::now();
            ex.stage_a_under(&task, &tenure).map(|mut result| {
                result.work_us = started.elapsed().as_micros() as u64;
                result
            })
        })
        .await
    }

    #[instrument(skip_all, fields(epoch = request.get_ref().epoch))]
    async fn stage_b(
        &self,
        request: Request<pb::StageBRequest>,
    ) -> Result<Response<pb::StageBResult>, Status> {
        let r = request.into_inner();
        let task = r
            .task
            .ok_or_else(|| Status::invalid_argument("stage B without a task"))?;
        self.check(r.epoch, "stage b")?;
        failpoint::hit("shuffle-fetch");
        let started = std::time::Instant::now();
        // Fetch in async code, then hand every block to the sync runtime.
        let blocks = self.fetch_blocks(&task, &r.locations).await?;
        let fetch_us = started.elapsed().as_micros() as u64;
        self.metrics.fetched(&task.job, started.elapsed());
        debug!(job = %task.job, batch_id = task.batch_id, partition = task.partition, fetched = blocks.len(), "shuffle blocks fetched");
        let tenure = self.tenure(r.epoch);
        let name = task.job.clone();
        self.run(r.epoch, ("stage b", &name), move |ex| {
            ex.stage_b_with_blocks(&task, &blocks, tenure)
                .map(|mut result| {
                    result.work_us = started.elapsed().as_micros() as u64;
                    result.fetch_us = fetch_us;
                    result
                })
        })
        .await
    }

    #[instrument(skip_all, fields(epoch = request.get_ref().epoch))]
    async fn restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::RestoreResult>, Status> {
        let r = request.into_inner();
        let task = r
            .task
            .ok_or_else(|| Status::invalid_argument("restore without a task"))?;
        let tenure = self.tenure(r.epoch);
        let name = task.job.clone();
        self.run(r.epoch, ("restore", &name), move |ex| {
            ex.restore_under(&task, tenure)
        })
        .await
    }

    #[instrument(skip_all, fields(epoch = request.get_ref().epoch))]
    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let r = request.into_inner();
        let task = r
            .task
            .ok_or_else(|| Status::invalid_argument("commit without a task"))?;
        let name = task.job.clone();
        self.run(r.epoch, ("commit", &name), move |ex| {
            ex.commit(&task).map(|()| pb::CommitResponse {})
        })
        .await
    }

    type FetchShuffleStream = ChunkStream;

    #[instrument(skip_all)]
    async fn fetch_shuffle(
        &self,
        request: Request<FetchShuffleRequest>,
    ) -> Result<Response<Self::FetchShuffleStream>, Status> {
        let r = request.into_inner();
        // Only this incarnation's blocks, to a fetch planned for it.
        self.check(r.epoch, "shuffle fetch")?;
        failpoint::hit("shuffle-serve");
        let executor = self.executor.clone();
        let chunks = tokio::task::spawn_blocking(move || {
            let block = executor
                .shuffle_block(&r.job, &fetch_key(&r), r.partition)
                .map_err(|e| Status::from(&e))?
                .ok_or_else(|| {
                    missing_shuffle(
                        &r.job,
                        r.batch_id,
                        r.source_partition,
                        "not held by this executor",
                    )
                })?;
            let stride = executor
                .shuffle_stride(&r.job)
                .map_err(|e| Status::from(&e))?;
            let bytes = ipc::encode(&block, stride)
                .map_err(|e| Status::internal(format!("cannot encode shuffle block: {e}")))?;
            Ok::<_, Status>(ipc::chunks(bytes, ipc::MAX_CHUNK_BYTES))
        })
        .await
        .map_err(|e| task_panicked("shuffle fetch", e))??;
        let stream = tokio_stream::iter(chunks.into_iter().map(|data| Ok(ShuffleChunk { data })));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The stage-A output a fetch asks for.
fn fetch_key(r: &FetchShuffleRequest) -> ShuffleKey {
    ShuffleKey {
        batch_id: r.batch_id,
        source_partition: r.source_partition,
        start: r.start,
        end: r.end,
        watermark_ms: r.watermark_ms,
    }
}
