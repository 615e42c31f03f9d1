//! The log writer: one thread that writes every line, so that no worker ever waits on a
//! terminal, a pipe or a disk.
//!
//! ```text
//! worker ─ line(dest, format) ─ its batch ─ hand_over() ─► [access queue, bounded] ─┐
//! other thread ─ line(dest, format) ─────────────────────► [access queue]          ─┤
//! any thread ─ server(level, msg) ───────────────────────► [server queue, bounded] ─┼─► writer thread ─► stdout / stderr / files
//!                    ◄──────────── recycled buffers [free queues] ─────────────────┘
//! ```
//!
//! - Both queues are lock-free and bounded (`crossbeam_queue::ArrayQueue`; the access
//!   queue also by the lines it holds, [`ACCESS_CAPACITY`]). A full queue drops the line,
//!   or the batch, and counts its lines ([`dropped`]); a line is never waited for.
//! - A worker thread gathers its access lines ([`gather_on_this_thread`], [`line`]) in
//!   one buffer per destination and hands the batch over at its next reactor turn
//!   ([`hand_over`], the runtime's turn hook: at once when the worker goes idle, every few
//!   dozen tasks while it is busy) or when it reaches [`BATCH_BYTES`]: two queue
//!   operations and one cache-line transfer per batch instead of per line, and the line is
//!   written straight into the batch (no buffer of its own). A line that panics while
//!   being formatted is cut out of the batch.
//! - Buffers come back through two free queues, one for line buffers (kept up to 16 KiB)
//!   and a short one for batch buffers (kept up to [`BATCH_KEPT`]), so after warm-up a line
//!   costs no allocation and the buffers kept stay bounded (8 192 × 16 KiB, 64 × 128 KiB).
//! - The writer drains the server queue first, then the access queue, writes each
//!   destination once per batch, and naps for a millisecond between batches while lines
//!   keep coming; idle, it parks until a producer wakes it (one `unpark`, only then).
//! - Files are opened in append mode when first written; [`reopen`] closes them all so
//!   that the next line opens the path again (logrotate's `postrotate kill -USR1`).
//! - [`flush`] waits until everything sent before it is written (at exit).

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::Thread;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;

/// Lines the access queue holds (in batches or one by one).
pub const ACCESS_CAPACITY: usize = 8192;
/// A worker hands its gathered lines over once they reach this size, even before its
/// next reactor turn.
pub const BATCH_BYTES: usize = 32 << 10;
/// Lines the server queue holds.
const SERVER_CAPACITY: usize = 1024;
/// A recycled buffer larger than this is dropped instead (one huge line must not pin
/// memory for ever).
const MAX_KEPT_BUFFER: usize = 16 << 10;
/// The writer writes what it staged for its outputs once it reaches this much, and
/// keeps no larger staging buffer between batches.
const STAGE_BYTES: usize = 1 << 20;
/// A batch buffer larger than this is dropped instead of kept for the next batch.
pub const BATCH_KEPT: usize = 128 << 10;
/// Batch buffers kept for reuse (a few per worker).
const BATCH_POOL: usize = 64;

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

/// A registered set of targets (see [`destination`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest(u32);

/// The server log's format (`server.log_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServerFormat {
    /// `anygate: message` (the default).
    #[default]
    Text,
    /// `{"ts":…,"level":…,"msg":…}`.
    Json,
}

/// A server log line's severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Normal operation (started, reloaded).
    Info,
    /// Something the operator should look at.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// Lines for one destination: one line, or a worker's batch of them.
struct Line {
    dest: Dest,
    buf: Vec<u8>,
    /// How many lines `buf` holds (what a drop counts).
    lines: u32,
}

enum Control {
    Reopen,
    Flush(mpsc::Sender<()>),
}

struct Shared {
    access: ArrayQueue<Line>,
    server: ArrayQueue<Line>,
    free: ArrayQueue<Vec<u8>>,
    /// Batch buffers, for [`line`] on a gathering thread.
    batch_free: ArrayQueue<Vec<u8>>,
    control: ArrayQueue<Control>,
    dropped: AtomicU64,
    /// Lines in the access queue.
    queued: AtomicUsize,
    /// The writer is parked with nothing to do: the next producer wakes it.
    idle: AtomicBool,
    dests: ArcSwap<Vec<Vec<Target>>>,
    server_format: AtomicU8,
    thread: OnceLock<Thread>,
}

static SHARED: OnceLock<&'static Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            access: ArrayQueue::new(ACCESS_CAPACITY),
            server: ArrayQueue::new(SERVER_CAPACITY),
            free: ArrayQueue::new(ACCESS_CAPACITY),
            batch_free: ArrayQueue::new(BATCH_POOL),
            control: ArrayQueue::new(64),
            dropped: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            idle: AtomicBool::new(false),
            // Destination 0 is stderr (the server log), 1 stdout.
            dests: ArcSwap::from_pointee(vec![vec![Target::Stderr], vec![Target::Stdout]]),
            server_format: AtomicU8::new(0),
            thread: OnceLock::new(),
        }));
        // Born with the handled signals blocked: a `SIGHUP` meant for the main thread
        // must not land here and end the process.
        let handle = anygate_runtime::signal::spawn_side_thread("anygate-log", move || {
            Writer::default().run(shared);
        })
        .expect("cannot start the log writer thread");
        let _ = shared.thread.set(handle.thread().clone());
        shared
    })
}

/// The destination for `targets` (the same set gives the same destination).
pub fn destination(targets: &[Target]) -> Dest {
    let s = shared();
    let mut found = 0;
    s.dests.rcu(|list| {
        let mut list = Vec::clone(list);
        found = match list.iter().position(|t| t == targets) {
            Some(i) => i,
            None => {
                list.push(targets.to_vec());
                list.len() - 1
            }
        };
        list
    });
    Dest(u32::try_from(found).unwrap_or(1))
}

/// Standard output.
pub const STDOUT: Dest = Dest(1);

/// An empty buffer for a line: a recycled one when there is one.
pub fn buffer() -> Vec<u8> {
    shared()
        .free
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(512))
}

/// Queues `line` (newline included) for `dest`; drops and counts it when the queue is full.
pub fn send(dest: Dest, line: Vec<u8>) {
    push_access(
        shared(),
        Line {
            dest,
            buf: line,
            lines: 1,
        },
    );
}

/// A worker's gathered lines: one buffer per destination it wrote to.
#[derive(Default)]
struct Gathered {
    batches: Vec<(Dest, Vec<u8>, u32)>,
}

thread_local! {
    /// `Some` on a thread that gathers its lines (a worker with the turn hook).
    static GATHERED: RefCell<Option<Gathered>> = const { RefCell::new(None) };
    /// This thread gathered lines since its last hand-over: the turn hook of a worker that
    /// logs nothing reads one flag.
    static PENDING: Cell<bool> = const { Cell::new(false) };
}

/// From now on, [`line`] on this thread gathers lines until [`hand_over`]: only for a
/// thread that calls [`hand_over`] often (a runtime worker, through its turn hook, and
/// once more when it stops).
pub fn gather_on_this_thread() {
    GATHERED.with_borrow_mut(|g| {
        g.get_or_insert_with(Gathered::default);
    });
}

/// Writes one line for `dest` with `write` (newline included): into this thread's batch
/// when it gathers ([`gather_on_this_thread`]), else into a buffer of its own, queued at
/// once.
pub fn line(dest: Dest, write: impl FnOnce(&mut Vec<u8>)) {
    let mut write = Some(write);
    let full = GATHERED.with_borrow_mut(|g| {
        let g = g.as_mut()?;
        let i = match g.batches.iter().position(|b| b.0 == dest) {
            Some(i) => i,
            None => {
                g.batches.push((dest, Vec::new(), 0));
                g.batches.len() - 1
            }
        };
        let (_, buf, lines) = &mut g.batches[i];
        if buf.capacity() == 0 {
            *buf = shared()
                .batch_free
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(2 * BATCH_BYTES));
        }
        if let Some(write) = write.take() {
            // A line that panics half-written is cut out, so the next one starts clean.
            let start = buf.len();
            let wrote = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(buf)));
            if let Err(panic) = wrote {
                buf.truncate(start);
                std::panic::resume_unwind(panic);
            }
        }
        *lines += 1;
        PENDING.set(true);
        Some(buf.len() >= BATCH_BYTES)
    });
    match full {
        Some(true) => hand_over(),
        Some(false) => {}
        None => {
            if let Some(write) = write.take() {
                let mut buf = buffer();
                write(&mut buf);
                send(dest, buf);
            }
        }
    }
}

/// Queues the lines this thread gathered (nothing when it gathered none, or does not
/// gather). The runtime's turn hook.
#[inline]
pub fn hand_over() {
    if PENDING.replace(false) {
        hand_over_gathered();
    }
}

fn hand_over_gathered() {
    GATHERED.with_borrow_mut(|g| {
        let Some(g) = g.as_mut() else {
            return;
        };
        let s = shared();
        for (dest, buf, lines) in &mut g.batches {
            if *lines == 0 {
                continue;
            }
            // A full batch travels in its own buffer; a short one (an idle worker's few
            // lines) is copied into a line-sized one, so a queue of them never holds
            // batch-sized buffers, and the worker keeps its batch buffer.
            let out = if buf.len() >= BATCH_BYTES {
                std::mem::take(buf)
            } else {
                let mut out = buffer();
                out.extend_from_slice(buf);
                buf.clear();
                out
            };
            let line = Line {
                dest: *dest,
                buf: out,
                lines: std::mem::take(lines),
            };
            push_access(s, line);
        }
    });
}

fn push_access(s: &Shared, line: Line) {
    let n = line.lines as usize;
    if s.queued.fetch_add(n, Ordering::Relaxed) + n > ACCESS_CAPACITY {
        s.queued.fetch_sub(n, Ordering::Relaxed);
        return drop_lines(s, line);
    }
    if let Err(line) = push(s, &s.access, line) {
        s.queued.fetch_sub(n, Ordering::Relaxed);
        drop_lines(s, line);
    }
}

/// Counts `line`'s lines as dropped and keeps its buffer.
fn drop_lines(s: &Shared, line: Line) {
    s.dropped
        .fetch_add(u64::from(line.lines), Ordering::Relaxed);
    recycle(s, line.buf);
}

/// Queues `line` and wakes the writer if it sleeps; a full queue gives it back.
fn push(s: &Shared, queue: &ArrayQueue<Line>, line: Line) -> Result<(), Line> {
    queue.push(line)?;
    // SeqCst, with the queue's own SeqCst push and emptiness check, against the writer's
    // SeqCst store of `idle`: either it sees this line, or this sees it idle and wakes it.
    if s.idle.load(Ordering::SeqCst) && s.idle.swap(false, Ordering::SeqCst) {
        wake(s);
    }
    Ok(())
}

fn wake(s: &Shared) {
    if let Some(t) = s.thread.get() {
        t.unpark();
    }
}

fn recycle(s: &Shared, mut buf: Vec<u8>) {
    if buf.capacity() > MAX_KEPT_BUFFER {
        // A batch's buffer (or one huge line): kept in the short pool, within bounds.
        if buf.capacity() <= BATCH_KEPT {
            buf.clear();
            let _ = s.batch_free.push(buf);
        }
        return;
    }
    buf.clear();
    let _ = s.free.push(buf);
}

/// Lines dropped because a queue was full, since the start.
pub fn dropped() -> u64 {
    shared().dropped.load(Ordering::Relaxed)
}

/// Sets the server log's format.
pub fn set_server_format(format: ServerFormat) {
    shared()
        .server_format
        .store(u8::from(format == ServerFormat::Json), Ordering::Relaxed);
}

/// Writes a server log line to stderr, in the server format. `message` may span lines
/// (a rendered diagnostic): the text format writes it as it is, JSON escapes it into one.
pub fn server(level: Level, message: &str) {
    let s = shared();
    let mut buf = buffer();
    if s.server_format.load(Ordering::Relaxed) == 1 {
        buf.extend_from_slice(b"{\"ts\":\"");
        crate::time::rfc3339(&mut buf, crate::time::unix_nanos(SystemTime::now()));
        buf.extend_from_slice(b"\",\"level\":\"");
        buf.extend_from_slice(level.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"msg\":");
        crate::escape::json_str(&mut buf, message.trim_end().as_bytes());
        buf.extend_from_slice(b"}\n");
    } else if message.contains('\n') {
        // A rendered diagnostic: its own layout.
        buf.extend_from_slice(message.as_bytes());
        if !message.ends_with('\n') {
            buf.push(b'\n');
        }
    } else {
        buf.extend_from_slice(b"anygate: ");
        buf.extend_from_slice(message.as_bytes());
        buf.push(b'\n');
    }
    let line = Line {
        dest: Dest(0),
        buf,
        lines: 1,
    };
    if let Err(line) = push(s, &s.server, line) {
        drop_lines(s, line);
    }
}

/// Closes the log files: the next line for each opens its path again.
pub fn reopen() {
    let s = shared();
    let _ = s.control.push(Control::Reopen);
    wake(s);
}

/// Waits (at most `timeout`) until every line queued before this call is written.
/// `false` when the writer did not get there in time.
pub fn flush(timeout: Duration) -> bool {
    // Nothing was ever logged: there is no writer to wait for.
    let Some(s) = SHARED.get() else {
        return true;
    };
    let (tx, rx) = mpsc::channel();
    if s.control.push(Control::Flush(tx)).is_err() {
        return false;
    }
    s.idle.store(false, Ordering::Release);
    wake(s);
    rx.recv_timeout(timeout).is_ok()
}

/// Where one destination's lines go, resolved against the writer's outputs.
#[derive(Clone, Copy)]
enum Out {
    Stdout,
    Stderr,
    File(usize),
}

/// A log file: its path, its handle (opened when first written, closed by a reopen), the
/// bytes of the batch, whether it is failing (said once).
struct FileOut {
    path: PathBuf,
    file: Option<File>,
    bytes: Vec<u8>,
    failing: bool,
}

#[derive(Default)]
struct Writer {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    files: Vec<FileOut>,
    /// Per destination, its outputs: resolved again only when the destination list
    /// changes (no lookup by path per line).
    routes: Vec<Vec<Out>>,
    resolved: Option<Arc<Vec<Vec<Target>>>>,
}

impl Writer {
    fn run(mut self, s: &'static Shared) {
        let mut flushes = Vec::new();
        loop {
            while let Some(c) = s.control.pop() {
                match c {
                    Control::Reopen => {
                        for f in &mut self.files {
                            f.file = None;
                            f.failing = false;
                        }
                    }
                    Control::Flush(ack) => flushes.push(ack),
                }
            }
            let dests = s.dests.load_full();
            if !self
                .resolved
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(r, &dests))
            {
                self.resolve(&dests);
                self.resolved = Some(dests);
            }
            let mut n = 0;
            let mut staged = 0;
            while let Some(line) = s.server.pop().or_else(|| {
                let line = s.access.pop()?;
                s.queued.fetch_sub(line.lines as usize, Ordering::Relaxed);
                Some(line)
            }) {
                self.add(&line);
                staged += line.buf.len();
                recycle(s, line.buf);
                n += 1;
                // Written by the mebibyte at most: a backlog of batches stages no more.
                if staged >= STAGE_BYTES {
                    self.write_out();
                    staged = 0;
                }
            }
            self.write_out();
            for ack in flushes.drain(..) {
                let _ = ack.send(());
            }
            if n > 0 {
                // Lines are coming: let the next batch gather.
                std::thread::park_timeout(Duration::from_millis(1));
                continue;
            }
            // SeqCst: see `push`.
            s.idle.store(true, Ordering::SeqCst);
            if s.server.is_empty() && s.access.is_empty() && s.control.is_empty() {
                std::thread::park_timeout(Duration::from_secs(1));
            }
            s.idle.store(false, Ordering::Release);
        }
    }

    fn resolve(&mut self, dests: &[Vec<Target>]) {
        let mut routes = Vec::with_capacity(dests.len());
        for targets in dests {
            let outs = targets
                .iter()
                .map(|t| match t {
                    Target::Stdout => Out::Stdout,
                    Target::Stderr => Out::Stderr,
                    Target::File(p) => {
                        let i = match self.files.iter().position(|f| f.path == *p) {
                            Some(i) => i,
                            None => {
                                self.files.push(FileOut {
                                    path: p.clone(),
                                    file: None,
                                    bytes: Vec::new(),
                                    failing: false,
                                });
                                self.files.len() - 1
                            }
                        };
                        Out::File(i)
                    }
                })
                .collect();
            routes.push(outs);
        }
        self.routes = routes;
    }

    fn add(&mut self, line: &Line) {
        let Some(outs) = self.routes.get(line.dest.0 as usize) else {
            return;
        };
        for &o in outs {
            match o {
                Out::Stdout => self.stdout.extend_from_slice(&line.buf),
                Out::Stderr => self.stderr.extend_from_slice(&line.buf),
                Out::File(i) => self.files[i].bytes.extend_from_slice(&line.buf),
            }
        }
    }

    fn write_out(&mut self) {
        if !self.stdout.is_empty() {
            let mut out = io::stdout().lock();
            let _ = out.write_all(&self.stdout);
            let _ = out.flush();
            self.stdout.clear();
            self.stdout.shrink_to(STAGE_BYTES);
        }
        if !self.stderr.is_empty() {
            let _ = io::stderr().lock().write_all(&self.stderr);
            self.stderr.clear();
            self.stderr.shrink_to(STAGE_BYTES);
        }
        for f in &mut self.files {
            if f.bytes.is_empty() {
                continue;
            }
            if f.file.is_none() {
                match OpenOptions::new().create(true).append(true).open(&f.path) {
                    Ok(file) => {
                        f.file = Some(file);
                        f.failing = false;
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut f.failing, true) {
                            let _ = writeln!(
                                io::stderr().lock(),
                                "anygate: cannot open the log file {}: {e}; its lines are dropped",
                                f.path.display()
                            );
                        }
                    }
                }
            }
            if let Some(file) = &mut f.file
                && let Err(e) = file.write_all(&f.bytes)
                && !std::mem::replace(&mut f.failing, true)
            {
                let _ = writeln!(
                    io::stderr().lock(),
                    "anygate: cannot write the log file {}: {e}",
                    f.path.display()
                );
            }
            f.bytes.clear();
            f.bytes.shrink_to(STAGE_BYTES);
        }
    }
}

/// A handle for tests and the admin listener: the queues' fill.
pub fn queued() -> usize {
    let s = shared();
    s.queued.load(Ordering::Relaxed) + s.server.len()
}
