//! The log writer's batching: a gathering thread's lines reach the writer at its hand-over
//! (or when its batch is full), in order; other threads' lines at once.

use std::time::Duration;

use anygate_obs::log::{self, Target};

const LIMIT: Duration = Duration::from_secs(10);

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("anygate-log-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("access.log")
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_gathering_thread_s_lines_leave_at_its_hand_over_in_order() {
    let path = temp_file("gather");
    let dest = log::destination(&[Target::File(path.clone())]);
    let p = path.clone();
    std::thread::spawn(move || {
        log::gather_on_this_thread();
        for i in 0..3 {
            log::line(dest, |b| {
                b.extend_from_slice(format!("line {i}\n").as_bytes());
            });
        }
        // Gathered, not queued: a flush does not see them.
        assert!(log::flush(LIMIT));
        assert_eq!(read(&p), "", "lines left before the hand-over");
        log::hand_over();
        assert!(log::flush(LIMIT));
        assert_eq!(read(&p), "line 0\nline 1\nline 2\n");
        // Nothing gathered: a hand-over queues nothing.
        log::hand_over();
        assert!(log::flush(LIMIT));
        assert_eq!(read(&p), "line 0\nline 1\nline 2\n");
    })
    .join()
    .unwrap();
}

#[test]
fn a_full_batch_leaves_without_waiting_for_the_hand_over() {
    let path = temp_file("full");
    let dest = log::destination(&[Target::File(path.clone())]);
    let p = path.clone();
    std::thread::spawn(move || {
        log::gather_on_this_thread();
        let line = format!("{}\n", "x".repeat(1023));
        let n = log::BATCH_BYTES / line.len();
        for _ in 0..n {
            log::line(dest, |b| b.extend_from_slice(line.as_bytes()));
        }
        assert!(log::flush(LIMIT));
        assert_eq!(
            read(&p).len(),
            n * line.len(),
            "the full batch was not handed over"
        );
        log::line(dest, |b| b.extend_from_slice(b"last\n"));
        assert!(log::flush(LIMIT));
        assert_eq!(read(&p).len(), n * line.len());
        log::hand_over();
        assert!(log::flush(LIMIT));
        assert!(read(&p).ends_with("x\nlast\n"));
    })
    .join()
    .unwrap();
}

#[test]
fn a_thread_that_does_not_gather_queues_each_line_at_once() {
    let path = temp_file("direct");
    let dest = log::destination(&[Target::File(path.clone())]);
    log::line(dest, |b| b.extend_from_slice(b"at once\n"));
    assert!(log::flush(LIMIT));
    assert_eq!(read(&path), "at once\n");
}

#[test]
fn a_line_that_panics_half_written_is_cut_out_of_the_batch() {
    let path = temp_file("panic");
    let dest = log::destination(&[Target::File(path.clone())]);
    let p = path.clone();
    std::thread::spawn(move || {
        log::gather_on_this_thread();
        log::line(dest, |b| b.extend_from_slice(b"before\n"));
        let hurt = std::panic::catch_unwind(|| {
            log::line(dest, |b| {
                b.extend_from_slice(b"{\"half\":");
                panic!("a formatter bug");
            });
        });
        assert!(hurt.is_err());
        log::line(dest, |b| b.extend_from_slice(b"after\n"));
        log::hand_over();
        assert!(log::flush(LIMIT));
        assert_eq!(read(&p), "before\nafter\n");
    })
    .join()
    .unwrap();
}
