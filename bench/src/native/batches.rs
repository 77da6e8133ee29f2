//! Acknowledgement of the messages of producer batches.
//!
//! The broker stores a producer batch as one entry, and the pulsar crate (6.9) sends an
//! acknowledgement without the batch index bitmap, so acknowledging one message of a batch
//! can acknowledge all of it. A message of a batch is therefore acknowledged only when the
//! whole batch is finished, as Magnetar does.

use std::collections::HashMap;

use pulsar::proto::MessageIdData;

/// A message that a worker finished, ready to acknowledge once its batch allows.
#[derive(Debug, Clone)]
pub struct Finished {
    pub topic: String,
    pub id: MessageIdData,
    /// Milliseconds since the Unix epoch, for the latency of the acknowledgement.
    pub publish_time: u64,
}

/// The producer batches of which some messages are finished and some are not.
#[derive(Default)]
pub struct Batches {
    open: HashMap<(String, u64, u64, i32), OpenBatch>,
}

struct OpenBatch {
    size: usize,
    finished: Vec<Finished>,
    /// Whether a message of the batch was left unfinished at shutdown, so that none of the
    /// batch may be acknowledged.
    abandoned: bool,
}

impl Batches {
    /// Records a finished message and returns the messages that may be acknowledged now:
    /// this one when it is not part of a batch, else all of its batch once the batch is
    /// complete.
    pub fn finish(&mut self, message: Finished) -> Vec<Finished> {
        self.complete(message, false)
    }

    /// Records a message left unfinished, which keeps its whole batch unacknowledged.
    pub fn abandon(&mut self, message: Finished) {
        self.complete(message, true);
    }

    fn complete(&mut self, message: Finished, abandoned: bool) -> Vec<Finished> {
        let size = usize::try_from(message.id.batch_size.unwrap_or(0)).unwrap_or(0);
        if size <= 1 {
            return if abandoned { Vec::new() } else { vec![message] };
        }

        let entry = (
            message.topic.clone(),
            message.id.ledger_id,
            message.id.entry_id,
            message.id.partition.unwrap_or(-1),
        );
        let batch = self.open.entry(entry.clone()).or_insert_with(|| OpenBatch {
            size,
            finished: Vec::with_capacity(size),
            abandoned: false,
        });
        batch.abandoned |= abandoned;
        batch.finished.push(message);
        if batch.finished.len() < batch.size {
            return Vec::new();
        }

        let batch = self
            .open
            .remove(&entry)
            .expect("the batch was inserted above");
        if batch.abandoned {
            Vec::new()
        } else {
            batch.finished
        }
    }
}
