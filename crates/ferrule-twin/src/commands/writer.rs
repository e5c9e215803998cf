//! Writes command changes in batches: one transaction for many changes,
//! so a thousand commands a second cost a few commits, not thousands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferrule_store::commands::{CommandRecord, CommandStore};
use tokio::sync::{mpsc, oneshot};

/// Changes taken into one transaction at most.
const BATCH: usize = 512;

/// A change to store (or, `None`, only a wait for what was queued
/// before), and who waits for it to be durable.
pub(super) struct Write {
    pub record: Option<CommandRecord>,
    pub done: Option<oneshot::Sender<()>>,
}

/// Runs until every sender is gone (the tracker and handles dropped);
/// `stored` is told each batch's records once durable.
pub(super) async fn run(
    mut writes: mpsc::Receiver<Write>,
    store: Arc<dyn CommandStore>,
    stored: impl Fn(&[CommandRecord]),
) {
    let mut batch = Vec::with_capacity(BATCH);
    while writes.recv_many(&mut batch, BATCH).await > 0 {
        // The last change of each command is the one to keep.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, w) in batch.iter().enumerate() {
            if let Some(r) = &w.record {
                last.insert(&r.id, i);
            }
        }
        let records: Vec<CommandRecord> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let r = w.record.as_ref()?;
                (last.get(r.id.as_str()) == Some(&i)).then(|| r.clone())
            })
            .collect();
        let mut wait = Duration::from_millis(100);
        while !records.is_empty() {
            match store.save_commands(records.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!("ferrule_command_store_errors_total").increment(1);
                    tracing::error!(error = %e, commands = records.len(), "storing commands failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        stored(&records);
        for w in batch.drain(..) {
            if let Some(done) = w.done {
                let _ = done.send(());
            }
        }
    }
}
