//! The ingest journal: messages that create Observations are acknowledged once they are in an
//! append-only file, and created afterwards in large transactions.
//!
//! Why: acknowledged after its commit, a QoS 1 message holds its client's window until the
//! transaction is done, so a transaction can take no more than the messages clients keep in
//! flight (32 publishers with paho-mqtt's window of 20: 640, split between two batches). Every
//! commit writes the index pages its batch touched, about 720 for Observations of 300
//! Datastreams whatever the batch size, so small batches cost the writer two to three times
//! more per Observation. Journaled, a message is acknowledged once written, and the batcher
//! takes thousands per transaction.
//!
//! ```text
//!  Ingest::submit (decoded, on the session's task) ─► Journal::append, under one lock:
//!      write() the record (sequence numbers in order) ─► queue for the batcher (in order)
//!      ─► the session acknowledges at once (no other thread on the way: a stop-and-wait
//!         client's round trip pays no thread wake-up)
//!  batcher ─► Service::create_decoded_marked(batch, source, last seq): rows and the mark commit
//!             together ─► `applied` advances ─► segments wholly applied are removed
//! ```
//!
//! Durability: a written record is in the operating system's cache and survives `kill -9`, as a
//! SQLite commit with `synchronous=NORMAL` does (neither is synced before it is acknowledged).
//! Exactly once: each batch's transaction advances this journal's mark (`ingest_marks`) to its
//! last sequence number, and batches commit in sequence order (one writer, batches handed to it
//! in order), so on start the records after the mark are exactly those never created; they are
//! queued before any new message.
//!
//! Files, in the journal's directory: `source` (this journal's name in `ingest_marks`, random,
//! so that instances sharing one PostgreSQL keep apart) and segments `<first seq>.journal`. A
//! record is `len u32 | crc32 u32 | seq u64 | topic len u16 | topic | payload` (little endian;
//! `len` counts what follows the CRC, the CRC covers it). A torn record at the end of the last
//! segment (a crash inside a write) was never acknowledged and is cut off on start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use stela_service::DecodedCreate;
use tokio::sync::{mpsc, oneshot};

use crate::ingest::{CreateRequest, Outcome, decode_message};
use crate::metrics::{Metrics, bump};

/// A segment is closed, and a new one begun, once it holds this many bytes.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Bytes of a record before its body: length, CRC, sequence number.
const HEADER: usize = 16;

/// Largest topic a record holds (its length is a `u16`; MQTT topics are at most 65,535 bytes).
const MAX_TOPIC: usize = u16::MAX as usize;

/// The running journal: appends are serialised by its lock, which keeps the records' order and
/// the batcher queue's the same.
#[derive(Debug)]
pub(crate) struct Journal {
    writer: tokio::sync::Mutex<JournalWriter>,
    metrics: Arc<Metrics>,
}

/// Where an appended message stands.
#[derive(Debug)]
pub(crate) enum Appended {
    /// On disk and queued: acknowledge it now.
    Journaled,
    /// The write failed: queued unjournaled, answered once created.
    Queued(oneshot::Receiver<Outcome>),
    /// The batcher has stopped.
    Stopped,
}

impl Journal {
    /// Writes the message to the journal and queues its create; waits while the batcher's
    /// queue is full (a flood becomes TCP backpressure).
    pub async fn append(&self, topic: &str, payload: &Bytes, create: DecodedCreate) -> Appended {
        let mut writer = self.writer.lock().await;
        let seq = writer.next_seq;
        let (request, answer) = if writer.write(seq, topic, payload) {
            writer.next_seq += 1;
            bump(&self.metrics.journaled);
            writer.remove_applied();
            if let Err(error) = writer.rotate_if_full() {
                tracing::error!(%error, journal = %writer.dir.display(), "mqtt ingest journal: cannot begin a new segment");
            }
            // A copy of its own: the packet's payload is a slice of the session's read buffer,
            // and a queue of slices would keep a buffer block alive for each.
            let payload = Bytes::copy_from_slice(payload);
            (CreateRequest::journaled(create, seq, topic.to_owned(), payload), None)
        } else {
            // Not on disk: acknowledged after its commit, as without a journal.
            let (answer, outcome) = oneshot::channel();
            (CreateRequest::answered(create, answer), Some(outcome))
        };
        if writer.batcher.send(request).await.is_err() {
            return Appended::Stopped;
        }
        match answer {
            None => Appended::Journaled,
            Some(outcome) => Appended::Queued(outcome),
        }
    }
}

/// What the batcher needs to mark its commits and let the journal drop what they applied.
#[derive(Debug, Clone)]
pub(crate) struct Marks {
    /// This journal's name in `ingest_marks`.
    pub source: String,
    /// The highest sequence number committed.
    pub applied: Arc<AtomicU64>,
}

/// A record read back from a segment.
#[derive(Debug, PartialEq)]
struct Record {
    seq: u64,
    topic: String,
    payload: Vec<u8>,
}

/// A segment on disk: its file and the last sequence number it holds.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    last: u64,
}

/// The journal directory, read on start.
#[derive(Debug)]
struct Opened {
    source: String,
    /// The source was named just now: the journal is new.
    created: bool,
    segments: Vec<(PathBuf, Vec<Record>)>,
}

/// Reads the journal in `dir` (creating it if needed); [`PreparedJournal::start`], given the
/// mark of its source, runs it.
pub(crate) fn open(dir: &Path) -> io::Result<PreparedJournal> {
    let opened = read_dir(dir)?;
    Ok(PreparedJournal { dir: dir.to_owned(), opened })
}

/// A journal read from disk, not yet running.
#[derive(Debug)]
pub(crate) struct PreparedJournal {
    dir: PathBuf,
    opened: Opened,
}

impl PreparedJournal {
    pub fn source(&self) -> &str {
        &self.opened.source
    }

    /// Whether the journal was created by this opening (its source named just now).
    pub fn created(&self) -> bool {
        self.opened.created
    }

    /// The marks of this journal, its database's mark being `mark`.
    pub fn marks(&self, mark: u64) -> Marks {
        Marks { source: self.opened.source.clone(), applied: Arc::new(AtomicU64::new(mark)) }
    }

    /// Queues every record after the mark in `marks` for the batcher (the messages
    /// acknowledged and never created; the batcher must be running), then returns the journal,
    /// ready for new messages. `marks.applied` is where the batcher records its commits.
    pub async fn start(
        self,
        marks: &Marks,
        batcher: mpsc::Sender<CreateRequest>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Journal> {
        let PreparedJournal { dir, opened } = self;
        let mark = marks.applied.load(Ordering::Acquire);
        let applied = Arc::clone(&marks.applied);
        let mut last_seq = mark;
        let mut replay = Vec::new();
        let mut segments = Vec::new();
        for (path, records) in opened.segments {
            let Some(last) = records.last().map(|record| record.seq) else {
                fs::remove_file(&path)?;
                continue;
            };
            last_seq = last_seq.max(last);
            if last <= mark {
                fs::remove_file(&path)?;
                continue;
            }
            replay.extend(records.into_iter().filter(|record| record.seq > mark));
            segments.push(Segment { path, last });
        }
        let next_seq = last_seq + 1;
        let current = Current::create(&dir, next_seq)?;
        if !replay.is_empty() {
            tracing::info!(
                messages = replay.len(),
                journal = %dir.display(),
                "mqtt ingest journal: creating the messages acknowledged before the last stop"
            );
        }
        for record in replay {
            let payload = Bytes::from(record.payload);
            let request = match decode_message(&record.topic, &payload) {
                Ok(create) => CreateRequest::journaled(create, record.seq, record.topic, payload),
                Err(rejection) => {
                    // Decoded once before it was journaled; only a change of the rules since
                    // can refuse it now.
                    bump(&metrics.rejected);
                    tracing::warn!(seq = record.seq, topic = %record.topic, reason = %rejection, "a journaled mqtt message no longer decodes");
                    continue;
                }
            };
            if batcher.send(request).await.is_err() {
                return Err(io::Error::other("the mqtt create batcher stopped during the replay"));
            }
        }
        let writer = JournalWriter {
            dir,
            current,
            closed: segments,
            next_seq,
            applied,
            batcher,
            buffer: Vec::new(),
            segment_bytes: SEGMENT_BYTES,
            failing: false,
        };
        Ok(Journal { writer: tokio::sync::Mutex::new(writer), metrics })
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    path: PathBuf,
    file: File,
    len: u64,
    first: u64,
}

impl Current {
    fn create(dir: &Path, first: u64) -> io::Result<Current> {
        let path = dir.join(segment_name(first));
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
        Ok(Current { path, file, len: 0, first })
    }
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.journal")
}

/// The journal's files, behind [`Journal`]'s lock.
struct JournalWriter {
    dir: PathBuf,
    current: Current,
    /// Earlier segments with records not yet applied, oldest first.
    closed: Vec<Segment>,
    next_seq: u64,
    applied: Arc<AtomicU64>,
    batcher: mpsc::Sender<CreateRequest>,
    /// The record being written.
    buffer: Vec<u8>,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    /// Set while writes fail, so that the log says so once per episode.
    failing: bool,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl JournalWriter {
    /// Appends record `seq` to the current segment; false (the segment cut back to its length
    /// before) when that fails. A write to the page cache, on the session's task: it takes
    /// microseconds, less than handing the record to a thread of its own.
    fn write(&mut self, seq: u64, topic: &str, payload: &[u8]) -> bool {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        encode_record(&mut buffer, seq, topic, payload);
        let written = self.write_buffer(&buffer);
        self.buffer = buffer;
        written
    }

    fn write_buffer(&mut self, buffer: &[u8]) -> bool {
        match self.current.file.write_all(buffer) {
            Ok(()) => {
                self.current.len += buffer.len() as u64;
                self.failing = false;
                true
            }
            Err(error) => {
                if !self.failing {
                    tracing::error!(%error, journal = %self.dir.display(), "mqtt ingest journal: a write failed; messages are acknowledged after their commit until writes succeed again");
                    self.failing = true;
                }
                // A partial record would end the segment for every later reader: cut it off,
                // or go on in a new segment when even that fails.
                if self.current.file.set_len(self.current.len).is_err() {
                    let _ = self.begin_segment();
                }
                false
            }
        }
    }

    fn rotate_if_full(&mut self) -> io::Result<()> {
        if self.current.len >= self.segment_bytes { self.begin_segment() } else { Ok(()) }
    }

    /// Closes the current segment and begins one at the next sequence number.
    fn begin_segment(&mut self) -> io::Result<()> {
        if self.current.first == self.next_seq {
            // Nothing in it (a write failed into an empty segment): begun again, the same name.
            self.current = Current::create(&self.dir, self.next_seq)?;
            return Ok(());
        }
        let next = Current::create(&self.dir, self.next_seq)?;
        let done = std::mem::replace(&mut self.current, next);
        self.closed.push(Segment { path: done.path, last: self.next_seq - 1 });
        Ok(())
    }

    /// Removes the closed segments whose records have all been created.
    fn remove_applied(&mut self) {
        let applied = self.applied.load(Ordering::Acquire);
        let done = self.closed.iter().take_while(|segment| segment.last <= applied).count();
        for segment in self.closed.drain(..done) {
            if let Err(error) = fs::remove_file(&segment.path) {
                tracing::warn!(%error, segment = %segment.path.display(), "mqtt ingest journal: cannot remove an applied segment");
            }
        }
    }
}

/// Appends the record of message `seq` to `buffer`.
fn encode_record(buffer: &mut Vec<u8>, seq: u64, topic: &str, payload: &[u8]) {
    // Topics longer than a u16 cannot come from MQTT; cut rather than corrupt the record.
    let topic = &topic.as_bytes()[..topic.len().min(MAX_TOPIC)];
    let body_len = 8 + 2 + topic.len() + payload.len();
    let start = buffer.len();
    buffer.reserve(8 + body_len);
    buffer.extend_from_slice(&(body_len as u32).to_le_bytes());
    buffer.extend_from_slice(&[0; 4]);
    buffer.extend_from_slice(&seq.to_le_bytes());
    buffer.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    buffer.extend_from_slice(topic);
    buffer.extend_from_slice(payload);
    let crc = crc32fast::hash(&buffer[start + 8..]);
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the records of a segment; stops at the first that is torn or damaged and returns
/// how many bytes the good ones take.
fn decode_records(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = bytes.get(at + 8..at + 8 + len) else { break };
        if len < HEADER - 8 + 2 || crc32fast::hash(body) != crc {
            break;
        }
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        let topic_len = usize::from(u16::from_le_bytes([body[8], body[9]]));
        let Some(topic) = body.get(10..10 + topic_len) else { break };
        let Ok(topic) = String::from_utf8(topic.to_vec()) else { break };
        records.push(Record { seq, topic, payload: body[10 + topic_len..].to_vec() });
        at += 8 + len;
    }
    (records, at)
}

/// Reads the journal directory (creating it and its `source` file if needed).
fn read_dir(dir: &Path) -> io::Result<Opened> {
    fs::create_dir_all(dir)?;
    let source_file = dir.join("source");
    let (source, created) = match fs::read_to_string(&source_file) {
        Ok(source) if !source.trim().is_empty() => (source.trim().to_owned(), false),
        Ok(_) => (new_source(&source_file)?, true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => (new_source(&source_file)?, true),
        Err(error) => return Err(error),
    };
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".journal"))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(first) = first {
            names.push((first, path));
        }
    }
    names.sort();
    let count = names.len();
    let mut segments = Vec::with_capacity(count);
    for (position, (_, path)) in names.into_iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let (records, good) = decode_records(&bytes);
        if good < bytes.len() {
            if position + 1 == count {
                // A write cut short by a crash: never acknowledged.
                OpenOptions::new().write(true).open(&path)?.set_len(good as u64)?;
            } else {
                tracing::error!(
                    segment = %path.display(),
                    damaged_from = good,
                    "mqtt ingest journal: a damaged record in a closed segment; the records after it are lost"
                );
            }
        }
        segments.push((path, records));
    }
    Ok(Opened { source, created, segments })
}

/// Moves the journal in `dir` aside, to `<dir>.orphaned-<unix seconds>`, and returns where.
pub(crate) fn set_aside(dir: &Path) -> io::Result<PathBuf> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".orphaned-{seconds}"));
    let aside = PathBuf::from(aside);
    fs::rename(dir, &aside)?;
    Ok(aside)
}

/// Names a new journal: `mqtt-` and 16 random hex digits, written to `file`.
fn new_source(file: &Path) -> io::Result<String> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|error| io::Error::other(error.to_string()))?;
    let source =
        format!("mqtt-{}", random.iter().map(|byte| format!("{byte:02x}")).collect::<String>());
    fs::write(file, format!("{source}\n"))?;
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(records: &[(u64, &str, &str)]) -> Vec<u8> {
        let mut buffer = Vec::new();
        for &(seq, topic, payload) in records {
            encode_record(&mut buffer, seq, topic, payload.as_bytes());
        }
        buffer
    }

    fn record(seq: u64, topic: &str, payload: &str) -> Record {
        Record { seq, topic: topic.into(), payload: payload.as_bytes().to_vec() }
    }

    #[test]
    fn records_read_back_as_written() {
        let bytes = records(&[(1, "v1.1/Observations", "{\"result\":1}"), (2, "t", "")]);
        let (read, good) = decode_records(&bytes);
        assert_eq!(good, bytes.len());
        assert_eq!(
            read,
            vec![record(1, "v1.1/Observations", "{\"result\":1}"), record(2, "t", "")]
        );
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_segment() {
        let bytes = records(&[(7, "a", "x"), (8, "b", "yy")]);
        let first_len = records(&[(7, "a", "x")]).len();
        for cut in first_len..bytes.len() {
            let (read, good) = decode_records(&bytes[..cut]);
            assert_eq!((read, good), (vec![record(7, "a", "x")], first_len), "cut at {cut}");
        }
        for flipped in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[flipped / 8] ^= 1 << (flipped % 8);
            let (read, _) = decode_records(&damaged);
            assert!(
                read.iter().all(|r| *r == record(7, "a", "x") || *r == record(8, "b", "yy")),
                "bit {flipped}: {read:?}"
            );
            assert!(read.len() < 2, "bit {flipped} went unnoticed");
        }
    }

    const TOPIC: &str = "v1.1/Datastreams(1)/Observations";

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".journal"))
            .collect();
        names.sort();
        names
    }

    /// Replays what follows `mark`, in order, then journals new messages after the last
    /// sequence number seen; segments wholly applied are removed, on start and later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_after_the_mark_are_replayed_first_and_new_ones_follow() {
        let dir = tempfile::tempdir().expect("temp dir");
        let payload = r#"{"result":1}"#;
        let old: Vec<_> = (1..=3).map(|seq| (seq, TOPIC, payload)).collect();
        let newer: Vec<_> = (4..=6).map(|seq| (seq, TOPIC, payload)).collect();
        fs::write(dir.path().join(segment_name(1)), records(&old)).expect("write");
        fs::write(dir.path().join(segment_name(4)), records(&newer)).expect("write");
        // Refused when journaled (it would not decode): skipped at replay, not fatal.
        let mut damaged = records(&newer);
        damaged.extend(records(&[(7, TOPIC, "[1]")]));
        fs::write(dir.path().join(segment_name(4)), damaged).expect("write");

        let prepared = open(dir.path()).expect("open");
        let (batcher, mut queue) = mpsc::channel(64);
        let metrics = Arc::new(Metrics::new("embedded"));
        let marks = prepared.marks(4);
        let applied = Arc::clone(&marks.applied);
        let journal = prepared.start(&marks, batcher, Arc::clone(&metrics)).await.expect("start");
        let mut seqs = Vec::new();
        for _ in 0..2 {
            seqs.push(queue.recv().await.expect("replayed").seq());
        }
        assert_eq!(seqs, [Some(5), Some(6)]);
        // The record that no longer decodes is counted, not queued.
        assert_eq!(Metrics::get(&metrics.rejected), 1);
        assert!(queue.is_empty());
        // Segment 1 held only applied records: gone. Segment 4 waits for 5 and 6.
        assert_eq!(segment_files(dir.path()), [segment_name(4), segment_name(8)]);

        let payload = Bytes::from(payload);
        let append = || {
            let create = decode_message(TOPIC, &payload).expect("decodes");
            journal.append(TOPIC, &payload, create)
        };
        assert!(matches!(append().await, Appended::Journaled));
        assert_eq!(queue.recv().await.expect("queued").seq(), Some(8));
        assert_eq!(Metrics::get(&metrics.journaled), 1);

        // Applied up to 8: segment 4 goes with the next write.
        applied.store(8, Ordering::Release);
        assert!(matches!(append().await, Appended::Journaled));
        assert_eq!(queue.recv().await.expect("queued").seq(), Some(9));
        assert_eq!(segment_files(dir.path()), [segment_name(8)]);
        let (written, _) =
            decode_records(&fs::read(dir.path().join(segment_name(8))).expect("read"));
        assert_eq!(written.iter().map(|record| record.seq).collect::<Vec<_>>(), [8, 9]);

        // The batcher gone, a message is refused, not acknowledged.
        drop(queue);
        assert!(matches!(append().await, Appended::Stopped));
    }

    /// A mark ahead of every record (the journal directory emptied, the database kept) is
    /// where numbering goes on, so that nothing new is taken for applied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn numbering_goes_on_after_the_mark() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (batcher, mut queue) = mpsc::channel(4);
        let metrics = Arc::new(Metrics::new("embedded"));
        let prepared = open(dir.path()).expect("open");
        let marks = prepared.marks(41);
        let journal = prepared.start(&marks, batcher, metrics).await.expect("start");
        let payload = Bytes::from(r#"{"result":2}"#);
        let create = decode_message(TOPIC, &payload).expect("decodes");
        assert!(matches!(journal.append(TOPIC, &payload, create).await, Appended::Journaled));
        assert_eq!(queue.recv().await.expect("queued").seq(), Some(42));
    }

    /// A full segment is closed and a new one begun at the next number; a closed segment goes
    /// once the batcher has applied its last record; a restart reads them all in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_segments_rotate_and_go_once_applied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (batcher, mut queue) = mpsc::channel(16);
        let metrics = Arc::new(Metrics::new("embedded"));
        let prepared = open(dir.path()).expect("open");
        let marks = prepared.marks(0);
        let applied = Arc::clone(&marks.applied);
        let journal = prepared.start(&marks, batcher, metrics).await.expect("start");
        // Two records per segment.
        journal.writer.lock().await.segment_bytes =
            2 * records(&[(1, TOPIC, r#"{"result":1}"#)]).len() as u64;
        let payload = Bytes::from(r#"{"result":1}"#);
        for seq in 1..=5 {
            let create = decode_message(TOPIC, &payload).expect("decodes");
            assert!(matches!(journal.append(TOPIC, &payload, create).await, Appended::Journaled));
            assert_eq!(queue.recv().await.expect("queued").seq(), Some(seq));
        }
        let names = [segment_name(1), segment_name(3), segment_name(5)];
        assert_eq!(segment_files(dir.path()), names);
        applied.store(3, Ordering::Release);
        let create = decode_message(TOPIC, &payload).expect("decodes");
        assert!(matches!(journal.append(TOPIC, &payload, create).await, Appended::Journaled));
        // Segment 1 (records 1 and 2) is applied; segment 3 still holds record 4.
        assert_eq!(segment_files(dir.path()), [segment_name(3), segment_name(5), segment_name(7)]);
        drop(journal);

        let reopened = read_dir(dir.path()).expect("reopen");
        let seqs: Vec<Vec<u64>> = reopened
            .segments
            .iter()
            .map(|(_, records)| records.iter().map(|record| record.seq).collect())
            .collect();
        assert_eq!(seqs, [vec![3, 4], vec![5, 6], vec![]]);
    }

    #[test]
    fn the_last_segment_is_cut_back_to_its_last_whole_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let whole = records(&[(1, "a", "1"), (2, "a", "2")]);
        let mut torn = whole.clone();
        torn.extend_from_slice(&records(&[(3, "a", "3")])[..10]);
        fs::write(dir.path().join(segment_name(1)), &torn).expect("write segment");
        let opened = read_dir(dir.path()).expect("read");
        assert_eq!(opened.segments.len(), 1);
        assert_eq!(opened.segments[0].1, vec![record(1, "a", "1"), record(2, "a", "2")]);
        let on_disk = fs::read(dir.path().join(segment_name(1))).expect("read segment");
        assert_eq!(on_disk, whole);
        // The name survives reopening.
        assert_eq!(read_dir(dir.path()).expect("read again").source, opened.source);
        assert!(
            opened.source.starts_with("mqtt-") && opened.source.len() == 21,
            "{}",
            opened.source
        );
    }
}
