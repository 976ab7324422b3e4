//! The task's output: the collector that tails the raw files into `log.jsonl`, and the
//! readers of that file (`docker logs`, with `--follow`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::records::{read_json, write_json};
use super::task::{Collector, TaskProc};
use super::{
    COLLECT_CHUNK, COLLECT_MAX, COLLECT_MIN, Inner, LOG_FILE, MAX_LINE, OFFSETS_FILE, STDERR_RAW,
    STDOUT_RAW, blocking, lock,
};
use crate::exec::{ExecError, LogEntry, LogOptions, LogStream, entry_matches};

impl TaskProc {
    pub(super) fn ensure_collector(self: &Arc<Self>, exec: &Inner) {
        {
            let mut st = lock(&self.state);
            if st.collector != Collector::NotStarted {
                return;
            }
            st.collector = Collector::Running;
        }
        let this = self.clone();
        exec.tracker.spawn(async move { this.collect().await });
    }

    /// Tails the raw output files into `log.jsonl` until the process has exited and all its
    /// output is collected (or until cancelled, leaving the rest for the next agent).
    pub(super) async fn collect(self: Arc<Self>) {
        let mut cursor = LogCursor::load(&self.dir);
        let mut delay = COLLECT_MIN;
        let mut exit_rx = self.exit_tx.subscribe();
        loop {
            self.refresh_exit();
            let exited = exit_rx.borrow_and_update().is_some();
            let dir = self.dir.clone();
            let res = tokio::task::spawn_blocking(move || {
                let n = cursor.drain(&dir, exited);
                (cursor, n)
            })
            .await;
            let n = match res {
                Ok((c, n)) => {
                    cursor = c;
                    n
                }
                Err(e) => {
                    tracing::warn!(task.id = %self.task_id, error = %e, "log collector failed");
                    break;
                }
            };
            match n {
                Ok(0) => delay = (delay * 2).min(COLLECT_MAX),
                Ok(_) => {
                    self.log_tick.send_modify(|v| *v += 1);
                    delay = COLLECT_MIN;
                }
                Err(e) => {
                    // The task dir is gone (removed) or unwritable: nothing left to do.
                    tracing::debug!(task.id = %self.task_id, error = %e, "log collector stopped");
                    break;
                }
            }
            if exited {
                break;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
                _ = exit_rx.changed() => {}
            }
        }
        lock(&self.state).collector = Collector::Done;
        self.log_tick.send_modify(|v| *v += 1);
    }
}

/// Turns the raw output files into timestamped `log.jsonl` lines, remembering how far it got.
pub(super) struct LogCursor {
    /// Per stream (stdout, stderr): bytes of the raw file already turned into lines.
    pub(super) consumed: [u64; 2],
    /// Bytes read after `consumed` that do not end in a newline yet.
    pub(super) partial: [Vec<u8>; 2],
}

#[derive(Default, Serialize, Deserialize)]
pub(super) struct Offsets {
    stdout: u64,
    stderr: u64,
}

/// One line of `log.jsonl`. Text lines are stored as JSON strings; lines that are not
/// UTF-8 are stored hex-encoded in `x`.
#[derive(Serialize, Deserialize)]
pub(super) struct LogRecord {
    t: String,
    s: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
}

impl LogRecord {
    pub(super) fn new(stream: LogStream, t: &str, line: &[u8]) -> Self {
        let (l, x) = match std::str::from_utf8(line) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (None, Some(hex::encode(line))),
        };
        LogRecord {
            t: t.to_string(),
            s: stream.as_str().to_string(),
            l,
            x,
        }
    }

    pub(super) fn into_entry(self) -> Option<LogEntry> {
        let stream = match self.s.as_str() {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            _ => return None,
        };
        let line = match (self.l, self.x) {
            (Some(l), _) => Bytes::from(l),
            (None, Some(x)) => Bytes::from(hex::decode(x).ok()?),
            (None, None) => Bytes::new(),
        };
        Some(LogEntry {
            stream,
            timestamp: self.t,
            line,
        })
    }
}

impl LogCursor {
    pub(super) fn load(dir: &Path) -> Self {
        let o = read_json::<Offsets>(&dir.join(OFFSETS_FILE)).unwrap_or_default();
        LogCursor {
            consumed: [o.stdout, o.stderr],
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// One pass: reads what was appended to the raw files and appends complete lines to
    /// `log.jsonl`. With `last`, reads to the end and flushes unterminated lines too.
    /// Returns the number of lines written.
    pub(super) fn drain(&mut self, dir: &Path, last: bool) -> std::io::Result<usize> {
        if !dir.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "task directory removed",
            ));
        }
        let now = swarmd_types::timefmt::now();
        let mut out = Vec::new();
        let mut lines = 0;
        for (i, (stream, name)) in [
            (LogStream::Stdout, STDOUT_RAW),
            (LogStream::Stderr, STDERR_RAW),
        ]
        .into_iter()
        .enumerate()
        {
            let mut file = match File::open(dir.join(name)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            loop {
                let pos = self.consumed[i] + self.partial[i].len() as u64;
                file.seek(SeekFrom::Start(pos))?;
                let mut buf = Vec::new();
                let n = (&mut file)
                    .take(COLLECT_CHUNK as u64)
                    .read_to_end(&mut buf)?;
                self.partial[i].extend_from_slice(&buf);
                // Emit every complete line (and over-long fragments, as Docker does).
                let mut start = 0;
                let data = std::mem::take(&mut self.partial[i]);
                while start < data.len() {
                    let end = match data[start..].iter().position(|b| *b == b'\n') {
                        Some(p) if p < MAX_LINE => start + p + 1,
                        _ if data.len() - start >= MAX_LINE => start + MAX_LINE,
                        _ => break,
                    };
                    out.push(LogRecord::new(stream, &now, &data[start..end]));
                    self.consumed[i] += (end - start) as u64;
                    start = end;
                    lines += 1;
                }
                self.partial[i] = data[start..].to_vec();
                if !(last && n == COLLECT_CHUNK) {
                    break;
                }
            }
            if last && !self.partial[i].is_empty() {
                let data = std::mem::take(&mut self.partial[i]);
                out.push(LogRecord::new(stream, &now, &data));
                self.consumed[i] += data.len() as u64;
                lines += 1;
            }
        }
        if out.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::new();
        for r in &out {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))?;
        log.write_all(&buf)?;
        let offsets = Offsets {
            stdout: self.consumed[0],
            stderr: self.consumed[1],
        };
        write_json(&dir.join(OFFSETS_FILE), &offsets).map_err(std::io::Error::other)?;
        Ok(lines)
    }
}

/// Reads the complete lines of `log.jsonl` from byte `offset`; returns them and the offset
/// after the last complete line.
pub(super) fn read_log(dir: &Path, offset: u64) -> std::io::Result<(Vec<LogEntry>, u64)> {
    let mut file = match File::open(dir.join(LOG_FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok((Vec::new(), offset));
    };
    let entries = buf[..=last_nl]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<LogRecord>(l).ok())
        .filter_map(LogRecord::into_entry)
        .collect();
    Ok((entries, offset + last_nl as u64 + 1))
}
/// State of a `logs --follow` stream on a process task.
pub(super) struct Follow {
    pub(super) proc: Arc<TaskProc>,
    pub(super) tick: watch::Receiver<u64>,
    pub(super) offset: u64,
    pub(super) opts: LogOptions,
    pub(super) since: Option<f64>,
    pub(super) done: bool,
}

impl Follow {
    /// The next non-empty batch of lines, or an empty batch with `done` set at the end.
    pub(super) async fn next_batch(&mut self) -> Vec<Result<LogEntry, ExecError>> {
        loop {
            let finished = self.proc.output_finished() || self.proc.cancel.is_cancelled();
            self.tick.borrow_and_update();
            let dir = self.proc.dir.clone();
            let offset = self.offset;
            match blocking(move || {
                read_log(&dir, offset).map_err(|e| ExecError::io("reading task log", e))
            })
            .await
            {
                Ok((entries, off)) => {
                    self.offset = off;
                    let batch: Vec<_> = entries
                        .into_iter()
                        .filter(|e| entry_matches(e, &self.opts, self.since))
                        .map(Ok)
                        .collect();
                    if !batch.is_empty() {
                        return batch;
                    }
                }
                Err(e) => {
                    self.done = true;
                    return vec![Err(e)];
                }
            }
            if finished || !self.proc.dir.exists() {
                self.done = true;
                return Vec::new();
            }
            // Woken by the collector; the timeout covers a collector in another process.
            let _ = tokio::time::timeout(Duration::from_millis(500), self.tick.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    pub(super) fn cursor_splits_lines_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join(STDOUT_RAW), b"one\ntwo\npart").unwrap();
        fs::write(d.join(STDERR_RAW), [0xff, b'\n']).unwrap();
        let mut c = LogCursor::load(d);
        assert_eq!(c.drain(d, false).unwrap(), 3);
        // A new cursor (agent restart) resumes after the complete lines.
        let mut c2 = LogCursor::load(d);
        assert_eq!(c2.consumed, [8, 2]);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join(STDOUT_RAW))
            .unwrap();
        f.write_all(b"ial\n").unwrap();
        assert_eq!(c2.drain(d, true).unwrap(), 1);
        let (entries, _) = read_log(d, 0).unwrap();
        let lines: Vec<_> = entries.iter().map(|e| e.line.clone()).collect();
        assert_eq!(
            lines,
            vec![
                Bytes::from_static(b"one\n"),
                Bytes::from_static(b"two\n"),
                Bytes::from_static(&[0xff, b'\n']),
                Bytes::from_static(b"partial\n"),
            ]
        );
        assert_eq!(entries[2].stream, LogStream::Stderr);
        // Drain again: nothing new, nothing duplicated.
        assert_eq!(c2.drain(d, true).unwrap(), 0);
        drop(c);
    }
}
