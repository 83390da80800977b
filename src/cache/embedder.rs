//! Sentence embeddings with all-MiniLM-L6-v2 on candle (CPU).
//!
//! Matches sentence-transformers: truncation at 256 tokens (special tokens included), mean
//! pooling over the attention mask (padding is not averaged in), L2 normalisation.
//!
//! Embedding runs on dedicated OS threads, never on the async workers. Requests go through a
//! bounded queue; a worker takes the first queued request, then gathers whatever else arrives
//! within [`BATCH_WINDOW`] (up to `max_batch`) and embeds it as one batch.
//!
//! The forward pass is [`super::minilm`] (hand-written, 2-3x faster than candle's `BertModel`
//! on short prompts); candle reads the weights.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokenizers::{Tokenizer, TruncationParams};
use tokio::sync::oneshot;

use super::error::CacheError;
use super::minilm::Bert;

/// Tokens per text, special tokens included (sentence-transformers' `max_seq_length`).
pub const MAX_TOKENS: usize = 256;
/// Output dimension of all-MiniLM-L6-v2.
pub const DIMENSION: usize = 384;
/// How long a worker waits for more requests to join a batch.
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// Requests that may wait in the queue; past that [`Embedder::embed`] fails fast with
/// [`CacheError::Overloaded`] (a cache miss for the caller).
pub const QUEUE_CAPACITY: usize = 256;

/// The model files, in the folder given to [`Embedder::load`].
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

type Reply = oneshot::Sender<Result<Vec<f32>, CacheError>>;

struct Job {
    text: String,
    reply: Reply,
}

/// The loaded model: tokenizer plus BERT weights. Shared by the workers.
struct Model {
    tokenizer: Tokenizer,
    bert: Bert,
    batches: AtomicU64,
    texts: AtomicU64,
}

/// How much batching the queue achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbedderStats {
    /// Forward passes run.
    pub batches: u64,
    /// Texts embedded.
    pub texts: u64,
}

/// A sentence embedder with a bounded pool of worker threads and dynamic batching.
pub struct Embedder {
    model: Arc<Model>,
    queue: Sender<Job>,
    max_batch: usize,
    workers: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model from `dir` (the three [`MODEL_FILES`]) and starts `workers` threads
    /// (at least one) that embed batches of up to `max_batch` texts (at least one).
    pub fn load(dir: &Path, workers: usize, max_batch: usize) -> Result<Embedder, CacheError> {
        let model = Arc::new(Model::load(dir)?);
        let max_batch = max_batch.max(1);
        let (queue, rx) = crossbeam_channel::bounded::<Job>(QUEUE_CAPACITY);
        for i in 0..workers.max(1) {
            let model = Arc::clone(&model);
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("cache-embed-{i}"))
                .spawn(move || worker(&model, &rx, max_batch))
                .map_err(|e| CacheError::Embed(format!("cannot start embedding worker: {e}")))?;
        }
        Ok(Embedder {
            model,
            queue,
            max_batch,
            workers: workers.max(1),
        })
    }

    /// Embeds one text on the worker pool; concurrent calls are batched together.
    pub async fn embed(&self, text: String) -> Result<Vec<f32>, CacheError> {
        let (reply, rx) = oneshot::channel();
        match self.queue.try_send(Job { text, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CacheError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(CacheError::WorkersGone),
        }
        rx.await.map_err(|_| CacheError::WorkersGone)?
    }

    /// Runs the model once per worker, off the request path: the first forward passes pay for
    /// page faults in the weights and the allocator's first buffers (hundreds of milliseconds),
    /// which would otherwise fall on the first requests, and made the first answer after a
    /// start be stored too late for a repeat. Texts of several lengths, so each worker's
    /// buffers grow once here.
    pub async fn warm_up(&self) -> Result<(), CacheError> {
        const TEXTS: [&str; 3] = [
            "warm up",
            "How do I reset the password of my account on the internal portal?",
            "Summarise the following incident report in three sentences, naming the affected service, the time it started, the time it was resolved, what the root cause was, and which follow-up actions were agreed by the team during the review meeting held on the next working day.",
        ];
        for text in TEXTS {
            let jobs = (0..self.workers).map(|_| self.embed(text.to_string()));
            for result in futures::future::join_all(jobs).await {
                result?;
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> EmbedderStats {
        EmbedderStats {
            batches: self.model.batches.load(Ordering::Relaxed),
            texts: self.model.texts.load(Ordering::Relaxed),
        }
    }

    /// Embeds texts on the calling thread, in chunks of `max_batch` (for tests, benches and
    /// offline tools; do not call it on an async worker).
    pub fn embed_batch_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, CacheError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.max_batch) {
            out.extend(self.model.embed(chunk)?);
        }
        Ok(out)
    }
}

fn worker(model: &Model, rx: &Receiver<Job>, max_batch: usize) {
    // Ends when every sender (the Embedder) is dropped.
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + BATCH_WINDOW;
        while jobs.len() < max_batch {
            match rx.recv_deadline(deadline) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let texts: Vec<&str> = jobs.iter().map(|j| j.text.as_str()).collect();
        match model.embed(&texts) {
            Ok(vectors) => {
                for (job, v) in jobs.into_iter().zip(vectors) {
                    let _ = job.reply.send(Ok(v));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(CacheError::Embed(msg.clone())));
                }
            }
        }
    }
}

impl Model {
    fn load(dir: &Path) -> Result<Model, CacheError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| CacheError::model(dir, format!("{name}: {e}")))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| CacheError::model(dir, format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| CacheError::model(dir, format!("tokenizer.json: {e}")))?;
        // tokenizer.json ships with truncation at 128 and fixed padding to 128: truncate at
        // MAX_TOKENS and do not pad at all (batches are ragged, see the module docs).
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| CacheError::model(dir, format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        if config.hidden_size != DIMENSION {
            return Err(CacheError::model(
                dir,
                format!("hidden size {} is not {DIMENSION}", config.hidden_size),
            ));
        }
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| CacheError::model(dir, format!("model.safetensors: {e}")))?;
        let bert = Bert::load(vb, &config)
            .map_err(|e| CacheError::model(dir, format!("model.safetensors: {e}")))?;
        Ok(Model {
            tokenizer,
            bert,
            batches: AtomicU64::new(0),
            texts: AtomicU64::new(0),
        })
    }

    /// One batch: tokens, BERT, mean pooling over each text's tokens, L2 normalisation.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, CacheError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| CacheError::Embed(format!("tokenizer: {e}")))?;
        let seqs: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        self.bert.forward(&seqs).map_err(CacheError::Embed)
    }
}
