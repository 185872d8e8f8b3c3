//! How the batcher cuts batches: only once a commit permit is held, and at most `max` at a time.

use super::*;

#[tokio::test]
async fn a_batch_is_cut_once_a_permit_is_free_and_takes_what_queued_meanwhile() {
    let (tx, rx) = mpsc::channel(64);
    let rx = Arc::new(Mutex::new(rx));
    let committing = Arc::new(Semaphore::new(1));
    let busy = committing.clone().acquire_owned().await.unwrap();
    tx.try_send(1).unwrap();
    let worker = {
        let (rx, committing) = (rx.clone(), committing.clone());
        tokio::spawn(async move {
            next_batch(&rx, &committing, 64, Duration::ZERO)
                .await
                .map(|b| b.0)
        })
    };
    // The first create is taken while the only permit commits another batch; the rest queue
    // behind it and must join its batch, not wait out a commit of their own.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for n in 2..=4 {
        tx.try_send(n).unwrap();
    }
    drop(busy);
    assert_eq!(worker.await.unwrap(), Some(vec![1, 2, 3, 4]));
}

#[tokio::test]
async fn a_batch_takes_at_most_max() {
    let (tx, rx) = mpsc::channel(64);
    let rx = Mutex::new(rx);
    let committing = Arc::new(Semaphore::new(1));
    for n in 0..10 {
        tx.try_send(n).unwrap();
    }
    let (jobs, _permit) = next_batch(&rx, &committing, 4, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(jobs, vec![0, 1, 2, 3]);
}
