//! One tick of a sampling loop, the same for `record` and `top`: sample the
//! session, tell the consumer which processes were attached and which
//! exited (so their per-process caches are dropped), keep the samples the
//! `--mode` wants, pass on memory readings, and say when sampling is over
//! (the target exited, exec'd another program, or the launched command
//! ended).

use std::time::Duration;

use pyrometer_sampler::{MemoryReading, Sample, Session};

use crate::args::Mode;
use crate::attach::Launched;

/// What one consumer does with a tick's news.
pub trait TickSink {
    /// A process was attached (`--subprocesses`): PID, command line, Python version.
    fn attached(&mut self, pid: i32, cmdline: &str, python_version: &str);
    /// A process exited or exec'd: drop what was kept only for its next samples.
    fn exited(&mut self, pid: i32);
    /// A sample the mode keeps.
    fn sample(&mut self, sample: Sample);
    /// A memory reading.
    fn memory(&mut self, reading: &MemoryReading);
}

/// Why sampling ended by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every target exited.
    TargetExited,
    /// The root target replaced itself with another program (exec).
    Replaced,
    /// The command pyrometer launched ended (its exit status).
    LaunchedExited(String),
}

impl Ended {
    /// As the summary's `stopped:` line says it.
    pub fn describe(&self) -> &'static str {
        match self {
            Ended::TargetExited | Ended::LaunchedExited(_) => "target exited",
            Ended::Replaced => "the target replaced itself with another program (exec)",
        }
    }
}

/// Whether `mode` keeps a sample.
pub fn keeps(mode: Mode, s: &Sample) -> bool {
    match mode {
        Mode::Wall => true,
        Mode::Cpu => s.state.is_active(),
        Mode::Gil => s.holds_gil,
    }
}

/// The tick handling of one sampling loop.
#[derive(Debug)]
pub struct Ticker {
    mode: Mode,
    subprocesses: bool,
    root_replaced: bool,
}

impl Ticker {
    pub fn new(mode: Mode, subprocesses: bool) -> Ticker {
        Ticker {
            mode,
            subprocesses,
            root_replaced: false,
        }
    }

    /// Sample every target once at `time` and hand the results to `sink`;
    /// `Some` when sampling is over.
    pub fn tick(
        &mut self,
        session: &mut Session,
        launched: &mut Option<Launched>,
        time: Duration,
        sink: &mut impl TickSink,
    ) -> Option<Ended> {
        let (samples, events) = session.sample(time);
        self.root_replaced |= events.replaced.contains(&session.root_pid());
        for pid in &events.attached {
            if let Some(t) = session.targets().iter().find(|t| t.pid() == *pid) {
                let version = t.interpreter().version.to_string();
                sink.attached(*pid, t.cmdline(), &version);
            }
        }
        for pid in &events.exited {
            sink.exited(*pid);
        }
        for s in samples.into_iter().filter(|s| keeps(self.mode, s)) {
            sink.sample(s);
        }
        for r in &events.memory {
            sink.memory(r);
        }
        if session.targets().is_empty() && (session.finished() || !self.subprocesses) {
            return Some(if self.root_replaced {
                Ended::Replaced
            } else {
                Ended::TargetExited
            });
        }
        if let Some(l) = launched.as_mut() {
            if let Some(status) = l.exited() {
                return Some(Ended::LaunchedExited(status.to_string()));
            }
        }
        None
    }
}
